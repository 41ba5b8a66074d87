// Whether muxgate's resources grew after warm-up: the trend of each over the samples, judged against its limits.
import { mean, median, slope } from '../stats.ts';
import type { Sample } from './samples.ts';

export interface Trend {
  warm: number;
  end: number;
  growthPercent: number;
  perMinute: number;
  perCycle: number;
}

export interface ResourceLimits {
  /** the largest growth allowed after warm-up, from the first to the last third of the samples */
  maxRssGrowthPercent: number;
  maxFdGrowthPercent: number;
  /**
   * The largest growth per churn cycle allowed after warm-up, against a leak of one socket or one stream per
   * cycle: in open fds, and in the heap left by full collections (RSS is too noisy for that).
   */
  maxFdsPerCycle: number;
  maxLiveHeapKiBPerCycle: number;
}

export interface ResourceTrends {
  rss: Trend | null;
  fds: Trend | null;
  /** the heap left by full collections, summed over the threads that had one by the end of warm-up */
  liveHeap: Trend | null;
  liveHeapThreads: number;
  /** the limits crossed, and a too short run */
  failures: string[];
}

/** Growth after warm-up: the first third of the samples against the last third (medians), and the least-squares slope. */
export function trend(samples: Sample[], value: (s: Sample) => number): Trend | null {
  if (samples.length < 3) return null;
  const third = Math.max(1, Math.floor(samples.length / 3));
  const first = samples.slice(0, third);
  const last = samples.slice(samples.length - third);
  const warm = median(first.map(value));
  const end = median(last.map(value));
  const cycles = mean(last.map((s) => s.cycles)) - mean(first.map((s) => s.cycles));
  return {
    warm,
    end,
    growthPercent: (100 * (end - warm)) / warm,
    perMinute: 60 * slope(samples.map((s) => s.t), samples.map(value)),
    perCycle: cycles > 0 ? (end - warm) / cycles : 0,
  };
}

/** The trends of the samples taken after warm-up, and the limits they cross. */
export function judgeResources(warm: Sample[], warmupSeconds: number, limits: ResourceLimits): ResourceTrends {
  const rss = trend(warm, (s) => s.rssKiB);
  const fds = trend(warm, (s) => s.fds);
  const threads = warm.length === 0 ? [] : Object.keys(warm[0]!.liveHeapKiB);
  const liveHeap = threads.length === 0 ? null : trend(warm, (s) => threads.reduce((sum, thread) => sum + s.liveHeapKiB[thread]!, 0));
  const failures: string[] = [];
  if (rss === null || fds === null) failures.push(`only ${warm.length} samples after the ${warmupSeconds} s warm-up: run longer`);
  if (rss !== null && rss.growthPercent > limits.maxRssGrowthPercent) failures.push(`RSS grew ${rss.growthPercent.toFixed(1)} % after warm-up (limit ${limits.maxRssGrowthPercent} %)`);
  if (fds !== null && fds.growthPercent > limits.maxFdGrowthPercent) failures.push(`fds grew ${fds.growthPercent.toFixed(1)} % after warm-up (limit ${limits.maxFdGrowthPercent} %)`);
  if (fds !== null && fds.perCycle > limits.maxFdsPerCycle) failures.push(`fds grew ${fds.perCycle.toFixed(3)} per churn cycle after warm-up (limit ${limits.maxFdsPerCycle})`);
  if (liveHeap !== null && liveHeap.perCycle > limits.maxLiveHeapKiBPerCycle) {
    failures.push(`the heap left by full collections grew ${liveHeap.perCycle.toFixed(2)} KiB per churn cycle after warm-up (limit ${limits.maxLiveHeapKiBPerCycle})`);
  }
  return { rss, fds, liveHeap, liveHeapThreads: threads.length, failures };
}
