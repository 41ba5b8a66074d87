// The idle footprint (docs/memory.md): what each thread loads, since every module is paid for once per thread.
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { startMuxgate } from './helpers/muxgate.ts';

/** The CommonJS files a fresh thread has loaded once it has imported `module` (relative to test/). */
async function filesLoadedBy(module: string): Promise<string[]> {
  const worker = new Worker(new URL('./helpers/loaded-packages-worker.ts', import.meta.url), { workerData: new URL(module, import.meta.url).href });
  const [files] = await once(worker, 'message') as [string[]];
  await worker.terminate();
  return files;
}

test('a shard loads neither ioredis, which only a node with MUX_REDIS_URL uses, nor the whole of prom-client', async () => {
  const files = await filesLoadedBy('../workers/shard.ts');
  assert.ok(files.some((file) => file.includes('/node_modules/prom-client/lib/counter.js')), 'the shard thread was seen loading its metrics');
  assert.deepEqual(files.filter((file) => file.includes('/node_modules/ioredis/')), []);
  assert.deepEqual(files.filter((file) => /\/node_modules\/(prom-client\/index\.js|@opentelemetry\/)/.test(file)), []);
});

test('the main thread does not load ioredis', async () => {
  const files = await filesLoadedBy('../src/server.ts');
  assert.ok(files.some((file) => file.includes('/node_modules/piscina/')), 'the main thread was seen loading its shard pool');
  assert.deepEqual(files.filter((file) => file.includes('/node_modules/ioredis/')), []);
});

test('prom-client\'s classes loaded from their files are the ones its index exports', async () => {
  const own = await import('../src/prom-client.ts');
  const index = await import('prom-client');
  for (const name of ['Registry', 'Counter', 'Gauge', 'Histogram'] as const) assert.equal(own[name], index[name], name);
});

test('a restarted muxgate\'s shards take their TypeScript, types stripped, from Node\'s compile cache', async () => {
  const cache = mkdtempSync(join(tmpdir(), 'muxgate-compile-cache-'));
  const env = { NODE_COMPILE_CACHE: cache, MUX_SHARDS: '1', MUX_FASTCGI: '127.0.0.1:9', MUX_LOG_LEVEL: 'info' };
  try {
    const first = await startMuxgate(env);
    assert.equal(await first.stop(), 0);
    // Node's debug output names each module it finds in the cache.
    const second = await startMuxgate({ ...env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' });
    assert.equal(await second.stop(), 0);
    assert.match(second.stderr(), /transpile cache for StrippedTypeScript \S*\/workers\/shard\.ts\.\.\.success/);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test('without NODE_COMPILE_CACHE, the cache is in the installation, not the shared temp directory', async () => {
  const mux = await startMuxgate({ MUX_SHARDS: '1', MUX_FASTCGI: '127.0.0.1:9', MUX_LOG_LEVEL: 'info' });
  try {
    const starting = await mux.waitForLog((line) => line.msg === 'starting muxgate');
    assert.equal(starting.compileCache, fileURLToPath(new URL('../node_modules/.cache/node-compile-cache', import.meta.url)));
  } finally {
    await mux.stop();
  }
});
