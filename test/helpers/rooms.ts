// Readers and writers of test/php/room.php, and a run of sequential publishes through every shard with resumes in
// between, for the channel ordering tests of one node and of several.
import assert from 'node:assert/strict';
import { openStream, type OpenStream } from './fixtures.ts';
import { KeptConnection, RawHttp, decodeChunked } from './raw-http.ts';

export interface SseEvent { id?: string; event?: string; data?: string }

/** The SSE events a chunked stream has received so far. */
export function sseEvents(client: RawHttp): SseEvent[] {
  return decodeChunked(client.text).body.split('\n\n').filter((block) => block.trim() !== '').map((block) => {
    const event: SseEvent = {};
    for (const line of block.split('\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) event[line.slice(0, colon) as keyof SseEvent] = line.slice(colon + 1).trimStart();
    }
    return event;
  });
}

/** A reader of the room, resuming after `lastEventId` if given; resolves once its head has arrived. */
export function joinRoom(url: string, room: string, lastEventId?: string): Promise<OpenStream> {
  return openStream(url, `room=${room}`, { script: 'room.php', headers: lastEventId === undefined ? [] : [`Last-Event-ID: ${lastEventId}`] });
}

/** The shard index in a token (`<node>.<shard, base 36>.<random>`). */
export function shardOf(token: string): number {
  return parseInt(token.split('.')[1], 36);
}

/** Keep-alive connections, one on each of the node's shards (found by the tokens of their answers), by shard. */
export async function writersOnEveryShard(url: string, shards: number): Promise<{ byShard: KeptConnection[]; all: KeptConnection[] }> {
  const byShard: KeptConnection[] = [];
  const all: KeptConnection[] = [];
  for (let attempt = 0; attempt < shards * 4 && byShard.filter(Boolean).length < shards; attempt++) {
    const connection = await KeptConnection.open(url);
    all.push(connection);
    const { head, body } = await connection.request('POST', '/room.php?room=probe', 'probe');
    assert.equal(body, 'sent');
    byShard[shardOf(/\r\nX-Token: (\S+)\r\n/i.exec(head + '\r\n')![1])] ??= connection;
  }
  assert.equal(byShard.filter(Boolean).length, shards, 'a connection on every shard');
  return { byShard, all };
}

export interface Node {
  url: string;
  writers: KeptConnection[];
}

/**
 * Publishes `rounds` messages to the room one after another, each through the next writer of `route` (a node and
 * a shard), each sent only once the previous one was answered. Every `resumeEvery` rounds, while the publishing goes
 * on, a reader leaves and comes back on the next node with its Last-Event-ID, and a newcomer joins there with the
 * first message's id (its replay, of everything so far, keeps the sequencer busy). Every reader must get every
 * message from where it joined, in the order they were answered, once, with increasing ids.
 */
export async function publishInOrder(room: string, nodes: Node[], route: Array<[node: number, shard: number]>, rounds: number,
  resumeEvery: number): Promise<void> {
  const sent: string[] = [];
  // Each reader: its client, its node, and the index of the first message it is to get.
  type Reader = { client: RawHttp; node: number; from: number; how: string };
  const readers: Reader[] = [];
  for (let node = 0; node < nodes.length; node++) {
    for (let i = 0; i < 3; i++) readers.push({ client: (await joinRoom(nodes[node].url, room)).client, node, from: 0, how: 'live' });
  }
  const newcomers: Reader[] = [];
  const joins: Promise<void>[] = [];
  let firstId = '';
  for (let round = 0; round < rounds; round++) {
    if (round > 0 && round % resumeEvery === 0) {
      const which = (round / resumeEvery) % readers.length;
      const leaving = readers[which];
      // It leaves after the last message answered, and resumes from that message's id on the next node.
      const seen = sent.length - leaving.from;
      await leaving.client.waitFor(() => sseEvents(leaving.client).length >= seen, 10_000, `${seen} messages before leaving`);
      const events = sseEvents(leaving.client);
      firstId ||= events[0].id!;
      leaving.client.close();
      const node = (leaving.node + 1) % nodes.length;
      const from = sent.length;
      joins.push(joinRoom(nodes[node].url, room, events.at(-1)!.id).then(({ client }) => {
        readers[which] = { client, node, from, how: 'resumed' };
      }));
      joins.push(joinRoom(nodes[node].url, room, firstId).then(({ client }) => {
        newcomers.push({ client, node, from: 1, how: 'newcomer' });
      }));
    }
    const [node, shard] = route[round % route.length];
    const text = `s${round}`;
    const { body } = await nodes[node].writers[shard].request('POST', `/room.php?room=${room}`, text);
    assert.equal(body, 'sent');
    sent.push(text);
  }
  await Promise.all(joins);
  for (const reader of [...readers, ...newcomers]) {
    const expected = sent.slice(reader.from);
    const { client } = reader;
    const what = `the messages of a ${reader.how} reader on node ${reader.node}`;
    await client.waitFor(() => sseEvents(client).length >= expected.length, 10_000, `${expected.length} messages`).catch((error: Error) => {
      assert.fail(`${what}: ${error.message.slice(0, 200)}…; data: ${sseEvents(client).map((e) => e.data).join(' ')}`);
    });
    const events = sseEvents(client);
    assert.equal(events.map((e) => e.data).join(' '), expected.join(' '), what);
    const ids = events.map((e) => Number(e.id));
    assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), `${what}: ids increase: ${ids.join(' ')}`);
  }
  for (const reader of [...readers, ...newcomers]) reader.client.close();
}
