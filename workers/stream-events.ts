// Close events to the backend (MUX_EVENTS): bounded concurrency, a bounded queue, never blocking delivery.
// A multiplexed answer to an event is routed like any response (a chat tells the room who left).
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { MultiplexParser } from '../src/protocol/multiplex-parser.ts';
import { multiplexBoundaryOf } from '../src/protocol/response-head.ts';
import { partLimits } from './part-limits.ts';
import type { ResponsePartSink } from './response-part-sink.ts';
import type { Backend, FastcgiRequest } from './backend.ts';
import { eventParams, type StreamEvent } from './cgi-params.ts';
import { FastcgiExchange } from './fastcgi-exchange.ts';
import type { HeldStreams } from './held-streams.ts';
import type { ShardMetrics } from './metrics.ts';

export class StreamEvents {
  readonly #backend: Backend;
  readonly #config: Readonly<Config>;
  readonly #metrics: ShardMetrics;
  readonly #log: Logger;
  readonly #warnings: RepeatedWarnings;
  readonly #partSink: ResponsePartSink;
  readonly #queue: StreamEvent[] = [];
  #inFlight = 0;
  /** The fields of every dropped-event line: a drop costs no allocation. */
  readonly #dropFields: { queueLimit: number };
  readonly #idleWaiters: (() => void)[] = [];

  constructor(streams: HeldStreams, backend: Backend, config: Readonly<Config>, metrics: ShardMetrics, log: Logger, warnings: RepeatedWarnings,
    partSink: ResponsePartSink) {
    this.#partSink = partSink;
    this.#backend = backend;
    this.#config = config;
    this.#metrics = metrics;
    this.#log = log;
    this.#warnings = warnings;
    this.#dropFields = { queueLimit: config.eventsQueue };
    streams.watchEnded((stream, reason) => {
      if (stream.isHeld) this.close(stream.token, reason, stream.options.requestUri, stream.webSocket?.closeCode ?? 0, stream.options.isSecure);
    });
  }

  close(token: string, reason: string, requestUri: string, closeCode: number, isSecure: boolean): void {
    if (this.#queue.length >= this.#config.eventsQueue) {
      this.#metrics.streamEvents.inc({ result: 'dropped' });
      // A mass disconnect drops thousands: one line per interval, with the count.
      this.#warnings.warn('close_events_dropped', this.#dropFields, 'close events dropped: the event queue was full (MUX_EVENTS_QUEUE)');
      return;
    }
    this.#queue.push({ token, reason, requestUri, closeCode, isSecure });
    this.#pump();
  }

  /** Resolves when every queued event has been sent. */
  drained(): Promise<void> {
    if (this.#inFlight === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (this.#inFlight < this.#config.eventsConcurrency && this.#queue.length > 0) {
      const event = this.#queue.shift()!;
      this.#inFlight++;
      this.#send(event).then((isSent) => {
        this.#metrics.streamEvents.inc({ result: isSent ? 'sent' : 'failed' });
        this.#inFlight--;
        this.#pump();
        if (this.#inFlight === 0 && this.#queue.length === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
      });
    }
  }

  /** Resolves once the backend's answer has been read (and routed, when multiplexed): true, or false when it failed. */
  async #send(event: StreamEvent): Promise<boolean> {
    let request: FastcgiRequest;
    try {
      request = await this.#backend.request(eventParams(event, this.#config), false);
    } catch (error) {
      this.#warnings.warn('close_event_failed', { err: (error as Error).message }, 'close event not delivered to the backend');
      return false;
    }
    return new Promise((resolve) => {
      const label = { event: 'close', uri: event.requestUri };
      const exchange = new FastcgiExchange(request, { timeoutMs: this.#config.fastcgiTimeoutMs, metrics: this.#metrics, log: this.#log, warnings: this.#warnings, label }, {
        onHead: (head, rest) => {
          let boundary: string | null;
          try {
            boundary = multiplexBoundaryOf(head);
          } catch (error) {
            this.#warnings.warn('close_event_failed', { err: (error as Error).message }, 'close event not delivered to the backend');
            exchange.discardBody();
            return resolve(false);
          }
          // Any other answer is read and dropped: an event has no client to relay it to.
          if (boundary === null) return exchange.readBody(ignore, () => resolve(true));
          exchange.readMultiplexed(new MultiplexParser(boundary, partLimits(this.#config), this.#partSink), rest, () => resolve(true));
        },
        onFailure: () => resolve(false),
      });
      exchange.sendNoBody();
    });
  }
}

function ignore(): void {}
