// The channel history: bounded per channel, per node in bytes (oldest first, counted and logged once per interval)
// and by age, and a channel without history forgotten whole.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { ChannelLog, CHANNEL_OVERHEAD_BYTES, PART_OVERHEAD_BYTES } from '../workers/channel-log.ts';
import { createShardMetrics } from '../workers/metrics.ts';
import { RepeatedWarnings } from '../src/repeated-warnings.ts';

function setup(limits: { maxParts: number; maxAgeMs: number; maxBytes: number }) {
  const metrics = createShardMetrics(0);
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { history: new ChannelLog(limits, metrics, new RepeatedWarnings(log, 10_000)), metrics, lines };
}

async function counter(metrics: ReturnType<typeof createShardMetrics>, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name)!;
  return metric.values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value))?.value as number;
}

test('a byte budget over all channels: the oldest parts go first, the size never exceeds it, and one line tells', async () => {
  const maxBytes = 64 * 1024;
  const { history, metrics, lines } = setup({ maxParts: 100, maxAgeMs: 0, maxBytes });
  const body = Buffer.alloc(1024, 'x');
  const ids: number[] = [];
  for (let i = 0; i < 10_000; i++) {
    ids.push(history.append([`room-${i}`], body, false, false));
    assert.ok(history.size <= maxBytes, `${history.size} bytes after ${i + 1} parts`);
  }
  // What is left is the newest rooms, each whole; the oldest are forgotten, and a stream resuming one is told.
  const perRoom = 1024 + PART_OVERHEAD_BYTES + CHANNEL_OVERHEAD_BYTES + 'room-9999'.length;
  assert.equal(history.channelCount, Math.floor(maxBytes / perRoom));
  assert.deepEqual(history.replay(['room-0'], 0), { parts: [], isComplete: false });
  const last = history.replay(['room-9999'], ids[9998]);
  assert.deepEqual(last.parts.map((part) => part.id), [ids[9999]]);
  assert.equal(last.isComplete, true);
  assert.equal(await counter(metrics, 'muxgate_channel_history_evictions_total', { reason: 'bytes' }), 10_000 - history.channelCount);
  assert.equal(await counter(metrics, 'muxgate_channel_history_bytes', {}), history.size);
  // Thousands of evictions, one line (the next would come after an interval, with the count since).
  const evictionLines = lines.filter((line) => String(line.msg).startsWith('channel history over its byte budget'));
  assert.equal(evictionLines.length, 1);
  assert.equal(evictionLines[0].budgetBytes, maxBytes);
  history.stop();
});

test('a part to several channels is counted once; trimmed to the count limit, a busy channel stays within its share', () => {
  const { history } = setup({ maxParts: 3, maxAgeMs: 0, maxBytes: 1 << 20 });
  history.append(['a', 'b', 'c'], Buffer.alloc(100), false, false);
  assert.equal(history.size, 100 + PART_OVERHEAD_BYTES + 3 * (CHANNEL_OVERHEAD_BYTES + 1));
  // 100,000 parts through one channel keep 3 (and the part the other two channels still hold).
  for (let i = 0; i < 100_000; i++) history.append(['a'], Buffer.alloc(100), false, false);
  assert.equal(history.size, 4 * (100 + PART_OVERHEAD_BYTES) + 3 * (CHANNEL_OVERHEAD_BYTES + 1));
  assert.deepEqual(history.replay(['a'], 0).parts.map((part) => part.id), [99_999, 100_000, 100_001]);
  history.stop();
});

test('parts older than the age limit are forgotten, and a channel left without history goes with them', async () => {
  mock.timers.enable({ apis: ['Date', 'setInterval', 'setTimeout'], now: 1_000_000 });
  try {
    const { history, metrics } = setup({ maxParts: 100, maxAgeMs: 60_000, maxBytes: 1 << 20 });
    const first = history.append(['quiet'], Buffer.from('old'), false, false);
    history.append(['busy'], Buffer.from('old'), false, false);
    mock.timers.tick(30_000);
    const kept = history.append(['busy'], Buffer.from('new'), false, false);
    mock.timers.tick(31_000);
    // Swept without anyone asking: the quiet channel is gone whole, the busy one keeps its newer part.
    assert.equal(history.channelCount, 1);
    assert.equal(history.size, 3 + PART_OVERHEAD_BYTES + CHANNEL_OVERHEAD_BYTES + 'busy'.length);
    assert.deepEqual(history.replay(['quiet'], first - 1), { parts: [], isComplete: false });
    assert.deepEqual(history.replay(['busy'], 0).parts.map((part) => part.id), [kept]);
    mock.timers.tick(30_000);
    assert.equal(history.channelCount, 0);
    assert.equal(history.size, 0);
    assert.equal(await counter(metrics, 'muxgate_channel_history_evictions_total', { reason: 'age' }), 3);
    history.stop();
  } finally {
    mock.timers.reset();
  }
});

test('the history keeps whether each part is binary, and a replay gives it back with the part', () => {
  const { history } = setup({ maxParts: 10, maxAgeMs: 0, maxBytes: 1 << 20 });
  history.append(['room'], Buffer.from([0, 255]), false, true);
  history.append(['room', 'news'], Buffer.from('text'), true, false);
  history.append(['news'], Buffer.from([1]), true, true);
  const flags = (channels: string[]) => history.replay(channels, 0).parts.map(({ id, isClose, isBinary }) => ({ id, isClose, isBinary }));
  assert.deepEqual(flags(['room', 'news']), [
    { id: 1, isClose: false, isBinary: true }, { id: 2, isClose: true, isBinary: false }, { id: 3, isClose: true, isBinary: true },
  ]);
  history.stop();
});
