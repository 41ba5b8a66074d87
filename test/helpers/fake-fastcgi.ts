// A minimal FastCGI responder over node:net that answers whatever raw stdout a test wants:
// for backend output php-fpm never produces (broken CGI heads).
import net from 'node:net';

const STDOUT = 6;
const STDIN = 5;
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

export async function startFakeFastcgi(stdout: () => Buffer, port = 0): Promise<FakeFastcgi> {
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
        if (type === STDIN && contentLength === 0) {
          fake.requests++;
          const body = stdout();
          const end = Buffer.alloc(8);
          socket.write(Buffer.concat([record(STDOUT, requestId, body), record(STDOUT, requestId, Buffer.alloc(0)), record(END_REQUEST, requestId, end)]));
          socket.end();
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
