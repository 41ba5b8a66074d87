// This shard's link to the other muxgate nodes through Redis pub/sub: parts for their tokens, and
// channel parts for the channels this node's streams subscribe to. Batched per destination per turn.
import { Redis } from 'ioredis';
import type { Logger } from '../src/log.ts';
import type { ShardMetrics } from './metrics.ts';

/** One part as it travels between nodes. */
export interface RemoteItem {
  /** Comma-joined tokens of the receiving shard ('' for none). */
  tokens: string;
  /** Comma-joined channels ('' for none). */
  channels: string;
  body: Buffer;
  flags: number;
  parsedAt: number;
}

type Header = { node: string; items: Array<[string, string, number, number, number]> };

interface Pending {
  header: Header;
  bodies: Buffer[];
}

export function shardSubject(nodeId: string, shard: number): string {
  return `muxgate:shard:${nodeId}:${shard}`;
}

export function channelSubject(channel: string): string {
  return `muxgate:chan:${channel}`;
}

const CHANNEL_PREFIX = 'muxgate:chan:';
/** One warning per outage, not one per part. */
const DOWN_LOG_INTERVAL_MS = 5000;

export class RedisLink {
  private readonly nodeId: string;
  private readonly metrics: ShardMetrics;
  private readonly log: Logger;
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly receive: (items: RemoteItem[], isChannelPart: boolean) => void;
  private pending = new Map<string, Pending>();
  private isFlushScheduled = false;
  private lastDownLogAt = 0;

  constructor(url: string, nodeId: string, shard: number, metrics: ShardMetrics, log: Logger,
    receive: (items: RemoteItem[], isChannelPart: boolean) => void) {
    this.nodeId = nodeId;
    this.metrics = metrics;
    this.log = log;
    this.receive = receive;
    // Parts are not queued while Redis is away: they are counted as undeliverable instead.
    const options = { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: false };
    this.publisher = new Redis(url, options);
    this.subscriber = new Redis(url, { ...options, enableOfflineQueue: true, autoResubscribe: true });
    for (const client of [this.publisher, this.subscriber]) {
      client.on('error', (error: Error) => this.noteDown(error.message));
      client.on('ready', () => this.updateState());
      client.on('end', () => this.updateState());
      client.on('close', () => this.updateState());
    }
    this.subscriber.on('messageBuffer', (subject: Buffer, message: Buffer) => this.onMessage(subject, message));
    void this.subscriber.subscribe(shardSubject(nodeId, shard)).catch((error: Error) => this.noteDown(error.message));
  }

  get isUp(): boolean {
    return this.publisher.status === 'ready' && this.subscriber.status === 'ready';
  }

  /** Queues an item for a shard of another node; false when Redis is down (the caller counts it undeliverable). */
  sendToShard(nodeId: string, shard: number, tokens: string, body: Buffer, flags: number, parsedAt: number): boolean {
    return this.enqueue(shardSubject(nodeId, shard), tokens, '', body, flags, parsedAt);
  }

  /** Queues a channel part for the other nodes that subscribe to the channel. */
  publishChannel(channel: string, body: Buffer, flags: number, parsedAt: number): boolean {
    return this.enqueue(channelSubject(channel), '', channel, body, flags, parsedAt);
  }

  subscribeChannel(channel: string): void {
    void this.subscriber.subscribe(channelSubject(channel)).catch((error: Error) => this.noteDown(error.message));
  }

  unsubscribeChannel(channel: string): void {
    void this.subscriber.unsubscribe(channelSubject(channel)).catch(() => {});
  }

  close(): void {
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }

  private enqueue(subject: string, tokens: string, channels: string, body: Buffer, flags: number, parsedAt: number): boolean {
    if (!this.isUp) {
      this.noteDown('not connected');
      return false;
    }
    let pending = this.pending.get(subject);
    if (pending === undefined) {
      pending = { header: { node: this.nodeId, items: [] }, bodies: [] };
      this.pending.set(subject, pending);
    }
    // Consecutive tokens of one part for one shard share one item (and one copy of the body).
    const last = pending.header.items.length - 1;
    if (last >= 0 && channels === '' && pending.bodies[last] === body && pending.header.items[last][1] === '') {
      pending.header.items[last][0] += ',' + tokens;
      return true;
    }
    pending.header.items.push([tokens, channels, body.length, flags, parsedAt]);
    pending.bodies.push(body);
    if (!this.isFlushScheduled) {
      this.isFlushScheduled = true;
      setImmediate(() => this.flush());
    }
    return true;
  }

  private flush(): void {
    this.isFlushScheduled = false;
    const batches = this.pending;
    this.pending = new Map();
    for (const [subject, { header, bodies }] of batches) {
      const json = Buffer.from(JSON.stringify(header));
      const length = Buffer.allocUnsafe(4);
      length.writeUInt32BE(json.length);
      this.publisher.publish(subject, Buffer.concat([length, json, ...bodies])).catch((error: Error) => {
        // Published while the connection dropped: these parts are lost for the other node.
        this.metrics.undeliverable.inc({ reason: 'redis_down' }, header.items.length);
        this.noteDown(error.message);
      });
      this.metrics.redisParts.inc({ direction: 'sent' }, header.items.length);
    }
  }

  private onMessage(subject: Buffer, message: Buffer): void {
    let header: Header;
    let at: number;
    try {
      const length = message.readUInt32BE(0);
      header = JSON.parse(message.toString('utf8', 4, 4 + length)) as Header;
      at = 4 + length;
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, 'unreadable message from Redis dropped');
      return;
    }
    const isChannelPart = subject.toString('latin1', 0, CHANNEL_PREFIX.length) === CHANNEL_PREFIX;
    // This node's own channel parts come back through the subscription: they were delivered already.
    if (isChannelPart && header.node === this.nodeId) return;
    const items: RemoteItem[] = [];
    const now = Date.now();
    for (const [tokens, channels, bodyLength, flags, parsedAt] of header.items) {
      items.push({ tokens, channels, body: message.subarray(at, at + bodyLength), flags, parsedAt });
      at += bodyLength;
      this.metrics.redisLatency.observe(Math.max(0, now - parsedAt) / 1000);
    }
    this.metrics.redisParts.inc({ direction: 'received' }, items.length);
    this.receive(items, isChannelPart);
  }

  private updateState(): void {
    this.metrics.redisUp.set(this.isUp ? 1 : 0);
  }

  private noteDown(reason: string): void {
    this.updateState();
    const now = Date.now();
    if (now - this.lastDownLogAt < DOWN_LOG_INTERVAL_MS) return;
    this.lastDownLogAt = now;
    this.log.warn({ reason }, 'Redis unreachable: parts for other nodes are undeliverable until it is back');
  }
}
