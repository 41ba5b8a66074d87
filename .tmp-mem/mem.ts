// Memory per held stream: HTTP/1.1 over TLS vs HTTP/2 (1 and 10 streams per connection). Not committed.
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { PHP_ROOT, phpBackend } from '../test/helpers/fixtures.ts';
import { startPhpFpm } from '../test/helpers/php-fpm.ts';
import { startMuxgate, waitForMetric } from '../test/helpers/muxgate.ts';
import { TestCa } from '../test/helpers/tls-certs.ts';
import { RawHttp } from '../test/helpers/raw-http.ts';

const N = Number(process.env.N ?? 400);
const ca = new TestCa();
const leaf = ca.leaf('mem', '3C01');
const fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: 8 });
const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const modes = (process.env.MODES ?? 'h1,h2x1,h2x10').split(',');
for (let round = 0; round < Number(process.env.ROUNDS ?? 1); round++) for (const mode of modes) {
  const mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '1', MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile });
  const pid = mux.child.pid!;
  // warm up: one of each kind
  const closers: Array<() => void> = [];
  const open = async (count: number) => {
    if (mode === 'h1') {
      for (let i = 0; i < count; i++) {
        const c = await RawHttp.get(`${mux.url}/stream.php?hold=stream&silent=1`, '1.1', [], { ca: ca.pem, servername: 'localhost' });
        await c.waitFor((t) => t.includes('\r\n\r\n'), 10000, 'head');
        closers.push(() => c.close());
      }
    } else {
      const per = mode === 'h2x1' ? 1 : 10;
      for (let i = 0; i < count / per; i++) {
        const s = http2.connect(mux.url, { ca: ca.pem, servername: 'localhost' });
        s.on('error', () => {});
        const heads = [];
        for (let j = 0; j < per; j++) {
          const r = s.request({ ':path': '/stream.php?hold=stream&silent=1' });
          r.on('error', () => {});
          heads.push(new Promise((resolve) => r.once('response', resolve)));
        }
        await Promise.all(heads);
        closers.push(() => s.destroy());
      }
    }
  };
  await open(20);
  await waitForMetric(mux.metricsUrl, 'muxgate_held_streams', (v) => v >= 20, 20000);
  await new Promise((r) => setTimeout(r, 500));
  const before = rss(pid);
  await open(N);
  await waitForMetric(mux.metricsUrl, 'muxgate_held_streams', (v) => v >= N + 20, 60000);
  await new Promise((r) => setTimeout(r, 1000));
  const after = rss(pid);
  console.log(`${mode} N=${N} per-stream KiB=${((after - before) / N).toFixed(1)} (rss ${before} -> ${after} KiB)`);
  for (const c of closers) c();
  await mux.stop();
}
await fpm.stop();
ca.remove();
