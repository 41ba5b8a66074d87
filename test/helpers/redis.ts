// Starts a real redis-server (Debian's package) on a loopback port, for tests; it can be killed and restarted.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, waitForPorts } from './ports.ts';

export interface RedisServer {
  url: string;
  port: number;
  /** The running server's pid (0 while it is down). */
  readonly pid: number;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitForPorts([port], 'redis-server');
  };
  const halt = async (signal: NodeJS.Signals) => {
    const running = child;
    if (running === null || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill(signal);
    await exited;
    child = null;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return (child as ChildProcess | null)?.pid ?? 0;
    },
    kill: () => halt('SIGKILL'),
    restart: start,
    stop: () => halt('SIGTERM'),
  };
}
