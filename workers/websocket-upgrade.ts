// A WebSocket opening (RFC 6455 §4.2): ws checks the handshake, the backend decides (gateway.ts), ws completes it.
// Until the backend has answered, the connection is an HTTP exchange whose refusal is relayed as any response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocketServer, WebSocket } from 'ws';
import type { Logger } from '../src/log.ts';
import type { ShardMetrics } from './metrics.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const http = process.getBuiltinModule('node:http');
const { createRequire } = process.getBuiltinModule('node:module');

/** What the gateway does with an opening the handshake checks let through. */
export type OpeningHandler = (req: IncomingMessage, res: ServerResponse, opening: WebSocketOpening) => void;

/** An opening waiting for its backend: accepted (101) or answered as an ordinary request through `res`. */
export interface WebSocketOpening {
  /** The subprotocols the client offers, in its order. */
  readonly offeredProtocols: readonly string[];
  /** Completes the handshake; the WebSocket, or null when the client has gone meanwhile. */
  accept(protocol: string | null, headers: readonly string[]): WebSocket | null;
}

/** The limits ws enforces on a client's frames (the handshake checks ws does not make are in #handle). */
export interface UpgradeLimits {
  /** MUX_WS_MAX_MESSAGE_BYTES: a larger message closes the connection with 1009. */
  maxMessageBytes: number;
}

/** A fragmented message may not arrive in more pieces than this (each costs a buffer until the message is whole). */
const MAX_FRAGMENTS = 1024;

export class WebSocketUpgrade {
  readonly #limits: UpgradeLimits;
  /** Made on the first opening: ws (with node:tls and zlib) is 2 MiB of each shard, which a shard without WebSockets spares. */
  #server: WebSocketServer | null = null;
  readonly #onOpening: OpeningHandler;
  readonly #metrics: ShardMetrics;
  readonly #log: Logger;
  /** The opening being accepted: ws asks for its subprotocol and headers synchronously, inside accept(). */
  #accepting: { protocol: string | null; headers: readonly string[]; ws: WebSocket | null } | null = null;

  constructor(limits: UpgradeLimits, metrics: ShardMetrics, log: Logger, onOpening: OpeningHandler) {
    this.#onOpening = onOpening;
    this.#metrics = metrics;
    this.#log = log;
    this.#limits = limits;
  }

  #serverOnFirstUse(): WebSocketServer {
    if (this.#server !== null) return this.#server;
    const { WebSocketServer } = createRequire(import.meta.url)('ws') as typeof import('ws');
    const server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: this.#limits.maxMessageBytes,
      maxFragments: MAX_FRAGMENTS,
      verifyClient: ({ req }, done) => this.#open(req, done),
      handleProtocols: () => this.#accepting?.protocol ?? false,
    });
    server.on('headers', (headers: string[]) => {
      const extra = this.#accepting!.headers;
      for (let i = 0; i < extra.length; i += 2) headers.push(`${extra[i]}: ${extra[i + 1]}`);
    });
    server.on('wsClientError', (error: Error, socket: Socket) => this.#refuse(socket, 400, error.message));
    this.#server = server;
    return server;
  }

  /** Tells whether a request asks for a WebSocket: other upgrades (h2c, say) are served as ordinary requests. */
  static isOpening(req: IncomingMessage): boolean {
    return req.headers.upgrade?.toLowerCase() === 'websocket';
  }

  /** An upgrade request node:http has handed over, with the bytes that followed it. */
  handle(req: IncomingMessage, socket: Socket, head: Buffer): void {
    try {
      this.#handle(req, socket, head);
    } catch (error) {
      // A bug, not the client's doing: this connection ends, the shard goes on.
      this.#log.error({ err: error }, 'WebSocket opening failed');
      socket.destroy();
    }
  }

  #handle(req: IncomingMessage, socket: Socket, head: Buffer): void {
    // Pipelined behind a request whose response is still going out: the opening waits for it, as any request would.
    const inProgress = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (inProgress) return void inProgress.once('close', () => this.#handleWhenOpen(req, socket, head));
    if (req.httpVersion !== '1.1') return this.#refuse(socket, 400, 'a WebSocket opening must be HTTP/1.1');
    // RFC 6455 §4.4: another version gets 426 and the versions spoken (ws would also accept the draft version 8).
    if (req.headers['sec-websocket-version'] !== '13') {
      return this.#refuse(socket, 426, 'Sec-WebSocket-Version must be 13', 'Sec-WebSocket-Version: 13\r\n');
    }
    this.#serverOnFirstUse().handleUpgrade(req, socket, head, (ws) => {
      this.#accepting!.ws = ws;
    });
  }

  #handleWhenOpen(req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (socket.destroyed || !socket.writable) return void socket.destroy();
    this.handle(req, socket, head);
  }

  #open(req: IncomingMessage, done: (isAccepted: boolean) => void): void {
    const socket = req.socket;
    // The exchange is HTTP until the backend accepts: a refusal is any response, relayed, then the connection closes.
    const res = new http.ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.once('finish', () => socket.end());
    const offered = req.headers['sec-websocket-protocol'];
    this.#onOpening(req, res, {
      // ws has checked the header's syntax: a comma-separated list of tokens.
      offeredProtocols: offered === undefined ? [] : offered.split(',').map((protocol) => protocol.trim()),
      accept: (protocol, headers) => {
        res.detachSocket(socket);
        this.#accepting = { protocol, headers, ws: null };
        try {
          done(true);
          return this.#accepting.ws;
        } finally {
          this.#accepting = null;
        }
      },
    });
  }

  #refuse(socket: Socket, status: number, reason: string, extraHeaders = ''): void {
    this.#metrics.requests.inc({ listener: 'public', class: '4xx' });
    this.#log.debug({ status, reason }, 'WebSocket opening refused');
    const body = `${status} ${http.STATUS_CODES[status]}: ${reason}\n`;
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n${extraHeaders}`
      + `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
}
