// One running muxgate: the demo backend if needed, the shards, the listeners and the metrics server.
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import { ShardPool } from './shards.ts';
import { Acceptor } from './acceptor.ts';
import { MetricsServer } from './metrics-server.ts';
import { createMainMetrics } from './main-metrics.ts';
import { startDemoBackend, type DemoBackend } from './demo-backend.ts';
import { loadTlsPair, validityProblem, type TlsPair } from './tls-pair.ts';

export interface RunningServer {
  shards: ShardPool;
  public: AddressInfo;
  push: AddressInfo;
  /** MUX_H2C_LISTEN's address; null when it is not set. */
  h2c: AddressInfo | null;
  metrics: AddressInfo;
  /**
   * Reads MUX_TLS_CERT and MUX_TLS_KEY again (SIGHUP) and hands them to the shards; a pair that fails its checks is
   * logged and the one in use kept. Returns whether a new pair is in use.
   */
  reloadTls(): boolean;
  /** Stops accepting, ends held streams, waits for in-flight requests (up to the grace period). */
  stop(): Promise<void>;
}

/** Channel parts the demo keeps for browsers that reconnect or reload, unless MUX_CHANNEL_HISTORY says otherwise. */
const DEMO_HISTORY = 100;

/** Logs the certificate now in use, and a warning when it is not valid today. */
function logCertificate(log: Logger, pair: TlsPair, message: string): void {
  log.info({ certificate: pair.summary }, message);
  const problem = validityProblem(pair.summary);
  if (problem !== null) log.warn({ certificate: pair.summary }, `${problem}: clients will refuse it`);
}

/** `tls`: the pair read from config.tls (main.ts reads it first, to stop with exit 2 when it is bad). */
export async function startServer(configured: Readonly<Config>, log: Logger,
  tls: TlsPair | null = configured.tls === null ? null : loadTlsPair(configured.tls)): Promise<RunningServer> {
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
  if (tls !== null) logCertificate(log, tls, 'serving HTTPS on the public listener');
  const shards = new ShardPool(config, backend, log, metrics, tls);
  await shards.start();
  const publicListener = new Acceptor('public', shards, metrics, config.maxConnections);
  // The limit protects against clients: it must never lock out the pushers.
  const pushListener = new Acceptor('push', shards, metrics, 0);
  // A client's connection, whatever it speaks: counted against the same limit as the public listener's.
  const h2cListener = config.h2cListen === null ? null : new Acceptor('h2c', shards, metrics, config.maxConnections);
  const metricsServer = new MetricsServer(shards, metrics, backend, config.redisUrl);
  const [publicAddress, pushAddress, metricsAddress, h2cAddress] = await Promise.all([
    publicListener.listen(config.listen),
    pushListener.listen(config.pushListen),
    metricsServer.listen(config.metricsListen),
    h2cListener === null ? null : h2cListener.listen(config.h2cListen!),
  ]);
  return {
    shards,
    public: publicAddress,
    push: pushAddress,
    h2c: h2cAddress,
    metrics: metricsAddress,
    reloadTls() {
      if (config.tls === null) {
        log.info('SIGHUP: nothing to reload (no MUX_TLS_CERT and MUX_TLS_KEY)');
        return false;
      }
      let pair: TlsPair;
      try {
        pair = loadTlsPair(config.tls);
      } catch (error) {
        log.error({ err: (error as Error).message }, 'TLS reload failed: the certificate and key in use are kept');
        return false;
      }
      shards.setTls(pair);
      logCertificate(log, pair, 'TLS certificate reloaded: new handshakes use it');
      return true;
    },
    async stop() {
      await Promise.all([publicListener.close(), pushListener.close(), h2cListener?.close()]);
      await shards.shutdown();
      await metricsServer.close();
      await demo?.stop();
    },
  };
}
