// This shard's channel → subscribed streams; a subscription goes with its stream.
import type { HeldStream } from './held-streams.ts';

export class ChannelIndex {
  private readonly subscribers = new Map<string, Set<HeldStream>>();
  private count = 0;

  get subscriptionCount(): number {
    return this.count;
  }

  subscribe(stream: HeldStream, channel: string): void {
    let streams = this.subscribers.get(channel);
    if (streams === undefined) {
      streams = new Set();
      this.subscribers.set(channel, streams);
    }
    if (!streams.has(stream)) {
      streams.add(stream);
      this.count++;
    }
  }

  unsubscribe(stream: HeldStream, channel: string): void {
    const streams = this.subscribers.get(channel);
    if (streams === undefined || !streams.delete(stream)) return;
    this.count--;
    if (streams.size === 0) this.subscribers.delete(channel);
  }

  streamsOf(channel: string): ReadonlySet<HeldStream> | undefined {
    return this.subscribers.get(channel);
  }
}
