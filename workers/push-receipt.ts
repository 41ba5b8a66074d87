// What one push request or multiplexed response has achieved, exact even when its targets live on other shards.

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
  private settle: (() => void) | null = null;

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

  acknowledge(deliveries: number, gone: readonly string[], channels: Record<string, number> | null, forwarded = 0): void {
    this.deliveries += deliveries;
    this.forwarded += forwarded;
    if (this.isTallying) {
      for (const token of gone) this.gone.push(token);
      if (channels !== null) for (const channel in channels) this.countChannel(channel, channels[channel]);
    }
    this.pending--;
    if (this.pending <= 0 && this.settle !== null) this.settle();
  }

  /**
   * Calls `settle` once every acknowledgement has arrived, or after timeoutMs (a shard died meanwhile); at once,
   * without waiting for a turn of the event loop, when none is pending.
   */
  whenSettled(timeoutMs: number, settle: () => void): void {
    if (this.pending <= 0) return settle();
    const timer = setTimeout(() => {
      this.settle = null;
      settle();
    }, timeoutMs);
    this.settle = () => {
      this.settle = null;
      clearTimeout(timer);
      settle();
    };
  }

  settled(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => this.whenSettled(timeoutMs, resolve));
  }
}
