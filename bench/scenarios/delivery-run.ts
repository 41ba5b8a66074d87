// One measured publish run against subscribers already open: deliveries/s, latency, missing, and everyone's CPU.
import { setTimeout as sleep } from 'node:timers/promises';
import { CpuMeter } from '../proc-stats.ts';
import type { PublisherProcess } from '../publisher-process.ts';
import type { SubscriberPool } from '../subscriber-pool.ts';
import type { Address, RunningSystem } from '../systems/system.ts';

/** A run ends when every delivery arrived, or none arrived for this long. */
const STALL_MS = 3000;
/** How long the warm-up message may take to reach every subscriber. */
const WARM_UP_MS = 10_000;

export interface DeliveryRun {
  expected: number;
  received: number;
  /** Deliveries received / (last received − first sent). */
  rate: number;
  seconds: number;
  p50: number;
  p99: number;
  max: number;
  serverCpu: number;
  /** Server CPU seconds per million deliveries received: the figure that holds on a shared machine. */
  serverCpuPerMillion: number;
  subscriberCpu: number;
  publisherCpu: number;
  machineCpu: number;
  failures: Array<[string, number]>;
  closed: number;
  /** muxgate: the highest of its shards' event-loop delay p99 over the run, ms (NaN for the others). */
  loopDelayP99: number;
}

export interface PublishPlan {
  addresses: Address[];
  count: number;
  concurrency: number;
  rate: number;
  /** Deliveries the plan should produce. */
  expected: number;
  isWebSocket: boolean;
}

/** Polls the subscribers until they have `expected` deliveries, or none arrived for STALL_MS (or `stallMs`). */
export async function untilDelivered(pool: SubscriberPool, expected: number, stallMs = STALL_MS): Promise<number> {
  let last = -1;
  let lastChangeAt = performance.now();
  for (;;) {
    const { deliveries } = await pool.stats(false);
    if (deliveries >= expected) return deliveries;
    if (deliveries !== last) {
      last = deliveries;
      lastChangeAt = performance.now();
    } else if (performance.now() - lastChangeAt > stallMs) {
      return deliveries;
    }
    await sleep(50);
  }
}

/**
 * Proves every subscriber is subscribed before measuring: a server may answer the stream's head before the
 * subscription is in place (Pushpin's handler subscribes after the proxy answered). Returns the deliveries seen.
 */
export async function warmUp(system: RunningSystem, pool: SubscriberPool, publisher: PublisherProcess, plan: PublishPlan): Promise<number> {
  const perMessage = plan.expected / plan.count;
  await publisher.publish({
    kind: system.kind, url: system.publishUrl, addresses: plan.addresses, count: plan.addresses.length, concurrency: plan.concurrency, rate: 0, isWebSocket: plan.isWebSocket,
  });
  const seen = await untilDelivered(pool, perMessage * plan.addresses.length, WARM_UP_MS);
  await pool.stats(true);
  return seen;
}

export async function measureDeliveries(system: RunningSystem, pool: SubscriberPool, publisher: PublisherProcess, plan: PublishPlan): Promise<DeliveryRun> {
  await pool.stats(true);
  await system.loopDelaysMs?.();
  const cpu = new CpuMeter([system.serverPids(), publisher.pid, pool.pids]);
  const report = await publisher.publish({
    kind: system.kind, url: system.publishUrl, addresses: plan.addresses, count: plan.count, concurrency: plan.concurrency, rate: plan.rate, isWebSocket: plan.isWebSocket,
  });
  await untilDelivered(pool, plan.expected);
  const { processes: [serverCpu, publisherCpu, subscriberCpu], machine: machineCpu, seconds: cpuSeconds } = cpu.read();
  const loopDelays = await system.loopDelaysMs?.();
  const stats = await pool.stats(true);
  const seconds = (stats.lastAt - report.firstSentAt) / 1000;
  return {
    expected: plan.expected, received: stats.deliveries, rate: stats.deliveries / seconds, seconds,
    p50: stats.histogram.quantileMs(0.5), p99: stats.histogram.quantileMs(0.99), max: stats.histogram.quantileMs(1),
    serverCpu, serverCpuPerMillion: (serverCpu * cpuSeconds * 10_000) / stats.deliveries, subscriberCpu, publisherCpu, machineCpu, failures: report.failures, closed: stats.closed,
    loopDelayP99: loopDelays === undefined ? NaN : Math.max(...loopDelays),
  };
}
