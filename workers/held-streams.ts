// token → live multiplexed response: writes, hold modes, heartbeats, timeouts, slow consumers.
import type { ServerResponse } from 'node:http';
import type { Logger } from '../src/log.ts';
import type { HoldMode } from '../src/protocol/headers.ts';
import type { ShardMetrics } from './metrics.ts';
import { Delivery, LAST_CHUNK, frameChunk } from './delivery.ts';

export type EndReason = 'client' | 'timeout' | 'closed' | 'shutdown' | 'overflow' | 'finished';

export interface StreamOptions {
  hold: HoldMode;
  isChunked: boolean;
  keepAliveMs: number;
  keepAliveData: Buffer | null;
  timeoutMs: number;
  /** What a close event sent to the backend names as the stream's request. */
  requestUri: string;
}

export class HeldStream {
  readonly token: string;
  readonly res: ServerResponse;
  readonly options: StreamOptions;
  /** The backend's multiplexed body has ended: the hold mode now decides the stream's life. */
  isBackendDone = false;
  hasEnded = false;
  lastWriteAt: number;
  deadline = 0;
  keepAliveFrame: Buffer | null = null;
  lastDelivery: Delivery | null = null;

  constructor(token: string, res: ServerResponse, options: StreamOptions, now: number) {
    this.token = token;
    this.res = res;
    this.options = options;
    this.lastWriteAt = now;
    if (options.keepAliveData !== null && options.keepAliveData.length > 0) {
      this.keepAliveFrame = options.isChunked ? frameChunk(options.keepAliveData) : options.keepAliveData;
    }
  }

  get isHeld(): boolean {
    return this.options.hold !== 'none';
  }
}

const TICK_MS = 250;

/** Results of HeldStreams.deliver. */
export const NOT_LIVE = 0;
export const DELIVERED = 1;
/** The stream already got this part: a token named twice in one part gets it once. */
export const DUPLICATE = 2;
export type DeliverResult = typeof NOT_LIVE | typeof DELIVERED | typeof DUPLICATE;

export class HeldStreams {
  private readonly streams = new Map<string, HeldStream>();
  /** Streams with a heartbeat or a deadline, visited by the tick. */
  private readonly timed = new Set<HeldStream>();
  private readonly metrics: ShardMetrics;
  private readonly log: Logger;
  private readonly maxBufferedBytes: number;
  private readonly onEnded: (stream: HeldStream, reason: EndReason) => void;
  private readonly ticker: NodeJS.Timeout;
  /** Shutting down: a stream is no longer held once its backend body ends. */
  private isClosing = false;

  constructor(metrics: ShardMetrics, log: Logger, maxBufferedBytes: number, onEnded: (stream: HeldStream, reason: EndReason) => void) {
    this.metrics = metrics;
    this.log = log;
    this.maxBufferedBytes = maxBufferedBytes;
    this.onEnded = onEnded;
    this.ticker = setInterval(() => this.tick(), TICK_MS).unref();
  }

  get size(): number {
    return this.streams.size;
  }

  /** Registers a stream whose head has been sent; parts for its token are written from now on. */
  open(token: string, res: ServerResponse, options: StreamOptions): HeldStream {
    const stream = new HeldStream(token, res, options, Date.now());
    this.streams.set(token, stream);
    if (stream.keepAliveFrame !== null) this.timed.add(stream);
    res.once('close', () => this.end(stream, 'client'));
    this.metrics.heldStreams.inc();
    this.log.debug({ token, hold: options.hold }, 'stream opened');
    return stream;
  }

  /** Writes one part to the token's stream. */
  deliver(token: string, delivery: Delivery): DeliverResult {
    const stream = this.streams.get(token);
    if (stream === undefined) return NOT_LIVE;
    if (stream.lastDelivery === delivery) return DUPLICATE;
    stream.lastDelivery = delivery;
    const body = delivery.body;
    if (body.length > 0) {
      stream.res.write(stream.options.isChunked ? delivery.chunked() : body);
      stream.lastWriteAt = Date.now();
      this.metrics.deliveredBytes.inc(body.length);
    }
    this.metrics.deliveries.inc();
    if (stream.res.writableLength > this.maxBufferedBytes) {
      this.metrics.slowConsumerDrops.inc();
      this.log.warn({ unsentBytes: stream.res.writableLength, limit: this.maxBufferedBytes }, 'slow consumer dropped');
      this.end(stream, 'overflow');
    } else if (delivery.isClose || stream.options.hold === 'response') {
      this.end(stream, 'closed');
    }
    return DELIVERED;
  }

  /** The backend's body ended: end the response unless it is to be held. */
  backendDone(stream: HeldStream, holdTimeoutMs: number): void {
    stream.isBackendDone = true;
    if (stream.hasEnded) return;
    if (stream.options.hold === 'none' || this.isClosing) {
      this.end(stream, this.isClosing ? 'shutdown' : 'finished');
      return;
    }
    const timeoutMs = stream.options.timeoutMs > 0 ? stream.options.timeoutMs : holdTimeoutMs;
    if (timeoutMs > 0) {
      stream.deadline = Date.now() + timeoutMs;
      this.timed.add(stream);
    }
  }

  end(stream: HeldStream, reason: EndReason): void {
    if (stream.hasEnded) return;
    stream.hasEnded = true;
    this.streams.delete(stream.token);
    this.timed.delete(stream);
    this.metrics.heldStreams.dec();
    this.metrics.streamsEnded.inc({ reason });
    const res = stream.res;
    if (reason === 'overflow') {
      res.destroy();
    } else if (reason !== 'client') {
      if (stream.options.isChunked) res.write(LAST_CHUNK);
      res.end();
    }
    this.log.debug({ token: stream.token, reason }, 'stream ended');
    this.onEnded(stream, reason);
  }

  /** Ends every held stream (those still fed by a backend body end when it does). */
  shutdown(): void {
    this.isClosing = true;
    for (const stream of this.streams.values()) if (stream.isBackendDone) this.end(stream, 'shutdown');
  }

  stop(): void {
    clearInterval(this.ticker);
  }

  private tick(): void {
    const now = Date.now();
    for (const stream of this.timed) {
      if (stream.deadline > 0 && now >= stream.deadline) {
        this.end(stream, 'timeout');
      } else if (stream.keepAliveFrame !== null && now - stream.lastWriteAt >= stream.options.keepAliveMs) {
        stream.res.write(stream.keepAliveFrame);
        stream.lastWriteAt = now;
      }
    }
  }
}
