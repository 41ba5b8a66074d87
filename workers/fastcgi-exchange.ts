// One FastCGI request up to its answer's head: the request body sent with backpressure, MUX_FASTCGI_TIMEOUT counted
// only while the backend is what is waited for, stderr logged, the CGI head parsed; then the body, to its reader.
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { CgiHeadParser, type CgiHead } from '../src/protocol/cgi-response.ts';
import type { MultiplexParser } from '../src/protocol/multiplex-parser.ts';
import type { FastcgiRequest } from './backend.ts';
import type { ShardMetrics } from './metrics.ts';

const MAX_CGI_HEAD_BYTES = 65_536;
const MAX_STDERR_LOGGED = 4096;

/** Why an exchange ended without a head (the label of muxgate_fastcgi_errors_total). */
export type ExchangeFailure = 'timeout' | 'bad_head' | 'no_head';

export interface ExchangeListener {
  /** The head arrived; `rest` is the start of the body. The body is then read with readBody() or readMultiplexed(). */
  onHead(head: CgiHead, rest: Buffer): void;
  /** No head came: counted and logged already. Not called after abort(). */
  onFailure(failure: ExchangeFailure): void;
}

export interface ExchangeOptions {
  timeoutMs: number;
  metrics: ShardMetrics;
  log: Logger;
  warnings: RepeatedWarnings;
  /** What log lines name the request by. */
  label: Record<string, unknown>;
}

export class FastcgiExchange {
  readonly request: FastcgiRequest;
  readonly #options: ExchangeOptions;
  readonly #listener: ExchangeListener;
  readonly #headParser = new CgiHeadParser(MAX_CGI_HEAD_BYTES);
  readonly #startedAt = performance.now();
  #timer: NodeJS.Timeout | null = null;
  #isWaitingForHead = true;
  #isAborted = false;
  #isFeedingOthers = false;
  #stderr = '';

  constructor(request: FastcgiRequest, options: ExchangeOptions, listener: ExchangeListener) {
    this.request = request;
    this.#options = options;
    this.#listener = listener;
    request.stderr.on('data', this.#onStderr);
    request.stderr.once('end', this.#onStderrEnd);
    request.stdout.on('data', this.#onHeadData);
    request.stdout.once('end', this.#onEndBeforeHead);
  }

  /** A request without a body: the backend's turn to answer. */
  sendNoBody(): void {
    this.#waitForBackend(true);
  }

  /** A body read whole beforehand (a chunked request body). */
  sendWhole(body: Buffer): void {
    this.request.stdin.end(body);
    this.#waitForBackend(true);
  }

  /**
   * Streams the client's body with backpressure. The timeout runs while the backend is to take more of the body or, once
   * it has it all, to answer; never while a slow client is still sending (that is MUX_REQUEST_TIMEOUT's, a 408).
   */
  sendFrom(req: IncomingMessage): void {
    const stdin = this.request.stdin;
    const onData = (chunk: Buffer) => {
      if (stdin.write(chunk)) return;
      req.pause();
      this.#waitForBackend(true);
    };
    req.on('data', onData);
    stdin.on('drain', () => {
      this.#waitForBackend(false);
      req.resume();
    });
    req.once('end', () => {
      stdin.end();
      this.#waitForBackend(true);
    });
    // The backend closed before taking the whole body: the rest is read and dropped, as nginx discards it.
    stdin.once('close', () => {
      if (req.complete) return;
      req.removeListener('data', onData);
      req.resume();
    });
  }

  /**
   * The client the answer was for has gone (its response closed): the request is stopped, and no failure reported,
   * unless its body now feeds other streams (see feedsOthers()). Called with the response closing, whenever that is.
   */
  readonly onClientGone = (): void => {
    if (this.#isFeedingOthers) return;
    if (this.#isWaitingForHead) this.#options.log.debug(this.#options.label, 'client left before the backend answered');
    this.#isAborted = true;
    this.request.abort();
  };

  /** The answer is a multiplexed body whose parts feed other streams: the requester leaving no longer stops it. */
  feedsOthers(): void {
    this.#isFeedingOthers = true;
  }

  /** The body after the head, chunk by chunk. */
  readBody(onChunk: (chunk: Buffer) => void, onEnd: () => void): void {
    this.request.stdout.on('data', onChunk);
    this.request.stdout.once('end', onEnd);
  }

  /** A multiplexed body after the head, starting with `rest`, into its parser. */
  readMultiplexed(parser: MultiplexParser, rest: Buffer, onEnd: () => void): void {
    if (rest.length > 0) parser.push(rest);
    this.readBody((chunk) => parser.push(chunk), () => {
      parser.end();
      onEnd();
    });
  }

  /** The body is not wanted (the answer was refused): read and dropped, so that the request can end. */
  discardBody(): void {
    this.request.stdout.resume();
  }

  #waitForBackend(isWaiting: boolean): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = isWaiting && this.#isWaitingForHead ? setTimeout(this.#onTimeout, this.#options.timeoutMs) : null;
  }

  #stopWaitingForHead(): void {
    this.#waitForBackend(false);
    this.#isWaitingForHead = false;
    this.request.stdout.removeListener('data', this.#onHeadData);
    this.request.stdout.removeListener('end', this.#onEndBeforeHead);
  }

  #fail(failure: ExchangeFailure, kind: string, fields: Record<string, unknown>, message: string): void {
    this.#options.metrics.fastcgiErrors.inc({ kind: failure });
    this.#options.warnings.warn(kind, { ...this.#options.label, ...fields }, message);
    this.#listener.onFailure(failure);
  }

  readonly #onTimeout = (): void => {
    this.#stopWaitingForHead();
    this.request.abort();
    this.#fail('timeout', 'backend_timeout', { timeoutMs: this.#options.timeoutMs }, 'backend response head timed out');
  };

  readonly #onHeadData = (chunk: Buffer): void => {
    let parsed: ReturnType<CgiHeadParser['push']>;
    try {
      parsed = this.#headParser.push(chunk);
    } catch (error) {
      this.#stopWaitingForHead();
      this.discardBody();
      return this.#fail('bad_head', 'backend_bad_head', { err: (error as Error).message }, 'backend sent a malformed CGI head');
    }
    if (parsed === null) return;
    this.#stopWaitingForHead();
    this.#options.metrics.fastcgiDuration.observe((performance.now() - this.#startedAt) / 1000);
    this.#listener.onHead(parsed.head, parsed.rest);
  };

  readonly #onEndBeforeHead = (): void => {
    this.#stopWaitingForHead();
    // Aborted for a client that left: no backend error.
    if (this.#isAborted) return;
    this.#fail('no_head', 'backend_no_head', { exit: String(this.request.getExitStatus()) }, 'backend ended without a response head');
  };

  readonly #onStderr = (chunk: Buffer): void => {
    if (this.#stderr.length < MAX_STDERR_LOGGED) this.#stderr += chunk.toString('utf8', 0, MAX_STDERR_LOGGED - this.#stderr.length);
  };

  readonly #onStderrEnd = (): void => {
    if (this.#stderr !== '') this.#options.warnings.warn('backend_stderr', { ...this.#options.label, stderr: this.#stderr }, 'backend stderr');
  };
}
