// The WebSocket messages rows (issue 18), next to scenario 5: WebSockets that send messages, each one a request to a
// PHP script under php-fpm that sends it back to its sender. Closed loop: one message in flight per WebSocket, the
// next sent when the echo of the last comes back, as wrk keeps one request in flight per connection. muxgate: a
// FastCGI request per message (docs/protocol.md §7.3, `bench/peers/ws-echo.php`); Pushpin: a WebSocket-over-HTTP
// request per message to nginx `fastcgi_pass` (`bench/peers/ws-echo-over-http.php`).
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPhpFpm } from '../../test/helpers/php-fpm.ts';
import { CpuMeter, processTree } from '../proc-stats.ts';
import { SubscriberPool } from '../subscriber-pool.ts';
import { untilDelivered } from './delivery-run.ts';
import * as muxgate from '../systems/muxgate.ts';
import * as nginxFastcgi from '../systems/nginx-fastcgi.ts';
import * as pushpin from '../systems/pushpin.ts';
import { PUSHPIN_LABEL } from './request-path.ts';
import { medianOf } from '../stats.ts';

const MUXGATE_SCRIPT = fileURLToPath(new URL('../peers/ws-echo.php', import.meta.url));
const PUSHPIN_SCRIPT = fileURLToPath(new URL('../peers/ws-echo-over-http.php', import.meta.url));
/** After the senders stop: the echoes still in flight have come back when none arrived for this long. */
const SETTLE_MS = 300;
/** Unmeasured sending first: the first run measured a cold server (JIT, php-fpm children) at 60-70 % of the next ones. */
const WARM_UP_MS = 1000;

export interface WebSocketMessagesOptions {
  webSockets: number;
  seconds: number;
  phpChildren: number;
  /** muxgate's kept FastCGI connections (MUX_FASTCGI_KEEPALIVE) in its second row, as scenario 5's. */
  keptConnections: number;
  runs: number;
}

export interface MessagesRun {
  /** Echoes received per second: each one a message that went through php-fpm and back. */
  messagesPerSecond: number;
  /** Round trip: sent by the client → its echo read by the client. */
  p50: number;
  p99: number;
  /** WebSockets the server closed during the run. */
  closed: number;
  serverCpu: number;
  /** Server CPU µs per message. */
  serverCpuPerMessage: number;
  phpCpu: number;
  clientCpu: number;
  machineCpu: number;
}

export interface WebSocketMessagesResult {
  /** The label of the scenario 5 row with the same server and settings. */
  label: string;
  median: MessagesRun;
  runs: MessagesRun[];
  notes: string[];
}

async function measure(label: string, port: number, request: string, serverPids: () => number[], phpPids: number[],
  options: WebSocketMessagesOptions): Promise<WebSocketMessagesResult> {
  const pool = new SubscriberPool(1);
  const notes: string[] = [];
  const runs: MessagesRun[] = [];
  try {
    const { failedOpens } = await pool.open(port, options.webSockets, { request, channel: 'echo', isWebSocket: true });
    for (const [status, times] of failedOpens) notes.push(`opening the WebSockets: ${times}× "${status}", retried`);
    await pool.send(true);
    await sleep(WARM_UP_MS);
    await pool.send(false);
    await untilDelivered(pool, Number.POSITIVE_INFINITY, SETTLE_MS);
    const warmUp = await pool.stats(true);
    if (warmUp.deliveries === 0) throw new Error(`no echo came back within ${WARM_UP_MS} ms of sending`);
    let closedBefore = warmUp.closed;
    for (let i = 0; i < options.runs; i++) {
      await pool.stats(true);
      const cpu = new CpuMeter([serverPids(), phpPids, pool.pids]);
      const startedAt = performance.now();
      const started = await pool.send(true);
      await sleep(options.seconds * 1000);
      const stats = await pool.stats(true);
      const seconds = (performance.now() - startedAt) / 1000;
      const { processes: [serverCpu, phpCpu, clientCpu], machine: machineCpu } = cpu.read();
      await pool.send(false);
      await untilDelivered(pool, Number.POSITIVE_INFINITY, SETTLE_MS);
      if (started < options.webSockets) notes.push(`run ${i + 1}: ${started} of ${options.webSockets} WebSockets open to send`);
      const messagesPerSecond = stats.deliveries / seconds;
      runs.push({
        messagesPerSecond, p50: stats.histogram.quantileMs(0.5), p99: stats.histogram.quantileMs(0.99), closed: stats.closed - closedBefore,
        serverCpu, serverCpuPerMessage: (serverCpu * 10_000) / messagesPerSecond, phpCpu, clientCpu, machineCpu,
      });
      closedBefore = stats.closed;
    }
  } finally {
    await pool.close();
  }
  return { label, median: medianOf(runs), runs, notes };
}

/** Runs one row, or reports why it could not (the other rows still run). */
export type Attempt = <T>(what: string, run: () => Promise<T>) => Promise<T | undefined>;

export async function runWebSocketMessages(options: WebSocketMessagesOptions, attempt: Attempt): Promise<WebSocketMessagesResult[]> {
  const fpm = await startPhpFpm({ documentRoot: dirname(MUXGATE_SCRIPT), maxChildren: options.phpChildren, flushEachEcho: false });
  const results: WebSocketMessagesResult[] = [];
  try {
    const phpPids = processTree(fpm.pid);
    for (const keepalive of [0, options.keptConnections]) {
      const mux = await muxgate.start(1, {
        MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SCRIPT_FILENAME: MUXGATE_SCRIPT, MUX_DOCUMENT_ROOT: dirname(MUXGATE_SCRIPT),
        MUX_FASTCGI_KEEPALIVE: String(keepalive),
      });
      const label = keepalive > 0 ? `${mux.label}, MUX_FASTCGI_KEEPALIVE=${keepalive}` : mux.label;
      let row: WebSocketMessagesResult | undefined;
      try {
        row = await attempt(`WebSocket messages, ${label}`, () => measure(label, mux.port, mux.webSocketRequest, () => mux.serverPids(), phpPids, options));
      } finally {
        await mux.stop();
      }
      if (row === undefined) continue;
      row.notes.push(...mux.warnings().slice(0, 5).map((warning) => `server log: ${warning}`));
      results.push(row);
    }
    const nginx = await nginxFastcgi.start(1, fpm.port, PUSHPIN_SCRIPT);
    try {
      const front = await pushpin.start(nginx.port);
      let row: WebSocketMessagesResult | undefined;
      try {
        row = await attempt(`WebSocket messages, ${PUSHPIN_LABEL}`,
          () => measure(PUSHPIN_LABEL, front.port, front.webSocketRequest, () => [...front.serverPids(), ...nginx.pids()], phpPids, options));
      } finally {
        await front.stop();
      }
      if (row !== undefined) results.push({ ...row, notes: [...row.notes, ...front.warnings().slice(0, 5).map((warning) => `server log: ${warning}`)] });
    } finally {
      await nginx.stop();
    }
  } finally {
    await fpm.stop();
  }
  return results;
}
