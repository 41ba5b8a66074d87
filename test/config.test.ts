// MUX_* validation: defaults, accepted forms, and a clear exit 2 for every bad value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfig, describeConnectionLimit, parseOpenFilesLimit, FALLBACK_MAX_CONNECTIONS } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';

test('defaults follow the design', () => {
  const config = loadConfig({});
  assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8080 });
  assert.deepEqual(config.pushListen, { host: '127.0.0.1', port: 8081 });
  assert.deepEqual(config.metricsListen, { host: '127.0.0.1', port: 9464 });
  assert.ok(config.shards >= 1);
  assert.equal(config.fastcgi, null);
  assert.equal(config.pushSecret, null);
  assert.equal(config.holdTimeoutMs, 0);
  assert.equal(config.fastcgiKeepalive, 0);
  assert.equal(config.maxPartBytes, 1_048_576);
  assert.equal(config.maxWebSocketMessageBytes, 65_536);
  assert.equal(config.maxBufferedBytes, 1_048_576);
  assert.equal(config.events, false);
  assert.equal(config.headersTimeoutMs, 20_000);
  assert.equal(config.requestTimeoutMs, 120_000);
  assert.equal(config.logLevel, 'info');
  // History off; when it is on, an hour and 64 MiB at most, as Nchan's message timeout and memory.
  assert.equal(config.channelHistory, 0);
  assert.equal(config.channelHistoryMs, 3_600_000);
  assert.equal(config.channelHistoryBytes, 67_108_864);
  assert.match(config.nodeId, /^[A-Za-z0-9_-]{1,16}$/);
  assert.equal(config.tls, null, 'plain HTTP unless MUX_TLS_CERT and MUX_TLS_KEY are set');
  assert.ok(Object.isFrozen(config));
});

test('accepted forms', () => {
  const config = loadConfig({
    MUX_LISTEN: '[::1]:0', MUX_PUSH_LISTEN: '9000', MUX_FASTCGI: 'unix:/run/php/fpm.sock', MUX_SHARDS: '4',
    MUX_HOLD_TIMEOUT: '1.5', MUX_EVENTS: 'close', MUX_NODE_ID: 'node-a', MUX_LOG_LEVEL: 'debug', MUX_FASTCGI_KEEPALIVE: '4',
  });
  assert.deepEqual(config.listen, { host: '::1', port: 0 });
  assert.deepEqual(config.pushListen, { host: '0.0.0.0', port: 9000 });
  assert.deepEqual(config.fastcgi, { kind: 'unix', path: '/run/php/fpm.sock' });
  assert.equal(config.shards, 4);
  assert.equal(config.holdTimeoutMs, 1500);
  assert.equal(config.fastcgiKeepalive, 4);
  assert.equal(config.events, true);
  assert.equal(config.nodeId, 'node-a');
  assert.deepEqual(loadConfig({ MUX_FASTCGI: 'php:9000' }).fastcgi, { kind: 'tcp', host: 'php', port: 9000 });
  assert.equal(loadConfig({ MUX_REDIS_URL: 'redis://:secret@10.0.0.5:6379/2' }).redisUrl, 'redis://:secret@10.0.0.5:6379/2');
  assert.equal(loadConfig({}).redisUrl, null);
  // The files only: what they hold is read and checked by src/tls-pair.ts (test/tls.test.ts), and never logged.
  assert.deepEqual(loadConfig({ MUX_TLS_CERT: '/etc/muxgate/cert.pem', MUX_TLS_KEY: '/etc/muxgate/key.pem' }).tls,
    { certFile: '/etc/muxgate/cert.pem', keyFile: '/etc/muxgate/key.pem' });
  assert.equal(loadConfig({ MUX_REQUEST_TIMEOUT: '30' }).requestTimeoutMs, 30_000);
  assert.equal(loadConfig({ MUX_HEADERS_TIMEOUT: '300' }).requestTimeoutMs, 300_000, 'the default never undercuts the headers timeout');
  const history = loadConfig({ MUX_CHANNEL_HISTORY: '50', MUX_CHANNEL_HISTORY_SECONDS: '0', MUX_CHANNEL_HISTORY_BYTES: '1048576' });
  assert.deepEqual([history.channelHistory, history.channelHistoryMs, history.channelHistoryBytes], [50, 0, 1_048_576]);
  // An age limit set alone turns history on, the default one does not.
  assert.equal(loadConfig({ MUX_CHANNEL_HISTORY_SECONDS: '60' }).channelHistory, 1000);
  assert.equal(loadConfig({ MUX_CHANNEL_HISTORY_SECONDS: '0' }).channelHistory, 0);
});

test('MUX_MAX_CONNECTIONS unset: what the open-files limit leaves room for beside a reserve; set, its value, 0 no limit', () => {
  // (limit - 64 main thread - 32 refusals - shards × (16 + kept FastCGI connections)) × 3/4: a quarter for FastCGI requests.
  const derived = (env: Record<string, string>, openFiles: number | null) => {
    const config = loadConfig(env, openFiles);
    return [config.maxConnections, config.connectionBudget];
  };
  assert.deepEqual(derived({ MUX_SHARDS: '2' }, 20_000), [14_904, { openFiles: 20_000, connections: 14_904, isOverridden: false }]);
  assert.deepEqual(derived({ MUX_SHARDS: '1' }, 400), [216, { openFiles: 400, connections: 216, isOverridden: false }]);
  assert.deepEqual(derived({ MUX_SHARDS: '2', MUX_FASTCGI_KEEPALIVE: '8' }, 20_000)[0], 14_892);
  assert.deepEqual(derived({ MUX_SHARDS: '2', MUX_MAX_CONNECTIONS: '' }, 1024)[0], 672);
  assert.deepEqual(derived({ MUX_SHARDS: '8' }, 64)[0], 1);
  assert.deepEqual(derived({ MUX_SHARDS: '2' }, null), [FALLBACK_MAX_CONNECTIONS, { openFiles: null, connections: 1000, isOverridden: false }]);
  assert.deepEqual(derived({ MUX_SHARDS: '2', MUX_MAX_CONNECTIONS: '0' }, 20_000), [0, { openFiles: 20_000, connections: 14_904, isOverridden: true }]);
  assert.deepEqual(derived({ MUX_SHARDS: '2', MUX_MAX_CONNECTIONS: '50000' }, 20_000)[0], 50_000);
});

test('the open-files limit is the soft "Max open files" of /proc/self/limits', () => {
  const limits = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             63704                63704                processes ',
    'Max open files            1024                 524288               files     ',
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');
  assert.equal(parseOpenFilesLimit(limits), 1024);
  assert.equal(parseOpenFilesLimit(limits.replace('1024 ', 'unlimited')), null);
  assert.equal(parseOpenFilesLimit(''), null);
  // This process's own, as `ulimit -n` set it.
  const config = fileURLToPath(new URL('../src/config.ts', import.meta.url));
  const result = spawnSync('/bin/sh', ['-c', 'ulimit -n 321 && exec "$0" "$@"', process.execPath, '--input-type=module', '-e',
    `import { readOpenFilesLimit } from ${JSON.stringify(config)}; console.log(readOpenFilesLimit());`], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(result.stdout, '321\n', result.stderr);
});

test('the start line about the connection limit warns when MUX_MAX_CONNECTIONS lets the descriptors run out', () => {
  const described = (env: Record<string, string>, openFiles: number | null) => describeConnectionLimit(loadConfig({ MUX_SHARDS: '2', ...env }, openFiles));
  const beside = 'beside FastCGI, Redis, the listeners and pushers';
  const advice = 'beyond, file descriptors run out and /healthz, the push API and the backend become unreachable; raise the ' +
    'open-files limit (ulimit -n, systemd LimitNOFILE=) or lower MUX_MAX_CONNECTIONS';
  assert.deepEqual(described({}, 20_000), { isWarning: false, message: 'at most 14904 client connections: MUX_MAX_CONNECTIONS is ' +
    `unset, and the open-files limit of 20000 leaves room for that many ${beside}` });
  assert.deepEqual(described({}, null), { isWarning: false, message: 'at most 1000 client connections: MUX_MAX_CONNECTIONS is unset, ' +
    'and the open-files limit cannot be read here' });
  assert.deepEqual(described({ MUX_MAX_CONNECTIONS: '14904' }, 20_000), { isWarning: false, message: 'at most 14904 client connections (MUX_MAX_CONNECTIONS=14904)' });
  assert.deepEqual(described({ MUX_MAX_CONNECTIONS: '0' }, null), { isWarning: false, message: 'no limit on client connections (MUX_MAX_CONNECTIONS=0)' });
  assert.deepEqual(described({ MUX_MAX_CONNECTIONS: '14905' }, 20_000), { isWarning: true, message: 'MUX_MAX_CONNECTIONS=14905 is more than ' +
    `the 14904 client connections the open-files limit of 20000 leaves room for ${beside}: ${advice}` });
  assert.deepEqual(described({ MUX_MAX_CONNECTIONS: '0' }, 20_000), { isWarning: true, message: 'MUX_MAX_CONNECTIONS=0 sets no limit, but ' +
    `the open-files limit of 20000 leaves room for 14904 client connections ${beside}: ${advice}` });
});

const BAD_VALUES: Array<[string, string, RegExp]> = [
  ['MUX_LISTEN', 'localhost', /host:port/],
  ['MUX_LISTEN', '1.2.3.4:70000', /0-65535/],
  ['MUX_SHARDS', '0', /integer from 1 to 1024/],
  ['MUX_SHARDS', 'two', /integer from 1 to 1024/],
  ['MUX_FASTCGI', 'unix:relative.sock', /absolute/],
  ['MUX_FASTCGI', 'php', /host:port/],
  ['MUX_HOLD_TIMEOUT', '-1', /seconds/],
  ['MUX_FASTCGI_KEEPALIVE', '-1', /integer from 0 to 10000/],
  ['MUX_MAX_CONNECTIONS', '-5', /integer from 0 to 10000000/],
  ['MUX_MAX_PART_BYTES', '1e6', /integer/],
  ['MUX_WS_MAX_MESSAGE_BYTES', '0', /integer from 1/],
  ['MUX_MAX_BUFFERED_BYTES', '10', /integer from 1024/],
  ['MUX_EVENTS', 'maybe', /on or off/],
  ['MUX_NODE_ID', 'has.dot', /\[A-Za-z0-9_-\]/],
  ['MUX_LOG_LEVEL', 'loud', /one of fatal/],
  ['MUX_REDIS_URL', '127.0.0.1:6379', /redis:\/\//],
  ['MUX_REQUEST_TIMEOUT', '5', /at least MUX_HEADERS_TIMEOUT \(20\)/],
  ['MUX_CHANNEL_HISTORY_SECONDS', 'forever', /seconds/],
  ['MUX_CHANNEL_HISTORY_BYTES', '100', /integer from 1024/],
  ['MUX_CHANNEL_HISTORY_BYTES', '1e9', /integer from 1024/],
];

test('bad values throw a ConfigError naming the variable, the value and what is expected', () => {
  for (const [name, value, expected] of BAD_VALUES) {
    assert.throws(() => loadConfig({ [name]: value }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, 'MUX_ERR_CONFIG');
      assert.ok(error.message.startsWith(`${name}=${JSON.stringify(value)} is invalid: expected `), error.message);
      assert.match(error.message, expected);
      return true;
    }, `${name}=${value}`);
  }
});

test('the process exits with code 2 and the message on a bad value', () => {
  const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const result = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, MUX_SHARDS: 'many' }, encoding: 'utf8', timeout: 10_000 });
  assert.equal(result.status, 2);
  assert.equal(result.stderr, 'muxgate: MUX_SHARDS="many" is invalid: expected an integer from 1 to 1024\n');
});
