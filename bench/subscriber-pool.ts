// The orchestrator's side of the subscriber processes: start them (bench/subscriber.c, or bench/subscriber-h2.c over
// TLS and HTTP/2, built with the machine's gcc on first use), open streams, collect their counts. The line protocol is
// described at the top of subscriber.c.
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import { mkdirSync, renameSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LatencyHistogram, type SparseHistogram } from './histogram.ts';
import { track } from './child-processes.ts';

const BUILD_DIR = fileURLToPath(new URL('./.build/', import.meta.url));
/** Each subscriber program: its source, and the libraries it links. */
const PROGRAMS = {
  subscriber: { source: fileURLToPath(new URL('./subscriber.c', import.meta.url)), libraries: [] as string[] },
  'subscriber-h2': { source: fileURLToPath(new URL('./subscriber-h2.c', import.meta.url)), libraries: ['-lnghttp2', '-lssl', '-lcrypto'] },
};
/** What both programs include. */
const COMMON_HEADER = fileURLToPath(new URL('./subscriber-common.h', import.meta.url));
/** RFC 6455's example key: subscriber.c checks the answer's Sec-WebSocket-Accept against the RFC's value for it. */
const WEBSOCKET_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** The raw RFC 6455 opening of a WebSocket on `path` (`{channel}` in it is filled in per subscriber). */
export function webSocketOpening(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${WEBSOCKET_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
}

export interface PoolStats {
  deliveries: number;
  /** Epoch ms of the last delivery any subscriber received (0: none). */
  lastAt: number;
  closed: number;
  histogram: LatencyHistogram;
}

interface Opened {
  tokens: string[];
  failedOpens: Array<[status: string, count: number]>;
}

interface Stats {
  deliveries: number;
  lastAt: number;
  closed: number;
  histogram: SparseHistogram | null;
}

/** Builds bench/.build/<program> when missing or older than its source or the header they share. */
function subscriberBinary(program: keyof typeof PROGRAMS): string {
  const { source, libraries } = PROGRAMS[program];
  const binary = `${BUILD_DIR}${program}`;
  const mtime = (path: string) => {
    try {
      return statSync(path).mtimeMs;
    } catch {
      return -1;
    }
  };
  if (mtime(binary) >= Math.max(mtime(source), mtime(COMMON_HEADER))) return binary;
  mkdirSync(BUILD_DIR, { recursive: true });
  const building = `${binary}.${process.pid}`;
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', building, source, ...libraries], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    throw new Error(`building ${source} failed (gcc or a library missing? bench/setup-peers.sh installs them): ${(error as Error).message}`);
  }
  renameSync(building, binary);
  return binary;
}

function parseOpened(fields: string[]): Opened {
  const count = Number(fields[1]);
  const tokens = fields.slice(2, 2 + count).map(decodeURIComponent);
  const failedOpens: Opened['failedOpens'] = [];
  const failed = Number(fields[2 + count]);
  for (let i = 0; i < failed; i++) {
    failedOpens.push([decodeURIComponent(fields[4 + count + 2 * i]), Number(fields[3 + count + 2 * i])]);
  }
  return { tokens, failedOpens };
}

function parseStats(fields: string[]): Stats {
  const histogram: SparseHistogram | null = fields[4] === '1' ? fields.slice(5).map((pair) => {
    const [bucket, count] = pair.split(':');
    return [Number(bucket), Number(count)];
  }) : null;
  return { deliveries: Number(fields[1]), lastAt: Number(fields[2]), closed: Number(fields[3]), histogram };
}

/** One subscriber process: each command gets one answer line, in order. */
class Subscriber {
  readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly pending: Array<{ resolve: (fields: string[]) => void; reject: (error: Error) => void }> = [];
  private failure: Error | null = null;

  constructor(binary: string) {
    this.child = track(spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] }));
    // A subscriber that dies mid-run is reported by the next command, not as an unhandled EPIPE.
    this.child.stdin.on('error', () => {});
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (line.startsWith('failed ')) return this.fail(new Error(`subscriber ${this.child.pid}: ${line.slice('failed '.length)}`));
      this.pending.shift()?.resolve(line.split(' '));
    });
    this.child.once('exit', (code, signal) => this.fail(new Error(`subscriber ${this.child.pid} exited with ${signal ?? `code ${code}`}`)));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const { reject } of this.pending.splice(0)) reject(this.failure);
  }

  private ask(line: string, reply: string): Promise<string[]> {
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({
        resolve: (fields) => (fields[0] === reply ? resolve(fields) : reject(new Error(`subscriber ${this.child.pid}: expected ${reply}, got ${fields[0]}`))),
        reject,
      });
      this.child.stdin.write(`${line}\n`);
    });
  }

  /** `last`: isWebSocket (0|1) for subscriber.c, the streams per connection for subscriber-h2.c. */
  async open(port: number, count: number, firstSource: number, firstIndex: number, request: string, channel: string, isChannelEach: boolean,
    last: number): Promise<Opened> {
    const line = ['open', port, count, firstSource, firstIndex, isChannelEach ? 1 : 0, encodeURIComponent(channel), encodeURIComponent(request),
      last].join(' ');
    return parseOpened(await this.ask(line, 'opened'));
  }

  /** Resolves with the WebSockets that started sending. */
  async send(isOn: boolean): Promise<number> {
    return Number((await this.ask(`send ${isOn ? 1 : 0}`, 'sending'))[2]);
  }

  async stats(final: boolean): Promise<Stats> {
    return parseStats(await this.ask(`stats ${final ? 1 : 0}`, 'stats'));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.stdin.end('close\n');
    });
  }
}

/** Subscribers over TLS and HTTP/2: this many streams share a connection. */
export interface Http2Subscribers {
  streamsPerConnection: number;
}

export class SubscriberPool {
  private readonly subscribers: Subscriber[];
  private readonly http2: Http2Subscribers | undefined;

  /** `http2`: bench/subscriber-h2.c's processes, whose `open` request is a path (the system's `http2Path`). */
  constructor(processes: number, http2?: Http2Subscribers) {
    const binary = subscriberBinary(http2 === undefined ? 'subscriber' : 'subscriber-h2');
    this.http2 = http2;
    this.subscribers = Array.from({ length: processes }, () => new Subscriber(binary));
  }

  get pids(): number[] {
    return this.subscribers.map((subscriber) => subscriber.child.pid!);
  }

  /**
   * Opens `total` streams spread over the processes, each sending `request` (default: muxgate's bench backend, a
   * token stream) with `{channel}` filled in; resolves with their tokens ('' where the server names none), in
   * subscriber order, and the opens that had to be retried. `isWebSocket`: the request is a `webSocketOpening`.
   */
  async open(port: number, total: number, options: { request?: string; channel?: string; isChannelEach?: boolean; isWebSocket?: boolean } = {}):
    Promise<{ tokens: string[]; failedOpens: Map<string, number> }> {
    const n = this.subscribers.length;
    const counts = this.subscribers.map((_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
    const replies = await Promise.all(this.subscribers.map((subscriber, i) => subscriber.open(
      port, counts[i], i, counts.slice(0, i).reduce((sum, c) => sum + c, 0),
      options.request ?? 'GET /s HTTP/1.1\r\nHost: bench\r\n\r\n', options.channel ?? '', options.isChannelEach ?? false,
      this.http2?.streamsPerConnection ?? (options.isWebSocket ? 1 : 0),
    )));
    const failedOpens = new Map<string, number>();
    for (const [status, count] of replies.flatMap((reply) => reply.failedOpens)) failedOpens.set(status, (failedOpens.get(status) ?? 0) + count);
    return { tokens: replies.flatMap((reply) => reply.tokens), failedOpens };
  }

  /**
   * On: every open WebSocket sends a message with a marker, and its next one each time the server's echo of the
   * last comes back (counted as a delivery); off: no more are sent. Resolves with the WebSockets that started.
   */
  async send(isOn: boolean): Promise<number> {
    return (await Promise.all(this.subscribers.map((subscriber) => subscriber.send(isOn)))).reduce((sum, n) => sum + n, 0);
  }

  /** The counts so far; `final` also gathers the latencies and starts every count afresh. */
  async stats(final: boolean): Promise<PoolStats> {
    const replies = await Promise.all(this.subscribers.map((subscriber) => subscriber.stats(final)));
    const histogram = new LatencyHistogram();
    for (const reply of replies) if (reply.histogram !== null) histogram.add(reply.histogram);
    return {
      deliveries: replies.reduce((sum, reply) => sum + reply.deliveries, 0),
      lastAt: Math.max(...replies.map((reply) => reply.lastAt)),
      closed: replies.reduce((sum, reply) => sum + reply.closed, 0),
      histogram,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.subscribers.map((subscriber) => subscriber.close()));
  }
}
