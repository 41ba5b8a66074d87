// The codec of part batches between shards: what is encoded is what is decoded, bodies included, through a real port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel } from 'node:worker_threads';
import fc from 'fast-check';
import { decodePartBatch, encodePartBatch, type PartBatch } from '../workers/peer-codec.ts';
import type { RoutedItem } from '../workers/routed-item.ts';

const name = fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/);
const item: fc.Arbitrary<RoutedItem> = fc.record({
  tokens: fc.array(name, { maxLength: 5 }),
  channels: fc.array(name, { maxLength: 3 }),
  body: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  isClose: fc.boolean(),
  isBinary: fc.boolean(),
  parsedAt: fc.integer({ min: 0, max: 2 ** 48 }),
  channelId: fc.nat(),
  receiptId: fc.nat(),
  origin: fc.nat({ max: 1023 }),
  isToSequence: fc.boolean(),
});

/** Sends the batch through a MessageChannel, as the shards do, and returns what the other end got. */
async function throughPort(items: RoutedItem[]): Promise<PartBatch> {
  const { port1, port2 } = new MessageChannel();
  try {
    const { batch, transfer } = encodePartBatch(items);
    const received = new Promise<PartBatch>((resolve) => port2.once('message', resolve));
    port1.postMessage(batch, transfer);
    // Transferred, not copied: the sender's buffers are gone.
    assert.equal(batch.bytes.byteLength, 0);
    assert.equal(batch.meta.length, 0);
    return await received;
  } finally {
    port1.close();
  }
}

test('a batch decodes to the items encoded, in order, with their bodies, after crossing a port', async () => {
  await fc.assert(fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 8 }), async (items) => {
    // The sender's bodies are copied into the batch: compare with copies.
    const expected = items.map((each) => ({ ...each, body: Buffer.from(each.body) }));
    assert.deepEqual(decodePartBatch(await throughPort(items)), expected);
  }), { numRuns: 100 });
});

test('items without tokens, without channels, with empty bodies keep their places', async () => {
  const base = { isClose: false, isBinary: false, parsedAt: 1, channelId: 0, receiptId: 0, origin: 0, isToSequence: false };
  const items: RoutedItem[] = [
    { ...base, tokens: [], channels: ['room'], body: Buffer.alloc(0), channelId: 7 },
    { ...base, tokens: ['a', 'b'], channels: [], body: Buffer.from('x'), receiptId: 3, origin: 2 },
    { ...base, tokens: ['c'], channels: ['room', 'news'], body: Buffer.alloc(0), isClose: true, isToSequence: true },
  ];
  const decoded = decodePartBatch(await throughPort(items));
  assert.deepEqual(decoded, items);
  // The bodies are views of one buffer, not copies each.
  assert.equal(decoded[0].body.buffer, decoded[1].body.buffer);
});

test('close, binary and to-sequence each have their own bit: every combination crosses the port as sent', async () => {
  const items: RoutedItem[] = [];
  for (let flags = 0; flags < 8; flags++) {
    items.push({
      tokens: ['t'], channels: [], body: Buffer.from([flags]), isClose: (flags & 1) !== 0, isBinary: (flags & 2) !== 0, parsedAt: 1,
      channelId: flags, receiptId: 0, origin: 0, isToSequence: (flags & 4) !== 0,
    });
  }
  const decoded = decodePartBatch(await throughPort(items));
  assert.deepEqual(decoded.map(({ isClose, isBinary, isToSequence }) => ({ isClose, isBinary, isToSequence })),
    items.map(({ isClose, isBinary, isToSequence }) => ({ isClose, isBinary, isToSequence })));
});
