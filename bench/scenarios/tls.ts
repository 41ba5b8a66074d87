// Issue 19's rows: TLS handshakes per second and server CPU per handshake (muxgate 1 shard vs nginx 1 worker, the same
// certificate), SSE fan-out over TLS and HTTP/2 (vs Nchan behind nginx's http2), memory per held stream over TLS and
// HTTP/2 at 1 and 10 streams per connection (vs HTTP/1.1 in the same run). One certificate made for the run.
import { spawn } from 'node:child_process';
import { CpuMeter } from '../proc-stats.ts';
import { track } from '../child-processes.ts';
import { medianOf } from '../stats.ts';
import type { SystemSpec } from './delivery-scenario.ts';

export interface HandshakeRun {
  handshakes: number;
  seconds: number;
  perSecond: number;
  /** The server's CPU, percent of one core, over the run. */
  serverCpu: number;
  /** Server CPU ms per full handshake. */
  serverCpuMsPerHandshake: number;
  machineCpu: number;
}

export interface HandshakeResult {
  label: string;
  median: HandshakeRun;
  runs: HandshakeRun[];
}

export interface HandshakeOptions {
  /** Parallel `openssl s_time -new` clients: each makes full handshakes one after the other, no session reused. */
  clients: number;
  seconds: number;
  runs: number;
}

/** One `openssl s_time -new` client for `seconds`; resolves with the connections it completed. */
function sTime(port: number, seconds: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = track(spawn('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let output = '';
    child.stdout!.setEncoding('utf8').on('data', (text: string) => (output += text));
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
    child.once('exit', () => {
      const match = /(\d+) connections in \d+ real seconds/.exec(output);
      if (match === null) reject(new Error(`openssl s_time said: ${output.slice(-300)}`));
      else resolve(Number(match[1]));
    });
  });
}

export async function runHandshakes(spec: SystemSpec, options: HandshakeOptions): Promise<HandshakeResult> {
  const system = await spec.start();
  const runs: HandshakeRun[] = [];
  try {
    for (let i = 0; i < options.runs; i++) {
      const cpu = new CpuMeter([system.serverPids()]);
      const counts = await Promise.all(Array.from({ length: options.clients }, () => sTime(system.port, options.seconds)));
      const { processes: [serverCpu], machine: machineCpu, seconds } = cpu.read();
      const handshakes = counts.reduce((sum, n) => sum + n, 0);
      runs.push({
        handshakes, seconds, perSecond: handshakes / seconds, serverCpu,
        serverCpuMsPerHandshake: (serverCpu * seconds * 10) / handshakes, machineCpu,
      });
    }
  } finally {
    await system.stop();
  }
  return { label: system.label, median: medianOf(runs), runs };
}
