// WebSocket limits and bad input (docs/protocol.md §7.1, §7.4) against a real php-fpm running test/php/websocket.php:
// handshakes refused before the backend, a close code for every limit (and its close event), clients that do not
// answer pings, a shard killed with WebSockets on it, and random and damaged frames from a raw socket.
// FUZZ_RUNS sets the fuzz's runs (200 by default); FUZZ_SEED (and FUZZ_PATH) replay a failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { WebSocket, type ClientOptions } from 'ws';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startServer } from '../src/server.ts';
import { PHP_ROOT, ScriptLog, phpBackend, push, sendPush } from './helpers/fixtures.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { RawHttp } from './helpers/raw-http.ts';
import {
  OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, OPCODE_TEXT, RawWebSocket, clientFrame, closePayload, type ClientFrameOptions,
} from './helpers/raw-websocket.ts';
import { waitUntil } from './helpers/wait.ts';
import { envInteger } from './helpers/env.ts';
import { Waiters } from './helpers/waiters.ts';


const FUZZ_RUNS = envInteger('FUZZ_RUNS', 200);
/** MUX_WS_MAX_MESSAGE_BYTES here: small, so that the fuzz's lengths cross it too. */
const MAX_MESSAGE_BYTES = 1024;
const MAX_BUFFERED_BYTES = 65_536;
/** Generous for a busy CI machine: every wait ends on the event it waits for, well before. */
const WAIT_MS = 15_000;

/** A `ws` client of websocket.php: the messages it got, its pings, how it closed. */
class Client {
  readonly ws: WebSocket;
  readonly messages: string[] = [];
  pings = 0;
  /** The close code and reason it saw, once closed (1006: the connection dropped without a close frame). */
  closed: { code: number; reason: string } | null = null;
  readonly #waiters = new Waiters(() => this.closed !== null,
    () => `messages ${JSON.stringify(this.messages.slice(-5))}, pings ${this.pings}, closed ${JSON.stringify(this.closed)}`);

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.messages.push(isBinary ? `binary:${data.toString('hex')}` : data.toString('utf8'));
      this.#wake();
    });
    ws.on('ping', () => {
      this.pings++;
      this.#wake();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake();
    });
    ws.on('error', () => {});
  }

  /** Opens websocket.php?query and resolves with its token, told by the welcome message, once it has arrived. */
  static async open(base: string, query = '', options: ClientOptions = {}): Promise<{ client: Client; token: string }> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/websocket.php?${query}`, { ...options, perMessageDeflate: false });
    const client = new Client(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`the opening of websocket.php?${query} was answered ${res.statusCode}`)));
      ws.once('error', reject);
    });
    await client.waitFor(() => client.messages.length > 0, WAIT_MS, 'the welcome message');
    const token = /^welcome (\S+)$/.exec(client.messages[0])?.[1];
    assert.ok(token !== undefined, `the first message was ${JSON.stringify(client.messages[0])}`);
    return { client, token };
  }

  /** Resolves once the predicate holds; rejects after `timeoutMs`, or when the connection closed before. */
  waitFor(predicate: () => boolean, timeoutMs = WAIT_MS, what = 'the expected messages'): Promise<void> {
    return this.#waiters.waitFor(predicate, timeoutMs, what);
  }

  /** Resolves with the close code and reason once the connection has closed. */
  async waitForClose(timeoutMs = WAIT_MS): Promise<{ code: number; reason: string }> {
    await this.waitFor(() => this.closed !== null, timeoutMs, 'the close');
    return this.closed!;
  }

  #wake(): void {
    this.#waiters.wake();
  }
}

/** Opens websocket.php?query over a raw socket and resolves with its token once the welcome message has arrived. */
async function openRaw(base: string, query = ''): Promise<{ raw: RawWebSocket; token: string }> {
  const raw = await RawWebSocket.open(base, `/websocket.php?${query}`);
  await raw.waitFor(() => raw.texts().length > 0, WAIT_MS, 'the welcome message');
  const token = /^welcome (\S+)$/.exec(raw.texts()[0])?.[1];
  assert.ok(token !== undefined, `the first message was ${JSON.stringify(raw.texts()[0])}`);
  return { raw, token };
}

describe('WebSocket limits and bad input', () => {
  let fpm: PhpFpm;
  let mux: Muxgate;
  const events = new ScriptLog();

  before(async () => {
    fpm = await startPhpFpm({ documentRoot: PHP_ROOT, env: { EVENT_LOG: events.path } });
    mux = await startMuxgate({
      ...phpBackend(fpm), MUX_SHARDS: '2', MUX_EVENTS: 'close',
      MUX_WS_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES), MUX_MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES),
    });
  });
  after(async () => {
    await mux?.stop();
    await fpm?.stop();
    events.remove();
  });

  /** The close event websocket.php logged for the token: `close <token> <reason> <code>`. */
  async function closeEvent(token: string): Promise<{ reason: string; code: number }> {
    const line = await events.waitForLine((l) => l.startsWith(`close ${token} `), WAIT_MS, `the close event of ${token}`);
    const [, , reason, code] = line.split(' ');
    return { reason, code: Number(code) };
  }

  function messagesSeenBy(token: string): string[] {
    return events.lines().filter((line) => line.startsWith(`message ${token} `));
  }

  function closesCounted(code: number): Promise<number> {
    return metricValue(mux.metricsUrl, `muxgate_websocket_closes_total{code="${code}"}`).then((value) => value ?? 0);
  }

  describe('handshakes refused before the backend', () => {
    const refusals: Array<{ name: string; version?: string; headers: string[]; status: number; extra?: RegExp }> = [
      { name: 'no Sec-WebSocket-Key', headers: ['Sec-WebSocket-Version: 13'], status: 400 },
      { name: 'a Sec-WebSocket-Key that is not 16 bytes in base64', headers: ['Sec-WebSocket-Key: c2hvcnQ=', 'Sec-WebSocket-Version: 13'], status: 400 },
      { name: 'a Sec-WebSocket-Key that is not base64', headers: ['Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!', 'Sec-WebSocket-Version: 13'], status: 400 },
      {
        name: 'Sec-WebSocket-Version 8', headers: ['Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 8'], status: 426,
        extra: /\r\nSec-WebSocket-Version: 13\r\n/i,
      },
      { name: 'no Sec-WebSocket-Version', headers: ['Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='], status: 426, extra: /\r\nSec-WebSocket-Version: 13\r\n/i },
      { name: 'HTTP/1.0', version: '1.0', headers: ['Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13'], status: 400 },
    ];
    for (const refusal of refusals) {
      test(`an opening with ${refusal.name}: ${refusal.status}, and the backend never sees it`, async () => {
        const openings = () => events.lines().filter((line) => line.startsWith('open '));
        const openedBefore = openings().length;
        const refusedBefore = await metricValue(mux.metricsUrl, 'muxgate_requests_total{listener="public",class="4xx"}') ?? 0;
        const client = await RawHttp.get(`${mux.url}/websocket.php`, refusal.version ?? '1.1', ['Upgrade: websocket', 'Connection: Upgrade', ...refusal.headers]);
        try {
          const text = await client.waitForClose(WAIT_MS);
          assert.match(text, new RegExp(`^HTTP/1\\.1 ${refusal.status} `), text);
          if (refusal.extra !== undefined) assert.match(text, refusal.extra, text);
          await waitForMetric(mux.metricsUrl, 'muxgate_requests_total{listener="public",class="4xx"}', (n) => n === refusedBefore + 1, WAIT_MS);
          // A valid opening after it reaches the backend (the tests run one at a time): had the refused one reached it,
          // its line would be there too.
          const { client: marker, token } = await Client.open(mux.url);
          marker.ws.close();
          await events.waitForLine((line) => line.startsWith(`open ${token} `), WAIT_MS, 'the valid opening');
          assert.deepEqual(openings().slice(openedBefore), [`open ${token} websocket -`]);
        } finally {
          client.close();
        }
      });
    }

    test('an Upgrade other than websocket (h2c) is served as an ordinary request', async () => {
      const client = await RawHttp.get(`${mux.url}/websocket.php?sse=1`, '1.1', ['Upgrade: h2c', 'Connection: Upgrade, HTTP2-Settings', 'HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA']);
      try {
        const text = await client.waitFor((t) => /\r\n\r\n[\s\S]*welcome /.test(t), WAIT_MS, 'the held stream\'s first part');
        assert.match(text, /^HTTP\/1\.1 200 /, text);
        assert.match(text, /\r\nContent-Type: text\/event-stream/i, text);
        const token = /welcome (\S+)/.exec(text)![1];
        // The backend saw an ordinary request: no MULTIPLEX_TRANSPORT.
        assert.equal(await events.waitForLine((line) => line.startsWith(`open ${token} `)), `open ${token} - -`);
      } finally {
        client.close();
      }
    });
  });

  test('a message larger than MUX_WS_MAX_MESSAGE_BYTES: 1009, and the backend never sees it', async () => {
    const before = await closesCounted(1009);
    const { client, token } = await Client.open(mux.url);
    client.ws.send('small');
    await client.waitFor(() => client.messages.includes('echo: small'));
    client.ws.send('x'.repeat(MAX_MESSAGE_BYTES + 1));
    assert.equal((await client.waitForClose()).code, 1009);
    assert.deepEqual(await closeEvent(token), { reason: 'client', code: 1009 });
    // The close event comes after every message that reached the backend.
    assert.equal(messagesSeenBy(token).length, 1, messagesSeenBy(token).join('\n'));
    await waitForMetric(mux.metricsUrl, 'muxgate_websocket_closes_total{code="1009"}', (n) => n === before + 1, WAIT_MS);
  });

  test('a message of MUX_WS_MAX_MESSAGE_BYTES in fragments, a ping between them: one message, a pong; one byte more: 1009', async () => {
    const { raw, token } = await openRaw(mux.url);
    try {
      const half = MAX_MESSAGE_BYTES / 2;
      raw.send(clientFrame({ opcode: OPCODE_TEXT, fin: false, payload: 'a'.repeat(half) }));
      raw.send(clientFrame({ opcode: OPCODE_PING, payload: 'between' }));
      raw.send(clientFrame({ opcode: 0, fin: true, payload: 'b'.repeat(half) }));
      await raw.waitFor(() => raw.texts().length === 2, WAIT_MS, 'the echo of the whole message');
      assert.equal(raw.texts()[1], `echo: ${'a'.repeat(half)}${'b'.repeat(half)}`);
      // The ping is answered by muxgate, never forwarded.
      assert.deepEqual(raw.frames.filter((f) => f.opcode === OPCODE_PONG).map((f) => f.payload.toString()), ['between']);
      raw.send(clientFrame({ opcode: OPCODE_TEXT, fin: false, payload: 'a'.repeat(half) }));
      raw.send(clientFrame({ opcode: 0, fin: true, payload: 'b'.repeat(half + 1) }));
      await raw.waitFor(() => raw.closeCode() !== null, WAIT_MS, 'a close frame');
      assert.equal(raw.closeCode(), 1009);
      await raw.waitForClose(WAIT_MS);
      assert.deepEqual(await closeEvent(token), { reason: 'client', code: 1009 });
      assert.equal(messagesSeenBy(token).length, 1);
    } finally {
      raw.close();
    }
  });

  test('invalid UTF-8 in a text message: 1007, and the backend never sees it', async () => {
    const before = await closesCounted(1007);
    const { client, token } = await Client.open(mux.url);
    // ws sends the bytes as they are, in a text frame.
    client.ws.send(Buffer.from([0x68, 0x69, 0xc3, 0x28]), { binary: false });
    assert.equal((await client.waitForClose()).code, 1007);
    assert.deepEqual(await closeEvent(token), { reason: 'client', code: 1007 });
    assert.deepEqual(messagesSeenBy(token), []);
    await waitForMetric(mux.metricsUrl, 'muxgate_websocket_closes_total{code="1007"}', (n) => n === before + 1, WAIT_MS);
  });

  const protocolErrors: Array<{ name: string; frames: ClientFrameOptions[]; log: RegExp }> = [
    { name: 'an unmasked client frame', frames: [{ opcode: OPCODE_TEXT, payload: 'hello', isMasked: false }], log: /MASK must be set/ },
    { name: 'a reserved data opcode (3)', frames: [{ opcode: 0x3, payload: 'hello' }], log: /invalid opcode 3/ },
    { name: 'a reserved control opcode (0xB)', frames: [{ opcode: 0xb }], log: /invalid opcode 11/ },
    { name: 'RSV1 set without an extension', frames: [{ opcode: OPCODE_TEXT, rsv: 0b100, payload: 'hello' }], log: /RSV1 must be clear/ },
    { name: 'RSV2 and RSV3 set', frames: [{ opcode: OPCODE_TEXT, rsv: 0b011, payload: 'hello' }], log: /RSV2 and RSV3 must be clear/ },
    { name: 'a fragmented control frame', frames: [{ opcode: OPCODE_PING, fin: false, payload: 'p' }], log: /FIN must be set/ },
    { name: 'a control frame of 126 bytes', frames: [{ opcode: OPCODE_PING, payload: Buffer.alloc(126, 0x70) }], log: /invalid payload length 126/ },
    {
      name: 'a continuation frame with no message to continue', frames: [{ opcode: 0, payload: 'orphan' }], log: /invalid opcode 0/,
    },
    {
      name: 'a new message inside a fragmented one',
      frames: [{ opcode: OPCODE_TEXT, fin: false, payload: 'first' }, { opcode: OPCODE_TEXT, payload: 'second' }], log: /invalid opcode 1/,
    },
    { name: 'a close frame with a code no endpoint may send (1005)', frames: [{ opcode: OPCODE_CLOSE, payload: closePayload(1005) }], log: /invalid status code 1005/ },
    { name: 'a close frame of one byte', frames: [{ opcode: OPCODE_CLOSE, payload: Buffer.from([3]) }], log: /invalid payload length 1/ },
  ];
  for (const { name, frames, log } of protocolErrors) {
    test(`a protocol error from a raw client (${name}): 1002, and the backend never sees it`, async () => {
      const before = await closesCounted(1002);
      const { raw, token } = await openRaw(mux.url);
      try {
        raw.send(Buffer.concat(frames.map(clientFrame)));
        await raw.waitFor(() => raw.closeCode() !== null, WAIT_MS, 'a close frame');
        assert.equal(raw.closeCode(), 1002, raw.describe());
        // After its close frame for a protocol error, the server reads no more and ends the connection.
        await raw.waitForClose(WAIT_MS);
        assert.equal(raw.badFraming, null);
        assert.deepEqual(await closeEvent(token), { reason: 'client', code: 1002 });
        assert.deepEqual(messagesSeenBy(token), []);
        await waitForMetric(mux.metricsUrl, 'muxgate_websocket_closes_total{code="1002"}', (n) => n === before + 1, WAIT_MS);
        await mux.waitForLog((line) => line.msg === 'WebSocket closed on a client error' && log.test(String(line.err)), WAIT_MS);
      } finally {
        raw.close();
      }
    });
  }

  test('a slow consumer past MUX_MAX_BUFFERED_BYTES: no more writes, 1008, counted as overflow', async () => {
    const overflowsBefore = await metricValue(mux.metricsUrl, 'muxgate_streams_ended_total{reason="overflow"}') ?? 0;
    const closesBefore = await closesCounted(1008);
    const { client, token } = await Client.open(mux.url);
    // The client stops reading: its kernel buffers fill, then muxgate's.
    client.ws.pause();
    const body = 'z'.repeat(30_000);
    let delivered = 0;
    for (let i = 0; ; i++) {
      // Loopback buffers hold a few MiB: far fewer pushes than this fill them.
      assert.ok(i < 2000, `still delivered after ${i} pushes of ${body.length} bytes`);
      const answer = await push(mux.pushUrl, [{ tokens: [token], body: `${i} ${body}` }]);
      if (answer.gone.includes(token)) break;
      assert.equal(answer.deliveries, 1, JSON.stringify(answer));
      delivered++;
    }
    await waitForMetric(mux.metricsUrl, 'muxgate_streams_ended_total{reason="overflow"}', (n) => n === overflowsBefore + 1, WAIT_MS);
    await waitForMetric(mux.metricsUrl, 'muxgate_websocket_closes_total{code="1008"}', (n) => n === closesBefore + 1, WAIT_MS);
    assert.deepEqual(await closeEvent(token), { reason: 'overflow', code: 1008 });
    // Nothing more is written: a part pushed now is undeliverable.
    assert.deepEqual((await push(mux.pushUrl, [{ tokens: [token], body: 'after the overflow' }])).gone, [token]);
    // Reading again, the client gets what was written before the overflow, in order, then the close frame.
    client.ws.resume();
    assert.equal((await client.waitForClose()).code, 1008);
    const numbers = client.messages.slice(1).map((message) => Number(message.slice(0, message.indexOf(' '))));
    assert.deepEqual(numbers, Array.from({ length: delivered }, (_, i) => i));
  });

  test('a ping flood from a client that does not read: cut off, the pongs owed never pile up', async () => {
    const { raw, token } = await openRaw(mux.url);
    try {
      raw.socket.pause();
      // 2,000 pings owe 254 KB of pongs that cannot leave: ws cuts the connection at 60 pending.
      const ping = clientFrame({ opcode: OPCODE_PING, payload: Buffer.alloc(125, 0x70) });
      raw.send(Buffer.concat(Array.from({ length: 2000 }, () => ping)));
      assert.deepEqual(await closeEvent(token), { reason: 'client', code: 1006 });
      assert.deepEqual(messagesSeenBy(token), []);
    } finally {
      raw.close();
    }
    const { client } = await Client.open(mux.url);
    client.ws.send('after the flood');
    await client.waitFor(() => client.messages.includes('echo: after the flood'));
    client.ws.close();
  });

  test('a client that never answers pings is cut off without a close frame: reason timeout, code 1006', async () => {
    const before = await closesCounted(1006);
    const { client, token } = await Client.open(mux.url, 'ping=1', { autoPong: false });
    const { code } = await client.waitForClose();
    // ws reports 1006 when no close frame came.
    assert.equal(code, 1006);
    assert.ok(client.pings >= 1, `${client.pings} pings`);
    assert.deepEqual(await closeEvent(token), { reason: 'timeout', code: 1006 });
    await waitForMetric(mux.metricsUrl, 'muxgate_websocket_closes_total{code="1006"}', (n) => n === before + 1, WAIT_MS);
  });

  test('a raw client that never answers pings is cut off too, after a ping and without a close frame', async () => {
    const { raw, token } = await openRaw(mux.url, 'ping=1');
    try {
      await raw.waitForClose(WAIT_MS);
      assert.ok(raw.frames.some((frame) => frame.opcode === OPCODE_PING), raw.describe());
      assert.equal(raw.closeFrame(), undefined, raw.describe());
      assert.deepEqual(await closeEvent(token), { reason: 'timeout', code: 1006 });
    } finally {
      raw.close();
    }
  });

  test('a client that answers pings stays open across several ping intervals', async () => {
    // Pings every 2 s: room for a busy machine between a pong and the next ping's check.
    const { client, token } = await Client.open(mux.url, 'ping=2');
    try {
      await client.waitFor(() => client.pings >= 3, WAIT_MS * 2, 'three pings');
      assert.equal(client.closed, null);
      client.ws.send('still here');
      await client.waitFor(() => client.messages.includes('echo: still here'));
      assert.equal(events.lines().find((line) => line.startsWith(`close ${token} `)), undefined);
    } finally {
      client.ws.close();
    }
    assert.deepEqual(await closeEvent(token), { reason: 'client', code: 1005 });
  });

  describe('fuzz: random and damaged frames from a raw socket after a valid handshake', () => {
    /** Codes muxgate closes with when the client misbehaves: a protocol error, bad UTF-8, a message too big. */
    const ERROR_CODES = new Set([1002, 1007, 1009]);
    /** How long a case waits for more from the server before it ends: the server may wait for the rest of a frame. */
    const IDLE_MS = 150;

    /** Valid client frames: text and binary messages, fragmented ones, pings, pongs, a close. */
    const validFrame: fc.Arbitrary<ClientFrameOptions[]> = fc.oneof(
      fc.string({ maxLength: 40 }).map((text) => [{ opcode: OPCODE_TEXT, payload: `m ${text}` }]),
      fc.uint8Array({ maxLength: 300 }).map((bytes) => [{ opcode: OPCODE_BINARY, payload: Buffer.from(bytes) }]),
      fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })).map(([a, b]) => [
        { opcode: OPCODE_TEXT, fin: false, payload: `f ${a}` }, { opcode: OPCODE_PING, payload: 'mid' }, { opcode: 0, payload: b },
      ]),
      fc.uint8Array({ maxLength: 125 }).map((bytes) => [{ opcode: OPCODE_PING, payload: Buffer.from(bytes) }]),
      fc.uint8Array({ maxLength: 125 }).map((bytes) => [{ opcode: OPCODE_PONG, payload: Buffer.from(bytes) }]),
      fc.constantFrom(1000, 1001, 3000, 4999).map((code) => [{ opcode: OPCODE_CLOSE, payload: closePayload(code, 'bye') }]),
    );
    /** Any frame header muxgate may be sent, odd bits and lengths included, with a payload of its own. */
    const anyFrame: fc.Arbitrary<ClientFrameOptions> = fc.record({
      fin: fc.boolean(),
      rsv: fc.integer({ min: 0, max: 7 }),
      opcode: fc.integer({ min: 0, max: 15 }),
      payload: fc.uint8Array({ maxLength: MAX_MESSAGE_BYTES + 200 }).map((bytes) => Buffer.from(bytes)),
      isMasked: fc.boolean(),
    });
    type Damage = { kind: 'flip'; at: number; bit: number } | { kind: 'truncate'; at: number } | { kind: 'insert'; at: number; bytes: Uint8Array }
      | { kind: 'length'; length: number };
    const damage: fc.Arbitrary<Damage> = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
      fc.record({ kind: fc.constant('length' as const), length: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.constant(2 ** 53), fc.constant(2 ** 62)) }),
    );
    const input = fc.record({
      before: fc.array(validFrame, { maxLength: 3 }),
      bad: fc.oneof(
        anyFrame.map((frame) => clientFrame(frame)),
        fc.tuple(validFrame, damage).map(([frames, d]) => damaged(Buffer.concat(frames.map(clientFrame)), d)),
        fc.uint8Array({ minLength: 1, maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
      ),
      after: fc.array(validFrame, { maxLength: 2 }),
    });

    /**
     * The code of the first close frame in what the client sent (1005 when it has none), or null: the code muxgate
     * echoes (RFC 6455 §5.5.1) when every frame before it was valid. Frames are walked by their lengths alone.
     */
    function firstCloseCode(bytes: Buffer): number | null {
      let at = 0;
      while (at + 2 <= bytes.length) {
        const opcode = bytes[at] & 0x0f;
        const isMasked = (bytes[at + 1] & 0x80) !== 0;
        let length = bytes[at + 1] & 0x7f;
        at += 2;
        if (length === 126) {
          if (at + 2 > bytes.length) return null;
          length = bytes.readUInt16BE(at);
          at += 2;
        } else if (length === 127) {
          if (at + 8 > bytes.length) return null;
          length = Number(bytes.readBigUInt64BE(at));
          at += 8;
        }
        const mask = isMasked ? bytes.subarray(at, at + 4) : Buffer.alloc(4);
        if (isMasked) at += 4;
        if (opcode === OPCODE_CLOSE) {
          if (length < 2) return length === 0 ? 1005 : null;
          if (at + 2 > bytes.length) return null;
          return ((bytes[at] ^ mask[0]) << 8) | (bytes[at + 1] ^ mask[1]);
        }
        at += length;
      }
      return null;
    }

    function damaged(bytes: Buffer, d: Damage): Buffer {
      const out = Buffer.from(bytes);
      if (d.kind === 'flip') {
        out[d.at % out.length] ^= 1 << d.bit;
        return out;
      }
      if (d.kind === 'truncate') return out.subarray(0, d.at % out.length);
      if (d.kind === 'insert') return Buffer.concat([out.subarray(0, d.at % (out.length + 1)), d.bytes, out.subarray(d.at % (out.length + 1))]);
      // Lie about the first frame's length: 7 bits, or 16 or 64 beyond them.
      const head = out[1] & 0x80;
      if (d.length < 126) return Buffer.concat([out.subarray(0, 1), Buffer.from([head | d.length]), out.subarray(2)]);
      const field = d.length < 65_536 ? Buffer.alloc(3) : Buffer.alloc(9);
      field[0] = head | (field.length === 3 ? 126 : 127);
      if (field.length === 3) field.writeUInt16BE(d.length, 1);
      else field.writeBigUInt64BE(BigInt(d.length), 1);
      return Buffer.concat([out.subarray(0, 1), field, out.subarray(2)]);
    }

    test(`${FUZZ_RUNS} runs: the shard never crashes, every close frame muxgate sends has a code the protocol allows`, async (t) => {
      const parameters: fc.Parameters<[{ before: ClientFrameOptions[][]; bad: Buffer; after: ClientFrameOptions[][] }]> = { numRuns: FUZZ_RUNS };
      if (process.env.FUZZ_SEED) parameters.seed = Number(process.env.FUZZ_SEED);
      if (process.env.FUZZ_PATH) parameters.path = process.env.FUZZ_PATH;
      const codes = new Map<string, number>();
      await fc.assert(fc.asyncProperty(input, async ({ before, bad, after }) => {
        const { raw } = await openRaw(mux.url);
        try {
          const sent = Buffer.concat([...before.flat().map(clientFrame), bad, ...after.flat().map(clientFrame)]);
          raw.send(sent);
          await raw.closedOrIdle(IDLE_MS);
          assert.equal(raw.badFraming, null, raw.describe());
          const closes = raw.frames.filter((frame) => frame.opcode === OPCODE_CLOSE);
          assert.ok(closes.length <= 1, raw.describe());
          const code = raw.closeCode();
          codes.set(String(code), (codes.get(String(code)) ?? 0) + 1);
          if (code === null) return;
          // Else the client's own close, echoed.
          const echoed = firstCloseCode(sent);
          assert.ok(ERROR_CODES.has(code) || code === echoed, `close code ${code} (the client closed with ${echoed}); ${raw.describe()}`);
          // After its close frame, muxgate writes nothing more.
          assert.equal(raw.frames.at(-1)!.opcode, OPCODE_CLOSE, raw.describe());
        } finally {
          raw.close();
        }
      }), parameters);
      t.diagnostic(`close codes seen: ${JSON.stringify(Object.fromEntries(codes))}`);

      // The shards survived: a fresh WebSocket on each still works, and nothing restarted.
      const shards = new Set<string>();
      for (let i = 0; shards.size < 2; i++) {
        assert.ok(i < 8, `${i} fresh WebSockets all opened on shards ${[...shards]}`);
        const { client, token } = await Client.open(mux.url);
        shards.add(token.split('.')[1]);
        client.ws.send('after the fuzz');
        await client.waitFor(() => client.messages.includes('echo: after the fuzz'));
        client.ws.close();
      }
      assert.equal(await metricValue(mux.metricsUrl, 'muxgate_shard_restarts_total'), 0);
      assert.equal(mux.child.exitCode, null);
    });
  });
});

describe('a shard killed with WebSockets on it', () => {
  test('its WebSockets see the connection drop, those of the other shard keep receiving pushes, a new one opens', async () => {
    const fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
    const config = loadConfig({
      ...phpBackend(fpm), MUX_SHARDS: '2',
      MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', MUX_SHUTDOWN_GRACE: '1',
    });
    const server = await startServer(config, createLogger('silent'));
    const base = `http://127.0.0.1:${server.public.port}`;
    const pushUrl = `http://127.0.0.1:${server.push.port}/push`;
    const metricsUrl = `http://127.0.0.1:${server.metrics.port}/metrics`;
    const opened: Client[] = [];
    try {
      const clients = await Promise.all(Array.from({ length: 6 }, async () => {
        const { client, token } = await Client.open(base);
        opened.push(client);
        return { client, token, shard: Number(token.split('.')[1]) };
      }));
      const victims = clients.filter((c) => c.shard === 1);
      const survivors = clients.filter((c) => c.shard === 0);
      assert.ok(victims.length > 0 && survivors.length > 0, `shards ${clients.map((c) => c.shard)}`);

      const killedThread = server.shards.threadOf(1)!.threadId;
      await server.shards.threadOf(1)!.terminate();
      for (const victim of victims) assert.equal((await victim.client.waitForClose()).code, 1006);

      const tokens = clients.map((c) => c.token);
      const { answer } = await sendPush(pushUrl, [{ tokens: survivors.map((s) => s.token), body: 'still here' }]);
      assert.equal(answer.deliveries, survivors.length, JSON.stringify(answer));
      for (const survivor of survivors) {
        await survivor.client.waitFor(() => survivor.client.messages.at(-1) === 'still here');
        assert.equal(survivor.client.closed, null);
        survivor.client.ws.send('and talking');
        await survivor.client.waitFor(() => survivor.client.messages.at(-1) === 'echo: and talking');
      }

      await waitUntil(() => server.shards.isUp(1) && server.shards.threadOf(1)?.threadId !== killedThread, WAIT_MS, 'shard 1 to come back');
      assert.equal(await metricValue(metricsUrl, 'muxgate_shard_restarts_total'), 1);
      // The restarted shard takes the next client (it has the fewest connections) and is back in the router mesh.
      const { client: fresh, token } = await Client.open(base);
      opened.push(fresh);
      assert.equal(token.split('.')[1], '1');
      const after = await push(pushUrl, [{ tokens: [...tokens, token], body: 'welcome back' }]);
      assert.equal(after.deliveries, survivors.length + 1, JSON.stringify(after));
      assert.deepEqual(after.gone.sort(), victims.map((v) => v.token).sort());
      await fresh.waitFor(() => fresh.messages.at(-1) === 'welcome back');
      fresh.ws.send('hello');
      await fresh.waitFor(() => fresh.messages.at(-1) === 'echo: hello');
    } finally {
      for (const client of opened) client.ws.terminate();
      await server.stop();
      await fpm.stop();
    }
  });
});
