// The link to other nodes in-process, against a real redis-server: what a part carries survives the trip through
// Redis, to another node's shard and in the channel history, whose older entries stay readable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { mintToken, parseTokenRoute } from '../src/protocol/token.ts';
import { createShardMetrics } from '../workers/metrics.ts';
import type { NodeMessage } from '../workers/node-codec.ts';
import { RedisLink, channelSubject } from '../workers/redis-link.ts';
import { SEQUENCE_SCRIPT, channelKeys } from '../workers/redis-history.ts';
import type { RoutedItem } from '../workers/routed-item.ts';
import { startRedis, type RedisServer } from './helpers/redis.ts';
import { silentWarnings } from './helpers/shard-parts.ts';
import { waitUntil } from './helpers/wait.ts';

let redis: RedisServer;
const links: RedisLink[] = [];

before(async () => {
  redis = await startRedis();
});

after(async () => {
  for (const link of links) link.close();
  await redis.stop();
});

async function connect(nodeId: string, shard: number): Promise<RedisLink> {
  const link = new RedisLink(redis.url, nodeId, shard, createShardMetrics(shard), silentWarnings);
  links.push(link);
  await waitUntil(() => link.isUp, 5000, `node ${nodeId} shard ${shard} connected to Redis`);
  return link;
}

const channelPart = (channel: string, body: string, isClose: boolean, isBinary: boolean): RoutedItem => ({
  tokens: [], channels: [channel], body: Buffer.from(body), isClose, isBinary, parsedAt: Date.now(), channelId: 0, receiptId: 0, origin: 0,
  isToSequence: false,
});
const noEcho = { receiptId: 0, origin: 0, tokensByShard: [[]], invalid: [], forwarded: 0 };

test('a token part for another node\'s shard arrives there with its binary flag', async () => {
  const [sender, receiver] = await Promise.all([connect('n1', 0), connect('n2', 1)]);
  const received: RoutedItem[] = [];
  receiver.listen((message: NodeMessage) => void received.push(...message.items));
  const [probe, binary, text] = [mintToken('n2', 1), mintToken('n2', 1), mintToken('n2', 1)];
  const send = (token: string, body: Buffer, isClose: boolean, isBinary: boolean) => sender.sendToShard(parseTokenRoute(token)!, token, { body, isClose, isBinary });
  // The receiver's subscription is in place once a probe published to it arrives.
  await waitUntil(() => send(probe, Buffer.from('probe'), false, false) && received.length > 0, 5000, 'the receiving shard to be subscribed', 100);
  send(binary, Buffer.from([0, 255]), false, true);
  send(text, Buffer.from('text'), true, false);
  const parts = () => received.filter((item) => item.tokens[0] !== probe);
  await waitUntil(() => parts().length === 2, 5000, 'the two parts through Redis');
  assert.deepEqual(parts().map(({ tokens, body, isClose, isBinary }) => ({ tokens, body: body.toString('latin1'), isClose, isBinary })), [
    { tokens: [binary], body: '\x00\xff', isClose: false, isBinary: true },
    { tokens: [text], body: 'text', isClose: true, isBinary: false },
  ]);
});

test('the history in Redis keeps each part\'s binary flag for a replay; an entry stored before the flag existed replays as text', async () => {
  const link = await connect('n1', 0);
  link.subscribeChannel('room');
  await link.whenFollowing(['room'], 5000);
  const first = await link.sequence(channelPart('room', 'bin', false, true), noEcho, 10, 0);
  const second = await link.sequence(channelPart('room', 'text', true, false), noEcho, 10, 0);
  // As a node from before Multiplex-Binary stored it: the same script, an item of five fields.
  const header = JSON.stringify({ node: 'old', items: [[[], ['room'], 3, 1, Date.now()]] });
  const length = Buffer.alloc(4);
  length.writeUInt32BE(Buffer.byteLength(header));
  const client = new Redis(redis.url);
  let third: number;
  try {
    const keys = channelKeys(['room']);
    third = Number(await client.eval(SEQUENCE_SCRIPT, keys.length, ...keys, 10, 0, Buffer.concat([length, Buffer.from(header), Buffer.from('old')]),
      channelSubject('room')));
  } finally {
    client.disconnect();
  }
  const replay = await link.replay(['room'], 0, 0);
  assert.equal(replay.isComplete, true);
  assert.deepEqual(replay.parts.map(({ id, body, isClose, isBinary }) => ({ id, body: body.toString(), isClose, isBinary })), [
    { id: first, body: 'bin', isClose: false, isBinary: true },
    { id: second, body: 'text', isClose: true, isBinary: false },
    { id: third, body: 'old', isClose: true, isBinary: false },
  ]);
});
