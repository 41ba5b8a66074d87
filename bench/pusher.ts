// POST /push flat out over a few keep-alive connections; each body carries its send time as `@T=<µs>;` markers.
import http from 'node:http';

const BOUNDARY = 'bb';
const CONTENT_TYPE = `application/x-multiplex; boundary=${BOUNDARY}`;

/** Epoch microseconds on the clock the subscribers read (performance.timeOrigin + now()). */
function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** One part's head addressed to these tokens, to be followed by a body and CRLF. */
export function partHead(tokens: string[]): string {
  return `--${BOUNDARY}\r\nMultiplex-Token: ${tokens.join(',')}\r\n\r\n`;
}

/** A push body: every part head followed by the same marker body. */
function pushBody(partHeads: string[], sentAtUs: number): string {
  const marker = `@T=${sentAtUs};\r\n`;
  return partHeads.join(marker) + marker + `--${BOUNDARY}--\r\n`;
}

export interface PushOutcome {
  /** Epoch ms when the first push was sent. */
  firstSentAt: number;
  /** Deliveries muxgate reported in its answers. */
  deliveries: number;
  /** Non-200 answers and request errors, by description. */
  failures: Map<string, number>;
}

/** Sends `count` pushes, `concurrency` at a time; `heads(i)` are the part heads of push i. */
export async function pushAll(pushUrl: string, count: number, concurrency: number, heads: (i: number) => string[]): Promise<PushOutcome> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const outcome: PushOutcome = { firstSentAt: 0, deliveries: 0, failures: new Map() };
  let next = 0;
  const sendOne = (i: number) => new Promise<void>((resolve) => {
    const sentAtUs = nowUs();
    if (i === 0) outcome.firstSentAt = sentAtUs / 1000;
    const body = pushBody(heads(i), sentAtUs);
    const fail = (what: string) => {
      outcome.failures.set(what, (outcome.failures.get(what) ?? 0) + 1);
      resolve();
    };
    const req = http.request(pushUrl, {
      method: 'POST', agent, headers: { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.once('end', () => {
        if (res.statusCode !== 200) return fail(`${res.statusCode} ${text.trim()}`);
        outcome.deliveries += (JSON.parse(text) as { deliveries: number }).deliveries;
        resolve();
      });
    });
    req.once('error', (error) => fail(error.message));
    req.end(body);
  });
  const worker = async () => {
    while (next < count) await sendOne(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return outcome;
}
