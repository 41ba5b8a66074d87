// Free loopback ports for servers that cannot report a port the OS picked (php-fpm, Redis, Prometheus, the bench's
// peers), and waiting until they accept connections.
import net from 'node:net';
import { waitUntil } from './wait.ts';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => { socket.destroy(); resolve(false); });
  });
}

/** Resolves once every port accepts connections; throws with `what` after `timeoutMs`. */
export async function waitForPorts(ports: number[], what: string, timeoutMs = 10_000): Promise<void> {
  const isListening = async () => (await Promise.all(ports.map(canConnect))).every(Boolean);
  await waitUntil(isListening, timeoutMs, `${what} to listen on 127.0.0.1:${ports.join(', ')}`, 50);
}
