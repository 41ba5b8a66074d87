// The shard task: one per thread, owns its sockets and tokens for life; builds the parts below in dependency order
// (each one subscribes to what it depends on as it is built) and serves the main thread's control messages.
import module from 'node:module';
import { threadId } from 'node:worker_threads';
import type { ControlMessage, ShardInit, ShardReport } from '../src/shard-messages.ts';
import { createLogger } from '../src/log.ts';
import { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { Backend } from './backend.ts';
import { Gateway } from './gateway.ts';
import { HeldStreams } from './held-streams.ts';
import { HttpFront } from './http-front.ts';
import { createShardMetrics, type ShardMetrics } from './metrics.ts';
import { PushApi } from './push-api.ts';
import { partLimits } from './part-limits.ts';
import { Router } from './router.ts';
import { SEQUENCER } from './sequencer.ts';
import { ChannelLog } from './channel-log.ts';
import { StreamEvents } from './stream-events.ts';
import { WebSocketClients } from './websocket-clients.ts';
import { WebSocketUpgrade } from './websocket-upgrade.ts';
import { ResponsePartSink } from './response-part-sink.ts';
import type { RedisLink } from './redis-link.ts';

/** Warnings outside input can repeat are logged at most once per kind per interval, with a count (repeated-warnings.ts). */
const WARNING_INTERVAL_MS = 10_000;

/** ioredis and its dependencies take about 7 MiB of each thread's memory: a single node, without Redis, never loads them. */
async function openRedisLink(url: string, nodeId: string, shard: number, metrics: ShardMetrics, warnings: RepeatedWarnings): Promise<RedisLink> {
  const { RedisLink } = await import('./redis-link.ts');
  return new RedisLink(url, nodeId, shard, metrics, warnings);
}

export default async function runShard(init: ShardInit): Promise<string> {
  const { index, config, control } = init;
  const log = createLogger(config.logLevel, { shard: index }, config.logPretty);
  const metrics = createShardMetrics(index);
  const warnings = new RepeatedWarnings(log, WARNING_INTERVAL_MS);
  const backend = new Backend(init.backend, config.fastcgiKeepalive, () => metrics.fastcgiRetries.inc());
  const channelLog = index === SEQUENCER
    ? new ChannelLog({ maxParts: config.channelHistory, maxAgeMs: config.channelHistoryMs, maxBytes: config.channelHistoryBytes }, metrics, warnings)
    : null;
  const streams = new HeldStreams({ metrics, log, warnings, maxBufferedBytes: config.maxBufferedBytes, hasEventIds: config.channelHistory > 0 });
  const redis = config.redisUrl === null ? null : await openRedisLink(config.redisUrl, config.nodeId, index, metrics, warnings);
  const router = new Router({
    shard: index, nodeId: config.nodeId, shardCount: config.shards, streams, channelLog, redis,
    historyLength: config.channelHistory, historyAgeMs: config.channelHistoryMs, metrics, log, warnings,
  });
  const partSink = new ResponsePartSink(router, metrics, warnings);
  const events = config.events ? new StreamEvents(streams, backend, config, metrics, log, warnings, partSink) : null;
  const webSocketClients = new WebSocketClients({ config, backend, streams, router, partSink, metrics, log, warnings });
  const gateway = new Gateway({ config, shard: index, backend, streams, router, partSink, webSocketClients, metrics, log, warnings });
  const upgrade = new WebSocketUpgrade({ maxMessageBytes: config.maxWebSocketMessageBytes }, metrics, log, (req, res, opening) => gateway.open(req, res, opening));
  const pushApi = new PushApi(router, metrics, warnings, { secret: config.pushSecret, limits: partLimits(config), maxBodyBytes: config.maxPushBytes });
  const front = new HttpFront(config, index, new Int32Array(init.connectionCounts), { metrics, log, warnings }, init.tls, {
    public: (req, res) => gateway.handle(req, res),
    push: (req, res) => pushApi.handle(req, res),
    upgrade: (req, socket, head) => upgrade.handle(req, socket, head),
    http2: (req, res) => gateway.handleHttp2(req, res),
  });

  const { promise: shutdownRequested, resolve: requestShutdown } = Promise.withResolvers<void>();
  control.on('message', (message: ControlMessage) => {
    switch (message.type) {
      case 'socket':
        front.adopt(message.socket, message.listener);
        break;
      case 'tls':
        front.setTls(message.pair);
        log.debug({ serialNumber: message.pair.summary.serialNumber }, 'TLS certificate reloaded');
        break;
      case 'peer':
        router.setPeer(message.shard, message.port);
        break;
      case 'metrics':
        metrics.registry.getMetricsAsJSON().then((json) => {
          control.postMessage({ type: 'metrics', id: message.id, metrics: json } satisfies ShardReport);
        });
        break;
      case 'shutdown':
        requestShutdown();
        break;
      case 'stall':
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, message.ms);
        break;
    }
  });
  // This thread's modules, their types stripped, go to the compile cache (if on, src/main.ts) now rather than at exit,
  // which a shard killed or crashed never reaches: the next shards start without loading the type stripper.
  module.flushCompileCache();
  control.postMessage({ type: 'ready', shard: index, threadId } satisfies ShardReport);
  log.debug('shard ready');

  await shutdownRequested;
  streams.shutdown();
  await front.close(config.shutdownGraceMs);
  if (events !== null) await Promise.race([events.drained(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  streams.stop();
  channelLog?.stop();
  redis?.close();
  warnings.flush();
  control.close();
  log.debug('shard stopped');
  return `shard ${index} stopped`;
}
