// One part on its way to this shard's streams: framed at most once per kind of stream.
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { isUtf8 } = process.getBuiltinModule('node:buffer');
const { createRequire } = process.getBuiltinModule('node:module');

/** ws's frame writer (not in its type declarations): a server's frame is the header and the payload, unmasked. */
interface Sender {
  frame(data: Buffer, options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean }): Buffer[];
}
/** Loaded with the first WebSocket frame: ws (with node:tls and zlib) is 2 MiB of a shard that serves none. */
let sender: Sender | null = null;
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;

const CRLF = 0x0d0a;

export class Delivery {
  readonly body: Buffer;
  readonly isClose: boolean;
  /** Epoch milliseconds when the part was parsed, for the push-to-write latency. */
  readonly parsedAt: number;
  /** The node-wide channel id of a channel part (0: not a channel part). */
  readonly channelId: number;
  /** `Multiplex-Binary`: a binary message on a WebSocket; HTTP streams write the same bytes either way. */
  readonly isBinary: boolean;
  #chunk: Buffer | null = null;
  #event: Buffer | null = null;
  #eventChunk: Buffer | null = null;
  #webSocketFrame: Buffer | null = null;
  #webSocketEvent: Buffer | null = null;

  constructor(body: Buffer, isClose: boolean, parsedAt: number, channelId: number, isBinary: boolean) {
    this.body = body;
    this.isClose = isClose;
    this.parsedAt = parsedAt;
    this.channelId = channelId;
    this.isBinary = isBinary;
  }

  /**
   * The bytes for a stream: chunked (HTTP/1.1) or raw (HTTP/1.0, and HTTP/2, where they are the payload of DATA frames),
   * with an SSE `id:` line for event streams that resume. The same buffer goes to every stream of its kind.
   */
  frame(isChunked: boolean, hasEventIds: boolean): Buffer {
    if (hasEventIds && this.channelId > 0) {
      if (!isChunked) return (this.#event ??= Buffer.concat([Buffer.from(`id: ${this.channelId}\n`), this.body]));
      return (this.#eventChunk ??= frameChunk(this.frame(false, true)));
    }
    if (!isChunked) return this.body;
    return (this.#chunk ??= frameChunk(this.body));
  }

  /**
   * The part as one WebSocket message: binary when asked, or when the body is not text a client could accept; an SSE
   * event with its `id:` line for a WebSocket whose messages are SSE events, when history is kept.
   */
  webSocketFrame(hasEventIds: boolean): Buffer {
    if (hasEventIds && this.channelId > 0) {
      return (this.#webSocketEvent ??= webSocketFrame(this.frame(false, true), this.isBinary || !isUtf8(this.body)));
    }
    return (this.#webSocketFrame ??= webSocketFrame(this.body, this.isBinary || !isUtf8(this.body)));
  }
}

export function frameChunk(body: Buffer): Buffer {
  const size = body.length.toString(16);
  const frame = Buffer.allocUnsafe(size.length + body.length + 4);
  frame.write(size, 0, 'latin1');
  frame.writeUInt16BE(CRLF, size.length);
  body.copy(frame, size.length + 2);
  frame.writeUInt16BE(CRLF, frame.length - 2);
  return frame;
}

export const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

export function webSocketFrame(payload: Buffer, isBinary: boolean): Buffer {
  const opcode = isBinary ? OPCODE_BINARY : OPCODE_TEXT;
  sender ??= (createRequire(import.meta.url)('ws') as { Sender: Sender }).Sender;
  return Buffer.concat(sender.frame(payload, { fin: true, opcode, mask: false, readOnly: true, rsv1: false }));
}
