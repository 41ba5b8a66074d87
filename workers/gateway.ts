// A client request → a FastCGI request; its response relayed as is, or multiplexed into held streams.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { mintToken } from '../src/protocol/token.ts';
import { AUTHORITY, parseRequestTarget } from '../src/protocol/request-target.ts';
import { CgiHeadParser, type CgiHead } from '../src/protocol/cgi-response.ts';
import { MultiplexParser, type MultiplexParserLimits } from '../src/protocol/multiplex-parser.ts';
import { partLimits } from './part-limits.ts';
import type { ResponsePartSink } from './response-part-sink.ts';
import { ACK_TIMEOUT_MS } from './push-receipt.ts';
import {
  multiplexBoundary, parseChannelSubscriptions, parseHold, parseKeepAlive, parseMediaType, parseSeconds,
  type ChannelSubscription, type KeepAlive,
} from '../src/protocol/headers.ts';
import type { Backend, FastcgiRequest } from './backend.ts';
import { cgiParams } from './cgi-params.ts';
import { ConnectionTurns } from './connection-turns.ts';
import type { HeldStream, HeldStreams, StreamOptions } from './held-streams.ts';
import type { ShardMetrics } from './metrics.ts';
import type { Router } from './router.ts';
import { statusClass } from './metrics.ts';

const MAX_CGI_HEAD_BYTES = 65_536;
const MAX_STDERR_LOGGED = 4096;
// A body without Content-Length up to this size, complete within one turn of the event loop, is sent framed by one.
const MAX_HELD_BODY_BYTES = 65_536;
const SSE_KEEP_ALIVE = Buffer.from(':\n\n');
// Response headers the backend may not set: framing belongs to muxgate.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);

interface StreamHead {
  /** Response headers as name, value, name, value… */
  headers: string[];
  options: StreamOptions;
}

export interface GatewayContext {
  config: Readonly<Config>;
  shard: number;
  backend: Backend;
  streams: HeldStreams;
  router: Router;
  partSink: ResponsePartSink;
  metrics: ShardMetrics;
  log: Logger;
  /** Warnings a backend can repeat with every request, at most one line per kind per interval. */
  warnings: RepeatedWarnings;
}

export class Gateway {
  private readonly ctx: GatewayContext;
  private readonly limits: MultiplexParserLimits;
  private readonly turns = new ConnectionTurns((req, res) => this.start(req, res));
  private nextRequestId = 1;

  constructor(ctx: GatewayContext) {
    this.ctx = ctx;
    this.limits = partLimits(ctx.config);
  }

  /** One request from a client: refused, or forwarded once the requests before it on its connection are answered. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.turns.take(req, res);
  }

  private start(req: IncomingMessage, res: ServerResponse): void {
    const problem = requestProblem(req);
    if (problem !== null) {
      this.ctx.log.debug({ problem: problem.message }, 'request refused');
      return this.fail(res, problem.status, problem.message);
    }
    this.forward(req, res).catch((error: unknown) => {
      // A client that went away mid-body is no server error.
      if (req.destroyed && !req.complete) return void this.ctx.log.debug({ err: (error as Error).message }, 'client left mid-request');
      this.ctx.log.error({ err: error }, 'request failed');
      this.fail(res, 502, 'Bad Gateway');
    });
  }

  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { config, log, metrics, warnings } = this.ctx;
    const requestId = this.nextRequestId++;
    const token = mintToken(config.nodeId, this.ctx.shard);
    const declared = req.headers['content-length'];
    let contentLength: number | null = declared === undefined ? null : Number(declared);
    let bufferedBody: Buffer | null = null;
    if (contentLength === null && req.headers['transfer-encoding'] !== undefined) {
      // PHP needs CONTENT_LENGTH: a chunked request body is read whole first, as nginx does.
      bufferedBody = await readBody(req, config.maxRequestBytes);
      if (bufferedBody === null) return this.fail(res, 413, 'Payload Too Large');
      contentLength = bufferedBody.length;
    } else if (contentLength !== null && contentLength > config.maxRequestBytes) {
      return this.fail(res, 413, 'Payload Too Large');
    }
    const startedAt = performance.now();
    let fcgi: FastcgiRequest;
    try {
      const hasBody = bufferedBody !== null || (contentLength !== null && contentLength > 0);
      fcgi = await this.ctx.backend.request(cgiParams(req, token, config, contentLength), hasBody);
    } catch (error) {
      metrics.fastcgiErrors.inc({ kind: 'connect' });
      warnings.warn('backend_unavailable', { requestId, err: (error as Error).message }, 'backend unavailable');
      return this.fail(res, 502, 'Bad Gateway');
    }
    if (res.destroyed) {
      fcgi.abort();
      return;
    }
    let stderr = '';
    fcgi.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR_LOGGED) stderr += chunk.toString('utf8', 0, MAX_STDERR_LOGGED - stderr.length);
    });
    fcgi.stderr.once('end', () => {
      if (stderr !== '') warnings.warn('backend_stderr', { requestId, uri: req.url, stderr }, 'backend stderr');
    });

    const headParser = new CgiHeadParser(MAX_CGI_HEAD_BYTES);
    // MUX_FASTCGI_TIMEOUT runs only while the backend is what muxgate waits for (its head, or taking more of the body),
    // never while a slow client is still sending the body: that one is MUX_REQUEST_TIMEOUT's (a 408).
    let timeout: NodeJS.Timeout | null = null;
    let isWaitingForHead = true;
    const waitForBackend = (isWaiting: boolean) => {
      if (timeout !== null) clearTimeout(timeout);
      timeout = isWaiting && isWaitingForHead ? setTimeout(onTimeout, config.fastcgiTimeoutMs) : null;
    };
    const onTimeout = () => {
      stopWaitingForHead();
      fcgi.abort();
      metrics.fastcgiErrors.inc({ kind: 'timeout' });
      warnings.warn('backend_timeout', { requestId, uri: req.url, timeoutMs: config.fastcgiTimeoutMs }, 'backend response head timed out');
      this.fail(res, 504, 'Gateway Timeout');
    };
    const stopWaitingForHead = () => {
      waitForBackend(false);
      isWaitingForHead = false;
      fcgi.stdout.removeListener('data', onHeadData);
      fcgi.stdout.removeListener('end', onEndBeforeHead);
    };
    if (bufferedBody !== null) {
      fcgi.stdin.end(bufferedBody);
      waitForBackend(true);
    } else if (contentLength !== null && contentLength > 0) {
      sendBody(req, fcgi.stdin, waitForBackend);
    } else {
      waitForBackend(true);
    }
    const onClientGone = () => fcgi.abort();
    res.once('close', onClientGone);

    const onHeadData = (chunk: Buffer) => {
      let parsed: ReturnType<CgiHeadParser['push']>;
      try {
        parsed = headParser.push(chunk);
      } catch (error) {
        stopWaitingForHead();
        fcgi.stdout.resume();
        metrics.fastcgiErrors.inc({ kind: 'bad_head' });
        warnings.warn('backend_bad_head', { requestId, uri: req.url, err: (error as Error).message }, 'backend sent a malformed CGI head');
        this.fail(res, 502, 'Bad Gateway');
        return;
      }
      if (parsed === null) return;
      stopWaitingForHead();
      metrics.fastcgiDuration.observe((performance.now() - startedAt) / 1000);
      this.respond(req, res, fcgi, token, requestId, parsed.head, parsed.rest, onClientGone);
    };
    const onEndBeforeHead = () => {
      stopWaitingForHead();
      // the client left and the request was aborted for it: no backend error
      if (res.destroyed) return void log.debug({ requestId, uri: req.url }, 'client left before the backend answered');
      metrics.fastcgiErrors.inc({ kind: 'no_head' });
      warnings.warn('backend_no_head', { requestId, uri: req.url, exit: String(fcgi.getExitStatus()) }, 'backend ended without a response head');
      this.fail(res, 502, 'Bad Gateway');
    };
    fcgi.stdout.on('data', onHeadData);
    fcgi.stdout.once('end', onEndBeforeHead);
  }

  private respond(req: IncomingMessage, res: ServerResponse, fcgi: FastcgiRequest, token: string, requestId: number,
    head: CgiHead, rest: Buffer, onClientGone: () => void): void {
    let contentType: string | undefined;
    for (const [name, value] of head.headers) if (name.toLowerCase() === 'content-type') contentType = value;
    let boundary: string | null;
    try {
      boundary = multiplexBoundary(contentType);
    } catch (error) {
      this.ctx.metrics.fastcgiErrors.inc({ kind: 'bad_head' });
      this.ctx.warnings.warn('backend_bad_boundary', { requestId, err: (error as Error).message }, 'backend sent a multiplexed response without a usable boundary');
      fcgi.stdout.resume();
      return this.fail(res, 502, 'Bad Gateway');
    }
    if (boundary === null) return this.relay(req, res, fcgi, head, rest);
    let streamHead: StreamHead;
    try {
      streamHead = interpretStreamHead(req, head);
    } catch (error) {
      this.ctx.metrics.fastcgiErrors.inc({ kind: 'bad_head' });
      this.ctx.warnings.warn('backend_bad_multiplex_header', { requestId, err: (error as Error).message }, 'backend sent a bad Multiplex-* header');
      fcgi.stdout.resume();
      return this.fail(res, 502, 'Bad Gateway');
    }
    this.ctx.metrics.requests.inc({ listener: 'public', class: statusClass(head.status) });
    res.writeHead(head.status, head.statusText, streamHead.headers);
    // HEAD, 204, 304: the head alone, and no stream: the token never becomes live. The body still feeds other streams.
    const stream = hasNoBody(req, head) ? (res.end(), null) : this.openStream(req, res, token, streamHead.options);
    // The body may feed other streams: the requester leaving does not stop it.
    res.removeListener('close', onClientGone);
    const { config, router, streams } = this.ctx;
    const receipt = router.createReceipt(false);
    const parser = new MultiplexParser(boundary, this.limits, this.ctx.partSink.forResponse(receipt));
    if (rest.length > 0) parser.push(rest);
    fcgi.stdout.on('data', (chunk: Buffer) => parser.push(chunk));
    fcgi.stdout.once('end', () => {
      parser.end();
      // The client sees its answer end only once the body's parts are numbered and written on every shard: a request
      // it sends next cannot overtake them.
      receipt.whenSettled(ACK_TIMEOUT_MS, () => {
        router.releaseReceipt(receipt);
        if (stream !== null) streams.backendDone(stream, config.holdTimeoutMs);
      });
    });
  }

  /** Sends the head written so far and registers the held stream. */
  private openStream(req: IncomingMessage, res: ServerResponse, token: string, options: StreamOptions): HeldStream {
    res.flushHeaders();
    // From here on muxgate frames the chunks itself, once per part for every stream.
    if (options.isChunked) res.chunkedEncoding = false;
    const stream = this.ctx.streams.open(token, req, res, options);
    // A stream whose connection left node:http is over for it: the connection may carry the next request later.
    if (stream.res === null) this.turns.release(req.socket);
    this.resume(stream);
    return stream;
  }

  /** A stream that subscribes with `since` first gets the channel parts it missed, then live ones. */
  private resume(stream: HeldStream): void {
    const resumed = stream.options.channels.filter((channel) => channel.since !== null);
    if (resumed.length === 0 || !this.ctx.config.channelHistory) return;
    const since = Math.min(...resumed.map((channel) => channel.since!));
    const { streams } = this.ctx;
    streams.beginCatchUp(stream, since);
    this.ctx.router.requestReplay(resumed.map((channel) => channel.name), since, (replay) => {
      streams.finishCatchUp(stream, replay.parts, replay.isComplete);
    });
  }

  private relay(req: IncomingMessage, res: ServerResponse, fcgi: FastcgiRequest, head: CgiHead, rest: Buffer): void {
    const headers: string[] = [];
    let contentLength: number | null = null;
    for (const [name, value] of head.headers) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || lower.startsWith('multiplex-')) continue;
      // A 204 has no Content-Length at all (RFC 9110 §8.6).
      if (lower === 'content-length' && head.status === 204) continue;
      if (lower === 'content-length') {
        const length = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
        if (Number.isNaN(length) || (contentLength !== null && contentLength !== length)) {
          this.ctx.metrics.fastcgiErrors.inc({ kind: 'bad_head' });
          this.ctx.warnings.warn('backend_bad_content_length', { contentLength: value }, 'backend sent an invalid or conflicting Content-Length');
          fcgi.stdout.resume();
          return this.fail(res, 502, 'Bad Gateway');
        }
        if (contentLength !== null) continue;
        contentLength = length;
      }
      headers.push(name, value);
    }
    this.ctx.metrics.requests.inc({ listener: 'public', class: statusClass(head.status) });
    if (hasNoBody(req, head)) {
      // A HEAD or 304 keeps the Content-Length of the body it stands for.
      res.writeHead(head.status, head.statusText, headers);
      res.end();
      fcgi.stdout.resume();
      return;
    }
    if (contentLength === null) return this.relayUnframed(res, fcgi, head, headers, rest);
    res.writeHead(head.status, head.statusText, headers);
    // The declared length frames the response: bytes beyond it would reach the client as a second
    // response, and a shorter body would leave the client waiting for the rest.
    let remaining = contentLength;
    const relayChunk = (chunk: Buffer) => {
      if (remaining === 0) return;
      const fits = chunk.length <= remaining ? chunk : chunk.subarray(0, remaining);
      remaining -= fits.length;
      if (!res.write(fits)) {
        fcgi.stdout.pause();
        res.once('drain', () => fcgi.stdout.resume());
      }
      if (remaining === 0) res.end();
      if (fits !== chunk) this.ctx.warnings.warn('backend_body_too_long', { contentLength }, 'backend body longer than its Content-Length: the excess is dropped');
    };
    if (rest.length >= remaining) {
      // The whole body came with the head: head and body leave in one write.
      if (rest.length > remaining) this.ctx.warnings.warn('backend_body_too_long', { contentLength }, 'backend body longer than its Content-Length: the excess is dropped');
      res.end(rest.length > remaining ? rest.subarray(0, remaining) : rest);
      remaining = 0;
    } else {
      relayChunk(rest);
    }
    fcgi.stdout.on('data', relayChunk);
    fcgi.stdout.once('end', () => {
      if (remaining === 0) return;
      this.ctx.warnings.warn('backend_body_too_short', { contentLength, missing: remaining }, 'backend body shorter than its Content-Length: connection closed');
      res.destroy();
    });
  }

  /**
   * A body without Content-Length. What the backend sends until its stdout ends or this turn of the event loop is
   * over (as long as it stays under MAX_HELD_BODY_BYTES) is held: a short response then leaves in one write, with a
   * Content-Length, instead of a head and a chunk, then a last chunk. A longer or slower body is streamed chunked.
   */
  private relayUnframed(res: ServerResponse, fcgi: FastcgiRequest, head: CgiHead, headers: string[], rest: Buffer): void {
    const held: Buffer[] = rest.length > 0 ? [rest] : [];
    let heldBytes = rest.length;
    let isStreaming = false;
    const stream = () => {
      if (isStreaming) return;
      isStreaming = true;
      clearImmediate(flush);
      fcgi.stdout.removeListener('data', hold);
      res.writeHead(head.status, head.statusText, headers);
      for (const chunk of held) res.write(chunk);
      fcgi.stdout.pipe(res, { end: false });
    };
    const hold = (chunk: Buffer) => {
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes > MAX_HELD_BODY_BYTES) stream();
    };
    const flush = setImmediate(stream);
    fcgi.stdout.on('data', hold);
    fcgi.stdout.once('end', () => {
      // A body cut by the backend's death must not look complete: close instead of the last chunk.
      if (fcgi.getExitStatus() instanceof Error) {
        if (isStreaming) return void res.destroy();
        // What came is passed on first, as it would have been streamed.
        stream();
        setImmediate(() => res.destroy());
        return;
      }
      if (isStreaming) return void res.end();
      clearImmediate(flush);
      fcgi.stdout.removeListener('data', hold);
      headers.push('Content-Length', String(heldBytes));
      res.writeHead(head.status, head.statusText, headers);
      res.end(held.length === 1 ? held[0] : Buffer.concat(held, heldBytes));
    });
  }

  private fail(res: ServerResponse, status: number, message: string): void {
    this.ctx.metrics.requests.inc({ listener: 'public', class: statusClass(status) });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
    res.end(`${status} ${message}\n`);
  }
}

/** Responses without a body by definition (RFC 9110 §6.4.1). */
function hasNoBody(req: IncomingMessage, head: CgiHead): boolean {
  return req.method === 'HEAD' || head.status === 204 || head.status === 304;
}

/** A multiplexed response's head as the client gets it, and how its stream behaves; throws on a bad Multiplex-* value. */
function interpretStreamHead(req: IncomingMessage, head: CgiHead): StreamHead {
  let hold: string | undefined;
  let clientType = 'text/plain; charset=utf-8';
  let keepAlive: KeepAlive | null = null;
  let timeoutMs = -1;
  let channels: ChannelSubscription[] = [];
  let hasCacheControl = false;
  const headers: string[] = [];
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (lower === 'multiplex-hold') hold = value;
    else if (lower === 'multiplex-content-type') clientType = value;
    else if (lower === 'multiplex-keep-alive') keepAlive = parseKeepAlive(value);
    else if (lower === 'multiplex-timeout') timeoutMs = Math.round(parseSeconds('Multiplex-Timeout', value) * 1000);
    else if (lower === 'multiplex-channel') channels = channels.concat(parseChannelSubscriptions(value));
    else if (lower.startsWith('multiplex-') || lower === 'content-type' || lower === 'content-length' || HOP_BY_HOP.has(lower)) continue;
    else {
      if (lower === 'cache-control') hasCacheControl = true;
      headers.push(name, value);
    }
  }
  const holdMode = parseHold(hold);
  headers.push('Content-Type', clientType);
  if (holdMode !== 'none') {
    if (!hasCacheControl) headers.push('Cache-Control', 'no-cache');
    headers.push('X-Accel-Buffering', 'no');
  }
  const isChunked = req.httpVersionMajor === 1 && req.httpVersionMinor >= 1;
  // Never on a 204 (RFC 9112 §6.1).
  if (isChunked && head.status !== 204) headers.push('Transfer-Encoding', 'chunked');
  const isEventStream = parseMediaType(clientType).type === 'text/event-stream';
  const keepAliveData = keepAlive === null ? null : keepAlive.data ?? (isEventStream ? SSE_KEEP_ALIVE : null);
  return {
    headers,
    options: {
      hold: holdMode,
      isChunked,
      isEventStream,
      keepAliveMs: keepAlive === null ? 0 : Math.round(keepAlive.seconds * 1000),
      keepAliveData,
      timeoutMs,
      channels,
      requestUri: req.url ?? '/',
    },
  };
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

/**
 * Streams a request body to FastCGI stdin with backpressure. `waitForBackend` says whether what comes next is up to the
 * backend (to take more of the body, or to answer once it has it all) or to the client (to send more).
 */
function sendBody(req: IncomingMessage, stdin: Writable, waitForBackend: (isWaiting: boolean) => void): void {
  const onData = (chunk: Buffer) => {
    if (stdin.write(chunk)) return;
    req.pause();
    waitForBackend(true);
  };
  req.on('data', onData);
  stdin.on('drain', () => {
    waitForBackend(false);
    req.resume();
  });
  req.once('end', () => {
    stdin.end();
    waitForBackend(true);
  });
  // The backend closed before taking the whole body: the rest is read and dropped, as nginx discards it.
  stdin.once('close', () => {
    if (req.complete) return;
    req.removeListener('data', onData);
    req.resume();
  });
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
