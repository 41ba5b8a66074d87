// The soak's result, what it counted and measured, and the Markdown summary of it.
import type { PartCounts } from './churn.ts';
import type { CloseEvents } from './close-events.ts';
import type { Resources, Sample } from './samples.ts';
import type { EndMode } from './stream.ts';
import type { ResourceLimits, Trend } from './trend.ts';

export interface SoakResult {
  isOk: boolean;
  failures: string[];
  markdown: string;
  seconds: number;
  streamsOpened: number;
  streamsEnded: Record<EndMode, number>;
  churnPerSecond: number;
  tokenParts: PartCounts;
  channelParts: PartCounts;
  pushRequests: number;
  closeEvents: CloseEvents;
  baseline: Resources;
  idleAfter: Resources;
  rss: Trend | null;
  fds: Trend | null;
  /** the heap left by full collections, summed over the threads that had one by the end of warm-up */
  liveHeap: Trend | null;
  /** full collections traced in all muxgate threads */
  fullCollections: number;
  samples: Sample[];
}

/** How the soak ran, for the summary. */
export interface ReportSettings extends ResourceLimits {
  streams: number;
  channels: number;
  warmupSeconds: number;
  sampleSeconds: number;
  /** samples taken after warm-up */
  warmSamples: number;
  liveHeapThreads: number;
  /** muxgate's warnings: message → how many */
  warnings: Map<string, number>;
}

function mib(kib: number): string {
  return (kib / 1024).toFixed(1);
}

/** A table row; `scale` turns the sampled unit (KiB, fds) into the shown one (MiB, fds). */
function formatTrend(name: string, t: Trend | null, unit: string, scale: number, sampledUnit: string, limits: string): string {
  if (t === null) return `| ${name} | not enough samples | | | | | ${limits} |`;
  const sign = (v: number) => (v >= 0 ? '+' : '');
  return `| ${name} | ${(t.warm / scale).toFixed(1)} ${unit} | ${(t.end / scale).toFixed(1)} ${unit} | ${sign(t.growthPercent)}${t.growthPercent.toFixed(1)} %`
    + ` | ${sign(t.perMinute)}${(t.perMinute / scale).toFixed(2)} ${unit}/min | ${sign(t.perCycle)}${t.perCycle.toFixed(3)} ${sampledUnit}/cycle | ${limits} |`;
}

export function soakMarkdown(result: Omit<SoakResult, 'markdown'>, settings: ReportSettings): string {
  const { streamsEnded: ended, tokenParts, channelParts, closeEvents, baseline, idleAfter, failures, samples } = result;
  const lost = tokenParts.lost + channelParts.lost;
  const cycles = ended.drain + ended.abrupt + ended.server;
  const { warnings } = settings;
  return [
    `## muxgate soak: ${result.seconds.toFixed(0)} s, ${settings.streams} held streams, 2 shards, php-fpm`,
    '',
    `**${result.isOk ? 'PASS' : 'FAIL'}**${result.isOk ? '' : `: ${failures.length} problem(s), ${lost} part(s) lost`}`,
    '',
    '| | |',
    '| --- | --- |',
    `| churn | ${result.streamsOpened} streams opened, ${cycles} ended (${ended.drain} drained and closed by the client, ${ended.abrupt} dropped abruptly, ${ended.server} closed by a \`Multiplex-Close\` push): ${result.churnPerSecond.toFixed(1)} cycles/s |`,
    `| token parts | ${tokenParts.pushed} pushed; ${tokenParts.expected} deliveries owed to checked streams, ${tokenParts.received} received in all, **${tokenParts.lost} lost** |`,
    `| channel parts | ${channelParts.pushed} pushed to ${settings.channels} channels; ${channelParts.expected} deliveries owed to checked streams, ${channelParts.received} received in all, **${channelParts.lost} lost** |`,
    `| push requests | ${result.pushRequests} |`,
    `| close events | ${closeEvents.seen} of ${closeEvents.expected} seen, ${closeEvents.wrongReason} with the wrong reason |`,
    `| muxgate warnings | ${warnings.size === 0 ? 'none' : [...warnings].map(([msg, n]) => `${n} × ${msg}`).join('; ')} |`,
    `| muxgate idle | before: ${mib(baseline.rssKiB)} MiB RSS, ${baseline.fds} fds; after: ${mib(idleAfter.rssKiB)} MiB RSS, ${idleAfter.fds} fds |`,
    '',
    `Resources after the ${settings.warmupSeconds.toFixed(0)} s warm-up (${settings.warmSamples} samples every ${settings.sampleSeconds} s; first third against last third):`,
    '',
    '| | after warm-up | end | growth | slope | per churn cycle | limits |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    formatTrend('RSS', result.rss, 'MiB', 1024, 'KiB', `+${settings.maxRssGrowthPercent} %`),
    formatTrend('open fds', result.fds, 'fds', 1, 'fds', `+${settings.maxFdGrowthPercent} %, ${settings.maxFdsPerCycle} fds/cycle`),
    result.liveHeap === null
      ? `| live heap | no full collection by the end of warm-up (${result.fullCollections} in all) | | | | | not judged |`
      : formatTrend(`live heap (after full GC, ${settings.liveHeapThreads} threads)`, result.liveHeap, 'MiB', 1024, 'KiB', `${settings.maxLiveHeapKiBPerCycle} KiB/cycle`),
    '',
    '| t (s) | RSS (MiB) | fds | held streams | open connections | cycles | live heap per thread (MiB) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...samples.map((s) => `| ${s.t.toFixed(0)} | ${mib(s.rssKiB)} | ${s.fds} | ${s.heldStreams} | ${s.openConnections} | ${s.cycles}`
      + ` | ${Object.values(s.liveHeapKiB).map(mib).join(' + ') || '-'} |`),
    '',
    ...(failures.length === 0 ? [] : ['Problems:', '', ...failures.map((f) => `- ${f}`), '']),
  ].join('\n');
}
