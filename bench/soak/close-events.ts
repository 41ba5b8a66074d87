// The close events the backend got (MUX_EVENTS=close, logged by test/php/stream.php): one per ended stream, with
// the reason its end calls for.
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Failures } from './failures.ts';
import type { EndMode } from './stream.ts';

/** How long the last events may take to reach the log. */
const SETTLE_TIMEOUT_MS = 15_000;

export interface CloseEvents {
  expected: number;
  seen: number;
  wrongReason: number;
}

/** token → reason of every close event in the log so far */
function readReasons(eventLog: string): Map<string, string> {
  const reasons = new Map<string, string>();
  const lines = existsSync(eventLog) ? readFileSync(eventLog, 'utf8').split('\n') : [];
  for (const line of lines) {
    const [event, token, reason] = line.split(' ');
    if (event === 'close' && token !== undefined && reason !== undefined) reasons.set(token, reason);
  }
  return reasons;
}

/** Waits for a close event for every ended stream (token → how it ended), and checks each one's reason. */
export async function checkCloseEvents(eventLog: string, endedTokens: Map<string, EndMode>, failures: Failures): Promise<CloseEvents> {
  let reasons: Map<string, string>;
  for (const settleBy = Date.now() + SETTLE_TIMEOUT_MS; ;) {
    reasons = readReasons(eventLog);
    if ([...endedTokens.keys()].every((token) => reasons.has(token)) || Date.now() > settleBy) break;
    await sleep(250);
  }
  let seen = 0;
  let wrongReason = 0;
  for (const [token, mode] of endedTokens) {
    const reason = reasons.get(token);
    if (reason === undefined) continue;
    seen++;
    if (reason !== (mode === 'server' ? 'closed' : 'client')) {
      wrongReason++;
      failures.add('close event with the wrong reason', `${mode} stream: ${reason}`);
    }
  }
  const expected = endedTokens.size;
  if (seen < expected) failures.add('close events missing', `${expected - seen} of ${expected}`);
  return { expected, seen, wrongReason };
}
