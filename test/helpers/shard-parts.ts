// In-process fixtures for the shard's parts: held streams over real sockets (a node:http server whose requests open
// held streams, as the gateway does).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { RepeatedWarnings } from '../../src/repeated-warnings.ts';
import { HeldStreams, type EndReason, type HeldStream, type StreamOptions } from '../../workers/held-streams.ts';
import { createShardMetrics } from '../../workers/metrics.ts';
import { RawHttp } from './raw-http.ts';

export const silentLog = pino({ level: 'silent' });

export type ShardMetrics = ReturnType<typeof createShardMetrics>;

/** A held stream's client: what it received after the response head. */
export class StreamClient {
  readonly http: RawHttp;
  readonly stream: HeldStream;

  constructor(client: RawHttp, stream: HeldStream) {
    this.http = client;
    this.stream = stream;
  }

  get body(): string {
    const text = this.http.text;
    const end = text.indexOf('\r\n\r\n');
    return end < 0 ? '' : text.slice(end + 4);
  }

  /** Resolves with the body once it is `expected` (fails at once if it can no longer be). */
  async waitForBody(expected: string, timeoutMs = 5000): Promise<string> {
    await this.http.waitFor(() => this.body.length >= expected.length, timeoutMs, `the body ${JSON.stringify(expected)}`);
    return this.body;
  }

  close(): void {
    this.http.close();
  }
}

interface Opening {
  token: string;
  options: StreamOptions;
  resolve(stream: HeldStream): void;
}

/** A node:http server whose requests each open one held stream in `streams`, with the options `open()` gives. */
export class StreamServer {
  readonly streams: HeldStreams;
  readonly #server: http.Server;
  #opening: Opening | null = null;

  private constructor(streams: HeldStreams) {
    this.streams = streams;
    this.#server = http.createServer((req, res) => {
      const opening = this.#opening!;
      this.#opening = null;
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.flushHeaders();
      opening.resolve(streams.open(opening.token, req, res, opening.options));
    });
  }

  static async start(streams: HeldStreams): Promise<StreamServer> {
    const server = new StreamServer(streams);
    await new Promise<void>((resolve) => server.#server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  /** Opens a held stream over HTTP/1.0 (parts written raw, unframed) and resolves once it is registered. */
  async open(token: string, options: Partial<StreamOptions> = {}): Promise<StreamClient> {
    const full: StreamOptions = {
      hold: 'stream', isChunked: false, isEventStream: false, keepAliveMs: 0, keepAliveData: null, timeoutMs: 0, channels: [],
      requestUri: '/', ...options,
    };
    const { promise, resolve } = Promise.withResolvers<HeldStream>();
    this.#opening = { token, options: full, resolve };
    const { port } = this.#server.address() as AddressInfo;
    const client = await RawHttp.get(`http://127.0.0.1:${port}/`, '1.0');
    return new StreamClient(client, await promise);
  }

  close(): void {
    this.#server.closeAllConnections();
    this.#server.close();
  }
}

export function heldStreams(metrics: ShardMetrics, onEnded: (stream: HeldStream, reason: EndReason) => void = () => {}): HeldStreams {
  return new HeldStreams(metrics, silentLog, new RepeatedWarnings(silentLog, 10_000), 1 << 20, true, onEnded);
}
