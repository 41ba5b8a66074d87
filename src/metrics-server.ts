// /metrics, /healthz and /readyz: the shards' registries aggregated with the main thread's.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { AggregatorRegistry, Registry, openMetricsContentType } from 'prom-client';
import type { BackendAddress, ListenAddress } from './config.ts';
import { probeBackend } from './backend-probe.ts';
import { probeRedis } from './redis-probe.ts';
import type { ShardPool } from './shards.ts';
import type { MainMetrics } from './main-metrics.ts';
import type { AddressInfo } from 'node:net';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const http = process.getBuiltinModule('node:http');

const SHARD_TIMEOUT_MS = 1000;

export class MetricsServer {
  readonly #server: Server;
  readonly #shards: ShardPool;
  readonly #metrics: MainMetrics;
  readonly #backend: BackendAddress;
  readonly #redisUrl: string | null;

  constructor(shards: ShardPool, metrics: MainMetrics, backend: BackendAddress, redisUrl: string | null) {
    this.#shards = shards;
    this.#metrics = metrics;
    this.#backend = backend;
    this.#redisUrl = redisUrl;
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((error: Error) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(`metrics collection failed: ${error.message}\n`);
      });
    });
  }

  listen(address: ListenAddress): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(address.port, address.host, () => resolve(this.#server.address() as AddressInfo));
    });
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/healthz') return text(res, 200, 'ok\n');
    if (path === '/readyz') {
      const down = Array.from({ length: this.#shards.size }, (_, i) => i).filter((i) => !this.#shards.isUp(i));
      if (down.length > 0) return text(res, 503, `not ready: shards down: ${down.join(', ')}\n`);
      const backendProblem = await probeBackend(this.#backend, SHARD_TIMEOUT_MS);
      if (backendProblem !== null) return text(res, 503, `not ready: backend unreachable: ${backendProblem}\n`);
      const redisProblem = this.#redisUrl === null ? null : await probeRedis(this.#redisUrl, SHARD_TIMEOUT_MS);
      if (redisProblem !== null) return text(res, 503, `not ready: Redis unreachable: ${redisProblem}\n`);
      return text(res, 200, 'ready\n');
    }
    if (path !== '/metrics') return text(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
    const gathered = await this.#shards.gatherMetrics(SHARD_TIMEOUT_MS);
    gathered.up.forEach((isUp, shard) => this.#metrics.shardUp.set({ shard: String(shard) }, isUp ? 1 : 0));
    let all = [await this.#metrics.registry.getMetricsAsJSON(), ...gathered.metrics] as MetricJson[][];
    const wantsOpenMetrics = (req.headers.accept ?? '').includes('application/openmetrics-text');
    if (wantsOpenMetrics) all = all.map((metrics) => metrics.map(asOpenMetricsCounter));
    const aggregated = AggregatorRegistry.aggregate(all);
    if (wantsOpenMetrics) aggregated.setContentType(openMetricsContentType as typeof Registry.OPENMETRICS_CONTENT_TYPE);
    const body = await aggregated.metrics();
    res.writeHead(200, { 'Content-Type': aggregated.contentType });
    res.end(body);
  }
}

interface MetricJson {
  name: string;
  type: string;
}

/**
 * OpenMetrics names a counter family without `_total` and its samples with it. prom-client adds the
 * suffix to the samples but, for aggregated registries, does not take it off the family name.
 */
function asOpenMetricsCounter(metric: MetricJson): MetricJson {
  return metric.type === 'counter' ? { ...metric, name: metric.name.replace(/_total$/, '') } : metric;
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(body);
}
