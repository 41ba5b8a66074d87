// MUX_FASTCGI_KEEPALIVE against a real php-fpm: requests reuse kept FastCGI connections instead of opening one each,
// requests with a body and bursts beyond the kept connections still get through, and a php-fpm restart is survived;
// against a scripted peer, a request whose kept connection is closed under it is sent again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { PHP_ROOT, ScriptLog, phpBackend } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { metricValue, startMuxgate, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp } from './helpers/raw-http.ts';
import { startKeptFastcgi } from './helpers/fake-fastcgi.ts';
import { waitUntil } from './helpers/wait.ts';

const KEPT = 2;
/** The requests slow-body.php has started. */
const requestLog = new ScriptLog();

let fpm: PhpFpm;
let kept: Muxgate;
let perRequest: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8, flushEachEcho: false, env: { REQUEST_LOG: requestLog.path } });
  const env = { ...phpBackend(fpm), MUX_SHARDS: '1' };
  kept = await startMuxgate({ ...env, MUX_FASTCGI_KEEPALIVE: String(KEPT) });
  perRequest = await startMuxgate(env);
});

after(async () => {
  await kept?.stop();
  await perRequest?.stop();
  await fpm?.stop();
  requestLog.remove();
});

/** TCP connections on php-fpm's port in a state; php-fpm closes first, so a closed connection waits in its TIME_WAIT. */
function fpmSockets(state: 'time-wait' | 'established'): number {
  return execFileSync('ss', ['-tanH', 'state', state, `( sport = :${fpm.port} )`], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
}

async function getEcho(mux: Muxgate, query: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${mux.url}/echo.php?${query}`);
  assert.equal(response.status, 200);
  return (await response.json()) as Record<string, unknown>;
}

test('sequential requests go over one kept connection, not a connection each', { timeout: 30_000 }, async () => {
  const REQUESTS = 40;
  const closedBefore = fpmSockets('time-wait');
  for (let i = 0; i < REQUESTS; i++) {
    const echo = await getEcho(kept, `i=${i}`);
    assert.equal((echo.server as Record<string, string>).QUERY_STRING, `i=${i}`);
  }
  const closedByKept = fpmSockets('time-wait') - closedBefore;
  assert.ok(closedByKept <= 1, `${closedByKept} connections were closed for ${REQUESTS} requests`);
  assert.ok(fpmSockets('established') >= 1, 'no kept connection is open');

  // the same requests without MUX_FASTCGI_KEEPALIVE: one connection each, which php-fpm closes
  for (let i = 0; i < REQUESTS; i++) await getEcho(perRequest, `i=${i}`);
  await waitUntil(() => fpmSockets('time-wait') - closedBefore - closedByKept >= REQUESTS, 5000,
    () => `the per-request baseline to close its ${REQUESTS} connections (${fpmSockets('time-wait') - closedBefore - closedByKept} closed)`);
});

test('requests with a body and bursts beyond the kept connections are answered', { timeout: 30_000 }, async () => {
  const body = randomBytes(200_000);
  const posted = await fetch(`${kept.url}/echo.php`, { method: 'POST', body });
  assert.equal(posted.status, 200);
  const echo = (await posted.json()) as { bodyLength: number; bodyMd5: string };
  assert.equal(echo.bodyLength, body.length);
  assert.equal(echo.bodyMd5, createHash('md5').update(body).digest('hex'));

  const burst = await Promise.all(Array.from({ length: 5 * KEPT }, (_, i) => getEcho(kept, `burst=${i}`)));
  assert.deepEqual(burst.map((echo) => (echo.server as Record<string, string>).QUERY_STRING), Array.from({ length: 5 * KEPT }, (_, i) => `burst=${i}`));
  await waitUntil(() => fpmSockets('established') <= KEPT, 5000,
    () => `at most MUX_FASTCGI_KEEPALIVE connections to stay open (${fpmSockets('established')} are)`);
});

test('kept connections closed by a php-fpm restart are replaced without failing a request', { timeout: 30_000 }, async () => {
  await getEcho(kept, 'before=restart');
  const { port } = fpm;
  await fpm.stop();
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8, port, env: { REQUEST_LOG: requestLog.path } });
  for (let i = 0; i < 10; i++) await getEcho(kept, `after=${i}`);
  const metrics = await (await fetch(kept.metricsUrl)).text();
  assert.doesNotMatch(metrics, /^muxgate_fastcgi_errors_total\{[^}]*\} [1-9]/m, 'a request failed at the backend');
});

test('a client that leaves mid-request closes the kept connection it was using', { timeout: 30_000 }, async () => {
  await getEcho(kept, 'warm');
  const idle = fpmSockets('established');
  assert.ok(idle >= 1, 'no kept connection to reuse');
  const uri = '/slow-body.php?kind=silent&count=20&pause=100';
  const client = await RawHttp.get(`${kept.url}${uri}`);
  await requestLog.waitForLine((line) => line === uri, 5000, 'the request at the backend');
  assert.equal(fpmSockets('established'), idle, 'the request did not reuse a kept connection');
  client.close();
  await kept.waitForLog((line) => line.msg === 'client left before the backend answered');
  await waitUntil(() => fpmSockets('established') === idle - 1, 5000,
    () => `the kept connection to close under the abandoned request (${fpmSockets('established')} established, ${idle} before)`, 50);
  await getEcho(kept, 'after');
});

// php-fpm cannot be made to close a kept connection at the moment a request arrives on it, so a scripted FastCGI
// peer does: it answers the first request on its first connection and keeps it open, then closes it under the second.
test('a request whose kept connection the backend closed under it is sent again, answered and counted', { timeout: 15_000 }, async () => {
  const peer = await startKeptFastcgi(Buffer.from('Content-Type: text/plain\r\n\r\nanswered'), (connection, request) => connection === 0 && request === 1);
  const mux = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${peer.port}`, MUX_SHARDS: '1', MUX_FASTCGI_KEEPALIVE: '1' });
  try {
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`${mux.url}/any`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), 'answered');
    }
    assert.equal(peer.keepFlags.length, 2, 'the second request was not sent again on a new connection');
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_fastcgi_retries_total'), 1);
  } finally {
    await mux.stop();
    await peer.close();
  }
});
