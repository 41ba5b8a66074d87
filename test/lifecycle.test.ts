// SIGTERM: stop accepting, end held streams with a final chunk, finish in-flight requests, exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PHP_ROOT, openStream, phpBackend } from './helpers/fixtures.ts';
import { startPhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, waitForMetric } from './helpers/muxgate.ts';
import { decodeChunked } from './helpers/raw-http.ts';


test('SIGTERM ends held streams cleanly, lets in-flight requests finish, exits 0', async () => {
  const fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  const mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '2', MUX_SHUTDOWN_GRACE: '5' });
  try {
    const streams = (await Promise.all([1, 2, 3].map(() => openStream(mux.url, 'hold=stream')))).map((s) => s.client);
    const { client: legacy } = await openStream(mux.url, 'hold=stream', { version: '1.0' });
    const slow = fetch(`${mux.url}/broken.php?case=slow&seconds=1`);
    await waitForMetric(mux.metricsUrl, 'muxgate_accepted_connections_total{listener="public"}', (n) => n === 5);

    const exitCode = mux.stop('SIGTERM');
    for (const client of streams) {
      await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'the final chunk');
      assert.match(decodeChunked(client.text).body, /^token=\S+\n$/);
    }
    await legacy.waitForClose();
    const response = await slow;
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'late\n');
    assert.equal(await exitCode, 0);
    await assert.rejects(fetch(mux.url), 'the listener is closed');
  } finally {
    await mux.stop();
    await fpm.stop();
  }
});
