// HTTP/2 sessions over the TLS connections whose ALPN settled on `h2`, and over MUX_H2C_LISTEN's: a node:http2 server
// that never listens, the limits that bound what one client can make the shard hold, and GOAWAY at shutdown.
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session, ServerHttp2Stream, ServerOptions } from 'node:http2';
import type { Socket } from 'node:net';
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { ShardMetrics } from './metrics.ts';

/** Header-list entries a request may carry (node's default is 128): ample for browsers, few for an HPACK bomb. */
const MAX_HEADER_LIST_PAIRS = 128;
/** Memory nghttp2 may use per session, in MiB (node's maxSessionMemory): beyond, new streams are refused. */
const MAX_SESSION_MEMORY_MIB = 10;
/** Protocol errors (invalid frames) and refused streams a session may cause before it is closed. */
const MAX_INVALID_FRAMES = 100;
const MAX_REJECTED_STREAMS = 100;
/** Settings in one SETTINGS frame (there are seven kinds). */
const MAX_SETTINGS = 32;
/** RST_STREAM frames from the client: a burst, then this many per second, beyond which the session ends (CVE-2023-44487). */
const STREAM_RESET_BURST = 1000;
const STREAM_RESET_RATE = 33;

/**
 * Every limit an HTTP/2 client meets, in one place (SECURITY.md, HTTP/2). Floods of PING and SETTINGS are nghttp2's to
 * stop: it ends a session whose unsent acknowledgements pile up (1000 by default), that is a client that sends them
 * and does not read.
 */
function http2ServerOptions(config: Pick<Readonly<Config>, 'http2MaxStreams' | 'maxRequestHeadBytes'>): ServerOptions {
  return {
    maxSessionMemory: MAX_SESSION_MEMORY_MIB,
    maxHeaderListPairs: MAX_HEADER_LIST_PAIRS,
    maxSessionInvalidFrames: MAX_INVALID_FRAMES,
    maxSessionRejectedStreams: MAX_REJECTED_STREAMS,
    maxSettings: MAX_SETTINGS,
    streamResetBurst: STREAM_RESET_BURST,
    streamResetRate: STREAM_RESET_RATE,
    settings: {
      maxConcurrentStreams: config.http2MaxStreams,
      // The same bound as an HTTP/1.1 request head (MUX_MAX_REQUEST_HEAD_BYTES), counted as HPACK decodes it.
      maxHeaderListSize: config.maxRequestHeadBytes,
      enablePush: false,
    },
  } as ServerOptions;
}

export type Http2Handler = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

export class Http2Front {
  readonly #server: Http2Server;
  readonly #metrics: ShardMetrics;
  readonly #log: Logger;
  readonly #sessions = new Set<ServerHttp2Session>();
  /** Shared by every stream: no closure per stream. */
  readonly #onStreamClose: () => void;

  constructor(config: Readonly<Config>, metrics: ShardMetrics, log: Logger, handler: Http2Handler) {
    this.#metrics = metrics;
    this.#log = log;
    this.#onStreamClose = () => {
      metrics.connections.http2Streams--;
    };
    // One server for the shard; each session gets its limits from it. A plain Http2Server: the TLS is already done.
    // node:http2 is loaded here only: a shard without TLS or h2c never needs it (docs/memory.md).
    this.#server = process.getBuiltinModule('node:http2').createServer(http2ServerOptions(config), handler);
    this.#server.on('session', (session: ServerHttp2Session) => this.#onSession(session));
    this.#server.on('stream', (stream: ServerHttp2Stream) => {
      metrics.connections.http2Streams++;
      stream.once('close', this.#onStreamClose);
    });
  }

  /** A connection that speaks HTTP/2 from its first byte on (a TLS socket whose ALPN is `h2`, or an h2c one). */
  adopt(socket: Socket): void {
    this.#metrics.connections.http2++;
    socket.once('close', this.#onSocketClose);
    this.#server.emit('connection', socket);
  }

  readonly #onSocketClose = (): void => {
    this.#metrics.connections.http2--;
  };

  #onSession(session: ServerHttp2Session): void {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    // A session's protocol errors are the client's (nghttp2 answers them with GOAWAY): logged at debug, never thrown.
    session.on('error', (error: NodeJS.ErrnoException) => this.#log.debug({ err: error.message, code: error.code }, 'HTTP/2 session error'));
  }

  /** Shutdown: GOAWAY to every session; each closes once its streams have ended (the held ones end at shutdown). */
  close(): void {
    for (const session of this.#sessions) session.close();
  }
}
