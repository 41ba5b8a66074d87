// patches/fastcgi-client+0.2.0.patch, which `npm install` applies with patch-package: fastcgi-client reads and writes
// its records with src/protocol/fastcgi-records.ts; requests end at their end-request record; connections are kept
// (keepConns) and reused, replaced and retried; abort() closes the connection; a body is dropped once the connection
// is closing; a request's records leave in one write; and a paused stdout pauses its connection. Each test talks to a
// scripted peer over loopback.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import fastcgiClient from 'fastcgi-client';
import { startFakeFastcgi, startKeptFastcgi, type KeptFastcgi } from './helpers/fake-fastcgi.ts';
import {
  FCGI_END_REQUEST, FCGI_REQUEST_COMPLETE, FCGI_STDIN, FCGI_STDOUT, encodeRecords, endRequestBody,
} from '../src/protocol/fastcgi-records.ts';

// The package's types declare `export default`, but it is `module.exports = createClient`.
const createClient = fastcgiClient as unknown as typeof fastcgiClient.default;
type Client = ReturnType<typeof createClient>;
type Request = Parameters<Parameters<Client['request']>[1]>[1];

const HEAD = 'Content-Type: text/plain\r\n\r\n';
const EMPTY = Buffer.alloc(0);

const output = encodeRecords(FCGI_STDOUT, 1, Buffer.from(HEAD + 'hello'));
const emptyOutput = encodeRecords(FCGI_STDOUT, 1, EMPTY);
const endRequest = encodeRecords(FCGI_END_REQUEST, 1, endRequestBody(0, FCGI_REQUEST_COMPLETE));
const response = Buffer.concat([output, emptyOutput, endRequest]);
/** The empty stdin record that ends a request without a body. */
const END_OF_STDIN = encodeRecords(FCGI_STDIN, 1, EMPTY);

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function connect(port: number, options: object = {}): Promise<Client> {
  const client = createClient({ host: '127.0.0.1', port, skipCheckServer: true, ...options });
  await once(client, 'ready');
  return client;
}

/** Opens a request; stdout is read as text. */
function open(client: Client, params: Record<string, string>, bodyless?: boolean): Promise<{ request: Request; stdout: Promise<string> }> {
  return new Promise((resolve, reject) => {
    client.request(params, (error, request) => {
      if (error) return reject(error);
      let text = '';
      request.stdout.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; });
      resolve({ request, stdout: once(request.stdout, 'end').then(() => text) });
    }, bodyless);
  });
}

/** A bodyless request's stdout and exit status, as `stdout (status)`. */
async function get(client: Client, bodyless: boolean, params = { REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/kept.php' }): Promise<string> {
  const { request, stdout } = await open(client, params, bodyless);
  request.stdin.end();
  return `${await stdout} (${String(request.getExitStatus())})`;
}

/**
 * Runs one request against a peer that answers it with `answer` cut in two at `split`: the second piece is written
 * only once the client has given the request some stdout, so the two pieces cannot arrive in one read. A throw inside
 * the client ends the wait, so that the sockets still get closed.
 */
async function answeredWith(answer: Buffer, split: number): Promise<{ stdout: string; exitStatus: unknown }> {
  let writeRest = (): void => {};
  const sockets = new Set<Socket>();
  const server = createServer((socket: Socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write(answer.subarray(0, split));
      writeRest = () => {
        writeRest = () => {};
        socket.end(answer.subarray(split));
      };
    });
  });
  let onCrash = (_error: Error): void => {};
  try {
    const client = await connect(await listen(server));
    return await new Promise((resolve, reject) => {
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
  } finally {
    process.off('uncaughtExceptionMonitor', onCrash);
    for (const socket of sockets) socket.destroy();
    server.close();
  }
}

const splits = [
  { name: 'a record and the first bytes of the next head', split: output.length + 3 },
  { name: 'a record\'s content and part of its padding', split: output.length - 3 },
  { name: 'an empty record and part of the next head', split: output.length + emptyOutput.length + 5 },
  { name: 'an end-request head and part of its body', split: response.length - 5 },
];

for (const { name, split } of splits) {
  test(`a read ending in ${name} waits for the rest`, { timeout: 10_000 }, async () => {
    assert.deepEqual(await answeredWith(response, split), { stdout: HEAD + 'hello', exitStatus: 0 });
  });
}

test('stdout of more than one record\'s 65,535 bytes reaches the request whole', { timeout: 10_000 }, async () => {
  const body = 'x'.repeat(150_000);
  const big = Buffer.concat([encodeRecords(FCGI_STDOUT, 1, Buffer.from(HEAD + body)), emptyOutput, endRequest]);
  assert.deepEqual(await answeredWith(big, big.length), { stdout: HEAD + body, exitStatus: 0 });
});

// Malformed records from a backend end the request with an error; an end-request body too short to read the exit
// status from threw a RangeError out of the socket's 'data' handler, which ends the process (a shard).
const malformed = [
  { name: 'an end-request record with a 2-byte body', answer: Buffer.concat([output, encodeRecords(FCGI_END_REQUEST, 1, Buffer.alloc(2))]) },
  { name: 'a record of FastCGI version 2', answer: Buffer.concat([output, Buffer.from([2, FCGI_STDOUT, 0, 1, 0, 0, 0, 0])]) },
];

for (const { name, answer } of malformed) {
  test(`${name} ends the request with an error, not the process`, { timeout: 10_000 }, async () => {
    const { stdout, exitStatus } = await answeredWith(answer, answer.length);
    assert.equal(stdout, HEAD + 'hello');
    assert.ok(exitStatus instanceof Error, `exit status ${String(exitStatus)}`);
    assert.match(exitStatus.message, /unexpectedly ended/);
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
      if (Buffer.concat(received).includes(END_OF_STDIN)) socket.write(response);
    });
  });
  try {
    const client = await connect(await listen(server));
    assert.equal(await get(client, false, { REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/open.php' }), `${HEAD}hello (0)`);
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

test('params given as an object reach the server whole: long and non-ASCII names and values, over several records', { timeout: 10_000 }, async () => {
  const peer = await startKeptFastcgi(Buffer.from(HEAD + 'hello'), () => false);
  const params = {
    REQUEST_METHOD: 'GET',
    SCRIPT_FILENAME: '/params.php',
    EMPTY: '',
    ['N'.repeat(200)]: 'v',
    HTTP_X_LONG: 'y'.repeat(100_000),
    HTTP_X_TEXT: 'héllo wörld ✓ 🚀',
  };
  try {
    const client = await connect(peer.port);
    assert.equal(await get(client, false, params), `${HEAD}hello (0)`);
    assert.deepEqual(peer.params, [new Map(Object.entries(params))]);
  } finally {
    await peer.close();
  }
});

/** The first connection answers one request, then closes under the next one without answering. */
const closeUnderSecond = (connection: number, request: number) => connection === 0 && request === 1;

/** Runs `body` with a client that keeps one connection to a kept peer, once a first request has been answered on it. */
async function afterKeptRequest(
  closeUnder: (connection: number, request: number) => boolean,
  holdUnder: (connection: number, request: number) => boolean,
  body: (client: Client, peer: KeptFastcgi) => Promise<void>,
): Promise<void> {
  const peer = await startKeptFastcgi(Buffer.from(HEAD + 'hello'), closeUnder, holdUnder);
  try {
    const client = await connect(peer.port, { keepConns: 1 });
    assert.equal(await get(client, true), `${HEAD}hello (0)`);
    await body(client, peer);
  } finally {
    await peer.close();
  }
}

// keepConns: bodyless requests reuse a kept connection (FCGI_KEEP_CONN); one the server closes without answering is
// replaced by a new connection and the request sent again; a request with a body never takes an idle connection.
test('kept connections are reused, replaced when the server closed one, and not given to requests with a body', { timeout: 10_000 }, async () => {
  await afterKeptRequest(closeUnderSecond, () => false, async (client, peer) => {
    let retries = 0;
    client.on('retry', () => retries++);
    assert.equal(await get(client, true), `${HEAD}hello (0)`, 'the request on the closed kept connection was not sent again');
    assert.equal(retries, 1, 'the request sent again was not reported');
    assert.equal(peer.keepFlags.length, 2);
    assert.deepEqual(peer.keepFlags[0], [1, 1], 'both requests went on the first, kept connection');
    assert.deepEqual(peer.keepFlags[1], [1]);
    // the second connection is idle and kept, but a request with a body opens a connection of its own (not kept:
    // the one kept connection allowed exists), so it never waits on a connection the server may just have closed
    assert.equal(await get(client, false), `${HEAD}hello (0)`);
    assert.equal(peer.keepFlags.length, 3);
    assert.deepEqual(peer.keepFlags[2], [0]);
    assert.equal(await get(client, true), `${HEAD}hello (0)`);
    assert.deepEqual(peer.keepFlags[1], [1, 1]);
  });
});

// php-fpm ignores FCGI_ABORT_REQUEST while a script runs: abort() closes the connection instead, and a request
// aborted on a kept connection is not taken for one the server cut short, so it is not sent again.
test('abort() closes the request\'s kept connection, and the aborted request is not sent again', { timeout: 10_000 }, async () => {
  // the second request, on the same kept connection, is never answered
  const held = Promise.withResolvers<void>();
  const holdSecond = (connection: number, request: number) => {
    const isHeld = connection === 0 && request === 1;
    if (isHeld) held.resolve();
    return isHeld;
  };
  await afterKeptRequest(() => false, holdSecond, async (client, peer) => {
    let retries = 0;
    client.on('retry', () => retries++);
    const { request, stdout } = await open(client, { REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/held.php' }, true);
    request.stdin.end();
    await held.promise;
    request.abort();
    await peer.closed(0);
    assert.equal(await stdout, '');
    assert.match(String(request.getExitStatus()), /unexpectedly ended/);
    assert.equal(retries, 0, 'the aborted request was sent again');
    assert.equal(peer.keepFlags.length, 1);
  });
});

test('a request aborted while its retry connection is being made ends, and that connection closes unused', { timeout: 10_000 }, async () => {
  await afterKeptRequest(closeUnderSecond, () => false, async (client, peer) => {
    const { request, stdout } = await open(client, { REQUEST_METHOD: 'GET', SCRIPT_FILENAME: '/left.php' }, true);
    // the client leaves once the new connection for the request has been asked for, before it is made
    client.on('retry', () => process.nextTick(() => request.abort()));
    request.stdin.end();
    assert.equal(await stdout, '');
    assert.match(String(request.getExitStatus()), /unexpectedly ended/);
    await peer.closed(1);
    assert.deepEqual(peer.keepFlags[1], [], 'the aborted request was sent on the new connection');
  });
});

// A backend that answers before reading the body and closes (an early 413): the rest of the body is dropped, and each
// write still completes, so that the writer is not left waiting on a callback or handed an error.
test('a body written once the server has answered and closed is dropped, each write completing', { timeout: 10_000 }, async () => {
  const fake = await startFakeFastcgi(() => Buffer.from(HEAD + 'refused'), 0, true);
  try {
    const client = await connect(fake.port);
    const { request, stdout } = await open(client, { REQUEST_METHOD: 'POST', SCRIPT_FILENAME: '/upload.php' });
    assert.equal(await stdout, HEAD + 'refused');
    await fake.closed(0);
    const errors: Error[] = [];
    request.stdin.on('error', (error: Error) => errors.push(error));
    const written = [1, 2, 3].map(() => new Promise<unknown>((resolve) => request.stdin.write(Buffer.alloc(70_000, 'b'), resolve)));
    const finished = once(request.stdin, 'finish');
    request.stdin.end();
    assert.deepEqual((await Promise.all(written)).filter((error) => error != null), [], 'a write failed');
    await finished;
    assert.deepEqual(errors, []);
  } finally {
    await fake.close();
  }
});

/** `size` bytes of a pattern whose every byte says where it stands: byte i is i % 251. */
function pattern(size: number): Buffer {
  const bytes = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) bytes[i] = i % 251;
  return bytes;
}

/**
 * Reads a request's stdout, checking the pattern after the head; `firstData` resolves at its first chunk, after which
 * stdout is paused when `isPausedAtFirst`.
 */
function readPattern(client: Client, script: string, isPausedAtFirst: boolean): Promise<{ request: Request; firstData: Promise<void>; ended: Promise<number> }> {
  return new Promise((resolve, reject) => {
    client.request({ REQUEST_METHOD: 'GET', SCRIPT_FILENAME: script }, (error, request) => {
      if (error) return reject(error);
      const firstData = Promise.withResolvers<void>();
      let at = 0;
      let misplaced = -1;
      request.stdout.on('data', (chunk: Buffer) => {
        if (at === 0 && isPausedAtFirst) request.stdout.pause();
        firstData.resolve();
        for (let i = 0; i < chunk.length; i++, at++) {
          if (at >= HEAD.length && misplaced < 0 && chunk[i] !== (at - HEAD.length) % 251) misplaced = at;
        }
      });
      const ended = once(request.stdout, 'end').then(() => {
        assert.equal(misplaced, -1, `${script}: byte ${misplaced} out of place`);
        return at - HEAD.length;
      });
      resolve({ request, firstData: firstData.promise, ended });
    }, true);
  });
}

// A connection carries one request: pausing its stdout pauses the connection, so the backend waits in TCP instead of
// its output piling up in the client (8 MiB here, more than a socket's buffers hold for a reader that does not read).
test('a paused stdout stops reading its connection; resumed, the rest arrives whole and in order', { timeout: 30_000 }, async () => {
  const sizes: Record<string, number> = { '/paused.php': 8 << 20, '/flowing.php': 32 << 20 };
  const written = new Map<string, boolean>();
  const sockets = new Set<Socket>();
  const server = createServer((socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('data', (chunk: Buffer) => {
      const script = chunk.includes('/paused.php') ? '/paused.php' : '/flowing.php';
      written.set(script, false);
      const answer = Buffer.concat([encodeRecords(FCGI_STDOUT, 1, Buffer.from(HEAD)), encodeRecords(FCGI_STDOUT, 1, pattern(sizes[script]!)), emptyOutput, endRequest]);
      socket.write(answer, () => written.set(script, true));
    });
  });
  try {
    const client = await connect(await listen(server));
    const paused = await readPattern(client, '/paused.php', true);
    await paused.firstData;
    // A second request, four times as big, read whole meanwhile: had the first connection been read on, its 8 MiB
    // would have been read too.
    const flowing = await readPattern(client, '/flowing.php', false);
    assert.equal(await flowing.ended, sizes['/flowing.php']);
    assert.equal(written.get('/paused.php'), false, 'the paused request\'s connection was read to its end');
    paused.request.stdout.resume();
    assert.equal(await paused.ended, sizes['/paused.php']);
    assert.equal(paused.request.getExitStatus(), 0);
  } finally {
    for (const socket of sockets) socket.destroy();
    server.close();
  }
});
