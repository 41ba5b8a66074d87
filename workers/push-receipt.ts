// What one push request has achieved, exact even when its tokens live on other shards.

export class PushReceipt {
  readonly id: number;
  deliveries = 0;
  readonly gone: string[] = [];
  /** Items sent to other shards and not yet acknowledged. */
  pending = 0;
  private settle: (() => void) | null = null;

  constructor(id: number) {
    this.id = id;
  }

  acknowledge(deliveries: number, gone: readonly string[]): void {
    this.deliveries += deliveries;
    for (const token of gone) this.gone.push(token);
    this.pending--;
    if (this.pending === 0 && this.settle !== null) this.settle();
  }

  /** Resolves when every item sent to another shard has been acknowledged. */
  settled(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.settle = resolve;
    });
  }
}
