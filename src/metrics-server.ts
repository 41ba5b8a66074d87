// /metrics, /healthz and /readyz: the shards' registries aggregated with the main thread's.
import http from 'node:http';
import { AggregatorRegistry, Registry, openMetricsContentType } from 'prom-client';
import type { ListenAddress } from './config.ts';
import type { ShardPool } from './shards.ts';
import type { MainMetrics } from './main-metrics.ts';
import type { AddressInfo } from 'node:net';

const SHARD_TIMEOUT_MS = 1000;

export class MetricsServer {
  private readonly server: http.Server;
  private readonly shards: ShardPool;
  private readonly metrics: MainMetrics;

  constructor(shards: ShardPool, metrics: MainMetrics) {
    this.shards = shards;
    this.metrics = metrics;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((error: Error) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(`metrics collection failed: ${error.message}\n`);
      });
    });
  }

  listen(address: ListenAddress): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(address.port, address.host, () => resolve(this.server.address() as AddressInfo));
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/healthz') return text(res, 200, 'ok\n');
    if (path === '/readyz') {
      const down = Array.from({ length: this.shards.size }, (_, i) => i).filter((i) => !this.shards.isUp(i));
      return down.length === 0 ? text(res, 200, 'ready\n') : text(res, 503, `shards down: ${down.join(', ')}\n`);
    }
    if (path !== '/metrics') return text(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
    const gathered = await this.shards.gatherMetrics(SHARD_TIMEOUT_MS);
    gathered.up.forEach((isUp, shard) => this.metrics.shardUp.set({ shard: String(shard) }, isUp ? 1 : 0));
    const all = [await this.metrics.registry.getMetricsAsJSON(), ...gathered.metrics];
    const aggregated = AggregatorRegistry.aggregate(all);
    const wantsOpenMetrics = (req.headers.accept ?? '').includes('application/openmetrics-text');
    if (wantsOpenMetrics) aggregated.setContentType(openMetricsContentType as typeof Registry.OPENMETRICS_CONTENT_TYPE);
    const body = await aggregated.metrics();
    res.writeHead(200, { 'Content-Type': aggregated.contentType });
    res.end(body);
  }
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(body);
}
