// What one push request has achieved, exact even when its targets live on other shards.

export class PushReceipt {
  readonly id: number;
  deliveries = 0;
  /** Tokens handed to other nodes through Redis: sent, not known to be delivered. */
  forwarded = 0;
  readonly gone: string[] = [];
  /** Channel name → streams that got the push's parts through it. */
  readonly channels: Record<string, number> = {};
  /** Acknowledgements still expected from other shards. */
  pending = 0;
  private settle: (() => void) | null = null;

  constructor(id: number) {
    this.id = id;
  }

  countChannel(channel: string, deliveries: number): void {
    this.channels[channel] = (this.channels[channel] ?? 0) + deliveries;
  }

  acknowledge(deliveries: number, gone: readonly string[], channels: Record<string, number> | null, forwarded = 0): void {
    this.deliveries += deliveries;
    this.forwarded += forwarded;
    for (const token of gone) this.gone.push(token);
    if (channels !== null) for (const channel in channels) this.countChannel(channel, channels[channel]);
    this.pending--;
    if (this.pending === 0 && this.settle !== null) this.settle();
  }

  /** Resolves when every acknowledgement has arrived, or after timeoutMs (a shard died meanwhile). */
  settled(timeoutMs: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.settle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
