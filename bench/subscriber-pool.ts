// The orchestrator's side of the subscriber processes: fork them, open streams, collect their counts.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LatencyHistogram } from './histogram.ts';
import { track } from './child-processes.ts';
import type { SubscriberCommand, SubscriberReport } from './subscribers.ts';

const SUBSCRIBERS = fileURLToPath(new URL('./subscribers.ts', import.meta.url));

type Reply<T extends SubscriberReport['type']> = Extract<SubscriberReport, { type: T }>;

export interface PoolStats {
  deliveries: number;
  /** Epoch ms of the last delivery any subscriber received (0: none). */
  lastAt: number;
  closed: number;
  histogram: LatencyHistogram;
}

function ask<T extends SubscriberReport['type']>(child: ChildProcess, command: SubscriberCommand, reply: T): Promise<Reply<T>> {
  return new Promise((resolve, reject) => {
    const onMessage = (report: SubscriberReport) => {
      if (report.type !== reply && report.type !== 'failed') return;
      cleanup();
      if (report.type === 'failed') reject(new Error(`subscriber ${child.pid}: ${report.message}`));
      else resolve(report as Reply<T>);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`subscriber ${child.pid} exited with code ${code}`));
    };
    const cleanup = () => {
      child.removeListener('message', onMessage);
      child.removeListener('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send(command);
  });
}

export class SubscriberPool {
  private readonly children: ChildProcess[];

  constructor(processes: number) {
    this.children = Array.from({ length: processes }, () => track(fork(SUBSCRIBERS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })));
  }

  get pids(): number[] {
    return this.children.map((child) => child.pid!);
  }

  /**
   * Opens `total` streams spread over the processes, each sending `request` (default: muxgate's bench backend, a
   * token stream) with `{channel}` filled in; resolves with their tokens ('' where the server names none), in
   * subscriber order, and the opens that had to be retried.
   */
  async open(port: number, total: number, options: { request?: string; channel?: string; isChannelEach?: boolean } = {}):
    Promise<{ tokens: string[]; failedOpens: Map<string, number> }> {
    const n = this.children.length;
    const counts = this.children.map((_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
    const replies = await Promise.all(this.children.map((child, i) => ask(child, {
      type: 'open', port, count: counts[i], firstSource: i,
      request: options.request ?? 'GET /s HTTP/1.1\r\nHost: bench\r\n\r\n', channel: options.channel ?? '',
      isChannelEach: options.isChannelEach ?? false, firstIndex: counts.slice(0, i).reduce((sum, c) => sum + c, 0),
    }, 'opened')));
    const failedOpens = new Map<string, number>();
    for (const [status, count] of replies.flatMap((reply) => reply.failedOpens)) failedOpens.set(status, (failedOpens.get(status) ?? 0) + count);
    return { tokens: replies.flatMap((reply) => reply.tokens), failedOpens };
  }

  /** The counts so far; `final` also gathers the latencies and starts every count afresh. */
  async stats(final: boolean): Promise<PoolStats> {
    const replies = await Promise.all(this.children.map((child) => ask(child, { type: 'stats', final }, 'stats')));
    const histogram = new LatencyHistogram();
    for (const reply of replies) if (reply.histogram !== null) histogram.add(reply.histogram);
    return {
      deliveries: replies.reduce((sum, reply) => sum + reply.deliveries, 0),
      lastAt: Math.max(...replies.map((reply) => reply.lastAt)),
      closed: replies.reduce((sum, reply) => sum + reply.closed, 0),
      histogram,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.send({ type: 'close' } satisfies SubscriberCommand);
    })));
  }
}
