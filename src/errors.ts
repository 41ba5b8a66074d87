// Every error muxgate raises on purpose: a class with a stable `code` and a
// message that says what was wrong, what was expected and the value seen (outside input quoted through redact.ts).

import { quote } from './redact.ts';

export class MuxError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'MuxError';
    this.code = code;
  }
}

export class ConfigError extends MuxError {
  constructor(variable: string, value: string, expected: string) {
    super('MUX_ERR_CONFIG', `${variable}=${JSON.stringify(value)} is invalid: expected ${expected}`);
  }
}

/** The backend's CGI response head could not be parsed. */
export class BadCgiHeadError extends MuxError {
  constructor(message: string) {
    super('MUX_ERR_BAD_CGI_HEAD', message);
  }
}

/** An application/x-multiplex body broke the syntax (RFC 2046 framing or part headers). */
export class MalformedMultiplexError extends MuxError {
  constructor(message: string) {
    super('MUX_ERR_MALFORMED_MULTIPLEX', message);
  }
}

export class PartTooLargeError extends MuxError {
  constructor(limit: number) {
    super('MUX_ERR_PART_TOO_LARGE', `a part body exceeds MUX_MAX_PART_BYTES (${limit} bytes)`);
  }
}

export class PartHeadersTooLargeError extends MuxError {
  constructor(limit: number) {
    super('MUX_ERR_PART_HEADERS_TOO_LARGE', `part headers exceed ${limit} bytes`);
  }
}

/** A Multiplex-* header value (from a backend or a pusher) is not valid. */
export class BadHeaderValueError extends MuxError {
  constructor(header: string, value: string, expected: string) {
    super('MUX_ERR_BAD_HEADER', `${header}: ${quote(value, 200)} is invalid: expected ${expected}`);
  }
}

export class PushTooLargeError extends MuxError {
  constructor(limit: number) {
    super('MUX_ERR_PUSH_TOO_LARGE', `the push body exceeds MUX_MAX_PUSH_BYTES (${limit} bytes); the parts before the limit were routed`);
  }
}

/** FastCGI records or name-value pairs broke the FastCGI 1.0 format. */
export class MalformedFastcgiError extends MuxError {
  constructor(message: string) {
    super('MUX_ERR_MALFORMED_FASTCGI', message);
  }
}
