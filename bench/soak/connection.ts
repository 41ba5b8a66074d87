// A client connection of the churn: holds one stream at a time, reads its chunked response, hands on its lines.
import net from 'node:net';
import { ChunkedDecoder } from '../../test/helpers/raw-http.ts';
import type { Failures } from './failures.ts';
import type { Stream } from './stream.ts';

/** Where a connection hands its stream's body lines, and the problems it sees. */
export interface StreamReader {
  readonly failures: Failures;
  onLine(stream: Stream, line: string): void;
}

export class Connection {
  readonly socket: net.Socket;
  stream: Stream | null = null;
  isClosed = false;
  readonly #reader: StreamReader;
  #state: 'idle' | 'head' | 'body' = 'idle';
  /** The response head until it is whole. */
  #head = '';
  #body = new ChunkedDecoder();
  /** The body after its last newline. */
  #line = '';

  constructor(socket: net.Socket, reader: StreamReader) {
    this.socket = socket;
    this.#reader = reader;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.isClosed = true;
      const stream = this.stream;
      if (stream !== null && !stream.hasEnded) {
        stream.hasEnded = true;
        if (!stream.isClosing) this.#reader.failures.add('connection closed by muxgate', `stream ${stream.id} (${stream.mode}), live: ${stream.isLive}`);
        stream.changed();
      }
    });
  }

  static open(port: number, reader: StreamReader): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new Connection(socket, reader));
      });
      socket.once('error', reject);
    });
  }

  request(stream: Stream): void {
    this.stream = stream;
    this.#state = 'head';
    this.#head = '';
    this.#line = '';
    this.socket.write(`GET /stream.php?hold=stream&channel=${stream.channel}&stream=${stream.id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  }

  #onData(chunk: Buffer): void {
    const failures = this.#reader.failures;
    const stream = this.stream;
    if (stream === null || this.#state === 'idle') {
      failures.add('bytes outside a response', JSON.stringify(chunk.toString('latin1', 0, 80)));
      return;
    }
    let text = chunk.toString('latin1');
    if (this.#state === 'head') {
      this.#head += text;
      const end = this.#head.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.#head.slice(0, end);
      text = this.#head.slice(end + 4);
      this.#head = '';
      if (!head.startsWith('HTTP/1.1 200 ') || !/\r\ntransfer-encoding: chunked/i.test(head)) {
        failures.add('unexpected response head', JSON.stringify(head.slice(0, 200)));
        this.socket.destroy();
        return;
      }
      this.#state = 'body';
      this.#body = new ChunkedDecoder();
    }
    const body = this.#body;
    this.#lines(stream, body.decode(text));
    if (body.error !== null) {
      failures.add(body.error.reason, `stream ${stream.id}: ${JSON.stringify(body.error.near)}`);
      this.socket.destroy();
    } else if (body.isComplete) {
      this.#endResponse(stream);
      if (body.rest !== '') failures.add('bytes after the last chunk', JSON.stringify(body.rest.slice(0, 80)));
    }
  }

  #lines(stream: Stream, text: string): void {
    let start = 0;
    for (let newline = text.indexOf('\n'); newline !== -1; newline = text.indexOf('\n', start)) {
      this.#reader.onLine(stream, this.#line + text.slice(start, newline));
      this.#line = '';
      start = newline + 1;
    }
    this.#line += text.slice(start);
  }

  #endResponse(stream: Stream): void {
    this.#state = 'idle';
    stream.hasEnded = true;
    if (stream.mode !== 'server' || !stream.hasClosePart) {
      this.#reader.failures.add('stream ended by muxgate', `stream ${stream.id} (${stream.mode}), closing: ${stream.isClosing}`);
    }
    stream.changed();
  }
}
