// FastCGI requests to the backend through fastcgi-client.
import { createRequire } from 'node:module';
import type { Readable, Writable } from 'node:stream';
import type { BackendAddress } from '../src/config.ts';
import { MuxError } from '../src/errors.ts';

export interface FastcgiRequest {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  abort(): void;
  getExitStatus(): Error | number | null;
}

interface FastcgiClient {
  request(params: Record<string, string>, callback: (error: Error | null, request: FastcgiRequest) => void): void;
  once(event: 'ready', listener: () => void): void;
}

const createClient = createRequire(import.meta.url)('fastcgi-client') as (options: object) => FastcgiClient;

export class BackendUnavailableError extends MuxError {
  constructor(cause: string) {
    super('MUX_ERR_BACKEND_UNAVAILABLE', `the FastCGI backend could not be reached: ${cause}`);
  }
}

export class Backend {
  private readonly client: FastcgiClient;
  private readonly ready: Promise<void>;

  constructor(address: BackendAddress) {
    this.client = createClient({
      ...(address.kind === 'unix' ? { sockFile: address.path } : { host: address.host, port: address.port }),
      skipCheckServer: true,
      maxConns: 65535,
    });
    this.ready = new Promise((resolve) => this.client.once('ready', resolve));
  }

  /**
   * Opens a RESPONDER request; rejects with BackendUnavailableError when no connection could be made.
   * Without a body, stdin is ended at once, in the same write burst as the params: a backend that answers
   * before reading stdin and closes would otherwise reset the connection under its own answer.
   */
  async request(params: Record<string, string>, hasBody: boolean): Promise<FastcgiRequest> {
    await this.ready;
    return new Promise((resolve, reject) => {
      this.client.request(params, (error, request) => {
        if (error) return reject(new BackendUnavailableError(error.message));
        if (!hasBody) request.stdin.end();
        resolve(request);
      });
    });
  }
}
