// Starts muxgate (src/main.ts) as a real process on loopback ports picked by the OS.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './wait.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
/** Generous: a busy CI machine has taken more than 15 s to start it. */
const START_TIMEOUT_MS = 30_000;

export interface Muxgate {
  url: string;
  pushUrl: string;
  /** MUX_H2C_LISTEN's http:// URL, when it is set. */
  h2cUrl: string | undefined;
  metricsUrl: string;
  child: ChildProcess;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** What the process wrote to stderr so far. */
  stderr(): string;
}

export interface MuxgateOptions {
  /** Starts it under this open-files limit (soft and hard: `ulimit -n` in sh, then exec). */
  openFilesLimit?: number;
}

export async function startMuxgate(env: Record<string, string>, options: MuxgateOptions = {}): Promise<Muxgate> {
  const command = options.openFilesLimit === undefined
    ? [process.execPath, MAIN]
    : ['/bin/sh', '-c', `ulimit -n ${options.openFilesLimit} && exec "$0" "$@"`, process.execPath, MAIN];
  const child = spawn(command[0], command.slice(1), {
    env: {
      PATH: process.env.PATH ?? '',
      MUX_LISTEN: '127.0.0.1:0',
      MUX_PUSH_LISTEN: '127.0.0.1:0',
      MUX_METRICS_LISTEN: '127.0.0.1:0',
      MUX_LOG_LEVEL: 'debug',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const watchers = new Set<(line: Record<string, unknown>) => void>();
  let pending = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const raw = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(raw);
      } catch {
        line = { msg: raw };
      }
      logs.push(line);
      for (const watcher of watchers) watcher(line);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 5000) => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        watchers.delete(watcher);
        reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr}`));
      }, timeoutMs);
      const watcher = (line: Record<string, unknown>) => {
        if (!predicate(line)) return;
        clearTimeout(timer);
        watchers.delete(watcher);
        resolve(line);
      };
      watchers.add(watcher);
    });
  };

  let listening: Record<string, unknown>;
  try {
    listening = await Promise.race([
      waitForLog((line) => String(line.msg).startsWith('muxgate listening'), START_TIMEOUT_MS),
      exited.then((code) => {
        throw new Error(`muxgate exited with code ${code} before listening: ${stderr}`);
      }),
    ]);
  } catch (error) {
    // A child left running would keep the test process alive after the failure.
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  return {
    url: String(listening.public),
    pushUrl: String(listening.push),
    h2cUrl: listening.h2c === undefined ? undefined : String(listening.h2c),
    metricsUrl: String(listening.metrics),
    child,
    logs,
    waitForLog,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    stderr: () => stderr,
  };
}

/** The value of one sample in Prometheus text output, or undefined. */
export async function metricValue(metricsUrl: string, sample: string): Promise<number | undefined> {
  const text = await (await fetch(metricsUrl)).text();
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith(sample + ' ') || (line.startsWith(sample + '{') && !sample.includes('{'))) {
      sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/** Polls /metrics until the sample satisfies the predicate; resolves with its value then. */
export async function waitForMetric(metricsUrl: string, sample: string, predicate: (value: number) => boolean, timeoutMs = 5000): Promise<number> {
  let value = 0;
  await waitUntil(async () => predicate(value = await metricValue(metricsUrl, sample) ?? 0), timeoutMs, () => `the expected ${sample} (it is ${value})`, 50);
  return value;
}
