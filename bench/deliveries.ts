// `node bench/deliveries.ts`: muxgate alone, streams addressed by token (fan-out by token list, many tokens, batches) and
// memory per held stream; prints and writes bench/RESULTS-tokens.md. The side-by-side bench is bench/run.ts.
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMuxgate, metricValue, type Muxgate } from '../test/helpers/muxgate.ts';
import { CpuMeter, rssKiB } from './proc-stats.ts';
import { SubscriberPool } from './subscriber-pool.ts';
import { partHead, pushAll } from './pusher.ts';

const STREAMS = 1000;
const FAN_OUT_PUSHES = 1000;
/** Single-token pushes go round the streams this many times, batches are sent this many times: long enough to measure. */
const MANY_TOKEN_ROUNDS = 10;
const BATCH_PUSHES = 100;
const RSS_STREAMS = 10_000;
const PUSH_CONCURRENCY = 4;
const SUBSCRIBER_PROCESSES = 2;
/** muxgate parses at most 1 MiB of headers per part (workers/part-limits.ts), about 30,000 tokens. */
const PART_HEAD_LIMIT = 1_048_576 - 64;
const STALL_MS = 3000;
const SETTLE_MS = 2000;
const DEADLINE_MS = 5 * 60_000;
const RESULTS = fileURLToPath(new URL('./RESULTS-tokens.md', import.meta.url));
const BACKEND = fileURLToPath(new URL('./backend.ts', import.meta.url));

interface DeliveryRow {
  scenario: string;
  shards: number;
  pushes: string;
  expected: number;
  received: number;
  rate: number;
  p50: number;
  p99: number;
  serverCpu: number;
  subscriberCpu: number[];
  pusherCpu: number;
  machineCpu: number;
}

interface RssRow {
  shards: number;
  streams: number;
  heldStreams: number;
  connectSeconds: number;
  /** CPU % while connecting: muxgate, the backend, each subscriber process. */
  connectCpu: number[];
  connectMachineCpu: number;
  beforeKiB: number;
  afterKiB: number;
}

// Other work on the machine skews every number: say how busy it was when the bench started.
const LOAD_AT_START = readFileSync('/proc/loadavg', 'latin1').split(' ', 1)[0];
const children: ChildProcess[] = [];
const notes: string[] = [];
// Whatever happens, nothing this bench started outlives it.
process.once('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
setTimeout(() => {
  process.stderr.write(`bench: not finished after ${DEADLINE_MS / 1000} s, giving up\n`);
  process.exit(1);
}, DEADLINE_MS).unref();

function onShards(shards: number): string {
  return `${shards} shard${shards > 1 ? 's' : ''}`;
}

interface Target {
  mux: Muxgate;
  backend: ChildProcess;
  stop(): Promise<void>;
}

/** A fresh backend (on a unix socket in a temp dir) and a muxgate in front of it, for one run. */
async function startTarget(shards: number): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'muxgate-bench-'));
  const socketPath = join(dir, 'backend.sock');
  const backend = fork(BACKEND, [socketPath], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(backend);
  await new Promise<void>((resolve, reject) => {
    backend.once('message', () => resolve());
    backend.once('exit', (code) => reject(new Error(`bench backend exited with code ${code}`)));
  });
  const mux = await startMuxgate({ MUX_SHARDS: String(shards), MUX_FASTCGI: `unix:${socketPath}`, MUX_LOG_LEVEL: 'info' });
  children.push(mux.child);
  return {
    mux,
    backend,
    async stop() {
      await mux.stop();
      noteWarnings(mux, shards);
      backend.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function noteWarnings(mux: Muxgate, shards: number): void {
  const counts = new Map<string, number>();
  for (const line of mux.logs) {
    if (Number(line.level) >= 40) counts.set(String(line.msg), (counts.get(String(line.msg)) ?? 0) + 1);
  }
  for (const [msg, count] of counts) notes.push(`muxgate (${onShards(shards)}) logged ${count}× "${msg}"`);
}

async function openStreams(pool: SubscriberPool, mux: Muxgate, count: number, shards: number): Promise<string[]> {
  const { tokens, failedOpens } = await pool.open(Number(new URL(mux.url).port), count);
  for (const [status, times] of failedOpens) {
    notes.push(`opening ${count.toLocaleString('en')} streams, ${onShards(shards)}: ${times}× "${status}", each retried at once`);
  }
  return tokens;
}

/** Part heads addressing every token once, each within muxgate's part header limit. */
function fanOutHeads(tokens: string[]): string[] {
  const heads: string[] = [];
  let batch: string[] = [];
  for (const token of tokens) {
    if (batch.length > 0 && partHead([...batch, token]).length > PART_HEAD_LIMIT) {
      heads.push(partHead(batch));
      batch = [];
    }
    batch.push(token);
  }
  if (batch.length > 0) heads.push(partHead(batch));
  return heads;
}

/** Polls the subscribers until they have `expected` deliveries, or none arrived for STALL_MS. */
async function untilDelivered(pool: SubscriberPool, expected: number): Promise<void> {
  let last = -1;
  let lastChangeAt = performance.now();
  for (;;) {
    const { deliveries } = await pool.stats(false);
    if (deliveries >= expected) return;
    if (deliveries !== last) {
      last = deliveries;
      lastChangeAt = performance.now();
    } else if (performance.now() - lastChangeAt > STALL_MS) {
      return;
    }
    await sleep(50);
  }
}

async function measure(mux: Muxgate, pool: SubscriberPool, scenario: string, shards: number, pushes: number,
  heads: (i: number) => string[], expected: number): Promise<DeliveryRow> {
  await pool.stats(true);
  const cpu = new CpuMeter([mux.child.pid!, process.pid, ...pool.pids]);
  const outcome = await pushAll(mux.pushUrl, pushes, PUSH_CONCURRENCY, heads);
  await untilDelivered(pool, expected);
  const { processes: [serverCpu, pusherCpu, ...subscriberCpu], machine: machineCpu } = cpu.read();
  const stats = await pool.stats(true);
  const where = `${scenario}, ${onShards(shards)}`;
  for (const [failure, count] of outcome.failures) notes.push(`${where}: ${count} push(es) failed: ${failure}`);
  if (outcome.deliveries !== expected) notes.push(`${where}: muxgate answered ${outcome.deliveries} deliveries, expected ${expected}`);
  if (stats.closed > 0) notes.push(`${where}: ${stats.closed} streams closed during the run`);
  return {
    scenario, shards, pushes: `${pushes.toLocaleString('en')} × ${heads(0).length} part${heads(0).length > 1 ? 's' : ''}`, expected, received: stats.deliveries,
    rate: stats.deliveries / ((stats.lastAt - outcome.firstSentAt) / 1000),
    p50: stats.histogram.quantileMs(0.5), p99: stats.histogram.quantileMs(0.99),
    serverCpu, subscriberCpu, pusherCpu, machineCpu,
  };
}

async function deliveryRuns(shards: number): Promise<DeliveryRow[]> {
  const target = await startTarget(shards);
  const mux = target.mux;
  const pool = new SubscriberPool(SUBSCRIBER_PROCESSES);
  try {
    const tokens = await openStreams(pool, mux, STREAMS, shards);
    const fanOut = fanOutHeads(tokens);
    const single = tokens.map((token) => [partHead([token])]);
    const batch = tokens.map((token) => partHead([token]));
    return [
      await measure(mux, pool, `fan-out: each push to all ${STREAMS.toLocaleString('en')} tokens`, shards,
        FAN_OUT_PUSHES, () => fanOut, FAN_OUT_PUSHES * STREAMS),
      await measure(mux, pool, 'many tokens: 1 part per push, 1 token per part', shards,
        STREAMS * MANY_TOKEN_ROUNDS, (i) => single[i % STREAMS], STREAMS * MANY_TOKEN_ROUNDS),
      await measure(mux, pool, `many tokens: ${STREAMS.toLocaleString('en')} parts per push, 1 token per part`, shards,
        BATCH_PUSHES, () => batch, BATCH_PUSHES * STREAMS),
    ];
  } finally {
    await pool.close();
    await target.stop();
  }
}

async function rssRun(shards: number): Promise<RssRow> {
  const target = await startTarget(shards);
  const mux = target.mux;
  const pool = new SubscriberPool(SUBSCRIBER_PROCESSES);
  try {
    const pid = mux.child.pid!;
    await sleep(SETTLE_MS);
    const beforeKiB = rssKiB(pid);
    const startedAt = performance.now();
    const cpu = new CpuMeter([pid, target.backend.pid!, ...pool.pids]);
    await openStreams(pool, mux, RSS_STREAMS, shards);
    const connectSeconds = (performance.now() - startedAt) / 1000;
    const { processes: connectCpu, machine: connectMachineCpu } = cpu.read();
    await sleep(SETTLE_MS);
    return {
      shards, streams: RSS_STREAMS, heldStreams: (await metricValue(mux.metricsUrl, 'muxgate_held_streams')) ?? 0,
      connectSeconds, connectCpu, connectMachineCpu, beforeKiB, afterKiB: rssKiB(pid),
    };
  } finally {
    await pool.close();
    await target.stop();
  }
}

function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '–';
}

function report(deliveries: DeliveryRow[], rss: RssRow): string {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'latin1'))?.[1] ?? 'unknown';
  const lines = [
    '# muxgate delivery benchmark',
    '',
    `- command: \`node bench/deliveries.ts\``,
    `- date: ${new Date().toISOString()}`,
    `- machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} CPUs (\`nproc\`), ${cpuModel}, Node ${process.version}; load average at start ${LOAD_AT_START}`,
    `- muxgate alone on 127.0.0.1, backend \`bench/backend.ts\` (a FastCGI responder on muxgate's record codec) on a unix socket; ${STREAMS.toLocaleString('en')} held streams` +
      ` in ${SUBSCRIBER_PROCESSES} subscriber processes (raw sockets); pushes to \`POST /push\` over ${PUSH_CONCURRENCY} keep-alive connections, flat out`,
    '- deliveries/s = deliveries received / (last delivery received − first push sent); latency = push sent → subscriber read;' +
      ' process CPU % = 100 per core, from /proc/<pid>/stat; machine busy % = all CPUs, from /proc/stat; both over the push-and-deliver window',
    '',
    '## Deliveries',
    '',
    '| scenario | shards | pushes | deliveries | missing | deliveries/s | p50 ms | p99 ms | muxgate CPU % | subscribers CPU % | pusher CPU % | machine busy % |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...deliveries.map((row) => `| ${row.scenario} | ${row.shards} | ${row.pushes} | ${row.received.toLocaleString('en')} | ` +
      `${(row.expected - row.received).toLocaleString('en')} | ${fixed(row.rate, 0)} | ${fixed(row.p50, 1)} | ${fixed(row.p99, 1)} | ` +
      `${fixed(row.serverCpu, 0)} | ${row.subscriberCpu.map((cpu) => fixed(cpu, 0)).join(' + ')} | ${fixed(row.pusherCpu, 0)} | ` +
      `${fixed(row.machineCpu, 0)} |`),
    '',
    '## Memory per held stream',
    '',
    '| shards | held streams | connect all s | streams/s | CPU % while connecting: muxgate / backend / subscribers / machine busy | RSS before MiB | RSS after MiB | KiB per stream |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${rss.shards} | ${rss.heldStreams.toLocaleString('en')} of ${rss.streams.toLocaleString('en')} | ${fixed(rss.connectSeconds, 2)} | ` +
      `${fixed(rss.streams / rss.connectSeconds, 0)} | ${fixed(rss.connectCpu[0], 0)} / ${fixed(rss.connectCpu[1], 0)} / ` +
      `${rss.connectCpu.slice(2).map((cpu) => fixed(cpu, 0)).join(' + ')} / ${fixed(rss.connectMachineCpu, 0)} | ${fixed(rss.beforeKiB / 1024, 1)} | ${fixed(rss.afterKiB / 1024, 1)} | ` +
      `${fixed((rss.afterKiB - rss.beforeKiB) / rss.streams, 2)} |`,
    '',
    '## Notes',
    '',
    ...(notes.length > 0 ? notes.map((note) => `- ${note}`) : ['- muxgate logged no warnings or errors.']),
    '',
  ];
  return lines.join('\n');
}

const rows = [...await deliveryRuns(1), ...await deliveryRuns(2)];
const markdown = report(rows, await rssRun(2));
writeFileSync(RESULTS, markdown);
process.stdout.write(markdown);
