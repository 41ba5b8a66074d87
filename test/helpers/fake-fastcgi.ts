// Minimal FastCGI responders over node:net that answer whatever raw stdout a test wants: for backend behaviour php-fpm
// never shows or cannot show on cue (broken CGI heads, a kept connection closed under a request).
import net from 'node:net';
import {
  FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_KEEP_CONN, FCGI_PARAMS, FCGI_REQUEST_COMPLETE, FCGI_STDIN, FCGI_STDOUT, RecordDecoder,
  beginRequestFlags, decodeParams, encodeRecords, endRequestBody,
} from '../../src/protocol/fastcgi-records.ts';
import type { RecordSink } from '../../src/protocol/fastcgi-records.ts';

const EMPTY = Buffer.alloc(0);

/** A request's whole answer: its stdout, the end of stdout and the end-request record. */
function answer(requestId: number, stdout: Buffer): Buffer {
  return Buffer.concat([
    encodeRecords(FCGI_STDOUT, requestId, stdout),
    encodeRecords(FCGI_STDOUT, requestId, EMPTY),
    encodeRecords(FCGI_END_REQUEST, requestId, endRequestBody(0, FCGI_REQUEST_COMPLETE)),
  ]);
}

export interface FakeFastcgi {
  port: number;
  /** Resolves when connection `connection` (0-based, in the order they were accepted) has been opened and closed. */
  closed(connection: number): Promise<void>;
  close(): Promise<void>;
}

/** A server on 127.0.0.1 whose connections give their records to the sink `serve` makes for each. */
async function startPeer(port: number, serve: (socket: net.Socket, connection: number) => RecordSink['onRecord']): Promise<FakeFastcgi> {
  const sockets = new Set<net.Socket>();
  const closings: Array<PromiseWithResolvers<void>> = [];
  const closing = (connection: number) => (closings[connection] ??= Promise.withResolvers<void>());
  let connections = 0;
  const server = net.createServer((socket) => {
    const connection = connections++;
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      closing(connection).resolve();
    });
    socket.on('error', () => {});
    const decoder = new RecordDecoder({ onRecord: serve(socket, connection), onError: () => socket.destroy() });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    closed: (connection) => closing(connection).promise,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

/**
 * Answers each request with `stdout` once its body has arrived; with `answerBeforeBody`, as soon as its params have,
 * then closes without reading the body: an app that refuses a body early (a 413) and closes.
 */
export async function startFakeFastcgi(stdout: () => Buffer, port = 0, answerBeforeBody = false): Promise<FakeFastcgi> {
  return startPeer(port, (socket) => {
    let isAnswered = false;
    return (type, requestId, content) => {
      // the end of the params, or of the body
      if (isAnswered || content.length > 0 || type !== (answerBeforeBody ? FCGI_PARAMS : FCGI_STDIN)) return;
      isAnswered = true;
      socket.end(answer(requestId, stdout()));
      if (answerBeforeBody) socket.removeAllListeners('data').resume();
    };
  });
}

export interface KeptFastcgi extends FakeFastcgi {
  /** Per connection in order, the FCGI_KEEP_CONN flag (1 or 0) of each request it received. */
  keepFlags: number[][];
  /** The params of each request received, in order. */
  params: Array<Map<string, string>>;
}

/**
 * A FastCGI responder that keeps its connections open after answering, as php-fpm does for FCGI_KEEP_CONN, and
 * answers each request with `stdout`, unless `closeUnder(connection, request)` (0-based) says to close the connection
 * under that request instead, unanswered (what php-fpm cannot be made to do on cue), or `holdUnder` says to leave it
 * unanswered on the open connection.
 */
export async function startKeptFastcgi(
  stdout: Buffer,
  closeUnder: (connection: number, request: number) => boolean,
  holdUnder: (connection: number, request: number) => boolean = () => false,
): Promise<KeptFastcgi> {
  const keepFlags: number[][] = [];
  const params: Array<Map<string, string>> = [];
  const peer = await startPeer(0, (socket, connection) => {
    keepFlags[connection] = [];
    let flags = 0;
    let paramPieces: Buffer[] = [];
    return (type, requestId, content) => {
      if (socket.destroyed) return;
      if (type === FCGI_BEGIN_REQUEST) flags = beginRequestFlags(content);
      if (type === FCGI_PARAMS && content.length > 0) paramPieces.push(content);
      if (type === FCGI_PARAMS && content.length === 0) {
        params.push(decodeParams(Buffer.concat(paramPieces)));
        paramPieces = [];
      }
      // the empty stdin record ends a request
      if (type !== FCGI_STDIN || content.length > 0) return;
      const request = keepFlags[connection]!.push(flags & FCGI_KEEP_CONN) - 1;
      if (closeUnder(connection, request)) return void socket.destroy();
      if (!holdUnder(connection, request)) socket.write(answer(requestId, stdout));
    };
  });
  return { ...peer, keepFlags, params };
}
