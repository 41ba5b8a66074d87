// POST /push: an application/x-multiplex body from any process, routed like a backend's.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { ERR_PART_TOO_LARGE, ERR_PUSH_TOO_LARGE, PushTooLargeError, type MuxError } from '../src/errors.ts';
import { MultiplexParser, type MultiplexParserLimits, type MultiplexParserSink, type Part } from '../src/protocol/multiplex-parser.ts';
import { multiplexBoundary } from '../src/protocol/headers.ts';
import type { Router } from './router.ts';
import { ACK_TIMEOUT_MS, type PushReceipt } from './push-receipt.ts';
import type { ShardMetrics } from './metrics.ts';
import { statusClass } from './metrics.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { createHash, timingSafeEqual } = process.getBuiltinModule('node:crypto');

export interface PushApiOptions {
  secret: string | null;
  limits: MultiplexParserLimits;
  maxBodyBytes: number;
}

/** One push request's parser sink: routes parts until an error stops it. */
class PushSink implements MultiplexParserSink {
  readonly #router: Router;
  readonly receipt: PushReceipt;
  error: MuxError | null = null;

  constructor(router: Router, receipt: PushReceipt) {
    this.#router = router;
    this.receipt = receipt;
  }

  onPart(part: Part): void {
    this.#router.routePart(part, 'push', this.receipt);
  }

  onError(error: MuxError): void {
    this.error = error;
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export class PushApi {
  readonly #router: Router;
  readonly #metrics: ShardMetrics;
  readonly #warnings: RepeatedWarnings;
  readonly #limits: MultiplexParserLimits;
  readonly #maxBodyBytes: number;
  /** Compared as digests, in constant time whatever the length of what was sent. */
  readonly #secretDigest: Buffer | null;

  constructor(router: Router, metrics: ShardMetrics, warnings: RepeatedWarnings, options: PushApiOptions) {
    this.#router = router;
    this.#metrics = metrics;
    this.#warnings = warnings;
    this.#limits = options.limits;
    this.#maxBodyBytes = options.maxBodyBytes;
    this.#secretDigest = options.secret === null ? null : digest(options.secret);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/push') return this.#answer(res, 404, { error: 'not found: the push API is POST /push' });
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return this.#answer(res, 405, { error: 'method not allowed: use POST' });
    }
    if (!this.#isAuthorized(req.headers.authorization)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="muxgate push"');
      this.#warnings.warn('push_refused', { remote: req.socket.remoteAddress }, 'push refused: missing or wrong bearer secret');
      return this.#answer(res, 401, { error: 'unauthorized: send Authorization: Bearer <MUX_PUSH_SECRET>' });
    }
    let boundary: string | null;
    try {
      boundary = multiplexBoundary(req.headers['content-type']);
    } catch (error) {
      return this.#answer(res, 415, { error: (error as Error).message });
    }
    if (boundary === null) {
      return this.#answer(res, 415, { error: 'unsupported media type: expected Content-Type: application/x-multiplex; boundary=...' });
    }
    const receipt = this.#router.createReceipt();
    const sink = new PushSink(this.#router, receipt);
    const parser = new MultiplexParser(boundary, this.#limits, sink);
    let bodyBytes = 0;
    const onData = (chunk: Buffer) => {
      bodyBytes += chunk.length;
      const excess = bodyBytes - this.#maxBodyBytes;
      // The parts that end within the limit stand, even when they arrived in the read that crossed it.
      parser.push(excess > 0 ? chunk.subarray(0, Math.max(0, chunk.length - excess)) : chunk);
      if (excess > 0 && sink.error === null) sink.onError(new PushTooLargeError(this.#maxBodyBytes));
      if (sink.error !== null) finish();
    };
    const finish = () => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      // Parts already routed to other shards are still counted in the answer.
      receipt.settled(ACK_TIMEOUT_MS).then(() => this.#conclude(req, res, sink, parser.partCount));
    };
    const onEnd = () => {
      parser.end();
      finish();
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', () => this.#router.releaseReceipt(receipt));
  }

  #conclude(req: IncomingMessage, res: ServerResponse, sink: PushSink, parts: number): void {
    const receipt = sink.receipt;
    this.#router.releaseReceipt(receipt);
    const result: Record<string, unknown> = { parts, deliveries: receipt.deliveries, gone: [...new Set(receipt.gone)] };
    if (Object.keys(receipt.channels).length > 0) result.channels = receipt.channels;
    // Handed to other nodes through Redis: sent, but not known to be written.
    if (receipt.forwarded > 0) result.forwarded = receipt.forwarded;
    // Acknowledgements that never came: a shard died with the parts; they may or may not have been written.
    if (receipt.pending > 0) result.unconfirmed = receipt.pending;
    const error = sink.error;
    if (error === null) return this.#answer(res, 200, result);
    const isTooLarge = error.code === ERR_PART_TOO_LARGE || error.code === ERR_PUSH_TOO_LARGE;
    this.#metrics.rejectedParts.inc({ source: 'push', reason: error.code });
    this.#warnings.warn('push_rejected', { code: error.code, err: error.message, partsBefore: parts }, 'push body rejected; the parts before it stand');
    // The rest of the body is not read: close the connection after answering.
    res.setHeader('Connection', 'close');
    this.#answer(res, isTooLarge ? 413 : 400, { error: error.message, code: error.code, ...result });
    req.resume();
  }

  #isAuthorized(header: string | undefined): boolean {
    if (this.#secretDigest === null) return true;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    return timingSafeEqual(digest(match === null ? '' : match[1]), this.#secretDigest) && match !== null;
  }

  #answer(res: ServerResponse, status: number, body: object): void {
    this.#metrics.requests.inc({ listener: 'push', class: statusClass(status) });
    const json = JSON.stringify(body) + '\n';
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
    res.end(json);
  }
}
