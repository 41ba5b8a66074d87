// MUX_EVENTS=close: the backend hears when a held stream ends, with the token and the reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PHP_ROOT, ScriptLog, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp } from './helpers/raw-http.ts';
import { waitUntil } from './helpers/wait.ts';

/** The close events stream.php was sent. */
const eventLog = new ScriptLog();
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, env: { EVENT_LOG: eventLog.path } });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '2', MUX_EVENTS: 'close' });
});

after(async () => {
  await mux.stop();
  await fpm.stop();
});

function eventFor(token: string): Promise<string> {
  return eventLog.waitForLine((line) => line.includes(` ${token} `), 5000, `an event for ${token}`);
}

test('client disconnect, timeout and Multiplex-Close each reach the backend with their reason', async () => {
  const gone = await openStream(mux.url, 'hold=stream&tag=client');
  gone.client.close();
  assert.equal(await eventFor(gone.token), `close ${gone.token} client /stream.php?hold=stream&tag=client`);

  const timed = await openStream(mux.url, 'hold=stream&timeout=0.3');
  assert.equal(await eventFor(timed.token), `close ${timed.token} timeout /stream.php?hold=stream&timeout=0.3`);

  const closed = await openStream(mux.url, 'hold=stream');
  await push(mux.pushUrl, [{ tokens: [closed.token], body: 'bye', close: true }]);
  assert.equal(await eventFor(closed.token), `close ${closed.token} closed /stream.php?hold=stream`);
  await waitForMetric(mux.metricsUrl, 'muxgate_stream_events_total{result="sent"}', (n) => n >= 3);
  for (const s of [timed, closed]) s.client.close();
});

test('a response that is not held sends no event', async () => {
  const response = await fetch(`${mux.url}/stream.php?tag=plain`);
  const token = response.headers.get('x-token')!;
  assert.equal(response.status, 200);
  assert.equal(await response.text(), `token=${token}\n`);
  assert.match(token, /^[A-Za-z0-9_-]{1,16}\.[0-9a-z]+\.[A-Za-z0-9_-]{22}$/);
  const probe = await openStream(mux.url, 'hold=stream&tag=probe');
  probe.client.close();
  await eventFor(probe.token);
  assert.ok(!eventLog.lines().some((line) => line.includes(token)));
});

test('a mass disconnect: events bounded by MUX_EVENTS_CONCURRENCY, none lost below the queue limit, overflow counted', async () => {
  const massLog = new ScriptLog();
  const massFpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 20, env: { EVENT_LOG: massLog.path } });
  const massMux = await startMuxgate({
    ...phpBackend(massFpm), MUX_SHARDS: '2', MUX_EVENTS: 'close',
    MUX_EVENTS_CONCURRENCY: '3', MUX_EVENTS_QUEUE: '1500', MUX_LOG_LEVEL: 'info',
  });
  try {
    const open = async (count: number, eventSleepUs: number) => {
      const clients: RawHttp[] = [];
      for (let i = 0; i < count; i += 100) {
        const opened = await Promise.all(Array.from({ length: Math.min(100, count - i) }, () =>
          openStream(massMux.url, `hold=stream&silent=1&eventsleep=${eventSleepUs}`)));
        clients.push(...opened.map((stream) => stream.client));
      }
      return clients;
    };
    const lines = () => massLog.lines();
    const waitForEvents = (count: number) => waitUntil(() => lines().length >= count, 60_000, () => `${count} events (${lines().length} so far)`, 100);

    // 2,000 streams (1,000 per shard, each queue holds 1,500): every event arrives.
    for (const client of await open(2000, 2000)) client.close();
    await waitForEvents(2000);
    const events = lines().map((line) => line.split(' '));
    assert.equal(new Set(events.map((e) => e[1])).size, 2000, 'one event per stream');
    assert.ok(events.every((e) => e[2] === 'client'));
    // At most 3 per shard ran at once: sweep the start/end times.
    const edges = events.flatMap((e) => [[Number(e[4]), 1], [Number(e[5]), -1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let running = 0;
    let peak = 0;
    for (const [, delta] of edges) peak = Math.max(peak, (running += delta));
    assert.ok(peak <= 6, `${peak} events ran at once`);
    assert.ok(peak >= 2, `events ran one at a time (${peak}): the test shows nothing`);

    // 4,000 at once, slower events: beyond 1,500 waiting per shard, events are dropped, counted, logged once per burst.
    for (const client of await open(4000, 10_000)) client.close();
    // Every event of the 6,000 streams is sent or dropped, none silently lost.
    const outcome = async (result: string) => (await metricValue(massMux.metricsUrl, `muxgate_stream_events_total{result="${result}"}`)) ?? 0;
    let outcomes = '';
    const settled = async () => {
      const [sent, dropped, failed] = [await outcome('sent'), await outcome('dropped'), await outcome('failed')];
      outcomes = `sent ${sent}, dropped ${dropped}, failed ${failed}`;
      return sent + dropped + failed >= 6000;
    };
    await waitUntil(settled, 90_000, () => `an outcome for each of the 6,000 events (${outcomes})`, 250);
    const dropped = await outcome('dropped');
    assert.equal(await outcome('failed'), 0);
    assert.ok(dropped > 0 && dropped <= 4000 - 2 * 1500, `${dropped} dropped`);
    assert.equal(lines().length, 6000 - dropped, 'every event sent reached the backend');
    await massMux.waitForLog((l) => String(l.msg).startsWith('close events dropped'), 5000);
  } finally {
    await massMux.stop();
    await massFpm.stop();
  }
});

test('a backend slower than MUX_FASTCGI_TIMEOUT to answer an event: the event fails, its slot is freed', async () => {
  const other = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '1', MUX_EVENTS: 'close',
    MUX_EVENTS_CONCURRENCY: '1', MUX_FASTCGI_TIMEOUT: '1',
  });
  try {
    // The event's script sleeps 5 s: its head comes too late.
    (await openStream(other.url, 'hold=stream&eventsleep=5000000')).client.close();
    await waitForMetric(other.metricsUrl, 'muxgate_stream_events_total{result="failed"}', (n) => n === 1);
    await other.waitForLog((l) => l.msg === 'backend response head timed out' && l.event === 'close');
    // The one event slot is free again: the next stream's event is sent.
    const next = await openStream(other.url, 'hold=stream&tag=after-timeout');
    next.client.close();
    assert.equal(await eventFor(next.token), `close ${next.token} client /stream.php?hold=stream&tag=after-timeout`);
  } finally {
    await other.stop();
  }
});
