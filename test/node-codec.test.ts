// The codec of messages between nodes: items and a channel part's echo come back as they were sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeNodeMessage, encodeNodeMessage, type ChannelEcho } from '../workers/node-codec.ts';
import type { RoutedItem } from '../workers/routed-item.ts';

const item = (tokens: string[], channels: string[], body: string, isClose = false): RoutedItem => ({
  tokens, channels, body: Buffer.from(body), isClose, isBinary: false, parsedAt: 1_700_000_000_123, channelId: 0, receiptId: 0, origin: 0, isToSequence: false,
});

test('token items for another node\'s shard: tokens as lists, bodies and close flags as sent', () => {
  const items = [item(['n2.0.a', 'n2.0.b'], [], 'first'), item(['n2.0.c'], [], '', true), item(['n2.0.d'], [], 'third')];
  const decoded = decodeNodeMessage(encodeNodeMessage('n1', items, null), 0);
  assert.deepEqual(decoded, { node: 'n1', items, echo: null });
});

test('a channel part carries its echo for its own node and takes the id Redis gave it', () => {
  const echo: ChannelEcho = { receiptId: 4, origin: 1, tokensByShard: [['n1.0.a'], [], ['n1.2.b', 'n1.2.c']], invalid: ['nope'], forwarded: 2 };
  const sent = item([], ['room', 'news'], 'hello');
  const decoded = decodeNodeMessage(encodeNodeMessage('n1', [sent], echo), 42);
  assert.deepEqual(decoded, { node: 'n1', items: [{ ...sent, channelId: 42 }], echo });
});

test('an unreadable frame throws (the link drops it with a warning)', () => {
  assert.throws(() => decodeNodeMessage(Buffer.from([0, 0, 0, 5, 0x7b]), 0));
  assert.throws(() => decodeNodeMessage(Buffer.alloc(2), 0));
});
