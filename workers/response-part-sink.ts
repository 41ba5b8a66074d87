// Feeds the parts of a backend's multiplexed body (a response, or an answer to an event) to the router.
import type { MuxError } from '../src/errors.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { MultiplexParserSink, Part } from '../src/protocol/multiplex-parser.ts';
import type { ShardMetrics } from './metrics.ts';
import type { Router } from './router.ts';

export class ResponsePartSink implements MultiplexParserSink {
  private readonly router: Router;
  private readonly metrics: ShardMetrics;
  private readonly warnings: RepeatedWarnings;

  constructor(router: Router, metrics: ShardMetrics, warnings: RepeatedWarnings) {
    this.router = router;
    this.metrics = metrics;
    this.warnings = warnings;
  }

  onPart(part: Part): void {
    this.router.routePart(part, 'response', null);
  }

  onError(error: MuxError): void {
    this.metrics.rejectedParts.inc({ source: 'response', reason: error.code });
    this.warnings.warn('backend_body_rejected', { code: error.code, err: error.message }, 'backend multiplexed body rejected; the parts before it stand');
  }
}
