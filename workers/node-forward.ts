// Tokens that name no shard of this node: to their node through Redis, or counted undeliverable with the reason.
import { parseTokenRoute } from '../src/protocol/token.ts';
import type { ShardMetrics } from './metrics.ts';
import type { PushReceipt } from './push-receipt.ts';
import type { RedisLink } from './redis-link.ts';
import type { PartBody } from './routed-item.ts';

export class NodeForward {
  readonly #nodeId: string;
  readonly #redis: RedisLink | null;
  readonly #metrics: ShardMetrics;

  constructor(nodeId: string, redis: RedisLink | null, metrics: ShardMetrics) {
    this.#nodeId = nodeId;
    this.#redis = redis;
    this.#metrics = metrics;
  }

  /** True when the token went to its node (counted as forwarded, not delivered). */
  send(token: string, part: PartBody, receipt: PushReceipt | null): boolean {
    const route = parseTokenRoute(token);
    // Not a token, or one of this node's for a shard it does not have.
    if (route === null || route.nodeId === this.#nodeId) return this.#undeliverable(route === null ? 'invalid_token' : 'shard_down', token, receipt);
    if (this.#redis === null) return this.#undeliverable('other_node', token, receipt);
    if (!this.#redis.sendToShard(route, token, part)) return this.#undeliverable('redis_down', token, receipt);
    if (receipt !== null) receipt.forwarded++;
    return true;
  }

  #undeliverable(reason: string, token: string, receipt: PushReceipt | null): false {
    this.#metrics.undeliverable.inc({ reason });
    receipt?.noteGone(token);
    return false;
  }
}
