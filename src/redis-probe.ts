// Is Redis answering? For /readyz of a node that routes through it.

/** Resolves null when Redis answered PING within timeoutMs, else the reason. */
export async function probeRedis(url: string, timeoutMs: number): Promise<string | null> {
  // Loaded on the first probe: a node without Redis never pays for ioredis (a few MiB).
  const { Redis } = await import('ioredis');
  const client = new Redis(url, {
    lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (error) {
    return (error as Error).message;
  } finally {
    client.disconnect();
  }
}
