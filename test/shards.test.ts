// The shard supervisor: a shard thread that dies is restarted; only its own clients notice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startServer } from '../src/server.ts';
import { PHP_ROOT, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm } from './helpers/php-fpm.ts';
import { metricValue } from './helpers/muxgate.ts';
import { decodeChunked } from './helpers/raw-http.ts';
import { waitUntil } from './helpers/wait.ts';


test('a terminated shard is restarted; its clients are disconnected, the others keep their streams', async () => {
  const fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  const config = loadConfig({
    ...phpBackend(fpm), MUX_SHARDS: '3',
    MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', MUX_SHUTDOWN_GRACE: '1',
  });
  const server = await startServer(config, createLogger('silent'));
  const base = `http://127.0.0.1:${server.public.port}`;
  const metricsUrl = `http://127.0.0.1:${server.metrics.port}/metrics`;
  const pushUrl = `http://127.0.0.1:${server.push.port}/push`;
  try {
    const clients = await Promise.all([0, 1, 2].map(async () => {
      const { client, token } = await openStream(base, 'hold=stream');
      return { client, token, shard: Number(token.split('.')[1]) };
    }));
    assert.deepEqual(clients.map((c) => c.shard).sort(), [0, 1, 2]);
    const victim = clients.find((c) => c.shard === 1)!;
    const survivors = clients.filter((c) => c !== victim);

    await server.shards.threadOf(1)!.terminate();
    await victim.client.waitForClose();
    const result = await push(pushUrl, [{ tokens: survivors.map((c) => c.token), body: 'still here' }]);
    assert.equal(result.deliveries, 2);
    for (const survivor of survivors) {
      await survivor.client.waitFor((t) => decodeChunked(t).body.endsWith('still here'));
      assert.equal(survivor.client.hasClosed, false);
    }

    await waitUntil(() => server.shards.isUp(1), 5000, 'shard 1 to come back', 20);
    assert.equal(await metricValue(metricsUrl, 'muxgate_shard_restarts_total'), 1);
    // The restarted shard takes new clients and is linked into the router mesh again.
    const { client: fresh, token } = await openStream(base, 'hold=stream');
    assert.equal(token.split('.')[1], '1');
    assert.deepEqual(await push(pushUrl, [{ tokens: [token, victim.token], body: 'welcome back' }]), { parts: 1, deliveries: 1, gone: [victim.token] });
    await fresh.waitFor((t) => decodeChunked(t).body.endsWith('welcome back'));
    for (const c of [...survivors, { client: fresh }]) c.client.close();
  } finally {
    await server.stop();
    await fpm.stop();
  }
});
