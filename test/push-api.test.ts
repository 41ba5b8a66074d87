// POST /push: exact answers across shards, and every refusal the design lists.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PHP_ROOT, openStream, phpBackend, push, sendPush } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { decodeChunked } from './helpers/raw-http.ts';

const SECRET = 's3cret-push-key';
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '3',
    MUX_PUSH_SECRET: SECRET, MUX_MAX_PART_BYTES: '1000',
  });
});

after(async () => {
  await mux.stop();
  await fpm.stop();
});

/** Held streams, one per shard (connections are spread to the least loaded shard). */
async function openStreams(count: number) {
  const streams = await Promise.all(Array.from({ length: count }, () => openStream(mux.url, 'hold=stream&silent=1')));
  const shards = new Set(streams.map((s) => s.token.split('.')[1]));
  assert.equal(shards.size, Math.min(count, 3), `streams on shards ${[...shards]}`);
  return streams;
}

test('live, dead and other-shard tokens: deliveries and gone are exact', async () => {
  const streams = await openStreams(3);
  const [a, b, c] = streams.map((s) => s.token);
  const deadOnShard1 = b.slice(0, -4) + 'AAAA';
  const result = await push(mux.pushUrl, [
    { tokens: [a, b, c], body: 'to all' },
    { tokens: [c, deadOnShard1, 'not-a-token'], body: 'to c' },
    { tokens: [a, a], body: 'twice named' },
  ], { secret: SECRET });
  assert.equal(result.parts, 3);
  assert.equal(result.deliveries, 5);
  assert.deepEqual(result.gone.sort(), [deadOnShard1, 'not-a-token'].sort());
  await streams[0].client.waitFor((t) => decodeChunked(t).body === 'to alltwice named');
  await streams[1].client.waitFor((t) => decodeChunked(t).body === 'to all');
  await streams[2].client.waitFor((t) => decodeChunked(t).body === 'to allto c');
  for (const s of streams) s.client.close();
});

test('a token whose client left is reported gone', async () => {
  const [stream] = await openStreams(1);
  stream.client.close();
  await mux.waitForLog((l) => l.msg === 'stream ended' && l.token === stream.token && l.reason === 'client');
  const result = await push(mux.pushUrl, [{ tokens: [stream.token], body: 'x' }], { secret: SECRET });
  assert.deepEqual(result, { parts: 1, deliveries: 0, gone: [stream.token] });
});

test('a missing or wrong secret gets 401 and delivers nothing', async () => {
  const [stream] = await openStreams(1);
  for (const authorization of ['Bearer wrong', `Bearer ${SECRET}x`, 'Basic abc', '']) {
    const response = await sendPush(mux.pushUrl, [{ tokens: [stream.token], body: 'forged' }], { headers: { Authorization: authorization } });
    assert.equal(response.status, 401, authorization);
    assert.match(response.headers['www-authenticate'] ?? '', /^Bearer/);
  }
  await push(mux.pushUrl, [{ tokens: [stream.token], body: 'genuine' }], { secret: SECRET });
  await stream.client.waitFor((t) => decodeChunked(t).body === 'genuine');
  stream.client.close();
});

test('an oversize part gets 413; the parts before it are delivered', async () => {
  const [stream] = await openStreams(1);
  const before = await metricValue(mux.metricsUrl, 'muxgate_rejected_parts_total') ?? 0;
  const response = await sendPush(mux.pushUrl, [
    { tokens: [stream.token], body: 'small one' },
    { tokens: [stream.token], body: 'x'.repeat(1001) },
    { tokens: [stream.token], body: 'after' },
  ], { secret: SECRET });
  assert.equal(response.status, 413);
  const result = response.answer;
  assert.equal(result.code, 'MUX_ERR_PART_TOO_LARGE');
  assert.equal(result.parts, 1);
  assert.equal(result.deliveries, 1);
  await stream.client.waitFor((t) => decodeChunked(t).body === 'small one');
  assert.equal(await metricValue(mux.metricsUrl, 'muxgate_rejected_parts_total'), before + 1);
  await mux.waitForLog((l) => l.msg === 'push body rejected; the parts before it stand' && l.code === 'MUX_ERR_PART_TOO_LARGE');
  stream.client.close();
});

test('a malformed body gets 400 with the reason and the parts delivered before it', async () => {
  const [stream] = await openStreams(1);
  const response = await sendPush(mux.pushUrl, `--PB\r\nMultiplex-Token: ${stream.token}\r\n\r\nfine\r\n--PBjunk\r\n\r\nnever\r\n--PB--\r\n`, { secret: SECRET });
  assert.equal(response.status, 400);
  const result = response.answer;
  assert.equal(result.code, 'MUX_ERR_MALFORMED_MULTIPLEX');
  assert.equal(result.deliveries, 1);
  assert.equal(typeof result.error, 'string');
  await stream.client.waitFor((t) => decodeChunked(t).body === 'fine');
  const truncated = await sendPush(mux.pushUrl, `--PB\r\nMultiplex-Token: ${stream.token}\r\n\r\nunfinished`, { secret: SECRET });
  assert.equal(truncated.status, 400);
  stream.client.close();
});

test('a wrong content type gets 415; a wrong path 404; a wrong method 405', async () => {
  assert.equal((await sendPush(mux.pushUrl, '{}', { secret: SECRET, headers: { 'Content-Type': 'application/json' } })).status, 415);
  assert.equal((await sendPush(mux.pushUrl, 'x', { secret: SECRET, headers: { 'Content-Type': 'application/x-multiplex' } })).status, 415);
  assert.equal((await fetch(mux.pushUrl.replace('/push', '/other'), { method: 'POST' })).status, 404);
  const get = await fetch(mux.pushUrl, { headers: { Authorization: `Bearer ${SECRET}` } });
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
});
