// The routers of a node's shards in-process, over real MessageChannels: token parts to the shard that holds the
// token, channel parts numbered by the sequencer and written on every shard, exact receipts, batches per turn, and
// what a shard that dies takes with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessagePort } from 'node:worker_threads';
import { mintToken } from '../src/protocol/token.ts';
import type { PartBatch, PeerMessage } from '../workers/peer-codec.ts';
import { closing, TestNode, channels, part, type ShardMetrics } from './helpers/shard-parts.ts';

async function metric(metrics: ShardMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await metrics.registry.getSingleMetric(name)!.get()).values;
  return values.filter((value) => Object.entries(labels).every(([key, label]) => value.labels[key] === label))
    .reduce((sum, value) => sum + value.value, 0);
}

test('a push to tokens of this shard, another shard, another node and none: each live stream written once, the receipt exact',
  () => closing(TestNode.start(2), async (node) => {
    const [here, there] = node.shards;
    const mine = await here.server.open(here.mint());
    const theirs = await there.server.open(there.mint());
    const deadHere = here.mint();
    const deadThere = there.mint();
    const otherNode = mintToken('n2', 0);
    const receipt = here.router.createReceipt();
    const tokens = [mine.stream.token, theirs.stream.token, deadHere, theirs.stream.token, deadThere, otherNode, 'not-a-token'];
    here.router.routePart(part('<hello>', { tokens }), 'push', receipt);
    await receipt.settled(2000);
    assert.equal(receipt.pending, 0);
    // A token named twice gets the part once; every token not live is gone, whichever shard or node it names.
    assert.equal(receipt.deliveries, 2);
    assert.deepEqual(new Set(receipt.gone), new Set([deadHere, deadThere, otherNode, 'not-a-token']));
    assert.equal(await mine.waitForBody('<hello>'), '<hello>');
    assert.equal(await theirs.waitForBody('<hello>'), '<hello>');
    assert.equal(await metric(here.metrics, 'muxgate_undeliverable_total', { reason: 'other_node' }), 1);
    assert.equal(await metric(here.metrics, 'muxgate_undeliverable_total', { reason: 'invalid_token' }), 1);
    assert.equal(await metric(there.metrics, 'muxgate_undeliverable_total', { reason: 'gone' }), 1);
    assert.equal(await metric(here.metrics, 'muxgate_parts_total', { route: 'remote' }), 1);
    here.router.releaseReceipt(receipt);
  }));

test('parts for another shard routed within one turn leave in one batch, and arrive in the order they were sent',
  () => closing(TestNode.start(2), async (node) => {
    const [here, there] = node.shards;
    const reader = await there.server.open(there.mint());
    const receipt = here.router.createReceipt();
    let expected = '';
    for (let i = 0; i < 50; i++) {
      here.router.routePart(part(`<${i}>`, { tokens: [reader.stream.token] }), 'push', receipt);
      expected += `<${i}>`;
    }
    await receipt.settled(2000);
    assert.equal(receipt.deliveries, 50);
    assert.equal(await reader.waitForBody(expected), expected);
    type Sample = { metricName?: string; value: number };
    const batches = (await here.metrics.registry.getSingleMetric('muxgate_router_batch_parts')!.get()).values as Sample[];
    assert.equal(batches.find((value) => value.metricName === 'muxgate_router_batch_parts_count')?.value, 1);
    assert.equal(batches.find((value) => value.metricName === 'muxgate_router_batch_parts_sum')?.value, 50);
  }));

test('a channel part from any shard is numbered by the sequencer, written on every shard with its id, counted per channel',
  () => closing(TestNode.start(3), async (node) => {
    const readers = [];
    for (const shard of node.shards) readers.push(await shard.server.open(shard.mint(), { isEventStream: true, channels: channels('room') }));
    // A stream reached both through the channel and by its token gets the part once.
    const tokenToo = readers[1].stream.token;
    for (const [i, from] of [2, 0, 1].entries()) {
      const receipt = node.shards[from].router.createReceipt();
      node.shards[from].router.routePart(part(`<${i}>`, { channels: ['room'], tokens: i === 0 ? [tokenToo] : [] }), 'push', receipt);
      await receipt.settled(2000);
      const { deliveries, channels: perChannel, gone } = receipt;
      assert.deepEqual({ deliveries, perChannel, gone }, { deliveries: 3, perChannel: { room: 3 }, gone: [] });
      node.shards[from].router.releaseReceipt(receipt);
    }
    const expected = 'id: 1\n<0>id: 2\n<1>id: 3\n<2>';
    for (const reader of readers) assert.equal(await reader.waitForBody(expected), expected);
  }));

test('acknowledgements ride with the parts going to the same shard: a channel part pushed on shard 1 of 2 takes two messages, not three',
  (t) => closing(TestNode.start(2), async (node) => {
    const readers = [];
    for (const shard of node.shards) readers.push(await shard.server.open(shard.mint(), { channels: channels('room') }));
    const [, pushedOn] = node.shards;
    const posted = t.mock.method(MessagePort.prototype, 'postMessage');
    const receipt = pushedOn.router.createReceipt();
    pushedOn.router.routePart(part('<news>', { channels: ['room'] }), 'push', receipt);
    await receipt.settled(2000);
    assert.deepEqual({ deliveries: receipt.deliveries, perChannel: receipt.channels }, { deliveries: 2, perChannel: { room: 2 } });
    // To the sequencer; back with the numbered part and the sequencer's own acknowledgement in one message.
    assert.deepEqual(posted.mock.calls.map((call) => (call.arguments[0] as PeerMessage).type), ['parts', 'parts']);
    assert.equal((posted.mock.calls[1].arguments[0] as PartBatch).acks?.length, 1);
    for (const reader of readers) assert.equal(await reader.waitForBody('<news>'), '<news>');
    pushedOn.router.releaseReceipt(receipt);
  }));

test('a shard gone with parts queued for it: they are undeliverable, and the receipt does not wait for them',
  () => closing(TestNode.start(3), async (node) => {
    const [sequencer, here, dying] = node.shards;
    const doomed = await dying.server.open(dying.mint());
    const receipt = here.router.createReceipt();
    // Queued for the next turn; the shard dies before it.
    here.router.routePart(part('<lost>', { tokens: [doomed.stream.token] }), 'push', receipt);
    node.kill(2);
    assert.equal(receipt.pending, 0);
    assert.deepEqual(receipt.gone, [doomed.stream.token]);
    assert.equal(await metric(here.metrics, 'muxgate_undeliverable_total', { reason: 'shard_down' }), 1);

    // A channel part on its way to a sequencer that dies was to be acknowledged by every shard: none is waited for.
    const channelReceipt = here.router.createReceipt();
    here.router.routePart(part('<also lost>', { channels: ['room'] }), 'push', channelReceipt);
    node.kill(0);
    assert.equal(channelReceipt.pending, 0);
    // Later parts for the dead shards are undeliverable at once.
    const late = here.router.createReceipt();
    here.router.routePart(part('<late>', { tokens: [sequencer.mint()], channels: [] }), 'push', late);
    here.router.routePart(part('<late>', { channels: ['room'] }), 'push', late);
    assert.equal(late.pending, 0);
    assert.equal(late.gone.length, 1);
  }));

test('Multiplex-Binary reaches the Delivery on every path: a token part here and on another shard, a channel part through the sequencer',
  (t) => closing(TestNode.start(3), async (node) => {
    const seen = node.recordBinaryFlags(t);
    const readers = [];
    for (const shard of node.shards) readers.push(await shard.server.open(shard.mint(), { channels: channels('room') }));
    const [, here, there] = node.shards;
    const tokens = [readers[1].stream.token, readers[2].stream.token];
    const tokenReceipt = here.router.createReceipt();
    here.router.routePart(part('<bin>', { tokens, isBinary: true }), 'push', tokenReceipt);
    here.router.routePart(part('<text>', { tokens }), 'push', tokenReceipt);
    await tokenReceipt.settled(2000);
    assert.equal(tokenReceipt.deliveries, 4);
    here.router.releaseReceipt(tokenReceipt);
    // Token and channel parts take different paths: the channel part goes once the token parts are written.
    const channelReceipt = there.router.createReceipt();
    there.router.routePart(part('<room-bin>', { channels: ['room'], isBinary: true, isClose: true }), 'push', channelReceipt);
    await channelReceipt.settled(2000);
    assert.equal(channelReceipt.deliveries, 3);
    there.router.releaseReceipt(channelReceipt);
    assert.equal(await readers[0].waitForBody('<room-bin>'), '<room-bin>');
    for (const reader of readers.slice(1)) assert.equal(await reader.waitForBody('<bin><text><room-bin>'), '<bin><text><room-bin>');
    assert.deepEqual(Object.fromEntries(seen[0]), { '<room-bin>': true });
    for (const shard of [1, 2]) assert.deepEqual(Object.fromEntries(seen[shard]), { '<bin>': true, '<text>': false, '<room-bin>': true }, `shard ${shard}`);
  }));
