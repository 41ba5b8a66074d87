// The node's channel sequencer (on shard 0): one increasing id for every channel part, and the
// bounded history that lets a stream resume after the last id it saw.

export interface LoggedPart {
  id: number;
  body: Buffer;
  isClose: boolean;
  at: number;
}

interface ChannelHistory {
  parts: LoggedPart[];
  /** The highest id this channel has forgotten. */
  forgottenUpTo: number;
}

const SWEEP_MS = 10_000;

export interface Replay {
  /** Parts of the channels with an id above `since`, in id order, each once. */
  parts: LoggedPart[];
  /** False when the history no longer reaches back to `since`: the stream has missed parts. */
  isComplete: boolean;
}

export class ChannelLog {
  private nextId = 1;
  private readonly histories = new Map<string, ChannelHistory>();
  /** The highest id forgotten by any channel whose history was dropped whole. */
  private forgottenUpTo = 0;
  private readonly maxParts: number;
  private readonly maxAgeMs: number;
  private readonly sweeper: NodeJS.Timeout | null;

  constructor(maxParts: number, maxAgeMs: number) {
    this.maxParts = maxParts;
    this.maxAgeMs = maxAgeMs;
    this.sweeper = maxAgeMs > 0 ? setInterval(() => this.sweep(), SWEEP_MS).unref() : null;
  }

  /** Assigns the part its id and, when history is kept, remembers it for each channel. */
  append(channels: readonly string[], body: Buffer, isClose: boolean): number {
    const id = this.nextId++;
    if (this.maxParts === 0) return id;
    const part: LoggedPart = { id, body: Buffer.from(body), isClose, at: Date.now() };
    for (const channel of channels) {
      let history = this.histories.get(channel);
      if (history === undefined) {
        history = { parts: [], forgottenUpTo: this.forgottenUpTo };
        this.histories.set(channel, history);
      }
      history.parts.push(part);
      if (history.parts.length > this.maxParts) history.forgottenUpTo = history.parts.shift()!.id;
    }
    return id;
  }

  replay(channels: readonly string[], since: number): Replay {
    if (this.maxParts > 0 && since >= this.nextId) {
      // An id from the future was minted before a restart: nothing can be said about what was missed.
      return { parts: [], isComplete: false };
    }
    // Without history (MUX_CHANNEL_HISTORY off) streams carry no ids to resume from: nothing to tell.
    if (this.maxParts === 0) return { parts: [], isComplete: true };
    const parts: LoggedPart[] = [];
    let isComplete = true;
    for (const channel of channels) {
      const history = this.histories.get(channel);
      if (history === undefined) {
        if (since < this.forgottenUpTo) isComplete = false;
        continue;
      }
      this.expire(history, Date.now());
      if (since < history.forgottenUpTo) isComplete = false;
      for (const part of history.parts) if (part.id > since) parts.push(part);
    }
    if (channels.length > 1) {
      parts.sort((a, b) => a.id - b.id);
      return { parts: parts.filter((part, i) => i === 0 || parts[i - 1].id !== part.id), isComplete };
    }
    return { parts, isComplete };
  }

  stop(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
  }

  private expire(history: ChannelHistory, now: number): void {
    if (this.maxAgeMs === 0) return;
    while (history.parts.length > 0 && now - history.parts[0].at > this.maxAgeMs) {
      history.forgottenUpTo = history.parts.shift()!.id;
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [channel, history] of this.histories) {
      this.expire(history, now);
      if (history.parts.length === 0) {
        this.forgottenUpTo = Math.max(this.forgottenUpTo, history.forgottenUpTo);
        this.histories.delete(channel);
      }
    }
  }
}
