// This shard's channel → subscribed streams; a subscription goes with its stream.
import type { HeldStream } from './held-stream.ts';

export class ChannelIndex {
  readonly #subscribers = new Map<string, Set<HeldStream>>();
  #count = 0;
  /** Told when a channel gets its first subscriber on this shard, or loses its last. */
  #onInterest: ((channel: string, isInterested: boolean) => void) | null = null;

  get subscriptionCount(): number {
    return this.#count;
  }

  subscribe(stream: HeldStream, channel: string): void {
    let streams = this.#subscribers.get(channel);
    if (streams === undefined) {
      streams = new Set();
      this.#subscribers.set(channel, streams);
      this.#onInterest?.(channel, true);
    }
    if (!streams.has(stream)) {
      streams.add(stream);
      this.#count++;
    }
  }

  unsubscribe(stream: HeldStream, channel: string): void {
    const streams = this.#subscribers.get(channel);
    if (streams === undefined || !streams.delete(stream)) return;
    this.#count--;
    if (streams.size === 0) {
      this.#subscribers.delete(channel);
      this.#onInterest?.(channel, false);
    }
  }

  /** Subscribes the one listener of interest changes (the router's node interest, with Redis), as it is built. */
  watchInterest(listener: (channel: string, isInterested: boolean) => void): void {
    this.#onInterest = listener;
  }

  /** The channels with a subscriber on this shard. */
  channels(): IterableIterator<string> {
    return this.#subscribers.keys();
  }

  streamsOf(channel: string): ReadonlySet<HeldStream> | undefined {
    return this.#subscribers.get(channel);
  }
}
