// Items that reach this shard (from another shard, from the sequencer, from another node): written to its streams,
// each stream once, and acknowledged to the receipt that waits for them.
import type { ShardMetrics } from './metrics.ts';
import { type HeldStreams, DELIVERED, NOT_LIVE } from './held-streams.ts';
import { Delivery } from './delivery.ts';
import type { Receipts } from './push-receipt.ts';
import type { RoutedItem } from './routed-item.ts';

export class Inbox {
  readonly #streams: HeldStreams;
  readonly #receipts: Receipts;
  readonly #metrics: ShardMetrics;

  constructor(streams: HeldStreams, receipts: Receipts, metrics: ShardMetrics) {
    this.#streams = streams;
    this.#receipts = receipts;
    this.#metrics = metrics;
  }

  /**
   * Writes an item to this shard's streams. The sequencer's own shard also acknowledges, with its own, the part's
   * tokens that reached no shard (`alsoGone`) and those it handed to other nodes (`forwarded`).
   */
  deliver(item: RoutedItem, alsoGone: string[] | null, forwarded: number): void {
    const delivery = new Delivery(item.body, item.isClose, item.parsedAt, item.channelId, item.isBinary);
    const hasReceipt = item.receiptId !== 0;
    let deliveries = 0;
    let gone = alsoGone;
    for (const token of item.tokens) {
      const result = this.#streams.deliverToToken(token, delivery);
      if (result === DELIVERED) {
        deliveries++;
      } else if (result === NOT_LIVE) {
        this.#metrics.undeliverable.inc({ reason: 'gone' });
        if (hasReceipt) (gone ??= []).push(token);
      }
    }
    let channels: Record<string, number> | null = null;
    if (item.channels.length > 0) {
      // Streams reached per channel matter only to a push waiting for its answer.
      if (hasReceipt) channels = {};
      const tally = { written: 0 };
      for (const channel of item.channels) {
        const reached = this.#streams.deliverToChannel(channel, delivery, tally);
        if (channels !== null) channels[channel] = reached;
      }
      deliveries += tally.written;
    }
    if (deliveries > 0) this.#metrics.pushToWrite.observe((Date.now() - delivery.parsedAt) / 1000);
    if (hasReceipt) this.#receipts.acknowledge(item.origin, { receiptId: item.receiptId, deliveries, gone: gone ?? [], channels, forwarded });
  }
}
