// The client's side of held WebSockets: each message becomes a FastCGI request to the opening's script, one at a time
// per connection and in order; pongs; the client's close. A multiplexed answer is routed like any response.
import type { WebSocket } from 'ws';
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { MultiplexParser, type MultiplexParserLimits } from '../src/protocol/multiplex-parser.ts';
import { multiplexBoundaryOf } from '../src/protocol/response-head.ts';
import type { Backend, FastcgiRequest } from './backend.ts';
import { messageParams } from './cgi-params.ts';
import { FastcgiExchange } from './fastcgi-exchange.ts';
import type { HeldStream } from './held-stream.ts';
import type { HeldStreams } from './held-streams.ts';
import type { ShardMetrics } from './metrics.ts';
import { partLimits } from './part-limits.ts';
import { ACK_TIMEOUT_MS } from './push-receipt.ts';
import type { ResponsePartSink } from './response-part-sink.ts';
import type { Router } from './router.ts';

/** Messages that may wait behind the one in flight before muxgate stops reading the connection. */
export const MAX_WAITING_MESSAGES = 16;

export interface WebSocketClientsContext {
  config: Readonly<Config>;
  backend: Backend;
  streams: HeldStreams;
  router: Router;
  partSink: ResponsePartSink;
  metrics: ShardMetrics;
  log: Logger;
  warnings: RepeatedWarnings;
}

/**
 * The close code ws sends for each client error it reports (its documented WS_ERR_* codes): the code the close event
 * and the metric tell. An error not listed here sent no close frame (the connection failed).
 */
const CLOSE_CODE_OF_ERROR: Readonly<Record<string, number>> = {
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: 1008,
  WS_ERR_EXPECTED_FIN: 1002,
  WS_ERR_EXPECTED_MASK: 1002,
  WS_ERR_INVALID_CLOSE_CODE: 1002,
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: 1002,
  WS_ERR_INVALID_OPCODE: 1002,
  WS_ERR_UNEXPECTED_MASK: 1002,
  WS_ERR_UNEXPECTED_RSV_1: 1002,
  WS_ERR_UNEXPECTED_RSV_2_3: 1002,
};

/** What the backend's answer to a message did (the label of muxgate_websocket_messages_in_total). */
type Answer = 'routed' | 'ignored' | 'refused' | 'failed';

export class WebSocketClients {
  readonly #ctx: WebSocketClientsContext;
  readonly #limits: MultiplexParserLimits;
  /** Every WebSocket's stream: the listeners are shared, called with the WebSocket as `this`. */
  readonly #streams = new Map<WebSocket, HeldStream>();
  readonly #onMessage: (this: WebSocket, data: Buffer, isBinary: boolean) => void;
  readonly #onPong: (this: WebSocket) => void;
  readonly #onClose: (this: WebSocket, code: number) => void;
  readonly #onError: (this: WebSocket, error: Error) => void;

  constructor(ctx: WebSocketClientsContext) {
    this.#ctx = ctx;
    this.#limits = partLimits(ctx.config);
    const clients = this;
    this.#onMessage = function (this: WebSocket, data: Buffer, isBinary: boolean) {
      clients.#received(clients.#streams.get(this)!, data, isBinary);
    };
    this.#onPong = function (this: WebSocket) {
      clients.#streams.get(this)!.webSocket!.isPingUnanswered = false;
    };
    this.#onClose = function (this: WebSocket, code: number) {
      const stream = clients.#streams.get(this)!;
      clients.#streams.delete(this);
      const state = stream.webSocket!;
      if (state.closeCode === 0) state.closeCode = code;
      // The messages the client sent before it left still reach the backend, and its close event comes after them.
      if (state.messages.length === 0) ctx.streams.end(stream, 'client');
    };
    // A protocol error (ws closes the connection with its code: 1002, 1007, 1009), or the connection failing. ws's close
    // event then tells 1006: the client's close frame is never read after a protocol error.
    this.#onError = function (this: WebSocket, error: Error) {
      const state = clients.#streams.get(this)?.webSocket ?? null;
      const code = CLOSE_CODE_OF_ERROR[(error as NodeJS.ErrnoException).code ?? ''];
      if (state !== null && state.closeCode === 0 && code !== undefined) state.closeCode = code;
      ctx.log.debug({ err: error.message }, 'WebSocket closed on a client error');
    };
  }

  /** Listens to the client of a WebSocket just opened. */
  attach(stream: HeldStream): void {
    const ws = stream.webSocket!.ws;
    this.#streams.set(ws, stream);
    ws.on('message', this.#onMessage);
    ws.on('pong', this.#onPong);
    ws.on('close', this.#onClose);
    ws.on('error', this.#onError);
  }

  #received(stream: HeldStream, data: Buffer, isBinary: boolean): void {
    // Sent while muxgate's close was on its way (RFC 6455 §5.5.1): the connection is over.
    if (stream.hasEnded) return void this.#ctx.metrics.webSocketMessagesIn.inc({ result: 'dropped' });
    const state = stream.webSocket!;
    const waiting = state.messages.push({ data, isBinary });
    if (waiting === 1) this.#send(stream);
    // TCP backpressure on a client that sends faster than the backend answers: nothing is dropped or piled up.
    else if (waiting > MAX_WAITING_MESSAGES) state.ws.pause();
  }

  /** Sends the first waiting message; the next goes once its answer has been read and its parts handed on. */
  async #send(stream: HeldStream): Promise<void> {
    const { config, backend, metrics, log, warnings } = this.#ctx;
    const { data, isBinary } = stream.webSocket!.messages[0];
    const uri = stream.options.requestUri;
    let request: FastcgiRequest;
    try {
      request = await backend.request(messageParams(uri, stream.token, config, data.length, isBinary, stream.options.isSecure), data.length > 0);
    } catch (error) {
      metrics.fastcgiErrors.inc({ kind: 'connect' });
      warnings.warn('backend_unavailable', { err: (error as Error).message }, 'backend unavailable');
      return this.#answered(stream, 'failed');
    }
    const exchange = new FastcgiExchange(request, { timeoutMs: config.fastcgiTimeoutMs, metrics, log, warnings, label: { event: 'message', uri } }, {
      onHead: (head, rest) => {
        let boundary: string | null;
        try {
          boundary = multiplexBoundaryOf(head);
        } catch (error) {
          metrics.fastcgiErrors.inc({ kind: 'bad_head' });
          warnings.warn('backend_bad_boundary', { err: (error as Error).message }, 'backend sent a multiplexed response without a usable boundary');
          exchange.discardBody();
          return this.#answered(stream, 'failed');
        }
        if (boundary === null) {
          exchange.discardBody();
          return this.#answered(stream, head.status >= 500 ? 'failed' : head.status >= 400 ? 'refused' : 'ignored');
        }
        const { router, partSink } = this.#ctx;
        const receipt = router.createReceipt(false);
        exchange.readMultiplexed(new MultiplexParser(boundary, this.#limits, partSink.forResponse(receipt)), rest, () => {
          // As a client waiting for one response before its next request: the next message cannot overtake these parts.
          receipt.whenSettled(ACK_TIMEOUT_MS, () => {
            router.releaseReceipt(receipt);
            this.#answered(stream, 'routed');
          });
        });
      },
      onFailure: () => this.#answered(stream, 'failed'),
    });
    if (data.length > 0) exchange.sendWhole(data);
    else exchange.sendNoBody();
  }

  /**
   * The backend has answered the first waiting message: the next one goes. A refusal (4xx) closes the connection with
   * 1008, a failure with 1011; then, as once muxgate has closed it for any reason, the messages still waiting are
   * dropped (counted): no one is there to take their answers.
   */
  #answered(stream: HeldStream, answer: Answer): void {
    const { metrics, streams } = this.#ctx;
    const state = stream.webSocket!;
    metrics.webSocketMessagesIn.inc({ result: answer });
    state.messages.shift();
    const isRefused = answer === 'refused' || answer === 'failed';
    if (isRefused || stream.hasEnded) {
      if (state.messages.length > 0) metrics.webSocketMessagesIn.inc({ result: 'dropped' }, state.messages.length);
      state.messages.length = 0;
      if (isRefused && state.closeCode === 0) state.closeCode = answer === 'refused' ? 1008 : 1011;
      return streams.end(stream, this.#streams.has(state.ws) ? 'closed' : 'client');
    }
    if (state.messages.length === MAX_WAITING_MESSAGES) state.ws.resume();
    if (state.messages.length > 0) return void this.#send(stream);
    // The client closed while its last messages were on their way.
    if (!this.#streams.has(state.ws)) streams.end(stream, 'client');
  }
}
