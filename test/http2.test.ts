// HTTP/2 on the public listener (ALPN `h2` over TLS) with node:http2's client: requests through php-fpm with the params
// nginx gives, held streams as HTTP/2 streams (push by token and channel, several on one connection, close events), the
// stream cap, the slow-consumer rule per stream and per connection, streams reset in a loop, GOAWAY at shutdown, metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { PHP_ROOT, ScriptLog, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue, waitForMetric, type Muxgate } from './helpers/muxgate.ts';
import { TestCa } from './helpers/tls-certs.ts';
import { Http2Exchange as Exchange } from './helpers/http2-exchange.ts';

const MAX_STREAMS = 8;
const MAX_BUFFERED_BYTES = 32_768;
const { NGHTTP2_CANCEL } = http2.constants;

const ca = new TestCa();
const leaf = ca.leaf('h2', '2B01');
const eventLog = new ScriptLog();
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8, env: { EVENT_LOG: eventLog.path } });
  mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '2', MUX_EVENTS: 'close', MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile,
    MUX_H2_MAX_STREAMS: String(MAX_STREAMS), MUX_MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES),
  });
});

after(async () => {
  await mux?.stop();
  await fpm?.stop();
  eventLog.remove();
  ca.remove();
});

/** An HTTP/2 connection to muxgate, trusting the test CA; `settings` are the client's own (its flow-control window). */
async function connect(url = mux.url, settings: http2.Settings = {}): Promise<ClientHttp2Session> {
  const session = http2.connect(url, { ca: ca.pem, servername: 'localhost', settings });
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  }).catch((error: unknown) => {
    session.destroy();
    throw error;
  });
  assert.equal(session.alpnProtocol, 'h2');
  return session;
}

/** The promise's value, or a clear failure after timeoutMs. */
async function within<T>(promise: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function get(session: ClientHttp2Session, path: string): Exchange {
  return new Exchange(session, { ':path': path });
}

async function json(exchange: Exchange): Promise<{ server: Record<string, string>; bodyLength: number }> {
  const head = await exchange.head;
  await exchange.waitFor(() => exchange.hasEnded, 'the whole body');
  assert.equal(head[':status'], 200, exchange.text);
  return JSON.parse(exchange.text);
}

test('a GET over HTTP/2: the params nginx gives (HTTP/2.0, HTTPS, :path, :authority as HTTP_HOST), no pseudo-headers as HTTP_*', async () => {
  const session = await connect();
  try {
    const exchange = get(session, '/echo.php?a=1&b=2');
    const { server } = await json(exchange);
    const { port } = new URL(mux.url);
    assert.equal(server.SERVER_PROTOCOL, 'HTTP/2.0');
    assert.equal(server.HTTPS, 'on');
    assert.equal(server.REQUEST_SCHEME, 'https');
    assert.equal(server.REQUEST_METHOD, 'GET');
    assert.equal(server.REQUEST_URI, '/echo.php?a=1&b=2');
    assert.equal(server.QUERY_STRING, 'a=1&b=2');
    assert.equal(server.SCRIPT_NAME, '/echo.php');
    assert.equal(server.HTTP_HOST, `localhost:${port}`);
    assert.match(server.MULTIPLEX_TOKEN, /^[A-Za-z0-9_.-]{20,64}$/);
    assert.deepEqual(Object.keys(server).filter((name) => name.startsWith('HTTP_:') || name.startsWith(':')), []);
    const head = await exchange.head;
    assert.equal(head['content-type'], 'application/json');
  } finally {
    session.close();
  }
});

test('a POST over HTTP/2 streams its body to the backend, with a Content-Length or without one', async () => {
  const session = await connect();
  try {
    const body = Buffer.alloc(200_000, 'x');
    const declared = await json(new Exchange(session, { ':method': 'POST', ':path': '/echo.php', 'content-length': String(body.length) }, body));
    assert.equal(declared.server.SERVER_PROTOCOL, 'HTTP/2.0');
    assert.equal(declared.server.CONTENT_LENGTH, String(body.length));
    assert.equal(declared.bodyLength, body.length);
    const undeclared = await json(new Exchange(session, { ':method': 'POST', ':path': '/echo.php' }, 'hello'));
    assert.equal(undeclared.server.CONTENT_LENGTH, '5');
    assert.equal(undeclared.bodyLength, 5);
  } finally {
    session.close();
  }
});

test('a request muxgate refuses over HTTP/2 gets its status without Connection, and the connection serves on', async () => {
  const session = await connect();
  try {
    // Declared larger than MUX_MAX_REQUEST_BYTES (8 MiB): refused before the backend, as over HTTP/1.1.
    const refused = session.request({ ':method': 'POST', ':path': '/echo.php', 'content-length': String(1 << 30) }, { endStream: false });
    refused.on('error', () => {});
    let text = '';
    refused.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; });
    const [head] = await within(Promise.all([
      new Promise<IncomingHttpHeaders>((resolve) => refused.once('response', resolve)),
      new Promise<void>((resolve) => refused.once('end', resolve)),
    ]), 'the refusal');
    assert.equal(head[':status'], 413);
    assert.equal(head.connection, undefined);
    assert.equal(text, '413 Payload Too Large\n');
    refused.close();
    const { server } = await json(get(session, '/echo.php'));
    assert.equal(server.SERVER_PROTOCOL, 'HTTP/2.0');
  } finally {
    session.close();
  }
});

test('a held SSE stream over HTTP/2 gets parts pushed to its token and its channel as DATA, and Multiplex-Close ends it with a close event', async () => {
  const session = await connect();
  try {
    const held = get(session, '/stream.php?hold=stream&type=text/event-stream&channel=h2-room');
    const token = await held.token();
    const head = await held.head;
    assert.equal(head['content-type'], 'text/event-stream');
    assert.equal(head['transfer-encoding'], undefined);
    await held.waitFor((text) => text.includes(`token=${token}\n`), 'the stream\'s own part');
    await push(mux.pushUrl, [{ tokens: [token], body: 'data: by-token\n\n' }]);
    await held.waitFor((text) => text.includes('data: by-token\n\n'), 'the part pushed to the token');
    await push(mux.pushUrl, [{ channels: ['h2-room'], body: 'data: by-channel\n\n' }]);
    await held.waitFor((text) => text.includes('data: by-channel\n\n'), 'the part pushed to the channel');
    // No chunk framing: the parts are the DATA frames' payloads, byte for byte.
    assert.equal(held.text, `token=${token}\ndata: by-token\n\ndata: by-channel\n\n`);
    await push(mux.pushUrl, [{ tokens: [token], close: true, body: 'data: bye\n\n' }]);
    assert.equal(await within(held.closed, 'the stream closed'), 0, 'ended with END_STREAM, not reset');
    assert.ok(held.hasEnded);
    assert.ok(held.text.endsWith('data: bye\n\n'));
    await eventLog.waitForLine((line) => line.startsWith(`close ${token} closed `), 5000, 'the close event');
  } finally {
    session.close();
  }
});

test('two held streams share one HTTP/2 connection: both get a channel part; metrics count it as h2 with its streams', async () => {
  const session = await connect();
  try {
    const one = get(session, '/stream.php?hold=stream&channel=h2-two');
    const two = get(session, '/stream.php?hold=stream&channel=h2-two');
    await Promise.all([one.token(), two.token()]);
    await push(mux.pushUrl, [{ channels: ['h2-two'], body: 'both' }]);
    await one.waitFor((text) => text.endsWith('both'), 'the channel part on the first stream');
    await two.waitFor((text) => text.endsWith('both'), 'the channel part on the second stream');
    const text = await (await fetch(mux.metricsUrl)).text();
    const sum = (pattern: RegExp) => text.split('\n').filter((line) => pattern.test(line)).reduce((total, line) => total + Number(line.split(' ').pop()), 0);
    assert.ok(sum(/^muxgate_connections_by_protocol\{.*protocol="h2"/) >= 1, 'an h2 connection counted');
    assert.ok(sum(/^muxgate_http2_streams\{/) >= 2, 'its two streams counted');
    assert.equal(sum(/^muxgate_connections_by_protocol\{/), sum(/^muxgate_open_connections\{/), 'protocols add up to the open connections');
  } finally {
    session.close();
  }
});

test('the stream cap: muxgate announces MUX_H2_MAX_STREAMS concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS)', async () => {
  const session = await connect();
  try {
    assert.equal(session.remoteSettings.maxConcurrentStreams, MAX_STREAMS);
  } finally {
    session.close();
  }
});

test('a slow consumer over HTTP/2 (a window it never opens) loses its stream, RST_STREAM; other clients go on', async () => {
  const slow = await connect(mux.url, { initialWindowSize: 0 });
  const healthy = await connect();
  try {
    const stuck = new Exchange(slow, { ':path': '/stream.php?hold=stream&silent=1' }, undefined, false);
    const stuckToken = await stuck.token();
    const reader = get(healthy, '/stream.php?hold=stream');
    const readerToken = await reader.token();
    const drops = await metricValue(mux.metricsUrl, 'muxgate_slow_consumer_drops_total') ?? 0;
    const part = 'x'.repeat(MAX_BUFFERED_BYTES / 4);
    for (let i = 0; i < 6; i++) await push(mux.pushUrl, [{ tokens: [stuckToken], body: part }]);
    assert.equal(await within(stuck.closed, 'the slow stream reset'), NGHTTP2_CANCEL);
    await waitForMetric(mux.metricsUrl, 'muxgate_slow_consumer_drops_total', (value) => value > drops);
    await push(mux.pushUrl, [{ tokens: [readerToken], body: 'still here' }]);
    await reader.waitFor((text) => text.endsWith('still here'), 'the healthy stream\'s part');
  } finally {
    slow.destroy();
    healthy.close();
  }
});

test('a connection whose held streams together hold too much unsent loses them all, and GOAWAY', async () => {
  const slow = await connect(mux.url, { initialWindowSize: 0 });
  try {
    const streams = [0, 1, 2, 3].map(() => new Exchange(slow, { ':path': '/stream.php?hold=stream&silent=1' }, undefined, false));
    const tokens = await Promise.all(streams.map((stream) => stream.token()));
    const goaway = new Promise<number>((resolve) => slow.once('goaway', resolve));
    // Each stream stays under MUX_MAX_BUFFERED_BYTES, the four together do not.
    const part = 'y'.repeat(MAX_BUFFERED_BYTES / 2 - 1024);
    for (let i = 0; i < 2; i++) await push(mux.pushUrl, [{ tokens, body: part }]);
    const code = await within(goaway, 'GOAWAY').catch((error: Error) => {
      throw new Error(`${error.message}; logs: ${JSON.stringify(mux.logs.filter((line) => line.level as number >= 40).slice(-5))}`);
    });
    assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    for (const stream of streams) await within(stream.closed, 'each stream closed');
  } finally {
    slow.destroy();
  }
});

test('streams opened and reset in a loop do not take the shard down', async () => {
  const session = await connect();
  try {
    for (let i = 0; i < 200; i++) {
      const stream = session.request({ ':path': '/stream.php?hold=stream' });
      stream.on('error', () => {});
      stream.close(NGHTTP2_CANCEL);
    }
  } finally {
    session.destroy();
  }
  const after = await connect();
  try {
    const { server } = await json(get(after, '/echo.php'));
    assert.equal(server.SERVER_PROTOCOL, 'HTTP/2.0');
  } finally {
    after.close();
  }
});

test('shutdown sends GOAWAY; a held HTTP/2 stream ends as an HTTP/1.1 one does, with END_STREAM', async () => {
  const own = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '1', MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile });
  const session = await connect(own.url);
  try {
    const held = get(session, '/stream.php?hold=stream');
    await held.token();
    const goaway = new Promise<number>((resolve) => session.once('goaway', resolve));
    const stopped = own.stop('SIGTERM');
    assert.equal(await within(goaway, 'GOAWAY at shutdown'), http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(await within(held.closed, 'the held stream closed'), 0);
    assert.ok(held.hasEnded);
    assert.equal(await within(stopped, 'muxgate stopped', 15_000), 0);
  } finally {
    session.destroy();
    await own.stop();
  }
});

test('h2c with prior knowledge on MUX_H2C_LISTEN: a GET (no HTTPS) and a held stream that gets a push', async () => {
  const own = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '1', MUX_H2C_LISTEN: '127.0.0.1:0' });
  let session: ClientHttp2Session | undefined;
  try {
    assert.ok(own.h2cUrl !== undefined, 'the listening line names the h2c URL');
    session = http2.connect(own.h2cUrl);
    session.on('error', () => {});
    const { server } = await json(get(session, '/echo.php?over=h2c'));
    assert.equal(server.SERVER_PROTOCOL, 'HTTP/2.0');
    assert.equal(server.REQUEST_SCHEME, 'http');
    assert.equal(server.HTTPS, undefined);
    assert.equal(server.HTTP_HOST, new URL(own.h2cUrl).host);
    const held = get(session, '/stream.php?hold=stream');
    const token = await held.token();
    await push(own.pushUrl, [{ tokens: [token], body: 'over h2c' }]);
    await held.waitFor((text) => text.endsWith('over h2c'), 'the part pushed over h2c');
    const text = await (await fetch(own.metricsUrl)).text();
    assert.match(text, /^muxgate_connections_by_protocol\{[^}]*protocol="h2"[^}]*\} 1$/m);
  } finally {
    session?.destroy();
    await own.stop();
  }
});
