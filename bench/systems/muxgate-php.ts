// muxgate with php-fpm as its backend (bench/peers/subscribe.php answers every subscribe), for the connection storm
// rows: each subscribe is a FastCGI request to php-fpm, as a PHP site runs it.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPhpFpm } from '../../test/helpers/php-fpm.ts';
import { processTree } from '../proc-stats.ts';
import { start as startMuxgate } from './muxgate.ts';
import type { RunningSystem } from './system.ts';

const SCRIPT = fileURLToPath(new URL('../peers/subscribe.php', import.meta.url));

export async function start(shards: number, phpChildren: number): Promise<RunningSystem> {
  const fpm = await startPhpFpm({ documentRoot: dirname(SCRIPT), maxChildren: phpChildren, flushEachEcho: false });
  try {
    const mux = await startMuxgate(shards, { MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SCRIPT_FILENAME: SCRIPT, MUX_DOCUMENT_ROOT: dirname(SCRIPT) });
    return {
      ...mux,
      label: `${mux.label}, php-fpm (${phpChildren} children)`,
      backendPids: () => processTree(fpm.pid),
      async stop() {
        await mux.stop();
        await fpm.stop();
      },
    };
  } catch (error) {
    await fpm.stop();
    throw error;
  }
}
