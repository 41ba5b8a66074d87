// Close events to the backend (MUX_EVENTS): bounded concurrency, a bounded queue, never blocking delivery.
// A multiplexed answer to an event is routed like any response (a chat tells the room who left).
import type { Config } from '../src/config.ts';
import { CgiHeadParser } from '../src/protocol/cgi-response.ts';
import { multiplexBoundary } from '../src/protocol/headers.ts';
import { MultiplexParser } from '../src/protocol/multiplex-parser.ts';
import { partLimits } from './part-limits.ts';
import type { ResponsePartSink } from './response-part-sink.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { Backend } from './backend.ts';
import type { ShardMetrics } from './metrics.ts';

interface CloseEvent {
  token: string;
  reason: string;
  requestUri: string;
}

export class StreamEvents {
  private readonly backend: Backend;
  private readonly config: Readonly<Config>;
  private readonly metrics: ShardMetrics;
  private readonly warnings: RepeatedWarnings;
  private readonly partSink: ResponsePartSink;
  private readonly queue: CloseEvent[] = [];
  private inFlight = 0;
  /** The fields of every dropped-event line: a drop costs no allocation. */
  private readonly dropFields: { queueLimit: number };
  private readonly idleWaiters: (() => void)[] = [];

  constructor(backend: Backend, config: Readonly<Config>, metrics: ShardMetrics, warnings: RepeatedWarnings, partSink: ResponsePartSink) {
    this.partSink = partSink;
    this.backend = backend;
    this.config = config;
    this.metrics = metrics;
    this.warnings = warnings;
    this.dropFields = { queueLimit: config.eventsQueue };
  }

  close(token: string, reason: string, requestUri: string): void {
    if (this.queue.length >= this.config.eventsQueue) {
      this.metrics.streamEvents.inc({ result: 'dropped' });
      // A mass disconnect drops thousands: one line per interval, with the count.
      this.warnings.warn('close_events_dropped', this.dropFields, 'close events dropped: the event queue was full (MUX_EVENTS_QUEUE)');
      return;
    }
    this.queue.push({ token, reason, requestUri });
    this.pump();
  }

  /** Resolves when every queued event has been sent. */
  drained(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.inFlight < this.config.eventsConcurrency && this.queue.length > 0) {
      const event = this.queue.shift()!;
      this.inFlight++;
      this.send(event).then((isSent) => {
        this.metrics.streamEvents.inc({ result: isSent ? 'sent' : 'failed' });
        this.inFlight--;
        this.pump();
        if (this.inFlight === 0 && this.queue.length === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
    }
  }

  private async routeAnswer(stdout: AsyncIterable<Buffer>): Promise<void> {
    const headParser = new CgiHeadParser(65_536);
    let parser: MultiplexParser | null = null;
    let isHeadDone = false;
    for await (const chunk of stdout) {
      if (isHeadDone) {
        parser?.push(chunk);
        continue;
      }
      const parsed = headParser.push(chunk);
      if (parsed === null) continue;
      isHeadDone = true;
      const contentType = parsed.head.headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1];
      const boundary = multiplexBoundary(contentType);
      if (boundary === null) continue;
      parser = new MultiplexParser(boundary, partLimits(this.config), this.partSink);
      parser.push(parsed.rest);
    }
    parser?.end();
  }

  private async send(event: CloseEvent): Promise<boolean> {
    const queryAt = event.requestUri.indexOf('?');
    const path = queryAt < 0 ? event.requestUri : event.requestUri.slice(0, queryAt);
    try {
      const request = await this.backend.request({
        GATEWAY_INTERFACE: 'CGI/1.1',
        SERVER_SOFTWARE: 'muxgate',
        SERVER_PROTOCOL: 'HTTP/1.1',
        REQUEST_METHOD: 'POST',
        REQUEST_URI: event.requestUri,
        DOCUMENT_URI: path,
        QUERY_STRING: queryAt < 0 ? '' : event.requestUri.slice(queryAt + 1),
        SCRIPT_NAME: path,
        SCRIPT_FILENAME: this.config.scriptFilename || this.config.documentRoot + path,
        DOCUMENT_ROOT: this.config.documentRoot,
        CONTENT_LENGTH: '0',
        REDIRECT_STATUS: '200',
        MULTIPLEX_EVENT: 'close',
        MULTIPLEX_TOKEN: event.token,
        MULTIPLEX_REASON: event.reason,
      }, false);
      request.stderr.resume();
      await this.routeAnswer(request.stdout);
      return true;
    } catch (error) {
      this.warnings.warn('close_event_failed', { err: (error as Error).message }, 'close event not delivered to the backend');
      return false;
    }
  }
}
