// Entry: read the config, start the server, stop it on SIGINT/SIGTERM.
import type { AddressInfo } from 'node:net';
import { describeConnectionLimit, loadConfig, type Config } from './config.ts';
import { ConfigError } from './errors.ts';
import { createLogger } from './log.ts';
import { startServer } from './server.ts';

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

const config = readConfig();
const log = createLogger(config.logLevel, {}, config.logPretty);
log.info({ config }, 'starting muxgate');
const connectionLimit = describeConnectionLimit(config);
log[connectionLimit.isWarning ? 'warn' : 'info']({ maxConnections: config.maxConnections, ...config.connectionBudget }, connectionLimit.message);
try {
  const server = await startServer(config, log);
  log.info({
    public: url(server.public), push: `${url(server.push)}/push`, metrics: `${url(server.metrics)}/metrics`, shards: config.shards,
  }, `muxgate listening: open ${url(server.public)}`);
  let isStopping = false;
  const stop = async (signal: string) => {
    if (isStopping) return;
    isStopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'stopping: no new connections, ending held streams');
    await server.stop();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
} catch (error) {
  log.fatal({ err: error }, 'failed to start');
  process.exit(1);
}
