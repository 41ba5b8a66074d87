// A client request → the CGI/1.1 params of its FastCGI request, as nginx's fastcgi_params; and those of what muxgate
// tells the backend itself: a stream's end, a WebSocket client's message.
import type { IncomingMessage } from 'node:http';

export interface ScriptParams {
  scriptFilename: string;
  documentRoot: string;
}

// Hop-by-hop headers, and `Proxy` (httpoxy): never forwarded as HTTP_*.
const SKIPPED_HEADERS = new Set(['content-type', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy']);

/** A request target's path and query. */
function splitTarget(url: string): { path: string; query: string } {
  const queryAt = url.indexOf('?');
  return queryAt < 0 ? { path: url, query: '' } : { path: url.slice(0, queryAt), query: url.slice(queryAt + 1) };
}

/** MUX_SCRIPT_FILENAME (a front controller), or the document root and the path. */
function scriptFilename(script: ScriptParams, path: string): string {
  return script.scriptFilename || script.documentRoot + path;
}

export function cgiParams(req: IncomingMessage, token: string, script: ScriptParams, contentLength: number | null): Record<string, string> {
  const url = req.url ?? '/';
  const { path, query } = splitTarget(url);
  const socket = req.socket;
  const host = req.headers.host ?? '';
  const params: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'muxgate',
    SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
    REQUEST_METHOD: req.method ?? 'GET',
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
  if (req.headers['content-type'] !== undefined) params.CONTENT_TYPE = req.headers['content-type'];
  if (contentLength !== null) params.CONTENT_LENGTH = String(contentLength);
  for (const name in req.headers) {
    // Tokens come from muxgate only: a client's Multiplex-* header never reaches the backend.
    // Underscored names are dropped as nginx does: X_Foo must not pose as X-Foo.
    if (SKIPPED_HEADERS.has(name) || name.startsWith('multiplex-') || name.includes('_')) continue;
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
}

export function eventParams(event: StreamEvent, script: ScriptParams): Record<string, string> {
  const params = postParams(event.requestUri, event.token, script, 0);
  params.MULTIPLEX_EVENT = 'close';
  params.MULTIPLEX_REASON = event.reason;
  if (event.closeCode !== 0) {
    params.MULTIPLEX_TRANSPORT = 'websocket';
    params.MULTIPLEX_CLOSE_CODE = String(event.closeCode);
  }
  return params;
}

/** A WebSocket client's message, told to the backend as a POST to the script of the WebSocket's opening. */
export function messageParams(requestUri: string, token: string, script: ScriptParams, length: number, isBinary: boolean): Record<string, string> {
  const params = postParams(requestUri, token, script, length);
  params.CONTENT_TYPE = isBinary ? 'application/octet-stream' : 'text/plain; charset=utf-8';
  params.MULTIPLEX_EVENT = 'message';
  params.MULTIPLEX_TRANSPORT = 'websocket';
  return params;
}

/** What muxgate itself tells the backend about a token: a POST to the script of the token's request. */
function postParams(requestUri: string, token: string, script: ScriptParams, contentLength: number): Record<string, string> {
  const { path, query } = splitTarget(requestUri);
  return {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'muxgate',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REQUEST_METHOD: 'POST',
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
}
