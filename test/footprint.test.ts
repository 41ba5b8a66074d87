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

interface Loaded {
  /** CommonJS files. */
  files: string[];
  /** Node's own modules and bindings (process.moduleLoadList): `NativeModule http2`, `Internal Binding zlib`. */
  builtins: string[];
}

/** What a fresh thread has loaded once it has imported `module` (relative to test/). */
async function loadedBy(module: string): Promise<Loaded> {
  const worker = new Worker(new URL('./helpers/loaded-packages-worker.ts', import.meta.url), { workerData: new URL(module, import.meta.url).href });
  const [loaded] = await once(worker, 'message') as [Loaded];
  await worker.terminate();
  return loaded;
}

async function filesLoadedBy(module: string): Promise<string[]> {
  return (await loadedBy(module)).files;
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

test('a shard loads ws, and node:tls with it, only for its first WebSocket', async () => {
  const { files, builtins } = await loadedBy('../workers/shard.ts');
  assert.ok(files.some((file) => file.includes('/node_modules/pino/')), 'the shard thread was seen loading its logger');
  assert.deepEqual(files.filter((file) => file.includes('/node_modules/ws/')), []);
  assert.deepEqual(builtins.filter((name) => name === 'NativeModule tls'), []);
});

// An ES import of a built-in reads every export, and some are getters that load a module on first read: node:http's
// WebSocket loads undici (with web streams and zlib), node:crypto's webcrypto, node:fs's promises, node:tls's root
// certificates. muxgate takes built-ins with process.getBuiltinModule, which reads none: 10 MiB less with 2 shards.
for (const [thread, module] of [['a shard', '../workers/shard.ts'], ['the main thread', '../src/server.ts']]) {
  test(`${thread} loads none of the modules behind the built-ins' lazy exports (undici, http2, webcrypto)`, async () => {
    const { builtins } = await loadedBy(module);
    assert.ok(builtins.includes('NativeModule http'), 'the thread was seen loading node:http');
    const lazy = ['NativeModule internal/deps/undici/undici', 'NativeModule http2', 'NativeModule internal/crypto/webcrypto', 'NativeModule internal/fs/promises', 'NativeModule internal/readline/interface'];
    assert.deepEqual(builtins.filter((name) => lazy.includes(name)), []);
  });
}

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
