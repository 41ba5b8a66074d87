// Parts to local streams or, batched per destination per event-loop turn, to the owning shard;
// channel parts through the sequencer (shard 0), which numbers them and broadcasts them to every shard.
import type { MessagePort } from 'node:worker_threads';
import type { Part } from '../src/protocol/multiplex-parser.ts';
import { localTokenShard, parseTokenRoute } from '../src/protocol/token.ts';
import type { Logger } from '../src/log.ts';
import type { ShardMetrics } from './metrics.ts';
import { type HeldStreams, DELIVERED, NOT_LIVE } from './held-streams.ts';
import type { ChannelLog, LoggedPart, Replay } from './channel-log.ts';
import { Delivery } from './delivery.ts';
import type { ChannelEcho, RedisLink, RemoteItem } from './redis-link.ts';
import { PushReceipt } from './push-receipt.ts';

export type PartSource = 'response' | 'push';

/** The shard that numbers channel parts and keeps their history. */
export const SEQUENCER = 0;

const FLAG_CLOSE = 1;
/** Sent to the sequencer: number it, then broadcast it. */
const FLAG_TO_SEQUENCE = 2;
/** Per item in a batch's `meta`: body end offset, flags, parsedAt, receipt id (0: none), receipt's shard, channel id. */
const META_FIELDS = 6;

/** Parts for one shard: bodies packed in one transferred buffer. */
export interface PartBatch {
  type: 'parts';
  from: number;
  /** Per item: comma-joined tokens ('' for none). */
  tokens: string[];
  /** Per item: comma-joined channels ('' for none). */
  channels: string[];
  meta: Float64Array;
  bytes: ArrayBuffer;
}

/** Acknowledgements of receipt-carrying items, batched back to the shard holding the receipt. */
export interface AckBatch {
  type: 'acks';
  receipts: number[];
  deliveries: number[];
  gone: string[][];
  channels: (Record<string, number> | null)[];
  forwarded: number[];
}

export interface ReplayRequest {
  type: 'replay';
  from: number;
  id: number;
  channels: string[];
  since: number;
}

export interface ReplayAnswer {
  type: 'replayed';
  id: number;
  parts: LoggedPart[];
  isComplete: boolean;
}

/** To the sequencer: this shard's streams now do (or no longer) subscribe to a channel (multi-node only). */
export interface InterestMessage {
  type: 'interest';
  from: number;
  channel: string;
  isInterested: boolean;
}

export type PeerMessage = PartBatch | AckBatch | ReplayRequest | ReplayAnswer | InterestMessage;

function emptyAcks(): AckBatch {
  return { type: 'acks', receipts: [], deliveries: [], gone: [], channels: [], forwarded: [] };
}

class Outbox {
  tokens: string[] = [];
  channels: string[] = [];
  bodies: Buffer[] = [];
  numbers: number[] = [];
  bytes = 0;
  acks = emptyAcks();

  get isEmpty(): boolean {
    return this.tokens.length === 0 && this.acks.receipts.length === 0;
  }
}

export class Router {
  private readonly shard: number;
  private readonly nodeId: string;
  private readonly nodePrefix: string;
  private readonly streams: HeldStreams;
  private readonly metrics: ShardMetrics;
  private readonly log: Logger;
  /** Only on the sequencer shard. */
  private readonly channelLog: ChannelLog | null;
  private readonly peers: (MessagePort | null)[];
  private outboxes: Outbox[];
  private readonly receipts = new Map<number, PushReceipt>();
  private readonly replays = new Map<number, (replay: Replay) => void>();
  private redis: RedisLink | null = null;
  private historyLength = 0;
  #historyAgeMs = 0;
  /** On the sequencer, with Redis: channel → the shards whose streams subscribe to it. */
  private readonly interest = new Map<string, Set<number>>();
  private nextId = 1;
  private isFlushScheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(shard: number, nodeId: string, shardCount: number, streams: HeldStreams, channelLog: ChannelLog | null,
    metrics: ShardMetrics, log: Logger) {
    this.shard = shard;
    this.nodeId = nodeId;
    this.nodePrefix = nodeId + '.';
    this.streams = streams;
    this.channelLog = channelLog;
    this.metrics = metrics;
    this.log = log;
    this.peers = new Array(shardCount).fill(null);
    this.outboxes = Array.from({ length: shardCount }, () => new Outbox());
  }

  /**
   * Routes parts for other nodes' tokens and channels through Redis, which keeps `historyLength` parts per channel,
   * until the channel's last part is `historyAgeMs` old (0: for ever).
   */
  setRedis(redis: RedisLink, historyLength: number, historyAgeMs: number): void {
    this.redis = redis;
    this.historyLength = historyLength;
    this.#historyAgeMs = historyAgeMs;
  }

  /** This shard's streams now do (or no longer) subscribe to a channel: the sequencer subscribes the node. */
  reportInterest(channel: string, isInterested: boolean): void {
    if (this.redis === null) return;
    if (this.channelLog !== null) return this.noteInterest(this.shard, channel, isInterested);
    this.peers[SEQUENCER]?.postMessage({ type: 'interest', from: this.shard, channel, isInterested } satisfies InterestMessage);
  }

  /** Parts from other nodes: for this shard's tokens, or (on the sequencer) for a channel this node follows. */
  receiveRemote(items: RemoteItem[], isChannelPart: boolean): void {
    for (const item of items) {
      if (isChannelPart) {
        if (this.channelLog !== null) this.receiveChannelPart(item);
      } else {
        this.deliverItem(item.tokens, '', new Delivery(item.body, (item.flags & FLAG_CLOSE) !== 0, item.parsedAt, 0), 0, this.shard, null);
      }
    }
  }

  /** On the sequencer: what a resuming stream missed, from this node's history or, with Redis, the nodes' history. */
  private replay(channels: string[], since: number, answer: (replay: Replay) => void): void {
    if (this.redis === null || this.historyLength === 0) return answer(this.channelLog?.replay(channels, since) ?? { parts: [], isComplete: false });
    this.redis.replay(channels, since, this.#historyAgeMs).then(answer, (error: Error) => {
      this.log.warn({ err: error.message }, 'channel history unavailable from Redis: the resuming stream is told it missed parts');
      answer({ parts: [], isComplete: false });
    });
  }

  private noteInterest(shard: number, channel: string, isInterested: boolean): void {
    let shards = this.interest.get(channel);
    if (isInterested) {
      if (shards === undefined) {
        shards = new Set();
        this.interest.set(channel, shards);
        this.redis?.subscribeChannel(channel);
      }
      shards.add(shard);
    } else if (shards !== undefined && shards.delete(shard) && shards.size === 0) {
      this.interest.delete(channel);
      this.redis?.unsubscribeChannel(channel);
    }
  }

  /** A push's receipt tallies what it reached (isTallying); a response's only waits for its parts to be handed on. */
  createReceipt(isTallying = true): PushReceipt {
    const receipt = new PushReceipt(this.nextId++, isTallying);
    this.receipts.set(receipt.id, receipt);
    return receipt;
  }

  releaseReceipt(receipt: PushReceipt): void {
    this.receipts.delete(receipt.id);
  }

  /** Connects (or, with null, disconnects) the port to another shard. */
  setPeer(shard: number, port: MessagePort | null): void {
    this.peers[shard]?.close();
    this.peers[shard] = port;
    if (port === null) {
      this.failOutbox(shard);
      if (shard === SEQUENCER) for (const answer of this.replays.values()) answer({ parts: [], isComplete: false });
      this.replays.clear();
      for (const channel of [...this.interest.keys()]) this.noteInterest(shard, channel, false);
      return;
    }
    port.on('message', (message: PeerMessage) => this.receive(message));
    // A (new) sequencer learns which channels this shard's streams follow.
    if (shard === SEQUENCER && this.redis !== null) {
      for (const channel of this.streams.channels.channels()) this.reportInterest(channel, true);
    }
  }

  routePart(part: Part, source: PartSource, receipt: PushReceipt | null): void {
    if (part.channels.length > 0) return this.routeChannelPart(part, source, receipt);
    const tokens = part.tokens;
    const parsedAt = Date.now();
    let local: Delivery | null = null;
    let isRemote = false;
    let isForwarded = false;
    let deliveries = 0;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      const shard = localTokenShard(token, this.nodePrefix);
      if (shard < 0 || shard >= this.peers.length) {
        const sent = this.forwardToNode(token, part.body, part.isClose ? FLAG_CLOSE : 0, receipt);
        if (sent) isForwarded = true;
      } else if (shard === this.shard) {
        local ??= new Delivery(part.body, part.isClose, parsedAt, 0);
        const result = this.streams.deliverToToken(token, local);
        if (result === DELIVERED) deliveries++;
        else if (result === NOT_LIVE) this.undeliverable('gone', token, receipt);
      } else if (this.enqueue(shard, token, '', part.body, part.isClose ? FLAG_CLOSE : 0, parsedAt, receipt, this.shard, 0)) {
        isRemote = true;
      } else {
        this.undeliverable('shard_down', token, receipt);
      }
    }
    if (local !== null) this.metrics.pushToWrite.observe((Date.now() - local.parsedAt) / 1000);
    if (receipt !== null) receipt.deliveries += deliveries;
    this.metrics.parts.inc({ source, route: isForwarded ? 'node' : isRemote ? 'remote' : 'local' });
  }

  /** A token of another node goes through Redis; true when it was sent (counted as forwarded, not delivered). */
  private forwardToNode(token: string, body: Buffer, flags: number, receipt: PushReceipt | null): boolean {
    const route = parseTokenRoute(token);
    if (this.redis === null || route === null || route.nodeId === this.nodeId) {
      this.undeliverable(this.whyNotLocal(token), token, receipt);
      return false;
    }
    if (!this.redis.sendToShard(route.nodeId, route.shard, token, body, flags, Date.now())) {
      this.undeliverable('redis_down', token, receipt);
      return false;
    }
    if (receipt !== null) receipt.forwarded++;
    return true;
  }

  /** Asks the sequencer for the channel parts numbered above `since`. */
  requestReplay(channels: string[], since: number, answer: (replay: Replay) => void): void {
    if (this.channelLog !== null) return this.replay(channels, since, answer);
    const port = this.peers[SEQUENCER];
    if (port === null) return answer({ parts: [], isComplete: false });
    const id = this.nextId++;
    this.replays.set(id, answer);
    port.postMessage({ type: 'replay', from: this.shard, id, channels, since } satisfies ReplayRequest);
  }

  private routeChannelPart(part: Part, source: PartSource, receipt: PushReceipt | null): void {
    this.metrics.parts.inc({ source, route: 'channel' });
    const tokens = part.tokens.join(',');
    const channels = part.channels.join(',');
    const flags = part.isClose ? FLAG_CLOSE : 0;
    const receiptId = receipt?.id ?? 0;
    // The sequencer broadcasts the part to every shard, and every shard acknowledges it.
    if (receipt !== null) receipt.pending += this.peers.length;
    if (this.channelLog !== null) {
      this.sequence(tokens, channels, part.body, flags, Date.now(), receiptId, this.shard);
    } else if (!this.enqueue(SEQUENCER, tokens, channels, part.body, flags | FLAG_TO_SEQUENCE, Date.now(), null, this.shard, 0, receiptId)) {
      if (receipt !== null) receipt.pending -= this.peers.length;
      for (const token of part.tokens) this.undeliverable('shard_down', token, receipt);
      if (part.tokens.length === 0) this.metrics.undeliverable.inc({ reason: 'shard_down' });
    }
  }

  /**
   * On the sequencer: number a channel part and hand it to every shard. Alone, the node numbers and keeps
   * history itself; with Redis, Redis numbers it for all nodes and it is delivered when it comes back
   * through the node's subscription, so that every node writes the parts of a channel in id order.
   */
  private sequence(tokens: string, channels: string, body: Buffer, flags: number, parsedAt: number, receiptId: number, origin: number): void {
    let channelList = channels.split(',');
    // A channel named twice in a part is one history entry (and one key of the Redis script).
    if (channelList.length > 1) channelList = [...new Set(channelList)];
    const byShard: string[][] = this.peers.map(() => []);
    const invalid: string[] = [];
    let forwarded = 0;
    if (tokens !== '') {
      for (const token of tokens.split(',')) {
        const shard = localTokenShard(token, this.nodePrefix);
        if (shard >= 0 && shard < byShard.length) byShard[shard].push(token);
        else if (this.forwardToNode(token, body, flags & FLAG_CLOSE, null)) forwarded++;
        else invalid.push(token);
      }
    }
    const echo: ChannelEcho = { receiptId, origin, invalid: invalid.join(','), forwarded };
    if (this.redis === null) {
      const channelId = this.channelLog!.append(channelList, body, (flags & FLAG_CLOSE) !== 0);
      return this.broadcast(byShard, channels, body, flags & FLAG_CLOSE, parsedAt, channelId, echo);
    }
    const redis = this.redis;
    const localTokens = byShard.map((shardTokens) => shardTokens.join(',')).join(';');
    redis.sequence(channelList, localTokens, body, flags & FLAG_CLOSE, parsedAt, this.historyLength, this.#historyAgeMs, echo).then(
      (channelId) => {
        // Not following these channels: no copy comes back, so deliver it (tokens, acknowledgements) now.
        if (!redis.isFollowing(channelList)) this.broadcast(byShard, channels, body, flags & FLAG_CLOSE, parsedAt, channelId, echo);
      },
      () => {
        this.metrics.undeliverable.inc({ reason: 'redis_down' });
        this.broadcast(byShard, channels, body, flags & FLAG_CLOSE, parsedAt, 0, echo);
      },
    );
  }

  /** A channel part that came back through Redis: from this node (with its tokens and receipt) or another. */
  private receiveChannelPart(item: RemoteItem): void {
    const isOwn = item.node === this.nodeId && item.echo !== null;
    const byShard = isOwn ? item.tokens.split(';').map((shardTokens) => (shardTokens === '' ? [] : shardTokens.split(','))) : this.peers.map(() => []);
    const echo = isOwn ? item.echo! : { receiptId: 0, origin: this.shard, invalid: '', forwarded: 0 };
    this.broadcast(byShard, item.channels, item.body, item.flags & FLAG_CLOSE, item.parsedAt, item.channelId, echo);
  }

  /** Hands a numbered channel part to every shard of this node, with each shard's own tokens. */
  private broadcast(byShard: string[][], channels: string, body: Buffer, flags: number, parsedAt: number, channelId: number,
    echo: ChannelEcho): void {
    const { receiptId, origin } = echo;
    for (let shard = 0; shard < byShard.length; shard++) {
      const shardTokens = (byShard[shard] ?? []).join(',');
      if (shard === this.shard) {
        const invalid = echo.invalid === '' ? [] : echo.invalid.split(',');
        this.deliverItem(shardTokens, channels, new Delivery(body, flags !== 0, parsedAt, channelId), receiptId, origin, invalid, echo.forwarded);
      } else if (!this.enqueue(shard, shardTokens, channels, body, flags, parsedAt, null, origin, channelId, receiptId)) {
        // That shard is down: its tokens were not delivered; say so on its behalf.
        this.metrics.undeliverable.inc({ reason: 'shard_down' }, byShard[shard]?.length ?? 0);
        if (receiptId !== 0) this.acknowledge(origin, receiptId, 0, byShard[shard] ?? [], null);
      }
    }
  }

  /** Why a token is not one of this node's shards: for the metric's reason label. */
  private whyNotLocal(token: string): string {
    const route = parseTokenRoute(token);
    return route === null ? 'invalid_token' : route.nodeId !== this.nodeId ? 'other_node' : 'shard_down';
  }

  private undeliverable(reason: string, token: string, receipt: PushReceipt | null): void {
    this.metrics.undeliverable.inc({ reason });
    receipt?.noteGone(token);
  }

  /** Queues an item for another shard; false when that shard is down. */
  private enqueue(shard: number, tokens: string, channels: string, body: Buffer, flags: number, parsedAt: number,
    receipt: PushReceipt | null, origin: number, channelId: number, receiptId = receipt?.id ?? 0): boolean {
    const outbox = this.outboxes[shard];
    if (outbox === undefined || this.peers[shard] === null) return false;
    // Consecutive tokens of one part for one shard share one item (and one copy of the body).
    const last = outbox.tokens.length - 1;
    const n = last * META_FIELDS;
    if (last >= 0 && channels === '' && outbox.channels[last] === '' && outbox.bodies[last] === body
      && outbox.numbers[n + 3] === receiptId && outbox.numbers[n + 4] === origin) {
      outbox.tokens[last] += ',' + tokens;
      return true;
    }
    outbox.tokens.push(tokens);
    outbox.channels.push(channels);
    outbox.bodies.push(body);
    outbox.numbers.push(0, flags, parsedAt, receiptId, origin, channelId);
    outbox.bytes += body.length;
    if (receipt !== null) receipt.pending++;
    this.scheduleFlush();
    return true;
  }

  private acknowledge(origin: number, receiptId: number, deliveries: number, gone: string[], channels: Record<string, number> | null,
    forwarded = 0): void {
    if (origin === this.shard) {
      this.receipts.get(receiptId)?.acknowledge(deliveries, gone, channels, forwarded);
      return;
    }
    const outbox = this.outboxes[origin];
    if (outbox === undefined) return;
    outbox.acks.receipts.push(receiptId);
    outbox.acks.deliveries.push(deliveries);
    outbox.acks.gone.push(gone);
    outbox.acks.channels.push(channels);
    outbox.acks.forwarded.push(forwarded);
    this.scheduleFlush();
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
      if (outbox.isEmpty) continue;
      const port = this.peers[shard];
      if (port === null) {
        this.failOutbox(shard);
        continue;
      }
      if (outbox.acks.receipts.length > 0) {
        port.postMessage(outbox.acks);
        outbox.acks = emptyAcks();
      }
      const count = outbox.tokens.length;
      if (count === 0) continue;
      const bytes = new ArrayBuffer(outbox.bytes);
      const packed = new Uint8Array(bytes);
      const meta = Float64Array.from(outbox.numbers);
      let offset = 0;
      for (let i = 0; i < count; i++) {
        packed.set(outbox.bodies[i], offset);
        offset += outbox.bodies[i].length;
        meta[i * META_FIELDS] = offset;
      }
      const batch: PartBatch = { type: 'parts', from: this.shard, tokens: outbox.tokens, channels: outbox.channels, meta, bytes };
      port.postMessage(batch, [bytes, meta.buffer]);
      this.metrics.routerBatchSize.observe(count);
      const acks = outbox.acks;
      this.outboxes[shard] = new Outbox();
      this.outboxes[shard].acks = acks;
    }
  }

  private receive(message: PeerMessage): void {
    switch (message.type) {
      case 'parts':
        return this.receiveParts(message);
      case 'acks':
        for (let i = 0; i < message.receipts.length; i++) {
          this.receipts.get(message.receipts[i])?.acknowledge(message.deliveries[i], message.gone[i], message.channels[i], message.forwarded[i]);
        }
        return;
      case 'replay':
        // Whenever it is sent, the stream skips the ids it already has from live parts.
        return this.replay(message.channels, message.since, (replay) => {
          this.peers[message.from]?.postMessage({ type: 'replayed', id: message.id, ...replay } satisfies ReplayAnswer);
        });
      case 'interest':
        return this.noteInterest(message.from, message.channel, message.isInterested);
      case 'replayed': {
        const answer = this.replays.get(message.id);
        this.replays.delete(message.id);
        const parts = message.parts.map((part) => ({ ...part, body: Buffer.from(part.body.buffer, part.body.byteOffset, part.body.length) }));
        answer?.({ parts, isComplete: message.isComplete });
        return;
      }
    }
  }

  private receiveParts(batch: PartBatch): void {
    const meta = batch.meta;
    const bytes = Buffer.from(batch.bytes);
    let start = 0;
    for (let i = 0; i < batch.tokens.length; i++) {
      const n = i * META_FIELDS;
      const end = meta[n];
      const body = bytes.subarray(start, end);
      start = end;
      const flags = meta[n + 1];
      if ((flags & FLAG_TO_SEQUENCE) !== 0) {
        this.sequence(batch.tokens[i], batch.channels[i], body, flags, meta[n + 2], meta[n + 3], meta[n + 4]);
        continue;
      }
      const delivery = new Delivery(body, (flags & FLAG_CLOSE) !== 0, meta[n + 2], meta[n + 5]);
      this.deliverItem(batch.tokens[i], batch.channels[i], delivery, meta[n + 3], meta[n + 4], null);
    }
  }

  /** Writes an item to this shard's streams, once per stream, and acknowledges it if a push waits for it. */
  private deliverItem(tokens: string, channels: string, delivery: Delivery, receiptId: number, origin: number, alsoGone: string[] | null,
    forwarded = 0): void {
    let deliveries = 0;
    let gone: string[] | null = alsoGone;
    if (tokens !== '') {
      for (const token of tokens.split(',')) {
        const result = this.streams.deliverToToken(token, delivery);
        if (result === DELIVERED) {
          deliveries++;
        } else if (result === NOT_LIVE) {
          this.metrics.undeliverable.inc({ reason: 'gone' });
          if (receiptId !== 0) (gone ??= []).push(token);
        }
      }
    }
    let channelCounts: Record<string, number> | null = null;
    if (channels !== '') {
      channelCounts = {};
      const tally = { written: 0 };
      for (const channel of channels.split(',')) channelCounts[channel] = this.streams.deliverToChannel(channel, delivery, tally);
      deliveries += tally.written;
    }
    if (deliveries > 0) this.metrics.pushToWrite.observe((Date.now() - delivery.parsedAt) / 1000);
    if (receiptId !== 0) this.acknowledge(origin, receiptId, deliveries, gone ?? [], channelCounts, forwarded);
  }

  /** The shard is gone: what was queued for it was not delivered. */
  private failOutbox(shard: number): void {
    const outbox = this.outboxes[shard];
    if (outbox === undefined || outbox.tokens.length === 0) return;
    for (let i = 0; i < outbox.tokens.length; i++) {
      const tokens = outbox.tokens[i] === '' ? [] : outbox.tokens[i].split(',');
      this.metrics.undeliverable.inc({ reason: 'shard_down' }, Math.max(tokens.length, 1));
      const receiptId = outbox.numbers[i * META_FIELDS + 3];
      const origin = outbox.numbers[i * META_FIELDS + 4];
      if (receiptId === 0) continue;
      this.acknowledge(origin, receiptId, 0, tokens, null);
      // A part for the sequencer was to be acknowledged by every shard; the others now never will.
      if ((outbox.numbers[i * META_FIELDS + 1] & FLAG_TO_SEQUENCE) !== 0) {
        for (let k = 1; k < this.peers.length; k++) this.acknowledge(origin, receiptId, 0, [], null);
      }
    }
    this.log.warn({ peer: shard, items: outbox.tokens.length }, 'peer shard gone: the parts queued for it are undeliverable');
    const acks = outbox.acks;
    this.outboxes[shard] = new Outbox();
    this.outboxes[shard].acks = acks;
  }
}
