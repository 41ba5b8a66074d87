// Parts to local streams or, batched per destination per event-loop turn, to the owning shard.
import type { MessagePort } from 'node:worker_threads';
import type { Part } from '../src/protocol/multiplex-parser.ts';
import { parseTokenRoute } from '../src/protocol/token.ts';
import type { Logger } from '../src/log.ts';
import type { ShardMetrics } from './metrics.ts';
import { type HeldStreams, DELIVERED, NOT_LIVE } from './held-streams.ts';
import { Delivery } from './delivery.ts';
import { PushReceipt } from './push-receipt.ts';

export type PartSource = 'response' | 'push';

const FLAG_CLOSE = 1;
/** Per item in a batch's `meta`: body end offset, flags, parsedAt, receipt id (0: none). */
const META_FIELDS = 4;

/** A batch of parts for one shard: bodies packed in one transferred buffer. */
export interface PartBatch {
  type: 'parts';
  from: number;
  tokens: string[];
  meta: Float64Array;
  bytes: ArrayBuffer;
}

/** Acknowledgements of receipt-carrying items, batched back to the pushing shard. */
export interface AckBatch {
  type: 'acks';
  from: number;
  receipts: number[];
  deliveries: number[];
  gone: string[][];
}

export type PeerMessage = PartBatch | AckBatch;

function emptyAcks(from: number): AckBatch {
  return { type: 'acks', from, receipts: [], deliveries: [], gone: [] };
}

class Outbox {
  tokens: string[] = [];
  bodies: Buffer[] = [];
  flags: number[] = [];
  parsedAt: number[] = [];
  receipts: number[] = [];
  bytes = 0;
  acks: AckBatch;
  /** Receipt id → joined token lists sent and not yet acknowledged, oldest first (answered as gone if the shard dies). */
  unacknowledged = new Map<number, string[]>();

  constructor(from: number) {
    this.acks = emptyAcks(from);
  }

  get isEmpty(): boolean {
    return this.tokens.length === 0 && this.acks.receipts.length === 0;
  }
}

export class Router {
  private readonly shard: number;
  private readonly nodeId: string;
  private readonly streams: HeldStreams;
  private readonly metrics: ShardMetrics;
  private readonly log: Logger;
  private readonly peers: (MessagePort | null)[];
  private readonly outboxes: Outbox[];
  private readonly receipts = new Map<number, PushReceipt>();
  private nextReceiptId = 1;
  private isFlushScheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(shard: number, nodeId: string, shardCount: number, streams: HeldStreams, metrics: ShardMetrics, log: Logger) {
    this.shard = shard;
    this.nodeId = nodeId;
    this.streams = streams;
    this.metrics = metrics;
    this.log = log;
    this.peers = new Array(shardCount).fill(null);
    this.outboxes = Array.from({ length: shardCount }, () => new Outbox(shard));
  }

  createReceipt(): PushReceipt {
    const receipt = new PushReceipt(this.nextReceiptId++);
    this.receipts.set(receipt.id, receipt);
    return receipt;
  }

  releaseReceipt(receipt: PushReceipt): void {
    this.receipts.delete(receipt.id);
  }

  /** Connects (or, with null, disconnects) the port to another shard. */
  setPeer(shard: number, port: MessagePort | null): void {
    const previous = this.peers[shard];
    if (previous) previous.close();
    this.peers[shard] = port;
    if (port === null) {
      this.failOutbox(shard);
      return;
    }
    port.on('message', (message: PeerMessage) => this.receive(message));
  }

  routePart(part: Part, source: PartSource, receipt: PushReceipt | null): void {
    const tokens = part.tokens;
    let local: Delivery | null = null;
    let remoteCount = 0;
    let deliveries = 0;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      const route = parseTokenRoute(token);
      if (route === null || route.nodeId !== this.nodeId) {
        this.metrics.undeliverable.inc({ reason: route === null ? 'invalid_token' : 'other_node' });
        if (receipt !== null) receipt.gone.push(token);
        continue;
      }
      if (route.shard === this.shard) {
        if (local === null) local = new Delivery(part.body, part.isClose, Date.now());
        const result = this.streams.deliver(token, local);
        if (result === DELIVERED) {
          deliveries++;
        } else if (result === NOT_LIVE) {
          this.metrics.undeliverable.inc({ reason: 'gone' });
          if (receipt !== null) receipt.gone.push(token);
        }
      } else if (this.enqueue(route.shard, token, part, receipt)) {
        remoteCount++;
      }
    }
    if (local !== null) this.metrics.pushToWrite.observe((Date.now() - local.parsedAt) / 1000);
    if (receipt !== null) receipt.deliveries += deliveries;
    this.metrics.parts.inc({ source, route: remoteCount > 0 ? 'remote' : 'local' });
  }

  private enqueue(shard: number, token: string, part: Part, receipt: PushReceipt | null): boolean {
    const outbox = this.outboxes[shard];
    if (outbox === undefined || this.peers[shard] === null) {
      this.metrics.undeliverable.inc({ reason: 'shard_down' });
      if (receipt !== null) receipt.gone.push(token);
      return false;
    }
    // Consecutive tokens of one part for one shard share one item (and one copy of the body).
    const last = outbox.tokens.length - 1;
    if (last >= 0 && outbox.bodies[last] === part.body && outbox.receipts[last] === (receipt?.id ?? 0)) {
      outbox.tokens[last] += ',' + token;
      return true;
    }
    outbox.tokens.push(token);
    outbox.bodies.push(part.body);
    outbox.flags.push(part.isClose ? FLAG_CLOSE : 0);
    outbox.parsedAt.push(Date.now());
    outbox.receipts.push(receipt?.id ?? 0);
    outbox.bytes += part.body.length;
    if (receipt !== null) receipt.pending++;
    this.scheduleFlush();
    return true;
  }

  private scheduleFlush(): void {
    if (this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    setImmediate(this.flushBound);
  }

  private flush(): void {
    this.isFlushScheduled = false;
    for (let shard = 0; shard < this.outboxes.length; shard++) {
      const outbox = this.outboxes[shard];
      const port = this.peers[shard];
      if (outbox.isEmpty) continue;
      if (port === null) {
        this.failOutbox(shard);
        continue;
      }
      if (outbox.acks.receipts.length > 0) {
        port.postMessage(outbox.acks);
        outbox.acks = emptyAcks(this.shard);
      }
      const count = outbox.tokens.length;
      if (count === 0) continue;
      const bytes = new ArrayBuffer(outbox.bytes);
      const packed = new Uint8Array(bytes);
      const meta = new Float64Array(count * META_FIELDS);
      let offset = 0;
      for (let i = 0; i < count; i++) {
        const body = outbox.bodies[i];
        packed.set(body, offset);
        offset += body.length;
        meta[i * META_FIELDS] = offset;
        meta[i * META_FIELDS + 1] = outbox.flags[i];
        meta[i * META_FIELDS + 2] = outbox.parsedAt[i];
        const receiptId = outbox.receipts[i];
        meta[i * META_FIELDS + 3] = receiptId;
        if (receiptId !== 0) {
          const sent = outbox.unacknowledged.get(receiptId);
          if (sent === undefined) outbox.unacknowledged.set(receiptId, [outbox.tokens[i]]);
          else sent.push(outbox.tokens[i]);
        }
      }
      const batch: PartBatch = { type: 'parts', from: this.shard, tokens: outbox.tokens, meta, bytes };
      port.postMessage(batch, [bytes, meta.buffer]);
      this.metrics.routerBatchSize.observe(count);
      outbox.tokens = [];
      outbox.bodies = [];
      outbox.flags = [];
      outbox.parsedAt = [];
      outbox.receipts = [];
      outbox.bytes = 0;
    }
  }

  private receive(message: PeerMessage): void {
    if (message.type === 'acks') {
      const unacknowledged = this.outboxes[message.from]?.unacknowledged;
      for (let i = 0; i < message.receipts.length; i++) {
        const id = message.receipts[i];
        const sent = unacknowledged?.get(id);
        if (sent !== undefined && (sent.shift(), sent.length === 0)) unacknowledged?.delete(id);
        this.receipts.get(id)?.acknowledge(message.deliveries[i], message.gone[i]);
      }
      return;
    }
    this.deliverBatch(message);
  }

  private deliverBatch(batch: PartBatch): void {
    const meta = batch.meta;
    const bytes = Buffer.from(batch.bytes);
    const acks = this.outboxes[batch.from]?.acks;
    let start = 0;
    for (let i = 0; i < batch.tokens.length; i++) {
      const end = meta[i * META_FIELDS];
      const delivery = new Delivery(bytes.subarray(start, end), (meta[i * META_FIELDS + 1] & FLAG_CLOSE) !== 0, meta[i * META_FIELDS + 2]);
      start = end;
      const receiptId = meta[i * META_FIELDS + 3];
      const tokens = batch.tokens[i].split(',');
      let deliveries = 0;
      let gone: string[] | null = null;
      for (const token of tokens) {
        const result = this.streams.deliver(token, delivery);
        if (result === DELIVERED) {
          deliveries++;
        } else if (result === NOT_LIVE) {
          this.metrics.undeliverable.inc({ reason: 'gone' });
          if (receiptId !== 0) (gone ??= []).push(token);
        }
      }
      if (deliveries > 0) this.metrics.pushToWrite.observe((Date.now() - delivery.parsedAt) / 1000);
      if (receiptId !== 0 && acks !== undefined) {
        acks.receipts.push(receiptId);
        acks.deliveries.push(deliveries);
        acks.gone.push(gone ?? []);
        this.scheduleFlush();
      }
    }
  }

  /** The shard is gone: what was queued or sent to it and not acknowledged was not delivered. */
  private failOutbox(shard: number): void {
    const outbox = this.outboxes[shard];
    if (outbox === undefined) return;
    for (let i = 0; i < outbox.tokens.length; i++) {
      const tokens = outbox.tokens[i].split(',');
      this.metrics.undeliverable.inc({ reason: 'shard_down' }, tokens.length);
      const receipt = this.receipts.get(outbox.receipts[i]);
      if (receipt !== undefined) receipt.acknowledge(0, tokens);
    }
    for (const [id, sent] of outbox.unacknowledged) {
      const receipt = this.receipts.get(id);
      for (const joined of sent) receipt?.acknowledge(0, joined.split(','));
    }
    if (outbox.tokens.length > 0 || outbox.unacknowledged.size > 0) {
      this.log.warn({ peer: shard, queued: outbox.tokens.length, unacknowledged: outbox.unacknowledged.size }, 'peer shard gone: its parts are undeliverable');
    }
    this.outboxes[shard] = new Outbox(this.shard);
  }
}
