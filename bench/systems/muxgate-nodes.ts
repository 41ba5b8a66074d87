// Several muxgate nodes sharing one Redis (MUX_REDIS_URL): the subscribers are spread over the nodes, the
// publisher pushes to the first, so every channel part crosses Redis to reach the others.
import type { RunningSystem } from './system.ts';
import { start as startNode, type MuxgateSystem } from './muxgate.ts';
import { startRedis } from '../../test/helpers/redis.ts';

export async function start(nodes: number, shardsPerNode: number): Promise<RunningSystem> {
  const redis = await startRedis();
  const running: MuxgateSystem[] = [];
  try {
    for (let i = 1; i <= nodes; i++) running.push(await startNode(shardsPerNode, { MUX_REDIS_URL: redis.url, MUX_NODE_ID: `node-${i}` }));
  } catch (error) {
    for (const node of running) await node.stop();
    await redis.stop();
    throw error;
  }
  const [first] = running;
  return {
    ...first,
    label: `muxgate, ${nodes} nodes × ${shardsPerNode} shard${shardsPerNode > 1 ? 's' : ''} (Redis)`,
    ports: running.map((node) => node.port),
    // Redis works for the nodes: its CPU counts as the server's.
    serverPids: () => [...running.flatMap((node) => node.serverPids()), redis.pid],
    warnings: () => running.flatMap((node) => node.warnings()),
    async stop() {
      for (const node of running) await node.stop();
      await redis.stop();
    },
  };
}
