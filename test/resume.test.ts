// Resume in-process: a stream subscribing with `since` gets what it missed, then live parts, each once and in order,
// whether the replay comes from its own shard's history or over the sequencer's port, and whatever arrives meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel } from 'node:worker_threads';
import { Delivery } from '../workers/delivery.ts';
import { Peers } from '../workers/peers.ts';
import { Resume } from '../workers/resume.ts';
import { createShardMetrics } from '../workers/metrics.ts';
import type { PeerMessage, ReplayRequest } from '../workers/peer-codec.ts';
import { closing, StreamServer, TestNode, heldStreams, part, silentLog, silentWarnings } from './helpers/shard-parts.ts';

const live = (id: number) => new Delivery(Buffer.from(`<${id}>`), false, Date.now(), id, false);
const logged = (id: number) => ({ id, body: Buffer.from(`<${id}>`), isClose: false, isBinary: false, at: Date.now() });

/** Shard 1's resume, with the test as the sequencer at the other end of the port. */
async function resumeOnShard1() {
  const metrics = createShardMetrics(1);
  const streams = heldStreams(metrics);
  const server = await StreamServer.start(streams);
  const peers = new Peers(2, metrics);
  const resume = new Resume({
    shard: 1, channelLog: null, redis: null, historyLength: 100, historyAgeMs: 0, streams, peers, metrics, log: silentLog, warnings: silentWarnings,
  });
  const { port1, port2: sequencer } = new MessageChannel();
  peers.connect(0, port1, (message: PeerMessage) => {
    if (message.type === 'replayed') resume.receive(message);
  });
  const requests: ReplayRequest[] = [];
  let onRequest = () => {};
  sequencer.on('message', (message: ReplayRequest) => {
    requests.push(message);
    onRequest();
  });
  /** The next replay request the sequencer gets. */
  const nextRequest = () => new Promise<ReplayRequest>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no replay request within 2 s')), 2000);
    onRequest = () => {
      clearTimeout(timer);
      resolve(requests.shift()!);
    };
    if (requests.length > 0) onRequest();
  });
  return {
    metrics, streams, server, resume, sequencer, nextRequest,
    close() {
      sequencer.close();
      server.close();
      streams.stop();
    },
  };
}

test('a live channel part that arrives while the replay is on its way is written after it, once, even when nothing was missed',
  () => closing(resumeOnShard1(), async (shard) => {
    // Nothing missed: only the part held back (the replay was read before it was numbered).
    const alone = await shard.server.open('t1', { channels: [{ name: 'room', since: 10 }] });
    shard.resume.resume(alone.stream);
    const first = await shard.nextRequest();
    assert.deepEqual({ channels: first.channels, since: first.since, from: first.from }, { channels: ['room'], since: 10, from: 1 });
    shard.streams.write(alone.stream, live(11));
    shard.sequencer.postMessage({ type: 'replayed', id: first.id, parts: [], isComplete: true });
    assert.equal(await alone.waitForBody('<11>'), '<11>');

    // Missed parts, and live ones held back that the replay has too: each once, in id order, then live ones.
    const both = await shard.server.open('t2', { channels: [{ name: 'room', since: 10 }] });
    shard.resume.resume(both.stream);
    const second = await shard.nextRequest();
    shard.streams.write(both.stream, live(12));
    shard.streams.write(both.stream, live(13));
    shard.sequencer.postMessage({ type: 'replayed', id: second.id, parts: [logged(11), logged(12)], isComplete: true });
    await both.waitForBody('<11><12><13>');
    shard.streams.write(both.stream, live(13));
    shard.streams.write(both.stream, live(14));
    assert.equal(await both.waitForBody('<11><12><13><14>'), '<11><12><13><14>');
  }));

test('a stream resuming from beyond the history is told first (an event stream by a muxgate-gap event), then gets what is left',
  () => closing(resumeOnShard1(), async (shard) => {
    const sse = await shard.server.open('t1', { isEventStream: true, channels: [{ name: 'room', since: 3 }, { name: 'news', since: 7 }] });
    shard.resume.resume(sse.stream);
    // The lowest since of the channels: what any of them missed.
    const request = await shard.nextRequest();
    assert.deepEqual({ channels: request.channels, since: request.since }, { channels: ['room', 'news'], since: 3 });
    shard.sequencer.postMessage({ type: 'replayed', id: request.id, parts: [logged(9)], isComplete: false });
    const expected = 'event: muxgate-gap\ndata: {"since":3}\n\nid: 9\n<9>';
    assert.equal(await sse.waitForBody(expected), expected);
    const replays = (await shard.metrics.registry.getSingleMetric('muxgate_channel_history_replays_total')!.get()).values;
    assert.deepEqual(replays.map((value) => [value.labels.result, value.value]), [['hit', 0], ['miss', 1]]);
  }));

test('over two shards: a stream resuming on shard 1 gets what shard 0\'s history holds, then live parts, without gap or duplicate',
  () => closing(TestNode.start(2), async (node) => {
    const [sequencer, other] = node.shards;
    for (let i = 1; i <= 3; i++) sequencer.router.routePart(part(`<${i}>`, { channels: ['room'] }), 'push', null);
    const reader = await other.server.open(other.mint(), { channels: [{ name: 'room', since: 1 }] });
    other.router.resume(reader.stream);
    // Published while the request crosses: numbered after the replay was asked for, written once either way.
    other.router.routePart(part('<4>', { channels: ['room'] }), 'push', null);
    assert.equal(await reader.waitForBody('<2><3><4>'), '<2><3><4>');
  }));

test('the sequencer gone while a stream waits for its replay: the stream is told at once that it may have missed parts',
  () => closing(TestNode.start(3), async (node) => {
    const reader = await node.shards[1].server.open(node.shards[1].mint(), { isEventStream: true, channels: [{ name: 'room', since: 5 }] });
    node.shards[1].router.resume(reader.stream);
    node.kill(0);
    const gap = 'event: muxgate-gap\ndata: {"since":5}\n\n';
    assert.equal(await reader.waitForBody(gap), gap);
  }));

test('another shard gone while a stream waits for its replay: the replay still comes',
  () => closing(TestNode.start(3), async (node) => {
    const [sequencer, reading] = node.shards;
    sequencer.router.routePart(part('<1>', { channels: ['room'] }), 'push', null);
    const reader = await reading.server.open(reading.mint(), { channels: [{ name: 'room', since: 0 }] });
    reading.router.resume(reader.stream);
    node.kill(2);
    assert.equal(await reader.waitForBody('<1>'), '<1>');
    // Live parts are no longer held back.
    sequencer.router.routePart(part('<2>', { channels: ['room'] }), 'push', null);
    assert.equal(await reader.waitForBody('<1><2>'), '<1><2>');
  }));

test('a replay keeps each part\'s binary flag, from the sequencer\'s own history and over its port, and so do live parts after it',
  (t) => closing(TestNode.start(2), async (node) => {
    const seen = node.recordBinaryFlags(t);
    const [sequencer] = node.shards;
    sequencer.router.routePart(part('<1>', { channels: ['room'], isBinary: true }), 'push', null);
    sequencer.router.routePart(part('<2>', { channels: ['room'] }), 'push', null);
    const readers = [];
    for (const shard of node.shards) {
      const reader = await shard.server.open(shard.mint(), { channels: [{ name: 'room', since: 0 }] });
      shard.router.resume(reader.stream);
      readers.push(reader);
    }
    sequencer.router.routePart(part('<3>', { channels: ['room'], isBinary: true }), 'push', null);
    for (const [shard, reader] of readers.entries()) {
      assert.equal(await reader.waitForBody('<1><2><3>'), '<1><2><3>');
      assert.deepEqual(Object.fromEntries(seen[shard]), { '<1>': true, '<2>': false, '<3>': true }, `shard ${shard}`);
    }
  }));
