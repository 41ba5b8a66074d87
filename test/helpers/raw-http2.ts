// A raw HTTP/2 client for tests whose client must misbehave: TLS with ALPN h2 (or h2c with prior knowledge), the
// preface, then frames written by hand (RFC 9113 §6) with HPACK literals (RFC 7541 §6.2.2), and the server's frames as
// they arrive: SETTINGS acknowledged unless told not to, nothing else answered.
import net from 'node:net';
import tls from 'node:tls';
import { Waiters, socketClosed } from './waiters.ts';

export const FRAME_DATA = 0x0;
export const FRAME_HEADERS = 0x1;
export const FRAME_RST_STREAM = 0x3;
export const FRAME_SETTINGS = 0x4;
export const FRAME_PING = 0x6;
export const FRAME_GOAWAY = 0x7;
export const FRAME_WINDOW_UPDATE = 0x8;
export const FRAME_CONTINUATION = 0x9;

export const FLAG_END_STREAM = 0x1;
/** On SETTINGS and PING. */
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;

/** RFC 9113 §7. */
export const H2_ERROR = {
  NO_ERROR: 0x0, PROTOCOL_ERROR: 0x1, INTERNAL_ERROR: 0x2, FLOW_CONTROL_ERROR: 0x3, STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6, REFUSED_STREAM: 0x7, CANCEL: 0x8, COMPRESSION_ERROR: 0x9, ENHANCE_YOUR_CALM: 0xb,
} as const;

/** RFC 9113 §6.5.2. */
export const SETTING = {
  HEADER_TABLE_SIZE: 0x1, ENABLE_PUSH: 0x2, MAX_CONCURRENT_STREAMS: 0x3, INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5, MAX_HEADER_LIST_SIZE: 0x6,
} as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEAD_BYTES = 9;

/** A frame the server sent. */
export interface ServerFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** One frame's bytes: the 9-byte head (RFC 9113 §4.1), then the payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(FRAME_HEAD_BYTES);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

export function settingsFrame(settings: Array<[id: number, value: number]> = []): Buffer {
  const payload = Buffer.alloc(6 * settings.length);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FRAME_SETTINGS, 0, 0, payload);
}

export function pingFrame(data = Buffer.alloc(8)): Buffer {
  return frame(FRAME_PING, 0, 0, data);
}

export function rstStreamFrame(streamId: number, errorCode: number = H2_ERROR.CANCEL): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(errorCode);
  return frame(FRAME_RST_STREAM, 0, streamId, payload);
}

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment);
  return frame(FRAME_WINDOW_UPDATE, 0, streamId, payload);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
export function hpackInteger(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const bytes = [first | max];
  for (value -= max; value >= 128; value = Math.floor(value / 128)) bytes.push((value % 128) | 0x80);
  bytes.push(value);
  return Buffer.from(bytes);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7), bytes]);
}

/** A literal field without indexing, its name a literal too (RFC 7541 §6.2.2): the table is left alone. */
export function hpackLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

/** A literal field with incremental indexing, new name (§6.2.1): the server adds it to its dynamic table. */
export function hpackIndexing(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** An indexed field (§6.1): 62 is the newest entry of the dynamic table. */
export function hpackIndexed(index: number): Buffer {
  return hpackInteger(index, 7, 0x80);
}

/** A request's header block, every field a literal without indexing: the pseudo-headers first, then `extra`. */
export function requestBlock(authority: string, path: string, extra: Array<[string, string]> = [], method = 'GET'): Buffer {
  const fields: Array<[string, string]> = [[':method', method], [':scheme', 'https'], [':authority', authority], [':path', path], ...extra];
  return Buffer.concat(fields.map(([name, value]) => hpackLiteral(name, value)));
}

export interface RawHttp2Options {
  /** TLS with ALPN h2 (the default), or h2c with prior knowledge. */
  isSecure?: boolean;
  /** The client's SETTINGS, sent after the preface. */
  settings?: Array<[id: number, value: number]>;
  /** Acknowledge the server's SETTINGS (the default); false leaves them unanswered. */
  acksSettings?: boolean;
  timeoutMs?: number;
}

export class RawHttp2 {
  readonly socket: net.Socket;
  readonly authority: string;
  readonly frames: ServerFrame[] = [];
  hasClosed = false;
  /** Bytes sent; a flood's writes stop when the connection is gone. */
  bytesSent = 0;
  #pending: Buffer = Buffer.alloc(0);
  #nextStreamId = 1;
  readonly #acksSettings: boolean;
  readonly #waiters = new Waiters(() => this.hasClosed, () => this.describe());

  private constructor(socket: net.Socket, authority: string, acksSettings: boolean) {
    this.socket = socket;
    this.authority = authority;
    this.#acksSettings = acksSettings;
    socket.on('data', (chunk: Buffer) => {
      this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
      this.#decode();
      this.#waiters.wake();
    });
    socket.on('close', () => {
      this.hasClosed = true;
      this.#waiters.wake();
    });
  }

  /** Connects (ALPN h2 over TLS, or plain), sends the preface and SETTINGS; rejects when the server chose no h2. */
  static async connect(url: string, options: RawHttp2Options = {}): Promise<RawHttp2> {
    const { hostname, port, host } = new URL(url);
    const isSecure = options.isSecure ?? url.startsWith('https:');
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = isSecure
      ? tls.connect({ host: hostname, port: Number(port), ALPNProtocols: ['h2'], rejectUnauthorized: false, servername: 'localhost' })
      : net.connect(Number(port), hostname);
    socket.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no ${isSecure ? 'TLS handshake' : 'connection'} with ${url} within ${timeoutMs} ms`)), timeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      socket.once(isSecure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        const alpn = isSecure ? (socket as tls.TLSSocket).alpnProtocol : 'h2';
        if (alpn === 'h2') resolve();
        else fail(new Error(`the server chose ALPN ${JSON.stringify(alpn)}, not h2`));
      });
      socket.once('error', fail);
    });
    const client = new RawHttp2(socket, host, options.acksSettings ?? true);
    client.send(Buffer.concat([PREFACE, settingsFrame(options.settings)]));
    return client;
  }

  /** Neither closed nor destroyed: a flood's loop stops at once when the server cut it (`close` comes a turn later). */
  get isOpen(): boolean {
    return !this.hasClosed && !this.socket.destroyed;
  }

  send(bytes: Buffer): void {
    if (this.socket.destroyed) return;
    this.bytesSent += bytes.length;
    this.socket.write(bytes);
  }

  /** Resolves once the socket's buffer has drained (or it closed): a flood writes at the pace the server reads. */
  drained(): Promise<void> {
    if (this.socket.destroyed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** The next client stream id (odd, increasing). */
  newStreamId(): number {
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    return id;
  }

  /** Opens a stream with a GET of `path` (one HEADERS frame, END_STREAM and END_HEADERS); its id. */
  get(path: string, extra: Array<[string, string]> = []): number {
    const streamId = this.newStreamId();
    this.send(frame(FRAME_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, streamId, requestBlock(this.authority, path, extra)));
    return streamId;
  }

  /**
   * Sends a header block on the stream: one HEADERS frame, then CONTINUATION frames, each at most `maxFrameBytes` (the
   * default SETTINGS_MAX_FRAME_SIZE), END_HEADERS on the last; END_STREAM unless `isEndStream` is false.
   */
  sendHeaders(streamId: number, block: Buffer, isEndStream = true, maxFrameBytes = 16_384): void {
    for (let offset = 0; offset === 0 || offset < block.length; offset += maxFrameBytes) {
      const isLast = offset + maxFrameBytes >= block.length;
      const flags = (isLast ? FLAG_END_HEADERS : 0) | (offset === 0 && isEndStream ? FLAG_END_STREAM : 0);
      this.send(frame(offset === 0 ? FRAME_HEADERS : FRAME_CONTINUATION, flags, streamId, block.subarray(offset, offset + maxFrameBytes)));
    }
  }

  /** Stops reading: the server's frames (SETTINGS and PING ACKs, DATA) pile up in its send buffers. */
  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  framesOf(type: number, streamId?: number): ServerFrame[] {
    return this.frames.filter((f) => f.type === type && (streamId === undefined || f.streamId === streamId));
  }

  /** The GOAWAY the server sent, decoded; undefined without one. */
  goaway(): { lastStreamId: number; errorCode: number; debug: string } | undefined {
    const goaway = this.framesOf(FRAME_GOAWAY)[0];
    if (goaway === undefined) return undefined;
    return {
      lastStreamId: goaway.payload.readUInt32BE(0) & 0x7fffffff,
      errorCode: goaway.payload.readUInt32BE(4),
      debug: goaway.payload.subarray(8).toString('latin1'),
    };
  }

  /** The error code of the server's RST_STREAM on the stream; undefined without one. */
  rstCode(streamId: number): number | undefined {
    return this.framesOf(FRAME_RST_STREAM, streamId)[0]?.payload.readUInt32BE(0);
  }

  /** The stream's DATA payloads, concatenated. */
  data(streamId: number): Buffer {
    return Buffer.concat(this.framesOf(FRAME_DATA, streamId).map((f) => f.payload));
  }

  /** The :status of the stream's response when the server sent it indexed from the static table (RFC 7541 A), else null. */
  status(streamId: number): number | null {
    const headers = this.framesOf(FRAME_HEADERS, streamId)[0];
    if (headers === undefined) return null;
    const STATIC_STATUS: Record<number, number> = { 0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500 };
    return STATIC_STATUS[headers.payload[0]] ?? null;
  }

  /** Resolves once the predicate holds; rejects after `timeoutMs`, or when the connection closed before. */
  waitFor(predicate: () => boolean, timeoutMs = 10_000, what = 'the expected frames'): Promise<void> {
    return this.#waiters.waitFor(predicate, timeoutMs, what);
  }

  /** Resolves with the GOAWAY once it has come (the connection may close right after it). */
  waitForGoaway(timeoutMs = 10_000): Promise<NonNullable<ReturnType<RawHttp2['goaway']>>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no GOAWAY within ${timeoutMs} ms; ${this.describe()}`)), timeoutMs);
      this.#waiters.watch(() => {
        const goaway = this.goaway();
        if (goaway !== undefined) {
          clearTimeout(timer);
          resolve(goaway);
          return true;
        }
        if (this.hasClosed) {
          clearTimeout(timer);
          reject(new Error(`connection closed without a GOAWAY; ${this.describe()}`));
          return true;
        }
        return false;
      });
      this.#waiters.wake();
    });
  }

  waitForClose(timeoutMs = 10_000): Promise<void> {
    return socketClosed(this.socket, this.hasClosed, timeoutMs, () => this.describe());
  }

  close(): void {
    this.socket.destroy();
  }

  describe(): string {
    const counts = new Map<number, number>();
    for (const f of this.frames) counts.set(f.type, (counts.get(f.type) ?? 0) + 1);
    const goaway = this.goaway();
    return `frames by type {${[...counts].map(([type, n]) => `${type}: ${n}`).join(', ')}}`
      + `${goaway === undefined ? '' : `, GOAWAY ${JSON.stringify(goaway)}`}, sent ${this.bytesSent} bytes, closed: ${this.hasClosed}`;
  }

  #decode(): void {
    while (this.#pending.length >= FRAME_HEAD_BYTES) {
      const length = this.#pending.readUIntBE(0, 3);
      if (this.#pending.length < FRAME_HEAD_BYTES + length) return;
      const received: ServerFrame = {
        type: this.#pending[3],
        flags: this.#pending[4],
        streamId: this.#pending.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.#pending.subarray(FRAME_HEAD_BYTES, FRAME_HEAD_BYTES + length)),
      };
      this.#pending = this.#pending.subarray(FRAME_HEAD_BYTES + length);
      this.frames.push(received);
      if (received.type === FRAME_SETTINGS && (received.flags & FLAG_ACK) === 0 && this.#acksSettings) {
        this.send(frame(FRAME_SETTINGS, FLAG_ACK, 0));
      }
    }
  }
}
