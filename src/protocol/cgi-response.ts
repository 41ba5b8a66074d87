// The parser of a CGI response head (Status, headers, blank line) at the start of a backend's stdout.

import { BadCgiHeadError } from '../errors.ts';
import { quote, redact } from '../redact.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { STATUS_CODES } = process.getBuiltinModule('node:http');

export interface CgiHead {
  status: number;
  statusText: string;
  /** names as the backend sent them, in order, without Status */
  headers: Array<[string, string]>;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;

// RFC 9110 token
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// any control character but tab: a CR or LF here would split the response we build from it
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
// A final status only: a 1xx from the backend would make the client pair the next response with this request.
const STATUS = /^([2-9][0-9]{2})(?:[ \t]+(.*))?$/s;

function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value.charCodeAt(start) === SP || value.charCodeAt(start) === HT)) start++;
  while (end > start && (value.charCodeAt(end - 1) === SP || value.charCodeAt(end - 1) === HT)) end--;
  return value.slice(start, end);
}

export class CgiHeadParser {
  readonly #maxHeadBytes: number;
  #headBytes = 0;
  /** Start of a line that continues in the next chunk. */
  #pendingLine: Buffer[] = [];
  #headers: Array<[string, string]> = [];
  /** 0 until a Status header was seen */
  #status = 0;
  #statusText = '';
  #hasLocation = false;
  #isDone = false;
  /** The line end of the head, set by its first line: LF-only heads are common (nginx takes them), mixed ones are not. */
  #lineEnding: 'CRLF' | 'LF' | null = null;
  #lineCount = 0;

  constructor(maxHeadBytes: number) {
    this.#maxHeadBytes = maxHeadBytes;
  }

  /**
   * Feed stdout bytes until the head is complete. Returns null while incomplete; when complete returns
   * { head, rest } where rest is the body bytes that followed the blank line in this chunk (possibly empty).
   * Throws BadCgiHeadError on malformed input or when the head exceeds maxHeadBytes.
   * Do not call after it returned non-null.
   */
  push(chunk: Buffer): { head: CgiHead; rest: Buffer } | null {
    if (this.#isDone) throw new Error('CgiHeadParser.push() called after the head was complete');
    let pos = 0;
    while (pos < chunk.length) {
      const newline = chunk.indexOf(LF, pos);
      const end = newline === -1 ? chunk.length : newline + 1;
      this.#headBytes += end - pos;
      if (this.#headBytes > this.#maxHeadBytes) {
        throw new BadCgiHeadError(`the CGI response head exceeds ${this.#maxHeadBytes} bytes without an empty line ending it`);
      }
      if (newline === -1) {
        this.#pendingLine.push(chunk.subarray(pos));
        return null;
      }
      let line = chunk.subarray(pos, newline);
      if (this.#pendingLine.length > 0) {
        this.#pendingLine.push(line);
        line = Buffer.concat(this.#pendingLine);
        this.#pendingLine = [];
      }
      pos = end;
      const isCrlf = line.length > 0 && line[line.length - 1] === CR;
      this.#checkLineEnd(isCrlf ? 'CRLF' : 'LF');
      const lineEnd = isCrlf ? line.length - 1 : line.length;
      if (lineEnd === 0) {
        this.#isDone = true;
        return { head: this.#head(), rest: chunk.subarray(pos) };
      }
      this.#line(line, lineEnd);
    }
    return null;
  }

  /**
   * Every line ends as the first one did. A bare LF inside a CRLF head (or a CRLF inside an LF head) is how a value
   * the backend copied from user input, stripped of CRLF but not of a lone LF, would add a header or end the head.
   */
  #checkLineEnd(ending: 'CRLF' | 'LF'): void {
    this.#lineCount++;
    if (this.#lineEnding === null) this.#lineEnding = ending;
    else if (ending !== this.#lineEnding) {
      throw new BadCgiHeadError(
        `line ${this.#lineCount} of the CGI response head ends with ${ending === 'LF' ? 'a bare LF' : 'CRLF'} but the first line ended with ${this.#lineEnding}: expected one line end throughout the head`,
      );
    }
  }

  #line(line: Buffer, lineEnd: number): void {
    if (line[0] === SP || line[0] === HT) {
      throw new BadCgiHeadError('a CGI header line starts with whitespace: obsolete line folding is not allowed');
    }
    const colon = line.indexOf(COLON);
    if (colon === -1 || colon >= lineEnd) {
      throw new BadCgiHeadError(`CGI header line ${quote(line.toString('latin1', 0, Math.min(lineEnd, 200)))} has no colon: expected "Name: value"`);
    }
    const name = line.toString('latin1', 0, colon);
    if (!HEADER_NAME.test(name)) {
      throw new BadCgiHeadError(`CGI header name ${quote(name)} is not a valid token (RFC 9110)`);
    }
    const value = trimOws(line.toString('latin1', colon + 1, lineEnd));
    if (CONTROL.test(value)) {
      throw new BadCgiHeadError(`CGI header ${redact(name)}: ${quote(value)} holds a control character: expected visible characters, spaces and tabs`);
    }
    const lowerName = name.toLowerCase();
    if (lowerName === 'status') {
      if (this.#status !== 0) throw new BadCgiHeadError('the CGI response head has more than one Status header');
      const match = STATUS.exec(value);
      if (match === null) {
        throw new BadCgiHeadError(`CGI Status: ${quote(value)} is invalid: expected a final status, a 3-digit code from 200 to 999, and an optional reason`);
      }
      this.#status = Number(match[1]);
      this.#statusText = match[2] === undefined || match[2] === '' ? (STATUS_CODES[this.#status] ?? '') : match[2];
      return;
    }
    if (lowerName === 'location') this.#hasLocation = true;
    this.#headers.push([name, value]);
  }

  #head(): CgiHead {
    if (this.#status !== 0) return { status: this.#status, statusText: this.#statusText, headers: this.#headers };
    const status = this.#hasLocation ? 302 : 200;
    return { status, statusText: STATUS_CODES[status] ?? '', headers: this.#headers };
  }
}
