// node:http servers over the sockets the main thread transfers to this shard; with TLS, the handshake of each public
// connection first (a tls.Server that never listens), and the choice of the protocol it speaks (HTTP/2: http2-front.ts).
import http from 'node:http';
import net, { type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Config } from '../src/config.ts';
import type { ListenerKind } from '../src/shard-messages.ts';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { TlsPair } from '../src/tls-pair.ts';
import type { ShardMetrics } from './metrics.ts';
import { WebSocketUpgrade } from './websocket-upgrade.ts';
import { Http2Front, type Http2Handler } from './http2-front.ts';

const PUSH_KEEP_ALIVE_MS = 75_000;
/** What TLS clients may pick (ALPN), in muxgate's order of preference. */
const ALPN_PROTOCOLS = ['h2', 'http/1.1'];
/** A handshake that ends in one of these was the client leaving, not a protocol failure: counted, logged at debug only. */
const CLIENT_LEFT = new Set(['ECONNRESET', 'EPIPE']);

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface Handlers {
  public: Handler;
  push: Handler;
  /** A WebSocket opening on the public listener, with the bytes the client sent after it (websocket-upgrade.ts). */
  upgrade: (req: http.IncomingMessage, socket: Socket, head: Buffer) => void;
  /** A request stream of an HTTP/2 connection on the public listener. */
  http2: Http2Handler;
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

/** A TLS server's options for this pair: the shards share the session ticket keys (src/tls-pair.ts). */
function secureOptions(pair: TlsPair): tls.SecureContextOptions & { ticketKeys: Buffer } {
  return { cert: pair.cert, key: pair.key, ticketKeys: Buffer.from(pair.ticketKeys.buffer, pair.ticketKeys.byteOffset, pair.ticketKeys.byteLength) };
}

/** What the front reports to: failed handshakes are outside input, so their warnings are bounded (repeated-warnings.ts). */
export interface FrontReporting {
  metrics: ShardMetrics;
  log: Logger;
  warnings: RepeatedWarnings;
}

export class HttpFront {
  readonly #servers: Record<ListenerKind, http.Server>;
  /** The public listener's handshakes, when it speaks TLS; it never listens: it is given each connection. */
  readonly #tls: tls.Server | null = null;
  /** The HTTP/2 sessions of the TLS connections that picked `h2`. */
  readonly #http2: Http2Front | null = null;
  readonly #log: Logger;
  readonly #warnings: RepeatedWarnings;
  readonly #connectionCounts: Int32Array;
  readonly #shard: number;
  readonly #metrics: ShardMetrics;
  readonly #sockets = new Set<Socket>();
  readonly #emptyWaiters: (() => void)[] = [];
  /** One 'close' listener for every connection, called with the socket as `this`: no closure per connection. */
  readonly #onSocketClose: (this: Socket) => void;

  constructor(config: Readonly<Config>, shard: number, connectionCounts: Int32Array, reporting: FrontReporting,
    tlsPair: TlsPair | null, handlers: Handlers) {
    const { metrics } = reporting;
    this.#shard = shard;
    this.#log = reporting.log;
    this.#warnings = reporting.warnings;
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
    if (tlsPair !== null) {
      this.#tls = tls.createServer({
        ...secureOptions(tlsPair),
        ALPNProtocols: ALPN_PROTOCOLS,
        // A client gets as long to finish its handshake as to send a request head after it (slowloris, in TLS).
        handshakeTimeout: config.headersTimeoutMs,
      });
      this.#http2 = new Http2Front(config, metrics, reporting.log, handlers.http2);
      this.#tls.on('secureConnection', (socket: TLSSocket) => this.#onSecure(socket));
      this.#tls.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => this.#onHandshakeFailed(error, socket));
    }
  }

  adopt(transferred: Socket, kind: ListenerKind): void {
    const socket = rewrap(transferred);
    this.#sockets.add(socket);
    this.#metrics.connections.all++;
    socket.on('close', this.#onSocketClose);
    if (kind === 'public' && this.#tls !== null) {
      // The handshake reads the connection from here (in C++: the thread's TLS wrap of the socket's handle).
      this.#metrics.connections.tlsHandshaking++;
      this.#tls.emit('connection', socket);
      return;
    }
    this.#servers[kind].emit('connection', socket);
    socket.resume();
  }

  /** A new certificate and key (SIGHUP): handshakes from now on use them; connections made, and held streams, keep theirs. */
  setTls(pair: TlsPair): void {
    this.#tls?.setSecureContext(secureOptions(pair));
  }

  /**
   * A TLS connection whose handshake is done: the one place that picks what it speaks, by what ALPN settled on
   * (`h2`: an HTTP/2 session; anything else, or no ALPN at all, is HTTP/1.1).
   */
  #onSecure(socket: TLSSocket): void {
    const { connections } = this.#metrics;
    connections.tlsHandshaking--;
    this.#metrics.tlsHandshakes.inc({ result: 'ok' });
    if (socket.alpnProtocol === 'h2') return this.#http2!.adopt(socket);
    connections.tlsHttp1++;
    socket.once('close', this.#onTlsHttp1Close);
    this.#servers.public.emit('connection', socket);
  }

  readonly #onTlsHttp1Close = (): void => {
    this.#metrics.connections.tlsHttp1--;
  };

  /** A handshake that failed, timed out or was left: counted, logged (bounded), and the connection closed unanswered. */
  #onHandshakeFailed(error: NodeJS.ErrnoException, socket: TLSSocket): void {
    this.#metrics.connections.tlsHandshaking--;
    const isTimeout = error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
    this.#metrics.tlsHandshakes.inc({ result: isTimeout ? 'timeout' : 'failed' });
    const fields = { peer: socket.remoteAddress, err: error.message, code: error.code };
    if (error.code !== undefined && CLIENT_LEFT.has(error.code)) this.#log.debug(fields, 'TLS client left during the handshake');
    else if (isTimeout) this.#warnings.warn('tls_handshake_timeout', fields, 'TLS handshake timed out: connection closed');
    else this.#warnings.warn('tls_handshake_failed', fields, 'TLS handshake failed: connection closed');
    socket.destroy();
  }

  #forget(socket: Socket): void {
    this.#sockets.delete(socket);
    Atomics.sub(this.#connectionCounts, this.#shard, 1);
    this.#metrics.connections.all--;
    if (this.#sockets.size === 0) for (const resolve of this.#emptyWaiters.splice(0)) resolve();
  }

  /** Closes idle keep-alive connections now and the rest as their responses finish; all of them after graceMs. */
  async close(graceMs: number): Promise<void> {
    this.#http2?.close();
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
