// A backend's CGI head → the head the client gets: relayed, or opening a multiplexed stream. Pure, table-tested.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { CgiHead } from '../src/protocol/cgi-response.ts';
import { hasNoBody, interpretRelayHead, interpretStreamHead, multiplexBoundaryOf } from '../src/protocol/response-head.ts';

const head = (headers: Array<[string, string]>, status = 200): CgiHead => ({ status, statusText: 'OK', headers });

test('responses without a body: HEAD, 204, 304', () => {
  assert.equal(hasNoBody('HEAD', 200), true);
  assert.equal(hasNoBody('GET', 204), true);
  assert.equal(hasNoBody('GET', 304), true);
  assert.equal(hasNoBody('GET', 200), false);
  assert.equal(hasNoBody('POST', 201), false);
});

test('a multiplexed head names its boundary; an ordinary one none; a multiplexed one without a usable boundary throws', () => {
  assert.equal(multiplexBoundaryOf(head([['Content-Type', 'application/x-multiplex; boundary=abc']])), 'abc');
  assert.equal(multiplexBoundaryOf(head([['content-type', 'text/html']])), null);
  assert.equal(multiplexBoundaryOf(head([])), null);
  assert.throws(() => multiplexBoundaryOf(head([['Content-Type', 'application/x-multiplex']])), { code: 'MUX_ERR_BAD_HEADER' });
});

test('a relayed head: hop-by-hop and Multiplex-* headers go, Content-Length frames it, once', () => {
  assert.deepEqual(interpretRelayHead(head([
    ['Content-Type', 'text/plain'], ['Connection', 'close'], ['Transfer-Encoding', 'chunked'], ['Multiplex-Hold', 'stream'],
    ['Content-Length', '5'], ['content-length', '5'], ['X-A', '1'],
  ])), { headers: ['Content-Type', 'text/plain', 'Content-Length', '5', 'X-A', '1'], contentLength: 5 });
  assert.deepEqual(interpretRelayHead(head([['X-A', '1']])), { headers: ['X-A', '1'], contentLength: null });
  // A 204 never carries one (RFC 9110 §8.6).
  assert.deepEqual(interpretRelayHead(head([['Content-Length', '0']], 204)), { headers: [], contentLength: null });
  for (const lengths of [['5', '6'], ['-1'], ['1e3'], ['1234567890123456'], [' 5x']]) {
    assert.throws(() => interpretRelayHead(head(lengths.map((value) => ['Content-Length', value]))), { code: 'MUX_ERR_BAD_CGI_HEAD' }, lengths.join());
  }
});

test('a stream head: the client type, hold, heartbeat, timeout and channels from Multiplex-*, framing muxgate\'s', () => {
  const stream = interpretStreamHead(head([
    ['Content-Type', 'application/x-multiplex; boundary=b'], ['Multiplex-Hold', 'stream'], ['Multiplex-Content-Type', 'text/event-stream'],
    ['Multiplex-Keep-Alive', '15'], ['Multiplex-Timeout', '2.5'], ['Multiplex-Channel', 'a, b; since=7'], ['Multiplex-Channel', 'c'],
    ['Content-Length', '9'], ['Connection', 'keep-alive'], ['X-Backend', 'php'], ['Multiplex-Other', 'x'],
  ]), true);
  assert.deepEqual(stream.headers, ['X-Backend', 'php', 'Content-Type', 'text/event-stream', 'Cache-Control', 'no-cache',
    'X-Accel-Buffering', 'no', 'Transfer-Encoding', 'chunked']);
  assert.equal(stream.hold, 'stream');
  assert.equal(stream.isChunked, true);
  assert.equal(stream.isEventStream, true);
  assert.equal(stream.keepAliveMs, 15_000);
  assert.deepEqual(stream.keepAliveData, Buffer.from(':\n\n'));
  assert.equal(stream.timeoutMs, 2500);
  assert.deepEqual(stream.channels.map((channel) => [channel.name, channel.since]), [['a', null], ['b', 7], ['c', null]]);
});

test('a stream head\'s defaults: plain text, not held, no heartbeat without data, no timeout of its own', () => {
  const stream = interpretStreamHead(head([['Cache-Control', 'private'], ['Multiplex-Keep-Alive', '10']]), false);
  assert.deepEqual(stream.headers, ['Cache-Control', 'private', 'Content-Type', 'text/plain; charset=utf-8']);
  assert.equal(stream.hold, 'none');
  assert.equal(stream.isChunked, false);
  assert.equal(stream.keepAliveData, null, 'a heartbeat needs data outside text/event-stream');
  assert.equal(stream.timeoutMs, -1);
  assert.deepEqual(stream.channels, []);
  // Held: the backend's own Cache-Control stands; a 204 gets no Transfer-Encoding (RFC 9112 §6.1).
  assert.deepEqual(interpretStreamHead(head([['Multiplex-Hold', 'response'], ['Cache-Control', 'max-age=0']], 204), true).headers,
    ['Cache-Control', 'max-age=0', 'Content-Type', 'text/plain; charset=utf-8', 'X-Accel-Buffering', 'no']);
});

test('a bad Multiplex-* value throws, naming the header', () => {
  for (const [name, value] of [['Multiplex-Hold', 'forever'], ['Multiplex-Timeout', '-1'], ['Multiplex-Keep-Alive', 'soon'], ['Multiplex-Channel', 'bad channel']]) {
    assert.throws(() => interpretStreamHead(head([[name, value]]), true), (error: Error & { code?: string }) => error.code === 'MUX_ERR_BAD_HEADER' && error.message.includes(name), name);
  }
});

test('property: no framing or Multiplex-* header of the backend reaches the client, and every other one does, in order', () => {
  const name = fc.constantFrom('X-A', 'Set-Cookie', 'Connection', 'Keep-Alive', 'Transfer-Encoding', 'TE', 'Trailer', 'Upgrade',
    'Proxy-Connection', 'Content-Length', 'Multiplex-Foo', 'Vary', 'Content-Type');
  const framing = /^(connection|keep-alive|transfer-encoding|te|trailer|upgrade|proxy-connection|content-length|content-type|multiplex-.*)$/i;
  fc.assert(fc.property(fc.array(fc.tuple(name, fc.constantFrom('1', 'v'))), fc.boolean(), (headers, isChunked) => {
    const sent = interpretStreamHead(head(headers), isChunked).headers;
    const passed = headers.filter(([n]) => !framing.test(n)).flat();
    assert.deepEqual(sent.slice(0, passed.length), passed);
    const ours = sent.slice(passed.length);
    assert.deepEqual(ours.filter((_, i) => i % 2 === 0), ['Content-Type', ...(isChunked ? ['Transfer-Encoding'] : [])]);
  }));
});
