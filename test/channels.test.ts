// Channels: stateless rooms across shards, once-only delivery, push answers per channel,
// resume from history without gap or duplicate, and a model-checked property.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { PHP_ROOT, multiplexBody, openStream, phpBackend, push, sendPush } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import { joinRoom, publishInOrder, sseEvents, writersOnEveryShard } from './helpers/rooms.ts';

let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 30 });
  mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '3', MUX_CHANNEL_HISTORY: '5', MUX_LOG_LEVEL: 'info',
  });
});

after(async () => {
  await mux.stop();
  await fpm.stop();
});

async function say(room: string, text: string, query = ''): Promise<void> {
  const response = await fetch(`${mux.url}/room.php?room=${room}${query}`, { method: 'POST', body: text });
  assert.equal(await response.text(), 'sent');
}

test('a stateless PHP room: a message reaches exactly the room readers on every shard, once each', async () => {
  const readers = await Promise.all(Array.from({ length: 6 }, () => joinRoom(mux.url, 'alpha')));
  const others = await Promise.all(Array.from({ length: 3 }, () => joinRoom(mux.url, 'beta')));
  assert.equal(new Set(readers.map((r) => r.token.split('.')[1])).size, 3, 'readers on all three shards');
  await say('alpha', 'hello alpha');
  await say('alpha', 'second');
  for (const { client } of readers) {
    await client.waitFor(() => sseEvents(client).length >= 2, 5000, 'two messages');
    assert.deepEqual(sseEvents(client).map((e) => e.data), ['hello alpha', 'second']);
  }
  await say('beta', 'only beta');
  for (const { client } of others) {
    await client.waitFor(() => sseEvents(client).length >= 1);
    assert.deepEqual(sseEvents(client).map((e) => e.data), ['only beta']);
  }
  for (const { client } of readers) assert.equal(sseEvents(client).length, 2);
  for (const { client } of [...readers, ...others]) client.close();
});

test('a part naming a token and a channel reaches a stream subscribed to both once; the push counts per channel', async () => {
  const [a, b, c] = await Promise.all([joinRoom(mux.url, 'gamma'), joinRoom(mux.url, 'gamma'), joinRoom(mux.url, 'delta')]);
  const result = await push(mux.pushUrl, [
    { tokens: [a.token, c.token], channels: ['room-gamma', 'room-delta'], body: 'data: both\n\n' },
    { channels: ['room-gamma'], body: 'data: gamma only\n\n' },
  ]);
  assert.equal(result.parts, 2);
  assert.equal(result.deliveries, 5);
  assert.deepEqual(result.gone, []);
  assert.deepEqual(result.channels, { 'room-gamma': 4, 'room-delta': 1 });
  await a.client.waitFor(() => sseEvents(a.client).length >= 2);
  await b.client.waitFor(() => sseEvents(b.client).length >= 2);
  await c.client.waitFor(() => sseEvents(c.client).length >= 1);
  assert.deepEqual(sseEvents(a.client).map((e) => e.data), ['both', 'gamma only']);
  assert.deepEqual(sseEvents(c.client).map((e) => e.data), ['both']);
  for (const s of [a, b, c]) s.client.close();
});

test('Multiplex-Binary on a channel part pushed, and sent by the backend through the shards: SSE readers get the same bytes, resumes too; a bad value is rejected there', async () => {
  // Readers on every shard (connections go to the least loaded one, which the tests before may have left uneven).
  const readers = [];
  while (new Set(readers.map((r) => r.token.split('.')[1])).size < 3 && readers.length < 12) readers.push(await joinRoom(mux.url, 'binary'));
  assert.equal(new Set(readers.map((r) => r.token.split('.')[1])).size, 3, 'readers on all three shards');
  const pushed = await push(mux.pushUrl, [{ channels: ['room-binary'], binary: true, body: 'data: pushed\n\n' }]);
  assert.deepEqual(pushed, { parts: 1, deliveries: readers.length, gone: [], channels: { 'room-binary': readers.length } });
  await say('binary', 'from the backend', '&binary=yes');
  await say('binary', 'text', '&binary=0');
  const expected = (first: number) => `id: ${first}\ndata: pushed\n\nid: ${first + 1}\ndata: from the backend\n\nid: ${first + 2}\ndata: text\n\n`;
  for (const { client } of readers) {
    await client.waitFor(() => sseEvents(client).length >= 3, 5000, 'three messages');
    const first = Number(sseEvents(client)[0].id);
    assert.equal(decodeChunked(client.text).body, expected(first));
  }
  // From the history: the same bytes again.
  const firstId = Number(sseEvents(readers[0].client)[0].id);
  const again = await joinRoom(mux.url, 'binary', String(firstId - 1));
  await again.client.waitFor(() => sseEvents(again.client).length >= 3, 5000, 'the replay');
  assert.equal(decodeChunked(again.client.text).body, expected(firstId));

  // Neither true nor false: the body is rejected at that part, the parts before it stand.
  const rejected = await metricValue(mux.metricsUrl, 'muxgate_rejected_parts_total') ?? 0;
  const bad = await sendPush(mux.pushUrl, multiplexBody('PB', [{ channels: ['room-binary'], body: 'data: before\n\n' }]).replace(/--PB--\r\n$/, '') +
    '--PB\r\nMultiplex-Channel: room-binary\r\nMultiplex-Binary: maybe\r\n\r\ndata: never\n\n\r\n--PB--\r\n');
  assert.equal(bad.status, 400);
  assert.deepEqual({ code: bad.answer.code, parts: bad.answer.parts, deliveries: bad.answer.deliveries }, { code: 'MUX_ERR_MALFORMED_MULTIPLEX', parts: 1, deliveries: readers.length + 1 });
  assert.match(bad.answer.error!, /Multiplex-Binary: "maybe" is invalid/);
  const fromBackend = await fetch(`${mux.url}/room.php?room=binary&binary=maybe`, { method: 'POST', body: 'never' });
  assert.equal(await fromBackend.text(), '');
  await waitForMetric(mux.metricsUrl, 'muxgate_rejected_parts_total', (value) => value === rejected + 2);
  for (const { client } of [...readers, again]) {
    await client.waitFor(() => sseEvents(client).length >= 4, 5000, 'the part before the bad one');
    assert.deepEqual(sseEvents(client).map((e) => e.data), ['pushed', 'from the backend', 'text', 'before']);
  }
  for (const { client } of [...readers, again]) client.close();
});

test('resume: a reader that reconnects with Last-Event-ID gets exactly what it missed, in order, then live parts', async () => {
  const first = await joinRoom(mux.url, 'epsilon');
  await say('epsilon', 'm1');
  await say('epsilon', 'm2');
  await first.client.waitFor(() => sseEvents(first.client).length === 2);
  const lastId = sseEvents(first.client)[1].id!;
  assert.match(lastId, /^\d+$/);
  first.client.close();
  await say('epsilon', 'm3');
  await say('epsilon', 'm4');
  await say('epsilon', 'm5');
  const again = await joinRoom(mux.url, 'epsilon', lastId);
  await again.client.waitFor(() => sseEvents(again.client).length >= 3, 5000, 'the missed parts');
  await say('epsilon', 'm6');
  await again.client.waitFor(() => sseEvents(again.client).length >= 4, 5000, 'the live part');
  const seen = sseEvents(again.client);
  assert.deepEqual(seen.map((e) => e.data), ['m3', 'm4', 'm5', 'm6']);
  const ids = seen.map((e) => Number(e.id));
  assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), `ids increase: ${ids}`);
  assert.ok(ids[0] > Number(lastId));
  again.client.close();
});

test('resume beyond the history: the stream is told it missed parts', async () => {
  const first = await joinRoom(mux.url, 'zeta');
  await say('zeta', 'old');
  await first.client.waitFor(() => sseEvents(first.client).length === 1);
  const lastId = sseEvents(first.client)[0].id!;
  first.client.close();
  for (let i = 0; i < 7; i++) await say('zeta', `n${i}`);
  const again = await joinRoom(mux.url, 'zeta', lastId);
  await again.client.waitFor(() => sseEvents(again.client).length >= 6, 5000, 'the gap notice and the kept parts');
  const seen = sseEvents(again.client);
  assert.equal(seen[0].event, 'muxgate-gap');
  assert.deepEqual(JSON.parse(seen[0].data!), { since: Number(lastId) });
  assert.deepEqual(seen.slice(1).map((e) => e.data), ['n2', 'n3', 'n4', 'n5', 'n6']);
  again.client.close();
});

test('property: across shards, every live subscriber gets every part published after it subscribed, once, in order', async () => {
  type Op = { kind: 'subscribe'; channel: number } | { kind: 'unsubscribe'; pick: number } | { kind: 'publish'; channel: number };
  const op = fc.oneof(
    fc.record({ kind: fc.constant('subscribe' as const), channel: fc.integer({ min: 0, max: 2 }) }),
    fc.record({ kind: fc.constant('unsubscribe' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('publish' as const), channel: fc.integer({ min: 0, max: 2 }) }),
  );
  let run = 0;
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 25 }), async (ops: Op[]) => {
    run++;
    const live: Array<{ client: RawHttp; channel: number; expected: string[] }> = [];
    let message = 0;
    try {
      for (const step of ops) {
        if (step.kind === 'subscribe') {
          const { client } = await openStream(mux.url, `hold=stream&silent=1&channel=p${run}-${step.channel}`);
          live.push({ client, channel: step.channel, expected: [] });
        } else if (step.kind === 'unsubscribe' && live.length > 0) {
          live.splice(step.pick % live.length, 1)[0].client.close();
          // Unsubscribed once muxgate has seen the client go (a part racing the close may still be written).
          await waitForMetric(mux.metricsUrl, 'muxgate_channel_subscriptions', (n) => n === live.length);
        } else if (step.kind === 'publish') {
          const body = `<${++message}>`;
          const result = await push(mux.pushUrl, [{ channels: [`p${run}-${step.channel}`], body }]);
          const subscribers = live.filter((s) => s.channel === step.channel);
          assert.equal(result.deliveries, subscribers.length);
          for (const s of subscribers) s.expected.push(body);
        }
      }
      for (const s of live) {
        const expected = s.expected.join('');
        await s.client.waitFor((t) => decodeChunked(t).body.length >= expected.length, 5000, expected);
        assert.equal(decodeChunked(s.client.text).body, expected);
      }
    } finally {
      for (const s of live) s.client.close();
    }
  }), { numRuns: 15 });
});

test('order: 200 messages published one after another through every shard reach every reader in the order they were answered, resumes included', async () => {
  // History long enough for every resume; readers on every shard.
  const node = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '3', MUX_CHANNEL_HISTORY: '1000', MUX_LOG_LEVEL: 'info',
  });
  const writers = await writersOnEveryShard(node.url, 3);
  try {
    // Shard 0 numbers channel parts: a message through it right after one through another shard is the likeliest to overtake.
    await publishInOrder('order', [{ url: node.url, writers: writers.byShard }], [[0, 1], [0, 0], [0, 2], [0, 0]], 200, 20);
  } finally {
    for (const connection of writers.all) connection.close();
    await node.stop();
  }
});

/** The resident memory of a process, from /proc. */
function residentBytes(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

test('history memory levels off: 1 KB to each of 80,000 channels stays within the byte budget, and the gateway stops growing', async () => {
  const budget = 1 << 20;
  const node = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '2', MUX_CHANNEL_HISTORY: '100',
    MUX_CHANNEL_HISTORY_BYTES: String(budget), MUX_LOG_LEVEL: 'info',
  });
  try {
    const body = 'x'.repeat(1024);
    let channel = 0;
    const publish = async (pushes: number) => {
      for (let i = 0; i < pushes; i++) {
        await push(node.pushUrl, Array.from({ length: 1000 }, () => ({ channels: [`made-up-${channel++}`], body })));
        const held = await metricValue(node.metricsUrl, 'muxgate_channel_history_bytes');
        assert.ok(held !== undefined && held <= budget, `history bytes ${held} within the budget ${budget}`);
      }
    };
    const pid = node.child.pid!;
    await publish(4);
    const start = residentBytes(pid);
    await publish(38);
    const half = residentBytes(pid);
    await publish(38);
    const end = residentBytes(pid);
    const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
    // Without a budget, each half keeps 38 MB of bodies: the second half would grow as much as the first.
    assert.ok(end - half < 16 * 1048576, `RSS ${mib(start)}, after the first half ${mib(half)}, after the second ${mib(end)}`);
    await node.waitForLog((line) => String(line.msg).startsWith('channel history over its byte budget'));
    assert.ok(((await metricValue(node.metricsUrl, 'muxgate_channel_history_evictions_total{reason="bytes"}')) ?? 0) > 70_000);
  } finally {
    await node.stop();
  }
});
