// The default connection limit comes from the open-files limit: under a low `ulimit -n`, more idle connections than
// the descriptors allow are refused at the public listener, and /healthz, /metrics and the push API keep answering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startMuxgate, waitForMetric, metricValue } from './helpers/muxgate.ts';
import { startFakeFastcgi } from './helpers/fake-fastcgi.ts';
import { push } from './helpers/fixtures.ts';
import { RawHttp } from './helpers/raw-http.ts';

const OPEN_FILES = 400;
/** src/config.ts connectionsFor(400, 1 shard, no kept FastCGI connections): (400 - 64 - 32 - 16) × 3/4. */
const DERIVED_LIMIT = 216;
/** More than the 400 descriptors can hold, with muxgate's own ~30. */
const IDLE_CONNECTIONS = 450;

interface IdleClient {
  socket: net.Socket;
  received: string;
  closed: Promise<void>;
}

/** A connection that sends nothing, as a slowloris or an idle keep-alive client would. */
function openIdle(url: string): Promise<IdleClient> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const client: IdleClient = { socket, received: '', closed: new Promise((resolve) => socket.once('close', () => resolve())) };
  socket.setEncoding('latin1').on('data', (text: string) => (client.received += text));
  // A refused connection is answered 503, or reset when many are refused at once.
  socket.on('error', () => {});
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(client));
    socket.once('error', reject);
  });
}

function statusOf(text: string): number {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  assert.ok(match, `not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  return Number(match[1]);
}

test('MUX_MAX_CONNECTIONS unset: derived from the open-files limit and logged; beyond it the public listener refuses, and /healthz, /metrics and the push API still answer', async () => {
  const backend = await startFakeFastcgi(() => Buffer.from('Content-Type: text/plain\r\n\r\nserved'));
  const mux = await startMuxgate({
    MUX_FASTCGI: `127.0.0.1:${backend.port}`, MUX_SHARDS: '1', MUX_HEADERS_TIMEOUT: '120', MUX_LOG_LEVEL: 'info',
  }, { openFilesLimit: OPEN_FILES });
  const idle: IdleClient[] = [];
  try {
    const logged = await mux.waitForLog((line) => /client connections/.test(String(line.msg)));
    assert.equal(logged.level, 30);
    assert.equal(logged.msg, `at most ${DERIVED_LIMIT} client connections: MUX_MAX_CONNECTIONS is unset, and the open-files ` +
      `limit of ${OPEN_FILES} leaves room for that many beside FastCGI, Redis, the listeners and pushers`);
    assert.deepEqual([logged.maxConnections, logged.openFiles, logged.connections], [DERIVED_LIMIT, OPEN_FILES, DERIVED_LIMIT]);

    for (let i = 0; i < IDLE_CONNECTIONS; i++) idle.push(await openIdle(mux.url));
    await waitForMetric(mux.metricsUrl, 'muxgate_open_connections', (v) => v === DERIVED_LIMIT, 10_000);
    // Every connection beyond the limit was closed by muxgate, with a 503 or, in the burst, unanswered.
    const refused = idle.slice(DERIVED_LIMIT);
    await Promise.all(refused.map((client) => client.closed));
    for (const client of refused) {
      if (client.received !== '') assert.equal(statusOf(client.received), 503, client.received);
    }
    assert.ok(refused.some((client) => client.received !== ''), 'no refused connection got its 503');
    for (const client of idle.slice(0, DERIVED_LIMIT)) assert.equal(client.socket.destroyed, false);
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_refused_connections_total{listener="public"}'), IDLE_CONNECTIONS - DERIVED_LIMIT);

    // The public listener is full: the others answer.
    const healthz = await fetch(`${mux.metricsUrl.replace(/\/metrics$/, '')}/healthz`);
    assert.deepEqual([healthz.status, await healthz.text()], [200, 'ok\n']);
    assert.deepEqual(await push(mux.pushUrl, [], { headers: { Connection: 'close' } }), { parts: 0, deliveries: 0, gone: [] });
    const full = await RawHttp.get(`${mux.url}/`, '1.1', ['Connection: close']);
    const answer = await full.waitForClose(5000);
    assert.equal(statusOf(answer), 503, answer);
    assert.match(answer, /\r\nRetry-After: 1\r\n/i);

    // Served again once some idle clients leave.
    for (const client of idle.splice(0, 10)) client.socket.destroy();
    await waitForMetric(mux.metricsUrl, 'muxgate_open_connections', (v) => v === DERIVED_LIMIT - 10, 10_000);
    const served = await RawHttp.get(`${mux.url}/`, '1.1', ['Connection: close']);
    const text = await served.waitForClose(5000);
    assert.equal(statusOf(text), 200, text);
    assert.match(text, /\r\n\r\nserved$/);
  } finally {
    for (const client of idle) client.socket.destroy();
    assert.equal(await mux.stop(), 0);
    await backend.close();
  }
});
