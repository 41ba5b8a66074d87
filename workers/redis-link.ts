// This shard's link to the other muxgate nodes through Redis pub/sub: parts for their tokens, batched per destination
// per turn, and channel parts for the channels this node's streams subscribe to, numbered and kept by Redis
// (redis-history.ts). Messages are encoded by node-codec.ts.
import { Redis } from 'ioredis';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { TokenRoute } from '../src/protocol/token.ts';
import type { ShardMetrics } from './metrics.ts';
import type { LoggedPart, Replay } from './channel-log.ts';
import { tokenItem, type PartBody, type RoutedItem } from './routed-item.ts';
import { decodeNodeMessage, encodeNodeMessage, type ChannelEcho, type NodeMessage } from './node-codec.ts';
import { REPLAY_SCRIPT, SEQUENCE_SCRIPT, channelKeys, type HistoryEntry } from './redis-history.ts';
import { MESSAGES, atTurnEnd } from './turn-end.ts';

/** Gets what comes from other nodes: parts for this shard's tokens, or channel parts (numbered) for the sequencer. */
export type NodeReceiver = (message: NodeMessage, isChannelPart: boolean) => void;

export function shardSubject(nodeId: string, shard: number): string {
  return `muxgate:shard:${nodeId}:${shard}`;
}

export function channelSubject(channel: string): string {
  return `muxgate:chan:${channel}`;
}

const CHANNEL_PREFIX = 'muxgate:chan:';
/** How long a replay waits for the node to follow the channels before it reads the history anyway. */
const FOLLOW_WAIT_MS = 2000;

export class RedisLink {
  readonly #nodeId: string;
  readonly #shard: number;
  readonly #metrics: ShardMetrics;
  readonly #warnings: RepeatedWarnings;
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  /** Token items per subject, for the next flush. */
  #pending = new Map<string, RoutedItem[]>();
  #isFlushScheduled = false;
  readonly #flush = (): void => this.#flushAll();
  /** Channels this node subscribes to, and those whose subscription is in place. */
  readonly #wanted = new Set<string>();
  readonly #following = new Set<string>();
  readonly #followWaiters = new Map<string, Array<() => void>>();

  constructor(url: string, nodeId: string, shard: number, metrics: ShardMetrics, warnings: RepeatedWarnings) {
    this.#nodeId = nodeId;
    this.#shard = shard;
    this.#metrics = metrics;
    this.#warnings = warnings;
    // Parts are not queued while Redis is away: they are counted as undeliverable instead.
    const options = { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: false };
    this.#publisher = new Redis(url, options);
    this.#subscriber = new Redis(url, { ...options, enableOfflineQueue: true, autoResubscribe: true });
    for (const client of [this.#publisher, this.#subscriber]) {
      client.on('error', (error: Error) => this.#noteDown(error.message));
      client.on('ready', () => this.#updateState());
      client.on('end', () => this.#updateState());
      client.on('close', () => this.#updateState());
    }
  }

  get isUp(): boolean {
    return this.#publisher.status === 'ready' && this.#subscriber.status === 'ready';
  }

  /** Starts taking messages for this shard (and, as they are subscribed, for channels), given to `receive`. */
  listen(receive: NodeReceiver): void {
    this.#subscriber.on('messageBuffer', (subject: Buffer, message: Buffer) => this.#onMessage(subject, message, receive));
    void this.#subscriber.subscribe(shardSubject(this.#nodeId, this.#shard)).catch((error: Error) => this.#noteDown(error.message));
  }

  /** Queues a token's part for its shard on another node; false when Redis is down (the caller counts it undeliverable). */
  sendToShard(route: TokenRoute, token: string, part: PartBody): boolean {
    if (!this.isUp) {
      this.#noteDown('not connected');
      return false;
    }
    const subject = shardSubject(route.nodeId, route.shard);
    let items = this.#pending.get(subject);
    if (items === undefined) {
      items = [];
      this.#pending.set(subject, items);
    }
    // Consecutive tokens of one part for one shard share one item (and one copy of the body).
    const last = items[items.length - 1];
    if (last !== undefined && last.body === part.body) {
      last.tokens.push(token);
      return true;
    }
    const item = tokenItem(part, Date.now(), 0, 0);
    item.tokens.push(token);
    items.push(item);
    if (!this.#isFlushScheduled) {
      this.#isFlushScheduled = true;
      atTurnEnd(MESSAGES, this.#flush);
    }
    return true;
  }

  /**
   * Numbers a channel part for all nodes, keeps it in the channels' history (the last `keep` parts, for `maxAgeMs`) and
   * publishes it to every node that follows one of the channels, this one included. Rejects when Redis is down.
   */
  async sequence(part: RoutedItem, echo: ChannelEcho, keep: number, maxAgeMs: number): Promise<number> {
    const frame = encodeNodeMessage(this.#nodeId, [part], echo);
    const keys = channelKeys(part.channels);
    const id = await this.#publisher.eval(SEQUENCE_SCRIPT, keys.length, ...keys, keep, maxAgeMs, frame, ...part.channels.map(channelSubject));
    this.#metrics.redisParts.inc({ direction: 'sent' });
    return Number(id);
  }

  /** The channel parts numbered above `since`, from the history in Redis, and whether it still reaches back. */
  async replay(channels: string[], since: number, maxAgeMs: number): Promise<Replay> {
    // Read the history only once live parts come through the subscription: nothing falls in between.
    await this.whenFollowing(channels, FOLLOW_WAIT_MS);
    const keys = channelKeys(channels);
    const [current, ...perChannel] = await this.#publisher.callBuffer('EVAL', REPLAY_SCRIPT, keys.length, ...keys, maxAgeMs, since) as
      [number, ...(number | HistoryEntry[])[]];
    let isComplete = since <= current;
    const byId = new Map<number, LoggedPart>();
    for (let i = 0; i < perChannel.length; i += 2) {
      if (since < (perChannel[i] as number)) isComplete = false;
      for (const [rawId, fields] of perChannel[i + 1] as HistoryEntry[]) {
        const id = Number(rawId.toString('latin1').split('-')[1]);
        const item = this.#decode(fields[1], id)?.items[0];
        if (item !== undefined) byId.set(id, { id, body: item.body, isClose: item.isClose, isBinary: item.isBinary, at: item.parsedAt });
      }
    }
    return { parts: [...byId.values()].sort((a, b) => a.id - b.id), isComplete };
  }

  subscribeChannel(channel: string): void {
    this.#wanted.add(channel);
    this.#subscriber.subscribe(channelSubject(channel)).then(() => {
      // Unsubscribed meanwhile: not followed, and not remembered.
      if (!this.#wanted.has(channel)) return;
      this.#following.add(channel);
      for (const resolve of this.#followWaiters.get(channel) ?? []) resolve();
      this.#followWaiters.delete(channel);
    }, (error: Error) => this.#noteDown(error.message));
  }

  /** Resolves once the node follows every one of the channels (or after timeoutMs). */
  whenFollowing(channels: readonly string[], timeoutMs: number): Promise<void> {
    const missing = channels.filter((channel) => !this.#following.has(channel));
    if (missing.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      let left = missing.length;
      const waiter = () => {
        if (--left > 0) return;
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        // Given up on: nothing of it stays behind for channels that are never followed.
        for (const channel of missing) {
          const waiters = this.#followWaiters.get(channel)?.filter((other) => other !== waiter) ?? [];
          if (waiters.length > 0) this.#followWaiters.set(channel, waiters);
          else this.#followWaiters.delete(channel);
        }
        resolve();
      }, timeoutMs);
      for (const channel of missing) {
        const waiters = this.#followWaiters.get(channel) ?? [];
        waiters.push(waiter);
        this.#followWaiters.set(channel, waiters);
      }
    });
  }

  unsubscribeChannel(channel: string): void {
    this.#wanted.delete(channel);
    this.#following.delete(channel);
    void this.#subscriber.unsubscribe(channelSubject(channel)).catch(() => {});
  }

  /** Whether this node's subscription to one of the channels is in place: its own parts then come back through it. */
  isFollowing(channels: readonly string[]): boolean {
    return this.#subscriber.status === 'ready' && channels.some((channel) => this.#following.has(channel));
  }

  close(): void {
    this.#publisher.disconnect();
    this.#subscriber.disconnect();
  }

  #flushAll(): void {
    this.#isFlushScheduled = false;
    const batches = this.#pending;
    this.#pending = new Map();
    for (const [subject, items] of batches) {
      this.#publisher.publish(subject, encodeNodeMessage(this.#nodeId, items, null)).catch((error: Error) => {
        // Published while the connection dropped: these parts are lost for the other node.
        this.#metrics.undeliverable.inc({ reason: 'redis_down' }, items.length);
        this.#noteDown(error.message);
      });
      this.#metrics.redisParts.inc({ direction: 'sent' }, items.length);
    }
  }

  #decode(frame: Buffer, channelId: number): NodeMessage | null {
    try {
      return decodeNodeMessage(frame, channelId);
    } catch (error) {
      // The parser's message may quote the frame, tokens and all: the line is masked, and one per interval.
      this.#warnings.warn('redis_message_unreadable', { err: (error as Error).message }, 'unreadable message from Redis dropped');
      return null;
    }
  }

  #onMessage(subject: Buffer, message: Buffer, receive: NodeReceiver): void {
    const isChannelPart = subject.toString('latin1', 0, CHANNEL_PREFIX.length) === CHANNEL_PREFIX;
    let channelId = 0;
    let frame = message;
    if (isChannelPart) {
      // `<id>\n<frame>`, as the sequence script publishes it.
      const newline = message.indexOf(10);
      channelId = Number(message.toString('latin1', 0, newline));
      frame = message.subarray(newline + 1);
    }
    const decoded = this.#decode(frame, channelId);
    if (decoded === null) return;
    const now = Date.now();
    for (const item of decoded.items) this.#metrics.redisLatency.observe(Math.max(0, now - item.parsedAt) / 1000);
    this.#metrics.redisParts.inc({ direction: 'received' }, decoded.items.length);
    receive(decoded, isChannelPart);
  }

  #updateState(): void {
    this.#metrics.redisUp.set(this.isUp ? 1 : 0);
  }

  #noteDown(reason: string): void {
    this.#updateState();
    // One line per interval for an outage, not one per part.
    this.#warnings.warn('redis_down', { reason }, 'Redis unreachable: parts for other nodes are undeliverable until it is back');
  }
}
