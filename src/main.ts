// Entry: read the config, start the server, stop it on SIGINT/SIGTERM.
import type { AddressInfo } from 'node:net';
import { describeConnectionLimit, loadConfig, type Config } from './config.ts';
import { ConfigError } from './errors.ts';
import { createLogger } from './log.ts';
import { startServer } from './server.ts';
import { loadTlsPair, type TlsPair } from './tls-pair.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const module = process.getBuiltinModule('node:module');
const { fileURLToPath } = process.getBuiltinModule('node:url');

/** The configuration and, with MUX_TLS_CERT and MUX_TLS_KEY, the pair they name: either wrong stops muxgate with exit 2. */
function readConfig(): { config: Readonly<Config>; tls: TlsPair | null } {
  try {
    const config = loadConfig(process.env);
    return { config, tls: config.tls === null ? null : loadTlsPair(config.tls) };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`muxgate: ${error.message}\n`);
    process.exit(2);
  }
}

/**
 * Node strips the types of each .ts file as a thread loads it, and its stripper takes about 13 MiB in every thread that
 * loads it (docs/memory.md). With Node's compile cache, a thread reads the stripped code (and V8's code cache) from disk
 * instead: the shards, which read NODE_COMPILE_CACHE as they start, never load the stripper once the cache holds their
 * files; nor does this thread when NODE_COMPILE_CACHE was set before it started. Returns why it is off, or null.
 */
function enableCompileCache(): string | null {
  // Named so that the shards share it; in the installation, not the shared temp directory (SECURITY.md).
  process.env.NODE_COMPILE_CACHE ||= fileURLToPath(new URL('../node_modules/.cache/node-compile-cache', import.meta.url));
  const { directory, message } = module.enableCompileCache(process.env.NODE_COMPILE_CACHE);
  return directory === undefined ? message ?? 'NODE_DISABLE_COMPILE_CACHE is set' : null;
}

function url(address: AddressInfo, scheme = 'http'): string {
  const host = address.address === '0.0.0.0' || address.address === '::' ? 'localhost' : address.address;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

const { config, tls } = readConfig();
const compileCacheOff = enableCompileCache();
const log = createLogger(config.logLevel, {}, config.logPretty);
log.info({ config, compileCache: compileCacheOff === null ? process.env.NODE_COMPILE_CACHE : null }, 'starting muxgate');
if (compileCacheOff !== null) log.info({ reason: compileCacheOff }, 'no compile cache: every shard strips its TypeScript itself, about 13 MiB more each');
const connectionLimit = describeConnectionLimit(config);
log[connectionLimit.isWarning ? 'warn' : 'info']({ maxConnections: config.maxConnections, ...config.connectionBudget }, connectionLimit.message);
try {
  const server = await startServer(config, log, tls);
  let isStopping = false;
  const stop = async (signal: string) => {
    if (isStopping) return;
    isStopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'stopping: no new connections, ending held streams');
    await server.stop();
    log.info('stopped');
    process.exit(0);
  };
  // Before the line that says it listens: a SIGTERM sent on reading it finds the handler, not the default (exit by signal).
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // As nginx: SIGHUP reloads (the certificate and key; nothing else is reloaded), it never stops muxgate.
  process.on('SIGHUP', () => void server.reloadTls());
  const publicUrl = url(server.public, tls === null ? 'http' : 'https');
  const h2c = server.h2c === null ? undefined : url(server.h2c);
  log.info({ public: publicUrl, push: `${url(server.push)}/push`, metrics: `${url(server.metrics)}/metrics`, h2c, shards: config.shards },
    `muxgate listening: open ${publicUrl}`);
} catch (error) {
  log.fatal({ err: error }, 'failed to start');
  process.exit(1);
}
