// HTTP/2 from clients muxgate did not write: curl --http2 (a page, a held stream that receives a push), nghttp (a GET,
// its frames checked), h2load (a few hundred requests over a few connections, every one answered).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { PHP_ROOT, phpBackend, push } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from './helpers/muxgate.ts';
import { TestCa } from './helpers/tls-certs.ts';

const run = promisify(execFile);
const ca = new TestCa();
const leaf = ca.leaf('h2-conformance', '2D01');
let fpm: PhpFpm;
let mux: Muxgate;
/** https://localhost:<port>, resolved to 127.0.0.1: the name the certificate is for. */
let origin: string;
let resolve: string;

before(async () => {
  fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8 });
  mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '2', MUX_LOG_LEVEL: 'info', MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile });
  const { port } = new URL(mux.url);
  origin = `https://localhost:${port}`;
  resolve = `localhost:${port}:127.0.0.1`;
});

after(async () => {
  await mux?.stop();
  await fpm?.stop();
  ca.remove();
});

test('curl --http2 gets a page over HTTP/2, and php-fpm sees SERVER_PROTOCOL=HTTP/2.0, HTTPS=on and the authority as HTTP_HOST', async () => {
  const { stdout } = await run('curl', ['-sS', '--http2', '--cacert', ca.certFile, '--resolve', resolve, '-w', '\n%{http_version}',
    `${origin}/echo.php?by=curl`], { timeout: 10_000 });
  const newline = stdout.lastIndexOf('\n');
  assert.equal(stdout.slice(newline + 1), '2');
  const { server } = JSON.parse(stdout.slice(0, newline)) as { server: Record<string, string> };
  assert.equal(server.SERVER_PROTOCOL, 'HTTP/2.0');
  assert.equal(server.HTTPS, 'on');
  assert.equal(server.HTTP_HOST, new URL(origin).host);
  assert.equal(server.REQUEST_URI, '/echo.php?by=curl');
  assert.equal(server.QUERY_STRING, 'by=curl');
});

test('curl --http2 holds a stream that receives a push, in DATA frames without chunked framing', async () => {
  const curl = spawn('curl', ['-sS', '-N', '--http2', '--cacert', ca.certFile, '--resolve', resolve, `${origin}/stream.php?hold=stream`]);
  let text = '';
  const waits = new Set<() => void>();
  curl.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    for (const check of waits) check();
  });
  const received = (needle: string) => new Promise<void>((resolveWait, reject) => {
    const timer = setTimeout(() => {
      waits.delete(check);
      reject(new Error(`no ${JSON.stringify(needle)} from curl within 10 s; received ${JSON.stringify(text)}`));
    }, 10_000);
    const check = () => {
      if (!text.includes(needle)) return;
      clearTimeout(timer);
      waits.delete(check);
      resolveWait();
    };
    waits.add(check);
    check();
  });
  try {
    await received('token=');
    await received('\n');
    const token = /token=(\S+)\n/.exec(text)![1];
    await push(mux.pushUrl, [{ tokens: [token], body: 'pushed over h2' }]);
    await received('pushed over h2');
    assert.equal(text, `token=${token}\npushed over h2`, 'the parts\' bodies, nothing around them');
  } finally {
    curl.kill();
  }
});

test('nghttp -nv: a GET over h2 answered 200, SETTINGS exchanged, no GOAWAY with an error', async () => {
  const { stdout } = await run('nghttp', ['-nv', `${mux.url}/page.php`], { timeout: 10_000 });
  assert.match(stdout, /recv SETTINGS frame <length=\d+, flags=0x00, stream_id=0>/);
  // nghttp opens its priority streams first: the request's id is not 1.
  assert.match(stdout, /recv \(stream_id=\d+\) :status: 200/);
  assert.match(stdout, /recv DATA frame <length=24, flags=0x0[01], stream_id=\d+>/);
  assert.doesNotMatch(stdout, /recv GOAWAY frame[^\n]*\n[^\n]*error_code=(?!NO_ERROR)/);
});

test('h2load: 400 requests over 4 connections, 10 streams at a time on each, all answered 2xx', async () => {
  const { stdout } = await run('h2load', ['-n', '400', '-c', '4', '-m', '10', `${mux.url}/page.php`], { timeout: 60_000 });
  assert.match(stdout, /Application protocol: h2/);
  assert.match(stdout, /requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored, 0 timeout/);
  assert.match(stdout, /status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx/);
});
