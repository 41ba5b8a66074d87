// Held streams over real sockets: each part written once per stream, in channel order; hold modes and Multiplex-Close
// end streams; a stream that ends leaves the token and channel indexes.
import { test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import type { EndReason, HeldStream } from '../workers/held-stream.ts';
import { DELIVERED, DUPLICATE, NOT_LIVE } from '../workers/held-streams.ts';
import { Delivery } from '../workers/delivery.ts';
import { createShardMetrics } from '../workers/metrics.ts';
import { closing, StreamServer, channels, heldStreams, type StreamClient } from './helpers/shard-parts.ts';

const channelPart = (id: number, isClose = false) => new Delivery(Buffer.from(`<${id}>`), isClose, Date.now(), id, false);
const tokenPart = (body: string, isClose = false) => new Delivery(Buffer.from(body), isClose, Date.now(), 0, false);

async function setup(options: { flushSliceMs?: number; backlogFlushIntervalMs?: number } = {}) {
  const metrics = createShardMetrics(0);
  const ended: Array<[HeldStream, EndReason]> = [];
  let onEnd = () => {};
  const streams = heldStreams(metrics, (stream, reason) => {
    ended.push([stream, reason]);
    onEnd();
  }, options);
  const server = await StreamServer.start(streams);
  /** Resolves with the reason once the stream has ended. */
  const endOf = (stream: HeldStream) => new Promise<EndReason>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${stream.token} not ended within 5 s`)), 5000);
    onEnd = () => {
      const found = ended.find(([which]) => which === stream);
      if (found === undefined) return;
      clearTimeout(timer);
      resolve(found[1]);
    };
    onEnd();
  });
  return {
    metrics, streams, server, endOf,
    close() {
      server.close();
      streams.stop();
    },
  };
}

test('a part reaching a stream by its token and by a channel is written once; a channel part at or below the last id is not',
  () => closing(setup(), async (shard) => {
    const client = await shard.server.open('t1', { channels: channels('room', 'news') });
    const both = channelPart(2);
    assert.equal(shard.streams.deliverToToken('t1', both), DELIVERED);
    const tally = { written: 0 };
    assert.equal(shard.streams.deliverToChannel('room', both, tally), 1);
    assert.equal(shard.streams.deliverToChannel('news', both, tally), 1);
    assert.equal(tally.written, 0);
    // An older id (a replayed part the stream already has) is a duplicate; a token part has no id and is written.
    assert.equal(shard.streams.write(client.stream, channelPart(1)), DUPLICATE);
    assert.equal(shard.streams.deliverToToken('t1', tokenPart('<plain>')), DELIVERED);
    assert.equal(shard.streams.deliverToChannel('room', channelPart(3), tally), 1);
    assert.equal(tally.written, 1);
    assert.equal(await client.waitForBody('<2><plain><3>'), '<2><plain><3>');
  }));

test('Multiplex-Close ends a stream after its body, Multiplex-Hold: response after the first part; an ended stream is not reached',
  () => closing(setup(), async (shard) => {
    const closed = await shard.server.open('t1', { channels: channels('room') });
    shard.streams.deliverToToken('t1', tokenPart('<last>', true));
    assert.equal(await shard.endOf(closed.stream), 'closed');
    assert.equal(await closed.http.waitForClose(), closed.http.text);
    assert.equal(closed.body, '<last>');
    assert.equal(shard.streams.deliverToToken('t1', tokenPart('<after>')), NOT_LIVE);
    assert.equal(shard.streams.channels.streamsOf('room'), undefined);

    const longPoll = await shard.server.open('t2', { hold: 'response', channels: channels('room') });
    assert.equal(shard.streams.deliverToChannel('room', channelPart(1), { written: 0 }), 1);
    assert.equal(await shard.endOf(longPoll.stream), 'closed');
    await longPoll.http.waitForClose();
    assert.equal(longPoll.body, '<1>');
    assert.equal(shard.streams.size, 0);
  }));

test('a client that leaves ends its stream: it leaves its channels, which no longer report an interest',
  () => closing(setup(), async (shard) => {
    const interest: Array<[string, boolean]> = [];
    shard.streams.channels.watchInterest((channel, isInterested) => void interest.push([channel, isInterested]));
    const first = await shard.server.open('t1', { channels: channels('room') });
    const second = await shard.server.open('t2', { channels: channels('room', 'news') });
    assert.deepEqual(interest, [['room', true], ['news', true]]);
    second.close();
    assert.equal(await shard.endOf(second.stream), 'client');
    assert.deepEqual(interest, [['room', true], ['news', true], ['news', false]]);
    assert.deepEqual([...shard.streams.channels.streamsOf('room')!].map((stream) => stream.token), ['t1']);
    first.close();
    assert.equal(await shard.endOf(first.stream), 'client');
    assert.deepEqual(interest.at(-1), ['room', false]);
    assert.equal(shard.streams.channels.subscriptionCount, 0);
  }));

/** 1,000 held streams on one channel: a flush to them takes milliseconds; slices of 10 s, so one flush is one slice. */
async function roomOfThousand(shard: Awaited<ReturnType<typeof setup>>) {
  const clients: StreamClient[] = [];
  for (let i = 0; i < 1000; i++) clients.push(await shard.server.open(`t${i}`, { channels: channels('room') }));
  return {
    clients,
    deliver(...ids: number[]) {
      for (const id of ids) shard.streams.deliverToChannel('room', channelPart(id), { written: 0 });
    },
    corkedCount: () => clients.filter((client) => client.stream.socket.writableCorked > 0).length,
    async untilFlushed() {
      while (this.corkedCount() > 0) await nextTurn();
    },
    async bodiesAre(expected: string) {
      for (const client of clients) assert.equal(await client.waitForBody(expected), expected);
    },
  };
}

test('a part that comes after a pause is written in the turn that delivers it, however long the last flush took',
  () => closing(setup({ flushSliceMs: 10_000 }), async (shard) => {
    const room = await roomOfThousand(shard);
    room.deliver(1);
    await room.untilFlushed();
    // At least the longest a part waits for company (2 ms), whatever the last flush took.
    await sleep(5);
    room.deliver(2);
    await nextTurn();
    assert.equal(room.corkedCount(), 0);
    await room.bodiesAre('<1><2>');
  }));

test('a flush to many sockets gives the event loop back between slices; parts written meanwhile follow in order',
  () => closing(setup({ flushSliceMs: 0 }), async (shard) => {
    const clients: StreamClient[] = [];
    for (let i = 0; i < 200; i++) clients.push(await shard.server.open(`t${i}`, { channels: channels('room') }));
    shard.streams.deliverToChannel('room', channelPart(1), { written: 0 });
    // This turn's flush wrote a slice (64 sockets) and left the rest to the next turns.
    await nextTurn();
    assert.equal(clients[0].stream.socket.writableCorked, 0);
    assert.ok(clients[199].stream.socket.writableCorked > 0);
    shard.streams.deliverToChannel('room', channelPart(2), { written: 0 });
    for (const client of clients) assert.equal(await client.waitForBody('<1><2>'), '<1><2>');
  }));

test('under a backlog (two parts per socket in a flush), a part waits for company longer than after a single part',
  () => closing(setup({ flushSliceMs: 10_000, backlogFlushIntervalMs: 1000 }), async (shard) => {
    const room = await roomOfThousand(shard);
    room.deliver(1, 2);
    await room.untilFlushed();
    // Past the wait after a flush of single parts (2 ms), well within the backlog's (1 s here).
    await sleep(5);
    room.deliver(3);
    await nextTurn();
    assert.equal(room.corkedCount(), 1000);
    await room.bodiesAre('<1><2><3>');
  }));

test('a flood on a few sockets (a short flush, so a short spacing) still waits as long as a backlog',
  () => closing(setup({ backlogFlushIntervalMs: 1000 }), async (shard) => {
    const clients = [await shard.server.open('t1', { channels: channels('room') }), await shard.server.open('t2', { channels: channels('room') })];
    const corkedCount = () => clients.filter((client) => client.stream.socket.writableCorked > 0).length;
    for (const id of [1, 2, 3]) shard.streams.deliverToChannel('room', channelPart(id), { written: 0 });
    while (corkedCount() > 0) await nextTurn();
    // Past the longest a flood's spacing can be (50 ms), well within the backlog's wait (1 s here).
    await sleep(60);
    shard.streams.deliverToChannel('room', channelPart(4), { written: 0 });
    await nextTurn();
    assert.equal(corkedCount(), 2);
    for (const client of clients) assert.equal(await client.waitForBody('<1><2><3><4>'), '<1><2><3><4>');
  }));

test('in a flood (several parts per socket in a flush), the next flush waits for more parts to share its writes',
  () => closing(setup({ flushSliceMs: 10_000 }), async (shard) => {
    const room = await roomOfThousand(shard);
    room.deliver(1, 2, 3);
    await room.untilFlushed();
    room.deliver(4);
    await nextTurn();
    assert.equal(room.corkedCount(), 1000);
    await room.bodiesAre('<1><2><3><4>');
  }));

test('a flood that ends is noticed at the next flush: the parts that piled up while a flush was held back do not keep it one',
  () => closing(setup({ flushSliceMs: 10_000 }), async (shard) => {
    const room = await roomOfThousand(shard);
    room.deliver(1, 2, 3);
    await room.untilFlushed();
    // Held back by the flood: three more parts per socket pile up meanwhile.
    room.deliver(4, 5, 6);
    await room.untilFlushed();
    await sleep(5);
    room.deliver(7);
    await nextTurn();
    assert.equal(room.corkedCount(), 0);
    await room.bodiesAre('<1><2><3><4><5><6><7>');
  }));
