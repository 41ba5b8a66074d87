// A client request → the CGI/1.1 params of its FastCGI request, as nginx's fastcgi_params; and those of what muxgate
// tells the backend itself: a stream's end, a WebSocket client's message.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

export interface ScriptParams {
  scriptFilename: string;
  documentRoot: string;
}

// Hop-by-hop headers, and `Proxy` (httpoxy): never forwarded as HTTP_*.
const SKIPPED_HEADERS = new Set(['content-type', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy']);

const COLON = 0x3a;

/** A request target's path and query. */
function splitTarget(url: string): { path: string; query: string } {
  const queryAt = url.indexOf('?');
  return queryAt < 0 ? { path: url, query: '' } : { path: url.slice(0, queryAt), query: url.slice(queryAt + 1) };
}

/** MUX_SCRIPT_FILENAME (a front controller), or the document root and the path. */
function scriptFilename(script: ScriptParams, path: string): string {
  return script.scriptFilename || script.documentRoot + path;
}

/** The request came over TLS (the public listener with MUX_TLS_CERT). */
export function isSecure(req: IncomingMessage): boolean {
  return (req.socket as TLSSocket).encrypted === true;
}

export function cgiParams(req: IncomingMessage, token: string, script: ScriptParams, contentLength: number | null): Record<string, string> {
  const url = req.url ?? '/';
  const { path, query } = splitTarget(url);
  const socket = req.socket;
  const secure = isSecure(req);
  const host = req.headers.host ?? '';
  const params: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'muxgate',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    REQUEST_METHOD: req.method ?? 'GET',
    REQUEST_SCHEME: secure ? 'https' : 'http',
    REQUEST_URI: url,
    DOCUMENT_URI: path,
    QUERY_STRING: query,
    SCRIPT_NAME: path,
    SCRIPT_FILENAME: scriptFilename(script, path),
    DOCUMENT_ROOT: script.documentRoot,
    REMOTE_ADDR: socket.remoteAddress ?? '',
    REMOTE_PORT: String(socket.remotePort ?? ''),
    SERVER_ADDR: socket.localAddress ?? '',
    SERVER_PORT: String(socket.localPort ?? ''),
    SERVER_NAME: host.replace(/:\d+$/, ''),
    REDIRECT_STATUS: '200',
    MULTIPLEX_TOKEN: token,
  };
  // As nginx's fastcgi_params: HTTPS only over TLS.
  if (secure) params.HTTPS = 'on';
  if (req.headers['content-type'] !== undefined) params.CONTENT_TYPE = req.headers['content-type'];
  if (contentLength !== null) params.CONTENT_LENGTH = String(contentLength);
  for (const name in req.headers) {
    // Tokens come from muxgate only: a client's Multiplex-* header never reaches the backend.
    // Underscored names are dropped as nginx does: X_Foo must not pose as X-Foo.
    // HTTP/2's pseudo-headers (:method, :path, :authority, :scheme) are the params above, not HTTP_* ones.
    if (SKIPPED_HEADERS.has(name) || name.startsWith('multiplex-') || name.includes('_') || name.charCodeAt(0) === COLON) continue;
    const value = req.headers[name];
    params['HTTP_' + name.toUpperCase().replaceAll('-', '_')] = Array.isArray(value) ? value.join(', ') : (value ?? '');
  }
  return params;
}

/** A held stream's end, told to the backend (MUX_EVENTS) as a POST to the script of the stream's request. */
export interface StreamEvent {
  token: string;
  reason: string;
  requestUri: string;
  /** A WebSocket's close code; 0 for an HTTP stream. */
  closeCode: number;
  /** The stream's request came over TLS. */
  isSecure: boolean;
}

export function eventParams(event: StreamEvent, script: ScriptParams): Record<string, string> {
  const params = postParams(event.requestUri, event.token, script, 0, event.isSecure);
  params.MULTIPLEX_EVENT = 'close';
  params.MULTIPLEX_REASON = event.reason;
  if (event.closeCode !== 0) {
    params.MULTIPLEX_TRANSPORT = 'websocket';
    params.MULTIPLEX_CLOSE_CODE = String(event.closeCode);
  }
  return params;
}

/** A WebSocket client's message, told to the backend as a POST to the script of the WebSocket's opening. */
export function messageParams(requestUri: string, token: string, script: ScriptParams, length: number, isBinary: boolean,
  isSecure: boolean): Record<string, string> {
  const params = postParams(requestUri, token, script, length, isSecure);
  params.CONTENT_TYPE = isBinary ? 'application/octet-stream' : 'text/plain; charset=utf-8';
  params.MULTIPLEX_EVENT = 'message';
  params.MULTIPLEX_TRANSPORT = 'websocket';
  return params;
}

/**
 * What muxgate itself tells the backend about a token: a POST to the script of the token's request, with its scheme (a
 * backend that redirects plain HTTP to HTTPS must not redirect these).
 */
function postParams(requestUri: string, token: string, script: ScriptParams, contentLength: number, isSecure: boolean): Record<string, string> {
  const { path, query } = splitTarget(requestUri);
  const params: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'muxgate',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REQUEST_METHOD: 'POST',
    REQUEST_SCHEME: isSecure ? 'https' : 'http',
    REQUEST_URI: requestUri,
    DOCUMENT_URI: path,
    QUERY_STRING: query,
    SCRIPT_NAME: path,
    SCRIPT_FILENAME: scriptFilename(script, path),
    DOCUMENT_ROOT: script.documentRoot,
    CONTENT_LENGTH: String(contentLength),
    REDIRECT_STATUS: '200',
    MULTIPLEX_TOKEN: token,
  };
  if (isSecure) params.HTTPS = 'on';
  return params;
}
