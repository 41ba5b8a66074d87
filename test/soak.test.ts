// The soak of bench/soak.ts, one minute long: under churn against a real php-fpm, no live stream misses a
// part, and muxgate's fds and memory stay flat. And the soak's reader of muxgate's log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startMuxgate } from './helpers/muxgate.ts';
import { runSoak } from '../bench/soak/run.ts';
import { LiveHeap } from '../bench/soak/live-heap.ts';

test("reading the live heap leaves muxgate's log lines in place: waitForLog still finds an earlier line", async () => {
  const mux = await startMuxgate({ MUX_SHARDS: '1', MUX_LOG_LEVEL: 'info' });
  try {
    const heap = new LiveHeap(mux.logs);
    heap.read();
    await mux.waitForLog((line) => String(line.msg).startsWith('muxgate listening'), 1000);
  } finally {
    await mux.stop();
  }
});

test('a minute of churn: every live stream gets exactly its parts, fds and memory stay flat', { timeout: 240_000 }, async (t) => {
  const result = await runSoak({
    seconds: 60,
    sampleSeconds: 2,
    warmupSeconds: 24,
    // With its heap bounded at 128 MB, V8 collects in full every few seconds rather than growing the heap for
    // minutes, so what full collections leave (the live heap, read from --trace-gc) shows a leak within a minute.
    // (At 64 MB the shards fall into back-to-back collections with 13 MB live and slow down fivefold.)
    muxgateEnv: { NODE_OPTIONS: '--max-old-space-size=128' },
    // Generous against noise, yet a leak of one socket or one held stream per cycle (about 60 cycles/s) fails:
    // such a socket adds an fd per cycle, such a stream (its request and response kept) about 5 KiB of live
    // heap; without a leak the live heap moves by less than 1 KiB per cycle. RSS still settles in the first
    // minute, so its limit only catches gross growth.
    maxRssGrowthPercent: 50,
    maxFdGrowthPercent: 10,
    maxFdsPerCycle: 0.05,
    maxLiveHeapKiBPerCycle: 2.5,
    log: (line) => t.diagnostic(line),
  });
  const lost = result.tokenParts.lost + result.channelParts.lost;
  assert.equal(lost, 0, result.markdown);
  assert.deepEqual(result.failures, [], result.markdown);
  assert.ok(result.isOk, result.markdown);
  // the churn really happened, and the checks really ran
  assert.ok(result.churnPerSecond >= 10, `only ${result.churnPerSecond.toFixed(1)} cycles/s\n${result.markdown}`);
  assert.ok(result.tokenParts.expected > 1000 && result.channelParts.expected > 1000, result.markdown);
  assert.equal(result.closeEvents.seen, result.closeEvents.expected, result.markdown);
  assert.ok(result.liveHeap !== null, `no full collection was traced: the live heap was not judged\n${result.markdown}`);
});
