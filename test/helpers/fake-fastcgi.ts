// Minimal FastCGI responders over node:net that answer whatever raw stdout a test wants: for backend behaviour php-fpm
// never shows or cannot show on cue (broken CGI heads, a kept connection closed under a request).
import net from 'node:net';

const STDOUT = 6;
const STDIN = 5;
const PARAMS = 4;
const END_REQUEST = 3;

function record(type: number, requestId: number, content: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt8(1, 0);
  header.writeUInt8(type, 1);
  header.writeUInt16BE(requestId, 2);
  header.writeUInt16BE(content.length, 4);
  return Buffer.concat([header, content]);
}

export interface FakeFastcgi {
  port: number;
  requests: number;
  close(): Promise<void>;
}

/**
 * Answers each request with `stdout` once its body has arrived; with `answerBeforeBody`, as soon as its params have,
 * then closes without reading the body: an app that refuses a body early (a 413) and closes.
 */
export async function startFakeFastcgi(stdout: () => Buffer, port = 0, answerBeforeBody = false): Promise<FakeFastcgi> {
  const sockets = new Set<net.Socket>();
  const fake: FakeFastcgi = { port: 0, requests: 0, close: async () => {} };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 8) {
        const length = buffered.readUInt16BE(4) + buffered.readUInt8(6);
        if (buffered.length < 8 + length) return;
        const type = buffered.readUInt8(1);
        const requestId = buffered.readUInt16BE(2);
        const contentLength = buffered.readUInt16BE(4);
        buffered = buffered.subarray(8 + length);
        if (contentLength === 0 && type === (answerBeforeBody ? PARAMS : STDIN)) {
          fake.requests++;
          const body = stdout();
          const end = Buffer.alloc(8);
          socket.write(Buffer.concat([record(STDOUT, requestId, body), record(STDOUT, requestId, Buffer.alloc(0)), record(END_REQUEST, requestId, end)]));
          socket.end();
          if (answerBeforeBody) return void socket.removeAllListeners("data").resume();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  fake.close = () => new Promise((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => resolve());
  });
  return fake;
}

export interface KeptFastcgi {
  port: number;
  /** Per connection in order, the FCGI_KEEP_CONN flag (1 or 0) of each request it received. */
  keepFlags: number[][];
  close(): Promise<void>;
}

const STDIN_END = Buffer.from([1, STDIN, 0, 1, 0, 0, 0, 0]);

/**
 * A FastCGI responder that keeps its connections open after answering, as php-fpm does for FCGI_KEEP_CONN, and
 * answers each request (request id 1) with `stdout`, unless `closeUnder(connection, request)` (0-based) says to close
 * the connection under that request instead, unanswered: what php-fpm cannot be made to do on cue.
 */
export async function startKeptFastcgi(stdout: Buffer, closeUnder: (connection: number, request: number) => boolean): Promise<KeptFastcgi> {
  const sockets = new Set<net.Socket>();
  const keepFlags: number[][] = [];
  const answer = Buffer.concat([record(STDOUT, 1, stdout), record(STDOUT, 1, Buffer.alloc(0)), record(END_REQUEST, 1, Buffer.alloc(8))]);
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const connection = keepFlags.push([]) - 1;
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      let end: number;
      // A request is its begin record (flags in byte 10), params, and the empty stdin that ends it.
      while ((end = pending.indexOf(STDIN_END)) >= 0) {
        const request = keepFlags[connection].push(pending[10]) - 1;
        pending = pending.subarray(end + STDIN_END.length);
        if (closeUnder(connection, request)) return void socket.destroy();
        socket.write(answer);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    keepFlags,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
