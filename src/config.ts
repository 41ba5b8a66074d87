// MUX_* environment → one frozen, typed Config; every error names the variable, the value and what is expected.
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './errors.ts';
import { NODE_ID_PATTERN, MAX_SHARDS } from './protocol/token.ts';
import type { TlsFiles } from './tls-pair.ts';

export interface ListenAddress {
  host: string;
  port: number;
}

export type BackendAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  listen: ListenAddress;
  pushListen: ListenAddress;
  metricsListen: ListenAddress;
  shards: number;
  /** null: start the bundled demo app and use it. */
  fastcgi: BackendAddress | null;
  scriptFilename: string;
  documentRoot: string;
  fastcgiTimeoutMs: number;
  /** FastCGI connections per shard kept open (FCGI_KEEP_CONN) for requests without a body; 0: one per request. */
  fastcgiKeepalive: number;
  pushSecret: string | null;
  holdTimeoutMs: number;
  maxPartBytes: number;
  /** MUX_WS_MAX_MESSAGE_BYTES: a larger message from a WebSocket client closes it with 1009. */
  maxWebSocketMessageBytes: number;
  maxBufferedBytes: number;
  maxRequestHeadBytes: number;
  /** MUX_H2_MAX_STREAMS: concurrent streams an HTTP/2 connection may open (its SETTINGS_MAX_CONCURRENT_STREAMS). */
  http2MaxStreams: number;
  maxRequestBytes: number;
  maxPushBytes: number;
  /** Client connections across all shards; beyond, a new public connection gets a fast 503. 0: no limit. */
  maxConnections: number;
  /** What the open-files limit leaves room for: maxConnections unless MUX_MAX_CONNECTIONS is set. */
  connectionBudget: ConnectionBudget;
  headersTimeoutMs: number;
  /** A whole request, head and body, must arrive within this (node:http's requestTimeout); never below headersTimeoutMs. */
  requestTimeoutMs: number;
  shutdownGraceMs: number;
  events: boolean;
  /** Close events in flight, and waiting, per shard. */
  eventsConcurrency: number;
  eventsQueue: number;
  /** Parts kept per channel for resuming streams; 0: no history. */
  channelHistory: number;
  /** Age beyond which a kept part is forgotten; 0: none. */
  channelHistoryMs: number;
  /** Memory the history of all channels may take on this node; beyond, the oldest parts are forgotten first. */
  channelHistoryBytes: number;
  nodeId: string;
  /** Multi-node routing through Redis; null: this node alone. */
  redisUrl: string | null;
  logLevel: LogLevel;
  logPretty: boolean;
  /** MUX_TLS_CERT and MUX_TLS_KEY: the public listener speaks HTTPS (src/tls-pair.ts reads them); null: plain HTTP. */
  tls: TlsFiles | null;
}

export interface ConnectionBudget {
  /** The soft open-files limit (RLIMIT_NOFILE); null where it cannot be read (not Linux). */
  openFiles: number | null;
  /** Client connections that fit in it beside the reserve; FALLBACK_MAX_CONNECTIONS where it cannot be read. */
  connections: number;
  /** MUX_MAX_CONNECTIONS was set, and maxConnections is its value. */
  isOverridden: boolean;
}

type Env = Record<string, string | undefined>;

function parseListen(env: Env, name: string, fallback: string): ListenAddress {
  const value = env[name] ?? fallback;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new ConfigError(name, value, 'host:port, [ipv6]:port or port (0-65535)');
  return { host: match[1] || match[2] || '0.0.0.0', port };
}

function parseInteger(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) throw new ConfigError(name, value, `an integer from ${min} to ${max}`);
  return n;
}

function parseSecondsAsMs(env: Env, name: string, fallbackSeconds: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallbackSeconds * 1000;
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0 && n <= 31_536_000)) throw new ConfigError(name, value, 'seconds, a number from 0 to 31536000');
  return Math.round(n * 1000);
}

function parseBackend(env: Env): BackendAddress | null {
  const value = env.MUX_FASTCGI;
  if (value === undefined || value === '') return null;
  if (value.startsWith('unix:')) {
    const path = value.slice(5);
    if (!path.startsWith('/')) throw new ConfigError('MUX_FASTCGI', value, 'unix:/absolute/path or host:port');
    return { kind: 'unix', path };
  }
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 1 && port <= 65535)) throw new ConfigError('MUX_FASTCGI', value, 'host:port or unix:/absolute/path');
  return { kind: 'tcp', host: match[1] || match[2], port };
}

function parseBoolean(env: Env, name: string): boolean {
  const value = env[name];
  if (value === undefined || value === '' || /^(0|false|off|no)$/i.test(value)) return false;
  if (/^(1|true|on|yes)$/i.test(value) || (name === 'MUX_EVENTS' && /^close$/i.test(value))) return true;
  throw new ConfigError(name, value, `on or off (${name === 'MUX_EVENTS' ? 'close, ' : ''}1, true, yes / 0, false, no)`);
}

const MAX_HISTORY = 100_000;
/** With only an age limit, a channel still keeps at most this many parts. */
const AGE_ONLY_HISTORY = 1000;

/** As Nchan's message timeout: channel names often come from users, so history is never kept for ever by default. */
const DEFAULT_HISTORY_SECONDS = 3600;
const DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024;

function parseChannelHistory(env: Env): Pick<Config, 'channelHistory' | 'channelHistoryMs' | 'channelHistoryBytes'> {
  const count = parseInteger(env, 'MUX_CHANNEL_HISTORY', 0, 0, MAX_HISTORY);
  const ms = parseSecondsAsMs(env, 'MUX_CHANNEL_HISTORY_SECONDS', DEFAULT_HISTORY_SECONDS);
  // An age limit set alone turns history on.
  const isAgeSet = env.MUX_CHANNEL_HISTORY_SECONDS !== undefined && env.MUX_CHANNEL_HISTORY_SECONDS !== '';
  return {
    channelHistory: count === 0 && isAgeSet && ms > 0 ? AGE_ONLY_HISTORY : count,
    channelHistoryMs: ms,
    channelHistoryBytes: parseInteger(env, 'MUX_CHANNEL_HISTORY_BYTES', DEFAULT_HISTORY_BYTES, 1024, 2 ** 40),
  };
}

function parseRequestTimeouts(env: Env): { headersTimeoutMs: number; requestTimeoutMs: number } {
  const headersTimeoutMs = parseSecondsAsMs(env, 'MUX_HEADERS_TIMEOUT', 20) || 20_000;
  const requestTimeoutMs = env.MUX_REQUEST_TIMEOUT ? parseSecondsAsMs(env, 'MUX_REQUEST_TIMEOUT', 120) : Math.max(120_000, headersTimeoutMs);
  if (requestTimeoutMs < headersTimeoutMs) {
    throw new ConfigError('MUX_REQUEST_TIMEOUT', env.MUX_REQUEST_TIMEOUT!, `seconds, at least MUX_HEADERS_TIMEOUT (${headersTimeoutMs / 1000})`);
  }
  return { headersTimeoutMs, requestTimeoutMs };
}

/** Both files or neither; what they hold is checked by loadTlsPair (src/tls-pair.ts). */
function parseTlsFiles(env: Env): TlsFiles | null {
  const certFile = env.MUX_TLS_CERT || null;
  const keyFile = env.MUX_TLS_KEY || null;
  if (certFile === null && keyFile === null) return null;
  if (keyFile === null) throw new ConfigError('MUX_TLS_KEY', '', `set as well as MUX_TLS_CERT: the PEM file of its certificate's private key`);
  if (certFile === null) throw new ConfigError('MUX_TLS_CERT', '', `set as well as MUX_TLS_KEY: the PEM file of the certificate (and its chain)`);
  return { certFile, keyFile };
}

/** The default MUX_MAX_CONNECTIONS where the open-files limit cannot be read. */
export const FALLBACK_MAX_CONNECTIONS = 1000;
/** File descriptors kept for the main thread: its own (~26), the three listeners, metrics scrapes, pushers, logs. */
const RESERVED_FDS = 64;
/** The most connections the public listener answers 503 at once; beyond, it closes them unanswered (src/acceptor.ts). */
export const MAX_REFUSING = 32;
/** File descriptors kept per shard beside its kept FastCGI connections: its thread (~5), its 2 Redis connections. */
const RESERVED_FDS_PER_SHARD = 16;

/**
 * Client connections that fit in `openFiles` descriptors. A fixed reserve: the main thread's, the refusals in
 * flight, each shard's (and its kept FastCGI connections). A fraction: a client connection with a request in flight
 * also holds a FastCGI connection, so a quarter of what remains is for those: up to a third of the clients may wait
 * on the backend at once. Held streams, once their head is out, hold none.
 */
export function connectionsFor(openFiles: number, shards: number, fastcgiKeepalive: number): number {
  const reserved = RESERVED_FDS + MAX_REFUSING + shards * (RESERVED_FDS_PER_SHARD + fastcgiKeepalive);
  return Math.max(1, Math.floor((openFiles - reserved) * 3 / 4));
}

/** The soft limit of "Max open files" in /proc/self/limits (Node has no getrlimit); null if there is none. */
export function parseOpenFilesLimit(procLimits: string): number | null {
  const match = /^Max open files +(\d+) /m.exec(procLimits);
  return match === null ? null : Number(match[1]);
}

export function readOpenFilesLimit(): number | null {
  try {
    return parseOpenFilesLimit(readFileSync('/proc/self/limits', 'latin1'));
  } catch {
    return null;
  }
}

function parseConnections(env: Env, openFiles: number | null, shards: number, fastcgiKeepalive: number) {
  const connections = openFiles === null ? FALLBACK_MAX_CONNECTIONS : connectionsFor(openFiles, shards, fastcgiKeepalive);
  const isOverridden = env.MUX_MAX_CONNECTIONS !== undefined && env.MUX_MAX_CONNECTIONS !== '';
  return {
    maxConnections: parseInteger(env, 'MUX_MAX_CONNECTIONS', connections, 0, 10_000_000),
    connectionBudget: { openFiles, connections, isOverridden },
  };
}

/** The start log line about the connection limit: a warning when MUX_MAX_CONNECTIONS lets the descriptors run out. */
export function describeConnectionLimit(config: Pick<Config, 'maxConnections' | 'connectionBudget'>): { isWarning: boolean; message: string } {
  const { maxConnections } = config;
  const { openFiles, connections, isOverridden } = config.connectionBudget;
  const beside = 'beside FastCGI, Redis, the listeners and pushers';
  if (!isOverridden) {
    const why = openFiles === null ? 'the open-files limit cannot be read here' : `the open-files limit of ${openFiles} leaves room for that many ${beside}`;
    return { isWarning: false, message: `at most ${maxConnections} client connections: MUX_MAX_CONNECTIONS is unset, and ${why}` };
  }
  if (openFiles === null || (maxConnections > 0 && maxConnections <= connections)) {
    const limit = maxConnections === 0 ? 'no limit on client connections' : `at most ${maxConnections} client connections`;
    return { isWarning: false, message: `${limit} (MUX_MAX_CONNECTIONS=${maxConnections})` };
  }
  const excess = maxConnections === 0
    ? `MUX_MAX_CONNECTIONS=0 sets no limit, but the open-files limit of ${openFiles} leaves room for ${connections} client connections`
    : `MUX_MAX_CONNECTIONS=${maxConnections} is more than the ${connections} client connections the open-files limit of ${openFiles} leaves room for`;
  return {
    isWarning: true,
    message: `${excess} ${beside}: beyond, file descriptors run out and /healthz, the push API and the backend become ` +
      'unreachable; raise the open-files limit (ulimit -n, systemd LimitNOFILE=) or lower MUX_MAX_CONNECTIONS',
  };
}

/** `openFiles`: the open-files limit the connection limit is derived from (read from /proc/self/limits by default). */
export function loadConfig(env: Env, openFiles: number | null = readOpenFilesLimit()): Readonly<Config> {
  const nodeId = env.MUX_NODE_ID || randomBytes(6).toString('base64url');
  if (!NODE_ID_PATTERN.test(nodeId)) throw new ConfigError('MUX_NODE_ID', nodeId, '1 to 16 characters from [A-Za-z0-9_-]');
  const redisUrl = env.MUX_REDIS_URL || null;
  if (redisUrl !== null && !/^rediss?:\/\/[^\s/]+(\/\d{1,2})?$/.test(redisUrl)) {
    throw new ConfigError('MUX_REDIS_URL', redisUrl, 'redis://[user:password@]host:port[/db] (or rediss:// for TLS)');
  }
  const logLevel = (env.MUX_LOG_LEVEL || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('MUX_LOG_LEVEL', logLevel, `one of ${LOG_LEVELS.join(', ')}`);
  const pushSecret = env.MUX_PUSH_SECRET || null;
  const shards = parseInteger(env, 'MUX_SHARDS', Math.min(availableParallelism(), MAX_SHARDS), 1, MAX_SHARDS);
  const fastcgiKeepalive = parseInteger(env, 'MUX_FASTCGI_KEEPALIVE', 0, 0, 10_000);
  return Object.freeze({
    listen: parseListen(env, 'MUX_LISTEN', '0.0.0.0:8080'),
    pushListen: parseListen(env, 'MUX_PUSH_LISTEN', '127.0.0.1:8081'),
    metricsListen: parseListen(env, 'MUX_METRICS_LISTEN', '127.0.0.1:9464'),
    shards,
    fastcgi: parseBackend(env),
    scriptFilename: env.MUX_SCRIPT_FILENAME ?? '',
    documentRoot: env.MUX_DOCUMENT_ROOT ?? '',
    fastcgiKeepalive,
    fastcgiTimeoutMs: parseSecondsAsMs(env, 'MUX_FASTCGI_TIMEOUT', 30),
    pushSecret,
    holdTimeoutMs: parseSecondsAsMs(env, 'MUX_HOLD_TIMEOUT', 0),
    maxPartBytes: parseInteger(env, 'MUX_MAX_PART_BYTES', 1_048_576, 1, 1 << 30),
    maxWebSocketMessageBytes: parseInteger(env, 'MUX_WS_MAX_MESSAGE_BYTES', 65_536, 1, 1 << 30),
    maxBufferedBytes: parseInteger(env, 'MUX_MAX_BUFFERED_BYTES', 1_048_576, 1024, 1 << 30),
    maxRequestHeadBytes: parseInteger(env, 'MUX_MAX_REQUEST_HEAD_BYTES', 16_384, 1024, 1 << 20),
    http2MaxStreams: parseInteger(env, 'MUX_H2_MAX_STREAMS', 100, 1, 10_000),
    maxRequestBytes: parseInteger(env, 'MUX_MAX_REQUEST_BYTES', 8_388_608, 0, 1 << 30),
    maxPushBytes: parseInteger(env, 'MUX_MAX_PUSH_BYTES', 67_108_864, 1024, 2 ** 40),
    ...parseConnections(env, openFiles, shards, fastcgiKeepalive),
    ...parseRequestTimeouts(env),
    shutdownGraceMs: parseSecondsAsMs(env, 'MUX_SHUTDOWN_GRACE', 10),
    events: parseBoolean(env, 'MUX_EVENTS'),
    eventsConcurrency: parseInteger(env, 'MUX_EVENTS_CONCURRENCY', 8, 1, 1000),
    eventsQueue: parseInteger(env, 'MUX_EVENTS_QUEUE', 10_000, 0, 1_000_000),
    ...parseChannelHistory(env),
    nodeId,
    redisUrl,
    logLevel,
    logPretty: parseBoolean(env, 'MUX_LOG_PRETTY'),
    tls: parseTlsFiles(env),
  });
}
