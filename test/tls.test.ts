// TLS on the public listener (MUX_TLS_CERT, MUX_TLS_KEY), terminated in the shards, with certificates made by openssl:
// HTTPS through php-fpm, held streams and WebSockets over TLS, keep-alive after a held stream, SIGHUP reloads under held
// streams, the checks at start, and clients that never finish a handshake or send no TLS at all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { PHP_ROOT, ScriptLog, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import { ServedPair, TestCa, type Leaf } from './helpers/tls-certs.ts';
import { TestWebSocket, wsUrl } from './helpers/websocket-client.ts';
import { waitUntil } from './helpers/wait.ts';
import { eventParams, messageParams } from '../workers/cgi-params.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startServer } from '../src/server.ts';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
/** The handshake timeout is MUX_HEADERS_TIMEOUT: short here, for the client that never says hello. */
const HANDSHAKE_TIMEOUT_S = 2;

const ca = new TestCa();
const first: Leaf = ca.leaf('first', '1A01');
const second: Leaf = ca.leaf('second', '1A02');
const served = new ServedPair(ca);
const eventLog = new ScriptLog();
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  served.serve(first);
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8, env: { EVENT_LOG: eventLog.path } });
  mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '2', MUX_EVENTS: 'close', MUX_HEADERS_TIMEOUT: String(HANDSHAKE_TIMEOUT_S),
    MUX_TLS_CERT: served.certFile, MUX_TLS_KEY: served.keyFile,
  });
});

after(async () => {
  await mux?.stop();
  await fpm?.stop();
  eventLog.remove();
  ca.remove();
});

/** A GET over HTTPS, trusting the test CA only; the answer and the certificate the server showed. */
function httpsGet(url: string): Promise<{ status: number; body: string; serialNumber: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca: ca.pem, agent: false }, (response) => {
      const serialNumber = (response.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
      let body = '';
      response.setEncoding('utf8').on('data', (text: string) => { body += text; });
      response.on('end', () => resolve({ status: response.statusCode!, body, serialNumber }));
    });
    request.setTimeout(10_000, () => request.destroy(new Error(`no answer to GET ${url} within 10 s`)));
    request.on('error', reject);
  });
}

/** The serial number of the certificate a new TLS connection is shown (the handshake verified against the test CA). */
async function servedSerial(url = mux.url): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = tls.connect({ host: hostname, port: Number(port), ca: ca.pem, servername: 'localhost' });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return socket.getPeerCertificate().serialNumber;
  } finally {
    socket.destroy();
  }
}

/** The sum of a metric's samples whose labels include this one (`protocol="http1_tls"`), over every shard. */
async function sampleSum(name: string, label: string): Promise<number> {
  return sumOf(await (await fetch(mux.metricsUrl)).text(), name, label);
}

function sumOf(text: string, name: string, label: string): number {
  let sum = 0;
  for (const match of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    if (match[1].split(',').includes(label)) sum += Number(match[2]);
  }
  return sum;
}

async function waitForSample(name: string, label: string, predicate: (value: number) => boolean): Promise<number> {
  let value = 0;
  await waitUntil(async () => predicate(value = await sampleSum(name, label)), 10_000, () => `${name}{${label}} to change (it is ${value})`, 50);
  return value;
}

const secure = (): tls.ConnectionOptions => ({ ca: ca.pem, servername: 'localhost' });

test('an HTTPS GET reaches php-fpm with HTTPS=on, REQUEST_SCHEME=https and the listener\'s port', async () => {
  assert.match(mux.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the start line names the https:// URL');
  const { status, body, serialNumber } = await httpsGet(`${mux.url}/echo.php?x=1`);
  assert.equal(status, 200);
  assert.equal(serialNumber, first.serialNumber);
  const { server } = JSON.parse(body) as { server: Record<string, string> };
  assert.equal(server.HTTPS, 'on');
  assert.equal(server.REQUEST_SCHEME, 'https');
  assert.equal(server.SERVER_PORT, new URL(mux.url).port);
  assert.equal(server.REMOTE_ADDR, '127.0.0.1');
  assert.equal(server.QUERY_STRING, 'x=1');
  // Another TLS client: curl offers h2 and http/1.1 by ALPN, and gets HTTP/2; told to, HTTP/1.1.
  const { port } = new URL(mux.url);
  const curl = (...args: string[]) => {
    const curled = execFileSync('curl', ['-sS', '--cacert', ca.certFile, '--resolve', `localhost:${port}:127.0.0.1`, '-w', '\n%{http_version}',
      ...args, `https://localhost:${port}/echo.php?by=curl`], { encoding: 'utf8', timeout: 10_000 });
    const [json, version] = curled.split('\n');
    return { version, server: (JSON.parse(json) as { server: Record<string, string> }).server };
  };
  const h2 = curl('--http2');
  assert.equal(h2.version, '2');
  assert.equal(h2.server.SERVER_PROTOCOL, 'HTTP/2.0');
  assert.equal(h2.server.HTTPS, 'on');
  const http1 = curl('--http1.1');
  assert.equal(http1.version, '1.1');
  assert.equal(http1.server.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.equal(http1.server.HTTPS, 'on');
});

test('a held SSE stream over TLS receives pushes; once it ends, its keep-alive connection serves the next request', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&type=text/event-stream', { secure: secure() });
  try {
    assert.match(client.text, /^HTTP\/1\.1 200 OK\r\n[^]*content-type: text\/event-stream/i);
    await waitForSample('muxgate_connections_by_protocol', 'protocol="http1_tls"', (n) => n >= 1);
    for (const text of ['first push', 'second push']) {
      await push(mux.pushUrl, [{ tokens: [token], body: `data: ${text}\n\n` }]);
      await client.waitFor((t) => decodeChunked(t).body.includes(`data: ${text}\n\n`), 5000, text);
    }
    await push(mux.pushUrl, [{ tokens: [token], close: true, body: 'data: bye\n\n' }]);
    await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'the stream\'s last chunk');
    // The same TLS connection, back in node:http: the next request is answered on it.
    const answered = client.text.length;
    client.socket.write('GET /echo.php?after=stream HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const text = await client.waitFor((t) => decodeChunked(t.slice(answered)).isComplete, 5000, 'the answer to the request after the stream');
    const next = text.slice(answered);
    assert.match(next, /^HTTP\/1\.1 200 OK\r\n/);
    const { server } = JSON.parse(decodeChunked(next).body) as { server: Record<string, string> };
    assert.deepEqual([server.QUERY_STRING, server.HTTPS], ['after=stream', 'on']);
    assert.equal(client.hasClosed, false);
  } finally {
    client.close();
  }
});

test('a TLS client that stops reading is dropped as a slow consumer: what TLS holds for it counts as unsent', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream', { secure: secure() });
  try {
    client.socket.pause();
    const big = 'x'.repeat(512 * 1024);
    let pushes = 0;
    while (pushes < 40 && !mux.logs.some((l) => l.msg === 'slow consumer dropped')) {
      await push(mux.pushUrl, [{ tokens: [token], body: big }]);
      pushes++;
    }
    await mux.waitForLog((l) => l.msg === 'slow consumer dropped');
    // MUX_MAX_BUFFERED_BYTES is 1 MiB: a few pushes beyond what the kernel's buffers take, not 40.
    assert.ok(pushes < 40, `still not dropped after ${pushes} pushes of 512 KiB`);
    client.socket.resume();
    await client.waitForClose(10_000);
  } finally {
    client.close();
  }
});

test('a TLS session resumes on every shard: the shards share their session-ticket keys', async () => {
  const { hostname, port } = new URL(mux.url);
  const firstConnection = tls.connect({ ...secure(), host: hostname, port: Number(port) });
  firstConnection.on('error', () => {});
  const session = await new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no session ticket within 5 s')), 5000);
    firstConnection.once('session', (ticket: Buffer) => {
      clearTimeout(timer);
      resolve(ticket);
    });
  });
  firstConnection.destroy();
  // Held at once, the connections spread over both shards (the acceptor picks the least loaded).
  const held = await Promise.all(Array.from({ length: 6 }, () => openStream(mux.url, 'hold=stream', { secure: { ...secure(), session } })));
  try {
    const shards = new Set(held.map(({ token }) => token.split('.')[1]));
    assert.deepEqual([...shards].sort(), ['0', '1'], 'the connections reached both shards');
    for (const { client, token } of held) {
      assert.equal((client.socket as tls.TLSSocket).isSessionReused(), true, `the session was not resumed on shard ${token.split('.')[1]}`);
    }
  } finally {
    for (const { client } of held) client.close();
  }
});

test('a WebSocket over wss:// is opened by the backend, echoes, and receives pushes', async () => {
  const ws = await TestWebSocket.open(wsUrl(mux.url, '/websocket.php?room=tls'), { ca: ca.pem });
  try {
    assert.match(ws.ws.url, /^wss:\/\//);
    ws.ws.send('hello');
    await ws.waitForMessage((m) => m.text === 'echo: hello');
    await push(mux.pushUrl, [{ tokens: [ws.token], body: 'pushed over TLS' }]);
    await ws.waitForMessage((m) => m.text === 'pushed over TLS');
    ws.ws.send('quit');
    assert.equal((await ws.waitForClose()).code, 1000);
  } finally {
    ws.close();
  }
});

test('what muxgate tells the backend about a stream opened over TLS (close events, WebSocket messages) says HTTPS=on', () => {
  const script = { scriptFilename: '', documentRoot: '/srv' };
  const event = eventParams({ token: 't', reason: 'client', requestUri: '/a', closeCode: 0, isSecure: true }, script);
  const message = messageParams('/a', 't', script, 5, false, true);
  for (const params of [event, message]) assert.deepEqual([params.HTTPS, params.REQUEST_SCHEME], ['on', 'https']);
  const plain = messageParams('/a', 't', script, 5, false, false);
  assert.deepEqual([plain.HTTPS, plain.REQUEST_SCHEME], [undefined, 'http']);
});

test('SIGHUP reloads the certificate under held streams: they keep receiving, new connections get the new certificate', async () => {
  const held = await Promise.all([0, 1, 2, 3].map(() => openStream(mux.url, 'hold=stream', { secure: secure() })));
  const ws = await TestWebSocket.open(wsUrl(mux.url, '/websocket.php?room=reload'), { ca: ca.pem });
  try {
    assert.equal(await servedSerial(), first.serialNumber);
    served.serve(second);
    mux.child.kill('SIGHUP');
    const reloaded = await mux.waitForLog((l) => l.msg === 'TLS certificate reloaded: new handshakes use it');
    assert.equal((reloaded.certificate as { serialNumber: string }).serialNumber, second.serialNumber);
    // A connection made after the reload is on the control port behind the new pair, whichever shard it lands on.
    for (let i = 0; i < 4; i++) assert.equal(await servedSerial(), second.serialNumber);
    assert.equal((await httpsGet(`${mux.url}/echo.php`)).serialNumber, second.serialNumber);
    await push(mux.pushUrl, [{ tokens: held.map((s) => s.token), body: 'after the reload' }, { tokens: [ws.token], body: 'ws after the reload' }]);
    for (const { client } of held) {
      await client.waitFor((t) => decodeChunked(t).body.includes('after the reload'), 5000, 'a part after the reload');
      assert.equal((client.socket as tls.TLSSocket).getPeerCertificate().serialNumber, first.serialNumber);
      assert.equal(client.hasClosed, false);
    }
    await ws.waitForMessage((m) => m.text === 'ws after the reload');
    assert.equal(ws.closed, null);
  } finally {
    for (const { client } of held) client.close();
    ws.close();
  }
});

test('a reload with a bad pair is logged and the pair in use kept', async () => {
  const inUse = await servedSerial();
  // The certificate is the second leaf's, the key the first's: they do not match.
  copyFileSync(second.certFile, served.certFile);
  copyFileSync(first.keyFile, served.keyFile);
  const { client, token } = await openStream(mux.url, 'hold=stream', { secure: secure() });
  try {
    mux.child.kill('SIGHUP');
    const failed = await mux.waitForLog((l) => l.msg === 'TLS reload failed: the certificate and key in use are kept');
    assert.match(String(failed.err), /MUX_TLS_KEY=.* is invalid: expected the private key of the certificate in MUX_TLS_CERT .*does not match/);
    assert.equal(await servedSerial(), inUse);
    await push(mux.pushUrl, [{ tokens: [token], body: 'still here' }]);
    await client.waitFor((t) => decodeChunked(t).body.includes('still here'), 5000, 'a part after the failed reload');
    assert.equal((await httpsGet(`${mux.url}/echo.php`)).status, 200);
  } finally {
    client.close();
    served.serve(second);
  }
});

test('a client that opens TCP and never sends a ClientHello is cut off after the handshake timeout, and counted', async () => {
  const timeouts = await metricValue(mux.metricsUrl, 'muxgate_tls_handshakes_total{result="timeout"}') ?? 0;
  const handshaking = await sampleSum('muxgate_connections_by_protocol', 'protocol="tls_handshake"');
  const { port } = new URL(mux.url);
  const silent = net.connect(Number(port), '127.0.0.1');
  silent.on('error', () => {});
  let received = Buffer.alloc(0);
  silent.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]); });
  const closed = new Promise<void>((resolve) => silent.once('close', () => resolve()));
  try {
    await waitForSample('muxgate_connections_by_protocol', 'protocol="tls_handshake"', (n) => n === handshaking + 1);
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the silent client was not cut off')), HANDSHAKE_TIMEOUT_S * 1000 + 10_000))]);
    assert.equal(received.length, 0, 'nothing is written to a client that said nothing');
    await waitUntil(async () => (await metricValue(mux.metricsUrl, 'muxgate_tls_handshakes_total{result="timeout"}'))! >= timeouts + 1, 5000, 'the timeout to be counted');
    await waitForSample('muxgate_connections_by_protocol', 'protocol="tls_handshake"', (n) => n === handshaking);
    await mux.waitForLog((l) => l.kind === 'tls_handshake_timeout');
    // The shard goes on.
    assert.equal((await httpsGet(`${mux.url}/echo.php`)).status, 200);
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_shard_restarts_total'), 0);
  } finally {
    silent.destroy();
  }
});

test('plain HTTP, or garbage, instead of a ClientHello: a failed handshake, counted and logged, the connection closed', async () => {
  const failedBefore = await metricValue(mux.metricsUrl, 'muxgate_tls_handshakes_total{result="failed"}') ?? 0;
  for (const bytes of ['GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0xff, 0xff])]) {
    const client = await RawHttp.open(mux.url.replace('https:', 'http:'), '');
    client.socket.write(bytes);
    await client.waitForClose(10_000);
    assert.doesNotMatch(client.text, /HTTP\/1\.1/, 'no HTTP answer on a TLS listener');
  }
  await waitUntil(async () => (await metricValue(mux.metricsUrl, 'muxgate_tls_handshakes_total{result="failed"}'))! >= failedBefore + 2, 5000, 'both failures to be counted');
  const logged = await mux.waitForLog((l) => l.kind === 'tls_handshake_failed');
  assert.equal(logged.peer, '127.0.0.1');
  assert.ok((await metricValue(mux.metricsUrl, 'muxgate_tls_handshakes_total{result="ok"}'))! >= 1);
  assert.equal(await metricValue(mux.metricsUrl, 'muxgate_shard_restarts_total'), 0);
  assert.equal((await httpsGet(`${mux.url}/echo.php`)).status, 200);
});

test('once its clients have gone, no TLS connection is left counted (handshaking or open)', async () => {
  await waitForSample('muxgate_connections_by_protocol', 'protocol="tls_handshake"', (n) => n === 0);
  await waitForSample('muxgate_connections_by_protocol', 'protocol="http1_tls"', (n) => n === 0);
  // What is left is plain (the pushers' kept connections to the push listener), in the same scrape.
  const text = await (await fetch(mux.metricsUrl)).text();
  assert.equal(sumOf(text, 'muxgate_connections_by_protocol', 'protocol="http1"'), sumOf(text, 'muxgate_open_connections', 'shard="0"') + sumOf(text, 'muxgate_open_connections', 'shard="1"'));
});

test('bad TLS files stop muxgate at start with exit 2, naming the variable and what is wrong', () => {
  const notPem = ca.file('not-pem.txt', 'this is not a certificate\n');
  const start = (env: Record<string, string>) => {
    const result = spawnSync(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH, MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', ...env },
      encoding: 'utf8', timeout: 15_000,
    });
    return { status: result.status, stderr: result.stderr };
  };
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ MUX_TLS_CERT: '/nonexistent/cert.pem', MUX_TLS_KEY: first.keyFile },
      /^muxgate: MUX_TLS_CERT="\/nonexistent\/cert\.pem" is invalid: expected a readable file holding a PEM certificate chain \(ENOENT\)\n$/],
    [{ MUX_TLS_CERT: first.certFile, MUX_TLS_KEY: '/nonexistent/key.pem' }, /^muxgate: MUX_TLS_KEY="\/nonexistent\/key\.pem" is invalid: .*\(ENOENT\)\n$/],
    [{ MUX_TLS_CERT: notPem, MUX_TLS_KEY: first.keyFile }, /^muxgate: MUX_TLS_CERT=".*not-pem\.txt" is invalid: expected a PEM certificate .*holds no PEM certificate\n$/],
    [{ MUX_TLS_CERT: first.certFile, MUX_TLS_KEY: notPem }, /^muxgate: MUX_TLS_KEY=".*not-pem\.txt" is invalid: expected an unencrypted PEM private key .*holds no PEM private key\n$/],
    [{ MUX_TLS_CERT: first.certFile, MUX_TLS_KEY: second.keyFile },
      /^muxgate: MUX_TLS_KEY=".*second\.key" is invalid: expected the private key of the certificate in MUX_TLS_CERT \(.*first\.pem, serial 1A01\): this key does not match it\n$/],
    [{ MUX_TLS_CERT: first.certFile }, /^muxgate: MUX_TLS_KEY="" is invalid: expected set as well as MUX_TLS_CERT/],
    [{ MUX_TLS_KEY: first.keyFile }, /^muxgate: MUX_TLS_CERT="" is invalid: expected set as well as MUX_TLS_KEY/],
  ];
  for (const [env, expected] of cases) {
    const { status, stderr } = start(env);
    assert.equal(status, 2, `${JSON.stringify(env)}: exit ${status}, ${stderr}`);
    assert.match(stderr, expected);
  }
});

test('a shard restarted after a reload serves the reloaded certificate', async () => {
  const files = new ServedPair(ca, 'restart');
  files.serve(first);
  const config = loadConfig({
    ...phpBackend(fpm), MUX_SHARDS: '1', MUX_TLS_CERT: files.certFile, MUX_TLS_KEY: files.keyFile,
    MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', MUX_SHUTDOWN_GRACE: '1',
  });
  const server = await startServer(config, createLogger('silent'));
  const url = `https://127.0.0.1:${server.public.port}`;
  const metricsUrl = `http://127.0.0.1:${server.metrics.port}/metrics`;
  try {
    assert.equal(await servedSerial(url), first.serialNumber);
    files.serve(second);
    assert.equal(server.reloadTls(), true);
    assert.equal(await servedSerial(url), second.serialNumber);
    await server.shards.threadOf(0)!.terminate();
    await waitUntil(async () => await metricValue(metricsUrl, 'muxgate_shard_restarts_total') === 1, 5000, 'the shard\'s restart');
    await waitUntil(() => server.shards.isUp(0), 5000, 'shard 0 to come back', 20);
    assert.equal(await servedSerial(url), second.serialNumber);
  } finally {
    await server.stop();
  }
});

test('without TLS, SIGHUP is logged and muxgate goes on', async () => {
  const plain = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '1' });
  try {
    plain.child.kill('SIGHUP');
    await plain.waitForLog((l) => l.msg === 'SIGHUP: nothing to reload (no MUX_TLS_CERT and MUX_TLS_KEY)');
    assert.equal((await fetch(`${plain.url}/echo.php`)).status, 200);
    assert.equal(plain.child.exitCode, null);
  } finally {
    await plain.stop();
  }
});
