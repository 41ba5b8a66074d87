// A held stream leaves node:http once its head is out. node:http keeps a parser, an IncomingMessage and a
// ServerResponse per connection, with their stream states and listeners: about 11 KiB that a held stream never
// uses, since it only writes bytes muxgate frames itself (Node 26 here: 16.6 KiB per held SSE response under
// node:http, 5.6 KiB once detached). When the stream ends, a keep-alive connection goes back to node:http, as an
// upgraded connection would, for its next request.
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import type { Socket } from 'node:net';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { createRequire } = process.getBuiltinModule('node:module');

/** node:http's own release of a parser (what it does for an upgrade): unconsume, forget the request, back to the pool. */
const { freeParser } = createRequire(import.meta.url)('_http_common') as {
  freeParser(parser: unknown, req: IncomingMessage, socket: Socket): void;
};

/**
 * node:http's listeners on a connection (bound or not), by name: exactly these, for a TLS connection carries tls's own
 * (onSocketClose, onSocketTLSError, onSocketCloseDestroySSL, which frees the connection's OpenSSL state), and they stay.
 */
const HTTP_LISTENER = /^(?:bound )?(?:socketOn(?:Data|Error|End|Close|Drain|Timeout)|onSocket(?:Resume|Pause))$/;
const HTTP_EVENTS = ['data', 'end', 'close', 'drain', 'error', 'timeout', 'resume', 'pause'];

interface HttpSocket extends Socket {
  parser?: { incoming: unknown } | null;
  _httpMessage?: unknown;
}

/**
 * Takes the response's connection from node:http, or returns null while node:http still has work on it: the
 * request body still arriving, or a pipelined request parsed behind this one.
 */
export function detachFromHttp(req: IncomingMessage, res: ServerResponse): Socket | null {
  const socket = res.socket as HttpSocket | null;
  if (socket === null || socket._httpMessage !== res || !req.complete || socket.parser?.incoming !== req) return null;
  for (const event of HTTP_EVENTS) {
    for (const listener of socket.listeners(event)) {
      if (HTTP_LISTENER.test(listener.name)) socket.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  freeParser(socket.parser, req, socket);
  res.detachSocket(socket);
  return socket;
}

/** Gives a detached connection back to its node:http server; `unread` (bytes the client sent meanwhile) is parsed first. */
export function returnToHttp(socket: Socket, unread: Buffer | null): void {
  if (unread !== null) socket.unshift(unread);
  // node:http names the server on each of its connections.
  (socket as unknown as { server: Server }).server.emit('connection', socket);
}
