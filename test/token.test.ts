// Tokens: unguessable, carrying their route, parsed strictly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mintToken, parseTokenRoute } from '../src/protocol/token.ts';

test('a token carries node and shard and 128 random bits, within the design limits', () => {
  const token = mintToken('node-A_1', 35);
  assert.match(token, /^node-A_1\.z\.[A-Za-z0-9_-]{22}$/);
  assert.ok(token.length <= 64);
  assert.deepEqual(parseTokenRoute(token), { nodeId: 'node-A_1', shard: 35 });
  assert.deepEqual(parseTokenRoute(mintToken('n', 1023)), { nodeId: 'n', shard: 1023 });
});

test('tokens do not repeat and their secrets use the whole alphabet evenly', () => {
  const seen = new Set<string>();
  const counts = new Map<string, number>();
  for (let i = 0; i < 20_000; i++) {
    const token = mintToken('n', 0);
    seen.add(token);
    // The first 21 characters carry 6 random bits each (the 22nd only 2).
    for (const char of token.slice(4, 25)) counts.set(char, (counts.get(char) ?? 0) + 1);
  }
  assert.equal(seen.size, 20_000);
  assert.equal(counts.size, 64);
  const expected = (20_000 * 21) / 64;
  for (const [char, count] of counts) assert.ok(Math.abs(count - expected) < expected * 0.1, `${char}: ${count}`);
});

test('guessing tokens within a shard finds none that is live', () => {
  const live = new Set(Array.from({ length: 10_000 }, () => mintToken('n', 0)));
  let hits = 0;
  for (let i = 0; i < 100_000; i++) if (live.has(mintToken('n', 0))) hits++;
  assert.equal(hits, 0);
});

test('strings muxgate could not have minted have no route', () => {
  const secret = 'A'.repeat(22);
  for (const bad of ['', 'x', `.0.${secret}`, `n..${secret}`, `n.0.${secret}x`, `n.0.${secret.slice(1)}`, `n.Z.${secret}`,
    `n.01.${secret}`, `n.-1.${secret}`, `n.sg.${secret}`, `n!.0.${secret}`, `${'n'.repeat(17)}.0.${secret}`, `n.zz.${secret}`]) {
    assert.equal(parseTokenRoute(bad), null, bad);
  }
});

test('localTokenShard agrees with parseTokenRoute on minted, foreign and broken tokens', async () => {
  const { localTokenShard } = await import('../src/protocol/token.ts');
  const samples = [mintToken('node1', 0), mintToken('node1', 35), mintToken('node1', 1023), mintToken('other', 3),
    `node1.01.${'A'.repeat(22)}`, `node1.zz.${'A'.repeat(22)}`, `node1.Z.${'A'.repeat(22)}`, `node1..${'A'.repeat(22)}`,
    `node1.1.${'A'.repeat(21)}`, 'node1.1', '', `node10.1.${'A'.repeat(22)}`];
  for (const token of samples) {
    const route = parseTokenRoute(token);
    const expected = route !== null && route.nodeId === 'node1' ? route.shard : -1;
    assert.equal(localTokenShard(token, 'node1.'), expected, token);
  }
});
