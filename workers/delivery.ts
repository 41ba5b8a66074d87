// One part on its way to this shard's streams: the body, framed for HTTP/1.1 chunked at most once.

const CRLF = 0x0d0a;

export class Delivery {
  readonly body: Buffer;
  readonly isClose: boolean;
  /** Epoch milliseconds when the part was parsed, for the push-to-write latency. */
  readonly parsedAt: number;
  private chunk: Buffer | null = null;

  constructor(body: Buffer, isClose: boolean, parsedAt: number) {
    this.body = body;
    this.isClose = isClose;
    this.parsedAt = parsedAt;
  }

  /** The body as one HTTP/1.1 chunk, built on first use and shared by every chunked stream. */
  chunked(): Buffer {
    if (this.chunk === null) this.chunk = frameChunk(this.body);
    return this.chunk;
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
