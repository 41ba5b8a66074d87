// A raw TCP HTTP client: sends exact request bytes and collects exact response bytes.
import net from 'node:net';

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

  static async open(url: string, request: string): Promise<RawHttp> {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawHttp(socket);
    socket.write(request);
    return client;
  }

  /** Opens a GET with the given HTTP version and extra header lines. */
  static get(url: string, version = '1.1', headers: string[] = []): Promise<RawHttp> {
    const { host, pathname, search } = new URL(url);
    return RawHttp.open(url, `GET ${pathname}${search} HTTP/${version}\r\nHost: ${host}\r\n${headers.map((h) => h + '\r\n').join('')}\r\n`);
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
 * The body of a chunked HTTP/1.1 response decoded so far, and whether the last chunk arrived. An ordinary response
 * that muxgate had whole before answering is framed by Content-Length instead: its body is returned the same way.
 */
export function decodeChunked(text: string): { body: string; isComplete: boolean } {
  const headEnd = text.indexOf('\r\n\r\n');
  const head = text.slice(0, headEnd);
  const contentLength = /\r\ncontent-length: *(\d+)\r?$/im.exec(head);
  if (headEnd >= 0 && contentLength !== null && !/\r\ntransfer-encoding:/i.test(head)) {
    const body = text.slice(headEnd + 4, headEnd + 4 + Number(contentLength[1]));
    return { body, isComplete: body.length === Number(contentLength[1]) };
  }
  let at = headEnd + 4;
  let body = '';
  while (at < text.length) {
    const lineEnd = text.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = parseInt(text.slice(at, lineEnd), 16);
    if (size === 0) return { body, isComplete: text.startsWith('\r\n', lineEnd + 2) };
    if (lineEnd + 2 + size + 2 > text.length) break;
    body += text.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
  return { body, isComplete: false };
}

/** A multipart body for the push API or a test backend. */
export function multiplexBody(boundary: string, parts: Array<{ tokens?: string[]; close?: boolean; body: string }>): string {
  let out = '';
  for (const part of parts) {
    out += `--${boundary}\r\n`;
    if (part.tokens) out += `Multiplex-Token: ${part.tokens.join(', ')}\r\n`;
    if (part.close) out += 'Multiplex-Close: true\r\n';
    out += `\r\n${part.body}\r\n`;
  }
  return out + `--${boundary}--\r\n`;
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
