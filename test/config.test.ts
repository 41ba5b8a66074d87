// MUX_* validation: defaults, accepted forms, and a clear exit 2 for every bad value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.ts';
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
  assert.equal(config.maxBufferedBytes, 1_048_576);
  assert.equal(config.events, false);
  assert.equal(config.logLevel, 'info');
  // History off; when it is on, an hour and 64 MiB at most, as Nchan's message timeout and memory.
  assert.equal(config.channelHistory, 0);
  assert.equal(config.channelHistoryMs, 3_600_000);
  assert.equal(config.channelHistoryBytes, 67_108_864);
  assert.match(config.nodeId, /^[A-Za-z0-9_-]{1,16}$/);
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
  const history = loadConfig({ MUX_CHANNEL_HISTORY: '50', MUX_CHANNEL_HISTORY_SECONDS: '0', MUX_CHANNEL_HISTORY_BYTES: '1048576' });
  assert.deepEqual([history.channelHistory, history.channelHistoryMs, history.channelHistoryBytes], [50, 0, 1_048_576]);
  // An age limit set alone turns history on, the default one does not.
  assert.equal(loadConfig({ MUX_CHANNEL_HISTORY_SECONDS: '60' }).channelHistory, 1000);
  assert.equal(loadConfig({ MUX_CHANNEL_HISTORY_SECONDS: '0' }).channelHistory, 0);
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
  ['MUX_MAX_PART_BYTES', '1e6', /integer/],
  ['MUX_MAX_BUFFERED_BYTES', '10', /integer from 1024/],
  ['MUX_EVENTS', 'maybe', /on or off/],
  ['MUX_NODE_ID', 'has.dot', /\[A-Za-z0-9_-\]/],
  ['MUX_LOG_LEVEL', 'loud', /one of fatal/],
  ['MUX_REDIS_URL', '127.0.0.1:6379', /redis:\/\//],
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
