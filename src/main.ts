// Entry: read the config, start the shards, the listeners and the metrics server; stop on SIGINT/SIGTERM.
import { loadConfig, type Config } from './config.ts';
import { ConfigError } from './errors.ts';
import { createLogger, type Logger } from './log.ts';
import { ShardPool } from './shards.ts';
import { Acceptor } from './acceptor.ts';
import { MetricsServer } from './metrics-server.ts';
import { createMainMetrics } from './main-metrics.ts';
import { startDemoBackend, type DemoBackend } from './demo-backend.ts';
import type { AddressInfo } from 'node:net';

function readConfig(): Readonly<Config> {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`muxgate: ${error.message}\n`);
    process.exit(2);
  }
}

function url(address: AddressInfo): string {
  const host = address.address === '0.0.0.0' || address.address === '::' ? 'localhost' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

async function main(): Promise<void> {
  const config = readConfig();
  const log: Logger = createLogger(config.logLevel);
  log.info({ config }, 'starting muxgate');
  const metrics = createMainMetrics();
  let demo: DemoBackend | null = null;
  if (config.fastcgi === null) {
    demo = await startDemoBackend();
    log.info('no MUX_FASTCGI set: serving the bundled demo chat');
  }
  const shards = new ShardPool(config, config.fastcgi ?? demo!.address, log, metrics);
  await shards.start();
  const publicListener = new Acceptor('public', shards, metrics);
  const pushListener = new Acceptor('push', shards, metrics);
  const metricsServer = new MetricsServer(shards, metrics);
  const [publicAddress, pushAddress, metricsAddress] = await Promise.all([
    publicListener.listen(config.listen),
    pushListener.listen(config.pushListen),
    metricsServer.listen(config.metricsListen),
  ]);
  log.info({
    public: url(publicAddress), push: `${url(pushAddress)}/push`, metrics: `${url(metricsAddress)}/metrics`, shards: config.shards,
  }, `muxgate listening: open ${url(publicAddress)}`);

  let isStopping = false;
  const stop = async (signal: string) => {
    if (isStopping) return;
    isStopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'stopping: no new connections, ending held streams');
    await Promise.all([publicListener.close(), pushListener.close()]);
    await shards.shutdown();
    await metricsServer.close();
    await demo?.stop();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: Error) => {
  process.stderr.write(`muxgate: failed to start: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
