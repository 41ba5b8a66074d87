// CPU time, resident memory and open fds of processes (all their threads), and how busy the machine is, read from /proc.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // Fields after the command name, which may hold spaces: it ends at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime, stime: fields 14 and 15 of stat
}

function groupCpuSeconds(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += cpuSeconds(pid);
    } catch {
      // exited: its CPU time is gone with it
    }
  }
  return sum;
}

/** Resident set size in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** Open file descriptors (sockets, pipes, files). */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Busy and total CPU ticks of the whole machine (all CPUs). */
function machineTicks(): { busy: number; total: number } {
  // cpu  user nice system idle iowait irq softirq steal
  const ticks = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((sum, n) => sum + n, 0);
  return { busy: total - ticks[3] - ticks[4], total };
}

export interface CpuUse {
  /** Per process, percent of one core. */
  processes: number[];
  /** The whole machine, percent of all its CPUs: near 100 means the box itself is the limit. */
  machine: number;
  /** The window's length: percent × seconds / 100 is CPU seconds. */
  seconds: number;
}

/** CPU use of a set of processes, and of the machine, over a window. */
export class CpuMeter {
  private readonly groups: number[][];
  private readonly startCpu: number[];
  private readonly startMachine = machineTicks();
  private readonly startedAt = performance.now();

  /** Each entry is one process, or a group of processes counted as one (a server of several processes). */
  constructor(pids: Array<number | number[]>) {
    this.groups = pids.map((entry) => (typeof entry === 'number' ? [entry] : entry));
    this.startCpu = this.groups.map(groupCpuSeconds);
  }

  read(): CpuUse {
    const seconds = (performance.now() - this.startedAt) / 1000;
    const machine = machineTicks();
    return {
      processes: this.groups.map((group, i) => (100 * (groupCpuSeconds(group) - this.startCpu[i])) / seconds),
      machine: (100 * (machine.busy - this.startMachine.busy)) / (machine.total - this.startMachine.total),
      seconds,
    };
  }
}

/** The process and all its descendants, from the parent pids in /proc/<pid>/stat. */
export function processTree(rootPid: number): number[] {
  const childrenOf = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited while we looked
    }
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ', 2)[1]);
    const siblings = childrenOf.get(parent) ?? [];
    siblings.push(Number(name));
    childrenOf.set(parent, siblings);
  }
  const tree: number[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    tree.push(pid);
    queue.push(...(childrenOf.get(pid) ?? []));
  }
  return tree;
}
