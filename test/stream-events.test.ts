// MUX_EVENTS=close: the backend hears when a held stream ends, with the token and the reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp, multiplexBody } from './helpers/raw-http.ts';

const PHP_ROOT = join(import.meta.dirname, 'php');
const EVENT_LOG = join(mkdtempSync(join(tmpdir(), 'events-')), 'events.log');
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, env: { EVENT_LOG } });
  mux = await startMuxgate({ MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '2', MUX_EVENTS: 'close' });
});

after(async () => {
  await mux.stop();
  await fpm.stop();
});

async function openStream(query: string) {
  const client = await RawHttp.get(`${mux.url}/stream.php?${query}`);
  const text = await client.waitFor((t) => /token=\S+\n/.test(t));
  return { client, token: /token=(\S+)\n/.exec(text)![1] };
}

async function eventFor(token: string): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const lines = existsSync(EVENT_LOG) ? readFileSync(EVENT_LOG, 'utf8').split('\n') : [];
    const line = lines.find((l) => l.includes(` ${token} `));
    if (line !== undefined) return line;
    assert.ok(Date.now() < deadline, `no event for ${token}: ${lines.join('|')}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test('client disconnect, timeout and Multiplex-Close each reach the backend with their reason', async () => {
  const gone = await openStream('hold=stream&tag=client');
  gone.client.close();
  assert.equal(await eventFor(gone.token), `close ${gone.token} client /stream.php?hold=stream&tag=client`);

  const timed = await openStream('hold=stream&timeout=0.3');
  assert.equal(await eventFor(timed.token), `close ${timed.token} timeout /stream.php?hold=stream&timeout=0.3`);

  const closed = await openStream('hold=stream');
  await fetch(mux.pushUrl, {
    method: 'POST', headers: { 'Content-Type': 'application/x-multiplex; boundary=E' },
    body: multiplexBody('E', [{ tokens: [closed.token], body: 'bye', close: true }]),
  });
  assert.equal(await eventFor(closed.token), `close ${closed.token} closed /stream.php?hold=stream`);
  await waitForMetric(mux.metricsUrl, 'muxgate_stream_events_total{result="sent"}', (n) => n >= 3);
  for (const s of [timed, closed]) s.client.close();
});

test('a response that is not held sends no event', async () => {
  const response = await fetch(`${mux.url}/stream.php?tag=plain`);
  const token = response.headers.get('x-token')!;
  await response.text();
  const probe = await openStream('hold=stream&tag=probe');
  probe.client.close();
  await eventFor(probe.token);
  assert.ok(!readFileSync(EVENT_LOG, 'utf8').includes(token));
});
