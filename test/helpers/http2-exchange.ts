// One request stream of a test's HTTP/2 client (node:http2) and what it has received, with event-driven waits: each
// chunk, its end and its close wake them, and a wait fails at once when the stream closed without what it waits for.
import assert from 'node:assert/strict';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { Waiters } from './waiters.ts';

export class Http2Exchange {
  readonly stream: ClientHttp2Stream;
  readonly head: Promise<IncomingHttpHeaders>;
  /** Resolves with the stream's RST_STREAM code (0 when it ended normally) once it has closed. */
  readonly closed: Promise<number>;
  text = '';
  status = 0;
  hasEnded = false;
  hasClosed = false;
  readonly #waiters = new Waiters(() => this.hasClosed, () => `status ${this.status}, received ${JSON.stringify(this.text.slice(-300))}`);

  /** `isReading` false: the client never reads the stream (its flow-control window is never given back). */
  constructor(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string | Buffer, isReading = true) {
    this.stream = session.request(headers, { endStream: body === undefined });
    this.stream.on('error', () => {});
    this.head = new Promise((resolve, reject) => {
      this.stream.once('response', (head) => {
        this.status = Number(head[':status']);
        resolve(head);
      });
      this.stream.once('close', () => reject(new Error(`stream ${headers[':path']} closed before its head (RST ${this.stream.rstCode})`)));
    });
    this.head.catch(() => {});
    this.closed = new Promise((resolve) => this.stream.once('close', () => {
      this.hasClosed = true;
      this.#waiters.wake();
      resolve(this.stream.rstCode ?? 0);
    }));
    if (isReading) {
      this.stream.setEncoding('utf8');
      this.stream.on('data', (chunk: string) => {
        this.text += chunk;
        this.#waiters.wake();
      });
      this.stream.on('end', () => {
        this.hasEnded = true;
        this.#waiters.wake();
      });
    }
    if (body !== undefined) this.stream.end(body);
  }

  /** The text received so far, once the predicate holds for it; fails after timeoutMs or when the stream closed before. */
  async waitFor(predicate: (text: string) => boolean, what: string, timeoutMs = 5000): Promise<string> {
    await this.#waiters.waitFor(() => predicate(this.text), timeoutMs, what);
    return this.text;
  }

  /** The token of a held stream whose backend names it in `X-Token` (the test PHP scripts do). */
  async token(): Promise<string> {
    const head = await this.head;
    assert.equal(head[':status'], 200);
    return String(head['x-token']);
  }
}
