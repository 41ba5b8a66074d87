// The attacks an HTTP/2 edge must survive, from a raw HTTP/2 client (test/helpers/raw-http2.ts) over TLS with ALPN h2,
// on one shard: rapid reset (CVE-2023-44487), CONTINUATION and SETTINGS and PING floods, an HPACK bomb, the cap on
// concurrent streams, a client that never opens its flow-control window, MUX_MAX_CONNECTIONS. After each, the shard
// still serves a well-behaved client a held stream that receives a push, and its memory stayed bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { PHP_ROOT, ScriptLog, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { Http2Exchange } from './helpers/http2-exchange.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import {
  RawHttp2, FRAME_CONTINUATION, FRAME_DATA, FRAME_HEADERS, FRAME_SETTINGS, FLAG_ACK, FLAG_END_STREAM, H2_ERROR, SETTING,
  frame, hpackIndexed, hpackIndexing, hpackLiteral, pingFrame, requestBlock, rstStreamFrame, settingsFrame,
} from './helpers/raw-http2.ts';
import { TestCa } from './helpers/tls-certs.ts';

/** MUX_H2_MAX_STREAMS: small, so that the cap is reached with few FastCGI requests. */
const MAX_STREAMS = 20;
/** Small, so that the slow consumer is dropped after a few pushes. */
const MAX_BUFFERED_BYTES = 65_536;
/** Generous: a shard's resident memory may grow by this much over an attack, not by what the attack sends. */
const RSS_GROWTH_LIMIT = 96 * 1024 * 1024;

const ca = new TestCa();
const leaf = ca.leaf('h2-limits', '2B01');
const requestLog = new ScriptLog();
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8, env: { REQUEST_LOG: requestLog.path } });
  mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '1', MUX_LOG_LEVEL: 'info', MUX_MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES),
    MUX_H2_MAX_STREAMS: String(MAX_STREAMS), MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile,
  });
});

after(async () => {
  await mux?.stop();
  await fpm?.stop();
  requestLog.remove();
  ca.remove();
});

/**
 * A well-behaved HTTP/2 client (node:http2, trusting the test CA) on a new connection: it holds a stream, a push to its
 * token arrives on it. Proves the shard alive and serving after an attack.
 */
async function assertServed(what: string): Promise<void> {
  const session = http2.connect(mux.url, { ca: ca.pem, servername: 'localhost' });
  session.on('error', () => {});
  try {
    const held = new Http2Exchange(session, { ':path': '/stream.php?hold=stream' });
    const text = await held.waitFor((t) => /token=\S+\n/.test(t), `the token after ${what}`, 10_000);
    assert.equal(held.status, 200);
    const token = /token=(\S+)\n/.exec(text)![1];
    await push(mux.pushUrl, [{ tokens: [token], body: `after ${what}` }]);
    await held.waitFor((t) => t.includes(`after ${what}`), `the push after ${what}`, 10_000);
    held.stream.close();
  } finally {
    session.destroy();
  }
}

async function rss(): Promise<number> {
  const value = await metricValue(mux.metricsUrl, 'process_resident_memory_bytes');
  assert.ok(value !== undefined, '/metrics has process_resident_memory_bytes');
  return value;
}

/** The error code of the GOAWAY that ended the connection, or null when it closed without one reaching the client. */
async function endOf(client: RawHttp2): Promise<number | null> {
  await client.waitForClose(15_000).catch(() => {});
  return client.goaway()?.errorCode ?? null;
}

test('the server\'s SETTINGS cap concurrent streams at MUX_H2_MAX_STREAMS; a stream beyond the cap is refused, the others are served', async () => {
  const client = await RawHttp2.connect(mux.url);
  try {
    await client.waitFor(() => client.framesOf(FRAME_SETTINGS).some((f) => (f.flags & FLAG_ACK) === 0), 5000, 'the server\'s SETTINGS');
    const settings = client.framesOf(FRAME_SETTINGS).find((f) => (f.flags & FLAG_ACK) === 0)!.payload;
    let cap: number | undefined;
    for (let offset = 0; offset < settings.length; offset += 6) {
      if (settings.readUInt16BE(offset) === SETTING.MAX_CONCURRENT_STREAMS) cap = settings.readUInt32BE(offset + 2);
    }
    assert.equal(cap, MAX_STREAMS, 'SETTINGS_MAX_CONCURRENT_STREAMS is MUX_H2_MAX_STREAMS');
    const held = Array.from({ length: MAX_STREAMS }, () => client.get('/stream.php?hold=stream&silent=1'));
    await client.waitFor(() => held.every((id) => client.status(id) === 200), 30_000, `the ${MAX_STREAMS} streams within the cap answered 200`);
    await waitForMetric(mux.metricsUrl, 'muxgate_http2_streams', (n) => n === MAX_STREAMS);
    // One more than the client was told: refused alone (RST_STREAM), or, as nghttp2 does once the client has
    // acknowledged the SETTINGS, the connection ended with GOAWAY PROTOCOL_ERROR (RFC 9113 §5.1.2 allows either).
    const beyond = client.get('/stream.php?hold=stream&silent=1');
    await client.waitFor(() => client.rstCode(beyond) !== undefined || client.goaway() !== undefined, 10_000, 'the stream beyond the cap refused');
    const goaway = client.goaway();
    if (goaway === undefined) {
      assert.ok([H2_ERROR.REFUSED_STREAM, H2_ERROR.PROTOCOL_ERROR].includes(client.rstCode(beyond) as 7 | 1), `stream ${beyond} reset with ${client.rstCode(beyond)}`);
    } else {
      assert.equal(goaway.errorCode, H2_ERROR.PROTOCOL_ERROR);
      assert.ok(goaway.lastStreamId < beyond, `GOAWAY's last stream ${goaway.lastStreamId} excludes stream ${beyond}`);
    }
    assert.equal(client.status(beyond), null, 'the stream beyond the cap was never answered');
  } finally {
    client.close();
  }
  await waitForMetric(mux.metricsUrl, 'muxgate_held_streams', (n) => n === 0, 10_000);
  await assertServed('the streams beyond the cap');
});

test('rapid reset (CVE-2023-44487): streams opened and reset in a loop end the connection after a burst; those reset in the read that opened them never reach php-fpm', async () => {
  const rssBefore = await rss();
  requestLog.clear();
  const client = await RawHttp2.connect(mux.url);
  try {
    // The client writes faster than the shard reads: it cannot see where it was cut off (its kernel drops the GOAWAY
    // when the shard closes with bytes unread). What bounds the attack is what reached the backend.
    for (let opened = 0; opened < 20_000 && client.isOpen && client.goaway() === undefined; opened++) {
      const id = client.get('/request-log.php?rapid-reset');
      client.send(rstStreamFrame(id, H2_ERROR.CANCEL));
      if (opened % 100 === 99) await client.drained();
    }
    const code = await endOf(client);
    assert.ok(client.hasClosed, 'the connection was ended');
    assert.ok(code === null || [H2_ERROR.ENHANCE_YOUR_CALM, H2_ERROR.INTERNAL_ERROR, H2_ERROR.PROTOCOL_ERROR].includes(code as 11 | 2 | 1),
      `the connection ended with GOAWAY ${code}`);
  } finally {
    client.close();
  }
  await assertServed('a rapid reset');
  const reachedBackend = requestLog.lines().filter((line) => line.includes('rapid-reset')).length;
  // nghttp2's reset limit (a burst of 1000, then 33/s) ends the session after about 2000 streams; a stream reset in the
  // read that brought it never starts its FastCGI request (about 1,000 reached php-fpm when they started at once).
  assert.ok(reachedBackend <= 100, `${reachedBackend} reset streams reached php-fpm`);
  await waitForMetric(mux.metricsUrl, 'muxgate_http2_resets_before_start_total', (n) => n > 0);
  const growth = (await rss()) - rssBefore;
  assert.ok(growth < RSS_GROWTH_LIMIT, `resident memory grew by ${growth} bytes`);
});

test('a CONTINUATION flood (a header block that never ends) is cut off before 64 MiB with the session', async () => {
  const rssBefore = await rss();
  const client = await RawHttp2.connect(mux.url);
  const id = client.newStreamId();
  client.send(frame(FRAME_HEADERS, FLAG_END_STREAM, id, requestBlock(client.authority, '/echo.php?continuation')));
  const filler = hpackLiteral('x-filler', 'v'.repeat(1000));
  try {
    while (client.bytesSent < 64 * 1024 * 1024 && client.isOpen && client.goaway() === undefined) {
      client.send(frame(FRAME_CONTINUATION, 0, id, filler));
      await client.drained();
    }
    const code = await endOf(client);
    assert.ok(code === null || code !== H2_ERROR.NO_ERROR, `the connection ended with GOAWAY ${code}`);
    assert.ok(client.bytesSent < 64 * 1024 * 1024, `${client.bytesSent} bytes of CONTINUATION were read on`);
    assert.equal(client.framesOf(FRAME_HEADERS, id).length, 0, 'the endless header block was never answered');
  } finally {
    client.close();
  }
  await assertServed('a CONTINUATION flood');
  const growth = (await rss()) - rssBefore;
  assert.ok(growth < RSS_GROWTH_LIMIT, `resident memory grew by ${growth} bytes`);
});

test('an HPACK bomb (one 4000-byte table entry referenced 4000 times) is refused; the connection serves on', async () => {
  const client = await RawHttp2.connect(mux.url);
  try {
    const id = client.newStreamId();
    const references = Buffer.concat(Array.from({ length: 4000 }, () => hpackIndexed(62)));
    client.sendHeaders(id, Buffer.concat([requestBlock(client.authority, '/echo.php?bomb'), hpackIndexing('x-bomb', 'b'.repeat(4000)), references]));
    await client.waitFor(() => client.rstCode(id) !== undefined || client.status(id) !== null || client.goaway() !== undefined, 10_000, 'an answer to the bomb');
    assert.notEqual(client.status(id), 200, 'the 16 MB header list was not forwarded');
    const refused = client.rstCode(id) ?? client.goaway()?.errorCode;
    assert.ok(refused !== undefined || client.status(id) === 431,
      `the bomb was refused (RST_STREAM ${client.rstCode(id)}, GOAWAY ${JSON.stringify(client.goaway())}, status ${client.status(id)})`);
    if (client.goaway() === undefined) {
      const next = client.get('/page.php');
      await client.waitFor(() => client.status(next) === 200, 10_000, 'the next stream on the same connection answered');
    }
  } finally {
    client.close();
  }
  await assertServed('an HPACK bomb');
});

for (const flood of ['SETTINGS', 'PING'] as const) {
  test(`a ${flood} flood from a client that never reads the ACKs ends its connection before the ACKs pile up`, async () => {
    const rssBefore = await rss();
    const client = await RawHttp2.connect(mux.url);
    client.pauseReading();
    const batch = Buffer.concat(Array.from({ length: 100 }, () => flood === 'SETTINGS' ? settingsFrame([[SETTING.ENABLE_PUSH, 0]]) : pingFrame()));
    let frames = 0;
    try {
      while (frames < 1_000_000 && client.isOpen) {
        client.send(batch);
        frames += 100;
        await client.drained();
      }
      await client.waitForClose(15_000);
      assert.ok(frames < 1_000_000, `${frames} ${flood} frames were read without the connection being cut`);
    } finally {
      client.close();
    }
    await assertServed(`a ${flood} flood`);
    const growth = (await rss()) - rssBefore;
    assert.ok(growth < RSS_GROWTH_LIMIT, `resident memory grew by ${growth} bytes`);
  });
}

test('a held stream whose flow-control window is never opened is dropped as a slow consumer, not buffered without end', async () => {
  // A window of 256 bytes: the stream's own first part (its token) fits, nothing much after it.
  const client = await RawHttp2.connect(mux.url, { settings: [[SETTING.INITIAL_WINDOW_SIZE, 256]] });
  const drops = await metricValue(mux.metricsUrl, 'muxgate_slow_consumer_drops_total') ?? 0;
  try {
    const id = client.get('/stream.php?hold=stream');
    await client.waitFor(() => /token=\S+\n/.test(client.data(id).toString('latin1')), 10_000, 'the part that tells the token');
    const token = /token=(\S+)\n/.exec(client.data(id).toString('latin1'))![1];
    const part = 'p'.repeat(16 * 1024);
    let pushed = 0;
    while (pushed < 64 && client.rstCode(id) === undefined && client.goaway() === undefined && client.isOpen) {
      const answer = await push(mux.pushUrl, [{ tokens: [token], body: part }]);
      if (answer.deliveries === 0) break;
      pushed++;
    }
    // MUX_MAX_BUFFERED_BYTES is 64 KiB: dropped after about 4 parts of 16 KiB, not 64 (1 MiB buffered).
    assert.ok(pushed < 64, `${pushed} parts of 16 KiB were buffered for a stream whose window stays closed`);
    await waitForMetric(mux.metricsUrl, 'muxgate_slow_consumer_drops_total', (n) => n > drops, 10_000);
    await client.waitFor(() => client.rstCode(id) !== undefined || client.goaway() !== undefined, 10_000, 'the stream reset or the connection ended');
    assert.ok(client.data(id).length <= 256, `${client.data(id).length} bytes were sent beyond the window of 256`);
  } finally {
    client.close();
  }
  await assertServed('a slow consumer');
});

test('many streams of one connection that never opens its window are dropped together: the rule holds per connection', async () => {
  // Each stream's window is large, the connection's stays at 65535: each stream is within its own limit while the
  // connection's unsent bytes grow with the number of streams.
  const client = await RawHttp2.connect(mux.url, { settings: [[SETTING.INITIAL_WINDOW_SIZE, 1 << 30]] });
  const drops = await metricValue(mux.metricsUrl, 'muxgate_slow_consumer_drops_total') ?? 0;
  const channel = `slow-connection-${Date.now()}`;
  const streams = Array.from({ length: 8 }, () => client.get(`/stream.php?hold=stream&silent=1&channel=${channel}`));
  try {
    await client.waitFor(() => streams.every((id) => client.status(id) === 200), 10_000, 'the 8 streams answered');
    await waitForMetric(mux.metricsUrl, 'muxgate_channel_subscriptions', (n) => n >= 8);
    client.pauseReading();
    // Each part is a quarter of the limit. Per stream, the limit is reached at the 5th part (4 × 16 KiB unsent, beyond
    // the stream's share of the 64 KiB connection window); for the connection, 8 streams × 16 KiB are over it at the 2nd.
    const part = 'q'.repeat(MAX_BUFFERED_BYTES / 4);
    let pushed = 0;
    while (pushed < 64 && client.isOpen) {
      const answer = await push(mux.pushUrl, [{ channels: [channel], body: part }]);
      if (answer.deliveries === 0) break;
      pushed++;
    }
    assert.ok(pushed <= 3, `${pushed} parts of 16 KiB were buffered for each of 8 streams of a connection that reads nothing: ` +
      'the streams were dropped one by one (the per-stream rule), not together');
    await waitForMetric(mux.metricsUrl, 'muxgate_slow_consumer_drops_total', (n) => n > drops, 10_000);
    client.resumeReading();
    await client.waitFor(() => client.goaway() !== undefined || streams.every((id) => client.rstCode(id) !== undefined), 10_000,
      'the connection\'s streams reset, or its GOAWAY');
  } finally {
    client.close();
  }
  await assertServed('a slow connection');
});

test('MUX_MAX_CONNECTIONS counts HTTP/2 connections, not their streams', async () => {
  const limited = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '1', MUX_LOG_LEVEL: 'info', MUX_MAX_CONNECTIONS: '2',
    MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile,
  });
  const clients: RawHttp2[] = [];
  try {
    for (let i = 0; i < 2; i++) clients.push(await RawHttp2.connect(limited.url));
    const streams = Array.from({ length: 10 }, () => clients[0].get('/stream.php?hold=stream&silent=1'));
    await clients[0].waitFor(() => streams.every((id) => clients[0].status(id) === 200), 10_000, '10 held streams on one connection');
    assert.equal(await metricValue(limited.metricsUrl, 'muxgate_open_connections'), 2);
    await assert.rejects(RawHttp2.connect(limited.url, { timeoutMs: 5000 }), 'a third connection is refused');
    assert.ok((await metricValue(limited.metricsUrl, 'muxgate_refused_connections_total') ?? 0) >= 1);
    const next = clients[1].get('/page.php');
    await clients[1].waitFor(() => clients[1].framesOf(FRAME_DATA, next).some((f) => (f.flags & FLAG_END_STREAM) !== 0), 10_000, 'a page on the second connection');
  } finally {
    for (const client of clients) client.close();
    await limited.stop();
  }
});
