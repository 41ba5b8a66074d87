// Scenario 5, request path: plain GETs of a small PHP script, through muxgate and through nginx `fastcgi_pass`, to
// the same php-fpm, driven by wrk over keep-alive connections; each with a FastCGI connection per request and with
// kept FastCGI connections (MUX_FASTCGI_KEEPALIVE, nginx `keepalive` + `fastcgi_keep_conn`); and Pushpin in front of
// nginx, as a PHP site deploys it.
import { execFile, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { startPhpFpm } from '../../test/helpers/php-fpm.ts';
import { CpuMeter, processTree } from '../proc-stats.ts';
import { terminate, track } from '../child-processes.ts';
import * as muxgate from '../systems/muxgate.ts';
import * as nginxFastcgi from '../systems/nginx-fastcgi.ts';
import * as pushpin from '../systems/pushpin.ts';
import { medianOf } from '../stats.ts';

const SCRIPT = fileURLToPath(new URL('../peers/hello.php', import.meta.url));
const RELAY = fileURLToPath(new URL('../peers/node-fastcgi-relay.ts', import.meta.url));
/** The floor row: the least a Node server does per request (bench/peers/node-fastcgi-relay.ts). */
export const NODE_FLOOR_LABEL = 'Node floor: node:http → FastCGI relay, 1 thread';
export const PUSHPIN_LABEL = 'Pushpin → nginx fastcgi_pass, 1 worker';

export interface RequestPathOptions {
  workers: number[];
  seconds: number;
  connections: number;
  phpChildren: number;
  /** FastCGI connections kept open per server, split over its shards or workers; fewer than phpChildren (each pins a child). */
  keptConnections: number;
  runs: number;
}

export interface WrkRun {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
  serverCpu: number;
  /** Server CPU µs per request. */
  serverCpuPerRequest: number;
  phpCpu: number;
  clientCpu: number;
  machineCpu: number;
}

export interface RequestPathResult {
  label: string;
  workers: number;
  /** Kept FastCGI connections per shard or worker; 0: a connection per request. */
  keepalive: number;
  median: WrkRun;
  runs: WrkRun[];
}

/** wrk's latency figures ("1.23ms", "850.00us", "1.02s") in ms. */
function ms(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (match === null) return NaN;
  return Number(match[1]) * (match[2] === 'us' ? 0.001 : match[2] === 's' ? 1000 : 1);
}

/** `cores`: a `taskset -c` list for wrk and its `threads` (the scaling runs). */
export async function wrk(url: string, options: { connections: number; seconds: number }, serverPids: number[], phpPids: number[], cores?: string, threads = 1): Promise<WrkRun> {
  const cpu = new CpuMeter([serverPids, phpPids]);
  const startedAt = performance.now();
  const command = cores === undefined ? 'wrk "$@" && times' : `taskset -c ${cores} wrk "$@" && times`;
  // wrk's own CPU is gone with it: the shell's `times` prints its children's user and system time.
  const output = await new Promise<string>((resolve, reject) => {
    track(execFile('sh', ['-c', command, 'wrk', `-t${threads}`, `-c${options.connections}`, `-d${options.seconds}s`, '--latency', url], (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout);
    }));
  });
  const { processes: [serverCpu, phpCpu], machine: machineCpu } = cpu.read();
  const childTimes = [...(output.trim().split('\n').at(-1) ?? '').matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
  const clientCpu = (100 * childTimes) / ((performance.now() - startedAt) / 1000);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const requestsPerSecond = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? NaN);
  return {
    requestsPerSecond,
    p50: ms(/^\s+50%\s+(\S+)$/m.exec(output)?.[1] ?? ''),
    p99: ms(/^\s+99%\s+(\S+)$/m.exec(output)?.[1] ?? ''),
    errors: non2xx + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0)),
    serverCpu, serverCpuPerRequest: (serverCpu * 10_000) / requestsPerSecond, phpCpu, clientCpu, machineCpu,
  };
}

export async function runRequestPath(options: RequestPathOptions): Promise<RequestPathResult[]> {
  // php.ini's output buffering, as a site serving plain pages runs: with every echo flushed, php-fpm writes its
  // output and its end-request record apart, and on a kept TCP connection Nagle holds the second until a delayed ACK.
  const fpm = await startPhpFpm({ documentRoot: dirname(SCRIPT), maxChildren: options.phpChildren, flushEachEcho: false });
  const results: RequestPathResult[] = [];
  try {
    // php-fpm's master and its workers; found once, as the pool is static.
    const phpPids = processTree(await fpmMasterPid(fpm.port));
    const measure = async (label: string, workers: number, keepalive: number, url: string, serverPids: () => number[]) => {
      const runs = [];
      for (let i = 0; i < options.runs; i++) runs.push(await wrk(url, options, serverPids(), phpPids));
      results.push({ label, workers, keepalive, median: medianOf(runs), runs });
    };
    const relay = track(fork(RELAY, [`${fpm.host}:${fpm.port}`, SCRIPT], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    try {
      const { port } = await new Promise<{ port: number }>((resolve) => relay.once('message', resolve));
      await measure(NODE_FLOOR_LABEL, 1, 0, `http://127.0.0.1:${port}/hello.php`, () => [relay.pid!]);
    } finally {
      await terminate(relay);
    }
    for (const workers of options.workers) {
      for (const keepalive of [0, Math.floor(options.keptConnections / workers)]) {
        const mux = await muxgate.start(workers, {
          MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SCRIPT_FILENAME: SCRIPT, MUX_DOCUMENT_ROOT: dirname(SCRIPT),
          MUX_FASTCGI_KEEPALIVE: String(keepalive),
        });
        try {
          const label = keepalive > 0 ? `${mux.label}, MUX_FASTCGI_KEEPALIVE=${keepalive}` : mux.label;
          await measure(label, workers, keepalive, `http://127.0.0.1:${mux.port}/hello.php`, () => mux.serverPids());
        } finally {
          await mux.stop();
        }
        const nginx = await nginxFastcgi.start(workers, fpm.port, SCRIPT, keepalive);
        try {
          const label = `nginx fastcgi_pass, ${workers} worker${workers > 1 ? 's' : ''}${keepalive > 0 ? `, keepalive ${keepalive}` : ''}`;
          await measure(label, workers, keepalive, `http://127.0.0.1:${nginx.port}/hello.php`, () => nginx.pids());
        } finally {
          await nginx.stop();
        }
      }
    }
    const nginx = await nginxFastcgi.start(1, fpm.port, SCRIPT);
    try {
      const front = await pushpin.start(nginx.port);
      try {
        await measure(PUSHPIN_LABEL, 1, 0, `http://127.0.0.1:${front.port}/hello.php`, () => [...front.serverPids(), ...nginx.pids()]);
      } finally {
        await front.stop();
      }
    } finally {
      await nginx.stop();
    }
  } finally {
    await fpm.stop();
  }
  return results;
}

/** The pid of the php-fpm master listening on the port (the helper does not expose its child). */
async function fpmMasterPid(port: number): Promise<number> {
  const output = await new Promise<string>((resolve, reject) => execFile('ss', ['-ltnpH', `sport = :${port}`], (error, stdout) => (error ? reject(error) : resolve(stdout))));
  const pids = [...output.matchAll(/pid=(\d+)/g)].map((match) => Number(match[1]));
  if (pids.length === 0) throw new Error(`no process listens on port ${port}: ${output}`);
  return Math.min(...pids);
}
