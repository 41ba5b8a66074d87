// This shard's link to the other muxgate nodes through Redis pub/sub: parts for their tokens, and
// channel parts for the channels this node's streams subscribe to. Batched per destination per turn.
import { Redis } from 'ioredis';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
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
  /** The node that sent it; for channel parts, the id Redis gave it and what its own node needs back. */
  node: string;
  channelId: number;
  echo: ChannelEcho | null;
}

/** What a channel part carries for the node that sent it, which delivers it when it comes back. */
export interface ChannelEcho {
  receiptId: number;
  origin: number;
  invalid: string;
  forwarded: number;
}

type HeaderItem = [tokens: string, channels: string, bodyLength: number, flags: number, parsedAt: number, echo?: ChannelEcho];
type Header = { node: string; items: HeaderItem[] };

export interface ReplayedPart {
  id: number;
  body: Buffer;
  isClose: boolean;
  at: number;
}

const ID_KEY = 'muxgate:channel-id';
/** With an age limit: `<ms>-<seq>` entries holding the id of the last part numbered before that time (see below). */
const CHECKPOINTS_KEY = 'muxgate:channel-checkpoints';

function historyKey(channel: string): string {
  return `muxgate:history:${channel}`;
}

/** The id of the last part a channel's history forgot (trimmed, or perhaps gone with age before the history began). */
function forgottenKey(channel: string): string {
  return `muxgate:forgotten:${channel}`;
}

// For both scripts: `now`, Redis's time in ms, and ageFloor(), the highest id that may have gone with age. Every
// part numbered after the first checkpoint younger than the age limit belongs to a history written to since then,
// which still exists; without such a checkpoint, none is known to remain.
const AGE_FLOOR = `
local function ageFloor(checkpoints, now, maxAge, current)
  local first = redis.call('XRANGE', checkpoints, tostring(now - maxAge + 1), '+', 'COUNT', 1)
  if #first == 0 then return current end
  return tonumber(first[1][2][2])
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

// Numbers a channel part with one id for all nodes, keeps it in each channel's history stream (the last ARGV[1]
// parts; the id of the last one trimmed is remembered), and publishes `<id>\n<frame>` on each channel's subject.
// With an age limit (ARGV[2] ms), a channel's history and what it remembers expire that long after its last part,
// and a checkpoint (at most 60 per age limit) records which ids were numbered by when. One script, so that ids are
// published in increasing order.
// KEYS: id counter, checkpoints, then a history stream and its forgotten id per channel; ARGV: parts kept, age
// limit, frame, channel subjects.
const SEQUENCE_SCRIPT = AGE_FLOOR + `
local id = redis.call('INCR', KEYS[1])
local keep = tonumber(ARGV[1])
local maxAge = tonumber(ARGV[2])
if keep > 0 then
  if maxAge > 0 then
    local step = math.max(1, math.floor(maxAge / 60))
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    if #last == 0 or now - tonumber(string.match(last[1][1], '^(%d+)')) >= step then
      redis.call('XADD', KEYS[2], 'MINID', tostring(now - maxAge - 2 * step), '*', 'id', id - 1)
      redis.call('PEXPIRE', KEYS[2], maxAge + 2 * step)
    end
  end
  for i = 3, #KEYS, 2 do
    local length = redis.call('XLEN', KEYS[i])
    if length == 0 and maxAge > 0 then
      -- A new history: the parts this channel had may have gone with age.
      redis.call('SET', KEYS[i + 1], ageFloor(KEYS[2], now, maxAge, id - 1))
    elseif length >= keep then
      local oldest = redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', 1)
      redis.call('SET', KEYS[i + 1], string.match(oldest[1][1], '%-(%d+)$'))
      redis.call('XTRIM', KEYS[i], 'MAXLEN', keep - 1)
    end
    redis.call('XADD', KEYS[i], '0-' .. id, 'm', ARGV[3])
    if maxAge > 0 then
      redis.call('PEXPIRE', KEYS[i], maxAge)
      redis.call('PEXPIRE', KEYS[i + 1], maxAge)
    end
  end
end
for i = 4, #ARGV do redis.call('PUBLISH', ARGV[i], id .. '\\n' .. ARGV[3]) end
return id
`;

// What a resuming stream needs, read at once: the current id, then per channel the id below which its history no
// longer reaches and its parts numbered above ARGV[2]. KEYS: id counter, checkpoints, then a history stream and its
// forgotten id per channel; ARGV: age limit, since.
const REPLAY_SCRIPT = AGE_FLOOR + `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local maxAge = tonumber(ARGV[1])
local result = { current }
for i = 3, #KEYS, 2 do
  local floor = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if maxAge > 0 and redis.call('EXISTS', KEYS[i]) == 0 then floor = ageFloor(KEYS[2], now, maxAge, current) end
  result[#result + 1] = floor
  result[#result + 1] = redis.call('XRANGE', KEYS[i], '(0-' .. ARGV[2], '+')
end
return result
`;

/** An entry of a history stream: its id (`0-<channel id>`) and its one field, `m`, the part's frame. */
type HistoryEntry = [id: Buffer, fields: [Buffer, Buffer]];

function channelKeys(channels: readonly string[]): string[] {
  const keys = [ID_KEY, CHECKPOINTS_KEY];
  for (const channel of channels) keys.push(historyKey(channel), forgottenKey(channel));
  return keys;
}

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
  /** Channels this node subscribes to, and those whose subscription is in place. */
  readonly #wanted = new Set<string>();
  private readonly following = new Set<string>();
  private readonly followWaiters = new Map<string, Array<() => void>>();
  private readonly warnings: RepeatedWarnings;

  constructor(url: string, nodeId: string, shard: number, metrics: ShardMetrics, log: Logger, warnings: RepeatedWarnings,
    receive: (items: RemoteItem[], isChannelPart: boolean) => void) {
    this.nodeId = nodeId;
    this.metrics = metrics;
    this.log = log;
    this.warnings = warnings;
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

  /**
   * Numbers a channel part for all nodes, keeps it in the channels' history (the last `keep` parts) and
   * publishes it to every node that follows one of the channels, this one included. Rejects when Redis is down.
   */
  async sequence(channels: string[], tokens: string, body: Buffer, flags: number, parsedAt: number, keep: number, maxAgeMs: number,
    echo: ChannelEcho): Promise<number> {
    const frame = this.frame({ node: this.nodeId, items: [[tokens, channels.join(','), body.length, flags, parsedAt, echo]] }, [body]);
    const keys = channelKeys(channels);
    const id = await this.publisher.eval(SEQUENCE_SCRIPT, keys.length, ...keys, keep, maxAgeMs, frame, ...channels.map(channelSubject));
    this.metrics.redisParts.inc({ direction: 'sent' });
    return Number(id);
  }

  /** The channel parts numbered above `since`, from the history in Redis, and whether it still reaches back. */
  async replay(channels: string[], since: number, maxAgeMs: number): Promise<{ parts: ReplayedPart[]; isComplete: boolean }> {
    // Read the history only once live parts come through the subscription: nothing falls in between.
    await this.whenFollowing(channels, 2000);
    const keys = channelKeys(channels);
    const [current, ...perChannel] = await this.publisher.callBuffer('EVAL', REPLAY_SCRIPT, keys.length, ...keys, maxAgeMs, since) as
      [number, ...(number | HistoryEntry[])[]];
    let isComplete = since <= current;
    const byId = new Map<number, ReplayedPart>();
    for (let i = 0; i < perChannel.length; i += 2) {
      if (since < (perChannel[i] as number)) isComplete = false;
      for (const [rawId, fields] of perChannel[i + 1] as HistoryEntry[]) {
        const id = Number(rawId.toString('latin1').split('-')[1]);
        const item = this.parse(fields[1])?.items[0];
        if (item !== undefined) byId.set(id, { id, body: item.body, isClose: (item.flags & 1) !== 0, at: item.parsedAt });
      }
    }
    return { parts: [...byId.values()].sort((a, b) => a.id - b.id), isComplete };
  }

  subscribeChannel(channel: string): void {
    this.#wanted.add(channel);
    this.subscriber.subscribe(channelSubject(channel)).then(() => {
      // Unsubscribed meanwhile: not followed, and not remembered.
      if (!this.#wanted.has(channel)) return;
      this.following.add(channel);
      for (const resolve of this.followWaiters.get(channel) ?? []) resolve();
      this.followWaiters.delete(channel);
    }, (error: Error) => this.noteDown(error.message));
  }

  /** Resolves once the node follows every one of the channels (or after timeoutMs). */
  whenFollowing(channels: readonly string[], timeoutMs: number): Promise<void> {
    const missing = channels.filter((channel) => !this.following.has(channel));
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
          const waiters = this.followWaiters.get(channel)?.filter((other) => other !== waiter) ?? [];
          if (waiters.length > 0) this.followWaiters.set(channel, waiters);
          else this.followWaiters.delete(channel);
        }
        resolve();
      }, timeoutMs);
      for (const channel of missing) {
        const waiters = this.followWaiters.get(channel) ?? [];
        waiters.push(waiter);
        this.followWaiters.set(channel, waiters);
      }
    });
  }

  unsubscribeChannel(channel: string): void {
    this.#wanted.delete(channel);
    this.following.delete(channel);
    void this.subscriber.unsubscribe(channelSubject(channel)).catch(() => {});
  }

  /** Whether this node's subscription to one of the channels is in place: its own parts then come back through it. */
  isFollowing(channels: readonly string[]): boolean {
    return this.subscriber.status === 'ready' && channels.some((channel) => this.following.has(channel));
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
      this.publisher.publish(subject, this.frame(header, bodies)).catch((error: Error) => {
        // Published while the connection dropped: these parts are lost for the other node.
        this.metrics.undeliverable.inc({ reason: 'redis_down' }, header.items.length);
        this.noteDown(error.message);
      });
      this.metrics.redisParts.inc({ direction: 'sent' }, header.items.length);
    }
  }

  /** [u32 header length][header JSON][bodies]: one JSON per message, not per part. */
  private frame(header: Header, bodies: Buffer[]): Buffer {
    const json = Buffer.from(JSON.stringify(header));
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(json.length);
    return Buffer.concat([length, json, ...bodies]);
  }

  private parse(frame: Buffer, channelId = 0): { node: string; items: RemoteItem[] } | null {
    try {
      const length = frame.readUInt32BE(0);
      const header = JSON.parse(frame.toString('utf8', 4, 4 + length)) as Header;
      let at = 4 + length;
      const items: RemoteItem[] = [];
      for (const [tokens, channels, bodyLength, flags, parsedAt, echo] of header.items) {
        items.push({ tokens, channels, body: frame.subarray(at, at + bodyLength), flags, parsedAt, node: header.node, channelId, echo: echo ?? null });
        at += bodyLength;
      }
      return { node: header.node, items };
    } catch (error) {
      // The parser's message may quote the frame, tokens and all: the line is masked, and one per interval.
      this.warnings.warn('redis_message_unreadable', { err: (error as Error).message }, 'unreadable message from Redis dropped');
      return null;
    }
  }

  private onMessage(subject: Buffer, message: Buffer): void {
    const isChannelPart = subject.toString('latin1', 0, CHANNEL_PREFIX.length) === CHANNEL_PREFIX;
    let channelId = 0;
    let frame = message;
    if (isChannelPart) {
      // `<id>\n<frame>`, as the sequence script publishes it.
      const newline = message.indexOf(10);
      channelId = Number(message.toString('latin1', 0, newline));
      frame = message.subarray(newline + 1);
    }
    const parsed = this.parse(frame, channelId);
    if (parsed === null) return;
    const now = Date.now();
    for (const item of parsed.items) this.metrics.redisLatency.observe(Math.max(0, now - item.parsedAt) / 1000);
    this.metrics.redisParts.inc({ direction: 'received' }, parsed.items.length);
    this.receive(parsed.items, isChannelPart);
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
