// Bad backends: malformed output, broken heads, slow, down and back up. The gateway keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { PHP_ROOT, ScriptLog, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { startFakeFastcgi } from './helpers/fake-fastcgi.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';

/** The requests slow-body.php has started. */
const requestLog = new ScriptLog();
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, env: { REQUEST_LOG: requestLog.path } });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '2', MUX_FASTCGI_TIMEOUT: '1' });
});

after(async () => {
  await mux.stop();
  await fpm.stop();
  requestLog.remove();
});

async function assertStillServing() {
  const response = await fetch(`${mux.url}/stream.php`);
  assert.equal(response.status, 200);
  assert.match(await response.text(), /^token=/);
  assert.equal(await metricValue(mux.metricsUrl, 'muxgate_shard_restarts_total'), 0);
}

test('a multiplexed response without a boundary is a 502 with a log line', async () => {
  const response = await fetch(`${mux.url}/broken.php?case=no-boundary`);
  assert.equal(response.status, 502);
  await mux.waitForLog((l) => l.msg === 'backend sent a multiplexed response without a usable boundary');
  await assertStillServing();
});

test('a backend fault repeated with every request is one warning line per interval, each one still at debug', async () => {
  const warned = () => mux.logs.filter((l) => l.kind === 'backend_bad_boundary' && l.level === 40).length;
  const before = warned();
  for (let i = 0; i < 50; i++) assert.equal((await fetch(`${mux.url}/broken.php?case=no-boundary`)).status, 502);
  await mux.waitForLog((l) => l.level === 20 && l.msg === 'backend sent a multiplexed response without a usable boundary');
  assert.ok(warned() - before <= 1, `${warned() - before} warn lines for 50 faults`);
});

test('an invalid Multiplex-Hold is a 502 with a log line', async () => {
  assert.equal((await fetch(`${mux.url}/broken.php?case=bad-hold`)).status, 502);
  await mux.waitForLog((l) => l.msg === 'backend sent a bad Multiplex-* header');
  await assertStillServing();
});

test('a truncated body: the parts before stand, the response ends cleanly, the error is logged and counted', async () => {
  const client = await RawHttp.get(`${mux.url}/broken.php?case=truncated`);
  await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'a clean end');
  assert.equal(decodeChunked(client.text).body, 'first');
  await mux.waitForLog((l) => l.msg === 'backend multiplexed body rejected; the parts before it stand' && /truncated/i.test(String(l.err)));
  assert.ok(((await metricValue(mux.metricsUrl, 'muxgate_rejected_parts_total')) ?? 0) >= 1);
  client.close();
  await assertStillServing();
});

test('garbage after a delimiter: the parts before stand, the rest is rejected', async () => {
  const client = await RawHttp.get(`${mux.url}/broken.php?case=garbage`);
  await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'a clean end');
  assert.equal(decodeChunked(client.text).body, 'first');
  client.close();
  await assertStillServing();
});

test('a bare LF in part headers cannot add a target: the body is rejected there and the other stream gets nothing', async () => {
  const { client: victim, token } = await openStream(mux.url, 'hold=stream&silent=1');
  const response = await fetch(`${mux.url}/broken.php?case=bare-lf`, { headers: { 'X-Victim': token } });
  assert.equal(response.status, 200);
  assert.equal(await response.text(), '');
  await mux.waitForLog((l) => l.msg === 'backend multiplexed body rejected; the parts before it stand' && /bare LF/.test(String(l.err)));
  await push(mux.pushUrl, [{ tokens: [token], body: 'after' }]);
  await victim.waitFor((t) => decodeChunked(t).body.endsWith('after'), 5000, 'the pushed part');
  assert.equal(decodeChunked(victim.text).body, 'after');
  victim.close();
});

test('a CGI head that mixes line ends is a 502; a head with LF line ends throughout is relayed', async () => {
  // X-User copied from user input with CRLF stripped but not a lone LF: it would add a Set-Cookie.
  let stdout = Buffer.from('Content-Type: text/plain\r\nX-User: a\nSet-Cookie: session=evil\r\n\r\nbody');
  const fake = await startFakeFastcgi(() => stdout);
  const other = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${fake.port}`, MUX_SHARDS: '1' });
  try {
    const mixed = await fetch(other.url);
    assert.equal(mixed.status, 502);
    assert.equal(mixed.headers.get('set-cookie'), null);
    await other.waitForLog((l) => l.msg === 'backend sent a malformed CGI head' && /line 2 .* bare LF .* CRLF/.test(String(l.err)));
    assert.equal(await metricValue(other.metricsUrl, 'muxgate_fastcgi_errors_total{kind="bad_head"}'), 1);
    stdout = Buffer.from('Status: 201 Made\nContent-Type: text/plain\nX-A: 1\n\nbody');
    const lf = await fetch(other.url);
    assert.deepEqual([lf.status, lf.headers.get('x-a'), await lf.text()], [201, '1', 'body']);
  } finally {
    assert.equal(await other.stop(), 0);
    await fake.close();
  }
});

test('a backend slower than MUX_FASTCGI_TIMEOUT gets a 504', async () => {
  const started = Date.now();
  const response = await fetch(`${mux.url}/broken.php?case=slow&seconds=4`);
  assert.equal(response.status, 504);
  assert.ok(Date.now() - started < 3000, `504 after ${Date.now() - started} ms`);
  await mux.waitForLog((l) => l.msg === 'backend response head timed out');
  await assertStillServing();
});

test('a client that leaves before the backend answers is no backend error', async () => {
  const noHead = async () => (await metricValue(mux.metricsUrl, 'muxgate_fastcgi_errors_total{kind="no_head"}')) ?? 0;
  const before = await noHead();
  const uri = '/slow-body.php?kind=silent&count=10&pause=100';
  const client = await RawHttp.get(`${mux.url}${uri}`);
  // It leaves once the backend has the request, a second before the backend would answer.
  await requestLog.waitForLine((line) => line === uri, 5000, 'the request at the backend');
  client.close();
  const line = await mux.waitForLog((l) => l.msg === 'client left before the backend answered');
  assert.equal(line.uri, uri);
  assert.equal(await noHead(), before);
  assert.ok(!mux.logs.some((l) => l.msg === 'backend ended without a response head'), 'the abort was logged as a backend fault');
  await assertStillServing();
});

test('a broken CGI head from a backend is a 502; so is a backend that is down, until it is back', async () => {
  let stdout = Buffer.from('this line has no colon\r\n\r\nbody');
  const fake = await startFakeFastcgi(() => stdout);
  const other = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${fake.port}`, MUX_SHARDS: '1' });
  try {
    assert.equal((await fetch(other.url)).status, 502);
    await other.waitForLog((l) => l.msg === 'backend sent a malformed CGI head');
    stdout = Buffer.from('Status: 200\r\nX-Split: a\rb\r\n\r\nbody');
    assert.equal((await fetch(other.url)).status, 502, 'a bare CR in a header value must not reach the client');
    stdout = Buffer.from('Status: 203 Fine\r\nContent-Type: text/plain\r\n\r\nbody');
    const fine = await fetch(other.url);
    assert.deepEqual([fine.status, await fine.text()], [203, 'body']);

    const port = fake.port;
    await fake.close();
    const started = Date.now();
    assert.equal((await fetch(other.url)).status, 502);
    assert.ok(Date.now() - started < 2000, `502 after ${Date.now() - started} ms`);
    await other.waitForLog((l) => l.msg === 'backend unavailable');
    assert.ok(((await metricValue(other.metricsUrl, 'muxgate_fastcgi_errors_total')) ?? 0) >= 3);

    const revived = await startFakeFastcgi(() => stdout, port);
    try {
      const back = await fetch(other.url);
      assert.deepEqual([back.status, await back.text()], [203, 'body']);
    } finally {
      await revived.close();
    }
  } finally {
    assert.equal(await other.stop(), 0);
  }
});

test('a backend that answers before reading a large body and closes: the answer is relayed, the shard and its streams live on', async () => {
  const held = Buffer.from('Content-Type: application/x-multiplex; boundary=b\r\nMultiplex-Hold: stream\r\n\r\n--b--\r\n');
  const refusal = Buffer.from('Status: 413\r\nContent-Type: text/plain\r\n\r\ntoo large');
  let answers = 0;
  const fake = await startFakeFastcgi(() => (answers++ === 0 ? held : refusal), 0, true);
  const other = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${fake.port}`, MUX_SHARDS: '1' });
  try {
    const stream = await RawHttp.get(`${other.url}/stream`);
    await stream.waitFor((t) => t.includes('\r\n\r\n'), 5000, 'the held stream\'s head');
    const { host } = new URL(other.url);
    const chunk = Buffer.alloc(65_536, 'a');
    for (const framing of ['chunked', 'length']) {
      const size = 4 * 1024 * 1024;
      const head = framing === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`;
      const client = await RawHttp.open(other.url, `POST /send HTTP/1.1\r\nHost: ${host}\r\n${head}\r\n\r\n`);
      for (let sent = 0; sent < size && !client.hasClosed; sent += chunk.length) {
        const isWritable = client.socket.write(framing === 'chunked' ? Buffer.concat([Buffer.from('10000\r\n'), chunk, Buffer.from('\r\n')]) : chunk);
        // The body waits for muxgate to take it, or stops when muxgate closes after answering.
        if (!isWritable) await Promise.race([once(client.socket, 'drain'), once(client.socket, 'close')]);
      }
      if (framing === 'chunked') client.socket.write('0\r\n\r\n');
      await client.waitFor((t) => t.endsWith('too large'), 10_000, `the backend's 413 (${framing} body)`);
      assert.match(client.text, /^HTTP\/1\.1 413 /);
      client.close();
    }
    // The shard that read those bodies is the one holding the stream: had it died, the stream would be cut.
    assert.equal((await fetch(`${other.url}/again`, { method: 'POST', body: 'small' })).status, 413);
    assert.equal(stream.hasClosed, false, 'the held stream was disconnected');
    assert.equal(await metricValue(other.metricsUrl, 'muxgate_shard_restarts_total'), 0);
    stream.close();
  } finally {
    assert.equal(await other.stop(), 0);
    await fake.close();
  }
});

/** Sends a POST of `pieces` × 10,000 bytes to `url`, one piece every 100 ms; resolves with the client. */
async function slowUpload(url: string, pieces: number, declaredPieces = pieces): Promise<RawHttp> {
  const { host, pathname } = new URL(url);
  const client = await RawHttp.open(url, `POST ${pathname} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${declaredPieces * 10_000}\r\n\r\n`);
  for (let i = 0; i < pieces && !client.hasClosed; i++) {
    client.socket.write(Buffer.alloc(10_000, 'u'));
    // Pacing, not synchronisation: the slowness of the upload is what is tested.
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return client;
}

test('a slow upload is no backend timeout: MUX_FASTCGI_TIMEOUT (1 s here) starts once the body has been sent', async () => {
  const timeouts = () => metricValue(mux.metricsUrl, 'muxgate_fastcgi_errors_total{kind="timeout"}');
  const before = await timeouts();
  const client = await slowUpload(`${mux.url}/echo.php`, 30);
  const text = await client.waitFor((t) => decodeChunked(t).isComplete, 10_000, 'the backend\'s answer');
  client.close();
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.equal((JSON.parse(decodeChunked(text).body) as { bodyLength: number }).bodyLength, 300_000);
  assert.equal(await timeouts(), before);
});

test('a client that sends its body slower than MUX_REQUEST_TIMEOUT gets a 408, a client error, not a backend one', async () => {
  const other = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '1',
    MUX_FASTCGI_TIMEOUT: '1', MUX_HEADERS_TIMEOUT: '1', MUX_REQUEST_TIMEOUT: '2',
  });
  try {
    // 3 pieces in 0.3 s, then nothing of the 300,000 bytes announced.
    const client = await slowUpload(`${other.url}/echo.php`, 3, 30);
    const text = await client.waitForClose(10_000);
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.equal(await metricValue(other.metricsUrl, 'muxgate_requests_total{listener="public",class="4xx"}'), 1);
    assert.equal(await metricValue(other.metricsUrl, 'muxgate_requests_total{listener="public",class="5xx"}'), 0);
    assert.equal(await metricValue(other.metricsUrl, 'muxgate_fastcgi_errors_total'), 0);
  } finally {
    assert.equal(await other.stop(), 0);
  }
});

test('a backend that stops taking the body gets MUX_FASTCGI_TIMEOUT: a 504, not a hang until the client gives up', async () => {
  const stuck = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.pause();
  });
  await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
  const other = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${(stuck.address() as net.AddressInfo).port}`, MUX_SHARDS: '1', MUX_FASTCGI_TIMEOUT: '1' });
  try {
    const { host } = new URL(other.url);
    const size = 6 * 1024 * 1024;
    const client = await RawHttp.open(other.url, `POST /upload HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${size}\r\n\r\n`);
    client.socket.write(Buffer.alloc(size, 'b'));
    const text = await client.waitFor((t) => t.includes('\r\n\r\n'), 10_000, 'an answer');
    client.close();
    assert.match(text, /^HTTP\/1\.1 504 /);
    assert.equal(await metricValue(other.metricsUrl, 'muxgate_fastcgi_errors_total{kind="timeout"}'), 1);
  } finally {
    assert.equal(await other.stop(), 0);
    stuck.close();
  }
});
