// The main thread's own metrics: process health and the shard supervisor.
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client';

export type MainMetrics = ReturnType<typeof createMainMetrics>;

export function createMainMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    shardUp: new Gauge({
      name: 'muxgate_shard_up', help: '1 when the shard answered the last metrics collection in time.',
      labelNames: ['shard'], registers: [registry],
    }),
    shardRestarts: new Counter({
      name: 'muxgate_shard_restarts_total', help: 'Shards restarted after dying.', registers: [registry],
    }),
    acceptedConnections: new Counter({
      name: 'muxgate_accepted_connections_total', help: 'Connections accepted, by listener.',
      labelNames: ['listener'], registers: [registry],
    }),
  };
}
