// muxgate with the bench's FastCGI backend (bench/backend.ts): subscribers GET /s?channel=<c> (or /s for a token
// stream), or open a WebSocket on it; publishes go to POST /push with one part addressed to a channel or a token.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMuxgate, type Muxgate } from '../../test/helpers/muxgate.ts';
import { track, terminate } from '../child-processes.ts';
import { webSocketOpening } from '../subscriber-pool.ts';
import { sseEvent, type Address, type PublishRequest, type RunningSystem } from './system.ts';

const BACKEND = fileURLToPath(new URL('../backend.ts', import.meta.url));
const BOUNDARY = 'bb';

export function publishFormat(address: Address, marker: string, isWebSocket: boolean): PublishRequest {
  const to = 'channel' in address ? `Multiplex-Channel: ${address.channel}` : `Multiplex-Token: ${address.token}`;
  return {
    path: '/push',
    headers: { 'Content-Type': `application/x-multiplex; boundary=${BOUNDARY}` },
    body: `--${BOUNDARY}\r\n${to}\r\n\r\n${isWebSocket ? marker : sseEvent(marker)}\r\n--${BOUNDARY}--\r\n`,
  };
}

export interface MuxgateSystem extends RunningSystem {
  mux: Muxgate;
}

/** A fresh backend (on a unix socket in a temp dir) and a muxgate in front of it; `env` adds or overrides MUX_*. */
export async function start(shards: number, env: Record<string, string> = {}): Promise<MuxgateSystem> {
  const dir = mkdtempSync(join(tmpdir(), 'muxgate-bench-'));
  const socketPath = join(dir, 'backend.sock');
  const backend = track(fork(BACKEND, [socketPath], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  await new Promise<void>((resolve, reject) => {
    backend.once('message', () => resolve());
    backend.once('exit', (code) => reject(new Error(`bench backend exited with code ${code}`)));
  });
  // As many connections as the descriptors allow, as Nchan's worker_connections above the fd limit: the idle scenario
  // holds 18,000 streams under a limit of 20,000, where the default keeps a quarter for FastCGI requests (src/config.ts).
  // Started as `npm start` starts it: with Node's compile cache from the first line, so that no thread loads Node's type
  // stripper once the cache is warm, and the main thread's young generation kept small (docs/memory.md).
  const mux = await startMuxgate({
    MUX_SHARDS: String(shards), MUX_FASTCGI: `unix:${socketPath}`, MUX_LOG_LEVEL: 'info', MUX_MAX_CONNECTIONS: '0',
    NODE_COMPILE_CACHE: fileURLToPath(new URL('../../node_modules/.cache/node-compile-cache', import.meta.url)), NODE_OPTIONS: '--max-semi-space-size=1', ...env,
  });
  track(mux.child);
  const port = Number(new URL(mux.url).port);
  return {
    mux,
    label: `muxgate, ${shards} shard${shards > 1 ? 's' : ''}`,
    kind: 'muxgate',
    port,
    subscribeRequest: 'GET /s?channel={channel} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n',
    webSocketRequest: webSocketOpening('/s?channel={channel}'),
    tokenStreamRequest: 'GET /s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n',
    http2Path: '/s?channel={channel}',
    publishUrl: new URL(mux.pushUrl).origin,
    serverPids: () => [mux.child.pid!],
    backendPids: () => [backend.pid!],
    async loopDelaysMs() {
      const text = await (await fetch(mux.metricsUrl)).text();
      return [...text.matchAll(/^muxgate_event_loop_delay_seconds\{shard="\d+"\} (\S+)$/gm)].map((match) => Number(match[1]) * 1000);
    },
    warnings() {
      const counts = new Map<string, number>();
      for (const line of mux.logs) {
        // The warning about MUX_MAX_CONNECTIONS=0, set above on purpose, is expected.
        if (Number(line.level) < 40 || String(line.msg).startsWith('MUX_MAX_CONNECTIONS=0 ')) continue;
        counts.set(String(line.msg), (counts.get(String(line.msg)) ?? 0) + 1);
      }
      return [...counts].map(([msg, count]) => `${count}× "${msg}"`);
    },
    async stop() {
      await mux.stop();
      await terminate(backend);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** muxgate serving TLS (and HTTP/2 by ALPN) on the certificate's files; the push listener stays plain. */
export async function startTls(shards: number, certFile: string, keyFile: string): Promise<MuxgateSystem> {
  const system = await start(shards, { MUX_TLS_CERT: certFile, MUX_TLS_KEY: keyFile });
  return { ...system, label: `${system.label}, TLS` };
}
