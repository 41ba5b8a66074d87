// Every limit on what a peer controls: each one crossed, answered with its documented error, and the gateway still serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PHP_ROOT, multiplexBody, openStream, phpBackend, push, sendPush } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';

const HEAD_LIMIT = 2048;
const BODY_LIMIT = 65_536;
const PART_LIMIT = 65_536;
const PART_HEADERS_LIMIT = 1_048_576;
const TARGETS_LIMIT = 100_000;
const PUSH_LIMIT = 1_048_576;
const CONNECTION_LIMIT = 20;

let fpm: PhpFpm;
/** Request and part limits. */
let mux: Muxgate;
/** Process-wide limits: connections, hold and headers timeouts, push size. Only raw `Connection: close` clients talk
 * to its public listener, so that no pooled keep-alive connection counts against MUX_MAX_CONNECTIONS. */
let limited: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 30 });
  const backend = { ...phpBackend(fpm), MUX_SHARDS: '2' };
  [mux, limited] = await Promise.all([
    startMuxgate({
      ...backend,
      MUX_MAX_REQUEST_HEAD_BYTES: String(HEAD_LIMIT),
      MUX_MAX_REQUEST_BYTES: String(BODY_LIMIT),
      MUX_MAX_PART_BYTES: String(PART_LIMIT),
    }),
    startMuxgate({
      ...backend,
      MUX_MAX_CONNECTIONS: String(CONNECTION_LIMIT),
      MUX_HOLD_TIMEOUT: '1',
      MUX_HEADERS_TIMEOUT: '1',
      MUX_MAX_PUSH_BYTES: String(PUSH_LIMIT),
    }),
  ]);
});

after(async () => {
  const codes = await Promise.all([mux.stop(), limited.stop()]);
  await fpm.stop();
  assert.deepEqual(codes, [0, 0]);
});

function statusOf(text: string): number {
  const match = /^HTTP\/1\.[01] (\d{3}) /.exec(text);
  assert.ok(match, `not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  return Number(match[1]);
}

/** Sends one request with `Connection: close` and returns everything received until the server closed. */
async function exchange(gateway: Muxgate, head: string, body?: Buffer): Promise<string> {
  const client = await RawHttp.open(gateway.url, head);
  if (body !== undefined) client.socket.write(body);
  try {
    return await client.waitForClose(5000);
  } finally {
    client.close();
  }
}

/** GET /echo.php: the CGI params muxgate sent. */
async function echo(gateway: Muxgate, headerLines: string[] = []): Promise<{ status: number; server?: Record<string, string> }> {
  const text = await exchange(gateway, `GET /echo.php HTTP/1.1\r\nHost: muxgate\r\n${headerLines.map((h) => h + '\r\n').join('')}Connection: close\r\n\r\n`);
  const status = statusOf(text);
  if (status !== 200) return { status };
  return { status, server: (JSON.parse(decodeChunked(text).body) as { server: Record<string, string> }).server };
}

async function assertStillServing(gateway: Muxgate): Promise<void> {
  const text = await exchange(gateway, 'GET /stream.php HTTP/1.1\r\nHost: muxgate\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(text), 200, text);
  assert.match(decodeChunked(text).body, /^token=\S+\n$/);
  assert.equal(await metricValue(gateway.metricsUrl, 'muxgate_shard_restarts_total'), 0);
}

const clientErrors = (gateway: Muxgate) => metricValue(gateway.metricsUrl, 'muxgate_requests_total{listener="public",class="4xx"}');

test('MUX_MAX_REQUEST_HEAD_BYTES: a head of exactly the limit is served, a larger one gets 431', async () => {
  const headWith = (padding: number) => `GET /echo.php HTTP/1.1\r\nHost: muxgate\r\nConnection: close\r\nX-Pad: ${'p'.repeat(padding)}\r\n\r\n`;
  const fixed = headWith(0).length;
  const atLimit = headWith(HEAD_LIMIT - fixed);
  assert.equal(atLimit.length, HEAD_LIMIT);
  const served = await exchange(mux, atLimit);
  assert.equal(statusOf(served), 200, served.slice(0, 200));
  assert.equal((JSON.parse(decodeChunked(served).body) as { server: Record<string, string> }).server.HTTP_X_PAD.length, HEAD_LIMIT - fixed);

  // node:http counts the URL and the header names and values, not the method, version, ": " and line ends:
  // 64 bytes over the limit is over it by either count.
  const errorsBefore = await clientErrors(mux) ?? 0;
  const refused = await exchange(mux, headWith(HEAD_LIMIT - fixed + 64));
  assert.equal(statusOf(refused), 431);
  assert.match(refused, /\r\nConnection: close\r\n/i);
  await waitForMetric(mux.metricsUrl, 'muxgate_requests_total{listener="public",class="4xx"}', (v) => v === errorsBefore + 1);
  await assertStillServing(mux);
});

test('too many request headers: node:http refuses the 1,001st header line with 431, whatever the head size limit', async () => {
  // node:http's maxHeadersCount (2000) would only drop headers beyond it; Node 26's parser refuses a head with more
  // than 1,000 header lines outright (HPE_HEADER_OVERFLOW, even far below maxHeaderSize), and muxgate answers 431.
  // 'a:0' lines keep both heads far below the default 16 KiB MUX_MAX_REQUEST_HEAD_BYTES of this instance.
  const lines = (count: number) => [...Array.from({ length: count - 3 }, (_, i) => `a:${i % 10}`), 'X-Last: yes'];
  const thousand = await echo(limited, lines(1000)); // + Host and Connection: 1,000 header lines
  assert.equal(thousand.status, 200);
  assert.equal(thousand.server!.HTTP_X_LAST, 'yes');
  assert.equal((await echo(limited, lines(1001))).status, 431);
  assert.equal((await echo(limited, lines(5000))).status, 431);
  await assertStillServing(limited);
});

test('MUX_MAX_REQUEST_BYTES with Content-Length: 413 at once, without reading the body; the limit itself is served', async () => {
  const errorsBefore = await clientErrors(mux) ?? 0;
  const client = await RawHttp.open(mux.url, `POST /echo.php HTTP/1.1\r\nHost: muxgate\r\nContent-Length: ${BODY_LIMIT + 1}\r\n\r\n`);
  const started = performance.now();
  // Only a few bytes of the body are ever sent: the answer must not wait for the rest.
  client.socket.write('x'.repeat(100));
  const text = await client.waitForClose(2000);
  client.close();
  assert.equal(statusOf(text), 413);
  assert.ok(performance.now() - started < 1000, `413 after ${performance.now() - started} ms`);
  await waitForMetric(mux.metricsUrl, 'muxgate_requests_total{listener="public",class="4xx"}', (v) => v === errorsBefore + 1);

  const atLimit = await exchange(mux, `POST /echo.php HTTP/1.1\r\nHost: muxgate\r\nContent-Length: ${BODY_LIMIT}\r\nConnection: close\r\n\r\n`, Buffer.alloc(BODY_LIMIT, 'b'));
  assert.equal(statusOf(atLimit), 200);
  assert.equal((JSON.parse(decodeChunked(atLimit).body) as { bodyLength: number }).bodyLength, BODY_LIMIT);
  await assertStillServing(mux);
});

test('MUX_MAX_REQUEST_BYTES with a chunked body: 413 once the limit is crossed; the limit itself is served', async () => {
  const chunk = (size: number) => Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), Buffer.alloc(size, 'c'), Buffer.from('\r\n')]);
  const head = 'POST /echo.php HTTP/1.1\r\nHost: muxgate\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
  // One byte over, and the body never ends: muxgate must answer when the limit is crossed, not at the end.
  const over = await exchange(mux, head, Buffer.concat([chunk(BODY_LIMIT / 2), chunk(BODY_LIMIT / 2 + 1)]));
  assert.equal(statusOf(over), 413);
  const atLimit = await exchange(mux, head, Buffer.concat([chunk(BODY_LIMIT / 2), chunk(BODY_LIMIT / 2), Buffer.from('0\r\n\r\n')]));
  assert.equal(statusOf(atLimit), 200);
  assert.equal((JSON.parse(decodeChunked(atLimit).body) as { bodyLength: number }).bodyLength, BODY_LIMIT);
  await assertStillServing(mux);
});

test('MUX_MAX_PART_BYTES in a backend response: a part of the limit is delivered, the next bigger one rejects the rest', async () => {
  const sample = 'muxgate_rejected_parts_total{source="response",reason="MUX_ERR_PART_TOO_LARGE"}';
  const rejectedBefore = await metricValue(mux.metricsUrl, sample) ?? 0;
  const client = await RawHttp.get(`${mux.url}/limits.php?case=big-part&max=${PART_LIMIT}`);
  await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'a clean end of the response');
  client.close();
  assert.equal(statusOf(client.text), 200);
  const { body } = decodeChunked(client.text);
  assert.equal(body.length, 'before|'.length + PART_LIMIT);
  assert.equal(body, 'before|' + 'x'.repeat(PART_LIMIT));
  const line = await mux.waitForLog((l) => l.msg === 'backend multiplexed body rejected; the parts before it stand' && l.code === 'MUX_ERR_PART_TOO_LARGE');
  assert.match(String(line.err), /MUX_MAX_PART_BYTES \(65536 bytes\)/);
  assert.equal(await waitForMetric(mux.metricsUrl, sample, (v) => v >= rejectedBefore + 1), rejectedBefore + 1);
  await assertStillServing(mux);
});

/** A second part whose header block (everything between `--PB` and its body) is exactly `headerBytes` long. */
function bodyWithPartHeaders(token: string, headerBytes: number): string {
  const tokenLine = `Multiplex-Token: ${token}\r\n`;
  const padding = headerBytes - 2 - tokenLine.length - 'X-Pad: \r\n'.length - 2;
  const second = `\r\n${tokenLine}X-Pad: ${'p'.repeat(padding)}\r\n\r\n`;
  assert.equal(second.length, headerBytes);
  return `--PB\r\nMultiplex-Token: ${token}\r\n\r\nfirst|\r\n--PB${second}second|\r\n--PB--\r\n`;
}

test('part headers: 1 MiB is accepted, one byte more gets 400 MUX_ERR_PART_HEADERS_TOO_LARGE after the parts before it', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&silent=1');
  assert.deepEqual(await push(mux.pushUrl, bodyWithPartHeaders(token, PART_HEADERS_LIMIT)), { parts: 2, deliveries: 2, gone: [] });

  const sample = 'muxgate_rejected_parts_total{source="push",reason="MUX_ERR_PART_HEADERS_TOO_LARGE"}';
  const rejectedBefore = await metricValue(mux.metricsUrl, sample) ?? 0;
  const over = await sendPush(mux.pushUrl, bodyWithPartHeaders(token, PART_HEADERS_LIMIT + 1));
  assert.equal(over.status, 400);
  const result = over.answer;
  assert.equal(result.code, 'MUX_ERR_PART_HEADERS_TOO_LARGE');
  assert.deepEqual([result.parts, result.deliveries], [1, 1]);
  await client.waitFor((t) => decodeChunked(t).body === 'first|second|first|', 5000, 'the parts before the limit');
  await mux.waitForLog((l) => l.msg === 'push body rejected; the parts before it stand' && l.code === 'MUX_ERR_PART_HEADERS_TOO_LARGE');
  await waitForMetric(mux.metricsUrl, sample, (v) => v === rejectedBefore + 1);
  client.close();
  await assertStillServing(mux);
});

test('targets per part: 100,000 tokens and channels are accepted, 100,001 get 400 after the parts before', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&silent=1');
  // Any syntactically valid name counts, live or not: `t` is a token of no stream, `c` a channel of none.
  const targets = (tokens: number, channels: number) =>
    `Multiplex-Token: ${Array(tokens).fill('t').join(',')}\r\nMultiplex-Channel: ${Array(channels).fill('c').join(',')}\r\n`;
  const body = (tokens: number, channels: number) =>
    `--PB\r\nMultiplex-Token: ${token}\r\n\r\nfirst|\r\n--PB\r\n${targets(tokens, channels)}\r\nsecond|\r\n--PB--\r\n`;
  assert.ok(body(60_000, 40_001).length < 300_000);

  const accepted = await push(mux.pushUrl, body(60_000, TARGETS_LIMIT - 60_000));
  assert.deepEqual([accepted.parts, accepted.deliveries, accepted.gone], [2, 1, ['t']]);

  const over = await sendPush(mux.pushUrl, body(60_000, TARGETS_LIMIT - 60_000 + 1));
  assert.equal(over.status, 400);
  const result = over.answer;
  assert.equal(result.code, 'MUX_ERR_MALFORMED_MULTIPLEX');
  assert.match(String(result.error), /more than 100000 tokens and channels/);
  assert.deepEqual([result.parts, result.deliveries], [1, 1]);
  await client.waitFor((t) => decodeChunked(t).body === 'first|first|', 5000, 'the first part of each push');
  client.close();
  await assertStillServing(mux);
});

test('a boundary longer than 70 characters: 415 from the push API, 502 from a backend; 70 is fine for both', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&silent=1');
  const pushWithBoundary = (boundary: string) => sendPush(mux.pushUrl, [{ tokens: [token], body: `${boundary.length}|` }], { boundary });
  assert.equal((await pushWithBoundary('b'.repeat(70))).status, 200);
  const refused = await pushWithBoundary('b'.repeat(71));
  assert.equal(refused.status, 415);
  assert.match(String(refused.answer.error), /1-70 characters/);
  await client.waitFor((t) => decodeChunked(t).body === '70|', 5000, 'the 70-character push');

  const fine = await fetch(`${mux.url}/limits.php?case=boundary&length=70`);
  assert.deepEqual([fine.status, await fine.text()], [200, 'boundary ok']);
  const broken = await fetch(`${mux.url}/limits.php?case=boundary&length=71`);
  assert.equal(broken.status, 502);
  await broken.text();
  await mux.waitForLog((l) => l.msg === 'backend sent a multiplexed response without a usable boundary' && /1-70 characters/.test(String(l.err)));
  client.close();
  await assertStillServing(mux);
});

test('MUX_MAX_CONNECTIONS: connections beyond it get a prompt 503 with Retry-After, and are served again once some close', async () => {
  await waitForMetric(limited.metricsUrl, 'muxgate_open_connections', (v) => v === 0, 8000);
  const sample = 'muxgate_refused_connections_total{listener="public"}';
  const refusedBefore = await metricValue(limited.metricsUrl, sample) ?? 0;
  // Held streams outlive MUX_HOLD_TIMEOUT=1 with their own Multiplex-Timeout.
  const held = await Promise.all(Array.from({ length: CONNECTION_LIMIT }, () => openStream(limited.url, 'hold=stream&silent=1&timeout=60')));
  const openRefused = async () => {
    const started = performance.now();
    const client = await RawHttp.get(`${limited.url}/stream.php`, '1.1', ['Connection: close']);
    const text = await client.waitForClose(2000);
    client.close();
    return { text, ms: performance.now() - started };
  };
  const refused = await Promise.all(Array.from({ length: 5 }, openRefused));
  for (const { text, ms } of refused) {
    assert.equal(statusOf(text), 503, text);
    assert.match(text, /\r\nRetry-After: 1\r\n/i);
    assert.ok(ms < 1000, `503 after ${ms} ms`);
  }
  await waitForMetric(limited.metricsUrl, sample, (v) => v === refusedBefore + 5);

  for (const stream of held.splice(0, 5)) stream.client.close();
  await waitForMetric(limited.metricsUrl, 'muxgate_open_connections', (v) => v === CONNECTION_LIMIT - 5);
  held.push(...await Promise.all(Array.from({ length: 5 }, () => openStream(limited.url, 'hold=stream&silent=1&timeout=60'))));
  // Back at the limit: the next one is refused again.
  assert.equal(statusOf((await openRefused()).text), 503);
  for (const stream of held) stream.client.close();
  await waitForMetric(limited.metricsUrl, 'muxgate_open_connections', (v) => v === 0);
  await assertStillServing(limited);
});

test('MUX_MAX_CONNECTIONS counts clients only: with the public listener full, the push API still answers', async () => {
  await waitForMetric(limited.metricsUrl, 'muxgate_open_connections', (v) => v === 0, 8000);
  const held = await Promise.all(Array.from({ length: CONNECTION_LIMIT }, () => openStream(limited.url, 'hold=stream&silent=1&timeout=60')));
  try {
    await push(limited.pushUrl, [{ tokens: [held[0].token], body: 'pushed' }], { headers: { Connection: 'close' } });
    await held[0].client.waitFor((t) => decodeChunked(t).body === 'pushed', 5000, 'the pushed part');
  } finally {
    for (const stream of held) stream.client.close();
    await waitForMetric(limited.metricsUrl, 'muxgate_open_connections', (v) => v === 0);
  }
});

test('MUX_HOLD_TIMEOUT ends a held stream with a final chunk when the backend set no Multiplex-Timeout', async () => {
  const endedBefore = await metricValue(limited.metricsUrl, 'muxgate_streams_ended_total{reason="timeout"}') ?? 0;
  const [defaulted, own] = await Promise.all([openStream(limited.url, 'hold=stream&silent=1'), openStream(limited.url, 'hold=stream&silent=1&timeout=60')]);
  const started = performance.now();
  await defaulted.client.waitFor((t) => decodeChunked(t).isComplete, 4000, 'the final chunk');
  const ms = performance.now() - started;
  assert.ok(ms > 700 && ms < 2500, `ended after ${ms} ms`);
  await waitForMetric(limited.metricsUrl, 'muxgate_streams_ended_total{reason="timeout"}', (v) => v === endedBefore + 1);
  // A Multiplex-Timeout of its own outlives the default.
  assert.equal(decodeChunked(own.client.text).isComplete, false);
  const result = await push(limited.pushUrl, [{ tokens: [defaulted.token, own.token], body: 'still here' }]);
  assert.deepEqual(result, { parts: 1, deliveries: 1, gone: [defaulted.token] });
  await own.client.waitFor((t) => decodeChunked(t).body === 'still here');
  defaulted.client.close();
  own.client.close();
  await assertStillServing(limited);
});

test('Multiplex-Timeout: 0 keeps a held stream open past MUX_HOLD_TIMEOUT (protocol §3.2: "0 = never")', async () => {
  const never = await openStream(limited.url, 'hold=stream&silent=1&timeout=0');
  const defaulted = await openStream(limited.url, 'hold=stream&silent=1');
  try {
    // Opened after it, a stream with the default timeout has ended: MUX_HOLD_TIMEOUT has passed for both.
    await defaulted.client.waitFor((t) => decodeChunked(t).isComplete, 4000, 'the final chunk of the defaulted stream');
    assert.equal(decodeChunked(never.client.text).isComplete, false);
    const result = await push(limited.pushUrl, [{ tokens: [never.token], body: 'still held' }]);
    assert.deepEqual(result, { parts: 1, deliveries: 1, gone: [] });
    await never.client.waitFor((t) => decodeChunked(t).body === 'still held', 5000, 'the part after MUX_HOLD_TIMEOUT');
  } finally {
    never.client.close();
    defaulted.client.close();
  }
});

/** How many parts of a push body are complete within its first `limit` bytes: a part is once the `CRLF--PB` after it is in. */
function partsEndingWithin(body: string, limit: number): number {
  let count = 0;
  for (let at = body.indexOf('\r\n--PB'); at !== -1 && at + '\r\n--PB'.length <= limit; at = body.indexOf('\r\n--PB', at + 1)) count++;
  return count;
}

/** A push body without its close delimiter. */
const openBody = (parts: Array<{ tokens: string[]; body: string }>) => multiplexBody('PB', parts).replace(/--PB--\r\n$/, '');

test('MUX_MAX_PUSH_BYTES: a larger push gets 413 MUX_ERR_PUSH_TOO_LARGE, the parts before the limit are delivered', async () => {
  const { client, token } = await openStream(limited.url, 'hold=stream&silent=1&timeout=60');
  const sample = 'muxgate_rejected_parts_total{source="push",reason="MUX_ERR_PUSH_TOO_LARGE"}';
  const rejectedBefore = await metricValue(limited.metricsUrl, sample) ?? 0;
  const filler = openBody([{ tokens: ['nobody'], body: 'f'.repeat(1000) }]);
  const body = openBody([{ tokens: [token], body: 'first|' }]) + filler.repeat(Math.ceil(1.2 * PUSH_LIMIT / filler.length)) +
    multiplexBody('PB', [{ tokens: [token], body: 'never' }]);
  const response = await sendPush(limited.pushUrl, body);
  assert.equal(response.status, 413);
  assert.equal(response.headers.connection, 'close');
  const result = response.answer;
  assert.equal(result.code, 'MUX_ERR_PUSH_TOO_LARGE');
  assert.match(String(result.error), /MUX_MAX_PUSH_BYTES \(1048576 bytes\)/);
  assert.equal(result.deliveries, 1);
  assert.deepEqual(result.gone, ['nobody']);
  // Exactly partsEndingWithin once the bug in the next test is fixed; fewer until then.
  const parts = Number(result.parts);
  assert.ok(parts > 1 && parts <= partsEndingWithin(body, PUSH_LIMIT), `parts: ${parts}`);
  await client.waitFor((t) => decodeChunked(t).body === 'first|', 5000, 'the part before the limit');
  await limited.waitForLog((l) => l.msg === 'push body rejected; the parts before it stand' && l.code === 'MUX_ERR_PUSH_TOO_LARGE');
  await waitForMetric(limited.metricsUrl, sample, (v) => v === rejectedBefore + 1);
  client.close();
  await assertStillServing(limited);
});

test('MUX_MAX_PUSH_BYTES: every part that ends within the limit is delivered, also those in the chunk that crosses it', async () => {
  const { client, token } = await openStream(limited.url, 'hold=stream&silent=1&timeout=60');
  try {
    const filler = openBody([{ tokens: ['nobody'], body: 'f'.repeat(1000) }]);
    const edge = openBody([{ tokens: [token], body: 'edge|' }]);
    let body = openBody([{ tokens: [token], body: 'first|' }]);
    // `edge` completes less than one filler before the limit, surely in the ~64 KiB read that crosses it.
    while (body.length + filler.length + edge.length + 6 <= PUSH_LIMIT) body += filler;
    body += edge + filler.repeat(100) + '--PB--\r\n';
    const partsWithin = partsEndingWithin(body, PUSH_LIMIT);
    assert.equal(body.lastIndexOf('edge|', PUSH_LIMIT) > PUSH_LIMIT - filler.length, true);
    const response = await sendPush(limited.pushUrl, body);
    assert.equal(response.status, 413);
    const result = response.answer;
    assert.deepEqual([result.parts, result.deliveries], [partsWithin, 2]);
    await client.waitFor((t) => decodeChunked(t).body === 'first|edge|', 5000, 'both parts within the limit');
  } finally {
    client.close();
  }
});

test('slowloris: MUX_HEADERS_TIMEOUT=1 cuts a client trickling its head within about 1 s, others are served meanwhile', async () => {
  const slow = await RawHttp.open(limited.url, 'GET /echo.php HTTP/1.1\r\nHost: muxgate\r\nX-Slow: ');
  const started = performance.now();
  const trickle = setInterval(() => {
    if (!slow.hasClosed) slow.socket.write('s');
  }, 200);
  try {
    const normal = await echo(limited);
    assert.equal(normal.status, 200);
    const text = await slow.waitForClose(3000);
    assert.equal(statusOf(text), 408, text);
    assert.ok(performance.now() - started < 3000);
  } finally {
    clearInterval(trickle);
    slow.close();
  }
  await assertStillServing(limited);
});
