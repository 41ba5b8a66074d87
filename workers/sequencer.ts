// The node's channel sequencer (on shard 0): numbers every channel part, through its channel log alone or through Redis
// with several nodes, and hands it to every shard of the node with each shard's own tokens.
import { localTokenShard } from '../src/protocol/token.ts';
import type { ShardMetrics } from './metrics.ts';
import type { ChannelLog } from './channel-log.ts';
import type { Inbox } from './inbox.ts';
import type { NodeForward } from './node-forward.ts';
import type { Peers } from './peers.ts';
import type { Receipts } from './push-receipt.ts';
import type { ChannelEcho } from './node-codec.ts';
import type { RedisLink } from './redis-link.ts';
import type { RoutedItem } from './routed-item.ts';

/** The shard that numbers channel parts and keeps their history. */
export const SEQUENCER = 0;

export interface SequencerOptions {
  nodeId: string;
  channelLog: ChannelLog;
  redis: RedisLink | null;
  /** With Redis: the parts Redis keeps per channel (0: none), and for how long after the channel's last (0: for ever). */
  historyLength: number;
  historyAgeMs: number;
  peers: Peers;
  inbox: Inbox;
  receipts: Receipts;
  forward: NodeForward;
  metrics: ShardMetrics;
}

export class Sequencer {
  readonly #ctx: SequencerOptions;
  readonly #nodePrefix: string;

  constructor(options: SequencerOptions) {
    this.#ctx = options;
    this.#nodePrefix = options.nodeId + '.';
  }

  /**
   * Numbers a channel part (its tokens are all the part's) and hands it to every shard. Alone, the node numbers it and
   * keeps its history itself; with Redis, Redis numbers it for all nodes and it is delivered when it comes back through
   * the node's subscription, so that every node writes the parts of a channel in id order.
   */
  sequence(item: RoutedItem): void {
    // A channel named twice in a part is one history entry (and one key of the Redis script).
    const channels = item.channels.length > 1 ? [...new Set(item.channels)] : item.channels;
    const { channelLog, redis, forward, metrics } = this.#ctx;
    const tokensByShard = this.#noTokens();
    const echo: ChannelEcho = { receiptId: item.receiptId, origin: item.origin, tokensByShard, invalid: [], forwarded: 0 };
    for (const token of item.tokens) {
      const shard = localTokenShard(token, this.#nodePrefix);
      if (shard >= 0 && shard < tokensByShard.length) tokensByShard[shard].push(token);
      else if (forward.send(token, item, null)) echo.forwarded++;
      else echo.invalid.push(token);
    }
    const part: RoutedItem = { ...item, tokens: [], channels, isToSequence: false };
    if (redis === null) {
      part.channelId = channelLog.append(channels, item.body, item.isClose, item.isBinary);
      return this.#broadcast(part, echo);
    }
    redis.sequence(part, echo, this.#ctx.historyLength, this.#ctx.historyAgeMs).then(
      (channelId) => {
        // Not following these channels: no copy comes back, so deliver it (tokens, acknowledgements) now.
        if (redis.isFollowing(channels)) return;
        part.channelId = channelId;
        this.#broadcast(part, echo);
      },
      () => {
        metrics.undeliverable.inc({ reason: 'redis_down' });
        this.#broadcast(part, echo);
      },
    );
  }

  /** A channel part that came back through Redis: from this node (with its tokens and receipt) or another. */
  receiveFromRedis(part: RoutedItem, node: string, echo: ChannelEcho | null): void {
    if (node === this.#ctx.nodeId && echo !== null) return this.#broadcast(part, echo);
    this.#broadcast(part, { receiptId: 0, origin: SEQUENCER, tokensByShard: this.#noTokens(), invalid: [], forwarded: 0 });
  }

  /** An empty token list per shard. */
  #noTokens(): string[][] {
    const lists: string[][] = [];
    for (let shard = 0; shard < this.#ctx.peers.shardCount; shard++) lists.push([]);
    return lists;
  }

  /** Hands a numbered channel part to every shard of this node, with each shard's own tokens. */
  #broadcast(part: RoutedItem, echo: ChannelEcho): void {
    const { peers, inbox, receipts, metrics } = this.#ctx;
    const { receiptId, origin, tokensByShard } = echo;
    for (let shard = 0; shard < peers.shardCount; shard++) {
      const item: RoutedItem = { ...part, tokens: tokensByShard[shard] ?? [], receiptId, origin };
      if (shard === SEQUENCER) {
        inbox.deliver(item, echo.invalid, echo.forwarded);
      } else if (!peers.send(shard, item)) {
        // That shard is down: its tokens were not delivered; say so on its behalf.
        metrics.undeliverable.inc({ reason: 'shard_down' }, item.tokens.length);
        if (receiptId !== 0) receipts.acknowledge(origin, { receiptId, deliveries: 0, gone: item.tokens, channels: null, forwarded: 0 });
      }
    }
  }
}
