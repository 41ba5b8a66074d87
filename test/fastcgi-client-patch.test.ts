// patches/fastcgi-client+0.2.0.patch: records split across TCP reads must not crash the client.
// Unpatched, fastcgi-client parses a record head (or an end-request body) from whatever bytes
// are left in a read, throwing RangeError inside the socket's 'data' handler. Apply the patch
// with `git apply patches/fastcgi-client+0.2.0.patch` (.ci/run does) before running this test.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import fastcgiClient from 'fastcgi-client';
import { startKeptFastcgi } from './helpers/fake-fastcgi.ts';

// The package's types declare `export default`, but it is `module.exports = createClient`.
const createClient = fastcgiClient as unknown as typeof fastcgiClient.default;

const FCGI_END_REQUEST = 3;
const FCGI_STDOUT = 6;
const HEAD = 'Content-Type: text/plain\r\n\r\n';

function record(type: number, body: Buffer, paddingLength = (8 - (body.length % 8)) % 8): Buffer {
  const head = Buffer.alloc(8);
  head[0] = 1;
  head[1] = type;
  head.writeUInt16BE(1, 2);
  head.writeUInt16BE(body.length, 4);
  head[6] = paddingLength;
  return Buffer.concat([head, body, Buffer.alloc(paddingLength)]);
}

const output = record(FCGI_STDOUT, Buffer.from(HEAD + 'hello'));
const emptyOutput = record(FCGI_STDOUT, Buffer.alloc(0));
const endRequest = record(FCGI_END_REQUEST, Buffer.alloc(8));
const response = Buffer.concat([output, emptyOutput, endRequest]);

const cases = [
  { name: 'a record and the first bytes of the next head', split: output.length + 3 },
  { name: 'an empty record and part of the next head', split: output.length + emptyOutput.length + 5 },
  { name: 'an end-request head and part of its body', split: response.length - 5 },
];

for (const { name, split } of cases) {
  test(`a read ending in ${name} waits for the rest`, { timeout: 10_000 }, async () => {
    // The second piece is written only after the client has consumed the first, so the
    // two pieces cannot arrive in one read.
    let writeRest = (): void => {};
    const sockets = new Set<Socket>();
    const server = createServer((socket: Socket) => {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.once('data', () => {
        socket.write(response.subarray(0, split));
        writeRest = () => socket.end(response.subarray(split));
      });
    });
    // Unpatched, the throw escapes the client: end the wait so the sockets still get closed.
    let onCrash = (_error: Error): void => {};
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const client = createClient({ host: '127.0.0.1', port, skipCheckServer: true });
      await once(client, 'ready');
      const result = await new Promise<{ stdout: string; exitStatus: unknown }>((resolve, reject) => {
        onCrash = reject;
        process.on('uncaughtExceptionMonitor', onCrash);
        client.request({ REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/split.php' }, (error, request) => {
          if (error) return reject(error);
          let stdout = '';
          request.stdout.setEncoding('utf8').on('data', (text: string) => {
            stdout += text;
            writeRest();
          });
          request.stdout.once('end', () => resolve({ stdout, exitStatus: request.getExitStatus() }));
        });
      });
      assert.equal(result.stdout, HEAD + 'hello');
      assert.equal(result.exitStatus, 0);
    } finally {
      process.off('uncaughtExceptionMonitor', onCrash);
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
}

// A request ends with its FCGI_END_REQUEST, not when the server's close is read: a server that keeps the connection
// open after answering does not hold the response, and the client closes the connection itself a second later.
test('a request ends at its end-request record; a connection the server keeps open is closed by the client', { timeout: 10_000 }, async () => {
  const received: Buffer[] = [];
  let serverSocket: Socket | undefined;
  const server = createServer((socket: Socket) => {
    serverSocket = socket;
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      // params, the empty params and the empty stdin that ends the request: answer, and keep the connection open
      if (Buffer.concat(received).includes(Buffer.from([1, 5, 0, 1, 0, 0, 0, 0]))) socket.write(response);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const { port } = server.address() as AddressInfo;
    const client = createClient({ host: '127.0.0.1', port, skipCheckServer: true });
    await once(client, 'ready');
    const stdout = await new Promise<string>((resolve, reject) => {
      client.request({ REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/open.php' }, (error, request) => {
        if (error) return reject(error);
        request.stdin.end();
        let text = '';
        request.stdout.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; });
        request.stdout.once('end', () => resolve(text));
      });
    });
    assert.equal(stdout, HEAD + 'hello');
    const endedAt = Date.now();
    await once(serverSocket!, 'end');
    assert.ok(Date.now() - endedAt >= 900, 'the connection was closed before the server could close it');
    // The begin request, both params records and the empty stdin left together, in one write.
    assert.equal(received.length, 1);
  } finally {
    serverSocket?.destroy();
    server.close();
  }
});

// keepConns: bodyless requests reuse a kept connection (FCGI_KEEP_CONN); one the server closes without answering is
// replaced by a new connection and the request sent again; a request with a body never takes an idle connection.
test('kept connections are reused, replaced when the server closed one, and not given to requests with a body', { timeout: 10_000 }, async () => {
  // the first connection answers one request, then closes under the next one without answering
  const peer = await startKeptFastcgi(Buffer.from(HEAD + 'hello'), (connection, request) => connection === 0 && request === 1);
  const client = createClient({ host: '127.0.0.1', port: peer.port, skipCheckServer: true, keepConns: 1 });
  await once(client, 'ready');
  let retries = 0;
  client.on('retry', () => retries++);
  const get = (bodyless: boolean) => new Promise<string>((resolve, reject) => {
    client.request({ REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/kept.php' }, (error, request) => {
      if (error) return reject(error);
      request.stdin.end();
      let text = '';
      request.stdout.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; });
      request.stdout.once('end', () => resolve(`${text} (${String(request.getExitStatus())})`));
    }, bodyless);
  });
  try {
    assert.equal(await get(true), `${HEAD}hello (0)`);
    assert.equal(await get(true), `${HEAD}hello (0)`, 'the request on the closed kept connection was not sent again');
    assert.equal(retries, 1, 'the request sent again was not reported');
    assert.equal(peer.keepFlags.length, 2);
    assert.deepEqual(peer.keepFlags[0], [1, 1], 'both requests went on the first, kept connection');
    assert.deepEqual(peer.keepFlags[1], [1]);
    // the second connection is idle and kept, but a request with a body opens a connection of its own (not kept:
    // the one kept connection allowed exists), so it never waits on a connection the server may just have closed
    assert.equal(await get(false), `${HEAD}hello (0)`);
    assert.equal(peer.keepFlags.length, 3);
    assert.deepEqual(peer.keepFlags[2], [0]);
    assert.equal(await get(true), `${HEAD}hello (0)`);
    assert.deepEqual(peer.keepFlags[1], [1, 1]);
  } finally {
    await peer.close();
  }
});
