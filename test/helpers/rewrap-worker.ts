// A worker thread that takes over a transferred connection as a shard does (workers/http-front.ts rewrap), says what it
// found of the socket's internals, then greets the client and echoes what it reads.
import { parentPort } from 'node:worker_threads';
import type { Socket } from 'node:net';
import { rewrap } from '../../workers/http-front.ts';

export interface RewrapReport {
  /** What the transferred socket carried in `_handle`: rewrap takes the connection from there. */
  transferredHandle: string;
  isHandleMoved: boolean;
  remotePort: number | undefined;
}

parentPort!.once('message', ({ socket }: { socket: Socket }) => {
  const handle = (socket as unknown as { _handle: unknown })._handle;
  const own = rewrap(socket);
  const report: RewrapReport = {
    transferredHandle: handle === null ? 'null' : typeof handle === 'object' ? (handle as object).constructor.name : typeof handle,
    isHandleMoved: (socket as unknown as { _handle: unknown })._handle === null && (own as unknown as { _handle: unknown })._handle === handle,
    remotePort: own.remotePort,
  };
  own.on('error', () => own.destroy());
  own.on('data', (chunk: Buffer) => own.write(`echo:${chunk.toString('latin1')}`));
  own.on('end', () => own.end());
  own.write('hello from the worker\n');
  parentPort!.postMessage(report);
});
