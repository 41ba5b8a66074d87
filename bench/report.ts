// Renders the bench's results as bench/RESULTS.md: machine, versions, commands, tables with ratios, notes.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { DeliveryResult, DeliveryScenario } from './scenarios/delivery-scenario.ts';
import type { IdleResult } from './scenarios/idle.ts';
import { NODE_FLOOR_LABEL, PUSHPIN_LABEL, type RequestPathOptions, type RequestPathResult } from './scenarios/request-path.ts';
import type { ScalingRow } from './scenarios/scaling.ts';
import type { WebSocketMessagesOptions, WebSocketMessagesResult } from './scenarios/websocket-messages.ts';
import type { HandshakeOptions, HandshakeResult } from './scenarios/tls.ts';

/** Issue 19: TLS handshakes, SSE fan-out over TLS and HTTP/2, memory per held stream over it. */
export interface TlsResults {
  handshakes: HandshakeResult[];
  /** Both phases (a moderate rate, then flat out) of each system. */
  deliveries: DeliveryResult[];
  /** Held streams: HTTP/1.1 plain, then over h2 at each number of streams per connection (null: HTTP/1.1). */
  idle: Array<IdleResult & { streamsPerConnection: number | null }>;
}

export interface BenchResults {
  startedAt: Date;
  finishedAt?: Date;
  loadAtStart: string;
  loadAtEnd?: string;
  runs: number;
  isQuick: boolean;
  sizes: {
    fanOut: DeliveryScenario;
    curveSubscribers: number[];
    curveRates: Array<{ rate: number; seconds: number; runs: number }>;
    idleStreams: number[];
    latency: DeliveryScenario;
    many: DeliveryScenario;
    requestPath: RequestPathOptions;
    scalingShards: number[];
    stormPhpChildren: number;
    /** The WebSocket delivery rows: at a moderate rate, then flat out. */
    webSocketPhases: DeliveryScenario[];
    webSocketMessages: WebSocketMessagesOptions;
    tlsHandshakes: HandshakeOptions;
    /** The tls scenario's delivery phases (their http2 says the streams per connection) and its held streams. */
    tlsPhases: DeliveryScenario[];
    tlsIdleStreams: number;
  };
  fanOut: DeliveryResult[];
  /** The rate curve: one row per system, subscriber count and rate. */
  rates: DeliveryResult[];
  /** Scenario 1 and the storm rows. */
  idle: IdleResult[];
  requestPath: RequestPathResult[];
  latency: DeliveryResult[];
  many: DeliveryResult[];
  scaling: ScalingRow[];
  /** Issue 18: WebSocket subscribers (both phases), idle WebSockets, WebSockets sending messages to php-fpm. */
  webSocket: { deliveries: DeliveryResult[]; idle: IdleResult[]; messages: WebSocketMessagesResult[] };
  tls: TlsResults;
  /** Rows that could not be measured, with why. */
  failures: string[];
  /** Wall time of the setup and of each scenario that ran, in seconds. */
  durations: Array<[name: string, seconds: number]>;
}

/** The moderate rate and the busy room of issue 17's targets. */
export const MODERATE = { subscribers: 1000, rate: 100 };
export const BUSY_ROOM = { subscribers: 100, rate: 1000 };

/** The curve's row of a system at a subscriber count and rate. */
function curveRow(rows: DeliveryResult[], label: string, at: { subscribers: number; rate: number }): DeliveryResult | undefined {
  return rows.find((row) => row.label === label && row.scenario.subscribers === at.subscribers && row.scenario.rate === at.rate);
}

function fixed(n: number | undefined, digits = 0): string {
  return n !== undefined && Number.isFinite(n) ? n.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '–';
}

function version(command: string): string {
  const result = spawnSync('sh', ['-c', command], { encoding: 'utf8' });
  return `${result.stdout}${result.stderr}`.trim().split('\n')[0] ?? '?';
}

function find(rows: Array<{ label: string }>, label: string) {
  return rows.find((row) => row.label === label);
}

/** "1.23× (target ≥ 1.0: met)" */
function ratio(a: number | undefined, b: number | undefined, target: number, isAtMost = false): string {
  const text = times(a, b);
  if (text === '–') return text;
  const r = a! / b!;
  const isMet = isAtMost ? r <= target : r >= target;
  return `${text} (target ${isAtMost ? '≤' : '≥'} ${target}: ${isMet ? 'met' : '**not met**'})`;
}

/** "62.1 MiB (target ≤ 80: met)" */
function atMost(value: number | undefined, limit: number, unit: string, digits: number): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  return `${fixed(value, digits)} ${unit} (target ≤ ${limit}: ${value <= limit ? 'met' : '**not met**'})`;
}

/** "1.23×", for a ratio without a target */
function times(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${(a / b).toFixed(2)}×`;
}

/** What most likely bounds a row, from the CPU figures: the machine when its cores are busy, else the busiest process. */
function limitOf(m: DeliveryResult['median'], rate: number): string {
  const users: Array<[string, number]> = [['server', m.serverCpu], ['subscribers', m.subscriberCpu], ['publisher', m.publisherCpu]];
  const [busiest, cpu] = users.sort((a, b) => b[1] - a[1])[0];
  if (m.machineCpu >= 90) return `machine (${fixed(m.machineCpu)} % busy; most: ${busiest})`;
  if (cpu >= 90) return `${busiest} (${fixed(cpu)} % of a core)`;
  return rate > 0 ? 'the publish rate (no CPU saturated)' : 'neither CPU: latency/round trips';
}

const DELIVERY_COLUMNS = '**server CPU s per million deliveries** | deliveries | missing | deliveries/s | p50 ms | p99 ms | max ms | server CPU % | subscribers CPU % | publisher CPU % | machine busy % | likely limit |';
const DELIVERY_ALIGN = '---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |';

/** The columns of a delivery row, CPU per delivery first: it holds on a shared machine, where throughput does not. */
function deliveryCells({ median: m, scenario }: DeliveryResult): string {
  return `**${fixed(m.serverCpuPerMillion, 2)}** | ${fixed(m.received)} | ${fixed(m.expected - m.received)} | ${fixed(m.rate)} | ` +
    `${fixed(m.p50, 1)} | ${fixed(m.p99, 1)} | ${fixed(m.max, 1)} | ${fixed(m.serverCpu)} | ${fixed(m.subscriberCpu)} | ${fixed(m.publisherCpu)} | ${fixed(m.machineCpu)} | ${limitOf(m, scenario.rate)} |`;
}

function deliveryTable(rows: DeliveryResult[]): string[] {
  return [`| system | ${DELIVERY_COLUMNS}`, `| --- | ${DELIVERY_ALIGN}`, ...rows.map((row) => `| ${row.label} | ${deliveryCells(row)}`)];
}

/** The rate curve, by subscribers, then rate, then system. */
function curveTable(rows: DeliveryResult[]): string[] {
  const sorted = [...rows].sort((a, b) => a.scenario.subscribers - b.scenario.subscribers || a.scenario.rate - b.scenario.rate);
  return [`| subscribers | msg/s | system | runs | ${DELIVERY_COLUMNS}`, `| ---: | ---: | --- | ---: | ${DELIVERY_ALIGN}`,
    ...sorted.map((row) => `| ${fixed(row.scenario.subscribers)} | ${fixed(row.scenario.rate)} | ${row.label} | ${row.scenario.runs} | ${deliveryCells(row)}`)];
}

/** Connect-all time of the storm rows (one count of streams), each against Nchan with as many workers as it has shards. */
function stormTable(rows: IdleResult[], streams: number): string[] {
  const atCount = rows.filter((row) => row.median.streams === streams);
  const nchanSeconds = (workers: number) => atCount.find((row) => row.label === `Nchan, ${workers} worker${workers > 1 ? 's' : ''}`)?.median.connectSeconds;
  return [
    '| system | connect all s | vs Nchan, as many workers as shards | streams/s | CPU % while connecting: server / backend / subscribers / machine |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...atCount.map(({ label, median: m }) => {
      const workers = Number(/(\d+) (shard|worker)/.exec(label)?.[1] ?? 1);
      return `| ${label} | ${fixed(m.connectSeconds, 2)} | ${label.startsWith('Nchan') ? '' : times(m.connectSeconds, nchanSeconds(workers))} | ${fixed(m.streams / m.connectSeconds)} | ` +
        `${fixed(m.serverCpu)} / ${fixed(m.backendCpu)} / ${fixed(m.subscriberCpu)} / ${fixed(m.machineCpu)} |`;
    }),
  ];
}

function scalingTable(rows: ScalingRow[]): string[] {
  const cores = (pinning: ScalingRow['fanOutPinning']) => (pinning === undefined ? 'not pinned: too few cores' : `server ${pinning.server}, clients ${pinning.clients}`);
  return [
    '| shards | fan-out: cores | **server CPU s per million deliveries** | deliveries/s | p99 ms | machine busy % | request path: cores | req/s | **server CPU µs per request** | p99 ms | php-fpm CPU % | machine busy % |',
    '| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(({ shards, fanOutPinning, fanOut: { median: f }, requestPinning, requestPath: q }) => `| ${shards} | ${cores(fanOutPinning)} | **${fixed(f.serverCpuPerMillion, 2)}** | ` +
      `${fixed(f.rate)} | ${fixed(f.p99, 1)} | ${fixed(f.machineCpu)} | ${cores(requestPinning)} | ${fixed(q.requestsPerSecond)} | **${fixed(q.serverCpuPerRequest)}** | ${fixed(q.p99, 2)} | ` +
      `${fixed(q.phpCpu)} | ${fixed(q.machineCpu)} |`),
  ];
}

/** "flat out" or "100 msg/s" */
function rateText(rate: number): string {
  return rate === 0 ? 'flat out' : `${fixed(rate)} msg/s`;
}

/** Issue 18's targets: each WebSocket row of muxgate against Nchan's, and its memory against muxgate's own SSE streams. */
function webSocketTargets(r: BenchResults): string[] {
  const ws = r.webSocket;
  const [moderate, flatOut] = r.sizes.webSocketPhases;
  const delivery = (label: string, rate: number) => ws.deliveries.find((row) => row.label === label && row.scenario.rate === rate)?.median;
  const idleStreams = r.sizes.idleStreams[0];
  const idle = (rows: IdleResult[], label: string) => rows.find((row) => row.label === label && row.median.streams === idleStreams)?.median;
  const messages = (label: string) => ws.messages.find((row) => row.label === label)?.median;
  const requestPath = (label: string) => r.requestPath.find((row) => row.label === label)?.median;
  // 1 shard against 1 worker: the WebSocket rows run no other pair.
  const [shards, workers] = ['muxgate, 1 shard', 'Nchan, 1 worker'];
  const muxIdle = idle(ws.idle, 'muxgate, 2 shards');
  const keptLabel = `muxgate, 1 shard, MUX_FASTCGI_KEEPALIVE=${r.sizes.webSocketMessages.keptConnections}`;
  return [
    '## Targets (issue 18): WebSocket',
    '',
    'The same systems with WebSocket subscribers (muxgate: `bench/backend.ts` accepting the opening with `Multiplex-Channel`; ' +
      'Nchan: `nchan_subscriber websocket`; Pushpin: WebSocket-over-HTTP to its origin); ratios of this run\'s medians. ' +
      'The issue measured, for the peers: Nchan 1 worker p50/p99 3.35/6.33 ms and 4.03 CPU s per million deliveries at 1,000 ' +
      'WebSockets × 100 msg/s, 10.15 KiB per held WebSocket, 10,000 connected in 0.18 s; Pushpin p99 21 s, 52 CPU s per million, ' +
      '60.8 KiB per WebSocket, 12.7 s to connect 10,000.',
    '',
    '| target | measured |',
    '| --- | --- |',
    `| fan-out flat out, ${fixed(flatOut.subscribers)} WebSockets: deliveries/s ≥ 1.0× Nchan, ${shards} vs ${workers} | ` +
      `${ratio(delivery(shards, flatOut.rate)?.rate, delivery(workers, flatOut.rate)?.rate, 1.0)} |`,
    `| same: server CPU per delivery ≤ 1.0× Nchan, ${shards} vs ${workers} | ` +
      `${ratio(delivery(shards, flatOut.rate)?.serverCpuPerMillion, delivery(workers, flatOut.rate)?.serverCpuPerMillion, 1.0, true)} |`,
    `| ${fixed(moderate.subscribers)} WebSockets at ${moderate.rate} msg/s: p99 ≤ 1.0× Nchan, ${shards} vs ${workers} | ` +
      `${ratio(delivery(shards, moderate.rate)?.p99, delivery(workers, moderate.rate)?.p99, 1.0, true)} |`,
    `| same: server CPU per delivery (no target; for reference), ${shards} vs ${workers} | ` +
      `${times(delivery(shards, moderate.rate)?.serverCpuPerMillion, delivery(workers, moderate.rate)?.serverCpuPerMillion)} |`,
    `| RSS per held WebSocket (${fixed(idleStreams)} idle) ≤ Nchan's, muxgate 2 shards vs Nchan 1 worker | ` +
      `${ratio(muxIdle?.kiBPerStream, idle(ws.idle, 'Nchan, 1 worker')?.kiBPerStream, 1.0, true)} |`,
    `| same: ≤ 1.5× muxgate's own SSE figure (${fixed(idleStreams)} held streams, 2 shards) | ` +
      `${ratio(muxIdle?.kiBPerStream, idle(r.idle, 'muxgate, 2 shards')?.kiBPerStream, 1.5, true)} |`,
    `| time to connect ${fixed(idleStreams)} WebSockets vs Nchan (no target; for reference), muxgate 2 shards vs Nchan 1 worker | ` +
      `${times(muxIdle?.connectSeconds, idle(ws.idle, 'Nchan, 1 worker')?.connectSeconds)} |`,
    `| client-to-backend messages/s through php-fpm, muxgate 1 shard (no target; for reference): vs its own request path (GETs/s to the same php-fpm), ` +
      `vs Pushpin's WebSocket-over-HTTP through nginx | ${times(messages('muxgate, 1 shard')?.messagesPerSecond, requestPath('muxgate, 1 shard')?.requestsPerSecond)}, ` +
      `${times(messages('muxgate, 1 shard')?.messagesPerSecond, messages(PUSHPIN_LABEL)?.messagesPerSecond)} |`,
    `| same, FastCGI connections kept (${r.sizes.webSocketMessages.keptConnections}) | ${times(messages(keptLabel)?.messagesPerSecond, requestPath(keptLabel)?.requestsPerSecond)}, ` +
      `${times(messages(keptLabel)?.messagesPerSecond, messages(PUSHPIN_LABEL)?.messagesPerSecond)} |`,
    '',
  ];
}

/** The WebSocket delivery rows, by phase (the moderate rate, then flat out), then system. */
function webSocketDeliveryTable(rows: DeliveryResult[]): string[] {
  const sorted = [...rows].sort((a, b) => (a.scenario.rate === 0 ? 1 : 0) - (b.scenario.rate === 0 ? 1 : 0));
  return [`| publishing | system | messages | runs | ${DELIVERY_COLUMNS}`, `| --- | --- | ---: | ---: | ${DELIVERY_ALIGN}`,
    ...sorted.map((row) => `| ${rateText(row.scenario.rate)} | ${row.label} | ${fixed(row.scenario.messages)} | ${row.scenario.runs} | ${deliveryCells(row)}`)];
}

/** Idle WebSockets, each system's KiB per WebSocket next to its KiB per SSE stream where this run measured it. */
function webSocketIdleTable(r: BenchResults): string[] {
  const sse = (label: string, streams: number) => r.idle.find((row) => row.label === label && row.median.streams === streams)?.median;
  return [
    '| system | held WebSockets | server processes | connect all s | WebSockets/s | RSS before MiB | RSS after MiB | KiB per WebSocket | SSE streams (same count): KiB per stream; connect all s | ratio: KiB; connect | CPU % while connecting: server / subscribers / machine |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.webSocket.idle.map(({ label, processes, median: m }) => {
      const stream = sse(label, m.streams);
      return `| ${label} | ${fixed(m.streams)} | ${processes} | ${fixed(m.connectSeconds, 2)} | ${fixed(m.streams / m.connectSeconds)} | ${fixed(m.beforeKiB / 1024, 1)} | ` +
        `${fixed(m.afterKiB / 1024, 1)} | ${fixed(m.kiBPerStream, 2)} | ${fixed(stream?.kiBPerStream, 2)}; ${fixed(stream?.connectSeconds, 2)} | ` +
        `${times(m.kiBPerStream, stream?.kiBPerStream)}; ${times(m.connectSeconds, stream?.connectSeconds)} | ` +
        `${fixed(m.serverCpu)} / ${fixed(m.subscriberCpu)} / ${fixed(m.machineCpu)} |`;
    }),
  ];
}

/** Issue 19's targets and rows: handshakes, fan-out over h2 against Nchan behind nginx http2, memory per held stream. */
function tlsLines(r: BenchResults): string[] {
  const t = r.tls;
  const [moderate, flatOut] = r.sizes.tlsPhases;
  const handshake = (prefix: string) => t.handshakes.find((row) => row.label.startsWith(prefix))?.median;
  const delivery = (prefix: string, rate: number) => t.deliveries.find((row) => row.label.startsWith(prefix) && row.scenario.rate === rate)?.median;
  const mux = 'muxgate, 1 shard';
  const nchan = 'Nchan behind nginx http2, 1 worker';
  const idle = (streamsPerConnection: number | null) => t.idle.find((row) => row.streamsPerConnection === streamsPerConnection)?.median;
  const o = r.sizes.tlsHandshakes;
  return [
    `## TLS and HTTP/2 (issue 19): muxgate 1 shard vs nginx 1 worker, on the same certificate (ECDSA P-256, made for the run)`, '',
    `Handshakes: ${o.clients} \`openssl s_time -new\` clients for ${o.seconds} s (full handshakes, no session reused, TLS 1.3), against muxgate's ` +
      'TLS listener and against nginx\'s (the Nchan config below). Fan-out: ' +
      `${fixed(moderate.subscribers)} SSE subscribers on one channel over TLS and HTTP/2, ${moderate.http2?.streamsPerConnection} streams per connection ` +
      `(\`bench/subscriber-h2.c\`: libnghttp2 and OpenSSL, windows opened wide), ${moderate.rate} msg/s for ${moderate.messages / moderate.rate} s, then ` +
      `${fixed(flatOut.messages)} messages flat out; Nchan behind nginx's \`ssl http2\`. Held streams: ${fixed(r.sizes.tlsIdleStreams)} on a channel each, ` +
      'muxgate 1 shard, over plain HTTP/1.1 and over TLS and HTTP/2 at 1 and 10 streams per connection.', '',
    '| target | measured |',
    '| --- | --- |',
    `| TLS handshakes per second, muxgate 1 shard vs nginx 1 worker (no target; for reference) | ${times(handshake(mux)?.perSecond, handshake('Nchan')?.perSecond)} |`,
    `| same: server CPU per handshake (for reference) | ${fixed(handshake(mux)?.serverCpuMsPerHandshake, 2)} ms vs ${fixed(handshake('Nchan')?.serverCpuMsPerHandshake, 2)} ms: ` +
      `${times(handshake(mux)?.serverCpuMsPerHandshake, handshake('Nchan')?.serverCpuMsPerHandshake)} |`,
    ...[flatOut, moderate].flatMap((phase) => [
      `| SSE fan-out over h2, ${rateText(phase.rate)}: deliveries/s ≥ 1.0× Nchan behind nginx http2 | ${ratio(delivery(mux, phase.rate)?.rate, delivery(nchan, phase.rate)?.rate, 1.0)} |`,
      `| same: server CPU per delivery ≤ 1.0× Nchan's | ${ratio(delivery(mux, phase.rate)?.serverCpuPerMillion, delivery(nchan, phase.rate)?.serverCpuPerMillion, 1.0, true)} |`,
    ]),
    `| RSS per held stream over TLS + h2, 1 stream per connection; 10 per connection; HTTP/1.1 plain in the same run (KiB) | ` +
      `${fixed(idle(1)?.kiBPerStream, 2)}; ${fixed(idle(10)?.kiBPerStream, 2)}; ${fixed(idle(null)?.kiBPerStream, 2)} |`,
    '',
    '| system | handshakes | s | handshakes/s | server CPU % | **server CPU ms per handshake** | machine busy % |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...t.handshakes.map(({ label, median: m }) => `| ${label} | ${fixed(m.handshakes)} | ${fixed(m.seconds, 1)} | ${fixed(m.perSecond)} | ${fixed(m.serverCpu)} | ` +
      `**${fixed(m.serverCpuMsPerHandshake, 3)}** | ${fixed(m.machineCpu)} |`),
    '',
    ...webSocketDeliveryTable(t.deliveries),
    '',
    '| held streams | streams per connection | connect all s | RSS before MiB | RSS after MiB | KiB per stream |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...t.idle.map(({ label, streamsPerConnection, median: m }) => `| ${label} | ${streamsPerConnection ?? 'HTTP/1.1'} | ${fixed(m.connectSeconds, 2)} | ` +
      `${fixed(m.beforeKiB / 1024, 1)} | ${fixed(m.afterKiB / 1024, 1)} | ${fixed(m.kiBPerStream, 2)} |`),
    '',
  ];
}

/** WebSockets sending messages through php-fpm, each row next to the same server's request path. */
function webSocketMessagesLines(r: BenchResults): string[] {
  const o = r.sizes.webSocketMessages;
  const requestPath = (label: string) => r.requestPath.find((row) => row.label === label)?.median;
  return [
    `### WebSocket messages through php-fpm (issue 18): ${o.webSockets} WebSockets, each message a request to \`bench/peers/ws-echo.php\`, echoed back to its sender`,
    '',
    `Next to the request path: the same php-fpm (${o.phpChildren} static children) and as many WebSockets as wrk has connections, ` +
      `for ${o.seconds} s after 1 s unmeasured, one message in flight on each (\`bench/subscriber.c\` sends the next when the echo of the last comes back, ` +
      'as wrk sends the next request when the answer comes). muxgate: each message a FastCGI request (docs/protocol.md §7.3) ' +
      'whose multiplexed answer is a part to the sender\'s token; Pushpin: each message a WebSocket-over-HTTP request through nginx ' +
      '`fastcgi_pass` to `bench/peers/ws-echo-over-http.php`, whose answer is the message to send back. Latency: message sent → echo read.',
    '',
    '| system | messages/s | ratio to its request path (req/s) | **server CPU µs per message** | its request path: µs per request | p50 ms | p99 ms | WebSockets closed | server CPU % | php-fpm CPU % | client CPU % | machine busy % |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.webSocket.messages.map(({ label, median: m }) => `| ${label} | ${fixed(m.messagesPerSecond)} | ${times(m.messagesPerSecond, requestPath(label)?.requestsPerSecond)} | ` +
      `**${fixed(m.serverCpuPerMessage)}** | ${fixed(requestPath(label)?.serverCpuPerRequest)} | ${fixed(m.p50, 2)} | ${fixed(m.p99, 2)} | ${fixed(m.closed)} | ` +
      `${fixed(m.serverCpu)} | ${fixed(m.phpCpu)} | ${fixed(m.clientCpu)} | ${fixed(m.machineCpu)} |`),
    '',
  ];
}

function notesOf(rows: Array<{ label: string; notes: string[] }>): string[] {
  return rows.flatMap((row) => row.notes.map((note) => `- ${row.label}: ${note}`));
}

export function renderReport(r: BenchResults): string {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'latin1'))?.[1] ?? 'unknown';
  const memTotal = /^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'latin1'))?.[1];
  const pairs = [['muxgate, 1 shard', 'Nchan, 1 worker'], ['muxgate, 2 shards', 'Nchan, 2 workers']];
  const fanOutRate = (label: string) => (find(r.fanOut, label) as DeliveryResult | undefined)?.median.rate;
  const curve = (label: string, at: { subscribers: number; rate: number }) => curveRow(r.rates, label, at)?.median;
  const latencyP99 = (label: string) => (find(r.latency, label) as DeliveryResult | undefined)?.median.p99;
  const loopDelay = (label: string) => (find(r.latency, label) as DeliveryResult | undefined)?.median.loopDelayP99;
  const stormStreams = r.sizes.idleStreams[0];
  const connect = (label: string) => r.idle.find((row) => (row.label === label || row.label.startsWith(`${label} (`)) && row.median.streams === stormStreams)?.median.connectSeconds;
  const idleMux = r.idle.find((row) => row.label === 'muxgate, 2 shards' && row.median.streams === stormStreams);
  /** KiB each stream beyond the first count adds: what a stream costs, without the one-time cost of the first connections. */
  const marginalKiB = (label: string) => {
    const [first, last] = [s.idleStreams[0], s.idleStreams.at(-1)!].map((streams) => r.idle.find((row) => row.label === label && row.median.streams === streams)?.median);
    return first === undefined || last === undefined || last === first ? undefined : (last.afterKiB - first.afterKiB) / (last.streams - first.streams);
  };
  const rp = (label: string) => (find(r.requestPath, label) as RequestPathResult | undefined)?.median.requestsPerSecond;
  const rpCpu = (label: string) => (find(r.requestPath, label) as RequestPathResult | undefined)?.median.serverCpuPerRequest;
  const s = r.sizes;
  const lines = [
    '# muxgate side by side with Nchan and Pushpin',
    '',
    `![deliveries/s and p99 latency per system](results.svg)`,
    '',
    '## How this was measured',
    '',
    `- command: \`npm run bench\` (\`node bench/run.ts\`${r.runs !== 3 ? `, \`BENCH_RUNS=${r.runs}\`` : ''}${r.isQuick ? ', `BENCH_QUICK=1`' : ''}); ` +
      `${r.runs} run${r.runs > 1 ? 's' : ''} per row (scenario 3, Pushpin's and the 18,000-stream idle rows, the curve's 10 msg/s and million deliveries/s rows: ${r.sizes.latency.runs}), the median of each column reported`,
    `- date: ${r.startedAt.toISOString()} to ${r.finishedAt?.toISOString() ?? '?'}`,
    `- machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} CPUs, ${cpuModel}, ${fixed(Number(memTotal) / 1048576, 1)} GiB; ` +
      `load average at start \`${r.loadAtStart}\`, at end \`${r.loadAtEnd ?? '?'}\` (other engineers' tests share the machine)`,
    `- versions: Node ${process.version}; ${version('nginx -v')}; Nchan ${version("dpkg-query -W -f='${Version}' libnginx-mod-nchan")} ` +
      `(libnginx-mod-nchan); ${version('pushpin --version')} (condure, zurl, pushpin-proxy, pushpin-handler); ${version('wrk -v')}; ${version('php-fpm8.2 -v || php-fpm -v')}`,
    '- everything on loopback: servers on 127.0.0.1, subscribers bound to source addresses 127.0.0.1–127.0.0.9, in 2 subscriber processes ' +
      '(`bench/subscriber.c`, one epoll loop each, built with gcc -O2; count `@T=<µs>;` markers in the bytes whatever the framing, a WebSocket\'s in its messages\' payloads); one publisher process (`bench/publisher.ts`) ' +
      `over ${r.sizes.fanOut.concurrency} keep-alive connections, a publish in flight on each (4 until muxgate's 2-shard row showed ` +
      'the publisher to be its limit: each push is answered once every shard has written it, two thread hops); every system streams `text/event-stream` (muxgate: `Multiplex-Channel` via `bench/backend.ts`; ' +
      'Nchan: `nchan_subscriber eventsource`; Pushpin: an origin answering `Grip-Hold: stream`); configs in `bench/peers/`',
    '- publishes: muxgate `POST /push` with one part `Multiplex-Channel: c` (or `Multiplex-Token: t`); Nchan `POST /pub?id=c`; Pushpin `POST /publish/` ' +
      '(one `http-stream` item); one message per request for every system',
    '- deliveries/s = deliveries received / (last received − first published); latency = publisher send time → subscriber read; ' +
      'CPU % = 100 per core over the publish-and-deliver window, server = all its processes (nginx master + workers; pushpin runner, condure, zurl, ' +
      'pushpin-proxy, pushpin-handler; muxgate all threads); machine busy % = all CPUs',
    '- Pushpin\'s `message_rate` throttle (package default 2,500 messages/s) is raised out of the way and its log level is 1; ' +
      'Nchan has `nchan_message_buffer_length 10`',
    '',
    '## Targets (issue 17)',
    '',
    'Equal shards and workers; ratios of this run\'s medians. CPU per delivery: server CPU seconds per million deliveries.',
    '',
    '| target | measured |',
    '| --- | --- |',
    ...pairs.flatMap(([shards, workers]) => [
      `| ${fixed(MODERATE.subscribers)} subscribers at ${MODERATE.rate} msg/s: p99 ≤ 1.0× Nchan, ${shards} vs ${workers} | ${ratio(curve(shards, MODERATE)?.p99, curve(workers, MODERATE)?.p99, 1.0, true)} |`,
      `| same: CPU per delivery ≤ 1.0× Nchan, ${shards} vs ${workers} | ${ratio(curve(shards, MODERATE)?.serverCpuPerMillion, curve(workers, MODERATE)?.serverCpuPerMillion, 1.0, true)} |`,
      `| busy room, ${fixed(BUSY_ROOM.subscribers)} subscribers at ${fixed(BUSY_ROOM.rate)} msg/s: p99 ≤ 1.0× Nchan, ${shards} vs ${workers} | ${ratio(curve(shards, BUSY_ROOM)?.p99, curve(workers, BUSY_ROOM)?.p99, 1.0, true)} |`,
      `| same: CPU per delivery ≤ 0.5× Nchan, ${shards} vs ${workers} | ${ratio(curve(shards, BUSY_ROOM)?.serverCpuPerMillion, curve(workers, BUSY_ROOM)?.serverCpuPerMillion, 0.5, true)} |`,
      `| fan-out flat out, ${fixed(s.fanOut.subscribers)} subscribers: deliveries/s ≥ 5× Nchan, ${shards} vs ${workers} | ${ratio(fanOutRate(shards), fanOutRate(workers), 5)} |`,
    ]),
    ...[MODERATE, BUSY_ROOM].map((at) => `| shard overhead at ${fixed(at.subscribers)} subscribers, ${fixed(at.rate)} msg/s: CPU per delivery, 2 shards ≤ 1.2× 1 shard | ` +
      `${ratio(curve('muxgate, 2 shards', at)?.serverCpuPerMillion, curve('muxgate, 1 shard', at)?.serverCpuPerMillion, 1.2, true)} |`),
    ...pairs.flatMap(([shards, workers]) => ['', ', php-fpm'].map((backend) => `| connection storm, ${fixed(stormStreams)} subscribes at once${backend === '' ? ' (bench backend)' : ' to php-fpm'}: ` +
      `connect all ≤ 2× Nchan's time, ${shards} vs ${workers} | ${ratio(connect(`${shards}${backend}`), connect(workers), 2, true)} |`)),
    ...['muxgate, 1 shard', 'muxgate, 2 shards'].map((label) => `| event-loop delay p99 of every shard at ${fixed(s.latency.subscribers)} subscribers, ` +
      `${s.latency.rate} msg/s (\`muxgate_event_loop_delay_seconds\` over the run), ${label.slice(9)} | ${atMost(loopDelay(label), 50, 'ms', 1)} |`),
    `| idle footprint: RSS before any connection, muxgate 2 shards ≤ 80 MiB | ${atMost(idleMux === undefined ? undefined : idleMux.median.beforeKiB / 1024, 80, 'MiB', 1)} |`,
    `| RSS per held stream (${fixed(stormStreams)} held, 2 shards) ≤ 6.5 KiB | ${atMost(idleMux?.median.kiBPerStream, 6.5, 'KiB', 2)} |`,
    `| (reference) RSS each held stream adds from ${fixed(stormStreams)} to ${fixed(s.idleStreams.at(-1))}, 2 shards; Nchan 1 worker | ` +
      `${fixed(marginalKiB('muxgate, 2 shards'), 2)} KiB; ${fixed(marginalKiB('Nchan, 1 worker'), 2)} KiB |`,
    `| request path ≥ 0.9× the Node floor row (\`bench/peers/node-fastcgi-relay.ts\`), muxgate 1 shard | ${ratio(rp('muxgate, 1 shard'), rp(NODE_FLOOR_LABEL), 0.9)} |`,
    `| request path: keep the lead over Pushpin → nginx → php-fpm, muxgate 1 shard: req/s, server CPU per request (for reference) | ` +
      `${times(rp('muxgate, 1 shard'), rp(PUSHPIN_LABEL))}, ${times(rpCpu('muxgate, 1 shard'), rpCpu(PUSHPIN_LABEL))} |`,
    '',
    ...(r.webSocket.deliveries.length + r.webSocket.idle.length + r.webSocket.messages.length > 0 ? webSocketTargets(r) : []),
    'For reference, issue 8\'s targets:',
    '',
    '| target | measured |',
    '| --- | --- |',
    `| fan-out across 2 nodes (1 shard each, Redis) vs 1 node with 1 shard (issue 9) | ${ratio(fanOutRate('muxgate, 2 nodes × 1 shard (Redis)'), fanOutRate('muxgate, 1 shard'), 1.0)} |`,
    `| p99 latency at ${fixed(s.latency.subscribers)} subscribers ≤ 1.5× Nchan (2 shards vs 1 worker) | ${ratio(latencyP99('muxgate, 2 shards'), latencyP99('Nchan, 1 worker'), 1.5, true)} |`,
    `| request path ≥ 0.9× nginx fastcgi_pass, 1 shard vs 1 worker | ${ratio(rp('muxgate, 1 shard'), rp('nginx fastcgi_pass, 1 worker'), 0.9)} |`,
    `| request path ≥ 0.9× nginx fastcgi_pass, 2 shards vs 2 workers | ${ratio(rp('muxgate, 2 shards'), rp('nginx fastcgi_pass, 2 workers'), 0.9)} |`,
    ...[1, 2].map((workers) => {
      const kept = Math.floor(s.requestPath.keptConnections / workers);
      const [shards, nginxWorkers] = workers > 1 ? [`${workers} shards`, `${workers} workers`] : ['1 shard', '1 worker'];
      return `| request path, FastCGI connections kept (${kept} per shard or worker), ${shards} vs ${nginxWorkers} | ` +
        `${times(rp(`muxgate, ${shards}, MUX_FASTCGI_KEEPALIVE=${kept}`), rp(`nginx fastcgi_pass, ${nginxWorkers}, keepalive ${kept}`))} |`;
    }),
    `| request path, the Node floor (\`bench/peers/node-fastcgi-relay.ts\`: node:http and a FastCGI exchange, nothing else) vs nginx, 1 worker | ` +
      `${times(rp(NODE_FLOOR_LABEL), rp('nginx fastcgi_pass, 1 worker'))} |`,
    '',
  ];
  if (r.fanOut.length > 0) {
    lines.push(`## Scenario 2, fan-out: ${fixed(s.fanOut.subscribers)} subscribers on one channel, ${fixed(s.fanOut.messages)} messages flat out`, '', ...deliveryTable(r.fanOut), '');
  }
  if (r.rates.length > 0) {
    lines.push(`## Scenario 2b, the rate curve: ${s.curveSubscribers.map((n) => fixed(n)).join(' and ')} subscribers on one channel, at ` +
      `${s.curveRates.map(({ rate, seconds }) => `${fixed(rate)} msg/s for ${seconds} s`).join(', ')}`, '',
      'One server start and one set of subscribers per system and subscriber count, the rates in turn; a million deliveries/s ' +
      '(1,000 subscribers at 1,000 msg/s) is measured in 1 run, as the peers\' backlog then takes 10–30 s a run. Pushpin is left out ' +
      '(overloaded from 100 msg/s at 1,000 subscribers in issue 17\'s measurements) to keep the bench within 20 minutes. ' +
      'Server CPU comes from /proc in 10 ms ticks: at 10 msg/s to 100 subscribers (a few hundredths of a CPU second) the ' +
      'CPU figure is coarse, and it includes what the server spends idle (timers, heartbeats) over the window.', '',
      ...curveTable(r.rates), '');
  }
  if (r.idle.some((row) => row.label.includes('php-fpm'))) {
    lines.push(`## Connection storm: ${fixed(s.idleStreams[0])} subscribers connecting at once`, '',
      `Scenario 1's connect-all time: each subscribe is a FastCGI request, to the bench's backend (\`bench/backend.ts\`, ` +
      `a FastCGI responder in Node on muxgate's record codec, a Unix socket) or to php-fpm (\`bench/peers/subscribe.php\`, ${s.stormPhpChildren} static children, TCP on loopback); ` +
      'Nchan subscribes without a backend. 2 subscriber processes open the streams as fast as the server accepts them.', '',
      ...stormTable(r.idle, s.idleStreams[0]), '');
  }
  if (r.idle.length > 0) {
    lines.push(`## Scenario 1, idle capacity: ${s.idleStreams.map((n) => fixed(n)).join(', then ')} held streams`, '',
      '| system | held streams | server processes | connect all s | streams/s | RSS before MiB | RSS after MiB | KiB per stream | CPU % while connecting: server / subscribers / machine |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...r.idle.map(({ label, processes, median: m }) => `| ${label} | ${fixed(m.streams)} | ${processes} | ${fixed(m.connectSeconds, 2)} | ${fixed(m.streams / m.connectSeconds)} | ` +
        `${fixed(m.beforeKiB / 1024, 1)} | ${fixed(m.afterKiB / 1024, 1)} | ${fixed(m.kiBPerStream, 2)} | ${fixed(m.serverCpu)} / ${fixed(m.subscriberCpu)} / ${fixed(m.machineCpu)} |`),
      '', 'RSS is the sum over the server\'s processes (shared pages of nginx\'s workers count in each); per stream = (after − before) / streams, which also counts the ' +
        'one-time cost of the first connections (muxgate: the shards\' young generations filling up, code compiled); the targets table adds what each ' +
        'stream beyond the first count costs. ' +
        'Pushpin is measured at the first count only, in 1 run: its connect time is mostly its proxy\'s 502s and the subscribers\' back-off.', '');
  }
  if (r.requestPath.length > 0) {
    lines.push(`## Scenario 5, request path: GET of \`bench/peers/hello.php\` through the server to one php-fpm (${s.requestPath.phpChildren} static children)`, '',
      `wrk -t1 -c${s.requestPath.connections} -d${s.requestPath.seconds}s --latency.`, '',
      'Pushpin\'s row: Pushpin routes every request to nginx (1 worker), which passes it to the same php-fpm, as a PHP site ' +
      'deploys it; its server CPU is Pushpin\'s processes and nginx\'s.', '',
      '| system | req/s | ratio to the Node floor | ratio to nginx | **server CPU µs per request** | p50 ms | p99 ms | errors | server CPU % | php-fpm CPU % | wrk CPU % | machine busy % |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...r.requestPath.map(({ label, workers, keepalive, median: m }) => {
        const nginx = r.requestPath.find((row) => row.workers === workers && row.keepalive === keepalive && row.label.startsWith('nginx'));
        return `| ${label} | ${fixed(m.requestsPerSecond)} | ${times(m.requestsPerSecond, rp(NODE_FLOOR_LABEL))} | ${times(m.requestsPerSecond, nginx?.median.requestsPerSecond)} | ` +
          `**${fixed(m.serverCpuPerRequest)}** | ${fixed(m.p50, 2)} | ${fixed(m.p99, 2)} | ${fixed(m.errors)} | ${fixed(m.serverCpu)} | ${fixed(m.phpCpu)} | ${fixed(m.clientCpu)} | ${fixed(m.machineCpu)} |`;
      }), '');
  }
  if (r.webSocket.messages.length > 0) lines.push(...webSocketMessagesLines(r));
  if (r.latency.length > 0) {
    lines.push(`## Scenario 3, latency under load: ${fixed(s.latency.subscribers)} subscribers on one channel, ${s.latency.rate} messages/s for ${s.latency.messages / s.latency.rate} s`, '',
      ...deliveryTable(r.latency), '',
      'Event-loop delay, the highest p99 of any shard over the run (`muxgate_event_loop_delay_seconds`, read before and after): ' +
        r.latency.filter((row) => Number.isFinite(row.median.loopDelayP99)).map((row) => `${row.label} ${fixed(row.median.loopDelayP99, 1)} ms`).join(', ') + '.', '');
  }
  if (r.many.length > 0) {
    lines.push(`## Scenario 4, many streams: ${fixed(s.many.subscribers)} subscribers, one message to each (muxgate by token, the peers a channel each)`, '',
      ...deliveryTable(r.many), '');
  }
  if (r.scaling.length > 0) {
    lines.push('## Scaling with shards (`npm run bench -- --scaling`)', '',
      `muxgate alone: scenario 2's fan-out (${fixed(s.fanOut.subscribers)} subscribers, ${fixed(s.fanOut.messages)} messages flat out) and scenario 5's ` +
      `request path (a FastCGI connection per request, ${s.requestPath.phpChildren} php-fpm children) at ${s.scalingShards.join(', ')} shard(s), ` +
      'the shard counts up to the host\'s cores. Where the host has enough cores, `taskset` pins the clients (fan-out: the 2 ' +
      'subscriber processes and the publisher on 3 cores; request path: wrk with 2 threads and php-fpm on 4) and the server to ' +
      'the other cores; where it has not, everything shares them and the rows show what a second shard costs, not what it buys.', '',
      ...scalingTable(r.scaling), '');
  }
  if (r.webSocket.deliveries.length > 0) {
    const [moderate, flatOut] = s.webSocketPhases;
    lines.push(`## WebSocket (issue 18): ${fixed(moderate.subscribers)} WebSocket subscribers on one channel, ${moderate.rate} msg/s for ` +
      `${moderate.messages / moderate.rate} s, then ${fixed(flatOut.messages)} messages flat out`, '',
      'One server start and one set of WebSockets per system, the moderate rate first; each message a text message with the marker ' +
      `alone (no SSE framing). Pushpin in 1 run, with ${fixed(moderate.messages / 2)} messages in each phase: it falls behind from 100 msg/s ` +
      '(its p99 grows with the backlog, so with the length of the phase), and its backlog takes the time.', '',
      ...webSocketDeliveryTable(r.webSocket.deliveries), '');
  }
  if (r.webSocket.idle.length > 0) {
    lines.push(`## WebSocket idle capacity (issue 18): ${fixed(s.idleStreams[0])} held WebSockets`, '',
      'As scenario 1, with WebSockets opened on a channel each; the SSE figure is scenario 1\'s (or the storm\'s) row of the same system ' +
      'in this run. Pushpin in 1 run.', '', ...webSocketIdleTable(r), '');
  }
  if (r.tls.handshakes.length + r.tls.deliveries.length + r.tls.idle.length > 0) lines.push(...tlsLines(r));
  const notes = [...r.failures.map((failure) => `- **failed**: ${failure}`), ...notesOf(r.tls.deliveries), ...notesOf(r.tls.idle), ...notesOf(r.fanOut), ...notesOf(r.rates), ...notesOf(r.idle), ...notesOf(r.latency), ...notesOf(r.many),
    ...notesOf(r.webSocket.deliveries), ...notesOf(r.webSocket.idle), ...notesOf(r.webSocket.messages.map((row) => ({ ...row, label: `WebSocket messages, ${row.label}` }))),
    ...r.scaling.flatMap((row) => row.fanOut.notes.map((note) => `- scaling, ${row.shards} shard(s): ${note}`))];
  const total = r.durations.reduce((sum, [, seconds]) => sum + seconds, 0);
  lines.push('## What each scenario cost', '',
    'Wall time of this run, on this machine; the default run must fit in 20 minutes, setup included.', '',
    '| scenario | minutes |', '| --- | ---: |',
    ...r.durations.map(([name, seconds]) => `| ${name} | ${fixed(seconds / 60, 1)} |`),
    `| total | ${fixed(total / 60, 1)} |`, '');
  lines.push('## What each optimisation bought', '',
    'Measured A/B on this machine while they were made (same minute, alternating old and new; development numbers, not this run\'s):', '',
    '| change | before → after |',
    '| --- | --- |',
    '| held streams\' writes corked until the end of the event-loop turn: one writev per socket for all the pushes of a turn | fan-out, 1 shard: 72–74k → 203–257k deliveries/s, p99 ≈105 → 46–53 ms; 2 shards: 78k → 126k |',
    '| a held stream leaves `node:http` once its head is out (parser, request and response freed; the connection goes back to `node:http` for its next request when the stream ends) | plain `node:http` SSE server: 16.6 → 5.6 KiB per held stream; muxgate, 2 shards: 30.4 → 23.9 KiB |',
    '| V8 young generation of each shard capped at 8 MB (it grew to ~60 MB, all resident) | 1 shard, 10,000 held streams: 17.2 → 12.6 KiB per stream; fan-out 65.7k/74.7k → 72.9k/82.8k deliveries/s |',
    '| `fastcgi-client`: records of a tick corked into one write (previous round) | request path +30 % |',
    '| FastCGI params encoded by muxgate in one buffer; a request ends at END_REQUEST (not at the close one turn later); each record one buffer; a short response sent with its head in one write | request path, 1 shard: 1,887 → 2,432 req/s; shard CPU per request ≈546 → ≈440 µs |',
    '| subscribers in C with epoll instead of Node | subscriber user CPU per 1M deliveries 4.3 s → 0.5 s (kernel time, mostly loopback TCP, unchanged): muxgate rows are now bound by the server |',
    '| shards collect the old generation at 1.2× its live size (`--heap-growing-percent=20`): the garbage of a connect burst does not stay resident | 2 shards, 10,000 held streams: 14.6 → 8.0 KiB per stream, for ~10 % of peak fan-out |',
    '| the publisher keeps 16 publishes in flight instead of 4 (every system) | muxgate 2 shards: 116k → 359k deliveries/s (each push is answered once every shard has written it: with 4 in flight the round trip was the limit) |',
    '| detached held streams share their socket listeners (a map by socket instead of three closures and a once-wrapper per stream); one shared `close` listener per connection | 2 shards, 10,000 held streams: 8.1 → 7.5 KiB per stream |',
    '| `fastcgi-client`: the connection is closed at once when php-fpm closes its side after END_REQUEST (php-fpm holds the child until the client closes), not shut down a loop turn later | request path, 1 shard, paired runs: +4 to +20 % req/s |',
    '| FastCGI connections kept open on request (`MUX_FASTCGI_KEEPALIVE`, `FCGI_KEEP_CONN`; requests without a body reuse them) | request path, 1 shard, php-fpm with buffered output: shard CPU per request ≈400 → ≈200–300 µs; this run\'s rows: see scenario 5 |',
    '| each transferred connection\'s handle wrapped in a socket made by the shard (a socket transferred from the main thread arrives with its properties in V8 dictionary mode) | 2 shards, 10,000 held streams: 7.7 → 6.0 KiB per stream; request path, 1 shard: +8 to +21 % req/s, 6–17 % less CPU per request; fan-out: +4 to +25 % in 5 of 6 paired runs |',
    '| corked writes flushed at most a fifth of the time: after a flush that took t, the next waits 4t (≤ 50 ms); a light load still flushes at the end of the turn | fan-out, 2 shards: 260–296k → 600–680k deliveries/s, 1 shard: 410–474k → 540–656k; write and writev calls for 2M deliveries, 2 shards: 370k → 52k |',
    '| (issue 17) a flush at the end of the turn unless the last started under 2 ms ago, instead of after 4× the last flush; spaced only in a flood (3+ parts per socket in a flush not held back) | 1,000 subscribers at 100 msg/s, 1 shard: p50 19–47 → 6–11 ms; CPU per delivery 3.3–3.7 → 8.6–8.9 s per million (one write per part, as Nchan) |',
    '| (issue 17) what other shards wait for (parts, acknowledgements) sent before a shard flushes its sockets (`workers/turn-end.ts`) | 2 shards flat out: 2.2–2.4 → 1.7–1.8 s per million deliveries (with the flood spacing: 0.94–1.3) |',
    '| (issue 17) a flush gives the event loop back every 10 ms | each shard\'s event-loop delay p99 at 10,000 subscribers, 20 msg/s: 130 ms (issue) → 19–23 ms |',
    '| (issue 17) ioredis only with Redis; shards load 4 prom-client classes, not its index; TypeScript from Node\'s compile cache instead of the type stripper in every thread; main thread\'s semi-space 1 MB | RSS before any connection, 2 shards: 184 → 111 MiB (−21.5, −4.5, −47, −5) |',
    '| (issue 17) `fastcgi-client` patch: one request object with light stdout/stderr (pausing one pauses the connection), no stdin stream without a body, the request head in one write, no keep-alive socket option on a connection closed after its request | heap allocated per request 19–22 → 12.5–14 KB; request path vs the bare Node relay 0.64–0.72× → 0.81–0.95× (this run: 1.03×) |',
    "| (issue 17) under a backlog (2+ parts per socket in the last flush) the next flush starts 5 ms after the last one's start instead of 2, and a flood's spacing (4× the last flush) is never shorter than that: with 2 shards each shard's flush lasts half as long, so its flood spacing was half as long and it wrote twice as often | busy room (100 subscribers, 1,000 msg/s), 12 pairs per shard count, load average 5–16 (other engineers' benchmarks): write system calls per message 1 shard 16–33 → 9–21 (fewer in 11 of 12 pairs), 2 shards 13–49 → 11–34 (fewer in 10 of 12); CPU per delivery new/old 1 shard 0.70–1.35 (median ≈0.9; 0.83–0.95 in the 3 pairs at load ≈5), 2 shards 0.64–1.38 (median ≈0.95, within the noise above load 10); p99 not worse in the pairs (at load ≈5: 1 shard 12–40 vs 11–80 ms, 2 shards 8–50 vs 10–40); 1,000 subscribers at 100 msg/s (5 pairs per shard count, load 8–15): CPU per delivery new/old 0.60–1.28×, p99 1 shard 77–164 vs 57–273 ms, 2 shards 82–318 vs 64–285 ms, no direction above the noise of that load (there a part comes every 10 ms, after the 5 ms); flat out (2 pairs per shard count and 3 more with 1 shard): CPU per delivery 0.74–1.24×, deliveries/s 0.55–1.38×, unchanged within the noise (a flush to 1,000 sockets lasts more than 5 ms, so its spacing is the flood's as before) |",
    '',
    "Tried and not kept: a major GC once a burst of connections is over (no RSS drop measured: V8 keeps the freed pages); `TCP_QUICKACK` and read pacing in the subscriber (no measurable gain); a FastCGI client of our own (one stream per request instead of three) in place of `fastcgi-client` (user CPU per request 220–280 µs against 235–255: no gain); a 32 MB young generation for the request path (CPU per request unchanged within the noise); (issue 17) part batches and acknowledgements between shards sent at most every 2 ms (`workers/peers.ts`), so that in a busy room a shard wakes once for two messages instead of once for each: 6 paired busy-room runs with 2 shards showed no CPU gain above the noise (0.85–1.2×; at that load the shards rarely sleep: about 1.5 wake-ups per message for both shards together, not the 3–4 the hops would cost an idle shard) and p50 rose by 1–2 ms (the part waits on the way to the sequencer and again on the way back).",
    '');
  lines.push(
    "## What the profiles showed (issue 17)",
    "",
    "`--cpu-prof` of every thread (`NODE_OPTIONS` reaches the shards) during each scenario, on this machine:",
    "",
    "- **Fan-out at a moderate rate** (2 shards, 1,000 subscribers, 100 msg/s): each shard spends 35–40 % of its busy time in `writev`/`writeBuffer` (the write system calls; about 8 µs per socket write here, most of it the kernel's loopback TCP), then GC (3–4 %), `postMessage` (3 %) and the answers to the publisher; nothing else above 2 %. The old flush spacing was the only source of the latency: the flush itself is the write.",
    "- **Busy room** (2 shards, 100 subscribers, 1,000 msg/s): each shard is idle half the time; writes take 13–15 % of its time, `postMessage` 3 % (about 40 µs per message per shard with the wake-up it causes), the push's HTTP answer 3 %: with 100 subscribers per message, the per-message thread hops are what a second shard adds.",
    "- **Busy room, again** (this round, paired with main on a machine at load 2–16): over 10 s of the busy room with 1 shard, the shard spent 38 % of its busy time in `writev` and 4 % in `writeBuffer` (the subscribers' writes), 17.6 % in the write of the push's HTTP answer, 4 % in GC, and no other item above 1.5 % (the push's HTTP and multipart parsing, routing, sequencing, the per-stream `socket.write` calls). `/proc` over the same window: about 25 write system calls per message (1 of them the answer: the subscribers got about 4 parts per write) and 470 µs of server CPU per message. `perf` of the same: 46 % of the samples in the kernel; a write's cost is the loopback's receive path run in the writer's context (softirq: `tcp_v4_rcv`, then waking the reader in `sock_def_readable`), and the hypervisor's interrupt re-enable (`pvm_irq_enable`) alone takes 21 % of all samples. The answer's write costs about 7 subscriber `writev`s: it wakes the publisher, asleep waiting for it, and the shard is often switched out on its way back from the call. With 2 shards each shard spent 25 % in `writev`, 7.7 % in `postMessage` (all from the peer flush), 6 % in the answers' writes, 4–5 % in GC; both shards together had 1–1.7 voluntary context switches per message (a shard that is busy anyway does not sleep between messages), so the hops cost less than on an idle shard, and each shard, with half the sockets, wrote more often: 33–49 write calls per message against 20–33 for 1 shard in the same minutes, because the flood spacing was proportional to a flush's duration (4×), and a flush to 50 sockets is half as long.",
    "- **Connection storm** (10,000 subscribes at once, 2 shards, bench backend; CPU by process and by thread from `/proc` over the connect window, paired runs while other engineers' runs kept the load average at 11–15, so wall times there say nothing): muxgate spent 470–570 µs of CPU per subscribe: the main thread's accept and transfer 56–75 (`postMessage` 31 % of it, the transfer 17 %; moving the sockets accepted in one turn of the event loop to a shard in one message changed nothing measurable, 3 pairs), the shard threads 270–340, V8's helper threads 146–172, of which about 65 are the JIT compiling the first burst's code (with `--no-concurrent-recompilation` that time moves into the shards, the total unchanged) and the rest parallel scavenges and concurrent marking. In a shard's profile the system calls lead (writing the stream's head, the FastCGI connect, write and close, `getpeername` for `REMOTE_ADDR`), then GC, about 18 % of the shard: thousands of subscribes are in flight per shard, they outlive the 2.7 MB semi-space, so their requests and FastCGI exchanges are copied and promoted before they die (a 32 MB young generation, or V8's default heap growth instead of 20 %, took 4–8 % off muxgate's CPU in single pairs, against the idle memory that issue 17's item 4 brings down: left alone); no JavaScript function reaches 2 %. The bench's backend was node-fastcgi, which builds a node:http request and response per request: 290–350 µs per subscribe, more than a shard; it is now a FastCGI responder on muxgate's record codec (it reads each request whole and honours `FCGI_KEEP_CONN`): 123–151 µs, and the storm's CPU per subscribe, gateway and backend, 0.73–0.78× what it was (4 pairs, 1 and 2 shards). php-fpm (16 children) spends 195–220 µs per subscribe and muxgate 630–690 in front of it (its answers come later, so more subscribes wait in flight, and GC grows); php-fpm on a Unix socket instead of TCP: the same (2 pairs). Kept FastCGI connections (`MUX_FASTCGI_KEEPALIVE=64`, the old backend) took 5 % off muxgate's CPU (2 pairs); queueing bodyless requests for a kept connection instead of connecting (tried in `fastcgi-client`) made the storm slower and dearer in every process (2 runs), so neither became the default.",
    "- **Request path** (1 shard under wrk): the system calls are the bare relay's but one; the gap was user space, twice the relay's allocation per request, mostly `fastcgi-client`'s three streams per request; after the patch, GC fell from 16 % to 8 % of the shard (the relay's: 7 %). Profiled again under wrk (issue 17, item 6): system calls take 47 % of the shard's busy time (the answer's `writev` 15 %, the FastCGI connect 13 %, its close 13 %, its write 6 %), GC 9 %; the rest is node:http and `fastcgi-client`, and what the relay does not do spread below 2 % each: two timers per request (`MUX_FASTCGI_TIMEOUT` and the client's guard on a connection php-fpm should close), the token, about 30 CGI parameters against the relay's 12, the CGI head parser, metrics.",
    "- **Idle memory**: Node's type stripper (about 13 MiB per thread, WebAssembly) and ioredis (7 MiB per thread) were the largest items; see `docs/memory.md`.",
    "",
  );
  lines.push('## What limits the rows', '',
    '- **The machine.** 2 cores carry the server, 2 subscriber processes, the publisher and other engineers\' tests (see the load ' +
      'average). Fan-out rows run near 100 % machine busy: the numbers compare systems on the same starved box, they are not ' +
      'any system\'s ceiling, and 2 shards / 2 workers can only show scaling where one process was below a core.',
    '- **muxgate fan-out**: every push is an HTTP request parsed as a multipart body, sequenced by shard 0 and broadcast to ' +
      'every shard over MessagePorts; each part is framed once and written to every stream\'s socket, and a socket\'s writes ' +
      'are corked until the next flush, so the parts of all the pushes handled meanwhile leave in one writev. The flushes ' +
      '(one system call per socket, most of the cost of a delivery on loopback) are spaced so that they take at most a fifth ' +
      'of a shard\'s time. On 2 cores a second shard competes with the subscribers and the publisher for the same CPUs and adds ' +
      'a cross-thread hop, so 2 shards cannot show their scaling here.',
    "- **Busy room CPU per delivery** (100 subscribers at 1,000 msg/s; target ≤ 0.5× Nchan): a message costs a fixed part (the push: its HTTP request, multipart parse, routing, and the answer's write, which wakes the publisher: together about 150–250 µs of server CPU here) plus the subscribers' writes, about 8 µs of kernel time each on this VM, 100 × 8 / k µs at k parts per write. Nchan writes each part at once (k = 1: about 880 µs per message, 8.8 s per million deliveries in the last full run); 0.5× of that is 440 µs per message, which 1 shard reaches only with k ≥ 4–5: the 5 ms wait under a backlog gives k ≈ 5 at 1,000 msg/s, the 2 ms before it gave 2–4. Beyond that each halving of the writes costs a doubling of the wait (p99), so the CPU target and the p99 target meet around k ≈ 5. With 2 shards the fixed part is paid partly twice: the message wakes both shards (the push on one, the part from the other), crosses 2 ports (to the sequencer and back to the other shard, with the acknowledgements riding along), and each shard frames and routes it; at 50 subscribers per shard that is spread over half the deliveries, which is what keeps 2 shards above 1 shard's CPU per delivery in this scenario (and far from 0.5× of Nchan with 2 workers, whose extra worker costs nothing per message: the message reaches it through shared memory). Removing a hop would need channel numbering without the sequencer (every shard numbering from a shared counter, with order across shards kept some other way), which this round did not attempt.",
    '- **Nchan** writes from C inside nginx\'s event loop; with 2 workers the subscribers are spread over both and the message ' +
      'is shared through shared memory, so it scales with workers where muxgate adds a cross-thread hop.',
    '- **Pushpin** accepts publishes at once and delivers them later in bursts: the handler sends one message to condure ' +
      'for many connections and condure coalesces writes, so its subscribers read few, large chunks (low subscriber CPU) and ' +
      'its deliveries/s (received / last received − first published) are high while p50 is seconds and the machine half idle. ' +
      'A burst of new streams gets 502/500 from its proxy (the origin request goes through zurl; the cause is not pinned down) ' +
      'and the subscribers retry with back-off, which is most of its connect time; during the connect burst or the first flat-out ' +
      'run the handler cancels some streams ("received message out of sequence"), and their messages are the missing ones.',
    "- **Connection storm**: each subscribe is a FastCGI request, and on 2 cores the CPU of every process adds up: connect-all time ≥ (gateway + backend + subscribers' CPU) / 2. Per subscribe (above): muxgate ≈ 470–570 µs, the bench backend ≈ 125–150, the subscribers ≈ 60–70: ≥ 3.3 s for 10,000 on an idle machine; with php-fpm (≈ 200 µs, muxgate ≈ 650): ≥ 4.4 s. Nchan subscribes without a backend, ≈ 85 µs of its own CPU per subscribe (0.86 s at 97 %). ≤ 2× Nchan's time (≈ 1.7 s) leaves 340 µs per subscribe for everything on the machine, subscribers included: the backend's request alone (125–220 µs) and muxgate's side of it (a FastCGI connection made, written, read and closed, the head written, the socket accepted and moved) spend that before any JavaScript. A gateway that asks a backend on every subscribe does not reach it on this machine; what it costs beyond Nchan is the backend request, on both sides.",
    '- **Idle RSS**: a muxgate held stream is a socket and a small record once its head is out (it leaves `node:http`); ' +
      'what is left above that is V8: a heap snapshot of a shard holding 10,000 streams had ~6.5 KiB live per stream, of ' +
      'which ~1.5 KiB was the socket\'s property dictionary (a socket transferred from the main thread arrives in V8 dictionary ' +
      'mode), until the shards wrapped each transferred handle in a socket of their own, which keeps fast properties; the ' +
      'rest is the socket and the pages of the connect burst\'s garbage. Nchan holds a connection, ' +
      'a request pool and a subscriber; Pushpin holds the stream in condure (8 KiB client buffer), the proxy and the ' +
      'handler (a session each).',
    '- **Request path**: muxgate with 1 shard is bound by its shard thread (≈100 % of a core), the other rows by the ' +
      'machine (84–99 % busy): req/s follows the CPU each process spends per request. Measured from `/proc/<pid>/stat` over ' +
      '5 s wrk runs, with a FastCGI connection per request: nginx ≈115–145 µs per request, of which ≈20–25 µs in user ' +
      'space; the Node floor (`bench/peers/node-fastcgi-relay.ts`, a `node:http` server that relays to php-fpm and does ' +
      'nothing else) ≈260 µs, ≈130 µs in user space; muxgate then ≈350–450 µs, ≈220–280 µs in user space; since issue ' +
      '17\'s `fastcgi-client` patch (one request object, no streams per request) muxgate\'s server CPU per request is the ' +
      'Node floor\'s (this run\'s table). The kernel\'s part (loopback TCP connect, writes, close: ≈100–170 µs) ' +
      'is about the same for all three; what separates them is user space, where `node:http`, `net.Socket` and Buffers ' +
      'alone cost 6× nginx. That is why the Node floor row reaches 0.5–0.65× of nginx from run to run and 0.9× is out of ' +
      'reach of a Node gateway on this machine. What is left of muxgate\'s own CPU is spread thin over the gateway ' +
      '(tokens, CGI parameters, the CGI head, metrics) and V8\'s GC, no item above ~2 % of a CPU profile. Kept FastCGI connections take connect and close off both sides, for nginx as for muxgate; each holds a ' +
      'php-fpm child, so the bench keeps 6 per server against 8 children. With `implicit_flush` (every echo flushed) ' +
      'php-fpm writes its output and its end-request record apart, and on a kept TCP connection Nagle holds the second ' +
      'until the delayed ACK: 180 req/s for nginx and muxgate alike; the bench\'s php-fpm therefore keeps php.ini\'s output ' +
      'buffering, and the README tells users the same.' +
      " Paired in issue 17 (round 2), muxgate 1 shard and the relay up at once on the same php-fpm, wrk alternated, 10 pairs of 3 s on the loaded machine: muxgate answered 0.47–1.32× the relay's requests/s (median 0.89) at 0.97–1.58× its server CPU per request (median 1.19): the 0.9× target is not met in paired runs.",
    '- **WebSocket** (issue 18): muxgate frames a part once as a WebSocket frame and writes the same bytes to every ' +
      'WebSocket that gets it, through the same corked writes as its streams, so a WebSocket delivery should cost it about ' +
      'what an SSE one does (compare scenario 2); opening 10,000 took it 1.3–1.9× the time of as many SSE subscribes in ' +
      'this work\'s runs (node:http\'s upgrade and `ws`\'s handshake on top of the same FastCGI request; not profiled); Nchan\'s WebSocket subscribers cost it about what its EventSource ones do. Pushpin with WebSocket-over-HTTP ' +
      'passes each message through its handler, proxy and condure per connection, and each opening is an HTTP request to ' +
      'the origin through zurl (502s in a burst, retried, as for its streams): its CPU per delivery and its connect time ' +
      'are an order of magnitude above the others; opening 2,000 of each apart, zurl spent ≈3.7 ms of CPU per WebSocket ' +
      'opening against ≈0.3 ms per stream opening, most of Pushpin\'s connect time. A message from a client is a FastCGI request with a body, as a POST ' +
      'would be: `MUX_FASTCGI_KEEPALIVE` keeps connections for requests without a body only (README), so the messages get a ' +
      'connection each while the kept ones, idle, hold php-fpm children (6 of 8 here): the kept-connections row gains nothing ' +
      'from them (0.36–1.29× the other row\'s messages/s from run to run on the busy machine). Paired on the busy machine (same muxgate and php-fpm, wrk GETs and WebSocket messages alternated, ' +
      '32 connections each), a message cost muxgate about what a GET does with a connection per request (0.99–1.09× the ' +
      'GETs/s, 207–269 µs per message against 197–291 per GET).',
    '');
  lines.push('## Notes from the runs', '', ...(notes.length > 0 ? notes : ['- no failed publishes, retried opens, closed streams or server warnings.']), '');
  return lines.join('\n');
}
