// Held streams without sockets of their own: what a resuming stream writes, in which order, and once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { HeldStream, HeldStreams, type StreamOptions } from '../workers/held-streams.ts';
import { Delivery } from '../workers/delivery.ts';
import { createShardMetrics } from '../workers/metrics.ts';

/** A stream resuming after id 10 that writes raw (HTTP/1.0) bytes; `written` resolves once `length` bytes are out. */
function resumingStream(streams: HeldStreams): { stream: HeldStream; written: (length: number) => Promise<string> } {
  let text = '';
  let onWrite = () => {};
  const socket = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      text += chunk.toString();
      done();
      onWrite();
    },
  }) as unknown as Socket;
  const options: StreamOptions = {
    hold: 'stream', isChunked: false, isEventStream: false, keepAliveMs: 0, keepAliveData: null, timeoutMs: 0, channels: [], requestUri: '/',
  };
  const stream = new HeldStream('t', socket, null, false, options, Date.now());
  streams.beginCatchUp(stream, 10);
  // Writes leave at the next flush of corked sockets: wait for them, not for a turn.
  const written = (length: number) => new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${length} bytes not written within 2 s: ${JSON.stringify(text)}`)), 2000);
    onWrite = () => {
      if (text.length < length) return;
      clearTimeout(timer);
      resolve(text);
    };
    onWrite();
  });
  return { stream, written };
}

const part = (id: number) => new Delivery(Buffer.from(`<${id}>`), false, Date.now(), id);
const logged = (id: number) => ({ id, body: Buffer.from(`<${id}>`), isClose: false, at: Date.now() });

test('a live channel part that arrives while the replay is on its way is written after it, once, even when nothing was missed', async () => {
  const log = pino({ level: 'silent' });
  const streams = new HeldStreams(createShardMetrics(0), log, new RepeatedWarnings(log, 10_000), 1 << 20, true, () => {});
  try {
    // Nothing missed: only the part held back (the replay was read before it was numbered).
    const alone = resumingStream(streams);
    streams.write(alone.stream, part(11));
    streams.finishCatchUp(alone.stream, [], true);
    assert.equal(await alone.written('<11>'.length), '<11>');

    // Missed parts, and live ones held back that the replay has too: each once, in id order, then live ones.
    const both = resumingStream(streams);
    streams.write(both.stream, part(12));
    streams.write(both.stream, part(13));
    streams.finishCatchUp(both.stream, [logged(11), logged(12)], true);
    streams.write(both.stream, part(13));
    streams.write(both.stream, part(14));
    assert.equal(await both.written('<11><12><13><14>'.length), '<11><12><13><14>');
  } finally {
    streams.stop();
  }
});
