// A certificate reload (SIGHUP) under held HTTP/2 streams: the sessions made before it keep their streams, receive
// pushes and open new streams; new connections get the new certificate over h2.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type tls from 'node:tls';
import { PHP_ROOT, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from './helpers/muxgate.ts';
import { Http2Exchange } from './helpers/http2-exchange.ts';
import { ServedPair, TestCa, type Leaf } from './helpers/tls-certs.ts';

const ca = new TestCa();
const first: Leaf = ca.leaf('first', '2E01');
const second: Leaf = ca.leaf('second', '2E02');
const served = new ServedPair(ca);
let fpm: PhpFpm;
let mux: Muxgate;

before(async () => {
  served.serve(first);
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8 });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '2', MUX_LOG_LEVEL: 'info', MUX_TLS_CERT: served.certFile, MUX_TLS_KEY: served.keyFile });
});

after(async () => {
  await mux?.stop();
  await fpm?.stop();
  ca.remove();
});

/** An HTTP/2 session trusting the test CA, once connected; the serial number of the certificate it was shown. */
async function connect(): Promise<{ session: http2.ClientHttp2Session; serialNumber: string }> {
  const session = http2.connect(mux.url, { ca: ca.pem, servername: 'localhost' });
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no HTTP/2 session within 10 s')), 10_000);
    session.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    session.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  const socket = session.socket as tls.TLSSocket;
  assert.equal(socket.alpnProtocol, 'h2');
  return { session, serialNumber: socket.getPeerCertificate().serialNumber };
}

/** A held stream on the session (stream.php), its text so far and a wait for what it receives, and its token. */
async function hold(session: http2.ClientHttp2Session): Promise<{ token: string; waitFor: (needle: string) => Promise<void> }> {
  const held = new Http2Exchange(session, { ':path': '/stream.php?hold=stream' });
  const waitFor = async (needle: string) => void await held.waitFor((text) => text.includes(needle), JSON.stringify(needle), 10_000);
  const text = await held.waitFor((t) => t.includes('\n'), 'the first line', 10_000);
  const token = /token=(\S+)\n/.exec(text)?.[1];
  assert.ok(token !== undefined, `no token in ${JSON.stringify(text)}`);
  return { token, waitFor };
}

/** A GET of a page on the session: its status. */
function getPage(session: http2.ClientHttp2Session): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': '/page.php' });
    const timer = setTimeout(() => reject(new Error('no answer to GET /page.php within 10 s')), 10_000);
    stream.once('response', (headers) => {
      clearTimeout(timer);
      stream.resume();
      resolve(Number(headers[':status']));
    });
    stream.once('error', reject);
  });
}

test('SIGHUP under held HTTP/2 streams: they keep receiving, their sessions open new streams, new connections get the new certificate', async () => {
  // Two sessions at once: one on each shard (the acceptor picks the least loaded).
  const before = await Promise.all([connect(), connect()]);
  try {
    const held = await Promise.all(before.flatMap(({ session }) => [hold(session), hold(session)]));
    assert.deepEqual(new Set(held.map(({ token }) => token.split('.')[1])), new Set(['0', '1']), 'the sessions are on both shards');
    for (const { serialNumber } of before) assert.equal(serialNumber, first.serialNumber);

    served.serve(second);
    mux.child.kill('SIGHUP');
    const reloaded = await mux.waitForLog((l) => l.msg === 'TLS certificate reloaded: new handshakes use it');
    assert.equal((reloaded.certificate as { serialNumber: string }).serialNumber, second.serialNumber);

    await push(mux.pushUrl, [{ tokens: held.map(({ token }) => token), body: 'after the reload' }]);
    for (const { waitFor } of held) await waitFor('after the reload');
    for (const { session } of before) assert.equal(await getPage(session), 200, 'a new stream on a session made before the reload');

    const after = await Promise.all([connect(), connect()]);
    try {
      for (const { session, serialNumber } of after) {
        assert.equal(serialNumber, second.serialNumber);
        assert.equal(await getPage(session), 200);
      }
    } finally {
      for (const { session } of after) session.destroy();
    }
  } finally {
    for (const { session } of before) session.destroy();
  }
});
