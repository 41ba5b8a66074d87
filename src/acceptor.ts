// Listeners: accept paused sockets and move each to a shard; the main thread never reads a client byte.
import net from 'node:net';
import type { ListenAddress } from './config.ts';
import type { ShardPool } from './shards.ts';
import type { MainMetrics } from './main-metrics.ts';
import type { ListenerKind } from '../workers/http-front.ts';

export class Acceptor {
  private readonly server: net.Server;

  constructor(kind: ListenerKind, shards: ShardPool, metrics: MainMetrics) {
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
      metrics.acceptedConnections.inc({ listener: kind });
      shards.transfer(socket, kind);
    });
  }

  listen(address: ListenAddress): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: address.host, port: address.port, backlog: 4096 }, () => {
        this.server.removeListener('error', reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
