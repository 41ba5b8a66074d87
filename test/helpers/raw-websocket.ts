// A raw WebSocket client for tests whose client must misbehave: a real handshake, then exact frame bytes (unmasked,
// reserved bits, bad opcodes, random bytes), and the server's frames as they arrive, decoded strictly.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Waiters, socketClosed } from './waiters.ts';

/** A frame the server sent: server frames are never masked (RFC 6455 §5.1). */
export interface ServerFrame {
  fin: boolean;
  /** The RSV1-3 bits, as the top nibble's low three bits (0 when none is set). */
  rsv: number;
  opcode: number;
  payload: Buffer;
}

export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;
export const OPCODE_CLOSE = 0x8;
export const OPCODE_PING = 0x9;
export const OPCODE_PONG = 0xa;

export interface ClientFrameOptions {
  fin?: boolean;
  /** RSV1-3 as three bits (RSV1 = 4). */
  rsv?: number;
  opcode: number;
  payload?: Buffer | string;
  /** A client must mask its frames; false sends one unmasked. */
  isMasked?: boolean;
  /** The length field as sent, when it should lie about the payload. */
  declaredLength?: number;
}

/** One client frame's bytes, valid or not, as the options say. */
export function clientFrame(options: ClientFrameOptions): Buffer {
  const payload = typeof options.payload === 'string' ? Buffer.from(options.payload) : options.payload ?? Buffer.alloc(0);
  const length = options.declaredLength ?? payload.length;
  const isMasked = options.isMasked ?? true;
  const lengthBytes = length < 126 ? 0 : length < 65_536 ? 2 : 8;
  const head = Buffer.alloc(2 + lengthBytes + (isMasked ? 4 : 0));
  head[0] = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | options.opcode;
  head[1] = (isMasked ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) head.writeUInt16BE(length, 2);
  else if (lengthBytes === 8) head.writeBigUInt64BE(BigInt(length), 2);
  if (!isMasked) return Buffer.concat([head, payload]);
  const mask = randomBytes(4);
  mask.copy(head, 2 + lengthBytes);
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, masked]);
}

/** A close frame's payload: the code, then the reason. */
export function closePayload(code: number, reason = ''): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

export class RawWebSocket {
  readonly socket: net.Socket;
  /** The server's response head, up to the blank line. */
  readonly head: string;
  readonly frames: ServerFrame[] = [];
  /** What the server sent that is not a well-formed server frame; null while everything was. */
  badFraming: string | null = null;
  hasClosed = false;
  #pending: Buffer;
  readonly #waiters = new Waiters(() => this.hasClosed, () => this.describe());

  private constructor(socket: net.Socket, head: string, rest: Buffer) {
    this.socket = socket;
    this.head = head;
    this.#pending = rest;
    this.#decode();
    socket.on('data', (chunk: Buffer) => {
      this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
      this.#decode();
      this.#wake();
    });
    socket.on('close', () => {
      this.hasClosed = true;
      this.#wake();
    });
  }

  /**
   * Sends a valid opening handshake for `path` (extra header lines may replace none of its own) and resolves once a
   * `101` head has arrived; rejects with the head when the answer is anything else.
   */
  static async open(url: string, path: string, timeoutMs = 10_000): Promise<RawWebSocket> {
    const { hostname, port, host } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    socket.on('error', () => {});
    const key = randomBytes(16).toString('base64');
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    let received = Buffer.alloc(0);
    const headEnd = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => fail(`no response head within ${timeoutMs} ms`), timeoutMs);
      const fail = (why: string) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`${why} to the opening of ${path}; received: ${JSON.stringify(received.toString('latin1').slice(0, 500))}`));
      };
      const onData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(timer);
        socket.removeListener('data', onData);
        socket.removeListener('close', onClose);
        socket.pause();
        resolve(end);
      };
      const onClose = () => fail('connection closed before a response head');
      socket.on('data', onData);
      socket.once('close', onClose);
    });
    const head = received.subarray(0, headEnd).toString('latin1');
    if (!head.startsWith('HTTP/1.1 101 ')) {
      socket.destroy();
      throw new Error(`the opening of ${path} was answered ${JSON.stringify(head)}`);
    }
    const client = new RawWebSocket(socket, head, received.subarray(headEnd + 4));
    socket.resume();
    return client;
  }

  send(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** The payloads of the text messages received, unfragmented (muxgate never fragments), as UTF-8. */
  texts(): string[] {
    return this.frames.filter((frame) => frame.opcode === OPCODE_TEXT).map((frame) => frame.payload.toString('utf8'));
  }

  /** The server's close frame, if one came. */
  closeFrame(): ServerFrame | undefined {
    return this.frames.find((frame) => frame.opcode === OPCODE_CLOSE);
  }

  /** The code of the server's close frame: null without one, 1005 when it had none. */
  closeCode(): number | null {
    const frame = this.closeFrame();
    if (frame === undefined) return null;
    return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
  }

  /** Resolves once the predicate holds; rejects after `timeoutMs`, or when the connection closed before. */
  waitFor(predicate: () => boolean, timeoutMs = 10_000, what = 'the expected frames'): Promise<void> {
    return this.#waiters.waitFor(predicate, timeoutMs, what);
  }

  waitForClose(timeoutMs = 10_000): Promise<void> {
    return socketClosed(this.socket, this.hasClosed, timeoutMs, () => this.describe());
  }

  /**
   * Resolves when the connection has closed, or when the server has sent nothing for `idleMs` (it may be waiting for
   * the rest of a frame): an end of waiting, not an assertion. True when it closed.
   */
  closedOrIdle(idleMs: number): Promise<boolean> {
    if (this.hasClosed) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer = setTimeout(() => done(false), idleMs);
      let isDone = false;
      const done = (hasClosed: boolean) => {
        clearTimeout(timer);
        isDone = true;
        resolve(hasClosed);
      };
      this.#waiters.watch(() => {
        if (isDone) return true;
        if (this.hasClosed) done(true);
        else {
          clearTimeout(timer);
          timer = setTimeout(() => done(false), idleMs);
        }
        return isDone;
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  describe(): string {
    const frames = this.frames.map((f) => `${f.opcode}:${f.payload.length > 40 ? `${f.payload.length} bytes` : JSON.stringify(f.payload.toString('latin1'))}`);
    return `frames [${frames.join(', ')}]${this.badFraming === null ? '' : `, bad framing: ${this.badFraming}`}, closed: ${this.hasClosed}`;
  }

  #wake(): void {
    this.#waiters.wake();
  }

  #decode(): void {
    while (this.badFraming === null && this.#pending.length >= 2) {
      const bytes = this.#pending;
      if ((bytes[1] & 0x80) !== 0) {
        this.badFraming = `a masked server frame: ${bytes.subarray(0, 16).toString('hex')}`;
        return;
      }
      let length = bytes[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        if (bytes.length < 4) return;
        length = bytes.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (bytes.length < 10) return;
        length = Number(bytes.readBigUInt64BE(2));
        at = 10;
      }
      if (bytes.length < at + length) return;
      this.frames.push({ fin: (bytes[0] & 0x80) !== 0, rsv: (bytes[0] >> 4) & 0x7, opcode: bytes[0] & 0x0f, payload: bytes.subarray(at, at + length) });
      this.#pending = bytes.subarray(at + length);
    }
  }
}
