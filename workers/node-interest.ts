// Which channels this node follows through Redis (multi-node only): each shard reports the channels its streams
// subscribe to; the sequencer subscribes the node to a channel while any shard's streams do.
import type { RedisLink } from './redis-link.ts';
import type { Peers } from './peers.ts';
import type { InterestMessage } from './peer-codec.ts';
import { SEQUENCER } from './sequencer.ts';

export class NodeInterest {
  readonly #shard: number;
  readonly #peers: Peers;
  readonly #redis: RedisLink;
  /** On the sequencer: channel → the shards whose streams subscribe to it. */
  readonly #shardsByChannel = new Map<string, Set<number>>();

  constructor(shard: number, peers: Peers, redis: RedisLink) {
    this.#shard = shard;
    this.#peers = peers;
    this.#redis = redis;
  }

  /** This shard's streams now do (or no longer) subscribe to a channel. */
  report(channel: string, isInterested: boolean): void {
    if (this.#shard === SEQUENCER) return this.note(this.#shard, channel, isInterested);
    this.#peers.post(SEQUENCER, { type: 'interest', from: this.#shard, channel, isInterested } satisfies InterestMessage);
  }

  /** On the sequencer: a shard's streams do (or no longer) subscribe to a channel. */
  note(shard: number, channel: string, isInterested: boolean): void {
    let shards = this.#shardsByChannel.get(channel);
    if (isInterested) {
      if (shards === undefined) {
        shards = new Set();
        this.#shardsByChannel.set(channel, shards);
        this.#redis.subscribeChannel(channel);
      }
      shards.add(shard);
    } else if (shards !== undefined && shards.delete(shard) && shards.size === 0) {
      this.#shardsByChannel.delete(channel);
      this.#redis.unsubscribeChannel(channel);
    }
  }

  /** On the sequencer: a shard is gone, and with it its streams. */
  forget(shard: number): void {
    for (const channel of [...this.#shardsByChannel.keys()]) this.note(shard, channel, false);
  }
}
