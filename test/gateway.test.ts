// The gateway end to end: real php-fpm behind muxgate with 4 shards, real sockets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { PHP_ROOT, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import { waitUntil } from './helpers/wait.ts';

let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 30, env: { CHAT_STATE_DIR: mkdtempSync(join(tmpdir(), 'chat-')) } });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '4' });
});

after(async () => {
  assert.equal(await mux.stop(), 0);
  await fpm.stop();
});

test('the mod_multiplex chat: one sender feeds 10 readers spread over the shards', async () => {
  const readers = await Promise.all(Array.from({ length: 10 }, () => RawHttp.get(`${mux.url}/chat.php`)));
  await Promise.all(readers.map((r) => r.waitFor((t) => decodeChunked(t).body === 'welcome\n', 5000, 'welcome')));
  const metrics = await (await fetch(mux.metricsUrl)).text();
  const busyShards = [...metrics.matchAll(/^muxgate_held_streams\{shard="(\d)"\} (\d+)/gm)].filter((m) => Number(m[2]) > 0);
  assert.ok(busyShards.length >= 3, `readers on ${busyShards.length} shards:\n${busyShards.join('\n')}`);

  const reply = await fetch(`${mux.url}/chat.php`, { method: 'POST', body: 'hello, readers' });
  assert.equal(reply.status, 200);
  assert.equal(reply.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(await reply.text(), 'sent to 10 readers\n');
  await Promise.all(readers.map((r) => r.waitFor((t) => decodeChunked(t).body === 'welcome\nhello, readers\n', 5000, 'the message')));
  for (const reader of readers) reader.close();
});

test('a client cannot choose its token or send Multiplex-* headers to the backend', async () => {
  const response = await fetch(`${mux.url}/echo.php?a=1`, {
    headers: { 'Multiplex-Token': 'evil.0.xxxxxxxxxxxxxxxxxxxxxx', 'Multiplex-Hold': 'stream', 'X-Custom': 'yes' },
  });
  const { server } = await response.json() as { server: Record<string, string> };
  assert.notEqual(server.MULTIPLEX_TOKEN, 'evil.0.xxxxxxxxxxxxxxxxxxxxxx');
  assert.match(server.MULTIPLEX_TOKEN, /^[A-Za-z0-9_-]{1,16}\.[0-9a-z]+\.[A-Za-z0-9_-]{22}$/);
  assert.equal(server.HTTP_MULTIPLEX_TOKEN, undefined);
  assert.equal(server.HTTP_MULTIPLEX_HOLD, undefined);
  assert.equal(server.HTTP_X_CUSTOM, 'yes');
  assert.equal(server.QUERY_STRING, 'a=1');
  assert.equal(server.REQUEST_URI, '/echo.php?a=1');
  assert.equal(server.SCRIPT_FILENAME, join(PHP_ROOT, 'echo.php'));
  assert.equal(server.SERVER_SOFTWARE, 'muxgate');
});

test('an absolute-form target reaches the backend as its path, with the target\'s authority as the host (RFC 9112 §3.2.2)', async () => {
  const client = await RawHttp.open(mux.url, 'GET http://evil.example:99/echo.php?a=1 HTTP/1.1\r\nHost: muxgate.example\r\nConnection: close\r\n\r\n');
  const text = await client.waitForClose();
  assert.match(text, /^HTTP\/1\.1 200 /);
  const { server } = JSON.parse(decodeChunked(text).body) as { server: Record<string, string> };
  assert.equal(server.REQUEST_URI, '/echo.php?a=1');
  assert.equal(server.DOCUMENT_URI, '/echo.php');
  assert.equal(server.SCRIPT_NAME, '/echo.php');
  assert.equal(server.QUERY_STRING, 'a=1');
  assert.equal(server.SCRIPT_FILENAME, join(PHP_ROOT, 'echo.php'));
  assert.equal(server.HTTP_HOST, 'evil.example:99');
  assert.equal(server.SERVER_NAME, 'evil.example');

  for (const target of ['ftp://evil.example/echo.php', 'http://user@evil.example/echo.php', 'echo.php']) {
    const refused = await RawHttp.open(mux.url, `GET ${target} HTTP/1.1\r\nHost: muxgate.example\r\n\r\n`);
    assert.match(await refused.waitForClose(), /^HTTP\/1\.1 400 /, target);
  }
});

test('request bodies reach the backend whole, with Content-Length or chunked', async () => {
  const body = Buffer.alloc(3_000_000, 'x');
  body.write('end', body.length - 3);
  const md5 = createHash('md5').update(body).digest('hex');
  const sized = await (await fetch(`${mux.url}/echo.php`, { method: 'POST', body })).json() as { bodyLength: number; bodyMd5: string };
  assert.deepEqual([sized.bodyLength, sized.bodyMd5], [body.length, md5]);
  const stream = new ReadableStream({
    start(controller) {
      for (let at = 0; at < body.length; at += 500_000) controller.enqueue(body.subarray(at, at + 500_000));
      controller.close();
    },
  });
  const chunked = await (await fetch(`${mux.url}/echo.php`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit)).json() as { bodyLength: number; bodyMd5: string };
  assert.deepEqual([chunked.bodyLength, chunked.bodyMd5], [body.length, md5]);
});

test('no hold: the response ends with the backend body, parts to its own token form the body', async () => {
  const response = await fetch(`${mux.url}/stream.php?status=201`);
  assert.equal(response.status, 201);
  assert.equal(response.headers.get('x-backend'), 'php');
  assert.equal(response.headers.get('x-accel-buffering'), null);
  assert.equal(await response.text(), `token=${response.headers.get('x-token')}\n`);
});

test('hold stream: open after the backend is done, fed by pushes, ended by Multiplex-Close with a final chunk', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&type=text/event-stream');
  assert.match(client.text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(client.text, /\r\nContent-Type: text\/event-stream\r\n/i);
  assert.match(client.text, /\r\nCache-Control: no-cache\r\n/i);
  assert.match(client.text, /\r\nX-Accel-Buffering: no\r\n/i);
  assert.match(client.text, /\r\nTransfer-Encoding: chunked\r\n/i);
  assert.equal((await push(mux.pushUrl, [{ tokens: [token], body: 'data: one\n\n' }])).deliveries, 1);
  await client.waitFor((t) => decodeChunked(t).body.endsWith('data: one\n\n'));
  const result = await push(mux.pushUrl, [{ tokens: [token], body: 'data: last\n\n', close: true }]);
  assert.deepEqual(result, { parts: 1, deliveries: 1, gone: [] });
  await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'the final chunk');
  assert.ok(decodeChunked(client.text).body.endsWith('data: one\n\ndata: last\n\n'));
  assert.deepEqual((await push(mux.pushUrl, [{ tokens: [token], body: 'late' }])).gone, [token]);
  client.close();
});

test('hold response (long-poll): the first part ends the response', async () => {
  const { client, token } = await openStream(mux.url, 'hold=response&silent=1');
  assert.equal((await push(mux.pushUrl, [{ tokens: [token], body: 'the answer' }])).deliveries, 1);
  await client.waitFor((t) => decodeChunked(t).isComplete, 5000, 'the final chunk');
  assert.equal(decodeChunked(client.text).body, 'the answer');
  client.close();
});

/** Whether muxgate has read all the client sent: none of it unacknowledged on the client's side, none unread on muxgate's. */
function hasReadAll(client: RawHttp): boolean {
  const { localPort, remotePort } = client.socket;
  // Recv-Q and Send-Q of one TCP connection, seen from the side whose port is `from`.
  const queues = (from: number, to: number) =>
    execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${from} and dport = :${to} )`], { encoding: 'utf8' }).trim().split(/\s+/);
  const [, unacknowledged] = queues(localPort!, remotePort!);
  const [unread] = queues(remotePort!, localPort!);
  return unacknowledged === '0' && unread === '0';
}

test('a connection serves its next requests once its long-poll ends, a request pipelined meanwhile included', async () => {
  const { client, token } = await openStream(mux.url, 'hold=response&silent=1');
  // Sent while the stream is held, and read by muxgate then: answered after it, on the same connection.
  client.socket.write(`GET /echo.php?second=1 HTTP/1.1\r\nHost: ${new URL(mux.url).host}\r\n\r\n`);
  await waitUntil(() => hasReadAll(client), 5000, 'muxgate to read the pipelined request');
  assert.doesNotMatch(client.text, /second=1/);
  assert.equal((await push(mux.pushUrl, [{ tokens: [token], body: 'the answer' }])).deliveries, 1);
  await client.waitFor((t) => /second=1.*\}(\r\n0\r\n\r\n)?$/s.test(t), 5000, 'the pipelined answer');
  assert.equal(decodeChunked(client.text.slice(0, client.text.indexOf('HTTP/1.1 200', 10))).body, 'the answer');
  // And one more, sent after both answers.
  const before = client.text.length;
  client.socket.write(`GET /echo.php?third=1 HTTP/1.1\r\nHost: ${new URL(mux.url).host}\r\n\r\n`);
  await client.waitFor((t) => /third=1.*\}(\r\n0\r\n\r\n)?$/s.test(t.slice(before)), 5000, 'the third answer');
  assert.equal(client.hasClosed, false);
  client.close();
});

test('a reader that keeps up is not dropped when one push carries more than MUX_MAX_BUFFERED_BYTES for it', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&silent=1');
  // 3 × 600 KiB in one push, handled within one or two turns: more than the 1 MiB a slow consumer may leave unread.
  const bodies = ['x', 'y', 'z'].map((letter) => letter.repeat(600 * 1024));
  const result = await push(mux.pushUrl, bodies.map((body) => ({ tokens: [token], body })));
  assert.equal(result.deliveries, 3);
  await client.waitFor((t) => decodeChunked(t).body.endsWith('z'.repeat(600 * 1024)), 10_000, 'all three parts');
  assert.equal(decodeChunked(client.text).body, bodies.join(''));
  assert.equal(client.hasClosed, false);
  client.close();
});

test('keep-alive data is written when the stream is idle', async () => {
  const { client } = await openStream(mux.url, 'hold=stream&type=text/event-stream&keepalive=1');
  await client.waitFor((t) => decodeChunked(t).body.includes(':\n\n'), 4000, 'the default SSE heartbeat');
  client.close();
  const custom = await openStream(mux.url, `hold=stream&keepalive=${encodeURIComponent('1; data="ping\\n"')}`);
  await custom.client.waitFor((t) => decodeChunked(t).body.includes('ping\n'), 4000, 'the custom heartbeat');
  custom.client.close();
});

test('Multiplex-Timeout ends a held stream with a final chunk', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream&timeout=0.5');
  await client.waitFor((t) => decodeChunked(t).isComplete, 4000, 'the final chunk');
  assert.deepEqual((await push(mux.pushUrl, [{ tokens: [token], body: 'x' }])).gone, [token]);
  client.close();
});

test('an HTTP/1.0 client gets a close-delimited held stream', async () => {
  const { client, token } = await openStream(mux.url, 'hold=stream', { version: '1.0' });
  assert.doesNotMatch(client.text, /Transfer-Encoding/i);
  await push(mux.pushUrl, [{ tokens: [token], body: 'raw bytes' }]);
  await client.waitFor((t) => t.endsWith('raw bytes'));
  await push(mux.pushUrl, [{ tokens: [token], body: '!', close: true }]);
  const text = await client.waitForClose();
  assert.ok(text.endsWith(`token=${token}\nraw bytes!`));
});
