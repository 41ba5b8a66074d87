// One reader that stops reading among 500 held streams, while 50 MiB is pushed to each: it alone is
// dropped, every other reader gets every byte in order, and muxgate's memory stays bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { PHP_ROOT, phpBackend, sendPush } from './helpers/fixtures.ts';
import { startPhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, metricValue } from './helpers/muxgate.ts';

const STREAMS = 500;
const PART_BYTES = 64 * 1024;
/** 800 parts of 64 KiB: 50 MiB to every stream, 25 GiB in all. */
const PARTS = 800;
const MAX_BUFFERED_BYTES = 1_048_576;
/**
 * Part i is pushed once every reader that reads has part i - WINDOW: a reader has at most 9 parts
 * (576 KiB, about half the limit) unread, however busy this process is, so only the reader that stops
 * reading may cross MUX_MAX_BUFFERED_BYTES.
 */
const WINDOW = 8;
/**
 * Growth of muxgate's peak RSS allowed over its RSS with the 500 streams open. Buffering what the
 * readers have not read would take 50 MiB × 500 = 25 GiB; muxgate may hold at most 1 MiB (plus one
 * part) per reader that lags, here only the stalled one, and one framed copy of each part in flight,
 * shared by every socket. What remains is the garbage of 800 parsed and routed parts in the V8 heaps
 * of three threads (the main thread and two shards) and the allocator's arenas: 200 MiB is ample
 * for that and more than 100 times less than buffering.
 */
const RSS_GROWTH_LIMIT = 200 * 1024 * 1024;

/** One read buffer for every socket: the reads are counted as they come, never kept. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

const HEAD = 0;
const SIZE = 1;
const DATA = 2;
const DATA_END = 3;

/** Fills part i with one letter, so that a reader checks the order of its parts from one byte each. */
function marker(part: number): number {
  return 0x61 + (part % 26);
}

/** A held stream read as fast as it comes, decoding the chunked framing without keeping the bytes. */
class CountingReader {
  readonly socket: net.Socket;
  token = '';
  /** Data chunks whose last byte arrived. */
  parts = 0;
  bodyBytes = 0;
  /** Chunks whose first byte was not the letter of their part: out of order, lost or repeated. */
  misplaced = 0;
  hasLastChunk = false;
  hasClosed = false;
  private state = HEAD;
  private head = '';
  private sizeLine = '';
  private remaining = 0;
  private readonly onHead: (error: Error | null) => void;
  private readonly onPart: (reader: CountingReader) => void;

  constructor(port: number, path: string, onHead: (error: Error | null) => void, onPart: (reader: CountingReader) => void) {
    this.onHead = onHead;
    this.onPart = onPart;
    this.socket = net.connect({
      port,
      host: '127.0.0.1',
      onread: { buffer: READ_BUFFER, callback: (length: number, buffer: Uint8Array) => this.read(buffer, length) },
    });
    this.socket.on('error', (error) => {
      if (this.state === HEAD) onHead(error);
    });
    this.socket.on('close', () => {
      this.hasClosed = true;
      if (this.state === HEAD) onHead(new Error(`connection closed before the response head: ${JSON.stringify(this.head)}`));
    });
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  }

  private read(buffer: Uint8Array, length: number): boolean {
    let at = 0;
    while (at < length) {
      switch (this.state) {
        case HEAD: {
          const text = Buffer.from(buffer.buffer, buffer.byteOffset, length).toString('latin1', at);
          const end = (this.head + text).indexOf('\r\n\r\n');
          if (end < 0) {
            this.head += text;
            return true;
          }
          at += end + 4 - this.head.length;
          this.head = (this.head + text).slice(0, end);
          this.state = SIZE;
          const token = /\r\nX-Token: (\S+)/i.exec(this.head);
          const isChunked = /\r\nTransfer-Encoding: chunked/i.test(this.head);
          if (!this.head.startsWith('HTTP/1.1 200 ') || token === null || !isChunked) {
            this.onHead(new Error(`unexpected response head: ${this.head}`));
          } else {
            this.token = token[1];
            this.onHead(null);
          }
          break;
        }
        case SIZE: {
          const byte = buffer[at++];
          if (byte === 0x0a) {
            this.remaining = parseInt(this.sizeLine, 16);
            this.sizeLine = '';
            if (this.remaining === 0) {
              this.hasLastChunk = true;
              return true;
            }
            this.state = DATA;
          } else if (byte !== 0x0d) {
            this.sizeLine += String.fromCharCode(byte);
          }
          break;
        }
        case DATA: {
          if (this.bodyBytes % PART_BYTES === 0 && buffer[at] !== marker(this.parts)) this.misplaced++;
          const taken = Math.min(this.remaining, length - at);
          at += taken;
          this.remaining -= taken;
          this.bodyBytes += taken;
          if (this.remaining === 0) this.state = DATA_END;
          break;
        }
        case DATA_END: {
          // The CRLF after a chunk's data.
          if (buffer[at++] === 0x0a) {
            this.state = SIZE;
            if (this.bodyBytes % PART_BYTES === 0) {
              this.parts++;
              this.onPart(this);
            }
          }
          break;
        }
      }
    }
    return true;
  }
}

function vm(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, `no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

test('a stalled reader among 500 is dropped alone; the others get all 50 MiB; RSS stays bounded', async (t) => {
  const fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  const mux = await startMuxgate({
    ...phpBackend(fpm), MUX_SHARDS: '2',
    MUX_MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES), MUX_LOG_LEVEL: 'info',
  });
  const pushAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const readers: CountingReader[] = [];
  try {
    const port = Number(new URL(mux.url).port);
    let stalled: CountingReader | null = null;
    // Readers that still read and have fewer than `awaited` parts; `caughtUp` is called when none is left.
    let awaited = 0;
    let lagging = 0;
    let caughtUp: (() => void) | null = null;
    const onPart = (reader: CountingReader) => {
      if (reader.parts === awaited && reader !== stalled && --lagging === 0) caughtUp?.();
    };
    const allReadersAt = (parts: number) => new Promise<void>((resolve, reject) => {
      awaited = parts;
      lagging = readers.filter((r) => r !== stalled && r.parts < parts).length;
      if (lagging === 0) return resolve();
      const timer = setTimeout(() => reject(new Error(`${lagging} readers did not reach part ${parts} within 10 s`)), 10_000);
      caughtUp = () => {
        clearTimeout(timer);
        caughtUp = null;
        resolve();
      };
    });
    for (let opened = 0; opened < STREAMS; opened += 50) {
      await Promise.all(Array.from({ length: Math.min(50, STREAMS - opened) }, () => new Promise<void>((resolve, reject) => {
        readers.push(new CountingReader(port, '/stream.php?hold=stream&silent=1', (error) => (error ? reject(error) : resolve()), onPart));
      })));
    }
    assert.equal(new Set(readers.map((r) => r.token.split('.')[1])).size, 2, 'streams on both shards');
    stalled = readers[STREAMS >> 1];
    stalled.socket.pause();
    const stalledClosed = new Promise((resolve) => stalled!.socket.once('close', resolve));

    const pid = mux.child.pid!;
    const rssBefore = vm(pid, 'VmRSS');
    const tokens = readers.map((r) => r.token);
    const partHead = Buffer.from(`--B\r\nMultiplex-Token: ${tokens.join(', ')}\r\n\r\n`);
    const bodies = Array.from({ length: 26 }, (_, i) => Buffer.concat([partHead, Buffer.alloc(PART_BYTES, marker(i)), Buffer.from('\r\n--B--\r\n')]));
    const push = (part: number) => sendPush(mux.pushUrl, bodies[part % 26], { agent: pushAgent, boundary: 'B' });

    const started = Date.now();
    let goneFrom = -1;
    for (let part = 0; part < PARTS; part++) {
      await allReadersAt(part - WINDOW);
      const { status, answer } = await push(part);
      assert.equal(status, 200);
      assert.equal(answer.parts, 1);
      // Exact answers: every reader got the part, but the stalled one from the part after its drop on.
      if (answer.gone.length > 0) {
        assert.deepEqual(answer.gone, [stalled.token], `part ${part}`);
        if (goneFrom < 0) goneFrom = part;
      } else {
        assert.equal(goneFrom, -1, `part ${part} reached the dropped stream`);
      }
      assert.equal(answer.deliveries, STREAMS - answer.gone.length, `part ${part}`);
    }
    const pushSeconds = (Date.now() - started) / 1000;

    await allReadersAt(PARTS);
    const rssGrowth = vm(pid, 'VmHWM') - rssBefore;
    for (const reader of readers) {
      if (reader === stalled) continue;
      assert.equal(reader.bodyBytes, PARTS * PART_BYTES, `reader ${reader.token} got ${reader.bodyBytes} bytes`);
      assert.equal(reader.parts, PARTS);
      assert.equal(reader.misplaced, 0, `reader ${reader.token}: parts out of order`);
      assert.equal(reader.hasLastChunk || reader.hasClosed, false, 'a reader that keeps up keeps its stream');
    }

    assert.ok(goneFrom > 0, 'the stalled reader was never dropped');
    await mux.waitForLog((l) => l.msg === 'slow consumer dropped');
    const drops = mux.logs.filter((l) => l.msg === 'slow consumer dropped');
    assert.equal(drops.length, 1);
    assert.ok(Number(drops[0].unsentBytes) > MAX_BUFFERED_BYTES);
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_slow_consumer_drops_total'), 1);
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_streams_ended_total{reason="overflow"}'), 1);
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_held_streams'), STREAMS - 1);

    // Reading again, the stalled reader finds what the kernel had buffered, then the connection cut:
    // a truncated stream, never a clean end.
    stalled.socket.resume();
    await Promise.race([stalledClosed, new Promise((_, reject) => setTimeout(() => reject(new Error('the dropped connection is still open')), 10_000).unref())]);
    assert.equal(stalled.hasLastChunk, false);
    assert.ok(stalled.bodyBytes < PARTS * PART_BYTES);
    assert.equal(stalled.misplaced, 0);

    assert.ok(rssGrowth < RSS_GROWTH_LIMIT, `muxgate's RSS grew by ${(rssGrowth / 2 ** 20).toFixed(0)} MiB`);
    t.diagnostic(`pushed ${PARTS} × 64 KiB to ${STREAMS} streams in ${pushSeconds.toFixed(1)} s; stalled reader dropped at part ${goneFrom - 1} `
      + `after ${(stalled.bodyBytes / 2 ** 20).toFixed(1)} MiB read; RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB + peak growth ${(rssGrowth / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    for (const reader of readers) reader.socket.destroy();
    pushAgent.destroy();
    await mux.stop();
    await fpm.stop();
  }
});
