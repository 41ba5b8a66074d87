// Feeds the parts of a backend's multiplexed body (a response, or an answer to an event) to the router.
import type { MuxError } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import type { MultiplexParserSink, Part } from '../src/protocol/multiplex-parser.ts';
import type { ShardMetrics } from './metrics.ts';
import type { Router } from './router.ts';

export class ResponsePartSink implements MultiplexParserSink {
  private readonly router: Router;
  private readonly metrics: ShardMetrics;
  private readonly log: Logger;

  constructor(router: Router, metrics: ShardMetrics, log: Logger) {
    this.router = router;
    this.metrics = metrics;
    this.log = log;
  }

  onPart(part: Part): void {
    this.router.routePart(part, 'response', null);
  }

  onError(error: MuxError): void {
    this.metrics.rejectedParts.inc({ source: 'response', reason: error.code });
    this.log.warn({ code: error.code, err: error.message }, 'backend multiplexed body rejected; the parts before it stand');
  }
}
