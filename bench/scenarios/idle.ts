// Scenario 1, idle capacity: hold N streams (or WebSockets), measure the server's RSS growth per stream and the time to
// connect all.
import { setTimeout as sleep } from 'node:timers/promises';
import { CpuMeter, rssKiB } from '../proc-stats.ts';
import { SubscriberPool, type Http2Subscribers } from '../subscriber-pool.ts';
import type { SystemSpec } from './delivery-scenario.ts';
import { medianOf } from '../stats.ts';

const SETTLE_MS = 2000;

export interface IdleRun {
  streams: number;
  connectSeconds: number;
  beforeKiB: number;
  afterKiB: number;
  kiBPerStream: number;
  /** CPU % while connecting. */
  serverCpu: number;
  /** NaN: the system has no backend. */
  backendCpu: number;
  subscriberCpu: number;
  machineCpu: number;
}

export interface IdleResult {
  label: string;
  processes: number;
  median: IdleRun;
  runs: IdleRun[];
  notes: string[];
}

function serverRssKiB(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + rssKiB(pid), 0);
}

/** `http2`: the streams are held over TLS and HTTP/2 (the system's `http2Path`), so many per connection. */
export async function runIdle(spec: SystemSpec, streams: number, subscriberProcesses: number, runs: number, isWebSocket = false,
  http2?: Http2Subscribers): Promise<IdleResult> {
  const results: IdleRun[] = [];
  const notes: string[] = [];
  let label = spec.label;
  let processes = 0;
  for (let i = 0; i < runs; i++) {
    const system = await spec.start();
    label = system.label;
    const pool = new SubscriberPool(subscriberProcesses, http2);
    try {
      await sleep(SETTLE_MS);
      const pids = system.serverPids();
      processes = pids.length;
      const beforeKiB = serverRssKiB(pids);
      const backendPids = system.backendPids?.();
      const cpu = new CpuMeter([pids, pool.pids, backendPids ?? []]);
      const startedAt = performance.now();
      const request = http2 !== undefined ? system.http2Path : isWebSocket ? system.webSocketRequest : system.subscribeRequest;
      const { failedOpens } = await pool.open(system.port, streams, { request, channel: 'idle', isChannelEach: true, isWebSocket });
      const connectSeconds = (performance.now() - startedAt) / 1000;
      const { processes: [serverCpu, subscriberCpu, backendCpu], machine: machineCpu } = cpu.read();
      for (const [status, times] of failedOpens) notes.push(`run ${i + 1}: ${times}× "${status}" while connecting, retried`);
      await sleep(SETTLE_MS);
      const afterKiB = serverRssKiB(system.serverPids());
      results.push({ streams, connectSeconds, beforeKiB, afterKiB, kiBPerStream: (afterKiB - beforeKiB) / streams, serverCpu, backendCpu: backendPids === undefined ? NaN : backendCpu, subscriberCpu, machineCpu });
    } finally {
      await pool.close();
      await system.stop();
      for (const warning of system.warnings().slice(0, 5)) notes.push(`server log: ${warning}`);
    }
  }
  return { label, processes, median: medianOf(results), runs: results, notes };
}
