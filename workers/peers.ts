// The ports to the other shards of this node: items and acknowledgements batched per destination per event-loop turn,
// each batch encoded once (peer-codec.ts); other messages sent at once.
import type { MessagePort } from 'node:worker_threads';
import type { ShardMetrics } from './metrics.ts';
import { MESSAGES, atTurnEnd } from './turn-end.ts';
import type { RoutedItem } from './routed-item.ts';
import {
  encodePartBatch, type Ack, type AckBatch, type InterestMessage, type PeerMessage, type ReplayAnswer, type ReplayRequest,
} from './peer-codec.ts';

export class Peers {
  readonly #ports: (MessagePort | null)[];
  /** Per shard, what waits for the next flush. */
  readonly #items: RoutedItem[][];
  readonly #acks: Ack[][];
  readonly #metrics: ShardMetrics;
  #isFlushScheduled = false;
  readonly #flush = (): void => this.#flushAll();

  constructor(shardCount: number, metrics: ShardMetrics) {
    this.#ports = new Array(shardCount).fill(null);
    this.#items = Array.from({ length: shardCount }, () => []);
    this.#acks = Array.from({ length: shardCount }, () => []);
    this.#metrics = metrics;
  }

  /** The shards of this node, this one included. */
  get shardCount(): number {
    return this.#ports.length;
  }

  isConnected(shard: number): boolean {
    return this.#ports[shard] !== null;
  }

  /** Connects the port to a (new) shard, whose messages go to `receive`. */
  connect(shard: number, port: MessagePort, receive: (message: PeerMessage) => void): void {
    this.#ports[shard]?.close();
    this.#ports[shard] = port;
    port.on('message', receive);
  }

  /** The shard is gone: returns the items queued for it, which it never got; its acknowledgements are dropped. */
  disconnect(shard: number): RoutedItem[] {
    this.#ports[shard]?.close();
    this.#ports[shard] = null;
    const lost = this.#items[shard];
    this.#items[shard] = [];
    this.#acks[shard] = [];
    return lost;
  }

  /** Queues an item for another shard; false when that shard is down. */
  send(shard: number, item: RoutedItem): boolean {
    if (this.#ports[shard] === null) return false;
    this.#items[shard].push(item);
    this.#scheduleFlush();
    return true;
  }

  /** Queues an acknowledgement for the shard holding the receipt. */
  acknowledge(shard: number, ack: Ack): void {
    if (this.#ports[shard] === null) return;
    this.#acks[shard].push(ack);
    this.#scheduleFlush();
  }

  /** Sends a message at once; false when that shard is down. */
  post(shard: number, message: ReplayRequest | ReplayAnswer | InterestMessage): boolean {
    const port = this.#ports[shard];
    if (port === null) return false;
    port.postMessage(message);
    return true;
  }

  #scheduleFlush(): void {
    if (this.#isFlushScheduled) return;
    this.#isFlushScheduled = true;
    atTurnEnd(MESSAGES, this.#flush);
  }

  #flushAll(): void {
    this.#isFlushScheduled = false;
    for (let shard = 0; shard < this.#ports.length; shard++) {
      const port = this.#ports[shard];
      if (port === null) continue;
      const acks = this.#acks[shard];
      const items = this.#items[shard];
      // Each message costs the receiving thread a wake-up: acknowledgements ride with the parts when there are any.
      if (items.length === 0) {
        if (acks.length === 0) continue;
        port.postMessage({ type: 'acks', acks } satisfies AckBatch);
        this.#acks[shard] = [];
        continue;
      }
      const { batch, transfer } = encodePartBatch(items);
      if (acks.length > 0) {
        batch.acks = acks;
        this.#acks[shard] = [];
      }
      port.postMessage(batch, transfer);
      this.#metrics.routerBatchSize.observe(items.length);
      items.length = 0;
    }
  }
}
