// HEAD requests and bodiless statuses (RFC 9110 §9.3.2, §15.3.5, §15.4.5): the head alone, the connection kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PHP_ROOT, openStream, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp } from './helpers/raw-http.ts';

let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '1' });
});

after(async () => {
  assert.equal(await mux.stop(), 0);
  await fpm.stop();
});

/** Sends `first` then, on the same connection once its response has been read, a GET of /page.php. */
async function thenGet(first: string, isFirstComplete: (text: string) => boolean): Promise<{ first: string; second: string }> {
  const { host } = new URL(mux.url);
  const client = await RawHttp.open(mux.url, first.replaceAll('{host}', host));
  try {
    const text = await client.waitFor(isFirstComplete, 5000, 'the first response');
    client.socket.write(`GET /page.php HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    const all = await client.waitFor((t) => t.endsWith('a page of 24 characters\n'), 5000, 'the second response on the same connection');
    return { first: text, second: all.slice(text.length) };
  } finally {
    client.close();
  }
}

const headEnds = (text: string) => text.includes('\r\n\r\n');

test('HEAD of a page with a Content-Length: the head with that length, no body, the connection kept', async () => {
  const { first, second } = await thenGet('HEAD /page.php HTTP/1.1\r\nHost: {host}\r\n\r\n', headEnds);
  assert.match(first, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(first, /\r\ncontent-length: 24\r\n/i);
  assert.match(first, /\r\netag: "v1"\r\n/i);
  assert.ok(first.endsWith('\r\n\r\n'), `bytes after the head: ${JSON.stringify(first)}`);
  assert.match(second, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\na page of 24 characters\n$/);
  assert.ok(!mux.logs.some((l) => /shorter than its Content-Length/.test(String(l.msg))), 'HEAD was taken for a short body');
});

test('a 304 with the Content-Length of the page it validates: the head alone, the connection kept', async () => {
  const { first, second } = await thenGet('GET /page.php HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: "v1"\r\n\r\n', headEnds);
  assert.match(first, /^HTTP\/1\.1 304 Not Modified\r\n/);
  assert.match(first, /\r\netag: "v1"\r\n/i);
  assert.ok(first.endsWith('\r\n\r\n'));
  assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
});

test('a 204 carries neither a body nor a Content-Length (RFC 9110 §8.6), and the connection is kept', async () => {
  const { first, second } = await thenGet('GET /page.php?status=204 HTTP/1.1\r\nHost: {host}\r\n\r\n', headEnds);
  assert.match(first, /^HTTP\/1\.1 204 No Content\r\n/);
  assert.doesNotMatch(first, /content-length|transfer-encoding/i);
  assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
});

test('HEAD of a held multiplexed response: the head, then the response ends and its token is never live', async () => {
  const held = () => metricValue(mux.metricsUrl, 'muxgate_held_streams');
  const { first, second } = await thenGet('HEAD /stream.php?hold=stream&type=text/event-stream HTTP/1.1\r\nHost: {host}\r\n\r\n', headEnds);
  assert.match(first, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(first, /\r\ncontent-type: text\/event-stream\r\n/i);
  assert.ok(first.endsWith('\r\n\r\n'), `bytes after the head: ${JSON.stringify(first)}`);
  assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
  const token = /\r\nx-token: (\S+)\r\n/i.exec(first)![1];
  assert.deepEqual(await push(mux.pushUrl, [{ tokens: [token], body: 'late' }]), { parts: 1, deliveries: 0, gone: [token] });
  assert.equal(await held(), 0);
});

test('a multiplexed response with status 204: no body, no Transfer-Encoding, no stream, the connection kept', async () => {
  const { first, second } = await thenGet('GET /stream.php?hold=stream&status=204 HTTP/1.1\r\nHost: {host}\r\n\r\n', headEnds);
  assert.match(first, /^HTTP\/1\.1 204 No Content\r\n/);
  assert.doesNotMatch(first, /transfer-encoding|content-length/i);
  assert.ok(first.endsWith('\r\n\r\n'), `bytes after the head: ${JSON.stringify(first)}`);
  assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
  assert.equal(await metricValue(mux.metricsUrl, 'muxgate_held_streams'), 0);
});

test('GET of the same held response still holds it: HEAD changed nothing for GET', async () => {
  const { client } = await openStream(mux.url, 'hold=stream');
  try {
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_held_streams'), 1);
  } finally {
    client.close();
  }
});
