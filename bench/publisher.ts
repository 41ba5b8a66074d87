// Child process: publishes messages to one system over keep-alive connections, flat out or at a fixed rate; each
// message carries its send time as an `@T=<µs>;` marker (epoch µs, the clock the subscribers read).
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { publishFormat as muxgateFormat } from './systems/muxgate.ts';
import { publishFormat as nchanFormat } from './systems/nchan.ts';
import { publishFormat as pushpinFormat } from './systems/pushpin.ts';
import type { Address, PublishFormat, SystemKind } from './systems/system.ts';

export interface PublishCommand {
  type: 'publish';
  kind: SystemKind;
  url: string;
  /** Message i goes to addresses[i % addresses.length]. */
  addresses: Address[];
  count: number;
  /** Requests in flight at once, one keep-alive connection each. */
  concurrency: number;
  /** Messages per second; 0: flat out. */
  rate: number;
  /** The subscribers are WebSockets: each message is the marker alone. */
  isWebSocket: boolean;
}

export interface PublishReport {
  type: 'published';
  /** Epoch ms of the first and the last send. */
  firstSentAt: number;
  lastSentAt: number;
  /** Non-2xx answers and request errors, by description. */
  failures: Array<[what: string, count: number]>;
}

const FORMATS: Record<SystemKind, PublishFormat> = { muxgate: muxgateFormat, nchan: nchanFormat, pushpin: pushpinFormat };

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

async function publish(command: PublishCommand): Promise<PublishReport> {
  const format = FORMATS[command.kind];
  const agent = new http.Agent({ keepAlive: true, maxSockets: command.concurrency });
  const failures = new Map<string, number>();
  const report: PublishReport = { type: 'published', firstSentAt: 0, lastSentAt: 0, failures: [] };
  const startedAt = nowMs();
  let next = 0;
  const sendOne = (i: number) => new Promise<void>((resolve) => {
    const sentAt = nowMs();
    if (i === 0) report.firstSentAt = sentAt;
    report.lastSentAt = sentAt;
    const request = format(command.addresses[i % command.addresses.length], `@T=${Math.round(sentAt * 1000)};`, command.isWebSocket);
    const fail = (what: string) => {
      failures.set(what, (failures.get(what) ?? 0) + 1);
      resolve();
    };
    const req = http.request(command.url + request.path, {
      method: 'POST', agent, headers: { ...request.headers, 'Content-Length': String(Buffer.byteLength(request.body)) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.once('end', () => {
        if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode > 299) return fail(`${res.statusCode} ${text.trim().slice(0, 200)}`);
        resolve();
      });
    });
    req.once('error', (error) => fail(error.message));
    req.end(request.body);
  });
  const worker = async () => {
    while (next < command.count) {
      const i = next++;
      if (command.rate > 0) {
        // Fixed rate: message i is due at startedAt + i / rate; a late one goes at once.
        const wait = startedAt + (i * 1000) / command.rate - nowMs();
        if (wait > 0) await sleep(wait);
      }
      await sendOne(i);
    }
  };
  await Promise.all(Array.from({ length: command.concurrency }, worker));
  agent.destroy();
  report.failures = [...failures];
  return report;
}

process.on('message', (command: PublishCommand) => {
  publish(command).then((report) => process.send!(report), (error: Error) => {
    process.send!({ type: 'published', firstSentAt: 0, lastSentAt: 0, failures: [[error.message, 1]] } satisfies PublishReport);
  });
});
process.once('disconnect', () => process.exit(0));
