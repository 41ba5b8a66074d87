// One running muxgate: the demo backend if needed, the shards, the listeners and the metrics server.
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import { ShardPool } from './shards.ts';
import { Acceptor } from './acceptor.ts';
import { MetricsServer } from './metrics-server.ts';
import { createMainMetrics } from './main-metrics.ts';
import { startDemoBackend, type DemoBackend } from './demo-backend.ts';

export interface RunningServer {
  shards: ShardPool;
  public: AddressInfo;
  push: AddressInfo;
  metrics: AddressInfo;
  /** Stops accepting, ends held streams, waits for in-flight requests (up to the grace period). */
  stop(): Promise<void>;
}

/** Channel parts the demo keeps for browsers that reconnect or reload, unless MUX_CHANNEL_HISTORY says otherwise. */
const DEMO_HISTORY = 100;

export async function startServer(configured: Readonly<Config>, log: Logger): Promise<RunningServer> {
  const metrics = createMainMetrics();
  let config = configured;
  let demo: DemoBackend | null = null;
  if (config.fastcgi === null) {
    demo = await startDemoBackend();
    // The demo announces who left (close events) and resumes reconnecting browsers (history).
    config = Object.freeze({ ...config, events: true, channelHistory: config.channelHistory || DEMO_HISTORY });
    log.info('no MUX_FASTCGI set: serving the bundled demo chat');
  }
  const backend = config.fastcgi ?? demo!.address;
  const shards = new ShardPool(config, backend, log, metrics);
  await shards.start();
  const publicListener = new Acceptor('public', shards, metrics, config.maxConnections);
  // The limit protects against clients: it must never lock out the pushers.
  const pushListener = new Acceptor('push', shards, metrics, 0);
  const metricsServer = new MetricsServer(shards, metrics, backend, config.redisUrl);
  const [publicAddress, pushAddress, metricsAddress] = await Promise.all([
    publicListener.listen(config.listen),
    pushListener.listen(config.pushListen),
    metricsServer.listen(config.metricsListen),
  ]);
  return {
    shards,
    public: publicAddress,
    push: pushAddress,
    metrics: metricsAddress,
    async stop() {
      await Promise.all([publicListener.close(), pushListener.close()]);
      await shards.shutdown();
      await metricsServer.close();
      await demo?.stop();
    },
  };
}
