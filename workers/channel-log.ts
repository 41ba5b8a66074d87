// The node's channel log (the sequencer's, on shard 0): one increasing id for every channel part, and the history
// that lets a stream resume after the last id it saw, bounded per channel (parts), per node (bytes, oldest first) and by age.
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { ShardMetrics } from './metrics.ts';

export interface LoggedPart {
  id: number;
  body: Buffer;
  isClose: boolean;
  isBinary: boolean;
  at: number;
}

/** A part in the history: the channels it went to, and how many of their histories still keep it. */
interface HeldPart {
  /** Null once no history keeps it (its memory is given back; the entry waits in the queue to be skipped). */
  part: LoggedPart | null;
  channels: readonly string[];
  holders: number;
  bytes: number;
}

interface ChannelHistory {
  parts: HeldPart[];
  /** The highest id this channel has forgotten. */
  forgottenUpTo: number;
}

export interface ChannelLogLimits {
  /** Parts kept per channel; 0: no history, ids only. */
  maxParts: number;
  /** Age beyond which a part is forgotten; 0: none. */
  maxAgeMs: number;
  /** Memory the history of all channels may take, counted as below; beyond, the oldest parts are forgotten first. */
  maxBytes: number;
}

/**
 * What a part and a channel are counted for besides the part's body: their objects, the history's arrays and maps
 * (measured: about 320 and 330 bytes on Node 26, x64), with some room.
 */
export const PART_OVERHEAD_BYTES = 352;
export const CHANNEL_OVERHEAD_BYTES = 384;

/** Expired parts are looked for this often (a look at the oldest part; nothing when none is due). */
const SWEEP_MS = 1000;
/** The queue drops the entries it has skipped, or that no history keeps any longer, past this many. */
const QUEUE_SLACK = 1024;

export interface Replay {
  /** Parts of the channels with an id above `since`, in id order, each once. */
  parts: LoggedPart[];
  /** False when the history no longer reaches back to `since`: the stream has missed parts. */
  isComplete: boolean;
}

export class ChannelLog {
  #nextId = 1;
  readonly #histories = new Map<string, ChannelHistory>();
  /** Every part kept, oldest first (ids increase node-wide), for forgetting by age and by the byte budget. */
  #queue: HeldPart[] = [];
  #head = 0;
  /** Entries of the queue past `head` that no history keeps any longer. */
  #stale = 0;
  #bytes = 0;
  /** The highest id forgotten by any channel whose history was dropped whole. */
  #forgottenUpTo = 0;
  readonly #limits: ChannelLogLimits;
  readonly #metrics: ShardMetrics;
  readonly #warnings: RepeatedWarnings;
  readonly #sweeper: NodeJS.Timeout | null;

  constructor(limits: ChannelLogLimits, metrics: ShardMetrics, warnings: RepeatedWarnings) {
    this.#limits = limits;
    this.#metrics = metrics;
    this.#warnings = warnings;
    this.#sweeper = limits.maxParts > 0 && limits.maxAgeMs > 0 ? setInterval(() => this.#expire(Date.now()), SWEEP_MS).unref() : null;
  }

  /** Memory the history takes, as counted against the budget. */
  get size(): number {
    return this.#bytes;
  }

  /** Channels with a history. */
  get channelCount(): number {
    return this.#histories.size;
  }

  /** Assigns the part its id and, when history is kept, remembers it for each channel. */
  append(channels: readonly string[], body: Buffer, isClose: boolean, isBinary: boolean): number {
    const id = this.#nextId++;
    if (this.#limits.maxParts === 0) return id;
    // A copy of its own: a slice of a larger buffer would keep all of it alive.
    const copy = Buffer.allocUnsafeSlow(body.length);
    body.copy(copy);
    const held: HeldPart = { part: { id, body: copy, isClose, isBinary, at: Date.now() }, channels, holders: 0, bytes: body.length + PART_OVERHEAD_BYTES };
    this.#bytes += held.bytes;
    this.#queue.push(held);
    for (const channel of channels) {
      let history = this.#histories.get(channel);
      if (history === undefined) {
        history = { parts: [], forgottenUpTo: this.#forgottenUpTo };
        this.#histories.set(channel, history);
        this.#bytes += CHANNEL_OVERHEAD_BYTES + channel.length;
      }
      history.parts.push(held);
      held.holders++;
      if (history.parts.length > this.#limits.maxParts) this.#forgetOldest(channel, history);
    }
    if (this.#bytes > this.#limits.maxBytes) this.#evictForBudget();
    this.#compactQueue();
    this.#metrics.hot.historyBytes = this.#bytes;
    return id;
  }

  replay(channels: readonly string[], since: number): Replay {
    if (this.#limits.maxParts > 0 && since >= this.#nextId) {
      // An id from the future was minted before a restart: nothing can be said about what was missed.
      return { parts: [], isComplete: false };
    }
    // Without history (MUX_CHANNEL_HISTORY off) streams carry no ids to resume from: nothing to tell.
    if (this.#limits.maxParts === 0) return { parts: [], isComplete: true };
    if (this.#limits.maxAgeMs > 0) this.#expire(Date.now());
    const parts: LoggedPart[] = [];
    let isComplete = true;
    for (const channel of channels) {
      const history = this.#histories.get(channel);
      if (history === undefined) {
        if (since < this.#forgottenUpTo) isComplete = false;
        continue;
      }
      if (since < history.forgottenUpTo) isComplete = false;
      for (const held of history.parts) if (held.part!.id > since) parts.push(held.part!);
    }
    if (channels.length > 1) {
      parts.sort((a, b) => a.id - b.id);
      return { parts: parts.filter((part, i) => i === 0 || parts[i - 1].id !== part.id), isComplete };
    }
    return { parts, isComplete };
  }

  stop(): void {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
  }

  /** Forgets a channel's oldest part; a channel left without history is forgotten whole. */
  #forgetOldest(channel: string, history: ChannelHistory): void {
    const held = history.parts.shift()!;
    history.forgottenUpTo = held.part!.id;
    if (--held.holders === 0) {
      this.#bytes -= held.bytes;
      held.part = null;
      this.#stale++;
    }
    if (history.parts.length > 0) return;
    this.#histories.delete(channel);
    this.#bytes -= CHANNEL_OVERHEAD_BYTES + channel.length;
    if (history.forgottenUpTo > this.#forgottenUpTo) this.#forgottenUpTo = history.forgottenUpTo;
  }

  /** The oldest part still kept (skipping the queue's entries no history keeps), or null. */
  #oldest(): HeldPart | null {
    while (this.#head < this.#queue.length) {
      const held = this.#queue[this.#head];
      if (held.part !== null) return held;
      this.#queue[this.#head++] = undefined as unknown as HeldPart;
      this.#stale--;
    }
    return null;
  }

  /** Forgets the oldest part in every channel that keeps it: it is the oldest of each. */
  #evictOldest(): void {
    const held = this.#queue[this.#head];
    for (const channel of held.channels) {
      const history = this.#histories.get(channel);
      while (history !== undefined && history.parts[0] === held) this.#forgetOldest(channel, history);
    }
  }

  #evictForBudget(): void {
    let evicted = 0;
    while (this.#bytes > this.#limits.maxBytes && this.#oldest() !== null) {
      this.#evictOldest();
      evicted++;
    }
    this.#metrics.historyEvictions.inc({ reason: 'bytes' }, evicted);
    // One line per interval, however many parts; the metric counts each.
    this.#warnings.warn('history_evicted', { evicted, historyBytes: this.#bytes, budgetBytes: this.#limits.maxBytes },
      'channel history over its byte budget (MUX_CHANNEL_HISTORY_BYTES): the oldest parts were forgotten');
  }

  #expire(now: number): void {
    let expired = 0;
    for (let held = this.#oldest(); held !== null && now - held.part!.at > this.#limits.maxAgeMs; held = this.#oldest()) {
      this.#evictOldest();
      expired++;
    }
    if (expired === 0) return;
    this.#metrics.historyEvictions.inc({ reason: 'age' }, expired);
    this.#compactQueue();
    this.#metrics.hot.historyBytes = this.#bytes;
  }

  /** Drops the queue's entries that are skipped, or that no history keeps, once they are many. */
  #compactQueue(): void {
    if (this.#head > QUEUE_SLACK && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#stale > QUEUE_SLACK && this.#stale * 2 > this.#queue.length - this.#head) {
      this.#queue = this.#queue.slice(this.#head).filter((held) => held.part !== null);
      this.#head = 0;
      this.#stale = 0;
    }
  }
}
