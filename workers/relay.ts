// An ordinary (not multiplexed) backend response relayed to its client: framed by the backend's Content-Length, or by
// muxgate, with backpressure from the client to the backend.
import type { ServerResponse } from 'node:http';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { CgiHead } from '../src/protocol/cgi-response.ts';
import type { RelayHead } from '../src/protocol/response-head.ts';
import type { FastcgiExchange } from './fastcgi-exchange.ts';

/** Connection-specific headers, which HTTP/2 forbids (RFC 9113 §8.2.2); the backend may send them for HTTP/1.1. */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/**
 * A response's head, for the client's HTTP version: HTTP/2 has no reason phrase (RFC 9113 §8.3.2) and no
 * connection-specific headers, both left out there. Without `statusText`, HTTP/1.1 gets the status's usual phrase.
 */
export function writeHead(res: ServerResponse, status: number, statusText: string | undefined, headers: string[]): void {
  if (res.req.httpVersionMajor !== 2) return void res.writeHead(status, statusText, headers);
  const http2Headers: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!CONNECTION_HEADERS.has(headers[i].toLowerCase())) http2Headers.push(headers[i], headers[i + 1]);
  }
  res.writeHead(status, http2Headers);
}

/** A body without Content-Length up to this size, complete within one turn of the event loop, is sent framed by one. */
const MAX_HELD_BODY_BYTES = 65_536;

/** The head alone: a response without a body by definition (a HEAD or 304 keeps the Content-Length it stands for). */
export function relayHeadOnly(res: ServerResponse, exchange: FastcgiExchange, head: CgiHead, relayHead: RelayHead): void {
  writeHead(res, head.status, head.statusText, relayHead.headers);
  res.end();
  exchange.discardBody();
}

/**
 * The declared length frames the response: bytes beyond it would reach the client as a second response, and a shorter
 * body would leave the client waiting for the rest (so the connection is closed).
 */
export function relayFramed(res: ServerResponse, exchange: FastcgiExchange, head: CgiHead, relayHead: RelayHead, rest: Buffer,
  warnings: RepeatedWarnings): void {
  const contentLength = relayHead.contentLength!;
  const tooLong = () => warnings.warn('backend_body_too_long', { contentLength }, 'backend body longer than its Content-Length: the excess is dropped');
  writeHead(res, head.status, head.statusText, relayHead.headers);
  let remaining = contentLength;
  const relayChunk = (chunk: Buffer) => {
    if (remaining === 0) return;
    const fits = chunk.length <= remaining ? chunk : chunk.subarray(0, remaining);
    remaining -= fits.length;
    writeWithBackpressure(res, exchange, fits);
    if (remaining === 0) res.end();
    if (fits !== chunk) tooLong();
  };
  if (rest.length >= remaining) {
    // The whole body came with the head: head and body leave in one write.
    if (rest.length > remaining) tooLong();
    res.end(rest.length > remaining ? rest.subarray(0, remaining) : rest);
    remaining = 0;
  } else {
    relayChunk(rest);
  }
  exchange.readBody(relayChunk, () => {
    if (remaining === 0) return;
    warnings.warn('backend_body_too_short', { contentLength, missing: remaining }, 'backend body shorter than its Content-Length: connection closed');
    res.destroy();
  });
}

/**
 * A body without Content-Length. What the backend sends until its stdout ends or this turn of the event loop is over
 * (as long as it stays under MAX_HELD_BODY_BYTES) is held: a short response then leaves in one write, with a
 * Content-Length, instead of a head and a chunk, then a last chunk. A longer or slower body is streamed chunked.
 */
export function relayUnframed(res: ServerResponse, exchange: FastcgiExchange, head: CgiHead, relayHead: RelayHead, rest: Buffer): void {
  const { stdout } = exchange.request;
  const headers = relayHead.headers;
  const held: Buffer[] = rest.length > 0 ? [rest] : [];
  let heldBytes = rest.length;
  let isStreaming = false;
  const stream = () => {
    if (isStreaming) return;
    isStreaming = true;
    clearImmediate(flush);
    stdout.removeListener('data', hold);
    writeHead(res, head.status, head.statusText, headers);
    for (const chunk of held) res.write(chunk);
    stdout.on('data', (chunk: Buffer) => writeWithBackpressure(res, exchange, chunk));
  };
  const hold = (chunk: Buffer) => {
    held.push(chunk);
    heldBytes += chunk.length;
    if (heldBytes > MAX_HELD_BODY_BYTES) stream();
  };
  const flush = setImmediate(stream);
  exchange.readBody(hold, () => {
    // A body cut by the backend's death must not look complete: close instead of the last chunk.
    if (exchange.request.getExitStatus() instanceof Error) {
      if (isStreaming) return void res.destroy();
      // What came is passed on first, as it would have been streamed.
      stream();
      setImmediate(() => res.destroy());
      return;
    }
    if (isStreaming) return void res.end();
    clearImmediate(flush);
    stdout.removeListener('data', hold);
    headers.push('Content-Length', String(heldBytes));
    writeHead(res, head.status, head.statusText, headers);
    res.end(held.length === 1 ? held[0] : Buffer.concat(held, heldBytes));
  });
}

/** The backend is read again once the client has taken what could not be written at once. */
function writeWithBackpressure(res: ServerResponse, exchange: FastcgiExchange, chunk: Buffer): void {
  if (res.write(chunk)) return;
  const stdout = exchange.request.stdout;
  stdout.pause();
  res.once('drain', () => stdout.resume());
}
