// Child process: holds N streams on raw sockets (muxgate, Nchan, Pushpin: the request is the caller's) and counts the
// `@T=<µs>;` markers they receive, whatever the framing around them.
import net from 'node:net';
import { LatencyHistogram, type SparseHistogram } from './histogram.ts';

export type SubscriberCommand =
  /** `request` is a raw HTTP/1.1 request; `{channel}` in it becomes `channel`, or `channel-<i>` (i counts from `firstIndex`) when `isChannelEach`. */
  | { type: 'open'; port: number; count: number; firstSource: number; request: string; channel: string; isChannelEach: boolean; firstIndex: number }
  /** final: include the latency histogram, then start counting afresh. */
  | { type: 'stats'; final: boolean }
  | { type: 'close' };

export type SubscriberReport =
  | { type: 'opened'; tokens: string[]; failedOpens: Array<[status: string, count: number]> }
  | { type: 'failed'; message: string }
  | { type: 'stats'; deliveries: number; lastAt: number; closed: number; histogram: SparseHistogram | null };

const SOURCE_ADDRESSES = 9; // 127.0.0.1..9: each has its own ephemeral ports
const MAX_CONNECTING = 256;
const MAX_RETRIES = 10;
/** Retries back off 100 ms more each time, as an EventSource would wait before reconnecting. */
const RETRY_STEP_MS = 100;
const HEAD_END = Buffer.from('\r\n\r\n');
// Marker scanner states: `@`, `T`, `=`, digits, `;`.
const SEEK = 0;
const AFTER_AT = 1;
const AFTER_T = 2;
const DIGITS = 3;
const AT = 0x40;

const histogram = new LatencyHistogram();
let deliveries = 0;
/** Epoch ms (performance.timeOrigin + now()) of the last marker received. */
let lastAt = 0;
let closed = 0;
/** Status lines of stream opens that failed and were retried, with their counts. */
const failedOpens = new Map<string, number>();
const subscriptions: Subscription[] = [];

function send(report: SubscriberReport): void {
  process.send!(report);
}

class Subscription {
  socket!: net.Socket;
  private readonly port: number;
  private readonly request: string;
  private readonly localAddress: string;
  private readonly onOpened: (token: string) => void;
  private attempts = 0;
  private head: Buffer | null = null;
  private isOpen = false;
  private state = SEEK;
  private value = 0;
  private readonly onHeadBound = (chunk: Buffer) => this.onHead(chunk);
  private readonly onBodyBound = (chunk: Buffer) => this.scan(chunk, performance.timeOrigin + performance.now());

  constructor(port: number, request: string, localAddress: string, onOpened: (token: string) => void) {
    this.port = port;
    this.request = request;
    this.localAddress = localAddress;
    this.onOpened = onOpened;
    this.connect();
  }

  private connect(): void {
    this.attempts++;
    this.head = null;
    const socket = net.connect({ host: '127.0.0.1', port: this.port, localAddress: this.localAddress });
    this.socket = socket;
    socket.once('connect', () => socket.write(this.request));
    socket.on('data', this.onHeadBound);
    // Once open, a reset is counted as a closed stream.
    socket.on('error', (error) => {
      if (!this.isOpen) fail(`stream from ${this.localAddress}: ${error.message}`);
    });
  }

  private onHead(chunk: Buffer): void {
    const head = this.head === null ? chunk : Buffer.concat([this.head, chunk]);
    const end = head.indexOf(HEAD_END);
    if (end < 0) {
      this.head = head;
      return;
    }
    this.head = null;
    const text = head.toString('latin1', 0, end);
    // muxgate's bench backend names the stream's token; the peers' streams have none.
    const token = /\r\nX-Token: *([^\r]+)/i.exec(text)?.[1] ?? '';
    if (!text.startsWith('HTTP/1.1 200 ')) {
      // As an EventSource would, try again: the count of retries is reported.
      if (this.attempts > MAX_RETRIES) return fail(`unexpected response head, ${this.attempts} times: ${JSON.stringify(text)}`);
      const status = text.split('\r\n', 1)[0];
      failedOpens.set(status, (failedOpens.get(status) ?? 0) + 1);
      this.socket.destroy();
      setTimeout(() => this.connect(), RETRY_STEP_MS * this.attempts);
      return;
    }
    this.isOpen = true;
    this.socket.removeListener('data', this.onHeadBound);
    this.socket.on('data', this.onBodyBound);
    this.socket.once('close', () => closed++);
    this.onOpened(token);
    if (end + 4 < head.length) this.onBodyBound(head.subarray(end + 4));
  }

  /** Counts the markers in a chunk; a marker may be split across chunks. */
  private scan(chunk: Buffer, now: number): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === SEEK) {
        const at = chunk.indexOf(AT, i);
        if (at < 0) return;
        this.state = AFTER_AT;
        i = at + 1;
        continue;
      }
      const byte = chunk[i++];
      if (this.state === AFTER_AT) {
        this.state = byte === 0x54 ? AFTER_T : byte === AT ? AFTER_AT : SEEK;
      } else if (this.state === AFTER_T) {
        this.state = byte === 0x3d ? DIGITS : SEEK;
        this.value = 0;
      } else if (byte >= 0x30 && byte <= 0x39) {
        this.value = this.value * 10 + (byte - 0x30);
      } else {
        if (byte === 0x3b) {
          deliveries++;
          lastAt = now;
          histogram.record(now * 1000 - this.value);
        }
        this.state = SEEK;
      }
    }
  }
}

function fail(message: string): void {
  send({ type: 'failed', message });
  process.exit(1);
}

function open({ port, count, firstSource, request, channel, isChannelEach, firstIndex }: Extract<SubscriberCommand, { type: 'open' }>): void {
  const tokens: string[] = new Array(count);
  failedOpens.clear();
  let launched = 0;
  let opened = 0;
  const launch = () => {
    const index = launched++;
    const source = `127.0.0.${1 + ((firstSource + index) % SOURCE_ADDRESSES)}`;
    const name = isChannelEach ? `${channel}-${firstIndex + index}` : channel;
    subscriptions.push(new Subscription(port, request.replace('{channel}', name), source, (token) => {
      tokens[index] = token;
      if (++opened === count) send({ type: 'opened', tokens, failedOpens: [...failedOpens] });
      else if (launched < count) launch();
    }));
  };
  while (launched < Math.min(count, MAX_CONNECTING)) launch();
}

process.on('message', (command: SubscriberCommand) => {
  switch (command.type) {
    case 'open':
      open(command);
      break;
    case 'stats':
      send({ type: 'stats', deliveries, lastAt, closed, histogram: command.final ? histogram.toSparse() : null });
      if (command.final) {
        deliveries = 0;
        lastAt = 0;
        histogram.reset();
      }
      break;
    case 'close':
      for (const subscription of subscriptions) subscription.socket.destroy();
      process.exit(0);
  }
});
// The orchestrator is gone: nothing left to measure.
process.once('disconnect', () => process.exit(0));
