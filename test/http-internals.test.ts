// The Node internals that held streams stand on, checked on real loopback connections, so that bumping the `node`
// package fails here, naming the internal, instead of silently breaking held streams: workers/http-detach.ts (node:http's
// connection listeners, `socket.parser`, _http_common.freeParser, `socket.server`) and workers/http-front.ts rewrap
// (a transferred socket's `_handle`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { Worker, type Transferable } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { detachFromHttp, returnToHttp } from '../workers/http-detach.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import type { RewrapReport } from './helpers/rewrap-worker.ts';
import { TestCa } from './helpers/tls-certs.ts';

const CHANGED = 'a Node internal that muxgate relies on changed:';

type Listeners = Map<string | symbol, Function[]>;

function listenersOf(socket: net.Socket): Listeners {
  return new Map(socket.eventNames().map((event) => [event, socket.listeners(event)]));
}

/** Listeners on the socket now that were not there before node:http had it, by event and name. */
function addedSince(before: Listeners, socket: net.Socket): string[] {
  const added: string[] = [];
  for (const [event, listeners] of listenersOf(socket)) {
    for (const listener of listeners) {
      if (!(before.get(event) ?? []).includes(listener)) added.push(`${String(event)}: ${listener.name || '(anonymous)'}`);
    }
  }
  return added;
}

interface HttpParser {
  socket: unknown;
  incoming: unknown;
}

/**
 * A node:http server fed connections as the shards feed theirs: accepted by a net.Server, handed over with
 * `emit('connection')` after 'listening' (which starts node:http's connection tracking).
 */
async function startServer(handler: http.RequestListener) {
  const server = http.createServer(handler);
  server.emit('listening');
  const connections: Array<{ socket: net.Socket; before: Listeners }> = [];
  const tcp = net.createServer((socket) => {
    connections.push({ socket, before: listenersOf(socket) });
    server.emit('connection', socket);
  });
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  return {
    server,
    connections,
    url: `http://127.0.0.1:${(tcp.address() as net.AddressInfo).port}`,
    async close() {
      server.close();
      for (const { socket } of connections) socket.destroy();
      await new Promise((resolve) => tcp.close(resolve));
    },
  };
}

test('a held response leaves node:http: its listeners are gone, its parser freed, the socket carries bytes both ways, and returnToHttp serves the next request', async () => {
  const seen: string[] = [];
  let held: { req: http.IncomingMessage; res: http.ServerResponse } | null = null;
  const heldReady = Promise.withResolvers<void>();
  const served = await startServer((req, res) => {
    seen.push(req.url!);
    if (req.url !== '/held') return void res.end('second');
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.flushHeaders();
    held = { req, res };
    req.resume();
    req.once('end', () => heldReady.resolve());
  });
  const client = await RawHttp.open(served.url, 'GET /held HTTP/1.1\r\nHost: muxgate\r\n\r\n');
  try {
    await withTimeout(heldReady.promise, 'the held request');
    const { req, res } = held!;
    const { socket, before } = served.connections[0];
    const httpSocket = socket as net.Socket & { parser?: HttpParser | null; _httpMessage?: unknown; server?: unknown };

    // What detachFromHttp looks at before it takes the socket.
    assert.equal(httpSocket._httpMessage, res, `${CHANGED} socket._httpMessage is not the response in progress`);
    const parser = httpSocket.parser;
    assert.ok(parser, `${CHANGED} node:http no longer keeps the connection's parser in socket.parser`);
    assert.equal(parser.incoming, req, `${CHANGED} socket.parser.incoming is not the request being answered`);
    assert.equal(httpSocket.server, served.server, `${CHANGED} node:http no longer names its server in socket.server (returnToHttp needs it)`);
    const httpListeners = addedSince(before, socket);
    assert.ok(httpListeners.some((l) => l.startsWith('data: ')) && httpListeners.some((l) => l.startsWith('error: ')),
      `${CHANGED} node:http's connection listeners are not where detachFromHttp looks: ${httpListeners.join(', ')}`);
    const { freeParser } = createRequire(import.meta.url)('_http_common') as { freeParser?: unknown };
    assert.equal(typeof freeParser, 'function', `${CHANGED} _http_common.freeParser is gone`);

    assert.equal(detachFromHttp(req, res), socket, 'detachFromHttp refused a complete request whose head is out');
    assert.deepEqual(addedSince(before, socket), [],
      `${CHANGED} node:http listeners stay on the socket after detachFromHttp (HTTP_LISTENER in workers/http-detach.ts matches their names)`);
    assert.equal(httpSocket.parser, null, `${CHANGED} freeParser no longer clears socket.parser`);
    assert.equal((req as unknown as { parser: unknown }).parser, null, `${CHANGED} freeParser no longer clears req.parser`);
    assert.deepEqual([parser.socket, parser.incoming], [null, null], `${CHANGED} freeParser no longer releases the parser's socket and request`);
    assert.equal(httpSocket._httpMessage, null, `${CHANGED} res.detachSocket no longer releases socket._httpMessage`);
    // node:http's idle-connection sweep (shutdown, keep-alive limits) must not see the detached connection any more.
    served.server.closeIdleConnections();
    assert.equal(socket.destroyed, false, `${CHANGED} closeIdleConnections closes a connection detached from node:http`);

    // Bytes both ways, with node:http out of the way: a request sent now is not parsed, only read.
    const next = 'GET /second HTTP/1.1\r\nHost: muxgate\r\n\r\n';
    let unread = Buffer.alloc(0);
    const nextArrived = Promise.withResolvers<void>();
    const readWhileDetached = (chunk: Buffer) => {
      unread = Buffer.concat([unread, chunk]);
      if (unread.length >= next.length) nextArrived.resolve();
    };
    socket.on('data', readWhileDetached);
    socket.write('8\r\ndetached\r\n');
    await client.waitFor((t) => decodeChunked(t).body === 'detached', 5000, 'the chunk written on the detached socket');
    client.socket.write(next);
    await withTimeout(nextArrived.promise, 'the next request to arrive on the detached socket');
    assert.equal(unread.toString('latin1'), next);
    assert.deepEqual(seen, ['/held'], `${CHANGED} node:http still parses a detached connection`);
    assert.equal(decodeChunked(client.text).body, 'detached', `${CHANGED} node:http answered on a detached connection: ${client.text}`);

    // The held response ends; the connection goes back to node:http, which parses what arrived meanwhile.
    socket.removeListener('data', readWhileDetached);
    socket.write('0\r\n\r\n');
    returnToHttp(socket, unread);
    const text = await client.waitFor((t) => t.endsWith('second'), 5000, 'the answer to the request after the held one');
    assert.deepEqual(seen, ['/held', '/second']);
    assert.match(text, /\r\n0\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nsecond$/);
  } finally {
    client.close();
    await served.close();
  }
});

test('over TLS, detachFromHttp takes node:http\'s listeners only: tls\'s own stay (one of them frees OpenSSL\'s state on close)', async () => {
  const ca = new TestCa();
  const leaf = ca.leaf('internals', '1B01');
  const held = Promise.withResolvers<{ req: http.IncomingMessage; res: http.ServerResponse }>();
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.flushHeaders();
    req.resume();
    req.once('end', () => held.resolve({ req, res }));
  });
  server.emit('listening');
  const sockets: tls.TLSSocket[] = [];
  let tlsListeners: string[] = [];
  const secure = tls.createServer({ cert: readFileSync(leaf.certFile), key: readFileSync(leaf.keyFile) }, (socket) => {
    sockets.push(socket);
    tlsListeners = listenerNames(socket);
    server.emit('connection', socket);
  });
  secure.listen(0, '127.0.0.1');
  await once(secure, 'listening');
  const url = `https://localhost:${(secure.address() as net.AddressInfo).port}`;
  const client = await RawHttp.open(url, 'GET /held HTTP/1.1\r\nHost: muxgate\r\n\r\n', { ca: ca.pem });
  try {
    const { req, res } = await withTimeout(held.promise, 'the held request over TLS');
    assert.ok(tlsListeners.includes('close: onSocketCloseDestroySSL'), `${CHANGED} tls no longer frees a connection's OpenSSL state in a 'close' listener named onSocketCloseDestroySSL: ${tlsListeners.join(', ')}`);
    assert.equal(detachFromHttp(req, res), sockets[0]);
    assert.deepEqual(listenerNames(sockets[0]), tlsListeners,
      'after detachFromHttp, the TLS connection has its own listeners and no others');
    sockets[0].write('3\r\ntls\r\n');
    await client.waitFor((t) => decodeChunked(t).body === 'tls', 5000, 'the chunk written on the detached TLS socket');
  } finally {
    client.close();
    server.close();
    secure.close();
    for (const socket of sockets) socket.destroy();
    ca.remove();
  }
});

function listenerNames(socket: net.Socket): string[] {
  return socket.eventNames().flatMap((event) => socket.listeners(event).map((listener) => `${String(event)}: ${listener.name || '(anonymous)'}`));
}

function withTimeout<T>(promise: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test('a socket transferred to a worker thread and rewrapped there (workers/http-front.ts rewrap) reads and writes', async () => {
  const worker = new Worker(new URL('./helpers/rewrap-worker.ts', import.meta.url));
  const tcp = net.createServer({ pauseOnConnect: true }, (socket) => {
    worker.postMessage({ socket }, [socket as unknown as Transferable]);
  });
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  const reported = once(worker, 'message') as Promise<[RewrapReport]>;
  const client = await RawHttp.open(`http://127.0.0.1:${(tcp.address() as net.AddressInfo).port}`, 'ping');
  try {
    const [report] = await withTimeout(reported, "the worker's report");
    assert.equal(report.transferredHandle, 'TCP', `${CHANGED} a socket transferred to a worker no longer carries its TCP handle in _handle`);
    assert.equal(report.isHandleMoved, true, `${CHANGED} new net.Socket({ handle }) no longer adopts the handle given`);
    assert.equal(report.remotePort, client.socket.localPort, 'the rewrapped socket is not this connection');
    await client.waitFor((t) => t === 'hello from the worker\necho:ping', 5000, 'the worker to write and to echo what it read');
    client.socket.end();
    await client.waitForClose(5000);
  } finally {
    client.close();
    await worker.terminate();
    await new Promise((resolve) => tcp.close(resolve));
  }
});
