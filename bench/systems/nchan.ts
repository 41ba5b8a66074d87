// Nchan (nginx + libnginx-mod-nchan): EventSource subscribers on /sub/<channel>, WebSocket subscribers on
// /ws/<channel>, publishes to POST /pub?id=<channel>.
import { startNginx } from './nginx.ts';
import { freePort } from '../../test/helpers/ports.ts';
import { webSocketOpening } from '../subscriber-pool.ts';
import type { Address, PublishRequest, RunningSystem } from './system.ts';

export function publishFormat(address: Address, marker: string): PublishRequest {
  if (!('channel' in address)) throw new Error('Nchan publishes to channels only');
  // Nchan frames the body as an SSE event for its eventsource subscribers, as a text message for its WebSocket ones.
  return { path: `/pub?id=${address.channel}`, headers: { 'Content-Type': 'text/plain' }, body: marker };
}

export async function start(workers: number): Promise<RunningSystem> {
  const nginx = await startNginx('nchan.conf.template', { WORKERS: workers });
  return {
    label: `Nchan, ${workers} worker${workers > 1 ? 's' : ''}`,
    kind: 'nchan',
    port: nginx.port,
    subscribeRequest: 'GET /sub/{channel} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n',
    webSocketRequest: webSocketOpening('/ws/{channel}'),
    publishUrl: `http://127.0.0.1:${nginx.port}`,
    serverPids: nginx.pids,
    // worker_connections is above the fd limit on purpose (see nchan.conf.template): nginx's warning about it is expected.
    warnings: () => nginx.warnings().filter((line) => !line.includes('worker_connections exceed open file resource limit')),
    stop: nginx.stop,
  };
}

/**
 * Nchan behind nginx's TLS and `http2` on the certificate's files: EventSource subscribers on /sub/<channel> over h2
 * (`http2Path`), publishes over plain HTTP on a port of their own.
 */
export async function startTls(workers: number, certFile: string, keyFile: string): Promise<RunningSystem> {
  const pubPort = await freePort();
  const nginx = await startNginx('nchan-tls.conf.template', { WORKERS: workers, PUB_PORT: pubPort, CERT: certFile, KEY: keyFile });
  return {
    label: `Nchan behind nginx http2, ${workers} worker${workers > 1 ? 's' : ''}`,
    kind: 'nchan',
    port: nginx.port,
    subscribeRequest: '',
    webSocketRequest: '',
    http2Path: '/sub/{channel}',
    publishUrl: `http://127.0.0.1:${pubPort}`,
    serverPids: nginx.pids,
    warnings: () => nginx.warnings().filter((line) => !line.includes('worker_connections exceed open file resource limit')),
    stop: nginx.stop,
  };
}
