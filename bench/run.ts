// `npm run bench`: installs the peers if missing, runs every scenario against muxgate, Nchan and Pushpin, and writes
// bench/RESULTS.md and bench/results.svg. BENCH_RUNS runs per row, median reported (default 3, but 1 for the long
// rows: scenario 3's 10,000 subscribers and the peers' backlog, Pushpin's and the 18,000-stream idle rows, the rate
// curve's 10 msg/s rows and its million deliveries/s: all of it fits in 20 minutes on 2 cores, each scenario's cost is
// in the report);
// BENCH_SCENARIOS (default "fan-out,rates,storm,idle,request-path,latency,many,websocket,tls") picks scenarios; BENCH_QUICK=1
// shrinks every size, for development; BENCH_OUT=dir writes the report there instead. `npm run bench -- --scaling`
// adds the scaling scenario (alone: BENCH_SCENARIOS=scaling): muxgate's fan-out and request path at 1, 2, 4 and 8
// shards (those the host has cores for), the clients pinned to cores of their own with taskset where the host has enough.
import { execFileSync, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import './child-processes.ts';
import { runDeliveryPhases, runDeliveryScenario, type DeliveryResult, type DeliveryScenario, type SystemSpec } from './scenarios/delivery-scenario.ts';
import { runIdle, type IdleResult } from './scenarios/idle.ts';
import { runRequestPath, type RequestPathResult } from './scenarios/request-path.ts';
import { runScaling } from './scenarios/scaling.ts';
import { runWebSocketMessages } from './scenarios/websocket-messages.ts';
import { runHandshakes, type HandshakeOptions } from './scenarios/tls.ts';
import { TestCa } from '../test/helpers/tls-certs.ts';
import * as muxgate from './systems/muxgate.ts';
import * as muxgateNodes from './systems/muxgate-nodes.ts';
import * as muxgatePhp from './systems/muxgate-php.ts';
import * as nchan from './systems/nchan.ts';
import * as pushpin from './systems/pushpin.ts';
import { renderReport, type BenchResults } from './report.ts';
import { renderChart } from './chart.ts';

const isQuick = process.env.BENCH_QUICK === '1';
const runs = Number(process.env.BENCH_RUNS ?? (isQuick ? 1 : 3));
/** Rows that are long by nature: scenario 3's backlog, 18,000 streams, 10 msg/s. */
const longRuns = Number(process.env.BENCH_RUNS ?? 1);
const scenarios = new Set((process.env.BENCH_SCENARIOS ?? 'fan-out,rates,storm,idle,request-path,latency,many,websocket,tls').split(','));
if (process.argv.includes('--scaling')) scenarios.add('scaling');
const DEADLINE_MS = (scenarios.has('scaling') ? 35 : 25) * 60_000;
const SETUP = fileURLToPath(new URL('./setup-peers.sh', import.meta.url));

setTimeout(() => {
  process.stderr.write(`bench: not finished after ${DEADLINE_MS / 60_000} min, giving up\n`);
  process.exit(1);
}, DEADLINE_MS).unref();

const benchStartedAt = performance.now();

/** Each line with the minutes and seconds since the start: what each row costs shows in the log. */
function log(line: string): void {
  const seconds = Math.round((performance.now() - benchStartedAt) / 1000);
  process.stderr.write(`bench [${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}]: ${line}\n`);
}

function hasPeers(): boolean {
  return ['nginx', 'pushpin', 'wrk', 'condure', 'zurl', 'gcc', 'openssl'].every((command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0)
    && ['/usr/lib/nginx/modules/ngx_nchan_module.so', '/usr/include/nghttp2/nghttp2.h', '/usr/include/openssl/ssl.h']
      .every((path) => spawnSync('sh', ['-c', `test -e ${path}`]).status === 0);
}

const setupStartedAt = performance.now();
if (!hasPeers()) {
  log('peers missing, running bench/setup-peers.sh');
  execFileSync('sh', [SETUP], { stdio: 'inherit' });
}
const setupSeconds = (performance.now() - setupStartedAt) / 1000;

const muxgate1: SystemSpec = { label: 'muxgate, 1 shard', start: () => muxgate.start(1) };
const muxgate2: SystemSpec = { label: 'muxgate, 2 shards', start: () => muxgate.start(2) };
const muxgateTwoNodes: SystemSpec = { label: 'muxgate, 2 nodes × 1 shard (Redis)', start: () => muxgateNodes.start(2, 1) };
const nchan1: SystemSpec = { label: 'Nchan, 1 worker', start: () => nchan.start(1) };
const nchan2: SystemSpec = { label: 'Nchan, 2 workers', start: () => nchan.start(2) };
/** The storm rows' php-fpm: children enough that a burst of subscribes waits on the gateway, not on a child. */
const STORM_PHP_CHILDREN = 16;
const muxgate1Php: SystemSpec = { label: 'muxgate, 1 shard, php-fpm', start: () => muxgatePhp.start(1, STORM_PHP_CHILDREN) };
const muxgate2Php: SystemSpec = { label: 'muxgate, 2 shards, php-fpm', start: () => muxgatePhp.start(2, STORM_PHP_CHILDREN) };
const pushpinSpec: SystemSpec = { label: 'Pushpin', start: () => pushpin.start() };

const results: BenchResults = {
  startedAt: new Date(), loadAtStart: readFileSync('/proc/loadavg', 'latin1').trim(), runs, isQuick,
  fanOut: [], rates: [], idle: [], requestPath: [], latency: [], many: [], scaling: [], webSocket: { deliveries: [], idle: [], messages: [] },
  tls: { handshakes: [], deliveries: [], idle: [] }, failures: [], durations: [],
  sizes: {} as BenchResults['sizes'],
};

/** Runs a scenario if selected, and records its wall time for the report. */
async function runIfSelected(name: string, run: () => Promise<void>): Promise<void> {
  if (!scenarios.has(name)) return;
  const startedAt = performance.now();
  await run();
  results.durations.push([name, (performance.now() - startedAt) / 1000]);
}

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

// 1,000 messages: 1 million deliveries, which the Nchan rows take 15-40 s a run to deliver on a busy machine.
const fanOut: DeliveryScenario = { subscribers: isQuick ? 200 : 1000, subscriberProcesses: 2, isAddressEach: false, messages: isQuick ? 200 : 1000, rate: 0, concurrency: 16, runs };
// The rate curve: each rate publishes for a few seconds (10 s at 10 msg/s: 100 messages, enough for a p99; 2 s at
// 100 msg/s: 200,000 deliveries to 1,000 subscribers); where the deliveries/s reach a million (1,000 subscribers at
// 1,000 msg/s), beyond what the peers keep up with on this machine, 1 run, as their backlog alone takes 10-30 s a run.
const curveSubscribers = isQuick ? [100, 200] : [100, 1000];
const curveRates: Array<{ rate: number; seconds: number; runs: number }> = isQuick
  ? [{ rate: 10, seconds: 2, runs: 1 }, { rate: 100, seconds: 0.6, runs: 1 }, { rate: 1000, seconds: 0.4, runs: 1 }]
  : [{ rate: 10, seconds: 10, runs: longRuns }, { rate: 100, seconds: 2, runs }, { rate: 1000, seconds: 1, runs }];
const OVERLOAD_DELIVERIES_PER_SECOND = 1_000_000;

function curvePhases(subscribers: number): DeliveryScenario[] {
  return curveRates.map(({ rate, seconds, runs: runCount }) => ({
    subscribers, subscriberProcesses: 2, isAddressEach: false, messages: Math.round(rate * seconds), rate, concurrency: 16,
    runs: subscribers * rate >= OVERLOAD_DELIVERIES_PER_SECOND ? longRuns : runCount,
  }));
}
// 10,000 streams, then as many as the fd limit (20,000 per process) allows with room for the server's own files.
const idleStreams = isQuick ? [1000] : [10_000, 18_000];
// Issue 17's "10,000 subscribers at 20 msg/s" (the event-loop delay target): 1 million deliveries, the peers' backlog
// included, in about 20 s a system.
const latency: DeliveryScenario = { subscribers: isQuick ? 1000 : 10_000, subscriberProcesses: 2, isAddressEach: false, messages: isQuick ? 20 : 100, rate: 20, concurrency: 16, runs: longRuns };
const many: DeliveryScenario = { subscribers: isQuick ? 1000 : 10_000, subscriberProcesses: 2, isAddressEach: true, messages: 0, rate: 0, concurrency: 16, runs };
const requestPath = { workers: [1, 2], seconds: isQuick ? 2 : 3, connections: 32, phpChildren: 8, keptConnections: 6, runs };
const scalingShards = [1, 2, 4, 8].filter((shards) => shards <= availableParallelism());
// Issue 18's WebSocket rows: the fan-out's subscribers as WebSockets on one channel at 100 msg/s for 2 s, then 500
// messages flat out (half a million deliveries: 7-17 s a run for Nchan on the busy machine), on one server start; as
// many idle WebSockets as the first idle count; as many WebSockets sending messages to php-fpm, for as long, as
// scenario 5 has wrk connections.
const webSocketPhases: DeliveryScenario[] = [
  { ...fanOut, messages: isQuick ? 60 : 200, rate: 100, isWebSocket: true },
  { ...fanOut, messages: isQuick ? 200 : 500, isWebSocket: true },
];
const webSocketMessages = { webSockets: requestPath.connections, seconds: requestPath.seconds, phpChildren: requestPath.phpChildren, keptConnections: requestPath.keptConnections, runs };
// Issue 19's rows, within 2.5 minutes: handshakes from 4 s_time clients; the fan-out's subscribers over TLS and h2, 10
// streams per connection, at 100 msg/s then flat out; 2,000 held streams per memory row (1 run: 3 rows of a server start).
const tlsHandshakes: HandshakeOptions = { clients: 4, seconds: isQuick ? 1 : 2, runs };
const tlsPhases: DeliveryScenario[] = [
  { ...fanOut, messages: isQuick ? 60 : 150, rate: 100, http2: { streamsPerConnection: 10 } },
  { ...fanOut, messages: isQuick ? 100 : 300, http2: { streamsPerConnection: 10 } },
];
const tlsIdleStreams = isQuick ? 500 : 2000;
/** subscriber-h2.c makes its handshakes one after the other: 2,000 at 1 per connection took 30 s from 2 processes. */
const TLS_IDLE_SUBSCRIBERS = 4;
results.sizes = {
  fanOut, curveSubscribers, curveRates, idleStreams, latency, many, requestPath, scalingShards, stormPhpChildren: STORM_PHP_CHILDREN, webSocketPhases, webSocketMessages,
  tlsHandshakes, tlsPhases, tlsIdleStreams,
};

async function idleRows(specs: SystemSpec[], streams: number, runCount: number, isWebSocket = false): Promise<void> {
  const what = isWebSocket ? 'WebSockets' : 'streams';
  for (const spec of specs) {
    log(`idle: ${spec.label}, ${streams} ${what}`);
    const row: IdleResult | undefined = await attempt(`idle, ${spec.label}, ${streams} ${what}`, () => runIdle(spec, streams, 2, runCount, isWebSocket));
    if (row === undefined) continue;
    log(`idle: ${spec.label}: ${row.median.kiBPerStream.toFixed(2)} KiB per ${isWebSocket ? 'WebSocket' : 'stream'}, ${row.median.connectSeconds.toFixed(2)} s to connect`);
    (isWebSocket ? results.webSocket.idle : results.idle).push(row);
  }
}

await runIfSelected('fan-out', async () => {
  results.fanOut = await deliveryRows('fan-out', [muxgate1, nchan1, muxgate2, nchan2, pushpinSpec, muxgateTwoNodes], fanOut);
});
// Pushpin is left out of the curve: overloaded from 100 msg/s at 1,000 subscribers, and the budget is 20 minutes.
await runIfSelected('rates', async () => {
  for (const subscribers of curveSubscribers) {
    for (const spec of [muxgate1, nchan1, muxgate2, nchan2]) {
      log(`rates: ${spec.label}, ${subscribers} subscribers`);
      const rows = await attempt(`rates, ${spec.label}, ${subscribers} subscribers`, () => runDeliveryPhases(spec, curvePhases(subscribers))) ?? [];
      for (const row of rows) {
        log(`rates: ${spec.label}, ${subscribers} subscribers at ${row.scenario.rate}/s: p50 ${row.median.p50} ms, p99 ${row.median.p99} ms, ` +
          `${row.median.serverCpuPerMillion.toFixed(2)} CPU s per million, ${row.median.expected - row.median.received} missing`);
      }
      results.rates.push(...rows);
    }
  }
});
// The connection storm: connect-all time of 10,000 streams, each subscribe a FastCGI request to the bench's backend
// or to php-fpm; its rows hold memory figures too, so the idle scenario does not measure them again.
await runIfSelected('storm', () => idleRows([muxgate1, muxgate2, muxgate1Php, muxgate2Php, nchan1, nchan2], idleStreams[0], runs));
// Pushpin's connect time is mostly its proxy's 502s and the subscribers' back-off (see the notes): 1 run, at 10,000 only.
await runIfSelected('idle', async () => {
  if (!scenarios.has('storm')) await idleRows([muxgate2, nchan1], idleStreams[0], runs);
  await idleRows([pushpinSpec], idleStreams[0], longRuns);
  for (const streams of idleStreams.slice(1)) await idleRows([muxgate2, nchan1], streams, longRuns);
});
await runIfSelected('request-path', async () => {
  log('request path');
  const rows: RequestPathResult[] = await attempt('request path', () => runRequestPath(requestPath)) ?? [];
  for (const row of rows) log(`request path: ${row.label}: ${row.median.requestsPerSecond} req/s, p99 ${row.median.p99} ms`);
  results.requestPath = rows;
});
await runIfSelected('latency', async () => {
  results.latency = await deliveryRows('latency', [muxgate1, muxgate2, nchan1, nchan2, pushpinSpec], latency);
});
await runIfSelected('many', async () => {
  results.many = await deliveryRows('many', [muxgate2, nchan1, nchan2, pushpinSpec], many);
});
// Pushpin's WebSocket rows in 1 run, with half the moderate phase's messages in each phase: it falls behind at 100 msg/s
// (issue 18's measurements), at 50-130 CPU s per million deliveries: 200,000 deliveries took it 20-25 s a phase here.
const pushpinWebSocketPhases = webSocketPhases.map((phase) => ({ ...phase, messages: webSocketPhases[0].messages / 2, runs: longRuns }));
// 1 shard against 1 worker only: the scenario took 4.5 minutes on the busy machine (9 with the 2-shard pair), and the
// default run must fit in 20.
await runIfSelected('websocket', async () => {
  for (const spec of [muxgate1, nchan1, pushpinSpec]) {
    log(`websocket: ${spec.label}`);
    const phases = spec === pushpinSpec ? pushpinWebSocketPhases : webSocketPhases;
    const rows = await attempt(`websocket, ${spec.label}`, () => runDeliveryPhases(spec, phases)) ?? [];
    for (const row of rows) {
      log(`websocket: ${spec.label} at ${row.scenario.rate === 0 ? 'flat out' : `${row.scenario.rate}/s`}: ${Math.round(row.median.rate)} deliveries/s, ` +
        `p50 ${row.median.p50} ms, p99 ${row.median.p99} ms, ${row.median.serverCpuPerMillion.toFixed(2)} CPU s per million, ${row.median.expected - row.median.received} missing`);
    }
    results.webSocket.deliveries.push(...rows);
  }
  // The SSE figure the WebSocket's memory is compared with, when the storm and idle scenarios did not measure it.
  if (!scenarios.has('storm') && !scenarios.has('idle')) await idleRows([muxgate2], idleStreams[0], runs);
  await idleRows([muxgate2, nchan1], idleStreams[0], runs, true);
  await idleRows([pushpinSpec], idleStreams[0], longRuns, true);
  log('websocket: messages to php-fpm');
  results.webSocket.messages = await attempt('websocket, messages to php-fpm', () => runWebSocketMessages(webSocketMessages, attempt)) ?? [];
  for (const row of results.webSocket.messages) log(`websocket: messages: ${row.label}: ${Math.round(row.median.messagesPerSecond)} messages/s, p99 ${row.median.p99} ms`);
});
await runIfSelected('tls', async () => {
  const ca = new TestCa();
  const { certFile, keyFile } = ca.leaf('bench', '19');
  const muxTls: SystemSpec = { label: 'muxgate, 1 shard, TLS', start: () => muxgate.startTls(1, certFile, keyFile) };
  const nchanTls: SystemSpec = { label: 'Nchan behind nginx http2, 1 worker', start: () => nchan.startTls(1, certFile, keyFile) };
  try {
    for (const spec of [muxTls, nchanTls]) {
      log(`tls: handshakes, ${spec.label}`);
      const row = await attempt(`tls, handshakes, ${spec.label}`, () => runHandshakes(spec, tlsHandshakes));
      if (row === undefined) continue;
      log(`tls: handshakes, ${spec.label}: ${Math.round(row.median.perSecond)}/s, ${row.median.serverCpuMsPerHandshake.toFixed(3)} server CPU ms each`);
      results.tls.handshakes.push(row);
    }
    for (const spec of [muxTls, nchanTls]) {
      log(`tls: fan-out over h2, ${spec.label}`);
      const rows = await attempt(`tls, fan-out over h2, ${spec.label}`, () => runDeliveryPhases(spec, tlsPhases)) ?? [];
      for (const row of rows) {
        log(`tls: ${spec.label} at ${row.scenario.rate === 0 ? 'flat out' : `${row.scenario.rate}/s`}: ${Math.round(row.median.rate)} deliveries/s, ` +
          `p99 ${row.median.p99} ms, ${row.median.serverCpuPerMillion.toFixed(2)} CPU s per million, ${row.median.expected - row.median.received} missing`);
      }
      results.tls.deliveries.push(...rows);
    }
    const muxPlain: SystemSpec = { label: 'muxgate, 1 shard', start: () => muxgate.start(1) };
    for (const streamsPerConnection of [null, 1, 10]) {
      const spec = streamsPerConnection === null ? muxPlain : muxTls;
      const what = `${spec.label}, ${streamsPerConnection === null ? 'HTTP/1.1' : `h2, ${streamsPerConnection} per connection`}`;
      log(`tls: held streams, ${what}`);
      const http2 = streamsPerConnection === null ? undefined : { streamsPerConnection };
      const row = await attempt(`tls, held streams, ${what}`, () => runIdle(spec, tlsIdleStreams, TLS_IDLE_SUBSCRIBERS, longRuns, false, http2));
      if (row === undefined) continue;
      log(`tls: held streams, ${what}: ${row.median.kiBPerStream.toFixed(2)} KiB per stream`);
      results.tls.idle.push({ ...row, streamsPerConnection });
    }
  } finally {
    ca.remove();
  }
});
await runIfSelected('scaling', async () => {
  for (const shards of scalingShards) {
    log(`scaling: ${shards} shard(s)`);
    const row = await attempt(`scaling, ${shards} shard(s)`, () => runScaling(shards, fanOut, requestPath));
    if (row === undefined) continue;
    log(`scaling: ${shards} shard(s): ${Math.round(row.fanOut.median.rate)} deliveries/s, ${Math.round(row.requestPath.requestsPerSecond)} req/s`);
    results.scaling.push(row);
  }
});
results.durations.unshift(['setup', setupSeconds]);

results.finishedAt = new Date();
results.loadAtEnd = readFileSync('/proc/loadavg', 'latin1').trim();
const out = process.env.BENCH_OUT ?? fileURLToPath(new URL('.', import.meta.url));
writeFileSync(join(out, 'results.svg'), renderChart(results));
const markdown = renderReport(results);
writeFileSync(join(out, 'RESULTS.md'), markdown);
process.stdout.write(markdown);
process.exit(0);
