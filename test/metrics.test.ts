// Observability: every documented metric exists and moves, promtool accepts the output, a real
// Prometheus evaluates every dashboard expression, and /metrics survives a blocked shard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startServer } from '../src/server.ts';
import { PHP_ROOT, ScriptLog, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from './helpers/muxgate.ts';
import { startPrometheus } from './helpers/prometheus.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import { waitUntil } from './helpers/wait.ts';
import { TestWebSocket, wsUrl } from './helpers/websocket-client.ts';

const ROOT = join(import.meta.dirname, '..');
let fpm: PhpFpm;
let mux: Muxgate;
let webSocket: TestWebSocket | null = null;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, env: { EVENT_LOG: new ScriptLog().path } });
  mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '4', MUX_EVENTS: 'close',
    MUX_MAX_BUFFERED_BYTES: '65536', MUX_FASTCGI_TIMEOUT: '1', MUX_CHANNEL_HISTORY: '10',
    MUX_CHANNEL_HISTORY_BYTES: '8192',
  });
});

after(async () => {
  webSocket?.close();
  await mux?.stop();
  await fpm?.stop();
});

/** The metric names the README documents. */
function documentedMetrics(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Metrics and logs'), readme.indexOf('## Benchmarks'));
  return [...new Set([...section.matchAll(/^\| (.+?) \|/gm)].flatMap((row) => [...row[1].matchAll(/`(muxgate_[a-z_]+)`/g)].map((m) => m[1])))];
}

/** name → sum of its samples (histograms: their _count). */
async function snapshot(): Promise<Map<string, number>> {
  const text = await (await fetch(mux.metricsUrl)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(muxgate_[a-z_]+?)(_count|_bucket|_sum)?(\{[^}]*\})? (\S+)$/.exec(line);
    if (match === null || match[2] === '_bucket' || match[2] === '_sum') continue;
    values.set(match[1], (values.get(match[1]) ?? 0) + Number(match[4]));
  }
  return values;
}

/** A WebSocket that sends a message, gets a reply and a push, stays open; another that quits. */
async function driveWebSockets(): Promise<void> {
  webSocket = await TestWebSocket.open(wsUrl(mux.url, '/websocket.php?room=metrics'));
  webSocket.ws.send('hello');
  await webSocket.waitForMessage((m) => m.text === 'echo: hello');
  await push(mux.pushUrl, [{ tokens: [webSocket.token], body: 'pushed' }]);
  await webSocket.waitForMessage((m) => m.text === 'pushed');
  const quitting = await TestWebSocket.open(wsUrl(mux.url, '/websocket.php?room=metrics'));
  quitting.ws.send('quit');
  await quitting.waitForClose();
}

async function driveTraffic(): Promise<RawHttp[]> {
  await driveWebSockets();
  const opened = await Promise.all(Array.from({ length: 8 }, () => openStream(mux.url, 'hold=stream')));
  const streams = opened.map((s) => s.client);
  const tokens = opened.map((s) => s.token);
  await push(mux.pushUrl, [{ tokens, body: 'to everyone' }, { tokens: ['nobody', tokens[0].slice(0, -3) + 'zzz'], body: 'lost' }]);
  await push(mux.pushUrl, '--PB\r\nMultiplex-Token: x\r\n\r\nbroken\r\n--PBjunk', { status: 400 });
  assert.equal((await fetch(`${mux.url}/broken.php?case=slow&seconds=2`)).status, 504);
  await (await fetch(`${mux.url}/stream.php`)).text();
  const { client: subscriber } = await openStream(mux.url, 'hold=stream&channel=news');
  await push(mux.pushUrl, [{ channels: ['news'], body: 'headline' }]);
  const resumed = await RawHttp.get(`${mux.url}/stream.php?hold=stream&channel=${encodeURIComponent('news; since=0')}`);
  await resumed.waitFor((t) => t.includes('headline'));
  resumed.close();
  // Over the history's byte budget with the headline: the headline is evicted, this part stays.
  await push(mux.pushUrl, [{ channels: ['archive'], body: 'a'.repeat(7000) }]);
  const timed = await RawHttp.get(`${mux.url}/stream.php?hold=stream&timeout=0.2`);
  await timed.waitFor((t) => decodeChunked(t).isComplete, 5000, 'the final chunk of the timed-out stream');
  timed.close();
  // A client that stops reading is dropped once 64 KiB are waiting for it.
  const { client: stalled, token: stalledToken } = await openStream(mux.url, 'hold=stream');
  stalled.socket.pause();
  const big = 'x'.repeat(512 * 1024);
  for (let i = 0; i < 40 && !mux.logs.some((l) => l.msg === 'slow consumer dropped'); i++) {
    await push(mux.pushUrl, [{ tokens: [stalledToken], body: big }]);
  }
  // Reading again, the client finds its connection closed after what the kernel had buffered.
  stalled.socket.resume();
  await stalled.waitForClose(10_000);
  streams[0].close();
  return [...streams.slice(1), subscriber];
}

let openStreams: RawHttp[] = [];

test('every documented metric is exported and moves when what it counts happens', async () => {
  const documented = documentedMetrics();
  assert.ok(documented.length >= 18, `README documents ${documented.length} metrics`);
  const before = await snapshot();
  for (const name of documented) assert.ok(before.has(name), `${name} is documented but not exported`);
  openStreams = await driveTraffic();
  await mux.waitForLog((l) => l.msg === 'slow consumer dropped');
  // Restarts are proven in shards.test.ts, refusals in limits.test.ts, Redis in redis.test.ts, FastCGI retries in
  // fastcgi-keepalive.test.ts, TLS handshakes (and connections by protocol over TLS) in tls.test.ts; the rest must all
  // have moved.
  const provenElsewhere = ['muxgate_shard_restarts_total', 'muxgate_refused_connections_total', 'muxgate_shard_up', 'muxgate_event_loop_delay_seconds',
    'muxgate_redis_up', 'muxgate_redis_parts_total', 'muxgate_redis_latency_seconds', 'muxgate_fastcgi_retries_total', 'muxgate_tls_handshakes_total',
    // A heap shrinks as well as grows: the heap test below checks their values.
    'muxgate_heap_used_bytes', 'muxgate_heap_total_bytes', 'muxgate_heap_young_used_bytes', 'muxgate_heap_young_total_bytes'];
  const unmovedIn = (values: Map<string, number>) => documented.filter((name) => !provenElsewhere.includes(name) && !(values.get(name)! > before.get(name)!));
  // Some move once the traffic's answers are in (a close event reaches the backend after its stream has ended).
  let after = new Map<string, number>();
  await waitUntil(async () => unmovedIn(after = await snapshot()).length === 0, 5000, () => `every documented metric to move (unmoved: ${unmovedIn(after).join(', ')})`, 100);
  assert.equal(after.get('muxgate_shard_up'), 4);
  assert.ok(after.get('muxgate_held_streams')! >= 7);
});

test('promtool accepts the exposition', async () => {
  const text = await (await fetch(mux.metricsUrl)).text();
  // promtool accepts an empty exposition too: the one checked holds muxgate's families.
  assert.match(text, /^# TYPE muxgate_requests_total counter\n/m);
  assert.match(text, /^muxgate_shard_up\{shard="3"\} 1$/m);
  const output = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(output.trim(), '');
  const openMetrics = await fetch(mux.metricsUrl, { headers: { Accept: 'application/openmetrics-text; version=1.0.0' } });
  assert.match(openMetrics.headers.get('content-type') ?? '', /application\/openmetrics-text/);
  assert.match(await openMetrics.text(), /# EOF\n$/);
});

test('each shard\'s heap is exported, labelled by shard: used within held, the young generation within the heap', async () => {
  const text = await (await fetch(mux.metricsUrl)).text();
  const bytes = (name: string, shard: number): number => {
    const sample = new RegExp(`^${name}\\{shard="${shard}"\\} (\\d+)$`, 'm').exec(text);
    assert.ok(sample !== null, `${name} of shard ${shard}`);
    return Number(sample[1]);
  };
  for (const name of ['muxgate_heap_used_bytes', 'muxgate_heap_total_bytes', 'muxgate_heap_young_used_bytes', 'muxgate_heap_young_total_bytes']) {
    assert.equal(text.match(new RegExp(`^${name}\\{`, 'gm'))?.length, 4, `one ${name} per shard`);
  }
  for (let shard = 0; shard < 4; shard++) {
    const [used, total] = [bytes('muxgate_heap_used_bytes', shard), bytes('muxgate_heap_total_bytes', shard)];
    const [youngUsed, youngTotal] = [bytes('muxgate_heap_young_used_bytes', shard), bytes('muxgate_heap_young_total_bytes', shard)];
    // A shard's code and registry alone take megabytes; the heap of the whole process would be another figure.
    assert.ok(used > 1024 * 1024 && used <= total, `shard ${shard}: ${used} used of ${total}`);
    assert.ok(youngTotal > 0 && youngUsed <= youngTotal && youngTotal < total, `shard ${shard}: young ${youngUsed} of ${youngTotal}, heap ${total}`);
  }
});

test('an idle shard\'s event-loop delay reads below the 10 ms its sampling timer used to add to it', async () => {
  // Each scrape reads the p99 since the one before. With the timer's interval counted in, no reading was under 10 ms.
  let readings: number[] = [];
  await waitUntil(async () => {
    const text = await (await fetch(mux.metricsUrl)).text();
    readings = [...text.matchAll(/^muxgate_event_loop_delay_seconds\{shard="\d+"\} (\S+)$/gm)].map((sample) => Number(sample[1]));
    return readings.length === 4 && readings.some((seconds) => seconds < 0.005);
  }, 20_000, () => `a p99 below 5 ms on an idle shard (the last: ${readings.join(', ')} s)`, 250);
});

test('a real Prometheus gets data for every expression of the Grafana dashboard', async () => {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'grafana/dashboards/muxgate.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
  const prometheus = await startPrometheus(new URL(mux.metricsUrl).host);
  try {
    // Scrapes before and after more traffic, so that rates have two points that differ.
    await waitForScrapes(prometheus, 3);
    await push(mux.pushUrl, [{ tokens: ['gone.0.AAAAAAAAAAAAAAAAAAAAAA'], body: 'x' }]);
    await (await fetch(`${mux.url}/stream.php`)).text();
    await waitForScrapes(prometheus, 6);
    const empty: string[] = [];
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const expr = target.expr.replaceAll('$__rate_interval', '1m');
        const result = await prometheus.query(expr);
        if (result.length === 0) empty.push(`${panel.title}: ${expr}`);
      }
    }
    assert.deepEqual(empty, []);
  } finally {
    await prometheus.stop();
    for (const stream of openStreams) stream.close();
  }
});

async function waitForScrapes(prometheus: Awaited<ReturnType<typeof startPrometheus>>, count: number) {
  const scrapes = async () => {
    const result = await prometheus.query('count_over_time(up{job="muxgate"}[5m])');
    return result.length > 0 ? Number(result[0].value[1]) : 0;
  };
  await waitUntil(async () => await scrapes() >= count, 30_000, `Prometheus to scrape ${count} times`, 250);
}

test('/metrics is still served, promptly, while a shard is blocked; /readyz tells', async () => {
  const config = loadConfig({
    MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SHARDS: '2',
    MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', MUX_LOG_LEVEL: 'silent',
  });
  const server = await startServer(config, createLogger('silent'));
  const metricsUrl = `http://127.0.0.1:${server.metrics.port}`;
  try {
    assert.equal((await fetch(`${metricsUrl}/readyz`)).status, 200);
    await fetch(`${metricsUrl}/metrics`);
    server.shards.stall(1, 2500);
    const started = Date.now();
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.ok(Date.now() - started < 2000, `served after ${Date.now() - started} ms`);
    assert.match(text, /^muxgate_shard_up\{shard="1"\} 0$/m);
    assert.match(text, /^muxgate_shard_up\{shard="0"\} 1$/m);
    // The blocked shard's last answer stands in: its series do not vanish.
    assert.match(text, /^muxgate_held_streams\{shard="1"\} 0$/m);
    assert.equal((await fetch(`${metricsUrl}/healthz`)).status, 200);
  } finally {
    await server.stop();
  }
  const unreachable = loadConfig({
    MUX_FASTCGI: '127.0.0.1:1', MUX_SHARDS: '1',
    MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', MUX_LOG_LEVEL: 'silent',
  });
  const lonely = await startServer(unreachable, createLogger('silent'));
  try {
    const readyz = await fetch(`http://127.0.0.1:${lonely.metrics.port}/readyz`);
    assert.equal(readyz.status, 503);
    assert.match(await readyz.text(), /backend unreachable/);
  } finally {
    await lonely.stop();
  }
});
