// FastCGI requests to the backend through fastcgi-client.
import type { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';
import type { BackendAddress } from '../src/config.ts';
import { BackendUnavailableError } from '../src/errors.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { createRequire } = process.getBuiltinModule('node:module');

/**
 * stdout or stderr: 'data' and 'end' events, as a Readable's. Paused, the request's connection (its own) stops being
 * read, so the backend waits in TCP.
 */
export interface FastcgiOutput extends EventEmitter {
  pause(): this;
  resume(): this;
}

export interface FastcgiRequest {
  /** Made when first asked for; a request without a body has its stdin ended already. */
  stdin: Writable;
  stdout: FastcgiOutput;
  stderr: FastcgiOutput;
  abort(): void;
  getExitStatus(): Error | number | null;
}

interface FastcgiClient {
  /**
   * params: name-value pairs, which the patched client encodes with src/protocol/fastcgi-records.ts. bodyless: stdin is
   * ended with the params; such a request may use a kept connection, and is sent again on a new one if that turns out
   * closed unanswered.
   */
  request(params: Record<string, string>, callback: (error: Error | null, request: FastcgiRequest) => void, bodyless: boolean): void;
  once(event: 'ready', listener: () => void): void;
  /** A request is sent again: the kept connection it went on was closed before any answer. */
  on(event: 'retry', listener: () => void): void;
}

const createClient = createRequire(import.meta.url)('fastcgi-client') as (options: object) => FastcgiClient;

export class Backend {
  readonly #client: FastcgiClient;
  readonly #ready: Promise<void>;
  #isReady = false;

  /**
   * keepConnections: connections kept open for requests without a body (MUX_FASTCGI_KEEPALIVE). onRetry: a request is
   * sent again because the kept connection it went on had been closed.
   */
  constructor(address: BackendAddress, keepConnections: number, onRetry: () => void) {
    this.#client = createClient({
      ...(address.kind === 'unix' ? { sockFile: address.path } : { host: address.host, port: address.port }),
      skipCheckServer: true,
      maxConns: 65535,
      keepConns: keepConnections,
    });
    this.#ready = new Promise((resolve) => this.#client.once('ready', () => {
      this.#isReady = true;
      resolve();
    }));
    this.#client.on('retry', onRetry);
  }

  /**
   * Opens a RESPONDER request; rejects with BackendUnavailableError when no connection could be made.
   * Without a body, the client ends stdin in the same write as the params: a backend that answers before reading stdin
   * and closes would otherwise reset the connection under its own answer.
   */
  request(params: Record<string, string>, hasBody: boolean): Promise<FastcgiRequest> {
    // The client is ready a tick after it is made; from then on a request waits for no promise.
    if (!this.#isReady) return this.#ready.then(() => this.request(params, hasBody));
    return new Promise((resolve, reject) => {
      this.#client.request(params, (error, request) => {
        if (error) return reject(new BackendUnavailableError(error.message));
        if (hasBody) request.stdin.on('error', ignoreWriteError);
        resolve(request);
      }, !hasBody);
    });
  }
}

/**
 * A body written after the backend closed the connection (it answered early, or died) fails with EPIPE or ECANCELED;
 * unhandled, that error would end the shard. The request's stdout, which ends with the connection, tells the outcome.
 */
function ignoreWriteError(): void {}
