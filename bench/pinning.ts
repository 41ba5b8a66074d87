// Pins processes to cores with taskset, for the scaling runs: the server on some cores, the clients on the others.
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

/** `taskset -c` core lists. */
export interface Pinning {
  server: string;
  clients: string;
}

/** Every thread of each process (taskset -a); threads started later inherit their creator's cores. */
export function pin(pids: number[], cores: string): void {
  for (const pid of pids) execFileSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { stdio: 'ignore' });
}

/**
 * The last `clientCores` cores for the clients, the rest for the server; undefined when the rest is fewer than
 * `serverCores`: the server and its clients would share cores anyway.
 */
export function planPinning(serverCores: number, clientCores: number): Pinning | undefined {
  const cores = availableParallelism();
  if (cores - clientCores < serverCores) return undefined;
  const range = (from: number, to: number) => (from === to ? String(from) : `${from}-${to}`);
  return { server: range(0, cores - clientCores - 1), clients: range(cores - clientCores, cores - 1) };
}
