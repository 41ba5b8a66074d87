// node:http servers over the sockets the main thread transfers to this shard.
import http from 'node:http';
import net, { type Socket } from 'node:net';
import type { Config } from '../src/config.ts';
import type { ListenerKind } from '../src/shard-messages.ts';
import type { ShardMetrics } from './metrics.ts';
import { WebSocketUpgrade } from './websocket-upgrade.ts';

const PUSH_KEEP_ALIVE_MS = 75_000;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface Handlers {
  public: Handler;
  push: Handler;
  /** A WebSocket opening on the public listener, with the bytes the client sent after it (websocket-upgrade.ts). */
  upgrade: (req: http.IncomingMessage, socket: Socket, head: Buffer) => void;
}

/**
 * The same connection in a socket made by this thread. A socket transferred from the main thread arrives with its
 * properties in V8's dictionary mode (slower to read, and 1.7 KiB more per held stream: 7.7 → 6.0 KiB at 10,000);
 * one constructed here around the transferred handle keeps fast properties. Nothing has been read yet.
 */
export function rewrap(transferred: Socket): Socket {
  const source = transferred as unknown as { _handle: unknown };
  const handle = source._handle;
  source._handle = null;
  return new net.Socket({ handle, allowHalfOpen: transferred.allowHalfOpen, readable: true, writable: true } as net.SocketConstructorOpts);
}

export class HttpFront {
  readonly #servers: Record<ListenerKind, http.Server>;
  readonly #connectionCounts: Int32Array;
  readonly #shard: number;
  readonly #metrics: ShardMetrics;
  readonly #sockets = new Set<Socket>();
  readonly #emptyWaiters: (() => void)[] = [];
  /** One 'close' listener for every connection, called with the socket as `this`: no closure per connection. */
  readonly #onSocketClose: (this: Socket) => void;

  constructor(config: Readonly<Config>, shard: number, connectionCounts: Int32Array, metrics: ShardMetrics,
    handlers: Handlers) {
    this.#shard = shard;
    this.#connectionCounts = connectionCounts;
    this.#metrics = metrics;
    const front = this;
    this.#onSocketClose = function (this: Socket) {
      front.#forget(this);
    };
    const options: http.ServerOptions = {
      maxHeaderSize: config.maxRequestHeadBytes,
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      // The timeouts are only checked this often (30 s by default): a slowloris must be cut in time.
      connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs / 4),
      keepAliveTimeout: 5_000,
    };
    this.#servers = {
      // Only WebSocket openings leave node:http; any other Upgrade (h2c, say) is served as an ordinary request.
      public: http.createServer({ ...options, shouldUpgradeCallback: WebSocketUpgrade.isOpening }, handlers.public)
        .on('upgrade', handlers.upgrade),
      // Pushers are few and long-lived: idle connections are kept as nginx keeps them (its 75 s), so that a pusher's
      // pool seldom sends on a connection the server is closing at that moment ("socket hang up").
      push: http.createServer({ ...options, keepAliveTimeout: PUSH_KEEP_ALIVE_MS }, handlers.push),
    };
    for (const server of Object.values(this.#servers)) {
      // These servers never listen; 'listening' starts node:http's connection tracking,
      // which enforces headersTimeout/requestTimeout and lets idle connections be closed.
      server.emit('listening');
      server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
        // Garbage behind a response in progress (a held stream) cannot be answered inside it.
        const inProgress = (socket as { _httpMessage?: http.ServerResponse })._httpMessage;
        if (!socket.writable || error.code === 'ECONNRESET' || inProgress?.headersSent) return socket.destroy();
        const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
        this.#metrics.requests.inc({ listener: server === this.#servers.public ? 'public' : 'push', class: `${status / 100 | 0}xx` });
        socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      });
    }
  }

  adopt(transferred: Socket, kind: ListenerKind): void {
    const socket = rewrap(transferred);
    this.#sockets.add(socket);
    this.#metrics.openConnections.inc();
    socket.on('close', this.#onSocketClose);
    this.#servers[kind].emit('connection', socket);
    socket.resume();
  }

  #forget(socket: Socket): void {
    this.#sockets.delete(socket);
    Atomics.sub(this.#connectionCounts, this.#shard, 1);
    this.#metrics.openConnections.dec();
    if (this.#sockets.size === 0) for (const resolve of this.#emptyWaiters.splice(0)) resolve();
  }

  /** Closes idle keep-alive connections now and the rest as their responses finish; all of them after graceMs. */
  async close(graceMs: number): Promise<void> {
    for (const server of Object.values(this.#servers)) {
      server.on('request', (_req, res: http.ServerResponse) => res.setHeader('Connection', 'close'));
      server.closeIdleConnections();
    }
    const poll = setInterval(() => {
      for (const server of Object.values(this.#servers)) server.closeIdleConnections();
    }, 100);
    if (this.#sockets.size > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.#emptyWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
    }
    clearInterval(poll);
    for (const socket of this.#sockets) socket.destroy();
  }
}
