// One held stream: a live multiplexed response, its token, its connection and what it has been written.
import type { ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { StreamHead } from '../src/protocol/response-head.ts';
import { type Delivery, frameChunk } from './delivery.ts';

export type EndReason = 'client' | 'timeout' | 'closed' | 'shutdown' | 'overflow' | 'finished';

/** How the stream behaves, as its head says (an event stream's channel parts carry an `id:` line when history is kept). */
export interface StreamOptions extends Omit<StreamHead, 'headers'> {
  /** What a close event sent to the backend names as the stream's request. */
  requestUri: string;
  /** The stream's request came over TLS: close events and WebSocket messages tell the backend so (HTTPS=on). */
  isSecure: boolean;
}

/** A held stream's WebSocket: the connection ws speaks on, and what muxgate tracks of the client's side. */
export class WebSocketState {
  readonly ws: WebSocket;
  /** Client messages for the backend, in order, the first one in flight (websocket-clients.ts). */
  readonly messages: Array<{ data: Buffer; isBinary: boolean }> = [];
  /** A ping went out and its pong has not come back. */
  isPingUnanswered = false;
  /** The close code sent or received; 0 while open. */
  closeCode = 0;

  constructor(ws: WebSocket) {
    this.ws = ws;
  }
}

export class HeldStream {
  readonly token: string;
  readonly socket: Socket;
  /** Null once the connection has left node:http (see http-detach.ts); else writes go through the response. */
  readonly res: ServerResponse | null;
  /** The connection may serve another request once the stream ends. */
  readonly canKeepAlive: boolean;
  /** Bytes the client sent behind the stream's request (a pipelined request), kept for node:http. */
  unread: Buffer | null = null;
  readonly options: StreamOptions;
  /** The backend's multiplexed body has ended: the hold mode now decides the stream's life. */
  isBackendDone = false;
  hasEnded = false;
  lastWriteAt: number;
  deadline = 0;
  keepAliveFrame: Buffer | null = null;
  lastDelivery: Delivery | null = null;
  /** The highest channel id written: a resumed stream skips what it already got. */
  lastChannelId = 0;
  /** Live channel parts held back while the history replay is on its way (resume.ts). */
  catchUp: Delivery[] | null = null;
  /** Null for an HTTP response. */
  webSocket: WebSocketState | null = null;
  /** The HTTP/2 stream of a stream over HTTP/2 (`socket` is then its connection's): parts are its DATA frames. */
  http2: ServerHttp2Stream | null = null;

  constructor(token: string, socket: Socket, res: ServerResponse | null, canKeepAlive: boolean, options: StreamOptions, now: number) {
    this.token = token;
    this.socket = socket;
    this.res = res;
    this.canKeepAlive = canKeepAlive;
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
