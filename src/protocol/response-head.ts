// A backend's CGI response head → the head the client gets: an ordinary response relayed with muxgate's framing, or
// the head of a multiplexed stream and how that stream behaves.
import { BadCgiHeadError } from '../errors.ts';
import type { CgiHead } from './cgi-response.ts';
import {
  multiplexBoundary, parseChannelSubscriptions, parseHold, parseKeepAlive, parseMediaType, parseSeconds,
  type ChannelSubscription, type HoldMode, type KeepAlive,
} from './headers.ts';

/** Response headers the backend may not set: framing belongs to muxgate. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);
const SSE_KEEP_ALIVE = Buffer.from(':\n\n');
const CONTENT_LENGTH = /^\d{1,15}$/;

/** Responses without a body by definition (RFC 9110 §6.4.1). */
export function hasNoBody(method: string | undefined, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304;
}

/**
 * The boundary of a multiplexed response (application/x-multiplex), or null for an ordinary one; throws
 * BadHeaderValueError for a multiplexed Content-Type without a usable boundary.
 */
export function multiplexBoundaryOf(head: CgiHead): string | null {
  let contentType: string | undefined;
  for (const [name, value] of head.headers) if (name.toLowerCase() === 'content-type') contentType = value;
  return multiplexBoundary(contentType);
}

export interface RelayHead {
  /** Response headers as name, value, name, value… */
  headers: string[];
  /** The backend's Content-Length, which frames the body; null: muxgate frames it. */
  contentLength: number | null;
}

/** An ordinary response's head as relayed; throws BadCgiHeadError for a Content-Length that cannot frame it. */
export function interpretRelayHead(head: CgiHead): RelayHead {
  const headers: string[] = [];
  let contentLength: number | null = null;
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower.startsWith('multiplex-')) continue;
    if (lower === 'content-length') {
      // A 204 has no Content-Length at all (RFC 9110 §8.6).
      if (head.status === 204) continue;
      const length = CONTENT_LENGTH.test(value) ? Number(value) : NaN;
      if (Number.isNaN(length) || (contentLength !== null && contentLength !== length)) {
        throw new BadCgiHeadError(`invalid or conflicting Content-Length: ${JSON.stringify(value.slice(0, 40))}`);
      }
      if (contentLength !== null) continue;
      contentLength = length;
    }
    headers.push(name, value);
  }
  return { headers, contentLength };
}

export interface StreamHead {
  /** Response headers as name, value, name, value… */
  headers: string[];
  hold: HoldMode;
  /** HTTP/1.1: parts go out as chunks; HTTP/1.0: raw, and the connection closes when the stream ends. */
  isChunked: boolean;
  isEventStream: boolean;
  keepAliveMs: number;
  keepAliveData: Buffer | null;
  /** Multiplex-Timeout in ms (0: never); -1 when the backend set none. */
  timeoutMs: number;
  channels: ChannelSubscription[];
}

/**
 * A multiplexed response's head as the client gets it (Multiplex-* headers interpreted and removed, Content-Type from
 * Multiplex-Content-Type, framing muxgate's), and how its stream behaves. Throws BadHeaderValueError on a bad
 * Multiplex-* value.
 */
export function interpretStreamHead(head: CgiHead, isChunked: boolean): StreamHead {
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
  // Never on a 204 (RFC 9112 §6.1).
  if (isChunked && head.status !== 204) headers.push('Transfer-Encoding', 'chunked');
  const isEventStream = parseMediaType(clientType).type === 'text/event-stream';
  return {
    headers,
    hold: holdMode,
    isChunked,
    isEventStream,
    keepAliveMs: keepAlive === null ? 0 : Math.round(keepAlive.seconds * 1000),
    keepAliveData: keepAlive === null ? null : keepAlive.data ?? (isEventStream ? SSE_KEEP_ALIVE : null),
    timeoutMs,
    channels,
  };
}

export interface WebSocketHead {
  /** The 101 response's extra headers, as name, value, name, value… */
  headers: string[];
  /** The subprotocol the backend picked, or null. */
  protocol: string | null;
}

/**
 * An accepted WebSocket opening's head: the backend's headers but those that describe a body, a hop or muxgate's
 * protocol, and its subprotocol, which must be one the client offered; throws BadCgiHeadError otherwise.
 */
export function interpretWebSocketHead(head: CgiHead, offeredProtocols: readonly string[]): WebSocketHead {
  const headers: string[] = [];
  let protocol: string | null = null;
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (lower === 'sec-websocket-protocol') {
      protocol = value.trim();
      if (!offeredProtocols.includes(protocol)) {
        throw new BadCgiHeadError(`Sec-WebSocket-Protocol ${JSON.stringify(protocol.slice(0, 40))} is not one the client offered`);
      }
    } else if (!(HOP_BY_HOP.has(lower) || lower.startsWith('multiplex-') || lower.startsWith('sec-websocket-')
      || lower === 'content-type' || lower === 'content-length')) {
      headers.push(name, value);
    }
  }
  return { headers, protocol };
}
