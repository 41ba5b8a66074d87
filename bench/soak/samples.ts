// muxgate's resources as the soak reads them: RSS, fds, gauges and live heap sampled during the churn, and muxgate
// idle before the churn and again after it.
import { setTimeout as sleep } from 'node:timers/promises';
import { metricValue, type Muxgate } from '../../test/helpers/muxgate.ts';
import { openFds, rssKiB } from '../proc-stats.ts';
import type { Churn } from './churn.ts';
import type { LiveHeap } from './live-heap.ts';

/** After the last client left: how long muxgate has to report no held stream and no connection. */
const SETTLE_TIMEOUT_MS = 15_000;
/** fds muxgate may hold, once idle again, beyond what it held before the first client. */
const IDLE_FD_SLACK = 8;

export interface Sample {
  /** seconds since the churn started */
  t: number;
  rssKiB: number;
  fds: number;
  heldStreams: number;
  openConnections: number;
  /** streams ended so far */
  cycles: number;
  /** per muxgate thread (V8 isolate): the heap its last full collection left, KiB (from --trace-gc) */
  liveHeapKiB: Record<string, number>;
}

export interface Resources {
  rssKiB: number;
  fds: number;
}

export interface SamplerOptions {
  mux: Muxgate;
  heap: LiveHeap;
  churn: Churn;
  /** performance.now() when the churn started */
  startedAt: number;
  seconds: number;
  sampleSeconds: number;
  /** the churn's end: at its deadline or earlier */
  end: AbortSignal;
  log: (line: string) => void;
}

export function resources(pid: number): Resources {
  return { rssKiB: rssKiB(pid), fds: openFds(pid) };
}

async function gauges(metricsUrl: string): Promise<{ heldStreams: number; openConnections: number }> {
  const [heldStreams, openConnections] = await Promise.all([
    metricValue(metricsUrl, 'muxgate_held_streams'),
    metricValue(metricsUrl, 'muxgate_open_connections'),
  ]);
  return { heldStreams: heldStreams ?? 0, openConnections: openConnections ?? 0 };
}

/** Samples every `sampleSeconds` of the churn until it ends, and logs a progress line for each sample. */
export async function sampleChurn(options: SamplerOptions): Promise<Sample[]> {
  const { mux, heap, churn, startedAt, seconds, sampleSeconds, end, log } = options;
  const pid = mux.child.pid!;
  const ended = new Promise<void>((resolve) => end.addEventListener('abort', () => resolve(), { once: true }));
  const samples: Sample[] = [];
  for (let next = sampleSeconds; ; next += sampleSeconds) {
    const wait = startedAt + next * 1000 - performance.now();
    await Promise.race([sleep(Math.max(0, wait)), ended]);
    // a sample at the deadline would catch the streams closing
    if (end.aborted || next >= seconds) return samples;
    const t = (performance.now() - startedAt) / 1000;
    const { heldStreams, openConnections } = await gauges(mux.metricsUrl);
    heap.read();
    const sample = { t, ...resources(pid), heldStreams, openConnections, cycles: churn.cycles, liveHeapKiB: { ...heap.latest } };
    samples.push(sample);
    log(`t=${t.toFixed(0)}s rss=${(sample.rssKiB / 1024).toFixed(1)}MiB fds=${sample.fds} held=${heldStreams} conns=${openConnections} cycles=${sample.cycles}`
      + ` full GCs=${heap.collections} parts pushed/received: token ${churn.tokenParts.pushed}/${churn.tokenParts.received}`
      + ` channel ${churn.channelParts.pushed}/${churn.channelParts.received} lost ${churn.lost} problems ${churn.failures.counts.size}`);
  }
}

/**
 * Once every client has left: waits for muxgate to hold no stream, no connection, and no more fds than it held
 * idle before the churn (within a slack), and counts a failure for each it still holds. Returns its resources then.
 */
export async function settle(mux: Muxgate, before: Resources, churn: Churn): Promise<Resources> {
  const pid = mux.child.pid!;
  const settleBy = Date.now() + SETTLE_TIMEOUT_MS;
  let left = await gauges(mux.metricsUrl);
  while ((left.heldStreams !== 0 || left.openConnections !== 0) && Date.now() < settleBy) {
    await sleep(200);
    left = await gauges(mux.metricsUrl);
  }
  if (left.heldStreams !== 0 || left.openConnections !== 0) {
    churn.failures.add('left open after every client left', `${left.heldStreams} held streams, ${left.openConnections} connections`);
  }
  let fds = openFds(pid);
  while (fds > before.fds + IDLE_FD_SLACK && Date.now() < settleBy) {
    await sleep(200);
    fds = openFds(pid);
  }
  if (fds > before.fds + IDLE_FD_SLACK) churn.failures.add('fds not released', `${fds} fds idle after the churn, ${before.fds} before`);
  return { rssKiB: rssKiB(pid), fds };
}
