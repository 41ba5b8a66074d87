// The piscina pool of shard threads: their control ports, the router mesh between them, restarts.
import type { MessagePort, Transferable, Worker } from 'node:worker_threads';
import type { Socket } from 'node:net';
import { Piscina } from 'piscina';
import type { Config, BackendAddress } from './config.ts';
import type { Logger } from './log.ts';
import type { MainMetrics } from './main-metrics.ts';
import type { ControlMessage, ListenerKind, ShardInit, ShardReport } from './shard-messages.ts';
import type { TlsPair } from './tls-pair.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { MessageChannel } = process.getBuiltinModule('node:worker_threads');
const v8 = process.getBuiltinModule('node:v8');

const SHARD_FILE = new URL('../workers/shard.ts', import.meta.url).href;
const MAX_RESTART_DELAY_MS = 5000;

interface ShardSlot {
  index: number;
  control: MessagePort | null;
  isUp: boolean;
  threadId: number;
  restarts: number;
  task: Promise<unknown> | null;
}

export interface GatheredMetrics {
  metrics: object[][];
  up: boolean[];
}

const YOUNG_GENERATION_MB = 8;
/**
 * V8 lets the old generation grow well past its live size before a major GC; after a burst of connections the
 * difference is the burst's garbage (requests, FastCGI exchanges), and it stays resident while the streams are
 * held: 14.6 KiB per held stream at 10,000 streams (2 shards). Collecting at 1.2× the live size: 8.2 KiB, for
 * about 10 % of peak fan-out throughput. A --heap-growing-percent given to node wins.
 */
const HEAP_GROWING_PERCENT = 20;

export class ShardPool {
  readonly #config: Readonly<Config>;
  readonly #backend: BackendAddress;
  readonly #log: Logger;
  readonly #metrics: MainMetrics;
  readonly #pool: Piscina;
  readonly #slots: ShardSlot[];
  readonly #connectionCounts: Int32Array;
  readonly #connectionCountsBuffer: SharedArrayBuffer;
  readonly #metricsRequests = new Map<number, (metrics: object[]) => void>();
  readonly #lastMetrics: (object[] | null)[];
  #nextMetricsId = 1;
  #isStopping = false;
  /** The pair every shard serves, and a restarted one starts with. */
  #tls: TlsPair | null;
  #readyWaiters: (() => void)[] = [];

  constructor(config: Readonly<Config>, backend: BackendAddress, log: Logger, metrics: MainMetrics, tls: TlsPair | null) {
    this.#config = config;
    this.#tls = tls;
    this.#backend = backend;
    this.#log = log;
    this.#metrics = metrics;
    this.#connectionCountsBuffer = new SharedArrayBuffer(4 * config.shards);
    this.#connectionCounts = new Int32Array(this.#connectionCountsBuffer);
    if (!process.execArgv.some((arg) => /^--heap[-_]growing[-_]percent/.test(arg))) {
      v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    }
    // V8 reads --max-semi-space-size over a worker's resourceLimits: the 1 MB npm start gives the main thread would be
    // the shards' too (2.75 MB of young generation instead of 8, and slower fan-out). The flag is read as a heap is
    // made, so the main thread keeps its own.
    v8.setFlagsFromString('--max-semi-space-size=0');
    this.#pool = new Piscina({
      filename: SHARD_FILE,
      minThreads: config.shards,
      maxThreads: config.shards,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      // V8 lets a busy worker's young generation grow to ~60 MB, all of it resident; 8 MB measured as fast on
      // fan-out (scavenges are cheaper) and 6 KiB less RSS per held stream at 10,000 streams.
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
    this.#lastMetrics = new Array(config.shards).fill(null);
    this.#slots = Array.from({ length: config.shards }, (_, index) => ({ index, control: null, isUp: false, threadId: -1, restarts: 0, task: null }));
  }

  get size(): number {
    return this.#slots.length;
  }

  isUp(index: number): boolean {
    return this.#slots[index].isUp;
  }

  /** The thread running a shard, for diagnostics (and for tests that kill one). */
  threadOf(index: number): Worker | undefined {
    return this.#pool.threads.find((thread) => thread.threadId === this.#slots[index].threadId);
  }

  /** Starts every shard; resolves when all are ready. */
  async start(): Promise<void> {
    const ready = Promise.all(this.#slots.map(() => new Promise<void>((resolve) => this.#readyWaiters.push(resolve))));
    for (const slot of this.#slots) this.#startShard(slot);
    await ready;
  }

  /** Client connections held by all shards (and on their way to one). */
  get connectionCount(): number {
    let total = 0;
    for (let i = 0; i < this.#slots.length; i++) total += Atomics.load(this.#connectionCounts, i);
    return total;
  }

  /** Moves an accepted, paused socket to the shard with the fewest connections. */
  transfer(socket: Socket, listener: ListenerKind): void {
    let best: ShardSlot | null = null;
    let bestCount = Infinity;
    for (const slot of this.#slots) {
      if (!slot.isUp) continue;
      const count = Atomics.load(this.#connectionCounts, slot.index);
      if (count < bestCount) {
        best = slot;
        bestCount = count;
      }
    }
    if (best === null || best.control === null) {
      socket.destroy();
      return;
    }
    // Counted here, not when the shard adopts it, so that a burst of accepts spreads evenly;
    // the shard takes it off when the connection closes.
    Atomics.add(this.#connectionCounts, best.index, 1);
    try {
      best.control.postMessage({ type: 'socket', socket, listener } satisfies ControlMessage, [socket as unknown as Transferable]);
    } catch (error) {
      Atomics.sub(this.#connectionCounts, best.index, 1);
      this.#log.warn({ err: (error as Error).message }, 'socket could not be moved to a shard');
      socket.destroy();
    }
  }

  /**
   * Hands a new certificate and key to every shard: a connection transferred after this call is on the same control
   * port behind it, so its handshake uses the new pair. A shard that is down gets it when it restarts.
   */
  setTls(pair: TlsPair): void {
    this.#tls = pair;
    for (const slot of this.#slots) slot.control?.postMessage({ type: 'tls', pair } satisfies ControlMessage);
  }

  /** Blocks a shard's thread for ms, as a runaway computation would (tests of collection timeouts). */
  stall(index: number, ms: number): void {
    this.#slots[index].control?.postMessage({ type: 'stall', ms } satisfies ControlMessage);
  }

  /**
   * Every shard's registry as JSON. A shard that does not answer within timeoutMs is reported
   * down, and its last answer stands in, so that its counters do not seem to reset.
   */
  async gatherMetrics(timeoutMs: number): Promise<GatheredMetrics> {
    const up = this.#slots.map(() => false);
    await Promise.all(this.#slots.map((slot) => {
      if (!slot.isUp || slot.control === null) return null;
      const id = this.#nextMetricsId++;
      const control = slot.control;
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#metricsRequests.delete(id);
          resolve();
        }, timeoutMs);
        this.#metricsRequests.set(id, (metrics) => {
          clearTimeout(timer);
          up[slot.index] = true;
          this.#lastMetrics[slot.index] = metrics;
          resolve();
        });
        control.postMessage({ type: 'metrics', id } satisfies ControlMessage);
      });
    }));
    return { metrics: this.#lastMetrics.filter((metrics) => metrics !== null), up };
  }

  async shutdown(): Promise<void> {
    this.#isStopping = true;
    for (const slot of this.#slots) slot.control?.postMessage({ type: 'shutdown' } satisfies ControlMessage);
    await Promise.allSettled(this.#slots.map((slot) => slot.task));
    await this.#pool.destroy();
  }

  #startShard(slot: ShardSlot): void {
    const { port1: control, port2: shardControl } = new MessageChannel();
    slot.control = control;
    control.on('message', (report: ShardReport) => this.#onReport(slot, report));
    const init: ShardInit = {
      index: slot.index,
      config: this.#config,
      backend: this.#backend,
      control: shardControl,
      connectionCounts: this.#connectionCountsBuffer,
      tls: this.#tls,
    };
    // `as never`: piscina's TransferList type infers the options overload of postMessage.
    slot.task = this.#pool.run(init, { transferList: [shardControl] as never }).then(
      () => this.#onShardExit(slot, null),
      (error: Error) => this.#onShardExit(slot, error),
    );
  }

  #onReport(slot: ShardSlot, report: ShardReport): void {
    if (report.type === 'metrics') {
      this.#metricsRequests.get(report.id)?.(report.metrics);
      this.#metricsRequests.delete(report.id);
      return;
    }
    // A fresh mesh link to every shard that is up; the others link up when they come back.
    for (const peer of this.#slots) {
      if (peer === slot || !peer.isUp || peer.control === null) continue;
      const { port1, port2 } = new MessageChannel();
      slot.control?.postMessage({ type: 'peer', shard: peer.index, port: port1 } satisfies ControlMessage, [port1]);
      peer.control.postMessage({ type: 'peer', shard: slot.index, port: port2 } satisfies ControlMessage, [port2]);
    }
    slot.isUp = true;
    slot.threadId = report.threadId;
    this.#metrics.shardUp.set({ shard: String(slot.index) }, 1);
    this.#log.debug({ shard: slot.index }, 'shard up');
    this.#readyWaiters.shift()?.();
  }

  #onShardExit(slot: ShardSlot, error: Error | null): void {
    const wasUp = slot.isUp;
    slot.isUp = false;
    slot.control?.close();
    slot.control = null;
    Atomics.store(this.#connectionCounts, slot.index, 0);
    this.#metrics.shardUp.set({ shard: String(slot.index) }, 0);
    for (const peer of this.#slots) {
      if (peer !== slot && peer.control !== null) {
        peer.control.postMessage({ type: 'peer', shard: slot.index, port: null } satisfies ControlMessage);
      }
    }
    if (this.#isStopping) return;
    this.#metrics.shardRestarts.inc();
    slot.restarts++;
    const delay = wasUp ? 0 : Math.min(100 * 2 ** slot.restarts, MAX_RESTART_DELAY_MS);
    this.#log.error({ shard: slot.index, err: error?.message ?? 'task returned', restartInMs: delay }, 'shard died; restarting it (its clients were disconnected)');
    setTimeout(() => this.#startShard(slot), delay);
  }
}
