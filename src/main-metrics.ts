// The main thread's own metrics: process health and the shard supervisor.
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client';

export type MainMetrics = ReturnType<typeof createMainMetrics>;

export function createMainMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges named like counters: promtool rejects them, and process_* covers what they tell.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const metrics = {
    registry,
    shardUp: new Gauge({
      name: 'muxgate_shard_up', help: '1 when the shard answered the last metrics collection in time.',
      labelNames: ['shard'], registers: [registry],
    }),
    shardRestarts: new Counter({
      name: 'muxgate_shard_restarts_total', help: 'Shards restarted after dying.', registers: [registry],
    }),
    refusedConnections: new Counter({
      name: 'muxgate_refused_connections_total', help: 'Connections answered 503 because MUX_MAX_CONNECTIONS were open, by listener.',
      labelNames: ['listener'], registers: [registry],
    }),
    acceptedConnections: new Counter({
      name: 'muxgate_accepted_connections_total', help: 'Connections accepted, by listener.',
      labelNames: ['listener'], registers: [registry],
    }),
  };
  for (const listener of ['public', 'push']) {
    metrics.acceptedConnections.inc({ listener }, 0);
    metrics.refusedConnections.inc({ listener }, 0);
  }
  return metrics;
}
