// Scenario 5, request path: plain GETs of a small PHP script, through muxgate and through nginx `fastcgi_pass`, to
// the same php-fpm, driven by wrk over keep-alive connections.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { startPhpFpm } from '../../test/helpers/php-fpm.ts';
import { CpuMeter, processTree } from '../proc-stats.ts';
import { track } from '../child-processes.ts';
import * as muxgate from '../systems/muxgate.ts';
import * as nginxFastcgi from '../systems/nginx-fastcgi.ts';
import { medianOf } from './stats.ts';

const SCRIPT = fileURLToPath(new URL('../peers/hello.php', import.meta.url));

export interface RequestPathOptions {
  workers: number[];
  seconds: number;
  connections: number;
  phpChildren: number;
  runs: number;
}

export interface WrkRun {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
  serverCpu: number;
  phpCpu: number;
  clientCpu: number;
  machineCpu: number;
}

export interface RequestPathResult {
  label: string;
  workers: number;
  median: WrkRun;
  runs: WrkRun[];
}

/** wrk's latency figures ("1.23ms", "850.00us", "1.02s") in ms. */
function ms(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (match === null) return NaN;
  return Number(match[1]) * (match[2] === 'us' ? 0.001 : match[2] === 's' ? 1000 : 1);
}

async function wrk(url: string, options: RequestPathOptions, serverPids: number[], phpPids: number[]): Promise<WrkRun> {
  const cpu = new CpuMeter([serverPids, phpPids]);
  const startedAt = performance.now();
  // wrk's own CPU is gone with it: the shell's `times` prints its children's user and system time.
  const output = await new Promise<string>((resolve, reject) => {
    track(execFile('sh', ['-c', 'wrk "$@" && times', 'wrk', '-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', url], (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout);
    }));
  });
  const { processes: [serverCpu, phpCpu], machine: machineCpu } = cpu.read();
  const childTimes = [...(output.trim().split('\n').at(-1) ?? '').matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
  const clientCpu = (100 * childTimes) / ((performance.now() - startedAt) / 1000);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  return {
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? NaN),
    p50: ms(/^\s+50%\s+(\S+)$/m.exec(output)?.[1] ?? ''),
    p99: ms(/^\s+99%\s+(\S+)$/m.exec(output)?.[1] ?? ''),
    errors: non2xx + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0)),
    serverCpu, phpCpu, clientCpu, machineCpu,
  };
}

export async function runRequestPath(options: RequestPathOptions): Promise<RequestPathResult[]> {
  const fpm = await startPhpFpm({ documentRoot: dirname(SCRIPT), maxChildren: options.phpChildren });
  const results: RequestPathResult[] = [];
  try {
    // php-fpm's master and its workers; found once, as the pool is static.
    const phpPids = processTree(await fpmMasterPid(fpm.port));
    for (const workers of options.workers) {
      const mux = await muxgate.start(workers, {
        MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SCRIPT_FILENAME: SCRIPT, MUX_DOCUMENT_ROOT: dirname(SCRIPT),
      });
      try {
        const runs = [];
        for (let i = 0; i < options.runs; i++) runs.push(await wrk(`http://127.0.0.1:${mux.port}/hello.php`, options, mux.serverPids(), phpPids));
        results.push({ label: mux.label, workers, median: medianOf(runs), runs });
      } finally {
        await mux.stop();
      }
      const nginx = await nginxFastcgi.start(workers, fpm.port, SCRIPT);
      try {
        const runs = [];
        for (let i = 0; i < options.runs; i++) runs.push(await wrk(`http://127.0.0.1:${nginx.port}/hello.php`, options, nginx.pids(), phpPids));
        results.push({ label: `nginx fastcgi_pass, ${workers} worker${workers > 1 ? 's' : ''}`, workers, median: medianOf(runs), runs });
      } finally {
        await nginx.stop();
      }
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
