// Bad backends: malformed output, broken heads, slow, down and back up. The gateway keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { startFakeFastcgi } from './helpers/fake-fastcgi.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';

const PHP_ROOT = join(import.meta.dirname, 'php');
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  mux = await startMuxgate({ MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '2', MUX_FASTCGI_TIMEOUT: '1' });
});

after(async () => {
  await mux.stop();
  await fpm.stop();
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
  const victim = await RawHttp.get(`${mux.url}/stream.php?hold=stream&silent=1`);
  const head = await victim.waitFor((t) => t.includes('\r\n\r\n'), 5000, 'the head');
  const token = /\r\nX-Token: (\S+)\r\n/i.exec(head)![1]!;
  const response = await fetch(`${mux.url}/broken.php?case=bare-lf`, { headers: { 'X-Victim': token } });
  assert.equal(response.status, 200);
  assert.equal(await response.text(), '');
  await mux.waitForLog((l) => l.msg === 'backend multiplexed body rejected; the parts before it stand' && /bare LF/.test(String(l.err)));
  const pushed = await fetch(mux.pushUrl, {
    method: 'POST', headers: { 'Content-Type': 'application/x-multiplex; boundary=PB' }, body: `--PB\r\nMultiplex-Token: ${token}\r\n\r\nafter\r\n--PB--\r\n`,
  });
  assert.equal(pushed.status, 200);
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
  const client = await RawHttp.get(`${mux.url}/slow-body.php?kind=silent&count=3&pause=100`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  client.close();
  const line = await mux.waitForLog((l) => l.msg === 'client left before the backend answered');
  assert.equal(line.uri, '/slow-body.php?kind=silent&count=3&pause=100');
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
