// Starts a real php-fpm master on a free loopback port with a throwaway config, for tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { canConnect, freePort } from './ports.ts';
import { waitUntil } from './wait.ts';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface PhpFpm {
  host: string;
  port: number;
  /** The master's pid. */
  pid: number;
  /** The pids of its (non-zombie) worker processes. */
  workerPids(): number[];
  /** SIGKILL to the master and every worker at once, as a crash or the OOM killer would leave it. */
  kill(): Promise<void>;
  stop(): Promise<void>;
  /** php-fpm's error log (master and workers' stderr) plus anything it printed itself. */
  stderrLog(): string;
}

export interface PhpFpmOptions {
  documentRoot: string;
  maxChildren?: number;
  /** Extra environment for the workers (the pool keeps the master's environment). */
  env?: Record<string, string>;
  /** A fixed port (to start it again on the same one); by default a free one. */
  port?: number;
  /**
   * Every echo leaves at once (output_buffering 0, implicit_flush on), as streaming scripts need; the default. false
   * keeps php.ini's buffering (Debian's production php.ini: 4096 bytes), as a site serving plain pages would run.
   */
  flushEachEcho?: boolean;
}

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const POLL_INTERVAL_MS = 50;
// A port picked by binding port 0 can be taken before php-fpm binds it; try again then.
const START_ATTEMPTS = 3;

/** Path of the php-fpm binary: `php-fpm` on PATH, else the newest /usr/sbin/php-fpmX.Y; undefined if none. */
export function findPhpFpm(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'php-fpm');
    if (isExecutable(candidate)) return candidate;
  }
  let names: string[];
  try {
    names = readdirSync('/usr/sbin').filter((name) => /^php-fpm[0-9.]*$/.test(name));
  } catch {
    return undefined;
  }
  names.sort((a, b) => compareVersions(b.slice('php-fpm'.length), a.slice('php-fpm'.length)));
  for (const name of names) {
    const candidate = join('/usr/sbin', name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export async function startPhpFpm(options: PhpFpmOptions): Promise<PhpFpm> {
  const binary = findPhpFpm();
  if (binary === undefined) {
    throw new Error('php-fpm not found: looked for `php-fpm` on PATH and /usr/sbin/php-fpm* (apt-get install php-fpm)');
  }
  const maxChildren = options.maxChildren ?? 20;
  if (!Number.isInteger(maxChildren) || maxChildren < 1) {
    throw new Error(`maxChildren=${maxChildren} is invalid: expected an integer >= 1`);
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'muxgate-php-fpm-'));
    try {
      return await startOnce(binary, dir, options, maxChildren);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      lastError = error;
      if (!(error instanceof PortTakenError) || options.port !== undefined) break;
    }
  }
  throw lastError;
}

class PortTakenError extends Error {}

async function startOnce(binary: string, dir: string, options: PhpFpmOptions, maxChildren: number): Promise<PhpFpm> {
  const port = options.port ?? await freePort();
  const isRoot = process.getuid?.() === 0;
  const errorLogPath = join(dir, 'error.log');
  const confPath = join(dir, 'php-fpm.conf');
  writeFileSync(confPath, renderConfig({ dir, errorLogPath, port, maxChildren, isRoot, documentRoot: options.documentRoot, flushEachEcho: options.flushEachEcho ?? true }));

  const args = ['-F', '-y', confPath, '-p', dir];
  if (isRoot) args.push('-R');
  const child = spawn(binary, args, {
    cwd: dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => { output += text; });
  child.stderr.setEncoding('utf8').on('data', (text: string) => { output += text; });

  let finalLog: string | undefined;
  const stderrLog = (): string => finalLog ?? readLog(errorLogPath) + output;

  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal === null ? `exit code ${code}` : `signal ${signal}`));
  });
  const spawnFailed = new Promise<string>((resolve) => child.on('error', (error) => resolve(error.message)));

  const startWait = new AbortController();
  const failure = await Promise.race([
    waitForPort(port, startWait.signal),
    exited.then((how) => `php-fpm exited during start (${how})`),
    spawnFailed,
  ]);
  startWait.abort();
  if (failure !== undefined) {
    await terminate(child, exited);
    const log = stderrLog();
    if (/Address already in use/.test(log)) throw new PortTakenError(`port ${port} was taken before php-fpm bound it`);
    throw new Error(`php-fpm (${binary}) did not start on ${HOST}:${port}: ${failure}\n--- php-fpm log ---\n${log}`);
  }

  let stopping: Promise<void> | undefined;
  const workerPids = () => childrenOf(child.pid!);
  return {
    host: HOST,
    port,
    pid: child.pid!,
    workerPids,
    stderrLog,
    async kill() {
      const pids = [child.pid!, ...workerPids()];
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await exited;
      await waitUntil(() => !pids.some(isAlive), START_TIMEOUT_MS, () => `php-fpm's processes to die (alive: ${pids.filter(isAlive).join(', ')})`, POLL_INTERVAL_MS);
      finalLog = stderrLog();
      rmSync(dir, { recursive: true, force: true });
    },
    stop() {
      stopping ??= (async () => {
        await terminate(child, exited);
        finalLog = stderrLog();
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

interface ConfigValues {
  dir: string;
  errorLogPath: string;
  port: number;
  maxChildren: number;
  isRoot: boolean;
  documentRoot: string;
  flushEachEcho: boolean;
}

function renderConfig(c: ConfigValues): string {
  const lines = [
    '[global]',
    `pid = ${join(c.dir, 'php-fpm.pid')}`,
    `error_log = ${c.errorLogPath}`,
    'daemonize = no',
    'log_level = notice',
    '',
    '[www]',
    `listen = ${HOST}:${c.port}`,
    `listen.allowed_clients = ${HOST}`,
    'pm = static',
    `pm.max_children = ${c.maxChildren}`,
    `chdir = ${c.documentRoot}`,
    'clear_env = no',
    'catch_workers_output = yes',
    'decorate_workers_output = no',
    'request_terminate_timeout = 0',
    'php_admin_value[error_reporting] = E_ALL',
    'php_admin_flag[display_errors] = off',
    'php_admin_flag[log_errors] = on',
  ];
  if (c.flushEachEcho) lines.push('php_admin_value[output_buffering] = 0', 'php_admin_flag[implicit_flush] = on');
  if (c.isRoot) lines.push('user = root', 'group = root');
  return lines.join('\n') + '\n';
}

/** Resolves undefined once the port accepts connections, or the reason it gave up. */
async function waitForPort(port: number, signal: AbortSignal): Promise<string | undefined> {
  try {
    await waitUntil(async () => signal.aborted || await canConnect(port), START_TIMEOUT_MS, `a TCP listener on ${HOST}:${port}`, POLL_INTERVAL_MS);
    return signal.aborted ? 'aborted' : undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The live (non-zombie) children of a process, from /proc. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) === pid && state !== 'Z') children.push(Number(entry));
  }
  return children;
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function terminate(child: ChildProcess, exited: Promise<string>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

function readLog(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
