// The streaming parser of application/x-multiplex bodies: RFC 2046 multipart framing, Multiplex-* part headers, limits.
// (Over 300 lines: one state machine, whose states share the body's buffered views, the limits and the part being read.)

import { MalformedMultiplexError, PartHeadersTooLargeError, PartTooLargeError } from '../errors.ts';
import type { MuxError } from '../errors.ts';
import { CHANNEL_NAME } from './headers.ts';
import { quote } from '../redact.ts';

export interface Part {
  tokens: string[];
  channels: string[];
  isClose: boolean;
  /** `Multiplex-Binary`: a WebSocket gets it as a binary message (streams ignore it). */
  isBinary: boolean;
  body: Buffer;
}

export interface MultiplexParserLimits {
  maxPartBytes: number;
  /** everything between `--B` and the body: padding, line ends, header lines and the blank line */
  maxPartHeaderBytes: number;
  /** tokens + channels of one part */
  maxTargetsPerPart: number;
}

export interface MultiplexParserSink {
  onPart(part: Part): void;
  onError(err: MuxError): void;
}

// States. PREAMBLE and BODY both search for the delimiter; only BODY keeps the bytes.
const PREAMBLE = 0;
const BOUNDARY_END = 1; // just after `--B`
const CLOSE_DASH = 2; // after `--B-`
const PADDING = 3; // after `--B` and spaces or tabs
const BOUNDARY_CR = 4; // after `--B` [padding] CR
const HEADERS = 5;
const BODY = 6;
const DONE = 7;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const DASH = 0x2d;
const COLON = 0x3a;

const EMPTY = Buffer.alloc(0);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const TOKEN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Trims spaces and tabs (RFC 9110 OWS), nothing else. */
function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value.charCodeAt(start) === SP || value.charCodeAt(start) === HT)) start++;
  while (end > start && (value.charCodeAt(end - 1) === SP || value.charCodeAt(end - 1) === HT)) end--;
  return value.slice(start, end);
}

/**
 * Feed it the body chunk by chunk; it calls the sink for each part as soon as the delimiter closing it
 * has arrived. A part within one chunk is a zero-copy view of that chunk: do not reuse pushed buffers.
 */
/** Body pieces smaller than this are copied into a shared buffer of TAIL_BYTES rather than kept as views. */
const SMALL_PIECE = 512;
const TAIL_BYTES = 16_384;

export class MultiplexParser {
  readonly #limits: MultiplexParserLimits;
  readonly #sink: MultiplexParserSink;
  /** CRLF `--` boundary. CR occurs only at its start, so two matches can never overlap. */
  readonly #delimiter: Buffer;
  #state = PREAMBLE;
  #partCount = 0;
  /** Bytes of the delimiter matched at the end of the input so far (a delimiter split across chunks). */
  #matched: number;
  /** The current body: views of the pushed chunks, including the #matched tentative bytes at its end. */
  #segments: Buffer[] = [];
  #segmentBytes = 0;
  /** Where tiny pieces of the body are copied together; the last segment views it while #isLastInTail. */
  #tail: Buffer | null = null;
  #tailUsed = 0;
  #isLastInTail = false;
  #headerBytes = 0;
  /** Start of a header line that continues in the next chunk. */
  #pendingLine: Buffer[] = [];
  #tokens: string[] = [];
  #channels: string[] = [];
  #isClose = false;
  #isBinary = false;

  constructor(boundary: string, limits: MultiplexParserLimits, sink: MultiplexParserSink) {
    // the search relies on the boundary holding no CR or LF; multiplexBoundary() validated it
    if (boundary.length === 0 || boundary.length > 70 || /[\r\n]/.test(boundary)) {
      throw new RangeError(`invalid multipart boundary ${JSON.stringify(boundary)}`);
    }
    this.#delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    this.#limits = limits;
    this.#sink = sink;
    // the first delimiter may open the input without a CRLF: pretend the CRLF was already seen
    this.#matched = 2;
  }

  get isDone(): boolean {
    return this.#state === DONE;
  }

  get partCount(): number {
    return this.#partCount;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    const length = chunk.length;
    while (pos < length) {
      switch (this.#state) {
        case PREAMBLE:
        case BODY:
          pos = this.#scan(chunk, pos);
          break;
        case HEADERS:
          pos = this.#headerLine(chunk, pos);
          break;
        case DONE:
          return;
        default:
          pos = this.#boundaryEnd(chunk, pos);
      }
    }
  }

  end(): void {
    if (this.#state === DONE) return;
    const where =
      this.#state === PREAMBLE ? 'before the first boundary' : this.#state === BODY ? `in part ${this.#partCount + 1}` : `in the headers of part ${this.#partCount + 1}`;
    this.#fail(new MalformedMultiplexError(`truncated multiplex body: it ended ${where}, expected the close delimiter "--B--"`));
  }

  #fail(err: MuxError): void {
    this.#state = DONE;
    this.#segments = [];
    this.#isLastInTail = false;
    this.#pendingLine = [];
    this.#sink.onError(err);
  }

  #malformed(what: string): void {
    this.#fail(new MalformedMultiplexError(`part ${this.#partCount + 1}: ${what}`));
  }

  /** Searches the delimiter from chunk[pos]; returns where parsing goes on. */
  #scan(chunk: Buffer, pos: number): number {
    const delimiter = this.#delimiter;
    const delimiterLength = delimiter.length;
    const length = chunk.length;
    const isBody = this.#state === BODY;

    const matched = this.#matched;
    if (matched > 0) {
      const needed = delimiterLength - matched;
      const available = length - pos;
      const count = needed < available ? needed : available;
      let i = 0;
      while (i < count && chunk[pos + i] === delimiter[matched + i]) i++;
      if (i === needed) {
        this.#matched = 0;
        if (isBody) {
          this.#dropTentative(matched);
          this.#deliver(EMPTY);
        } else {
          this.#startPart();
        }
        return pos + needed;
      }
      if (i === available) {
        // still a prefix of the delimiter: tentative until the next chunk tells
        this.#matched = matched + available;
        if (isBody) this.#append(chunk.subarray(pos));
        return length;
      }
      // not a delimiter after all: the tentative bytes are body, and no delimiter can start inside them
      this.#matched = 0;
    }

    const index = chunk.indexOf(delimiter, pos);
    if (index !== -1) {
      if (isBody) this.#deliver(chunk.subarray(pos, index));
      else this.#startPart();
      return index + delimiterLength;
    }

    // the chunk may end with the start of a delimiter
    let tail = 0;
    for (let i = Math.max(pos, length - delimiterLength + 1); i < length; i++) {
      if (chunk[i] === CR && delimiter.compare(chunk, i, length, 0, length - i) === 0) {
        tail = length - i;
        break;
      }
    }
    this.#matched = tail;
    if (isBody) {
      this.#append(chunk.subarray(pos));
      if (this.#segmentBytes - tail > this.#limits.maxPartBytes) this.#fail(new PartTooLargeError(this.#limits.maxPartBytes));
    }
    return length;
  }

  #append(piece: Buffer): void {
    if (piece.length === 0) return;
    this.#segmentBytes += piece.length;
    if (piece.length >= SMALL_PIECE) {
      this.#segments.push(piece);
      this.#isLastInTail = false;
      return;
    }
    // Tiny chunks (a body trickled byte by byte) are copied together: a view per byte would cost ~100 bytes each.
    if (!this.#isLastInTail || this.#tailUsed + piece.length > TAIL_BYTES) {
      this.#tail = Buffer.allocUnsafe(TAIL_BYTES);
      this.#tailUsed = 0;
      this.#segments.push(this.#tail.subarray(0, 0));
      this.#isLastInTail = true;
    }
    piece.copy(this.#tail!, this.#tailUsed);
    this.#tailUsed += piece.length;
    this.#segments[this.#segments.length - 1] = this.#tail!.subarray(0, this.#tailUsed);
  }

  /** Removes from the end of the body the bytes that turned out to be the delimiter's start. */
  #dropTentative(count: number): void {
    const segments = this.#segments;
    this.#segmentBytes -= count;
    while (count > 0) {
      const last = segments[segments.length - 1]!;
      if (last.length <= count) {
        segments.pop();
        count -= last.length;
        this.#isLastInTail = false;
      } else {
        segments[segments.length - 1] = last.subarray(0, last.length - count);
        if (this.#isLastInTail) this.#tailUsed -= count;
        count = 0;
      }
    }
  }

  /** Delivers the current part: the buffered segments followed by `last`. */
  #deliver(last: Buffer): void {
    const segments = this.#segments;
    if (this.#segmentBytes + last.length > this.#limits.maxPartBytes) {
      this.#fail(new PartTooLargeError(this.#limits.maxPartBytes));
      return;
    }
    let body = last;
    if (segments.length > 0) {
      if (last.length > 0) segments.push(last);
      // the one copy of a part that spanned chunks
      body = segments.length === 1 ? segments[0]! : Buffer.concat(segments, this.#segmentBytes + last.length);
      this.#segments = [];
      this.#segmentBytes = 0;
      this.#isLastInTail = false;
    }
    const part: Part = { tokens: this.#tokens, channels: this.#channels, isClose: this.#isClose, isBinary: this.#isBinary, body };
    this.#partCount++;
    // the state is settled before the sink runs, so a throwing sink leaves the parser consistent
    this.#startPart();
    this.#sink.onPart(part);
  }

  /** A delimiter was found: what follows it is either a part or the end of the body. */
  #startPart(): void {
    this.#state = BOUNDARY_END;
    this.#headerBytes = 0;
    this.#tokens = [];
    this.#channels = [];
    this.#isClose = false;
    this.#isBinary = false;
  }

  /** After `--B`: transport padding then CRLF opens a part, `--` closes the body. */
  #boundaryEnd(chunk: Buffer, pos: number): number {
    const length = chunk.length;
    const start = pos;
    while (pos < length && this.#state !== HEADERS) {
      const byte = chunk[pos++]!;
      const state = this.#state;
      if (state === CLOSE_DASH) {
        if (byte !== DASH) return this.#badBoundaryLine(byte, length, 0);
        // the rest is the epilogue, ignored
        this.#state = DONE;
        return length;
      }
      if (state === BOUNDARY_CR) {
        if (byte !== LF) return this.#badBoundaryLine(byte, length, pos - 1 - start);
        this.#state = HEADERS;
      } else if (byte === SP || byte === HT) {
        this.#state = PADDING;
      } else if (byte === CR) {
        this.#state = BOUNDARY_CR;
      } else if (byte === DASH && state === BOUNDARY_END) {
        this.#state = CLOSE_DASH;
      } else {
        return this.#badBoundaryLine(byte, length, pos - 1 - start);
      }
    }
    // a lone dash (the start of `--`) is not header bytes; everything else after `--B` is
    if (this.#state !== CLOSE_DASH) {
      this.#headerBytes += pos - start;
      if (this.#headerBytes > this.#limits.maxPartHeaderBytes) this.#fail(new PartHeadersTooLargeError(this.#limits.maxPartHeaderBytes));
    }
    return pos;
  }

  /** `consumed`: the header bytes before the bad one in this chunk, so that the limit wins however the input is cut. */
  #badBoundaryLine(byte: number, length: number, consumed: number): number {
    if (this.#headerBytes + consumed > this.#limits.maxPartHeaderBytes) {
      this.#fail(new PartHeadersTooLargeError(this.#limits.maxPartHeaderBytes));
      return length;
    }
    this.#malformed(
      `unexpected byte 0x${byte.toString(16).padStart(2, '0')} after a boundary: expected optional spaces or tabs then CRLF, or "--" to close`,
    );
    return length;
  }

  /** Consumes one header line (or the part of it in this chunk); the blank line starts the body. */
  #headerLine(chunk: Buffer, pos: number): number {
    const length = chunk.length;
    const newline = chunk.indexOf(LF, pos);
    const end = newline === -1 ? length : newline + 1;
    this.#headerBytes += end - pos;
    if (this.#headerBytes > this.#limits.maxPartHeaderBytes) {
      this.#fail(new PartHeadersTooLargeError(this.#limits.maxPartHeaderBytes));
      return length;
    }
    if (newline === -1) {
      this.#pendingLine.push(chunk.subarray(pos));
      return length;
    }
    let line = chunk.subarray(pos, newline);
    if (this.#pendingLine.length > 0) {
      this.#pendingLine.push(line);
      line = Buffer.concat(this.#pendingLine);
      this.#pendingLine = [];
    }
    // CRLF only: a backend that strips CRLF from user input but not a lone LF must not let it start a header line.
    if (line.length === 0 || line[line.length - 1] !== CR) {
      this.#malformed('a part header line ends with a bare LF: expected CRLF');
      return length;
    }
    const lineEnd = line.length - 1;
    if (lineEnd === 0) {
      this.#state = BODY;
      this.#matched = 0;
    } else {
      this.#header(line, lineEnd);
    }
    return end;
  }

  #header(line: Buffer, lineEnd: number): void {
    if (line[0] === SP || line[0] === HT) {
      this.#malformed('a part header line starts with whitespace (obsolete line folding is not supported)');
      return;
    }
    const colon = line.indexOf(COLON);
    if (colon === -1 || colon >= lineEnd) {
      this.#malformed(`part header line ${quote(line.toString('latin1', 0, Math.min(lineEnd, 200)))} has no colon: expected "Name: value"`);
      return;
    }
    const name = line.toString('latin1', 0, colon);
    if (!HEADER_NAME.test(name)) {
      this.#malformed(`part header name ${quote(name)} is not a valid token`);
      return;
    }
    const lowerName = name.toLowerCase();
    if (lowerName === 'multiplex-token') {
      this.#addTargets(line.toString('latin1', colon + 1, lineEnd), this.#tokens, TOKEN, 'Multiplex-Token', 'a token: 1-64 characters from [A-Za-z0-9_.-]');
    } else if (lowerName === 'multiplex-channel') {
      this.#addTargets(line.toString('latin1', colon + 1, lineEnd), this.#channels, CHANNEL_NAME, 'Multiplex-Channel', 'a channel name: 1-128 characters from [A-Za-z0-9_.:@-]');
    } else if (lowerName === 'multiplex-close') {
      const value = this.#flag(line.toString('latin1', colon + 1, lineEnd), 'Multiplex-Close');
      if (value !== null) this.#isClose = value;
    } else if (lowerName === 'multiplex-binary') {
      const value = this.#flag(line.toString('latin1', colon + 1, lineEnd), 'Multiplex-Binary');
      if (value !== null) this.#isBinary = value;
    }
  }

  /** A yes/no header's value; null (and the body malformed) when it is neither. */
  #flag(raw: string, header: string): boolean | null {
    const value = trimOws(raw).toLowerCase();
    if (value === 'true' || value === '1' || value === 'yes') return true;
    if (value === 'false' || value === '0' || value === 'no') return false;
    this.#malformed(`${header}: ${quote(value)} is invalid: expected true, 1, yes, false, 0 or no`);
    return null;
  }

  #addTargets(value: string, into: string[], syntax: RegExp, header: string, expected: string): void {
    let start = 0;
    while (start <= value.length) {
      let end = value.indexOf(',', start);
      if (end === -1) end = value.length;
      const item = trimOws(value.slice(start, end));
      start = end + 1;
      if (item === '') continue;
      if (!syntax.test(item)) {
        this.#malformed(`${header}: ${quote(item)} is invalid: expected ${expected}`);
        return;
      }
      if (this.#tokens.length + this.#channels.length >= this.#limits.maxTargetsPerPart) {
        this.#malformed(`more than ${this.#limits.maxTargetsPerPart} tokens and channels`);
        return;
      }
      into.push(item);
    }
  }
}
