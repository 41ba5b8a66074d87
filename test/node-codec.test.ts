// The codec of messages between nodes: items and a channel part's echo come back as they were sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeNodeMessage, encodeNodeMessage, type ChannelEcho } from '../workers/node-codec.ts';
import type { RoutedItem } from '../workers/routed-item.ts';

const item = (tokens: string[], channels: string[], body: string, isClose = false, isBinary = false): RoutedItem => ({
  tokens, channels, body: Buffer.from(body), isClose, isBinary, parsedAt: 1_700_000_000_123, channelId: 0, receiptId: 0, origin: 0, isToSequence: false,
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

test('Multiplex-Binary crosses to another node with its part, with or without Multiplex-Close, each part its own', () => {
  const items = [
    item(['n2.0.a'], [], '\x00bin', false, true), item(['n2.0.a'], [], 'text'), item(['n2.0.b'], [], 'last', true, true), item([], ['room'], 'x', true),
  ];
  const decoded = decodeNodeMessage(encodeNodeMessage('n1', items, null), 0);
  assert.deepEqual(decoded, { node: 'n1', items, echo: null });
});

test('a frame from before Multiplex-Binary (items of five fields, as Redis histories may still hold) reads as text, its close flag kept', () => {
  const header = JSON.stringify({ node: 'n1', items: [[[], ['room'], 3, 1, 1_700_000_000_123], [['n1.0.a'], [], 2, 0, 1_700_000_000_124]] });
  const length = Buffer.alloc(4);
  length.writeUInt32BE(Buffer.byteLength(header));
  const decoded = decodeNodeMessage(Buffer.concat([length, Buffer.from(header), Buffer.from('abcde')]), 9);
  assert.deepEqual(decoded.items.map(({ body, isClose, isBinary, channelId }) => ({ body: body.toString(), isClose, isBinary, channelId })), [
    { body: 'abc', isClose: true, isBinary: false, channelId: 9 },
    { body: 'de', isClose: false, isBinary: false, channelId: 9 },
  ]);
});

test('an unreadable frame throws (the link drops it with a warning)', () => {
  assert.throws(() => decodeNodeMessage(Buffer.from([0, 0, 0, 5, 0x7b]), 0));
  assert.throws(() => decodeNodeMessage(Buffer.alloc(2), 0));
});
