// Feeds the parts of a backend's multiplexed body (a response, or an answer to an event) to the router; a
// response's own sink carries its receipt, so that the response ends only once its parts have been handed on.
import type { MuxError } from '../src/errors.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import type { MultiplexParserSink, Part } from '../src/protocol/multiplex-parser.ts';
import type { ShardMetrics } from './metrics.ts';
import type { Router } from './router.ts';
import type { PushReceipt } from './push-receipt.ts';

export class ResponsePartSink implements MultiplexParserSink {
  readonly #router: Router;
  readonly #metrics: ShardMetrics;
  readonly #warnings: RepeatedWarnings;
  readonly #receipt: PushReceipt | null;

  constructor(router: Router, metrics: ShardMetrics, warnings: RepeatedWarnings, receipt: PushReceipt | null = null) {
    this.#router = router;
    this.#metrics = metrics;
    this.#warnings = warnings;
    this.#receipt = receipt;
  }

  /** A sink for one response's body, whose parts the receipt follows. */
  forResponse(receipt: PushReceipt): ResponsePartSink {
    return new ResponsePartSink(this.#router, this.#metrics, this.#warnings, receipt);
  }

  onPart(part: Part): void {
    this.#router.routePart(part, 'response', this.#receipt);
  }

  onError(error: MuxError): void {
    this.#metrics.rejectedParts.inc({ source: 'response', reason: error.code });
    this.#warnings.warn('backend_body_rejected', { code: error.code, err: error.message }, 'backend multiplexed body rejected; the parts before it stand');
  }
}
