// Polling for what nothing announces (a metric, a file, a process or socket table), with a deadline that fails clearly.
import { setTimeout as sleep } from 'node:timers/promises';

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * Resolves with the first truthy value of `check`, polled every `intervalMs` (the first time at once). After
 * `timeoutMs` it rejects with what it waited for: `what` is called then, so that it can tell the last state seen.
 * A check that throws fails the wait at once.
 */
export async function waitUntil<T>(check: () => T | Promise<T>, timeoutMs: number, what: string | (() => string), intervalMs = 25): Promise<Truthy<T>> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as Truthy<T>;
    if (performance.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    }
    await sleep(intervalMs);
  }
}
