// A raw TCP HTTP client (over TLS for an https:// URL): sends exact request bytes and collects exact response bytes; and
// the chunked decoder for them.
import net from 'node:net';
import tls from 'node:tls';

export class RawHttp {
  readonly socket: net.Socket;
  private received = Buffer.alloc(0);
  private waiters = new Set<() => void>();
  hasClosed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      for (const waiter of this.waiters) waiter();
    });
    socket.on('close', () => {
      this.hasClosed = true;
      for (const waiter of this.waiters) waiter();
    });
    socket.on('error', () => {});
  }

  /** `secure`: the TLS client's options (its `ca`, say) for an https:// URL. */
  static async open(url: string, request: string, secure: tls.ConnectionOptions = {}): Promise<RawHttp> {
    const { hostname, port, protocol } = new URL(url);
    const isTls = protocol === 'https:';
    const socket = isTls ? tls.connect({ ...secure, port: Number(port), host: hostname }) : net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => {
      socket.once(isTls ? 'secureConnect' : 'connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawHttp(socket);
    socket.write(request);
    return client;
  }

  /** Opens a GET with the given HTTP version and extra header lines. */
  static get(url: string, version = '1.1', headers: string[] = [], secure: tls.ConnectionOptions = {}): Promise<RawHttp> {
    const { host, pathname, search } = new URL(url);
    return RawHttp.open(url, `GET ${pathname}${search} HTTP/${version}\r\nHost: ${host}\r\n${headers.map((h) => h + '\r\n').join('')}\r\n`, secure);
  }

  get text(): string {
    return this.received.toString('latin1');
  }

  /** Resolves when the received bytes satisfy the predicate (or the socket closed and they do). */
  waitFor(predicate: (text: string) => boolean, timeoutMs = 5000, what = 'expected bytes'): Promise<string> {
    if (predicate(this.text)) return Promise.resolve(this.text);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(this.text)}`));
      }, timeoutMs);
      const check = () => {
        if (predicate(this.text)) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve(this.text);
        } else if (this.hasClosed) {
          clearTimeout(timer);
          this.waiters.delete(check);
          reject(new Error(`connection closed while waiting for ${what}; received: ${JSON.stringify(this.text)}`));
        }
      };
      this.waiters.add(check);
    });
  }

  waitForClose(timeoutMs = 5000): Promise<string> {
    if (this.hasClosed) return Promise.resolve(this.text);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms; received: ${JSON.stringify(this.text)}`)), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(this.text);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * A chunked HTTP/1.1 body decoded as its bytes arrive (latin1 text: one character a byte), a whole chunk at a time.
 * Strict, as a client checking muxgate's framing should be: hex sizes without extensions, CRLF after each chunk's
 * data, no trailer fields (muxgate sends neither). The one chunked decoder of the tests and the bench.
 */
export class ChunkedDecoder {
  /** The last chunk and the blank line after it arrived. */
  isComplete = false;
  /** What was wrong with the framing, and the text there; once set, nothing more is decoded. */
  error: { reason: string; near: string } | null = null;
  /** What came after the end of the body. */
  rest = '';
  /** Undecoded text: a size line or a chunk not whole yet. */
  #pending = '';
  /** The size of the chunk whose data comes next, or -1 while a size line does. */
  #size = -1;
  #isLastChunk = false;

  /** Takes the next bytes of the body; returns the data of the chunks they completed. */
  decode(text: string): string {
    if (this.error !== null) return '';
    if (this.isComplete) {
      this.rest += text;
      return '';
    }
    const input = this.#pending === '' ? text : this.#pending + text;
    let body = '';
    let at = 0;
    for (;;) {
      if (this.#size === -1) {
        const lineEnd = input.indexOf('\r\n', at);
        if (lineEnd === -1) break;
        const line = input.slice(at, lineEnd);
        at = lineEnd + 2;
        if (this.#isLastChunk) {
          if (line !== '') return this.#fail(body, 'trailer after the last chunk', line);
          this.isComplete = true;
          this.rest = input.slice(at);
          this.#pending = '';
          return body;
        }
        if (!/^[0-9a-f]+$/i.test(line)) return this.#fail(body, 'bad chunk size', line);
        const size = parseInt(line, 16);
        if (size === 0) this.#isLastChunk = true;
        else this.#size = size;
        continue;
      }
      if (input.length - at < this.#size + 2) break;
      if (!input.startsWith('\r\n', at + this.#size)) return this.#fail(body, 'chunk not followed by CRLF', input.slice(at + this.#size));
      body += input.slice(at, at + this.#size);
      at += this.#size + 2;
      this.#size = -1;
    }
    this.#pending = input.slice(at);
    return body;
  }

  #fail(body: string, reason: string, near: string): string {
    this.error = { reason, near: near.slice(0, 80) };
    this.#pending = '';
    return body;
  }
}

/**
 * The body of a chunked HTTP/1.1 response decoded so far (whole chunks), and whether the last chunk arrived. An
 * ordinary response that muxgate had whole before answering is framed by Content-Length instead: its body is
 * returned the same way.
 */
export function decodeChunked(text: string): { body: string; isComplete: boolean } {
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return { body: '', isComplete: false };
  const head = text.slice(0, headEnd);
  const contentLength = /\r\ncontent-length: *(\d+)\r?$/im.exec(head);
  if (contentLength !== null && !/\r\ntransfer-encoding:/i.test(head)) {
    const body = text.slice(headEnd + 4, headEnd + 4 + Number(contentLength[1]));
    return { body, isComplete: body.length === Number(contentLength[1]) };
  }
  const decoder = new ChunkedDecoder();
  const body = decoder.decode(text.slice(headEnd + 4));
  return { body, isComplete: decoder.isComplete };
}

/** One keep-alive connection that sends a request at a time and reads each response whole (chunked or Content-Length). */
export class KeptConnection {
  private readonly socket: net.Socket;
  private readonly host: string;
  /** What has arrived of the response being read. */
  private received = '';
  private hasClosed = false;
  private onChange: (() => void) | null = null;

  private constructor(socket: net.Socket, host: string) {
    this.socket = socket;
    this.host = host;
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      this.received += text;
      this.onChange?.();
    });
    socket.on('close', () => {
      this.hasClosed = true;
      this.onChange?.();
    });
    socket.on('error', () => {});
  }

  static async open(url: string): Promise<KeptConnection> {
    const { hostname, port, host } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new KeptConnection(socket, host);
  }

  /** Sends the request and resolves with the response once it has ended. */
  request(method: string, path: string, body = '', headers: string[] = [], timeoutMs = 10_000): Promise<{ head: string; body: string }> {
    const lines = [`${method} ${path} HTTP/1.1`, `Host: ${this.host}`, `Content-Length: ${Buffer.byteLength(body)}`, ...headers];
    this.socket.write(lines.join('\r\n') + '\r\n\r\n' + body);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail('timed out'), timeoutMs);
      const fail = (why: string) => {
        this.onChange = null;
        reject(new Error(`${why} waiting for the response to ${method} ${path}; received: ${JSON.stringify(this.received)}`));
      };
      this.onChange = () => {
        const response = readResponse(this.received);
        if (response === null && !this.hasClosed) return;
        clearTimeout(timer);
        if (response === null) return fail('connection closed');
        this.onChange = null;
        this.received = this.received.slice(response.length);
        resolve({ head: response.head, body: response.body });
      };
      this.onChange();
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The complete response at the start of `text`, and its length, or null while it is incomplete. */
function readResponse(text: string): { head: string; body: string; length: number } | null {
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const head = text.slice(0, headEnd);
  const contentLength = /\r\ncontent-length: *(\d+)\r?$/im.exec(head);
  let at = headEnd + 4;
  if (contentLength !== null) {
    const end = at + Number(contentLength[1]);
    return end > text.length ? null : { head, body: text.slice(at, end), length: end };
  }
  let body = '';
  for (;;) {
    const lineEnd = text.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(text.slice(at, lineEnd), 16);
    if (lineEnd + 2 + size + 2 > text.length) return null;
    if (size === 0) return { head, body, length: lineEnd + 4 };
    body += text.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}
