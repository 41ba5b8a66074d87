// Runs nginx in the foreground on a config rendered from a template in bench/peers/, in a temp dir of its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { track, terminate } from '../child-processes.ts';
import { processTree } from '../proc-stats.ts';
import { freePort, waitForPorts } from '../../test/helpers/ports.ts';
import { renderTemplate } from './template.ts';

export interface Nginx {
  port: number;
  child: ChildProcess;
  /** Master and workers. */
  pids(): number[];
  warnings(): string[];
  stop(): Promise<void>;
}

export async function startNginx(template: string, values: Record<string, string | number>): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'muxgate-bench-nginx-'));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  renderTemplate(template, { ...values, DIR: dir, PORT: port }, conf);
  let output = '';
  const child = track(spawn('nginx', ['-c', conf, '-p', dir, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stdout!.setEncoding('utf8').on('data', (text: string) => (output += text));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`nginx (${template}) exited with code ${code}: ${output}`))));
  exited.catch(() => {});
  await Promise.race([waitForPorts([port], `nginx (${template})`), exited]);
  const log = join(dir, 'error.log');
  let warnings: string[] = [];
  return {
    port,
    child,
    pids: () => processTree(child.pid!),
    warnings: () => warnings,
    async stop() {
      await terminate(child);
      // Nchan writes some channel ids with a NUL in them: keep the report plain text.
      if (existsSync(log)) warnings = readFileSync(log, 'utf8').replaceAll('\0', '').split('\n').filter((line) => / \[(warn|error|crit|alert|emerg)\] /.test(line));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
