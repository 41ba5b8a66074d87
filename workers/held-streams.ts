// token → live multiplexed response: writes, hold modes, channels, heartbeats, timeouts, slow consumers.
// (Over 300 lines: the writes, their coalescing and the connections of detached streams share the hot path's state.)
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type Http2ServerResponse, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { ShardMetrics } from './metrics.ts';
import { ChannelIndex } from './channel-index.ts';
import { WebSocket } from 'ws';
import { type Delivery, LAST_CHUNK, frameChunk, webSocketFrame } from './delivery.ts';
import { HeldStream, WebSocketState, type EndReason, type StreamOptions } from './held-stream.ts';
import { detachFromHttp, returnToHttp } from './http-detach.ts';
import { SOCKETS, atTurnEnd } from './turn-end.ts';

export interface HeldStreamsOptions {
  metrics: ShardMetrics;
  log: Logger;
  warnings: RepeatedWarnings;
  /** MUX_MAX_BUFFERED_BYTES: unsent bytes a client may have before it is dropped as a slow consumer. */
  maxBufferedBytes: number;
  /** Channel parts carry an SSE `id:` line in event streams (history is kept, so clients can resume). */
  hasEventIds: boolean;
  /** How long a flush runs before it gives the event loop back (tests make it 0: 64 sockets per turn). */
  flushSliceMs?: number;
}

type EndedListener = (stream: HeldStream, reason: EndReason) => void;

const TICK_MS = 250;
/** Live channel parts a resuming stream may hold back while its replay is on the way. */
const MAX_HELD_BACK = 10_000;
/** Writes held back for the next flush (see #cork) up to this size; always well below MUX_MAX_BUFFERED_BYTES. */
const MAX_CORKED_BYTES = 65_536;
/** A flush starts at least this long after the previous one started (see #cork): the most a part waits for company. */
const MIN_FLUSH_INTERVAL_MS = 2;
/**
 * A flood: on average, each socket of a flush had this many parts to write. The next flush then waits until FLUSH_SPACING
 * × the last flush's duration has passed (at most MAX_FLUSH_DELAY_MS), so that more parts share each system call.
 */
const FLOOD_PARTS_PER_SOCKET = 3;
const FLUSH_SPACING = 4;
const MAX_FLUSH_DELAY_MS = 50;
/** A flush gives the event loop back after this long and goes on in the next turn (see #uncorkSome). */
const FLUSH_SLICE_MS = 10;
/** Sockets flushed between two looks at the clock. */
const SOCKETS_PER_CLOCK_READ = 64;
/** What a client may send behind a held stream's request before it is cut off. */
const MAX_UNREAD_BYTES = 65_536;

const { OPEN } = WebSocket;
const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** node:http marks the response that currently owns a socket. */
interface SocketWithMessage {
  _httpMessage?: unknown;
}

/** Results of a write. */
export const NOT_LIVE = 0;
export const DELIVERED = 1;
/** The stream already got this part: a stream named twice gets it once. */
export const DUPLICATE = 2;
export type DeliverResult = typeof NOT_LIVE | typeof DELIVERED | typeof DUPLICATE;

export class HeldStreams {
  readonly #streams = new Map<string, HeldStream>();
  /** Streams with a heartbeat or a deadline, visited by the tick. */
  readonly #timed = new Set<HeldStream>();
  /**
   * Detached streams by connection. Their listeners are shared, called with the socket as `this`: a held stream
   * costs a map entry, not three closures and their context.
   */
  readonly #detached = new Map<Socket, HeldStream>();
  readonly #onDetachedClose: (this: Socket) => void;
  readonly #onDetachedError: (error: Error) => void;
  readonly #onDetachedData: (this: Socket, chunk: Buffer) => void;
  /** Held HTTP/2 streams by session: the slow-consumer rule applies to a connection's streams together too. */
  readonly #http2Sessions = new Map<Http2Session, Set<HeldStream>>();
  /** Sockets corked since the last flush (see #cork). */
  #corked: Socket[] = [];
  /** A flush is under way, in slices (see #uncorkSome). */
  #isFlushing = false;
  /** The flush under way: when it started, and whether it is a flood's (see #cork). */
  #flushStartedAt = 0;
  #isFlood = false;
  /** Writes to corked sockets since the last flush started. */
  #corkedWrites = 0;
  /** performance.now() before which the next flush waits (see #cork). */
  #nextFlushAt = 0;
  readonly channels = new ChannelIndex();
  readonly #metrics: ShardMetrics;
  readonly #log: Logger;
  readonly #warnings: RepeatedWarnings;
  readonly #maxBufferedBytes: number;
  /** An HTTP/2 stream with more unsent than this has its connection's streams counted together (#checkHttp2Session). */
  readonly #http2SessionCheckBytes: number;
  readonly #hasEventIds: boolean;
  readonly #flushSliceMs: number;
  /** Told of every stream that ends (stream-events.ts sends close events). */
  readonly #endedListeners: EndedListener[] = [];
  readonly #ticker: NodeJS.Timeout;
  /** Shutting down: a stream is no longer held once its backend body ends. */
  #isClosing = false;

  constructor(options: HeldStreamsOptions) {
    this.#metrics = options.metrics;
    this.#log = options.log;
    this.#warnings = options.warnings;
    this.#maxBufferedBytes = options.maxBufferedBytes;
    this.#http2SessionCheckBytes = Math.min(MAX_CORKED_BYTES, options.maxBufferedBytes >> 4);
    this.#hasEventIds = options.hasEventIds;
    this.#flushSliceMs = options.flushSliceMs ?? FLUSH_SLICE_MS;
    this.#ticker = setInterval(() => this.#tick(), TICK_MS).unref();
    const held = this;
    this.#onDetachedClose = function (this: Socket) {
      const stream = held.#detached.get(this);
      if (stream === undefined) return;
      held.#detached.delete(this);
      held.end(stream, 'client');
    };
    this.#onDetachedError = (error: Error) => this.#log.debug({ err: error.message }, 'held stream connection error');
    this.#onDetachedData = function (this: Socket, chunk: Buffer) {
      const stream = held.#detached.get(this)!;
      const unread = stream.unread === null ? chunk : Buffer.concat([stream.unread, chunk]);
      if (unread.length > MAX_UNREAD_BYTES) return void this.destroy();
      stream.unread = unread;
    };
  }

  get size(): number {
    return this.#streams.size;
  }

  /** Registers a stream whose head has been sent; parts for its token and channels are written from now on. */
  open(token: string, req: IncomingMessage, res: ServerResponse, options: StreamOptions): HeldStream {
    if (req.httpVersionMajor === 2) return this.#openHttp2(token, (res as unknown as Http2ServerResponse).stream, options);
    const canKeepAlive = options.isChunked && res.shouldKeepAlive;
    const socket = detachFromHttp(req, res);
    const stream = socket === null
      ? new HeldStream(token, req.socket, res, canKeepAlive, options, Date.now())
      : new HeldStream(token, socket, null, canKeepAlive, options, Date.now());
    if (socket === null) res.once('close', () => this.end(stream, 'client'));
    else this.#watch(stream, socket);
    return this.#register(stream);
  }

  /** An HTTP/2 stream: written to directly, past the compatibility API; its RST_STREAM or its connection's end is the client leaving. */
  #openHttp2(token: string, h2: ServerHttp2Stream, options: StreamOptions): HeldStream {
    const session = h2.session!;
    const stream = new HeldStream(token, session.socket as Socket, null, false, options, Date.now());
    stream.http2 = h2;
    let streams = this.#http2Sessions.get(session);
    if (streams === undefined) {
      this.#http2Sessions.set(session, streams = new Set());
      session.once('close', () => this.#http2Sessions.delete(session));
    }
    streams.add(stream);
    h2.once('close', () => this.end(stream, 'client'));
    return this.#register(stream);
  }

  /**
   * Registers an accepted WebSocket: parts for its token and channels are written to it as messages. Its client's side
   * (messages, pongs, the close) is websocket-clients.ts's.
   */
  openWebSocket(token: string, ws: WebSocket, socket: Socket, options: StreamOptions): HeldStream {
    const stream = new HeldStream(token, socket, null, false, options, Date.now());
    stream.webSocket = new WebSocketState(ws);
    if (options.keepAliveMs > 0) this.#timed.add(stream);
    this.#metrics.webSockets.inc();
    return this.#register(stream);
  }

  #register(stream: HeldStream): HeldStream {
    const { token, options } = stream;
    this.#streams.set(token, stream);
    if (stream.keepAliveFrame !== null) this.#timed.add(stream);
    for (const channel of options.channels) this.channels.subscribe(stream, channel.name);
    this.#metrics.subscriptions.inc(options.channels.length);
    this.#metrics.heldStreams.inc();
    this.#log.debug({ token, hold: options.hold, channels: options.channels.length, webSocket: stream.webSocket !== null }, 'stream opened');
    return stream;
  }

  deliverToToken(token: string, delivery: Delivery): DeliverResult {
    const stream = this.#streams.get(token);
    return stream === undefined ? NOT_LIVE : this.write(stream, delivery);
  }

  /**
   * Writes a channel part to every local subscriber of the channel. Returns how many subscribers have
   * it now (some may have got it through their token); `tally.written` counts the new writes.
   */
  deliverToChannel(channel: string, delivery: Delivery, tally: { written: number }): number {
    const streams = this.channels.streamsOf(channel);
    if (streams === undefined) return 0;
    let reached = 0;
    let written = 0;
    for (const stream of streams) {
      const result = this.write(stream, delivery);
      if (result === DELIVERED) written++;
      if (result !== NOT_LIVE) reached++;
    }
    this.#metrics.hot.channelDeliveries += written;
    tally.written += written;
    return reached;
  }

  /** Writes what muxgate itself tells a stream (not a part: not counted as a delivery), framed for it. */
  notify(stream: HeldStream, notice: Buffer): void {
    if (stream.webSocket !== null) this.#writeRaw(stream, webSocketFrame(notice, false));
    else this.#writeRaw(stream, stream.options.isChunked ? frameChunk(notice) : notice);
  }

  /** Writes one part to a stream, once, in channel order. */
  write(stream: HeldStream, delivery: Delivery): DeliverResult {
    if (stream.lastDelivery === delivery) return DUPLICATE;
    // A WebSocket whose closing handshake has begun takes no more messages (RFC 6455 §5.5.1).
    if (stream.webSocket !== null && stream.webSocket.ws.readyState !== OPEN) return NOT_LIVE;
    stream.lastDelivery = delivery;
    const channelId = delivery.channelId;
    if (channelId > 0) {
      if (stream.catchUp !== null) {
        // Resuming (resume.ts): written after the replay, which comes from another thread of this process: only a
        // stalled sequencer lets this grow.
        if (stream.catchUp.push(delivery) > MAX_HELD_BACK) this.end(stream, 'overflow');
        return DELIVERED;
      }
      if (channelId <= stream.lastChannelId) return DUPLICATE;
      stream.lastChannelId = channelId;
    }
    const body = delivery.body;
    if (body.length > 0) {
      if (stream.webSocket !== null) {
        this.#writeRaw(stream, delivery.webSocketFrame(this.#hasEventIds && stream.options.isEventStream));
        this.#metrics.hot.webSocketMessagesOut++;
      } else {
        this.#writeRaw(stream, delivery.frame(stream.options.isChunked, this.#hasEventIds && stream.options.isEventStream));
      }
      this.#metrics.hot.deliveredBytes += body.length;
    }
    this.#metrics.hot.deliveries++;
    if (stream.hasEnded) return DELIVERED;
    if (delivery.isClose || stream.options.hold === 'response') this.end(stream, 'closed');
    return DELIVERED;
  }

  /** The backend's body ended: end the response unless it is to be held. */
  backendDone(stream: HeldStream, holdTimeoutMs: number): void {
    stream.isBackendDone = true;
    if (stream.hasEnded) return;
    if (stream.options.hold === 'none' || this.#isClosing) {
      this.end(stream, this.#isClosing ? 'shutdown' : 'finished');
      return;
    }
    // The backend's Multiplex-Timeout, 0 meaning never, else MUX_HOLD_TIMEOUT.
    const timeoutMs = stream.options.timeoutMs >= 0 ? stream.options.timeoutMs : holdTimeoutMs;
    if (timeoutMs > 0) {
      stream.deadline = Date.now() + timeoutMs;
      this.#timed.add(stream);
    }
  }

  end(stream: HeldStream, reason: EndReason): void {
    if (stream.hasEnded) return;
    stream.hasEnded = true;
    this.#streams.delete(stream.token);
    this.#timed.delete(stream);
    for (const channel of stream.options.channels) this.channels.unsubscribe(stream, channel.name);
    this.#metrics.subscriptions.dec(stream.options.channels.length);
    this.#metrics.heldStreams.dec();
    this.#metrics.streamsEnded.inc({ reason });
    if (stream.webSocket !== null) this.#endWebSocket(stream.webSocket, reason);
    else if (stream.http2 !== null) this.#endHttp2(stream, stream.http2, reason);
    else if (stream.res !== null) this.#endResponse(stream.res, stream.options.isChunked, reason);
    else this.#endDetached(stream, reason);
    this.#log.debug({ token: stream.token, reason }, 'stream ended');
    for (const listener of this.#endedListeners) listener(stream, reason);
  }

  /** Subscribes a listener to every stream's end; those that depend on the streams subscribe as they are built. */
  watchEnded(listener: EndedListener): void {
    this.#endedListeners.push(listener);
  }

  /** Ends every held stream (those still fed by a backend body end when it does). */
  shutdown(): void {
    this.#isClosing = true;
    for (const stream of this.#streams.values()) if (stream.isBackendDone) this.end(stream, 'shutdown');
  }

  stop(): void {
    clearInterval(this.#ticker);
  }

  /** A detached connection's events: the client leaving, or sending more (kept for node:http, within a limit). */
  #watch(stream: HeldStream, socket: Socket): void {
    this.#detached.set(socket, stream);
    socket.on('close', this.#onDetachedClose);
    socket.on('error', this.#onDetachedError);
    socket.on('data', this.#onDetachedData);
  }

  #unwatch(socket: Socket): void {
    this.#detached.delete(socket);
    socket.removeListener('close', this.#onDetachedClose);
    socket.removeListener('error', this.#onDetachedError);
    socket.removeListener('data', this.#onDetachedData);
  }

  #endResponse(res: ServerResponse, isChunked: boolean, reason: EndReason): void {
    if (reason === 'overflow') {
      res.destroy();
    } else if (reason !== 'client') {
      if (isChunked) res.write(LAST_CHUNK);
      res.end();
    }
  }

  /**
   * Closes a WebSocket with the code its end calls for, unless its closing has begun (the client's close, or muxgate's
   * for a protocol error or the backend's refusal, which set the code). ws waits for the client's close frame, at most
   * 30 s, then cuts the connection.
   */
  #endWebSocket(state: WebSocketState, reason: EndReason): void {
    this.#metrics.webSockets.dec();
    if (state.closeCode === 0) state.closeCode = reason === 'shutdown' ? 1001 : reason === 'overflow' ? 1008 : 1000;
    if (state.ws.readyState === OPEN) state.ws.close(state.closeCode);
    this.#metrics.webSocketCloses.inc({ code: String(state.closeCode) });
  }

  /** Ends an HTTP/2 stream: END_STREAM, or RST_STREAM for a slow consumer (what is queued for it is dropped). */
  #endHttp2(stream: HeldStream, h2: ServerHttp2Stream, reason: EndReason): void {
    const session = h2.session;
    if (session !== undefined) this.#http2Sessions.get(session)?.delete(stream);
    if (h2.closed || h2.destroyed) return;
    if (reason === 'overflow') h2.close(NGHTTP2_CANCEL);
    else h2.end();
  }

  /**
   * A connection whose held streams together have more unsent than MUX_MAX_BUFFERED_BYTES (a client that opens its
   * connection's flow-control window to none of them): all of them end as slow consumers, and the connection with
   * GOAWAY. Only looked at when a stream has more than a sixteenth of the limit (at most MAX_CORKED_BYTES) unsent.
   */
  #checkHttp2Session(h2: ServerHttp2Stream): void {
    const session = h2.session;
    const streams = session === undefined ? undefined : this.#http2Sessions.get(session);
    if (streams === undefined) return;
    let unsent = 0;
    for (const stream of streams) unsent += stream.http2!.writableLength;
    if (unsent <= this.#maxBufferedBytes) return;
    this.#warnings.warn('slow_consumer', { unsentBytes: unsent, limit: this.#maxBufferedBytes, http2Streams: streams.size }, 'slow consumer dropped: HTTP/2 connection');
    for (const stream of [...streams]) {
      this.#metrics.slowConsumerDrops.inc();
      this.end(stream, 'overflow');
    }
    // GOAWAY now; the connection closes once the streams' resets are out.
    session!.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    session!.close();
  }

  /** Ends a detached stream: its connection goes back to node:http when it can carry another request. */
  #endDetached(stream: HeldStream, reason: EndReason): void {
    const socket = stream.socket;
    if (reason === 'client' || reason === 'overflow') return void socket.destroy();
    if (stream.options.isChunked) socket.write(LAST_CHUNK);
    if (!stream.canKeepAlive || this.#isClosing || !socket.readable) return void socket.end();
    this.#unwatch(socket);
    // node:http answers the next request itself: what is corked for this stream leaves now, not at the next flush.
    if (socket.writableCorked) socket.uncork();
    returnToHttp(socket, stream.unread);
  }

  #writeRaw(stream: HeldStream, bytes: Buffer): void {
    if (stream.http2 !== null) return this.#writeHttp2(stream, stream.http2, bytes);
    const { res, socket } = stream;
    // Straight to the socket when the stream owns it (the head is out, framing is ours); through the
    // response while a pipelined request before it still has the socket.
    if (res === null || (socket as SocketWithMessage)._httpMessage === res) {
      if (!socket.writableCorked) this.#cork(socket);
      socket.write(bytes);
      this.#corkedWrites++;
      // Enough for one writev: what is unsent past this point is what the client has not taken.
      if (socket.writableLength >= MAX_CORKED_BYTES) socket.uncork();
    } else {
      res.write(bytes);
    }
    stream.lastWriteAt = Date.now();
    const unsent = res === null ? socket.writableLength : res.writableLength;
    if (unsent > this.#maxBufferedBytes) {
      this.#metrics.slowConsumerDrops.inc();
      this.#warnings.warn('slow_consumer', { unsentBytes: unsent, limit: this.#maxBufferedBytes }, 'slow consumer dropped');
      this.end(stream, 'overflow');
    }
  }

  /**
   * One DATA frame's payload (nghttp2 splits it only at the peer's frame size). node:http2 coalesces a session's
   * frames written in one turn into one socket write, so there is nothing to cork.
   */
  #writeHttp2(stream: HeldStream, h2: ServerHttp2Stream, bytes: Buffer): void {
    if (h2.closed || h2.destroyed) return;
    h2.write(bytes);
    stream.lastWriteAt = Date.now();
    const unsent = h2.writableLength;
    if (unsent > this.#maxBufferedBytes) {
      this.#metrics.slowConsumerDrops.inc();
      this.#warnings.warn('slow_consumer', { unsentBytes: unsent, limit: this.#maxBufferedBytes }, 'slow consumer dropped: HTTP/2 stream');
      this.end(stream, 'overflow');
    } else if (unsent > this.#http2SessionCheckBytes) {
      this.#checkHttp2Session(h2);
    }
  }

  /**
   * Holds a socket's writes until the next flush, so that the parts written meanwhile leave in one writev per socket
   * instead of one write each. A flush runs at the end of the turn that wrote, unless the last one started less than
   * MIN_FLUSH_INTERVAL_MS ago: a part waits at most that long for company, so a moderate rate is written at once and a
   * busy one in twos and threes. The parts that arrive while a long flush runs share the next one. In a flood (several
   * parts per socket in each flush), flushes are spaced: writing then takes at most a fifth of the shard's time, and
   * as many parts as arrive meanwhile share each system call.
   */
  #cork(socket: Socket): void {
    socket.cork();
    if (this.#corked.push(socket) !== 1) return;
    const wait = this.#nextFlushAt - performance.now();
    if (wait <= 0) atTurnEnd(SOCKETS, this.#uncorkSome);
    else setTimeout(this.#uncorkSome, wait);
  }

  /**
   * Flushes the corked sockets, for at most FLUSH_SLICE_MS: a flush to tens of thousands of sockets gives the event loop
   * back between slices (requests, pushes, the other shards' parts), and goes on in the next turn. Parts written to a
   * socket meanwhile join its queue in order, whether or not it was flushed already.
   */
  readonly #uncorkSome = (): void => {
    const startedAt = performance.now();
    if (!this.#isFlushing) {
      this.#flushStartedAt = startedAt;
      // After a flood's flush comes a spaced one, whose parts piled up because of the spacing: only a flush that was not
      // held back tells whether parts arrive faster than flushes write them. So a flood that ends is noticed at once.
      this.#isFlood = !this.#isFlood && this.#corkedWrites >= FLOOD_PARTS_PER_SOCKET * this.#corked.length;
      this.#corkedWrites = 0;
    }
    const corked = this.#corked;
    let i = 0;
    while (i < corked.length) {
      corked[i++].uncork();
      if (i % SOCKETS_PER_CLOCK_READ === 0 && i < corked.length && performance.now() - startedAt >= this.#flushSliceMs) {
        this.#corked = corked.slice(i);
        this.#isFlushing = true;
        atTurnEnd(SOCKETS, this.#uncorkSome);
        return;
      }
    }
    this.#corked = [];
    this.#isFlushing = false;
    const endedAt = performance.now();
    this.#nextFlushAt = this.#isFlood
      ? endedAt + Math.min(MAX_FLUSH_DELAY_MS, FLUSH_SPACING * (endedAt - this.#flushStartedAt))
      : this.#flushStartedAt + MIN_FLUSH_INTERVAL_MS;
  };

  /** Multiplex-Keep-Alive on a WebSocket: a ping, or the end of a client that did not answer the last one in time. */
  #ping(stream: HeldStream, now: number): void {
    const state = stream.webSocket!;
    if (state.isPingUnanswered) {
      // Not listening: no close frame would be read either.
      state.closeCode = 1006;
      state.ws.terminate();
      return this.end(stream, 'timeout');
    }
    state.isPingUnanswered = true;
    state.ws.ping();
    stream.lastWriteAt = now;
  }

  #tick(): void {
    const now = Date.now();
    for (const stream of this.#timed) {
      if (stream.deadline > 0 && now >= stream.deadline) {
        this.end(stream, 'timeout');
      } else if (stream.webSocket !== null) {
        if (stream.options.keepAliveMs > 0 && now - stream.lastWriteAt >= stream.options.keepAliveMs) this.#ping(stream, now);
      } else if (stream.keepAliveFrame !== null && now - stream.lastWriteAt >= stream.options.keepAliveMs) {
        this.#writeRaw(stream, stream.keepAliveFrame);
      }
    }
  }
}
