// Tokens: `<node>.<shard>.<secret>`; the route is readable, the secret is 128 random bits.
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { randomFillSync } = process.getBuiltinModule('node:crypto');

export const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/;
export const MAX_SHARDS = 1024;

const SECRET_BYTES = 16;
const SECRET_CHARS = 22; // base64url of 16 bytes, no padding
const POOL_TOKENS = 256;

// One crypto call fills the randomness of 256 tokens.
const pool = Buffer.allocUnsafe(SECRET_BYTES * POOL_TOKENS);
let poolOffset = pool.length;

export function mintToken(nodeId: string, shard: number): string {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const secret = pool.toString('base64url', poolOffset, poolOffset + SECRET_BYTES);
  poolOffset += SECRET_BYTES;
  return `${nodeId}.${shard.toString(36)}.${secret}`;
}

export interface TokenRoute {
  nodeId: string;
  shard: number;
}

/** The route a token names, or null when the string is not a token muxgate could have minted. */
export function parseTokenRoute(token: string): TokenRoute | null {
  const firstDot = token.indexOf('.');
  if (firstDot < 1) return null;
  const secondDot = token.indexOf('.', firstDot + 1);
  if (secondDot < 0 || token.length - secondDot - 1 !== SECRET_CHARS) return null;
  const nodeId = token.slice(0, firstDot);
  if (!NODE_ID_PATTERN.test(nodeId)) return null;
  const shardText = token.slice(firstDot + 1, secondDot);
  const shard = parseInt(shardText, 36);
  if (!(shard >= 0 && shard < MAX_SHARDS) || shard.toString(36) !== shardText) return null;
  return { nodeId, shard };
}

/**
 * The shard of a token minted by the node whose prefix (`<node id>.`) is given, or -1: the hot-path
 * form of parseTokenRoute, without allocating.
 */
export function localTokenShard(token: string, nodePrefix: string): number {
  if (!token.startsWith(nodePrefix)) return -1;
  const start = nodePrefix.length;
  let shard = 0;
  let at = start;
  for (; at < token.length; at++) {
    const code = token.charCodeAt(at);
    if (code === 46) break; // '.'
    const digit = code >= 48 && code <= 57 ? code - 48 : code >= 97 && code <= 122 ? code - 87 : -1;
    if (digit < 0) return -1;
    shard = shard * 36 + digit;
  }
  const digits = at - start;
  if (digits === 0 || (digits > 1 && token.charCodeAt(start) === 48) || shard >= MAX_SHARDS) return -1;
  return token.length - at - 1 === SECRET_CHARS ? shard : -1;
}
