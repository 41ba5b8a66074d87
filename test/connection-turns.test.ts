// Pipelined requests: one connection's requests reach the backend one at a time, answered in order, others served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PHP_ROOT, ScriptLog, phpBackend } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp } from './helpers/raw-http.ts';

/** When each request test/php/overlap.php ran for started and ended. */
const overlapLog = new ScriptLog();
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8, env: { OVERLAP_LOG: overlapLog.path } });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '1' });
});

after(async () => {
  assert.equal(await mux.stop(), 0);
  await fpm.stop();
});

/** The most requests test/php/overlap.php ran at once, from its log. */
function mostAtOnce(): number {
  const events: Array<[number, number]> = [];
  for (const line of overlapLog.lines()) {
    const [start, end] = line.split(' ').map(Number);
    events.push([start, 1], [end, -1]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let running = 0;
  let most = 0;
  for (const [, change] of events) most = Math.max(most, (running += change));
  return most;
}

const answers = (text: string) => text.split('HTTP/1.1 200 OK').length - 1;
/** The `n` of each answer of test/php/overlap.php received so far, in order. */
const done = (text: string) => [...text.matchAll(/done (\d+)\n/g)].map((match) => Number(match[1]));

async function pipeline(count: number, ms: number): Promise<RawHttp> {
  const { host } = new URL(mux.url);
  const requests = Array.from({ length: count }, (_, n) => `GET /overlap.php?ms=${ms}&n=${n} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  return RawHttp.open(mux.url, requests.join(''));
}

test('40 pipelined requests reach the backend one at a time and are all answered, in order', async () => {
  overlapLog.clear();
  const client = await pipeline(40, 20);
  const text = await client.waitFor((t) => answers(t) === 40 && done(t).length === 40, 20_000, '40 answers');
  client.close();
  assert.deepEqual(done(text), Array.from({ length: 40 }, (_, n) => n));
  assert.equal(overlapLog.lines().length, 40);
  assert.equal(mostAtOnce(), 1);
});

test('a flood of 2,000 pipelined requests on one connection takes one backend child, and other clients are served meanwhile', async () => {
  overlapLog.clear();
  const unavailable = () => metricValue(mux.metricsUrl, 'muxgate_fastcgi_errors_total{kind="connect"}');
  const before = await unavailable();
  const flood = await pipeline(2000, 0);
  // While the flood is being answered, other clients get their answers: the backend's other children are free.
  for (let i = 0; i < 5; i++) {
    const response = await fetch(`${mux.url}/page.php`);
    assert.equal(response.status, 200);
    await response.text();
  }
  await flood.waitFor((t) => answers(t) === 2000 && done(t).length === 2000, 60_000, '2,000 answers');
  flood.close();
  assert.equal(mostAtOnce(), 1);
  assert.equal(await unavailable(), before);
});
