// This shard's prom-client registry; the main thread aggregates every shard's JSON.
import type { HeapSpaceInfo } from 'node:v8';
import { Registry, Counter, Gauge, Histogram } from '../src/prom-client.ts';
import { ERR_MALFORMED_MULTIPLEX, ERR_PART_HEADERS_TOO_LARGE, ERR_PART_TOO_LARGE, ERR_PUSH_TOO_LARGE } from '../src/errors.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { monitorEventLoopDelay } = process.getBuiltinModule('node:perf_hooks');
const v8 = process.getBuiltinModule('node:v8');

export type ShardMetrics = ReturnType<typeof createShardMetrics>;

/**
 * The event loop is sampled by a timer due every LOOP_SAMPLE_MS; how late it runs is the delay. A stall shorter than
 * the interval is seen when it spans a sample, that is in proportion to the time the loop spends stalled, so the
 * percentiles hold at any interval. Finer costs an idle shard CPU for nothing: 0.7 % of a core at 10 ms, 0.9 at 5,
 * 2.1 at 1 (README, Event-loop delay).
 */
const LOOP_SAMPLE_MS = 10;

export function createShardMetrics(shard: number) {
  const registry = new Registry();
  const shardLabel = { shard: String(shard) };
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loopDelay.enable();
  // Counted per write on the hot path as plain numbers, added to the counters (or set on the gauge) when scraped.
  const hot = { deliveries: 0, deliveredBytes: 0, channelDeliveries: 0, historyBytes: 0, webSocketMessagesOut: 0 };
  /**
   * Connections by protocol, set as they change (http-front.ts): all of them, and those over TLS, handshaking or
   * speaking HTTP/1.x or HTTP/2; and the HTTP/2 streams open on them. A plain connection costs nothing more than its
   * place in `all`.
   */
  const connections = { all: 0, tlsHandshaking: 0, tlsHttp1: 0, http2: 0, http2Streams: 0 };
  const metrics = {
    registry,
    hot,
    connections,
    openConnections: new Gauge({
      name: 'muxgate_open_connections', help: 'Client connections owned by the shard.',
      labelNames: ['shard'], registers: [registry],
      collect() {
        this.set(shardLabel, connections.all);
      },
    }),
    connectionsByProtocol: new Gauge({
      name: 'muxgate_connections_by_protocol',
      help: 'Client connections owned by the shard, by protocol: http1 (plain HTTP/1.x), http1_tls (HTTP/1.x over TLS), h2 (HTTP/2, over TLS or h2c), tls_handshake (TLS, handshake under way).',
      labelNames: ['shard', 'protocol'], registers: [registry],
      collect() {
        this.set({ ...shardLabel, protocol: 'http1' }, connections.all - connections.tlsHandshaking - connections.tlsHttp1 - connections.http2);
        this.set({ ...shardLabel, protocol: 'http1_tls' }, connections.tlsHttp1);
        this.set({ ...shardLabel, protocol: 'h2' }, connections.http2);
        this.set({ ...shardLabel, protocol: 'tls_handshake' }, connections.tlsHandshaking);
      },
    }),
    http2Streams: new Gauge({
      name: 'muxgate_http2_streams',
      help: 'HTTP/2 streams open on the shard\'s connections (requests in progress and held streams); over muxgate_connections_by_protocol{protocol="h2"}, the streams per connection.',
      labelNames: ['shard'], registers: [registry],
      collect() {
        this.set(shardLabel, connections.http2Streams);
      },
    }),
    http2ResetBeforeStart: new Counter({
      name: 'muxgate_http2_resets_before_start_total',
      help: 'HTTP/2 request streams the client reset before their FastCGI request started (rapid reset): never sent to the backend.',
      registers: [registry],
    }),
    tlsHandshakes: new Counter({
      name: 'muxgate_tls_handshakes_total',
      help: 'TLS handshakes on the public listener, by result: ok, failed (not TLS, refused by OpenSSL, or the client left), timeout.',
      labelNames: ['result'], registers: [registry],
    }),
    heldStreams: new Gauge({
      name: 'muxgate_held_streams', help: 'Live multiplexed responses (tokens that can receive parts).',
      labelNames: ['shard'], registers: [registry],
    }).labels(shardLabel),
    requests: new Counter({
      name: 'muxgate_requests_total', help: 'Client requests answered, by status class.',
      labelNames: ['listener', 'class'], registers: [registry],
    }),
    fastcgiDuration: new Histogram({
      name: 'muxgate_fastcgi_duration_seconds', help: 'Time from sending a FastCGI request to its complete response head.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [registry],
    }),
    fastcgiErrors: new Counter({
      name: 'muxgate_fastcgi_errors_total', help: 'FastCGI requests that failed, by kind.',
      labelNames: ['kind'], registers: [registry],
    }),
    fastcgiRetries: new Counter({
      name: 'muxgate_fastcgi_retries_total',
      help: 'FastCGI requests sent again on a new connection: the kept connection they went on had been closed (MUX_FASTCGI_KEEPALIVE).',
      registers: [registry],
    }),
    parts: new Counter({
      name: 'muxgate_parts_total', help: 'Parts routed, by source (response, push) and route (local, remote, channel).',
      labelNames: ['source', 'route'], registers: [registry],
    }),
    rejectedParts: new Counter({
      name: 'muxgate_rejected_parts_total', help: 'Multiplex bodies cut short by a bad or oversized part, by reason.',
      labelNames: ['source', 'reason'], registers: [registry],
    }),
    deliveries: new Counter({
      name: 'muxgate_deliveries_total', help: 'Part bodies written to a client stream.', registers: [registry],
      collect() {
        this.inc(hot.deliveries);
        hot.deliveries = 0;
      },
    }),
    deliveredBytes: new Counter({
      name: 'muxgate_delivered_bytes_total', help: 'Part body bytes written to client streams (before framing).', registers: [registry],
      collect() {
        this.inc(hot.deliveredBytes);
        hot.deliveredBytes = 0;
      },
    }),
    webSockets: new Gauge({
      name: 'muxgate_websockets', help: 'Open WebSockets (held streams whose client talks back).',
      labelNames: ['shard'], registers: [registry],
    }).labels(shardLabel),
    webSocketMessagesOut: new Counter({
      name: 'muxgate_websocket_messages_out_total', help: 'Messages written to WebSocket clients (parts; pings and closes not counted).',
      registers: [registry],
      collect() {
        this.inc(hot.webSocketMessagesOut);
        hot.webSocketMessagesOut = 0;
      },
    }),
    webSocketMessagesIn: new Counter({
      name: 'muxgate_websocket_messages_in_total',
      help: 'Messages from WebSocket clients, by what became of them: the backend\'s answer (routed, ignored, refused, failed), or dropped.',
      labelNames: ['result'], registers: [registry],
    }),
    webSocketCloses: new Counter({
      name: 'muxgate_websocket_closes_total', help: 'WebSockets closed, by close code (sent by muxgate or by the client).',
      labelNames: ['code'], registers: [registry],
    }),
    undeliverable: new Counter({
      name: 'muxgate_undeliverable_total', help: 'Part deliveries dropped, by reason (gone, invalid_token, other_node, shard_down).',
      labelNames: ['reason'], registers: [registry],
    }),
    slowConsumerDrops: new Counter({
      name: 'muxgate_slow_consumer_drops_total', help: 'Clients dropped for having more than MUX_MAX_BUFFERED_BYTES unsent.', registers: [registry],
    }),
    streamsEnded: new Counter({
      name: 'muxgate_streams_ended_total', help: 'Multiplexed responses ended, by reason.',
      labelNames: ['reason'], registers: [registry],
    }),
    routerBatchSize: new Histogram({
      name: 'muxgate_router_batch_parts', help: 'Parts per message sent to another shard.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers: [registry],
    }),
    pushToWrite: new Histogram({
      name: 'muxgate_push_to_write_seconds', help: 'From a part being parsed to its body being written to a client socket.',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    streamEvents: new Counter({
      name: 'muxgate_stream_events_total', help: 'Stream close events sent to the backend, by result (sent, failed, dropped).',
      labelNames: ['result'], registers: [registry],
    }),
    subscriptions: new Gauge({
      name: 'muxgate_channel_subscriptions', help: 'Channel subscriptions of the shard\'s held streams.',
      labelNames: ['shard'], registers: [registry],
    }).labels(shardLabel),
    channelDeliveries: new Counter({
      name: 'muxgate_channel_deliveries_total', help: 'Part bodies written to streams because of a channel they subscribe to.', registers: [registry],
      collect() {
        this.inc(hot.channelDeliveries);
        hot.channelDeliveries = 0;
      },
    }),
    historyReplays: new Counter({
      name: 'muxgate_channel_history_replays_total', help: 'Resuming streams, by whether the history still held what they missed (hit, miss).',
      labelNames: ['result'], registers: [registry],
    }),
    historyBytes: new Gauge({
      name: 'muxgate_channel_history_bytes', help: 'Memory the channel history of this node takes, as counted against MUX_CHANNEL_HISTORY_BYTES.',
      registers: [registry],
      collect() {
        this.set(hot.historyBytes);
      },
    }),
    historyEvictions: new Counter({
      name: 'muxgate_channel_history_evictions_total', help: 'Channel parts forgotten before their channel\'s count limit, by reason (bytes, age).',
      labelNames: ['reason'], registers: [registry],
    }),
    redisUp: new Gauge({
      name: 'muxgate_redis_up', help: 'Whether the shard\'s Redis connections are up (multi-node only).',
      labelNames: ['shard'], registers: [registry],
    }).labels(shardLabel),
    redisParts: new Counter({
      name: 'muxgate_redis_parts_total', help: 'Parts sent to or received from other nodes through Redis, by direction.',
      labelNames: ['direction'], registers: [registry],
    }),
    redisLatency: new Histogram({
      name: 'muxgate_redis_latency_seconds', help: 'From a part being parsed on one node to its arrival on another.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    eventLoopDelay: new Gauge({
      name: 'muxgate_event_loop_delay_seconds', help: 'How late the shard thread ran a timer due every 10 ms, p99 since the last scrape: 0 when idle.',
      labelNames: ['shard'], registers: [registry],
      collect() {
        // Node records the time between two runs of its timer, the interval included: without it, the lateness.
        // A timer runs up to a millisecond early (libuv counts the loop's time in whole milliseconds): that is 0.
        this.set(shardLabel, Math.max(0, loopDelay.percentile(99) - LOOP_SAMPLE_MS * 1e6) / 1e9);
        loopDelay.reset();
      },
    }),
  };
  // The shard's own V8 heap, read when scraped: prom-client's nodejs_heap_* are the main thread's only.
  const heapGauge = (name: string, help: string, read: () => number) => new Gauge({
    name, help, labelNames: ['shard'], registers: [registry],
    collect() {
      this.set(shardLabel, read());
    },
  });
  heapGauge('muxgate_heap_used_bytes', 'V8 heap of the shard thread: bytes in use by objects, live or not yet collected.',
    () => v8.getHeapStatistics().used_heap_size);
  heapGauge('muxgate_heap_total_bytes', 'V8 heap of the shard thread: bytes it holds from the system (all spaces).',
    () => v8.getHeapStatistics().total_heap_size);
  heapGauge('muxgate_heap_young_used_bytes', 'Young generation (V8 new space) of the shard thread: bytes in use.', () => newSpace().space_used_size);
  heapGauge('muxgate_heap_young_total_bytes', 'Young generation (V8 new space) of the shard thread: bytes it holds.', () => newSpace().space_size);
  // Known label values start at 0, so that rates and dashboards have data before the first event.
  for (const listener of ['public', 'push']) for (const cls of ['2xx', '4xx', '5xx']) metrics.requests.inc({ listener, class: cls }, 0);
  for (const kind of ['connect', 'timeout', 'bad_head', 'no_head']) metrics.fastcgiErrors.inc({ kind }, 0);
  for (const source of ['response', 'push']) {
    for (const route of ['local', 'remote', 'channel', 'node']) metrics.parts.inc({ source, route }, 0);
    for (const reason of [ERR_MALFORMED_MULTIPLEX, ERR_PART_TOO_LARGE, ERR_PART_HEADERS_TOO_LARGE, ERR_PUSH_TOO_LARGE]) {
      metrics.rejectedParts.inc({ source, reason }, 0);
    }
  }
  for (const reason of ['gone', 'invalid_token', 'other_node', 'shard_down', 'redis_down']) metrics.undeliverable.inc({ reason }, 0);
  for (const direction of ['sent', 'received']) metrics.redisParts.inc({ direction }, 0);
  metrics.redisUp.set(0);
  for (const reason of ['finished', 'client', 'timeout', 'closed', 'shutdown', 'overflow']) metrics.streamsEnded.inc({ reason }, 0);
  for (const result of ['sent', 'failed', 'dropped']) metrics.streamEvents.inc({ result }, 0);
  for (const result of ['hit', 'miss']) metrics.historyReplays.inc({ result }, 0);
  for (const reason of ['bytes', 'age']) metrics.historyEvictions.inc({ reason }, 0);
  metrics.subscriptions.set(0);
  for (const result of ['ok', 'failed', 'timeout']) metrics.tlsHandshakes.inc({ result }, 0);
  metrics.heldStreams.set(0);
  metrics.webSockets.set(0);
  for (const result of ['routed', 'ignored', 'refused', 'failed', 'dropped']) metrics.webSocketMessagesIn.inc({ result }, 0);
  for (const code of ['1000', '1001', '1006', '1008', '1009']) metrics.webSocketCloses.inc({ code }, 0);
  return metrics;
}

function newSpace(): HeapSpaceInfo {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!;
}

export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}
