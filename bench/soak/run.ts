// One soak: muxgate (2 shards, close events on) in front of a real php-fpm under the churn for a while, sampled;
// then, once every client has left, the checks, and the result.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPhpFpm, type PhpFpm } from '../../test/helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from '../../test/helpers/muxgate.ts';
import { CHANNELS, Churn } from './churn.ts';
import { checkCloseEvents } from './close-events.ts';
import type { Failures } from './failures.ts';
import { LiveHeap, writeTraceGcPreload } from './live-heap.ts';
import { soakMarkdown, type SoakResult } from './report.ts';
import { resources, sampleChurn, settle } from './samples.ts';
import { judgeResources, type ResourceLimits } from './trend.ts';

const PHP_ROOT = fileURLToPath(new URL('../../test/php', import.meta.url));

export interface SoakOptions extends Partial<ResourceLimits> {
  seconds: number;
  /** held streams kept open at once */
  streams?: number;
  /** each stream lives a random time in this range (ms) before it ends */
  lifetimeMs?: [number, number];
  sampleSeconds?: number;
  /** samples before this are warm-up; default: a fifth of the run, at least two samples */
  warmupSeconds?: number;
  /** progress lines; default: stderr */
  log?: (line: string) => void;
  /** ends the churn early (the checks and the summary still run) */
  signal?: AbortSignal;
  /** extra environment for muxgate (NODE_OPTIONS, MUX_*), for experiments */
  muxgateEnv?: Record<string, string>;
}

/** muxgate's complaints in its log: an error is a failure, warnings are counted by message. */
function complaints(logs: ReadonlyArray<Record<string, unknown>>, failures: Failures): Map<string, number> {
  const warnings = new Map<string, number>();
  for (const line of logs) {
    const level = Number(line.level);
    if (level >= 50) failures.add('muxgate logged an error', JSON.stringify(line).slice(0, 300));
    if (level >= 40) warnings.set(String(line.msg), (warnings.get(String(line.msg)) ?? 0) + 1);
  }
  return warnings;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const seconds = options.seconds;
  const streams = options.streams ?? 300;
  const lifetimeMs = options.lifetimeMs ?? [2000, 8000];
  const sampleSeconds = options.sampleSeconds ?? 10;
  const warmupSeconds = options.warmupSeconds ?? Math.max(2 * sampleSeconds, seconds / 5);
  const limits: ResourceLimits = {
    maxRssGrowthPercent: options.maxRssGrowthPercent ?? 20,
    maxFdGrowthPercent: options.maxFdGrowthPercent ?? 10,
    maxFdsPerCycle: options.maxFdsPerCycle ?? 0.05,
    maxLiveHeapKiBPerCycle: options.maxLiveHeapKiBPerCycle ?? 2.5,
  };
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));

  const workDir = mkdtempSync(join(tmpdir(), 'muxgate-soak-'));
  const eventLog = join(workDir, 'events.log');
  let fpm: PhpFpm | undefined;
  let mux: Muxgate | undefined;
  try {
    fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 16, env: { EVENT_LOG: eventLog } });
    // info, not the helper's debug: a line per stream would pile up in the helper's log array for the whole run
    mux = await startMuxgate({
      MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '2', MUX_EVENTS: 'close', MUX_LOG_LEVEL: 'info',
      ...options.muxgateEnv,
      NODE_OPTIONS: `--import ${JSON.stringify(writeTraceGcPreload(workDir))} ${options.muxgateEnv?.NODE_OPTIONS ?? ''}`.trim(),
    });
    const heap = new LiveHeap(mux.logs);
    heap.read();
    const pid = mux.child.pid!;
    await sleep(500);
    const baseline = resources(pid);
    log(`soak: ${seconds} s, ${streams} streams living ${lifetimeMs[0]}-${lifetimeMs[1]} ms, muxgate pid ${pid} (2 shards), php-fpm on ${fpm.port}; idle: ${(baseline.rssKiB / 1024).toFixed(1)} MiB, ${baseline.fds} fds`);

    const churn = new Churn({ pushUrl: mux.pushUrl, port: Number(new URL(mux.url).port), streams, lifetimeMs });
    const startedAt = performance.now();
    const end = new AbortController();
    const ended = new Promise<void>((resolve) => end.signal.addEventListener('abort', () => resolve(), { once: true }));
    const stop = () => end.abort();
    const deadline = setTimeout(stop, seconds * 1000);
    options.signal?.addEventListener('abort', stop, { once: true });
    const sampling = sampleChurn({ mux, heap, churn, startedAt, seconds, sampleSeconds, end: end.signal, log });
    await churn.run(ended);
    clearTimeout(deadline);
    const samples = await sampling;
    const churnSeconds = (performance.now() - startedAt) / 1000;

    // Every client has left: muxgate must get back to no stream, no connection, and its idle fds.
    const idleAfter = await settle(mux, baseline, churn);
    // Every stream that ended sent a close event with the reason of its end.
    const closeEvents = await checkCloseEvents(eventLog, churn.endedTokens, churn.failures);
    const warm = samples.filter((s) => s.t >= warmupSeconds);
    const trends = judgeResources(warm, warmupSeconds, limits);
    heap.read();
    const warnings = complaints(mux.logs, churn.failures);

    const failures = [...churn.failures.lines(), ...trends.failures];
    const result = {
      isOk: failures.length === 0 && churn.lost === 0,
      failures,
      seconds: churnSeconds,
      streamsOpened: churn.opened,
      streamsEnded: { ...churn.ended },
      churnPerSecond: churn.cycles / churnSeconds,
      tokenParts: { ...churn.tokenParts },
      channelParts: { ...churn.channelParts },
      pushRequests: churn.pushRequests,
      closeEvents,
      baseline,
      idleAfter,
      rss: trends.rss,
      fds: trends.fds,
      liveHeap: trends.liveHeap,
      fullCollections: heap.collections,
      samples,
    };
    const settings = { ...limits, streams, channels: CHANNELS, warmupSeconds, sampleSeconds, warmSamples: warm.length, liveHeapThreads: trends.liveHeapThreads, warnings };
    return { ...result, markdown: soakMarkdown(result, settings) };
  } finally {
    await mux?.stop();
    await fpm?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}
