// The shard's router: a part's tokens to this shard's streams, to the shard that owns them (peers.ts) or to their node
// (node-forward.ts); a channel part to the sequencer (sequencer.ts). It also hands what arrives from the other shards
// and nodes to the part of the router it is for, and builds those parts: receipts, inbox, node interest, resume.
import type { MessagePort } from 'node:worker_threads';
import type { Part } from '../src/protocol/multiplex-parser.ts';
import { localTokenShard } from '../src/protocol/token.ts';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { ShardMetrics } from './metrics.ts';
import type { HeldStream } from './held-stream.ts';
import { type HeldStreams, DELIVERED, NOT_LIVE } from './held-streams.ts';
import type { ChannelLog } from './channel-log.ts';
import { Delivery } from './delivery.ts';
import { Inbox } from './inbox.ts';
import { NodeForward } from './node-forward.ts';
import { NodeInterest } from './node-interest.ts';
import type { NodeMessage } from './node-codec.ts';
import type { RedisLink } from './redis-link.ts';
import { decodePartBatch, type PeerMessage } from './peer-codec.ts';
import { Peers } from './peers.ts';
import { Receipts, type PushReceipt } from './push-receipt.ts';
import { Resume } from './resume.ts';
import { tokenItem, type RoutedItem } from './routed-item.ts';
import { SEQUENCER, Sequencer } from './sequencer.ts';

export type PartSource = 'response' | 'push';

export interface RouterOptions {
  shard: number;
  nodeId: string;
  shardCount: number;
  streams: HeldStreams;
  /** The channel history: only on the sequencer, which is the shard that has one. */
  channelLog: ChannelLog | null;
  /** Several nodes: tokens of other nodes and channel parts go through Redis, which keeps the history. */
  redis: RedisLink | null;
  /** Parts kept per channel (0: no history), and for how long after the channel's last part (0: for ever). */
  historyLength: number;
  historyAgeMs: number;
  metrics: ShardMetrics;
  log: Logger;
  warnings: RepeatedWarnings;
}

export class Router {
  readonly #shard: number;
  readonly #nodePrefix: string;
  readonly #streams: HeldStreams;
  readonly #metrics: ShardMetrics;
  readonly #log: Logger;
  readonly #peers: Peers;
  readonly #receipts: Receipts;
  readonly #inbox: Inbox;
  readonly #forward: NodeForward;
  readonly #interest: NodeInterest | null;
  readonly #resume: Resume;
  /** Only on the sequencer shard. */
  readonly #sequencer: Sequencer | null;
  /** Per shard, the item the part being routed sends there: one per part and shard, however many tokens. */
  readonly #outgoing: (RoutedItem | null)[];

  constructor(options: RouterOptions) {
    const { shard, nodeId, shardCount, streams, channelLog, redis, historyLength, historyAgeMs, metrics, log, warnings } = options;
    this.#shard = shard;
    this.#nodePrefix = nodeId + '.';
    this.#streams = streams;
    this.#metrics = metrics;
    this.#log = log;
    this.#peers = new Peers(shardCount, metrics);
    this.#receipts = new Receipts(shard, this.#peers);
    this.#inbox = new Inbox(streams, this.#receipts, metrics);
    this.#forward = new NodeForward(nodeId, redis, metrics);
    this.#interest = redis === null ? null : new NodeInterest(shard, this.#peers, redis);
    // The node follows in Redis the channels its streams subscribe to.
    if (this.#interest !== null) streams.channels.watchInterest((channel, isInterested) => this.#interest!.report(channel, isInterested));
    this.#resume = new Resume({ shard, channelLog, redis, historyLength, historyAgeMs, streams, peers: this.#peers, metrics, log, warnings });
    this.#sequencer = channelLog === null ? null : new Sequencer({
      nodeId, channelLog, redis, historyLength, historyAgeMs, peers: this.#peers, inbox: this.#inbox, receipts: this.#receipts,
      forward: this.#forward, metrics,
    });
    this.#outgoing = new Array(shardCount).fill(null);
    redis?.listen(this.#receiveFromNode);
  }

  /** A push's receipt tallies what it reached (isTallying); a response's only waits for its parts to be handed on. */
  createReceipt(isTallying = true): PushReceipt {
    return this.#receipts.create(isTallying);
  }

  releaseReceipt(receipt: PushReceipt): void {
    this.#receipts.release(receipt);
  }

  /** A held stream just opened: if it resumes channels, it first gets what it missed. */
  resume(stream: HeldStream): void {
    this.#resume.resume(stream);
  }

  /** Connects (or, with null, disconnects) the port to another shard. */
  setPeer(shard: number, port: MessagePort | null): void {
    if (port === null) return this.#peerGone(shard);
    this.#peers.connect(shard, port, this.#receiveFromPeer);
    // A (new) sequencer learns which channels this shard's streams follow.
    if (shard === SEQUENCER && this.#interest !== null) {
      for (const channel of this.#streams.channels.channels()) this.#interest.report(channel, true);
    }
  }

  routePart(part: Part, source: PartSource, receipt: PushReceipt | null): void {
    if (part.channels.length > 0) return this.#routeChannelPart(part, source, receipt);
    const parsedAt = Date.now();
    const receiptId = receipt?.id ?? 0;
    let local: Delivery | null = null;
    let isRemote = false;
    let isForwarded = false;
    let deliveries = 0;
    for (const token of part.tokens) {
      const shard = localTokenShard(token, this.#nodePrefix);
      if (shard < 0 || shard >= this.#outgoing.length) {
        if (this.#forward.send(token, part, receipt)) isForwarded = true;
      } else if (shard === this.#shard) {
        local ??= new Delivery(part.body, part.isClose, parsedAt, 0, part.isBinary);
        const result = this.#streams.deliverToToken(token, local);
        if (result === DELIVERED) deliveries++;
        else if (result === NOT_LIVE) this.#undeliverable('gone', token, receipt);
      } else if (this.#peers.isConnected(shard)) {
        (this.#outgoing[shard] ??= tokenItem(part, parsedAt, receiptId, this.#shard)).tokens.push(token);
        isRemote = true;
      } else {
        this.#undeliverable('shard_down', token, receipt);
      }
    }
    if (isRemote) this.#sendOutgoing(receipt);
    if (local !== null) this.#metrics.pushToWrite.observe((Date.now() - local.parsedAt) / 1000);
    if (receipt !== null) receipt.deliveries += deliveries;
    this.#metrics.parts.inc({ source, route: isForwarded ? 'node' : isRemote ? 'remote' : 'local' });
  }

  #sendOutgoing(receipt: PushReceipt | null): void {
    for (let shard = 0; shard < this.#outgoing.length; shard++) {
      const item = this.#outgoing[shard];
      if (item === null) continue;
      this.#outgoing[shard] = null;
      this.#peers.send(shard, item);
      if (receipt !== null) receipt.pending++;
    }
  }

  #routeChannelPart(part: Part, source: PartSource, receipt: PushReceipt | null): void {
    this.#metrics.parts.inc({ source, route: 'channel' });
    const item: RoutedItem = {
      tokens: part.tokens, channels: part.channels, body: part.body, isClose: part.isClose, isBinary: part.isBinary, parsedAt: Date.now(), channelId: 0,
      receiptId: receipt?.id ?? 0, origin: this.#shard, isToSequence: true,
    };
    // The sequencer broadcasts the part to every shard, and every shard acknowledges it.
    if (receipt !== null) receipt.pending += this.#peers.shardCount;
    if (this.#sequencer !== null) return this.#sequencer.sequence(item);
    if (this.#peers.send(SEQUENCER, item)) return;
    if (receipt !== null) receipt.pending -= this.#peers.shardCount;
    for (const token of part.tokens) this.#undeliverable('shard_down', token, receipt);
    if (part.tokens.length === 0) this.#metrics.undeliverable.inc({ reason: 'shard_down' });
  }

  #undeliverable(reason: string, token: string, receipt: PushReceipt | null): void {
    this.#metrics.undeliverable.inc({ reason });
    receipt?.noteGone(token);
  }

  readonly #receiveFromPeer = (message: PeerMessage): void => {
    switch (message.type) {
      case 'parts':
        if (message.acks !== undefined) this.#receipts.receive(message.acks);
        for (const item of decodePartBatch(message)) {
          if (item.isToSequence) this.#sequencer?.sequence(item);
          else this.#inbox.deliver(item, null, 0);
        }
        return;
      case 'acks':
        return this.#receipts.receive(message.acks);
      case 'replay':
        return this.#resume.answer(message);
      case 'replayed':
        return this.#resume.receive(message);
      case 'interest':
        return this.#interest?.note(message.from, message.channel, message.isInterested);
    }
  };

  /** From other nodes: parts for this shard's tokens, or (on the sequencer) channel parts for channels this node follows. */
  readonly #receiveFromNode = (message: NodeMessage, isChannelPart: boolean): void => {
    for (const item of message.items) {
      if (!isChannelPart) this.#inbox.deliver(item, null, 0);
      else this.#sequencer?.receiveFromRedis(item, message.node, message.echo);
    }
  };

  /** The shard is gone: what was queued for it was not delivered. */
  #peerGone(shard: number): void {
    const lost = this.#peers.disconnect(shard);
    if (shard === SEQUENCER) this.#resume.sequencerGone();
    this.#interest?.forget(shard);
    if (lost.length === 0) return;
    for (const item of lost) {
      this.#metrics.undeliverable.inc({ reason: 'shard_down' }, Math.max(item.tokens.length, 1));
      if (item.receiptId === 0) continue;
      const ack = { receiptId: item.receiptId, deliveries: 0, gone: item.tokens, channels: null, forwarded: 0 };
      this.#receipts.acknowledge(item.origin, ack);
      // A part for the sequencer was to be acknowledged by every shard; the others now never will.
      const empty = { ...ack, gone: [] };
      if (item.isToSequence) for (let k = 1; k < this.#peers.shardCount; k++) this.#receipts.acknowledge(item.origin, empty);
    }
    this.#log.warn({ peer: shard, items: lost.length }, 'peer shard gone: the parts queued for it are undeliverable');
  }
}
