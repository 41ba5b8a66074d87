// `npm run soak`: muxgate under churn for SOAK_SECONDS (default 600) against a real php-fpm. A pool of held
// streams keeps disconnecting and reconnecting while parts are pushed to their tokens and channels; every live
// stream checks that it gets exactly the parts addressed to it, in order, and every ended stream its close event.
// muxgate's RSS, open fds, gauges and live heap (what full collections leave, from --trace-gc) are sampled; a
// Markdown summary goes to stdout (progress to stderr), and the exit code is 1 on a lost part, a protocol error,
// or RSS/fds/live heap growing after warm-up beyond the thresholds (defaults: RSS +20 %, fds +10 % and 0.05 per
// churn cycle, live heap 2.5 KiB per churn cycle).
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPhpFpm, type PhpFpm } from '../test/helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from '../test/helpers/muxgate.ts';
import { rssKiB } from './proc-stats.ts';

const PHP_ROOT = fileURLToPath(new URL('../test/php', import.meta.url));
const BOUNDARY = 'soak-7f3a';
const CHANNELS = 8;
/** How long a stream may take to get its token, and a closing stream its last parts. */
const OPEN_TIMEOUT_MS = 15_000;
const VERIFY_TIMEOUT_MS = 10_000;
/** After the last client left: how long muxgate has to report no held stream and no connection. */
const SETTLE_TIMEOUT_MS = 15_000;
/** fds muxgate may hold, once idle again, beyond what it held before the first client. */
const IDLE_FD_SLACK = 8;
const FAILURE_EXAMPLES = 5;

export interface SoakOptions {
  seconds: number;
  /** held streams kept open at once */
  streams?: number;
  /** each stream lives a random time in this range (ms) before it ends */
  lifetimeMs?: [number, number];
  sampleSeconds?: number;
  /** samples before this are warm-up; default: a fifth of the run, at least two samples */
  warmupSeconds?: number;
  /** the largest growth allowed after warm-up, from the first to the last third of the samples */
  maxRssGrowthPercent?: number;
  maxFdGrowthPercent?: number;
  /**
   * The largest growth per churn cycle allowed after warm-up, against a leak of one socket or one stream per
   * cycle: in open fds, and in the heap left by full collections (RSS is too noisy for that).
   */
  maxFdsPerCycle?: number;
  maxLiveHeapKiBPerCycle?: number;
  /** progress lines; default: stderr */
  log?: (line: string) => void;
  /** ends the churn early (the checks and the summary still run) */
  signal?: AbortSignal;
  /** extra environment for muxgate (NODE_OPTIONS, MUX_*), for experiments */
  muxgateEnv?: Record<string, string>;
}

export interface Sample {
  /** seconds since the churn started */
  t: number;
  rssKiB: number;
  fds: number;
  heldStreams: number;
  openConnections: number;
  /** streams ended so far */
  cycles: number;
  /** per muxgate thread (V8 isolate): the heap its last full collection left, KiB (from --trace-gc) */
  liveHeapKiB: Record<string, number>;
}

export interface Trend {
  warm: number;
  end: number;
  growthPercent: number;
  perMinute: number;
  perCycle: number;
}

export interface SoakResult {
  isOk: boolean;
  failures: string[];
  markdown: string;
  seconds: number;
  streamsOpened: number;
  streamsEnded: Record<EndMode, number>;
  churnPerSecond: number;
  tokenParts: PartCounts;
  channelParts: PartCounts;
  pushRequests: number;
  closeEvents: { expected: number; seen: number; wrongReason: number };
  baseline: { rssKiB: number; fds: number };
  idleAfter: { rssKiB: number; fds: number };
  rss: Trend | null;
  fds: Trend | null;
  /** the heap left by full collections, summed over the threads that had one by the end of warm-up */
  liveHeap: Trend | null;
  /** full collections traced in all muxgate threads */
  fullCollections: number;
  samples: Sample[];
}

interface PartCounts {
  /** parts pushed (a part to n streams counts once) */
  pushed: number;
  /** deliveries a live, checked stream was owed */
  expected: number;
  received: number;
  lost: number;
}

type EndMode = 'drain' | 'abrupt' | 'server';

interface Waiter {
  isReady: () => boolean;
  resolve: (isReady: boolean) => void;
  timer: NodeJS.Timeout;
}

/** Counts failures by kind, and keeps a few examples of each. */
class Failures {
  readonly counts = new Map<string, number>();
  readonly examples = new Map<string, string[]>();

  add(kind: string, example: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    const list = this.examples.get(kind) ?? [];
    if (list.length < FAILURE_EXAMPLES) list.push(example);
    this.examples.set(kind, list);
  }

  lines(): string[] {
    return [...this.counts].map(([kind, count]) => `${kind}: ${count} (e.g. ${this.examples.get(kind)!.join('; ')})`);
  }
}

/** One held stream, from its request to its end, and the parts it got. */
class Stream {
  readonly id: number;
  readonly channel: string;
  readonly mode: EndMode;
  token = '';
  /** Its token arrived: parts may be addressed to it from now on. */
  isLive = false;
  isClosing = false;
  isDestroyed = false;
  /** The response ended (last chunk) or the connection closed. */
  hasEnded = false;
  hasClosePart = false;
  /** The channel seq the channel pusher was to give next when the stream went live. */
  channelFrom = 0;
  /** Token parts addressed to it, and the last one received (they are numbered 1, 2, ...). */
  tokenSent = 0;
  tokenReceived = 0;
  /** The last channel seq received (they come in order, without a gap, from the first one received). */
  channelLast = 0;
  /** Token pushes naming it, not answered yet. */
  pendingPushes = 0;
  /** Index in the pool of streams the token pusher picks from, or -1. */
  poolIndex = -1;
  private readonly waiters = new Set<Waiter>();

  constructor(id: number, channel: string, mode: EndMode) {
    this.id = id;
    this.channel = channel;
    this.mode = mode;
  }

  /** Resolves true once the condition holds, false after the timeout. */
  waitFor(isReady: () => boolean, timeoutMs: number): Promise<boolean> {
    if (isReady()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        isReady,
        resolve,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          resolve(isReady());
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  changed(): void {
    for (const waiter of this.waiters) {
      if (!waiter.isReady()) continue;
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve(true);
    }
  }
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');

/** A client connection holding one stream at a time: an incremental HTTP/1.1 chunked-response reader. */
class Connection {
  readonly socket: net.Socket;
  stream: Stream | null = null;
  isClosed = false;
  private buffer: Buffer = EMPTY;
  private state: 'idle' | 'head' | 'size' | 'data' | 'data-end' | 'trailer' = 'idle';
  private remaining = 0;
  private line = '';
  private readonly soak: Soak;

  constructor(socket: net.Socket, soak: Soak) {
    this.socket = socket;
    this.soak = soak;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.isClosed = true;
      const stream = this.stream;
      if (stream !== null && !stream.hasEnded) {
        stream.hasEnded = true;
        if (!stream.isClosing) this.soak.failures.add('connection closed by muxgate', `stream ${stream.id} (${stream.mode}), live: ${stream.isLive}`);
        stream.changed();
      }
    });
  }

  static open(port: number, soak: Soak): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new Connection(socket, soak));
      });
      socket.once('error', reject);
    });
  }

  request(stream: Stream): void {
    this.stream = stream;
    this.state = 'head';
    this.line = '';
    this.socket.write(`GET /stream.php?hold=stream&channel=${stream.channel}&stream=${stream.id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const stream = this.stream;
    if (stream === null || this.state === 'idle') {
      this.soak.failures.add('bytes outside a response', JSON.stringify(this.buffer.toString('latin1', 0, 80)));
      this.buffer = EMPTY;
      return;
    }
    for (;;) {
      if (this.state === 'head') {
        const end = this.buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = this.buffer.toString('latin1', 0, end);
        this.buffer = this.buffer.subarray(end + 4);
        if (!head.startsWith('HTTP/1.1 200 ') || !/\r\ntransfer-encoding: chunked/i.test(head)) {
          this.soak.failures.add('unexpected response head', JSON.stringify(head.slice(0, 200)));
          this.socket.destroy();
          return;
        }
        this.state = 'size';
      } else if (this.state === 'size' || this.state === 'trailer') {
        const end = this.buffer.indexOf(CRLF);
        if (end === -1) return;
        const text = this.buffer.toString('latin1', 0, end);
        this.buffer = this.buffer.subarray(end + 2);
        if (this.state === 'trailer') {
          this.endResponse(stream);
          if (this.buffer.length > 0) this.soak.failures.add('bytes after the last chunk', JSON.stringify(this.buffer.toString('latin1', 0, 80)));
          this.buffer = EMPTY;
          return;
        }
        const size = parseInt(text, 16);
        if (!/^[0-9a-f]+$/i.test(text) || !(size >= 0)) {
          this.soak.failures.add('bad chunk size', JSON.stringify(text.slice(0, 80)));
          this.socket.destroy();
          return;
        }
        if (size === 0) this.state = 'trailer';
        else {
          this.remaining = size;
          this.state = 'data';
        }
      } else if (this.state === 'data') {
        if (this.buffer.length === 0) return;
        const take = Math.min(this.remaining, this.buffer.length);
        this.body(stream, this.buffer.toString('latin1', 0, take));
        this.buffer = this.buffer.subarray(take);
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'data-end';
      } else if (this.state === 'data-end') {
        if (this.buffer.length < 2) return;
        if (this.buffer[0] !== 0x0d || this.buffer[1] !== 0x0a) {
          this.soak.failures.add('chunk not followed by CRLF', `stream ${stream.id}`);
          this.socket.destroy();
          return;
        }
        this.buffer = this.buffer.subarray(2);
        this.state = 'size';
      } else {
        return;
      }
    }
  }

  private body(stream: Stream, text: string): void {
    let start = 0;
    for (let newline = text.indexOf('\n'); newline !== -1; newline = text.indexOf('\n', start)) {
      this.soak.onLine(stream, this.line + text.slice(start, newline));
      this.line = '';
      start = newline + 1;
    }
    this.line += text.slice(start);
  }

  private endResponse(stream: Stream): void {
    this.state = 'idle';
    stream.hasEnded = true;
    if (stream.mode !== 'server' || !stream.hasClosePart) {
      this.soak.failures.add('stream ended by muxgate', `stream ${stream.id} (${stream.mode}), closing: ${stream.isClosing}`);
    }
    stream.changed();
  }
}

/** The http.Agent-backed POST /push client: a few keep-alive connections, closed at the end. */
class Pusher {
  private readonly url: URL;
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

  constructor(pushUrl: string) {
    this.url = new URL(pushUrl);
  }

  push(body: string): Promise<{ status: number; json: { parts?: number; deliveries?: number; gone?: string[]; channels?: Record<string, number> } }> {
    return new Promise((resolve, reject) => {
      const request = http.request(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: { 'Content-Type': `application/x-multiplex; boundary=${BOUNDARY}`, 'Content-Length': Buffer.byteLength(body) },
      }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => { text += chunk; });
        response.on('end', () => {
          try {
            resolve({ status: response.statusCode ?? 0, json: JSON.parse(text) });
          } catch {
            resolve({ status: response.statusCode ?? 0, json: {} });
          }
        });
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end(body);
    });
  }
}

function part(headers: string, body: string): string {
  return `--${BOUNDARY}\r\n${headers}\r\n${body}\r\n`;
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

function countFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function gauges(metricsUrl: string): Promise<{ heldStreams: number; openConnections: number }> {
  const text = await (await fetch(metricsUrl)).text();
  let heldStreams = 0;
  let openConnections = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('muxgate_held_streams')) heldStreams += Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith('muxgate_open_connections')) openConnections += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { heldStreams, openConnections };
}

/** V8's --trace-gc line for a full collection: the isolate (thread) and the heap it left, in MB. */
const GC_TRACE = /^\[\d+:0x[0-9a-f]+\]/;
const MARK_COMPACT = /\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (?:Incremental )?Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/;

/**
 * Reads muxgate's --trace-gc lines as they come. What a full collection leaves is the live heap: unlike RSS it
 * does not wander with V8's sizing decisions, so a leak of a few KiB per stream shows within a minute.
 */
class LiveHeap {
  readonly latest: Record<string, number> = {};
  collections = 0;
  /** muxgate's other output lines (the helper keeps every line; GC lines are taken out as they are read) */
  readonly lines: Array<Record<string, unknown>> = [];

  read(logs: Array<Record<string, unknown>>): void {
    for (const line of logs.splice(0)) {
      if (line.level !== undefined || typeof line.msg !== 'string' || !GC_TRACE.test(line.msg)) {
        this.lines.push(line);
        continue;
      }
      const match = MARK_COMPACT.exec(line.msg);
      if (match === null) continue;
      this.latest[match[1]!] = Number(match[2]) * 1024;
      this.collections++;
    }
  }
}

function mean(values: number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Growth after warm-up: the first third of the samples against the last third (medians), and the least-squares slope. */
function trend(samples: Sample[], value: (s: Sample) => number): Trend | null {
  if (samples.length < 3) return null;
  const third = Math.max(1, Math.floor(samples.length / 3));
  const first = samples.slice(0, third);
  const last = samples.slice(samples.length - third);
  const warm = median(first.map(value));
  const end = median(last.map(value));
  const ts = samples.map((s) => s.t);
  const vs = samples.map(value);
  const tMean = mean(ts);
  const vMean = mean(vs);
  let num = 0;
  let den = 0;
  for (let i = 0; i < samples.length; i++) {
    num += (ts[i]! - tMean) * (vs[i]! - vMean);
    den += (ts[i]! - tMean) ** 2;
  }
  const cycles = mean(last.map((s) => s.cycles)) - mean(first.map((s) => s.cycles));
  return {
    warm,
    end,
    growthPercent: (100 * (end - warm)) / warm,
    perMinute: den === 0 ? 0 : (60 * num) / den,
    perCycle: cycles > 0 ? (end - warm) / cycles : 0,
  };
}

/** The churn itself: streams, pushers, checks and counters. */
class Soak {
  readonly failures = new Failures();
  readonly tokenParts: PartCounts = { pushed: 0, expected: 0, received: 0, lost: 0 };
  readonly channelParts: PartCounts = { pushed: 0, expected: 0, received: 0, lost: 0 };
  readonly ended: Record<EndMode, number> = { drain: 0, abrupt: 0, server: 0 };
  /** token → how its stream ended, for the close events */
  readonly endedTokens = new Map<string, EndMode>();
  opened = 0;
  pushRequests = 0;
  isStopping = false;
  private nextId = 1;
  /** Live streams that are not closing: the token pusher picks from these. */
  private readonly pool: Stream[] = [];
  /** Per channel: the seq the next channel part gets. */
  private readonly channelNext: number[] = Array(CHANNELS).fill(1);
  private channelInFlight: Promise<void> | null = null;
  private readonly pusher: Pusher;
  private readonly port: number;
  private readonly options: Required<Pick<SoakOptions, 'streams' | 'lifetimeMs'>>;

  constructor(mux: Muxgate, options: Required<Pick<SoakOptions, 'streams' | 'lifetimeMs'>>) {
    this.pusher = new Pusher(mux.pushUrl);
    this.port = Number(new URL(mux.url).port);
    this.options = options;
  }

  get cycles(): number {
    return this.ended.drain + this.ended.abrupt + this.ended.server;
  }

  /** Runs the slots, the token pusher and the channel pusher until `until` resolves, then ends every stream. */
  async run(until: Promise<void>): Promise<void> {
    const slots = Array.from({ length: this.options.streams }, (_, slot) => this.runSlot(slot, until));
    const pushers = [this.runTokenPusher(), this.runChannelPusher()];
    await until;
    this.isStopping = true;
    await Promise.all([...slots, ...pushers]);
    this.pusher.agent.destroy();
  }

  onLine(stream: Stream, line: string): void {
    if (line.startsWith('token=')) {
      if (stream.isLive) this.failures.add('a second token line', `stream ${stream.id}`);
      stream.token = line.slice(6);
      stream.isLive = true;
      stream.channelFrom = this.channelNext[Number(stream.channel.slice(1))]!;
      // a channel part that came before the token must be older than what a live stream is owed
      if (stream.channelLast >= stream.channelFrom) this.failures.add('channel part from the future', `stream ${stream.id}`);
      this.addToPool(stream);
    } else if (line.startsWith('t ')) {
      const seq = this.ownEntry(line, `${stream.id}:`);
      this.tokenParts.received++;
      if (seq === 0) this.failures.add('token part for another stream', `stream ${stream.id} got ${JSON.stringify(line.slice(0, 80))}`);
      else if (seq <= stream.tokenReceived) this.failures.add('token part duplicated or reordered', `stream ${stream.id}: ${seq} after ${stream.tokenReceived}`);
      else {
        if (seq > stream.tokenReceived + 1) this.lose(this.tokenParts, seq - stream.tokenReceived - 1, 'token parts skipped', `stream ${stream.id}: ${seq} after ${stream.tokenReceived}`);
        stream.tokenReceived = seq;
      }
    } else if (line.startsWith('c ')) {
      const seq = this.ownEntry(line, `${stream.channel}:`);
      this.channelParts.received++;
      if (seq === 0) this.failures.add('channel part for another channel', `stream ${stream.id} (${stream.channel}) got ${JSON.stringify(line.slice(0, 80))}`);
      else if (stream.channelLast === 0) {
        if (stream.isLive && seq > stream.channelFrom) this.lose(this.channelParts, seq - stream.channelFrom, 'channel parts skipped', `stream ${stream.id}: first ${seq}, owed from ${stream.channelFrom}`);
        stream.channelLast = seq;
      } else if (seq <= stream.channelLast) {
        this.failures.add('channel part duplicated or reordered', `stream ${stream.id}: ${seq} after ${stream.channelLast}`);
      } else {
        if (seq > stream.channelLast + 1) this.lose(this.channelParts, seq - stream.channelLast - 1, 'channel parts skipped', `stream ${stream.id}: ${seq} after ${stream.channelLast}`);
        stream.channelLast = seq;
      }
    } else if (line === 'close') {
      if (stream.mode !== 'server') this.failures.add('close part for a stream not closed by a push', `stream ${stream.id}`);
      stream.hasClosePart = true;
    } else {
      this.failures.add('unexpected body line', JSON.stringify(line.slice(0, 80)));
    }
    stream.changed();
  }

  private lose(counts: PartCounts, n: number, kind: string, example: string): void {
    counts.lost += n;
    this.failures.add(kind, example);
  }

  /** The seq in `t 3:5 9:1` (or `c c2:40 c5:7`) that belongs to this stream, or 0. */
  private ownEntry(line: string, key: string): number {
    for (const entry of line.slice(2).split(' ')) if (entry.startsWith(key)) return Number(entry.slice(key.length));
    return 0;
  }

  private addToPool(stream: Stream): void {
    stream.poolIndex = this.pool.length;
    this.pool.push(stream);
  }

  private removeFromPool(stream: Stream): void {
    const at = stream.poolIndex;
    if (at < 0) return;
    const last = this.pool.pop()!;
    if (last !== stream) {
      this.pool[at] = last;
      last.poolIndex = at;
    }
    stream.poolIndex = -1;
  }

  private async runSlot(slot: number, until: Promise<void>): Promise<void> {
    // spread the first requests over a second rather than 300 at once
    await sleep((slot * 1000) / this.options.streams);
    let connection: Connection | null = null;
    while (!this.isStopping) {
      const roll = Math.random();
      const mode: EndMode = roll < 0.4 ? 'drain' : roll < 0.7 ? 'abrupt' : 'server';
      const stream = new Stream(this.nextId++, `c${randomInt(0, CHANNELS - 1)}`, mode);
      if (connection === null || connection.isClosed) {
        try {
          connection = await Connection.open(this.port, this);
        } catch (error) {
          this.failures.add('connect failed', (error as Error).message);
          await sleep(100);
          continue;
        }
      }
      connection.stream = stream;
      connection.request(stream);
      if (!(await stream.waitFor(() => stream.isLive || stream.hasEnded, OPEN_TIMEOUT_MS)) || !stream.isLive) {
        this.failures.add('stream did not open', `stream ${stream.id}: ${stream.hasEnded ? 'ended' : 'no token'} within ${OPEN_TIMEOUT_MS} ms`);
        stream.isClosing = true;
        connection.socket.destroy();
        connection = null;
        continue;
      }
      this.opened++;
      await Promise.race([sleep(randomInt(...this.options.lifetimeMs)), until]);
      connection = await this.finish(stream, connection);
    }
    connection?.socket.end();
  }

  /** Ends a stream its way; checks what it was owed. Returns the connection when it can be used again. */
  private async finish(stream: Stream, connection: Connection): Promise<Connection | null> {
    stream.isClosing = true;
    this.removeFromPool(stream);
    this.ended[stream.mode]++;
    this.endedTokens.set(stream.token, stream.mode);
    if (stream.mode === 'abrupt') {
      stream.isDestroyed = true;
      connection.socket.destroy();
      return null;
    }
    // What it is owed: every token part addressed to it, and every channel part pushed since it went live.
    const channelTo = this.channelNext[Number(stream.channel.slice(1))]! - 1;
    await stream.waitFor(() => stream.pendingPushes === 0, VERIFY_TIMEOUT_MS);
    await this.channelInFlight;
    if (stream.mode === 'server') {
      try {
        const answer = await this.pusher.push(`${part(`Multiplex-Token: ${stream.token}\r\nMultiplex-Close: true\r\n`, 'close\n')}--${BOUNDARY}--\r\n`);
        this.pushRequests++;
        if (answer.status !== 200 || answer.json.deliveries !== 1) this.failures.add('close push not delivered', `stream ${stream.id}: ${answer.status} ${JSON.stringify(answer.json)}`);
      } catch (error) {
        this.failures.add('push failed', (error as Error).message);
      }
      if (!(await stream.waitFor(() => stream.hasEnded, VERIFY_TIMEOUT_MS))) this.failures.add('closed stream did not end', `stream ${stream.id}`);
    }
    await stream.waitFor(() => stream.tokenReceived >= stream.tokenSent && (channelTo < stream.channelFrom || stream.channelLast >= channelTo), VERIFY_TIMEOUT_MS);
    this.tokenParts.expected += stream.tokenSent;
    if (stream.tokenReceived < stream.tokenSent) {
      this.lose(this.tokenParts, stream.tokenSent - stream.tokenReceived, 'token parts never received', `stream ${stream.id}: ${stream.tokenReceived} of ${stream.tokenSent}`);
    }
    if (channelTo >= stream.channelFrom) {
      this.channelParts.expected += channelTo - stream.channelFrom + 1;
      const have = Math.max(stream.channelLast, stream.channelFrom - 1);
      if (have < channelTo) this.lose(this.channelParts, channelTo - have, 'channel parts never received', `stream ${stream.id}: up to ${stream.channelLast} of ${stream.channelFrom}..${channelTo}`);
    }
    // a stream ended by a push leaves a reusable keep-alive connection: use it for the next stream half the time
    if (stream.mode === 'server' && stream.hasEnded && !connection.isClosed && Math.random() < 0.5) return connection;
    connection.socket.end();
    return null;
  }

  /** Pushes 1-8 parts per request, each to 1-3 live streams (and now and then a dead token), one request at a time. */
  private async runTokenPusher(): Promise<void> {
    while (!this.isStopping) {
      if (this.pool.length === 0) {
        await sleep(20);
        continue;
      }
      const targets: Stream[][] = [];
      let body = '';
      let bogus = '';
      for (let p = randomInt(1, 8); p > 0; p--) {
        const streams = new Set<Stream>();
        for (let n = randomInt(1, 3); n > 0; n--) streams.add(this.pool[randomInt(0, this.pool.length - 1)]!);
        const list = [...streams];
        const tokens = list.map((s) => s.token);
        if (bogus === '' && Math.random() < 0.05) {
          bogus = `soak.0.${'A'.repeat(22)}`;
          tokens.push(bogus);
        }
        body += part(`Multiplex-Token: ${tokens.join(', ')}\r\n`, `t ${list.map((s) => `${s.id}:${++s.tokenSent}`).join(' ')}\n`);
        for (const s of list) s.pendingPushes++;
        targets.push(list);
        this.tokenParts.pushed++;
      }
      try {
        const answer = await this.pusher.push(`${body}--${BOUNDARY}--\r\n`);
        this.pushRequests++;
        const gone = new Set(answer.json.gone ?? []);
        const named = targets.reduce((sum, list) => sum + list.length, 0);
        if (answer.status !== 200) this.failures.add('push refused', `${answer.status} ${JSON.stringify(answer.json).slice(0, 200)}`);
        if (bogus !== '' && !gone.has(bogus)) this.failures.add('a dead token was not reported gone', JSON.stringify(answer.json).slice(0, 200));
        let goneLive = 0;
        for (const list of targets) {
          for (const s of list) {
            if (gone.has(s.token) && !s.isDestroyed) {
              goneLive++;
              this.failures.add('live stream reported gone', `stream ${s.id} (${s.mode})`);
            }
          }
        }
        // every (part, stream) pair counts as a delivery, but for streams the client dropped meanwhile
        const sure = targets.reduce((sum, list) => sum + list.filter((s) => !s.isDestroyed).length, 0);
        const deliveries = answer.json.deliveries ?? -1;
        if (goneLive === 0 && (deliveries < sure || deliveries > named)) {
          this.failures.add('deliveries miscounted', `${deliveries} for ${named} pairs (${sure} to streams still open): ${JSON.stringify(answer.json).slice(0, 200)}`);
        }
      } catch (error) {
        this.failures.add('push failed', (error as Error).message);
      }
      for (const list of targets) {
        for (const s of list) {
          s.pendingPushes--;
          s.changed();
        }
      }
      await sleep(10);
    }
  }

  /** Pushes 1-3 channel parts per request, each to 1-2 of the channels, one request at a time. */
  private async runChannelPusher(): Promise<void> {
    while (!this.isStopping) {
      let body = '';
      for (let p = randomInt(1, 3); p > 0; p--) {
        const channels = new Set<number>();
        for (let n = randomInt(1, 2); n > 0; n--) channels.add(randomInt(0, CHANNELS - 1));
        const list = [...channels];
        body += part(`Multiplex-Channel: ${list.map((c) => `c${c}`).join(', ')}\r\n`, `c ${list.map((c) => `c${c}:${this.channelNext[c]!++}`).join(' ')}\n`);
        this.channelParts.pushed++;
      }
      const request = this.pusher.push(`${body}--${BOUNDARY}--\r\n`).then((answer) => {
        this.pushRequests++;
        if (answer.status !== 200) this.failures.add('push refused', `${answer.status} ${JSON.stringify(answer.json).slice(0, 200)}`);
      }, (error: Error) => this.failures.add('push failed', error.message));
      this.channelInFlight = request;
      await request;
      this.channelInFlight = null;
      await sleep(25);
    }
  }
}

/** A table row; `scale` turns the sampled unit (KiB, fds) into the shown one (MiB, fds). */
function formatTrend(name: string, t: Trend | null, unit: string, scale: number, sampledUnit: string, limits: string): string {
  if (t === null) return `| ${name} | not enough samples | | | | | ${limits} |`;
  const sign = (v: number) => (v >= 0 ? '+' : '');
  return `| ${name} | ${(t.warm / scale).toFixed(1)} ${unit} | ${(t.end / scale).toFixed(1)} ${unit} | ${sign(t.growthPercent)}${t.growthPercent.toFixed(1)} %`
    + ` | ${sign(t.perMinute)}${(t.perMinute / scale).toFixed(2)} ${unit}/min | ${sign(t.perCycle)}${t.perCycle.toFixed(3)} ${sampledUnit}/cycle | ${limits} |`;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const seconds = options.seconds;
  const streams = options.streams ?? 300;
  const lifetimeMs = options.lifetimeMs ?? [2000, 8000];
  const sampleSeconds = options.sampleSeconds ?? 10;
  const warmupSeconds = options.warmupSeconds ?? Math.max(2 * sampleSeconds, seconds / 5);
  const maxRssGrowthPercent = options.maxRssGrowthPercent ?? 20;
  const maxFdGrowthPercent = options.maxFdGrowthPercent ?? 10;
  const maxFdsPerCycle = options.maxFdsPerCycle ?? 0.05;
  const maxLiveHeapKiBPerCycle = options.maxLiveHeapKiBPerCycle ?? 2.5;
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));

  const workDir = mkdtempSync(join(tmpdir(), 'muxgate-soak-'));
  const eventLog = join(workDir, 'events.log');
  // --trace-gc is not allowed in NODE_OPTIONS: a preload turns it on, in every thread
  const traceGc = join(workDir, 'trace-gc.mjs');
  writeFileSync(traceGc, "import { setFlagsFromString } from 'node:v8';\nsetFlagsFromString('--trace-gc');\n");
  let fpm: PhpFpm | undefined;
  let mux: Muxgate | undefined;
  try {
    fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 16, env: { EVENT_LOG: eventLog } });
    // info, not the helper's debug: a line per stream would pile up in the helper's log array for the whole run
    mux = await startMuxgate({
      MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '2', MUX_EVENTS: 'close', MUX_LOG_LEVEL: 'info',
      ...options.muxgateEnv,
      NODE_OPTIONS: `--import ${JSON.stringify(traceGc)} ${options.muxgateEnv?.NODE_OPTIONS ?? ''}`.trim(),
    });
    const heap = new LiveHeap();
    heap.read(mux.logs);
    const pid = mux.child.pid!;
    await sleep(500);
    const baseline = { rssKiB: rssKiB(pid), fds: countFds(pid) };
    log(`soak: ${seconds} s, ${streams} streams living ${lifetimeMs[0]}-${lifetimeMs[1]} ms, muxgate pid ${pid} (2 shards), php-fpm on ${fpm.port}; idle: ${(baseline.rssKiB / 1024).toFixed(1)} MiB, ${baseline.fds} fds`);

    const soak = new Soak(mux, { streams, lifetimeMs });
    const samples: Sample[] = [];
    const startedAt = performance.now();
    const { promise: done, resolve: finish } = Promise.withResolvers<void>();
    let isDone = false;
    const end = () => {
      isDone = true;
      finish();
    };
    const deadline = setTimeout(end, seconds * 1000);
    options.signal?.addEventListener('abort', end, { once: true });
    const sampler = (async () => {
      for (let next = sampleSeconds; ; next += sampleSeconds) {
        const wait = startedAt + next * 1000 - performance.now();
        await Promise.race([sleep(Math.max(0, wait)), done]);
        // a sample at the deadline would catch the streams closing
        if (isDone || next >= seconds) return;
        const t = (performance.now() - startedAt) / 1000;
        const { heldStreams, openConnections } = await gauges(mux!.metricsUrl);
        heap.read(mux!.logs);
        const sample = { t, rssKiB: rssKiB(pid), fds: countFds(pid), heldStreams, openConnections, cycles: soak.cycles, liveHeapKiB: { ...heap.latest } };
        samples.push(sample);
        log(`t=${t.toFixed(0)}s rss=${(sample.rssKiB / 1024).toFixed(1)}MiB fds=${sample.fds} held=${heldStreams} conns=${openConnections} cycles=${sample.cycles}`
          + ` full GCs=${heap.collections} parts pushed/received: token ${soak.tokenParts.pushed}/${soak.tokenParts.received}`
          + ` channel ${soak.channelParts.pushed}/${soak.channelParts.received} lost ${soak.tokenParts.lost + soak.channelParts.lost} problems ${soak.failures.counts.size}`);
      }
    })();
    await soak.run(done);
    clearTimeout(deadline);
    await sampler;
    const churnSeconds = (performance.now() - startedAt) / 1000;

    // Every client has left: muxgate must get back to no stream, no connection, and its idle fds.
    const settleBy = Date.now() + SETTLE_TIMEOUT_MS;
    let left = await gauges(mux.metricsUrl);
    while ((left.heldStreams !== 0 || left.openConnections !== 0) && Date.now() < settleBy) {
      await sleep(200);
      left = await gauges(mux.metricsUrl);
    }
    if (left.heldStreams !== 0 || left.openConnections !== 0) {
      soak.failures.add('left open after every client left', `${left.heldStreams} held streams, ${left.openConnections} connections`);
    }
    let idleFds = countFds(pid);
    while (idleFds > baseline.fds + IDLE_FD_SLACK && Date.now() < settleBy) {
      await sleep(200);
      idleFds = countFds(pid);
    }
    const idleAfter = { rssKiB: rssKiB(pid), fds: idleFds };
    if (idleFds > baseline.fds + IDLE_FD_SLACK) soak.failures.add('fds not released', `${idleFds} fds idle after the churn, ${baseline.fds} before`);

    // Every stream that ended sent a close event with the reason of its end.
    const expectedEvents = soak.endedTokens.size;
    const reasons = new Map<string, string>();
    for (const settle = Date.now() + SETTLE_TIMEOUT_MS; ;) {
      reasons.clear();
      const lines = existsSync(eventLog) ? readFileSync(eventLog, 'utf8').split('\n') : [];
      for (const line of lines) {
        const [event, token, reason] = line.split(' ');
        if (event === 'close' && token !== undefined && reason !== undefined) reasons.set(token, reason);
      }
      if ([...soak.endedTokens.keys()].every((token) => reasons.has(token)) || Date.now() > settle) break;
      await sleep(250);
    }
    let seenEvents = 0;
    let wrongReason = 0;
    for (const [token, mode] of soak.endedTokens) {
      const reason = reasons.get(token);
      if (reason === undefined) continue;
      seenEvents++;
      if (reason !== (mode === 'server' ? 'closed' : 'client')) {
        wrongReason++;
        soak.failures.add('close event with the wrong reason', `${mode} stream: ${reason}`);
      }
    }
    if (seenEvents < expectedEvents) soak.failures.add('close events missing', `${expectedEvents - seenEvents} of ${expectedEvents}`);

    // Resources after warm-up.
    const warm = samples.filter((s) => s.t >= warmupSeconds);
    const rss = trend(warm, (s) => s.rssKiB);
    const fds = trend(warm, (s) => s.fds);
    const heapThreads = warm.length === 0 ? [] : Object.keys(warm[0]!.liveHeapKiB);
    const liveHeap = heapThreads.length === 0 ? null : trend(warm, (s) => heapThreads.reduce((sum, thread) => sum + s.liveHeapKiB[thread]!, 0));
    const resourceFailures: string[] = [];
    if (rss === null || fds === null) resourceFailures.push(`only ${warm.length} samples after the ${warmupSeconds} s warm-up: run longer`);
    if (rss !== null && rss.growthPercent > maxRssGrowthPercent) resourceFailures.push(`RSS grew ${rss.growthPercent.toFixed(1)} % after warm-up (limit ${maxRssGrowthPercent} %)`);
    if (fds !== null && fds.growthPercent > maxFdGrowthPercent) resourceFailures.push(`fds grew ${fds.growthPercent.toFixed(1)} % after warm-up (limit ${maxFdGrowthPercent} %)`);
    if (fds !== null && fds.perCycle > maxFdsPerCycle) resourceFailures.push(`fds grew ${fds.perCycle.toFixed(3)} per churn cycle after warm-up (limit ${maxFdsPerCycle})`);
    if (liveHeap !== null && liveHeap.perCycle > maxLiveHeapKiBPerCycle) {
      resourceFailures.push(`the heap left by full collections grew ${liveHeap.perCycle.toFixed(2)} KiB per churn cycle after warm-up (limit ${maxLiveHeapKiBPerCycle})`);
    }

    // muxgate's own complaints: warnings are listed, errors fail the run
    heap.read(mux.logs);
    const complaints = heap.lines.filter((line) => Number(line.level) >= 40);
    for (const line of complaints) if (Number(line.level) >= 50) soak.failures.add('muxgate logged an error', JSON.stringify(line).slice(0, 300));
    const warnings = new Map<string, number>();
    for (const line of complaints) warnings.set(String(line.msg), (warnings.get(String(line.msg)) ?? 0) + 1);

    const failures = [...soak.failures.lines(), ...resourceFailures];
    const lost = soak.tokenParts.lost + soak.channelParts.lost;
    const cycles = soak.cycles;
    const isOk = failures.length === 0 && lost === 0;
    const mib = (kib: number) => (kib / 1024).toFixed(1);
    const markdown = [
      `## muxgate soak: ${churnSeconds.toFixed(0)} s, ${streams} held streams, 2 shards, php-fpm`,
      '',
      `**${isOk ? 'PASS' : 'FAIL'}**${isOk ? '' : `: ${failures.length} problem(s), ${lost} part(s) lost`}`,
      '',
      '| | |',
      '| --- | --- |',
      `| churn | ${soak.opened} streams opened, ${cycles} ended (${soak.ended.drain} drained and closed by the client, ${soak.ended.abrupt} dropped abruptly, ${soak.ended.server} closed by a \`Multiplex-Close\` push): ${(cycles / churnSeconds).toFixed(1)} cycles/s |`,
      `| token parts | ${soak.tokenParts.pushed} pushed; ${soak.tokenParts.expected} deliveries owed to checked streams, ${soak.tokenParts.received} received in all, **${soak.tokenParts.lost} lost** |`,
      `| channel parts | ${soak.channelParts.pushed} pushed to ${CHANNELS} channels; ${soak.channelParts.expected} deliveries owed to checked streams, ${soak.channelParts.received} received in all, **${soak.channelParts.lost} lost** |`,
      `| push requests | ${soak.pushRequests} |`,
      `| close events | ${seenEvents} of ${expectedEvents} seen, ${wrongReason} with the wrong reason |`,
      `| muxgate warnings | ${warnings.size === 0 ? 'none' : [...warnings].map(([msg, n]) => `${n} × ${msg}`).join('; ')} |`,
      `| muxgate idle | before: ${mib(baseline.rssKiB)} MiB RSS, ${baseline.fds} fds; after: ${mib(idleAfter.rssKiB)} MiB RSS, ${idleAfter.fds} fds |`,
      '',
      `Resources after the ${warmupSeconds.toFixed(0)} s warm-up (${warm.length} samples every ${sampleSeconds} s; first third against last third):`,
      '',
      '| | after warm-up | end | growth | slope | per churn cycle | limits |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      formatTrend('RSS', rss, 'MiB', 1024, 'KiB', `+${maxRssGrowthPercent} %`),
      formatTrend('open fds', fds, 'fds', 1, 'fds', `+${maxFdGrowthPercent} %, ${maxFdsPerCycle} fds/cycle`),
      liveHeap === null
        ? `| live heap | no full collection by the end of warm-up (${heap.collections} in all) | | | | | not judged |`
        : formatTrend(`live heap (after full GC, ${heapThreads.length} threads)`, liveHeap, 'MiB', 1024, 'KiB', `${maxLiveHeapKiBPerCycle} KiB/cycle`),
      '',
      '| t (s) | RSS (MiB) | fds | held streams | open connections | cycles | live heap per thread (MiB) |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...samples.map((s) => `| ${s.t.toFixed(0)} | ${mib(s.rssKiB)} | ${s.fds} | ${s.heldStreams} | ${s.openConnections} | ${s.cycles}`
        + ` | ${Object.values(s.liveHeapKiB).map(mib).join(' + ') || '-'} |`),
      '',
      ...(failures.length === 0 ? [] : ['Problems:', '', ...failures.map((f) => `- ${f}`), '']),
    ].join('\n');

    return {
      isOk,
      failures,
      markdown,
      seconds: churnSeconds,
      streamsOpened: soak.opened,
      streamsEnded: { ...soak.ended },
      churnPerSecond: cycles / churnSeconds,
      tokenParts: { ...soak.tokenParts },
      channelParts: { ...soak.channelParts },
      pushRequests: soak.pushRequests,
      closeEvents: { expected: expectedEvents, seen: seenEvents, wrongReason },
      baseline,
      idleAfter,
      rss,
      fds,
      liveHeap,
      fullCollections: heap.collections,
      samples,
    };
  } finally {
    await mux?.stop();
    await fpm?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

function envSeconds(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`soak: ${name}=${JSON.stringify(text)} is invalid: expected a positive number\n`);
    process.exit(2);
  }
  return value;
}

if (import.meta.main) {
  const abort = new AbortController();
  // Ctrl-C ends the churn early; the checks, the summary and the clean-up still run.
  process.once('SIGINT', () => abort.abort());
  process.once('SIGTERM', () => abort.abort());
  const result = await runSoak({
    seconds: envSeconds('SOAK_SECONDS', 600),
    streams: Math.round(envSeconds('SOAK_STREAMS', 300)),
    signal: abort.signal,
  });
  process.stdout.write(result.markdown + '\n');
  process.exitCode = result.isOk ? 0 : 1;
}
