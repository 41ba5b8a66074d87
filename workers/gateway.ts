// A client request → a FastCGI exchange; its answer relayed as is (relay.ts), or multiplexed: the parts of its body
// routed, and the response itself held as a stream when the backend says so.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { mintToken } from '../src/protocol/token.ts';
import { AUTHORITY, parseRequestTarget } from '../src/protocol/request-target.ts';
import type { CgiHead } from '../src/protocol/cgi-response.ts';
import { MultiplexParser, type MultiplexParserLimits } from '../src/protocol/multiplex-parser.ts';
import {
  hasNoBody, interpretRelayHead, interpretStreamHead, interpretWebSocketHead, multiplexBoundaryOf, type RelayHead, type StreamHead,
  type WebSocketHead,
} from '../src/protocol/response-head.ts';
import { partLimits } from './part-limits.ts';
import type { ResponsePartSink } from './response-part-sink.ts';
import { ACK_TIMEOUT_MS } from './push-receipt.ts';
import type { Backend, FastcgiRequest } from './backend.ts';
import { cgiParams, isSecure } from './cgi-params.ts';
import { ConnectionTurns } from './connection-turns.ts';
import { FastcgiExchange, type ExchangeFailure } from './fastcgi-exchange.ts';
import type { HeldStream } from './held-stream.ts';
import type { HeldStreams } from './held-streams.ts';
import type { ShardMetrics } from './metrics.ts';
import { relayFramed, relayHeadOnly, relayUnframed, writeHead } from './relay.ts';
import type { Router } from './router.ts';
import { statusClass } from './metrics.ts';
import type { WebSocketClients } from './websocket-clients.ts';
import type { WebSocketOpening } from './websocket-upgrade.ts';

export interface GatewayContext {
  config: Readonly<Config>;
  shard: number;
  backend: Backend;
  streams: HeldStreams;
  router: Router;
  partSink: ResponsePartSink;
  webSocketClients: WebSocketClients;
  metrics: ShardMetrics;
  log: Logger;
  /** Warnings a backend can repeat with every request, at most one line per kind per interval. */
  warnings: RepeatedWarnings;
}

/** A failure's head: the connection closes after it (writeHead leaves Connection out over HTTP/2, where the stream ends). */
const FAILURE_HEADERS = ['Content-Type', 'text/plain; charset=utf-8', 'Connection', 'close'];

/** What a failed exchange answers the client. */
const FAILURE_STATUS: Record<ExchangeFailure, [number, string]> = {
  timeout: [504, 'Gateway Timeout'],
  bad_head: [502, 'Bad Gateway'],
  no_head: [502, 'Bad Gateway'],
};

export class Gateway {
  readonly #ctx: GatewayContext;
  readonly #limits: MultiplexParserLimits;
  readonly #turns = new ConnectionTurns((req, res) => this.#start(req, res));
  #nextRequestId = 1;

  constructor(ctx: GatewayContext) {
    this.#ctx = ctx;
    this.#limits = partLimits(ctx.config);
  }

  /** One request from a client: refused, or forwarded once the requests before it on its connection are answered. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#turns.take(req, res);
  }

  /**
   * A request stream of an HTTP/2 connection: forwarded without waiting for the others, for HTTP/1.1's one-at-a-time
   * rule does not apply; the connection's stream cap (MUX_H2_MAX_STREAMS) bounds its FastCGI requests in progress.
   * It starts once the read that brought it is done: a stream reset in the same read (rapid reset, CVE-2023-44487,
   * sends HEADERS and RST_STREAM together) is closed by then and never reaches the backend.
   */
  handleHttp2(req: Http2ServerRequest, res: Http2ServerResponse): void {
    setImmediate(this.#startHttp2, req, res);
  }

  readonly #startHttp2 = (req: Http2ServerRequest, res: Http2ServerResponse): void => {
    if (res.stream.closed || res.stream.destroyed) return void this.#ctx.metrics.http2ResetBeforeStart.inc();
    // As nginx: without a Host header, HTTP/2's :authority is the host (RFC 9113 §8.3.1), checked as a Host would be.
    const authority = req.headers[':authority'];
    if (req.headers.host === undefined && typeof authority === 'string') req.headers.host = authority;
    // node:http2's compatibility API has the members of IncomingMessage and ServerResponse the gateway uses.
    this.#start(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  };

  /** A WebSocket opening whose handshake is valid: the backend accepts it, or answers it as an ordinary request. */
  open(req: IncomingMessage, res: ServerResponse, opening: WebSocketOpening): void {
    this.#start(req, res, opening);
  }

  #start(req: IncomingMessage, res: ServerResponse, opening: WebSocketOpening | null = null): void {
    const problem = requestProblem(req);
    if (problem !== null) {
      this.#ctx.log.debug({ problem: problem.message }, 'request refused');
      return this.#fail(res, problem.status, problem.message);
    }
    this.#forward(req, res, opening).catch((error: unknown) => {
      // A client that went away mid-body is no server error.
      if (req.destroyed && !req.complete) return void this.#ctx.log.debug({ err: (error as Error).message }, 'client left mid-request');
      this.#ctx.log.error({ err: error }, 'request failed');
      this.#fail(res, 502, 'Bad Gateway');
    });
  }

  async #forward(req: IncomingMessage, res: ServerResponse, opening: WebSocketOpening | null): Promise<void> {
    const { config, log, metrics, warnings } = this.#ctx;
    const requestId = this.#nextRequestId++;
    const token = mintToken(config.nodeId, this.#ctx.shard);
    const declared = req.headers['content-length'];
    let contentLength: number | null = declared === undefined ? null : Number(declared);
    let bufferedBody: Buffer | null = null;
    if (contentLength === null && (req.headers['transfer-encoding'] !== undefined || hasUndeclaredHttp2Body(req))) {
      // PHP needs CONTENT_LENGTH: a chunked request body (or an HTTP/2 one of undeclared length) is read whole first, as
      // nginx does.
      bufferedBody = await readBody(req, config.maxRequestBytes);
      if (bufferedBody === null) return this.#fail(res, 413, 'Payload Too Large');
      contentLength = bufferedBody.length;
    } else if (contentLength !== null && contentLength > config.maxRequestBytes) {
      return this.#fail(res, 413, 'Payload Too Large');
    }
    const hasBody = bufferedBody !== null || (contentLength !== null && contentLength > 0);
    const params = cgiParams(req, token, config, contentLength);
    if (opening !== null) params.MULTIPLEX_TRANSPORT = 'websocket';
    let request: FastcgiRequest;
    try {
      request = await this.#ctx.backend.request(params, hasBody);
    } catch (error) {
      metrics.fastcgiErrors.inc({ kind: 'connect' });
      warnings.warn('backend_unavailable', { requestId, err: (error as Error).message }, 'backend unavailable');
      return this.#fail(res, 502, 'Bad Gateway');
    }
    if (res.destroyed) return void request.abort();
    const exchange = new FastcgiExchange(request, { timeoutMs: config.fastcgiTimeoutMs, metrics, log, warnings, label: { requestId, uri: req.url } }, {
      onHead: (head, rest) => this.#respond(req, res, exchange, token, requestId, head, rest, opening),
      onFailure: (failure) => this.#fail(res, ...FAILURE_STATUS[failure]),
    });
    res.once('close', exchange.onClientGone);
    if (bufferedBody !== null) exchange.sendWhole(bufferedBody);
    else if (hasBody) exchange.sendFrom(req);
    else exchange.sendNoBody();
  }

  #respond(req: IncomingMessage, res: ServerResponse, exchange: FastcgiExchange, token: string, requestId: number,
    head: CgiHead, rest: Buffer, opening: WebSocketOpening | null): void {
    let boundary: string | null;
    try {
      boundary = multiplexBoundaryOf(head);
    } catch (error) {
      return this.#refuseHead(res, exchange, requestId, error, 'backend_bad_boundary', 'backend sent a multiplexed response without a usable boundary');
    }
    if (boundary === null) return this.#relay(req, res, exchange, requestId, head, rest);
    let streamHead: StreamHead;
    try {
      streamHead = interpretStreamHead(head, req.httpVersionMajor === 1 && req.httpVersionMinor >= 1);
    } catch (error) {
      return this.#refuseHead(res, exchange, requestId, error, 'backend_bad_multiplex_header', 'backend sent a bad Multiplex-* header');
    }
    if (opening !== null) {
      if (streamHead.hold !== 'none' && head.status >= 200 && head.status < 300) {
        return this.#accept(req, res, exchange, token, requestId, head, streamHead, boundary, rest, opening);
      }
      // Refused: an ordinary response, after which the connection closes; nothing is held on it.
      streamHead.hold = 'none';
    }
    this.#ctx.metrics.requests.inc({ listener: 'public', class: statusClass(head.status) });
    writeHead(res, head.status, head.statusText, streamHead.headers);
    // HEAD, 204, 304: the head alone, and no stream: the token never becomes live. The body still feeds other streams.
    const stream = hasNoBody(req.method, head.status) ? (res.end(), null) : this.#openStream(req, res, token, streamHead);
    this.#readParts(exchange, boundary, rest, stream);
  }

  /** A WebSocket opening the backend accepts: 101, and the token is live; the body's parts are its first messages. */
  #accept(req: IncomingMessage, res: ServerResponse, exchange: FastcgiExchange, token: string, requestId: number,
    head: CgiHead, streamHead: StreamHead, boundary: string, rest: Buffer, opening: WebSocketOpening): void {
    let webSocketHead: WebSocketHead;
    try {
      webSocketHead = interpretWebSocketHead(head, opening.offeredProtocols);
    } catch (error) {
      return this.#refuseHead(res, exchange, requestId, error, 'backend_bad_websocket_protocol', 'backend picked a subprotocol the client did not offer');
    }
    const { metrics, streams, router, webSocketClients } = this.#ctx;
    metrics.requests.inc({ listener: 'public', class: '1xx' });
    const ws = opening.accept(webSocketHead.protocol, webSocketHead.headers);
    let stream: HeldStream | null = null;
    if (ws !== null) {
      const { headers, keepAliveData, ...behaviour } = streamHead;
      // A WebSocket's heartbeat is a ping: no bytes of the backend's go between its frames.
      stream = streams.openWebSocket(token, ws, req.socket, { ...behaviour, keepAliveData: null, requestUri: req.url ?? '/', isSecure: isSecure(req) });
      webSocketClients.attach(stream);
      router.resume(stream);
    }
    this.#readParts(exchange, boundary, rest, stream);
  }

  /** Routes the parts of a multiplexed body; the stream it opened (if any) follows its hold mode once they are handed on. */
  #readParts(exchange: FastcgiExchange, boundary: string, rest: Buffer, stream: HeldStream | null): void {
    exchange.feedsOthers();
    const { config, router, streams } = this.#ctx;
    const receipt = router.createReceipt(false);
    const parser = new MultiplexParser(boundary, this.#limits, this.#ctx.partSink.forResponse(receipt));
    exchange.readMultiplexed(parser, rest, () => {
      // The client sees its answer end only once the body's parts are numbered and written on every shard: a request
      // it sends next cannot overtake them.
      receipt.whenSettled(ACK_TIMEOUT_MS, () => {
        router.releaseReceipt(receipt);
        if (stream !== null) streams.backendDone(stream, config.holdTimeoutMs);
      });
    });
  }

  #relay(req: IncomingMessage, res: ServerResponse, exchange: FastcgiExchange, requestId: number, head: CgiHead, rest: Buffer): void {
    const { metrics, warnings } = this.#ctx;
    let relayHead: RelayHead;
    try {
      relayHead = interpretRelayHead(head);
    } catch (error) {
      return this.#refuseHead(res, exchange, requestId, error, 'backend_bad_content_length', 'backend sent an invalid or conflicting Content-Length');
    }
    metrics.requests.inc({ listener: 'public', class: statusClass(head.status) });
    if (hasNoBody(req.method, head.status)) relayHeadOnly(res, exchange, head, relayHead);
    else if (relayHead.contentLength === null) relayUnframed(res, exchange, head, relayHead, rest);
    else relayFramed(res, exchange, head, relayHead, rest, warnings);
  }

  /** A head muxgate will not pass on: a 502, counted and logged, the body dropped. */
  #refuseHead(res: ServerResponse, exchange: FastcgiExchange, requestId: number, error: unknown, kind: string, message: string): void {
    this.#ctx.metrics.fastcgiErrors.inc({ kind: 'bad_head' });
    this.#ctx.warnings.warn(kind, { requestId, err: (error as Error).message }, message);
    exchange.discardBody();
    this.#fail(res, 502, 'Bad Gateway');
  }

  /** Sends the head written so far and registers the held stream. */
  #openStream(req: IncomingMessage, res: ServerResponse, token: string, streamHead: StreamHead): HeldStream {
    res.flushHeaders();
    // From here on muxgate frames the chunks itself, once per part for every stream.
    if (streamHead.isChunked) res.chunkedEncoding = false;
    const { headers, ...behaviour } = streamHead;
    const stream = this.#ctx.streams.open(token, req, res, { ...behaviour, requestUri: req.url ?? '/', isSecure: isSecure(req) });
    // A stream whose connection left node:http is over for it: the connection may carry the next request later.
    if (stream.res === null) this.#turns.release(req.socket);
    this.#ctx.router.resume(stream);
    return stream;
  }

  #fail(res: ServerResponse, status: number, message: string): void {
    this.#ctx.metrics.requests.inc({ listener: 'public', class: statusClass(status) });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    writeHead(res, status, undefined, FAILURE_HEADERS);
    res.end(`${status} ${message}\n`);
  }
}

/**
 * A request whose framing, Host or target muxgate will not pass on (RFC 9112 §3.2, §6.1), or null; an absolute-form
 * target is turned into origin-form on the way.
 */
function requestProblem(req: IncomingMessage): { status: number; message: string } | null {
  const transferEncoding = req.headers['transfer-encoding'];
  if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked') {
    return { status: 501, message: 'Not Implemented: the only transfer coding accepted is chunked' };
  }
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'host') hosts++;
  const host = req.headers.host;
  if (hosts > 1 || (host !== undefined && !AUTHORITY.test(host))) return { status: 400, message: 'Bad Request: one valid Host header' };
  const target = parseRequestTarget(req.url ?? '', req.method ?? '');
  if (target === null) return { status: 400, message: 'Bad Request: the request target must be a path or an http(s) URL' };
  if (target.authority !== null) {
    // Absolute-form: the backend sees the path, and the target's authority as the host (RFC 9112 §3.2.2).
    req.url = target.path;
    req.headers.host = target.authority;
  }
  return null;
}

/** An HTTP/2 request whose body has no Content-Length: only its END_STREAM flag tells there is none. */
function hasUndeclaredHttp2Body(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 2 && !(req as unknown as Http2ServerRequest).stream.endAfterHeaders;
}

/** The whole request body, or null when it is larger than the limit. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
