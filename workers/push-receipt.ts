// What one push request or multiplexed response has achieved, exact even when its targets live on other shards: its
// receipt, and this shard's receipts by id, which the acknowledgements from other shards reach.
import type { Ack } from './peer-codec.ts';
import type { Peers } from './peers.ts';

/** How long a receipt waits for other shards' acknowledgements (only a dying shard takes that long). */
export const ACK_TIMEOUT_MS = 2000;

export class PushReceipt {
  readonly id: number;
  /** False for a response's receipt: only whether its parts have been handed on matters, not to whom. */
  readonly isTallying: boolean;
  deliveries = 0;
  /** Tokens handed to other nodes through Redis: sent, not known to be delivered. */
  forwarded = 0;
  readonly gone: string[] = [];
  /** Channel name → streams that got the push's parts through it. */
  readonly channels: Record<string, number> = {};
  /** Acknowledgements still expected from other shards. */
  pending = 0;
  #settle: (() => void) | null = null;

  constructor(id: number, isTallying = true) {
    this.id = id;
    this.isTallying = isTallying;
  }

  noteGone(token: string): void {
    if (this.isTallying) this.gone.push(token);
  }

  countChannel(channel: string, deliveries: number): void {
    this.channels[channel] = (this.channels[channel] ?? 0) + deliveries;
  }

  acknowledge(ack: Ack): void {
    this.deliveries += ack.deliveries;
    this.forwarded += ack.forwarded;
    if (this.isTallying) {
      for (const token of ack.gone) this.gone.push(token);
      const channels = ack.channels;
      if (channels !== null) for (const channel in channels) this.countChannel(channel, channels[channel]);
    }
    this.pending--;
    if (this.pending <= 0 && this.#settle !== null) this.#settle();
  }

  /**
   * Calls `settle` once every acknowledgement has arrived, or after timeoutMs (a shard died meanwhile); at once,
   * without waiting for a turn of the event loop, when none is pending.
   */
  whenSettled(timeoutMs: number, settle: () => void): void {
    if (this.pending <= 0) return settle();
    const timer = setTimeout(() => {
      this.#settle = null;
      settle();
    }, timeoutMs);
    this.#settle = () => {
      this.#settle = null;
      clearTimeout(timer);
      settle();
    };
  }

  settled(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => this.whenSettled(timeoutMs, resolve));
  }
}

export class Receipts {
  readonly #shard: number;
  readonly #peers: Peers;
  readonly #byId = new Map<number, PushReceipt>();
  #nextId = 1;

  constructor(shard: number, peers: Peers) {
    this.#shard = shard;
    this.#peers = peers;
  }

  /** A push's receipt tallies what it reached (isTallying); a response's only waits for its parts to be handed on. */
  create(isTallying: boolean): PushReceipt {
    const receipt = new PushReceipt(this.#nextId++, isTallying);
    this.#byId.set(receipt.id, receipt);
    return receipt;
  }

  release(receipt: PushReceipt): void {
    this.#byId.delete(receipt.id);
  }

  /** Acknowledges an item to its receipt: here, or on the shard that holds it. */
  acknowledge(origin: number, ack: Ack): void {
    if (origin === this.#shard) this.#byId.get(ack.receiptId)?.acknowledge(ack);
    else this.#peers.acknowledge(origin, ack);
  }

  /** Acknowledgements from another shard for this shard's receipts. */
  receive(acks: readonly Ack[]): void {
    for (const ack of acks) this.#byId.get(ack.receiptId)?.acknowledge(ack);
  }
}
