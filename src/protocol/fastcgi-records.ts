// FastCGI 1.0 records: the header's constants, the encoder, name-value pairs, and an incremental decoder that holds at
// most one record. fastcgi-client (through patches/) and the tests' and bench's FastCGI peers read and write them here.

import { MalformedFastcgiError } from '../errors.ts';
import type { MuxError } from '../errors.ts';

export const FCGI_VERSION_1 = 1;
export const FCGI_HEADER_BYTES = 8;
/** A record's content length is 16 bits; its padding length, 8. */
export const FCGI_MAX_CONTENT_BYTES = 0xffff;
/** The most one record spans: all the decoder ever holds. */
export const FCGI_MAX_RECORD_BYTES = FCGI_HEADER_BYTES + FCGI_MAX_CONTENT_BYTES + 0xff;

// Record types (FastCGI 1.0 §8).
export const FCGI_BEGIN_REQUEST = 1;
export const FCGI_ABORT_REQUEST = 2;
export const FCGI_END_REQUEST = 3;
export const FCGI_PARAMS = 4;
export const FCGI_STDIN = 5;
export const FCGI_STDOUT = 6;
export const FCGI_STDERR = 7;
export const FCGI_DATA = 8;
export const FCGI_GET_VALUES = 9;
export const FCGI_GET_VALUES_RESULT = 10;
export const FCGI_UNKNOWN_TYPE = 11;

/** FCGI_BEGIN_REQUEST: the role, and the flag that keeps the connection open after the request. */
export const FCGI_RESPONDER = 1;
export const FCGI_KEEP_CONN = 1;
/** FCGI_END_REQUEST: the protocol status of a request the application completed. */
export const FCGI_REQUEST_COMPLETE = 0;

const EMPTY = Buffer.alloc(0);

/**
 * A stream's content as records of at most 65,535 bytes, each padded to a multiple of 8 bytes (§3.3 recommends it),
 * in one buffer. Empty content is one empty record, which ends a stream.
 */
export function encodeRecords(type: number, requestId: number, content: Uint8Array): Buffer {
  const length = content.length;
  const fullRecords = Math.floor(length / FCGI_MAX_CONTENT_BYTES);
  const rest = length - fullRecords * FCGI_MAX_CONTENT_BYTES;
  // a full record (65,535 bytes) takes one byte of padding; the last record holds the rest, or is the one empty record
  const hasLast = rest > 0 || fullRecords === 0;
  const size = fullRecords * (FCGI_HEADER_BYTES + FCGI_MAX_CONTENT_BYTES + 1) + (hasLast ? FCGI_HEADER_BYTES + rest + padding(rest) : 0);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let from = 0; from < length || (from === 0 && hasLast); from += FCGI_MAX_CONTENT_BYTES) {
    const contentLength = Math.min(FCGI_MAX_CONTENT_BYTES, length - from);
    const paddingLength = padding(contentLength);
    out[at] = FCGI_VERSION_1;
    out[at + 1] = type;
    out[at + 2] = requestId >>> 8;
    out[at + 3] = requestId & 0xff;
    out[at + 4] = contentLength >>> 8;
    out[at + 5] = contentLength & 0xff;
    out[at + 6] = paddingLength;
    out[at + 7] = 0;
    at += FCGI_HEADER_BYTES;
    if (contentLength > 0) out.set(content.subarray(from, from + contentLength), at);
    at += contentLength;
    out.fill(0, at, at + paddingLength);
    at += paddingLength;
  }
  return out;
}

function padding(contentLength: number): number {
  return -contentLength & 7;
}

/** The body of an FCGI_BEGIN_REQUEST record (§5.1). */
export function beginRequestBody(role: number, flags: number): Buffer {
  return Buffer.from([role >>> 8, role & 0xff, flags, 0, 0, 0, 0, 0]);
}

/** The flags of an FCGI_BEGIN_REQUEST record's body. */
export function beginRequestFlags(body: Buffer): number {
  return body[2] ?? 0;
}

/** The body of an FCGI_END_REQUEST record (§5.5). */
export function endRequestBody(appStatus: number, protocolStatus: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeInt32BE(appStatus, 0);
  body[4] = protocolStatus;
  return body;
}

/**
 * The content of an FCGI_PARAMS stream: name-value pairs (§3.4) in one buffer, to be sent with encodeRecords, which
 * splits it into records. A length below 128 takes one byte, a longer one four with the high bit set.
 */
export function encodeParams(params: Record<string, string>): Buffer {
  // ASCII names and values (the usual case): lengths are string lengths, and the whole body is one latin1 string,
  // two native calls in all instead of two per string.
  let all = '';
  for (const name in params) all += name + params[name];
  if (!NON_ASCII.test(all)) {
    let text = '';
    for (const name in params) {
      const value = params[name]!;
      text += encodedLength(name.length) + encodedLength(value.length) + name + value;
    }
    return Buffer.from(text, 'latin1');
  }
  let size = 0;
  for (const name in params) {
    const nameLength = Buffer.byteLength(name);
    const valueLength = Buffer.byteLength(params[name]!);
    size += (nameLength > 127 ? 4 : 1) + (valueLength > 127 ? 4 : 1) + nameLength + valueLength;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const name in params) {
    const value = params[name]!;
    const nameLength = Buffer.byteLength(name);
    const valueLength = Buffer.byteLength(value);
    at = nameLength > 127 ? out.writeUInt32BE((nameLength | 0x80000000) >>> 0, at) : out.writeUInt8(nameLength, at);
    at = valueLength > 127 ? out.writeUInt32BE((valueLength | 0x80000000) >>> 0, at) : out.writeUInt8(valueLength, at);
    at += out.write(name, at);
    at += out.write(value, at);
  }
  return out;
}

const NON_ASCII = /[^\x00-\x7f]/;

/** A name-value pair's length as latin1 characters: one below 128, else four with the high bit set. */
function encodedLength(length: number): string {
  if (length < 128) return String.fromCharCode(length);
  return String.fromCharCode(((length >>> 24) & 0x7f) | 0x80, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
}

/**
 * The name-value pairs of a whole FCGI_PARAMS (or FCGI_GET_VALUES) stream, names and values as UTF-8; a name given
 * twice keeps its last value. Throws MalformedFastcgiError when a pair is cut short.
 */
export function decodeParams(content: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let at = 0;
  while (at < content.length) {
    const start = at;
    const nameLength = lengthAt(content, at, start);
    at += content[at]! > 127 ? 4 : 1;
    const valueLength = lengthAt(content, at, start);
    at += content[at]! > 127 ? 4 : 1;
    if (content.length - at < nameLength + valueLength) {
      throw new MalformedFastcgiError(`the name-value pair at byte ${start} declares ${nameLength + valueLength} bytes, but ${content.length - at} are left`);
    }
    params.set(content.toString('utf8', at, at + nameLength), content.toString('utf8', at + nameLength, at + nameLength + valueLength));
    at += nameLength + valueLength;
  }
  return params;
}

/** A length of a name-value pair: one byte below 128, else four with the high bit set (whatever the length). */
function lengthAt(content: Buffer, at: number, pairStart: number): number {
  if (at >= content.length) throw new MalformedFastcgiError(`the name-value pair at byte ${pairStart} is cut short in its lengths`);
  const first = content[at]!;
  if (first < 128) return first;
  if (content.length - at < 4) throw new MalformedFastcgiError(`the name-value pair at byte ${pairStart} is cut short in its lengths`);
  return content.readUInt32BE(at) & 0x7fffffff;
}

export interface RecordSink {
  /** A record's content: a view of the pushed chunk when the record lay in one, else a copy of its pieces. */
  onRecord(type: number, requestId: number, content: Buffer): void;
  onError(error: MuxError): void;
}

// States.
const HEAD = 0;
const CONTENT = 1;
const PADDING = 2;
const DONE = 3;

/**
 * Feed it a connection's bytes chunk by chunk; it gives the sink each record as soon as its content is complete
 * (before its padding), the same records however the bytes are cut. It holds at most one record
 * (FCGI_MAX_RECORD_BYTES) and no view of a chunk it has finished with. A head of another protocol version, or a
 * begin-request, end-request or unknown-type record whose body is not the 8 bytes of §5, ends it with a
 * MalformedFastcgiError: nothing after it can be trusted.
 */
export class RecordDecoder {
  readonly #sink: RecordSink;
  #state = HEAD;
  /** A head split across chunks. */
  readonly #head = Buffer.alloc(FCGI_HEADER_BYTES);
  #headBytes = 0;
  #type = 0;
  #requestId = 0;
  #paddingLeft = 0;
  /** Content split across chunks, copied together. */
  #content = EMPTY;
  #contentBytes = 0;

  constructor(sink: RecordSink) {
    this.#sink = sink;
  }

  get isDone(): boolean {
    return this.#state === DONE;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    const length = chunk.length;
    while (pos < length) {
      switch (this.#state) {
        case HEAD:
          pos = this.#readHead(chunk, pos);
          break;
        case CONTENT: {
          const count = Math.min(this.#content.length - this.#contentBytes, length - pos);
          chunk.copy(this.#content, this.#contentBytes, pos, pos + count);
          this.#contentBytes += count;
          pos += count;
          if (this.#contentBytes === this.#content.length) {
            const content = this.#content;
            this.#content = EMPTY;
            this.#deliver(content);
          }
          break;
        }
        case PADDING: {
          const count = Math.min(this.#paddingLeft, length - pos);
          this.#paddingLeft -= count;
          pos += count;
          if (this.#paddingLeft === 0) this.#state = HEAD;
          break;
        }
        default:
          return;
      }
    }
  }

  /** Reads a head from chunk[pos], and the whole record when the chunk holds it; returns where decoding goes on. */
  #readHead(chunk: Buffer, pos: number): number {
    let head = chunk;
    let at = pos;
    if (this.#headBytes > 0 || chunk.length - pos < FCGI_HEADER_BYTES) {
      const count = Math.min(FCGI_HEADER_BYTES - this.#headBytes, chunk.length - pos);
      chunk.copy(this.#head, this.#headBytes, pos, pos + count);
      this.#headBytes += count;
      pos += count;
      if (this.#headBytes < FCGI_HEADER_BYTES) return pos;
      this.#headBytes = 0;
      head = this.#head;
      at = 0;
    } else {
      pos += FCGI_HEADER_BYTES;
    }
    const type = head[at + 1]!;
    const contentLength = (head[at + 4]! << 8) | head[at + 5]!;
    if (head[at] !== FCGI_VERSION_1) {
      this.#fail(`a FastCGI record of version ${head[at]}, expected ${FCGI_VERSION_1}`);
      return chunk.length;
    }
    if (contentLength !== 8 && (type === FCGI_BEGIN_REQUEST || type === FCGI_END_REQUEST || type === FCGI_UNKNOWN_TYPE)) {
      this.#fail(`a FastCGI record of type ${type} with ${contentLength} bytes of content, expected 8`);
      return chunk.length;
    }
    this.#type = type;
    this.#requestId = (head[at + 2]! << 8) | head[at + 3]!;
    this.#paddingLeft = head[at + 6]!;
    if (chunk.length - pos >= contentLength) {
      this.#deliver(contentLength === 0 ? EMPTY : chunk.subarray(pos, pos + contentLength));
      return pos + contentLength;
    }
    this.#state = CONTENT;
    this.#content = Buffer.allocUnsafe(contentLength);
    this.#contentBytes = 0;
    return pos;
  }

  #fail(message: string): void {
    this.#state = DONE;
    this.#content = EMPTY;
    this.#sink.onError(new MalformedFastcgiError(message));
  }

  #deliver(content: Buffer): void {
    this.#state = this.#paddingLeft > 0 ? PADDING : HEAD;
    this.#sink.onRecord(this.#type, this.#requestId, content);
  }
}
