// Listeners: accept paused sockets and move each to a shard; the main thread never reads a client byte.
import type { AddressInfo, Server } from 'node:net';
import { MAX_REFUSING, type ListenAddress } from './config.ts';
import type { ShardPool } from './shards.ts';
import type { MainMetrics } from './main-metrics.ts';
import type { ListenerKind } from './shard-messages.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const net = process.getBuiltinModule('node:net');

// Written without reading the request: cheap enough to keep answering under a connection flood.
const OVERLOADED = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n' +
  'Content-Length: 42\r\nRetry-After: 1\r\n\r\nmuxgate: too many connections (try again)\n';

export class Acceptor {
  readonly #server: Server;
  /** Refused connections still open, each holding a file descriptor until its 503 is out. */
  #refusing = 0;

  /** maxConnections: beyond it (0: no limit), a new connection gets a fast 503 from the main thread. */
  constructor(kind: ListenerKind, shards: ShardPool, metrics: MainMetrics, maxConnections: number) {
    this.#server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
      if (maxConnections > 0 && shards.connectionCount >= maxConnections) {
        metrics.refusedConnections.inc({ listener: kind });
        // A flood beyond the limit must not spend the descriptors kept for the other listeners: the excess is closed unanswered.
        if (this.#refusing >= MAX_REFUSING) return void socket.destroy();
        this.#refusing++;
        socket.once('close', () => this.#refusing--);
        socket.on('error', () => socket.destroy());
        // Whatever the client sent is discarded unread, so that closing does not reset the answer away.
        socket.resume();
        socket.end(OVERLOADED);
        socket.setTimeout(1000, () => socket.destroy());
        return;
      }
      metrics.acceptedConnections.inc({ listener: kind });
      shards.transfer(socket, kind);
    });
  }

  listen(address: ListenAddress): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: address.host, port: address.port, backlog: 4096 }, () => {
        this.#server.removeListener('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
