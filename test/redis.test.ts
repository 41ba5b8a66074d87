// Two muxgate nodes and one real Redis: parts reach tokens and channels on the other node, Redis going
// away leaves local delivery alone, and nothing is reported delivered that was not.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { PHP_ROOT, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { startRedis, type RedisServer } from './helpers/redis.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import { joinRoom, publishInOrder, writersOnEveryShard } from './helpers/rooms.ts';
import { waitUntil } from './helpers/wait.ts';

let fpm: PhpFpm;
let redis: RedisServer;
let nodeA: Muxgate;
let nodeB: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  redis = await startRedis();
  const env = (nodeId: string) => ({
    ...phpBackend(fpm), MUX_SHARDS: '2', MUX_REDIS_URL: redis.url, MUX_NODE_ID: nodeId,
    MUX_CHANNEL_HISTORY: '4',
  });
  [nodeA, nodeB] = await Promise.all([startMuxgate(env('node-a')), startMuxgate(env('node-b'))]);
  for (const node of [nodeA, nodeB]) await waitForMetric(node.metricsUrl, 'muxgate_redis_up', (n) => n === 2, 10_000);
});

// A `before` that failed leaves some of them unset: the others must still stop, or their processes keep the file running.
after(async () => {
  await Promise.all([nodeA?.stop(), nodeB?.stop()]);
  await redis?.stop();
  await fpm?.stop();
});

/** Redis subscribers of a channel: each node subscribes once, while it has a subscriber. */
async function waitForNodesFollowing(channel: string, count: number): Promise<void> {
  let out = '';
  const following = () => {
    out = execFileSync('redis-cli', ['-p', String(redis.port), 'PUBSUB', 'NUMSUB', `muxgate:chan:${channel}`], { encoding: 'utf8' });
    return Number(out.trim().split('\n')[1]);
  };
  await waitUntil(() => following() === count, 5000, () => `${count} nodes following ${channel}: ${out}`);
}

test('a push to node A reaches a token held on node B, reported as forwarded', async () => {
  const onB = await openStream(nodeB.url, 'hold=stream&silent=1&tag=b1');
  assert.match(onB.token, /^node-b\./);
  const result = await push(nodeA.pushUrl, [{ tokens: [onB.token], body: 'across nodes' }]);
  assert.deepEqual(result, { parts: 1, deliveries: 0, gone: [], forwarded: 1 });
  await onB.client.waitFor((t) => decodeChunked(t).body === 'across nodes');
  assert.ok(((await metricValue(nodeA.metricsUrl, 'muxgate_redis_parts_total{direction="sent"}')) ?? 0) >= 1);
  assert.ok(((await metricValue(nodeB.metricsUrl, 'muxgate_redis_parts_total{direction="received"}')) ?? 0) >= 1);
  assert.ok(((await metricValue(nodeB.metricsUrl, 'muxgate_redis_latency_seconds_count')) ?? 0) >= 1);
  assert.ok(((await metricValue(nodeA.metricsUrl, 'muxgate_parts_total{source="push",route="node"}')) ?? 0) >= 1);
  onB.client.close();
});

test('a channel part reaches the subscribers on both nodes, exactly once each', async () => {
  const readers = [
    await openStream(nodeA.url, 'hold=stream&silent=1&channel=news'), await openStream(nodeA.url, 'hold=stream&silent=1&channel=news'),
    await openStream(nodeB.url, 'hold=stream&silent=1&channel=news'), await openStream(nodeB.url, 'hold=stream&silent=1&channel=news'),
  ];
  await waitForNodesFollowing('news', 2);
  const fromA = await push(nodeA.pushUrl, [{ channels: ['news'], body: '<from A>' }]);
  assert.deepEqual(fromA.channels, { news: 2 }, 'the answer counts this node\'s subscribers');
  await push(nodeB.pushUrl, [{ channels: ['news'], body: '<from B>' }]);
  for (const { client } of readers) {
    await client.waitFor((t) => decodeChunked(t).body.length >= '<from A><from B>'.length);
    assert.equal(decodeChunked(client.text).body, '<from A><from B>');
  }
  for (const { client } of readers.slice(2)) client.close();
  await waitForNodesFollowing('news', 1);
  for (const { client } of readers.slice(0, 2)) client.close();
});

test('Redis killed and restarted: local delivery goes on, remote parts are undeliverable then resume', async () => {
  const onA = await openStream(nodeA.url, 'hold=stream&silent=1&tag=a-local');
  const onB = await openStream(nodeB.url, 'hold=stream&silent=1&tag=b-remote');
  const followerA = await openStream(nodeA.url, 'hold=stream&silent=1&channel=alerts');
  const followerB = await openStream(nodeB.url, 'hold=stream&silent=1&channel=alerts');
  await waitForNodesFollowing('alerts', 2);

  await redis.kill();
  await waitForMetric(nodeA.metricsUrl, 'muxgate_redis_up', (n) => n === 0, 5000);
  const during = await push(nodeA.pushUrl, [{ tokens: [onA.token, onB.token], body: '[during]' }]);
  assert.deepEqual(during, { parts: 1, deliveries: 1, gone: [onB.token] }, 'nothing claimed for node B');
  const channelDuring = await push(nodeA.pushUrl, [{ channels: ['alerts'], body: '[alert during]' }]);
  assert.deepEqual(channelDuring.channels, { alerts: 1 });
  await onA.client.waitFor((t) => decodeChunked(t).body === '[during]');
  await followerA.client.waitFor((t) => decodeChunked(t).body === '[alert during]');
  await nodeA.waitForLog((l) => l.msg === 'Redis unreachable: parts for other nodes are undeliverable until it is back');
  assert.equal((await fetch(nodeA.metricsUrl.replace('/metrics', '/readyz'))).status, 503);

  await redis.restart();
  for (const node of [nodeA, nodeB]) await waitForMetric(node.metricsUrl, 'muxgate_redis_up', (n) => n === 2, 15_000);
  await waitForNodesFollowing('alerts', 2);
  assert.equal((await fetch(nodeA.metricsUrl.replace('/metrics', '/readyz'))).status, 200);
  const after = await push(nodeA.pushUrl, [{ tokens: [onB.token], body: '[after]' }]);
  assert.equal(after.forwarded, 1);
  await onB.client.waitFor((t) => decodeChunked(t).body === '[after]');
  await push(nodeA.pushUrl, [{ channels: ['alerts'], body: '[alert after]' }]);
  await followerB.client.waitFor((t) => decodeChunked(t).body === '[alert after]');
  // Node A writes its own channel parts as they come back through its subscription: wait for them too.
  await followerA.client.waitFor((t) => decodeChunked(t).body.length >= '[alert during][alert after]'.length);
  assert.equal(decodeChunked(followerA.client.text).body, '[alert during][alert after]');
  for (const s of [onA, onB, followerA, followerB]) s.client.close();
});

/** The data lines of the SSE events in a chunked stream, with their ids. */
function events(client: RawHttp): Array<{ id: number; data: string }> {
  return [...decodeChunked(client.text).body.matchAll(/id: (\d+)\n(?:event: \w+\n)?data: ([^\n]*)\n\n/g)].map((m) => ({ id: Number(m[1]), data: m[2] }));
}

async function say(node: Muxgate, room: string, text: string): Promise<void> {
  assert.equal(await (await fetch(`${node.url}/room.php?room=${room}`, { method: 'POST', body: text })).text(), 'sent');
}

test('a stream held on node A resumes on node B from the shared history: no gap, no duplicate', async () => {
  const onA = (await joinRoom(nodeA.url, 'xnode')).client;
  await waitForNodesFollowing('room-xnode', 1);
  await say(nodeA, 'xnode', 'one');
  await say(nodeB, 'xnode', 'two');
  await onA.waitFor(() => events(onA).length === 2);
  assert.deepEqual(events(onA).map((e) => e.data), ['one', 'two']);
  const lastId = events(onA)[1].id;
  onA.close();
  await say(nodeA, 'xnode', 'three');
  await say(nodeB, 'xnode', 'four');
  const onB = (await joinRoom(nodeB.url, 'xnode', String(lastId))).client;
  await onB.waitFor(() => events(onB).length >= 2, 5000, 'the missed parts');
  await say(nodeA, 'xnode', 'five');
  await onB.waitFor(() => events(onB).length >= 3, 5000, 'the live part');
  assert.deepEqual(events(onB).map((e) => e.data), ['three', 'four', 'five']);
  const ids = events(onB).map((e) => e.id);
  assert.ok(ids[0] > lastId && ids.every((id, i) => i === 0 || id > ids[i - 1]), `ids ${ids}`);

  // Beyond the 4 parts kept, the stream is told.
  onB.close();
  for (const text of ['a', 'b', 'c', 'd', 'e']) await say(nodeA, 'xnode', text);
  const late = (await joinRoom(nodeB.url, 'xnode', String(lastId))).client;
  await late.waitFor((t) => decodeChunked(t).body.includes('event: muxgate-gap') && events(late).length >= 4, 5000, 'the gap notice');
  assert.deepEqual(events(late).map((e) => e.data), ['b', 'c', 'd', 'e']);
  late.close();
});

test('order: 200 messages published one after another through every shard of two nodes reach every reader in the order they were answered, resumes on the other node included', async () => {
  const env = (nodeId: string) => ({
    ...phpBackend(fpm), MUX_SHARDS: '3', MUX_REDIS_URL: redis.url, MUX_NODE_ID: nodeId,
    MUX_CHANNEL_HISTORY: '1000', MUX_LOG_LEVEL: 'info',
  });
  const nodes = await Promise.all([startMuxgate(env('order-a')), startMuxgate(env('order-b'))]);
  const writers = await Promise.all(nodes.map((node) => writersOnEveryShard(node.url, 3)));
  try {
    for (const node of nodes) await waitForMetric(node.metricsUrl, 'muxgate_redis_up', (n) => n === 3, 10_000);
    // Through every shard of both nodes; a message through shard 0 (which has channel parts numbered by Redis) right
    // after one through another shard of the same node is the likeliest to overtake it.
    const route: Array<[number, number]> = [[0, 1], [0, 0], [1, 1], [1, 0], [0, 2], [0, 0], [1, 2], [1, 0]];
    await publishInOrder('order', nodes.map((node, i) => ({ url: node.url, writers: writers[i].byShard })), route, 200, 20);
  } finally {
    for (const connection of writers.flatMap((w) => w.all)) connection.close();
    await Promise.all(nodes.map((node) => node.stop()));
  }
});

function redisCli(...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'utf8' }).trim();
}

test('history in Redis ages: a channel\'s history expires after its last part, and a stream resuming it is told what it lost', async () => {
  // Nodes sharing a Redis share the age limit: this one has a database of its own (channel names are unique here).
  await say(nodeA, 'aging', 'kept an hour');
  const ttl = Number(redisCli('PTTL', 'muxgate:history:room-aging'));
  assert.ok(ttl > 3_500_000 && ttl <= 3_600_000, `the default age limit, an hour: PTTL ${ttl}`);

  const node = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '2', MUX_REDIS_URL: `${redis.url}/1`, MUX_NODE_ID: 'brief',
    MUX_CHANNEL_HISTORY: '10', MUX_CHANNEL_HISTORY_SECONDS: '1', MUX_LOG_LEVEL: 'info',
  });
  try {
    await waitForMetric(node.metricsUrl, 'muxgate_redis_up', (n) => n === 2, 10_000);
    const reader = (await joinRoom(node.url, 'brief')).client;
    await say(node, 'brief', 'seen');
    await reader.waitFor(() => events(reader).length === 1);
    const seenId = events(reader)[0].id;
    reader.close();
    await say(node, 'brief', 'missed');
    // Nobody publishes to it: its history, what it forgot and the checkpoints vanish from Redis.
    const keys = ['muxgate:history:room-brief', 'muxgate:forgotten:room-brief', 'muxgate:channel-checkpoints'];
    await waitUntil(() => Number(redisCli('-n', '1', 'EXISTS', ...keys)) === 0, 10_000,
      () => `the keys to expire (still in Redis: ${keys.filter((key) => redisCli('-n', '1', 'EXISTS', key) === '1')})`, 50);
    const gapOnly = (await joinRoom(node.url, 'brief', String(seenId))).client;
    await gapOnly.waitFor((t) => decodeChunked(t).body.includes('event: muxgate-gap'), 5000, 'the gap notice');
    assert.equal(decodeChunked(gapOnly.text).body, `event: muxgate-gap\ndata: {"since":${seenId}}\n\n`);
    gapOnly.close();
    // A new history for the channel still knows that what came before it may be lost.
    await say(node, 'brief', 'anew');
    const resumed = (await joinRoom(node.url, 'brief', String(seenId))).client;
    await resumed.waitFor(() => events(resumed).length === 1, 5000, 'the part since');
    assert.match(decodeChunked(resumed.text).body, /^event: muxgate-gap\n/);
    assert.deepEqual(events(resumed).map((e) => e.data), ['anew']);
    // Resuming from the last part, nothing is missed.
    const current = (await joinRoom(node.url, 'brief', String(events(resumed)[0].id))).client;
    await say(node, 'brief', 'live');
    await current.waitFor(() => events(current).length === 1, 5000, 'the live part');
    assert.doesNotMatch(decodeChunked(current.text).body, /muxgate-gap/);
    for (const client of [resumed, current]) client.close();
  } finally {
    await node.stop();
  }
});
