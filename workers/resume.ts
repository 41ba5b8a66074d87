// Resume: a stream that subscribes with `since` gets the channel parts it missed, then live ones, each once and in id
// order. Its live channel parts are held back (HeldStream.catchUp) while the sequencer reads the history (channel-log.ts
// alone, redis-link.ts with several nodes) and answers, from its own shard or over its port.
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { ShardMetrics } from './metrics.ts';
import type { ChannelLog, Replay } from './channel-log.ts';
import { Delivery } from './delivery.ts';
import type { HeldStream } from './held-stream.ts';
import type { HeldStreams } from './held-streams.ts';
import { decodeReplayAnswer, type ReplayAnswer, type ReplayRequest } from './peer-codec.ts';
import type { Peers } from './peers.ts';
import type { RedisLink } from './redis-link.ts';
import { SEQUENCER } from './sequencer.ts';

/** What a stream is told when nothing can be said of what it missed. */
const UNKNOWN: Replay = { parts: [], isComplete: false };

export interface ResumeOptions {
  shard: number;
  /** Only on the sequencer. */
  channelLog: ChannelLog | null;
  redis: RedisLink | null;
  /** Parts kept per channel (0: no history, nothing to resume), and for how long after the channel's last (0: for ever). */
  historyLength: number;
  historyAgeMs: number;
  streams: HeldStreams;
  peers: Peers;
  metrics: ShardMetrics;
  log: Logger;
  warnings: RepeatedWarnings;
}

export class Resume {
  readonly #ctx: ResumeOptions;
  /** Streams waiting for the sequencer's answer, by request id. */
  readonly #waiting = new Map<number, HeldStream>();
  #nextId = 1;

  constructor(options: ResumeOptions) {
    this.#ctx = options;
  }

  /** A held stream just opened: if it resumes, its live channel parts wait for what it missed. */
  resume(stream: HeldStream): void {
    const resumed = stream.options.channels.filter((channel) => channel.since !== null);
    if (resumed.length === 0 || this.#ctx.historyLength === 0) return;
    const since = Math.min(...resumed.map((channel) => channel.since!));
    const channels = resumed.map((channel) => channel.name);
    stream.catchUp = [];
    stream.lastChannelId = since;
    if (this.#ctx.channelLog !== null) return this.#read(channels, since, (replay) => this.#catchUp(stream, replay));
    const id = this.#nextId++;
    if (!this.#ctx.peers.post(SEQUENCER, { type: 'replay', from: this.#ctx.shard, id, channels, since } satisfies ReplayRequest)) {
      return this.#catchUp(stream, UNKNOWN);
    }
    this.#waiting.set(id, stream);
  }

  /** On the sequencer: another shard's stream resumes. */
  answer(request: ReplayRequest): void {
    // Whenever it is sent, the stream skips the ids it already has from live parts.
    this.#read(request.channels, request.since, (replay) => {
      this.#ctx.peers.post(request.from, { type: 'replayed', id: request.id, ...replay } satisfies ReplayAnswer);
    });
  }

  receive(answer: ReplayAnswer): void {
    const stream = this.#waiting.get(answer.id);
    if (stream === undefined) return;
    this.#waiting.delete(answer.id);
    this.#catchUp(stream, decodeReplayAnswer(answer));
  }

  /** The sequencer is gone: no answer comes, and the waiting streams are told they may have missed parts. */
  sequencerGone(): void {
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const stream of waiting) this.#catchUp(stream, UNKNOWN);
  }

  /** On the sequencer: what a resuming stream missed, from this node's history or, with Redis, the nodes' history. */
  #read(channels: string[], since: number, answer: (replay: Replay) => void): void {
    const { channelLog, redis, historyAgeMs, warnings } = this.#ctx;
    if (redis === null) return answer(channelLog!.replay(channels, since));
    redis.replay(channels, since, historyAgeMs).then(answer, (error: Error) => {
      warnings.warn('history_unavailable', { err: error.message }, 'channel history unavailable from Redis: the resuming stream is told it missed parts');
      answer(UNKNOWN);
    });
  }

  /** Writes what the stream missed, then the live parts held back meanwhile. */
  #catchUp(stream: HeldStream, replay: Replay): void {
    const held = stream.catchUp;
    stream.catchUp = null;
    if (stream.hasEnded || held === null) return;
    const { streams, metrics, log } = this.#ctx;
    metrics.historyReplays.inc({ result: replay.isComplete ? 'hit' : 'miss' });
    if (!replay.isComplete) {
      log.info({ since: stream.lastChannelId }, 'a resuming stream asked for parts the history no longer holds');
      if (stream.options.isEventStream) {
        streams.notify(stream, Buffer.from(`event: muxgate-gap\ndata: {"since":${stream.lastChannelId}}\n\n`));
      } else if (stream.webSocket !== null) {
        streams.notify(stream, Buffer.from(`{"muxgate":"gap","since":${stream.lastChannelId}}`));
      }
    }
    for (const part of replay.parts) {
      if (stream.hasEnded) return;
      streams.write(stream, new Delivery(part.body, part.isClose, part.at, part.id, part.isBinary));
    }
    // The last part held back is still the stream's last delivery when nothing was missed: it is not written yet.
    stream.lastDelivery = null;
    for (const delivery of held) {
      if (stream.hasEnded) return;
      streams.write(stream, delivery);
    }
  }
}
