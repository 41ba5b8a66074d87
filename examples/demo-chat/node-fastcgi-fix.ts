// A workaround for node-fastcgi 2.0.0, shared by the demo and the bench's backend.
import type { Socket } from 'node:net';

/**
 * node-fastcgi ends the connection after END_REQUEST, then may still write the empty STDERR record:
 * that write errors, the socket is destroyed, and the reset can reach the client before it has read
 * the answer. The late record carries nothing, so it is dropped instead.
 */
export function dropWritesAfterEnd(socket: Socket): void {
  const write = socket.write;
  socket.write = function (this: Socket, ...args: unknown[]): boolean {
    if (!this.writableEnded) return (write as (...a: unknown[]) => boolean).apply(this, args);
    const callback = args.find((arg) => typeof arg === 'function') as (() => void) | undefined;
    if (callback !== undefined) process.nextTick(callback);
    return false;
  } as Socket['write'];
}
