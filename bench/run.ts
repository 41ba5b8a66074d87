// `npm run bench`: installs the peers if missing, runs every scenario against muxgate, Nchan and Pushpin, and writes
// bench/RESULTS.md and bench/results.svg. BENCH_RUNS runs per row, median reported (default 3, but 1 for scenario 3,
// whose backlog alone takes about a minute per system: all of it fits in 20 minutes on 2 cores); BENCH_SCENARIOS
// (default "fan-out,idle,request-path,latency,many") picks scenarios; BENCH_QUICK=1 shrinks every size, for development;
// BENCH_OUT=dir writes the report there instead.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import './child-processes.ts';
import { runDeliveryScenario, type DeliveryResult, type DeliveryScenario, type SystemSpec } from './scenarios/delivery-scenario.ts';
import { runIdle, type IdleResult } from './scenarios/idle.ts';
import { runRequestPath, type RequestPathResult } from './scenarios/request-path.ts';
import * as muxgate from './systems/muxgate.ts';
import * as muxgateNodes from './systems/muxgate-nodes.ts';
import * as nchan from './systems/nchan.ts';
import * as pushpin from './systems/pushpin.ts';
import { renderReport, type BenchResults } from './report.ts';
import { renderChart } from './chart.ts';

const DEADLINE_MS = 25 * 60_000;
const isQuick = process.env.BENCH_QUICK === '1';
const runs = Number(process.env.BENCH_RUNS ?? (isQuick ? 1 : 3));
const latencyRuns = Number(process.env.BENCH_RUNS ?? 1);
const scenarios = new Set((process.env.BENCH_SCENARIOS ?? 'fan-out,idle,request-path,latency,many').split(','));
const SETUP = fileURLToPath(new URL('./setup-peers.sh', import.meta.url));

setTimeout(() => {
  process.stderr.write(`bench: not finished after ${DEADLINE_MS / 60_000} min, giving up\n`);
  process.exit(1);
}, DEADLINE_MS).unref();

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

function hasPeers(): boolean {
  return ['nginx', 'pushpin', 'wrk', 'condure', 'zurl', 'gcc'].every((command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0)
    && spawnSync('sh', ['-c', 'test -e /usr/lib/nginx/modules/ngx_nchan_module.so']).status === 0;
}

if (!hasPeers()) {
  log('peers missing, running bench/setup-peers.sh');
  execFileSync('sh', [SETUP], { stdio: 'inherit' });
}

const muxgate1: SystemSpec = { label: 'muxgate, 1 shard', start: () => muxgate.start(1) };
const muxgate2: SystemSpec = { label: 'muxgate, 2 shards', start: () => muxgate.start(2) };
const muxgateTwoNodes: SystemSpec = { label: 'muxgate, 2 nodes × 1 shard (Redis)', start: () => muxgateNodes.start(2, 1) };
const nchan1: SystemSpec = { label: 'Nchan, 1 worker', start: () => nchan.start(1) };
const nchan2: SystemSpec = { label: 'Nchan, 2 workers', start: () => nchan.start(2) };
const pushpinSpec: SystemSpec = { label: 'Pushpin', start: () => pushpin.start() };

const results: BenchResults = {
  startedAt: new Date(), loadAtStart: readFileSync('/proc/loadavg', 'latin1').trim(), runs, isQuick,
  fanOut: [], idle: [], requestPath: [], latency: [], many: [], failures: [], sizes: {} as BenchResults['sizes'],
};

/** A row that fails is reported as such; the other rows still run. */
async function attempt<T>(what: string, run: () => Promise<T>): Promise<T | undefined> {
  try {
    return await run();
  } catch (error) {
    log(`${what} failed: ${(error as Error).message}`);
    results.failures.push(`${what}: ${(error as Error).message}`);
    return undefined;
  }
}

async function deliveryRows(name: string, specs: SystemSpec[], scenario: DeliveryScenario): Promise<DeliveryResult[]> {
  const rows: DeliveryResult[] = [];
  for (const spec of specs) {
    log(`${name}: ${spec.label}`);
    const row = await attempt(`${name}, ${spec.label}`, () => runDeliveryScenario(spec, scenario));
    if (row === undefined) continue;
    log(`${name}: ${spec.label}: ${Math.round(row.median.rate)} deliveries/s, p99 ${row.median.p99} ms, ${row.median.expected - row.median.received} missing`);
    rows.push(row);
  }
  return rows;
}

const fanOut: DeliveryScenario = { subscribers: isQuick ? 200 : 1000, subscriberProcesses: 2, isAddressEach: false, messages: isQuick ? 200 : 2000, rate: 0, concurrency: 16, runs };
// 10,000 streams, then as many as the fd limit (20,000 per process) allows with room for the server's own files.
const idleStreams = isQuick ? [1000] : [10_000, 18_000];
const latency: DeliveryScenario = { subscribers: isQuick ? 1000 : 10_000, subscriberProcesses: 2, isAddressEach: false, messages: isQuick ? 50 : 250, rate: 50, concurrency: 16, runs: latencyRuns };
const many: DeliveryScenario = { subscribers: isQuick ? 1000 : 10_000, subscriberProcesses: 2, isAddressEach: true, messages: 0, rate: 0, concurrency: 16, runs };
const requestPath = { workers: [1, 2], seconds: isQuick ? 2 : 5, connections: 32, phpChildren: 8, keptConnections: 6, runs };
results.sizes = { fanOut, idleStreams, latency, many, requestPath };

if (scenarios.has('fan-out')) results.fanOut = await deliveryRows('fan-out', [muxgate1, nchan1, muxgate2, nchan2, pushpinSpec, muxgateTwoNodes], fanOut);
if (scenarios.has('idle')) {
  for (const streams of idleStreams) {
    for (const spec of [muxgate2, nchan1, pushpinSpec]) {
      log(`idle: ${spec.label}, ${streams} streams`);
      const row: IdleResult | undefined = await attempt(`idle, ${spec.label}, ${streams} streams`, () => runIdle(spec, streams, 2, runs));
      if (row === undefined) continue;
      log(`idle: ${spec.label}: ${row.median.kiBPerStream.toFixed(2)} KiB per stream, ${row.median.connectSeconds.toFixed(2)} s to connect`);
      results.idle.push(row);
    }
  }
}
if (scenarios.has('request-path')) {
  log('request path');
  const rows: RequestPathResult[] = await attempt('request path', () => runRequestPath(requestPath)) ?? [];
  for (const row of rows) log(`request path: ${row.label}: ${row.median.requestsPerSecond} req/s, p99 ${row.median.p99} ms`);
  results.requestPath = rows;
}
if (scenarios.has('latency')) results.latency = await deliveryRows('latency', [muxgate2, nchan1, nchan2, pushpinSpec], latency);
if (scenarios.has('many')) results.many = await deliveryRows('many', [muxgate2, nchan1, nchan2, pushpinSpec], many);

results.finishedAt = new Date();
results.loadAtEnd = readFileSync('/proc/loadavg', 'latin1').trim();
const out = process.env.BENCH_OUT ?? fileURLToPath(new URL('.', import.meta.url));
writeFileSync(join(out, 'results.svg'), renderChart(results));
const markdown = renderReport(results);
writeFileSync(join(out, 'RESULTS.md'), markdown);
process.stdout.write(markdown);
process.exit(0);
