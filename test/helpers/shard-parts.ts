// In-process fixtures for the shard's parts: held streams over real sockets (a node:http server whose requests open
// held streams, as the gateway does), and the routers of a node's shards over real MessageChannels.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { pino } from 'pino';
import { RepeatedWarnings } from '../../src/repeated-warnings.ts';
import { mintToken } from '../../src/protocol/token.ts';
import type { Part } from '../../src/protocol/multiplex-parser.ts';
import type { ChannelSubscription } from '../../src/protocol/headers.ts';
import type { TestContext } from 'node:test';
import type { Delivery } from '../../workers/delivery.ts';
import type { EndReason, HeldStream, StreamOptions } from '../../workers/held-stream.ts';
import { HeldStreams } from '../../workers/held-streams.ts';
import { ChannelLog } from '../../workers/channel-log.ts';
import { Router } from '../../workers/router.ts';
import { createShardMetrics } from '../../workers/metrics.ts';
import { RawHttp } from './raw-http.ts';

export const NODE_ID = 'n1';

export const silentLog = pino({ level: 'silent' });
export const silentWarnings = new RepeatedWarnings(silentLog, 10_000);

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
      requestUri: '/', isSecure: false, ...options,
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

/** Runs a test's body with what `start` makes, and closes it however the body ends. */
export async function closing<T extends { close(): void }>(start: Promise<T>, body: (it: T) => Promise<void>): Promise<void> {
  const it = await start;
  try {
    await body(it);
  } finally {
    it.close();
  }
}

export function heldStreams(
  metrics: ShardMetrics, onEnded: (stream: HeldStream, reason: EndReason) => void = () => {}, options: { flushSliceMs?: number; backlogFlushIntervalMs?: number } = {},
): HeldStreams {
  const streams = new HeldStreams({ metrics, log: silentLog, warnings: silentWarnings, maxBufferedBytes: 1 << 20, hasEventIds: true, ...options });
  streams.watchEnded(onEnded);
  return streams;
}

export function channels(...names: string[]): ChannelSubscription[] {
  return names.map((name) => ({ name, since: null }));
}

export function part(body: string, to: { tokens?: string[]; channels?: string[]; isClose?: boolean; isBinary?: boolean }): Part {
  return { tokens: to.tokens ?? [], channels: to.channels ?? [], isClose: to.isClose ?? false, isBinary: to.isBinary ?? false, body: Buffer.from(body) };
}

/** One shard of a node held in this thread: its streams, their server, its router. */
export interface TestShard {
  index: number;
  metrics: ShardMetrics;
  streams: HeldStreams;
  server: StreamServer;
  router: Router;
  channelLog: ChannelLog | null;
  mint(): string;
}

/** The shards of one node, their routers connected by MessageChannels as the main thread connects them. */
export class TestNode {
  readonly shards: TestShard[];
  readonly #ports: MessagePort[] = [];

  private constructor(shards: TestShard[]) {
    this.shards = shards;
  }

  static async start(count: number, historyLength = 100): Promise<TestNode> {
    const shards: TestShard[] = [];
    for (let index = 0; index < count; index++) {
      const metrics = createShardMetrics(index);
      const streams = heldStreams(metrics);
      const channelLog = index === 0
        ? new ChannelLog({ maxParts: historyLength, maxAgeMs: 0, maxBytes: 1 << 30 }, metrics, silentWarnings)
        : null;
      const router = new Router({
        shard: index, nodeId: NODE_ID, shardCount: count, streams, channelLog, redis: null, historyLength, historyAgeMs: 0, metrics,
        log: silentLog, warnings: silentWarnings,
      });
      const server = await StreamServer.start(streams);
      shards.push({ index, metrics, streams, server, router, channelLog, mint: () => mintToken(NODE_ID, index) });
    }
    const node = new TestNode(shards);
    // A full mesh, as the main thread connects the shards.
    for (let a = 0; a < count; a++) {
      for (let b = a + 1; b < count; b++) {
        const { port1, port2 } = new MessageChannel();
        node.#ports.push(port1, port2);
        shards[a].router.setPeer(b, port1);
        shards[b].router.setPeer(a, port2);
      }
    }
    return node;
  }

  /** Per shard, from now on: the body of every part written to its streams → whether its Delivery was binary. */
  recordBinaryFlags(t: TestContext): Map<string, boolean>[] {
    return this.shards.map((shard) => {
      const flags = new Map<string, boolean>();
      const write = shard.streams.write.bind(shard.streams);
      t.mock.method(shard.streams, 'write', (stream: HeldStream, delivery: Delivery) => {
        flags.set(delivery.body.toString('latin1'), delivery.isBinary);
        return write(stream, delivery);
      });
      return flags;
    });
  }

  /** The shard is gone, as the main thread tells the others when its thread exits. */
  kill(index: number): void {
    for (const shard of this.shards) if (shard.index !== index) shard.router.setPeer(index, null);
    const dead = this.shards[index];
    dead.server.close();
    dead.streams.stop();
    dead.channelLog?.stop();
  }

  close(): void {
    for (const port of this.#ports) port.close();
    for (const shard of this.shards) {
      shard.server.close();
      shard.streams.stop();
      shard.channelLog?.stop();
    }
  }
}
