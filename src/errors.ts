// Every error muxgate raises on purpose: a class with a stable `code` and a
// message that says what was wrong, what was expected and the value seen (outside input quoted through redact.ts).

import { quote } from './redact.ts';

/** The stable codes: metrics label by them, the push API answers them, tests import them. */
export const ERR_CONFIG = 'MUX_ERR_CONFIG';
export const ERR_BAD_CGI_HEAD = 'MUX_ERR_BAD_CGI_HEAD';
export const ERR_MALFORMED_MULTIPLEX = 'MUX_ERR_MALFORMED_MULTIPLEX';
export const ERR_PART_TOO_LARGE = 'MUX_ERR_PART_TOO_LARGE';
export const ERR_PART_HEADERS_TOO_LARGE = 'MUX_ERR_PART_HEADERS_TOO_LARGE';
export const ERR_BAD_HEADER = 'MUX_ERR_BAD_HEADER';
export const ERR_PUSH_TOO_LARGE = 'MUX_ERR_PUSH_TOO_LARGE';
export const ERR_MALFORMED_FASTCGI = 'MUX_ERR_MALFORMED_FASTCGI';
export const ERR_BACKEND_UNAVAILABLE = 'MUX_ERR_BACKEND_UNAVAILABLE';

export type ErrorCode = typeof ERR_CONFIG | typeof ERR_BAD_CGI_HEAD | typeof ERR_MALFORMED_MULTIPLEX | typeof ERR_PART_TOO_LARGE
  | typeof ERR_PART_HEADERS_TOO_LARGE | typeof ERR_BAD_HEADER | typeof ERR_PUSH_TOO_LARGE | typeof ERR_MALFORMED_FASTCGI
  | typeof ERR_BACKEND_UNAVAILABLE;

export class MuxError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    // Each class its own name (ConfigError, PartTooLargeError, …), as stack traces and logs show it.
    this.name = new.target.name;
    this.code = code;
  }
}

export class ConfigError extends MuxError {
  constructor(variable: string, value: string, expected: string) {
    super(ERR_CONFIG, `${variable}=${JSON.stringify(value)} is invalid: expected ${expected}`);
  }
}

/** The backend's CGI response head could not be parsed. */
export class BadCgiHeadError extends MuxError {
  constructor(message: string) {
    super(ERR_BAD_CGI_HEAD, message);
  }
}

/** An application/x-multiplex body broke the syntax (RFC 2046 framing or part headers). */
export class MalformedMultiplexError extends MuxError {
  constructor(message: string) {
    super(ERR_MALFORMED_MULTIPLEX, message);
  }
}

export class PartTooLargeError extends MuxError {
  constructor(limit: number) {
    super(ERR_PART_TOO_LARGE, `a part body exceeds MUX_MAX_PART_BYTES (${limit} bytes)`);
  }
}

export class PartHeadersTooLargeError extends MuxError {
  constructor(limit: number) {
    super(ERR_PART_HEADERS_TOO_LARGE, `part headers exceed ${limit} bytes`);
  }
}

/** A Multiplex-* header value (from a backend or a pusher) is not valid. */
export class BadHeaderValueError extends MuxError {
  constructor(header: string, value: string, expected: string) {
    super(ERR_BAD_HEADER, `${header}: ${quote(value, 200)} is invalid: expected ${expected}`);
  }
}

export class PushTooLargeError extends MuxError {
  constructor(limit: number) {
    super(ERR_PUSH_TOO_LARGE, `the push body exceeds MUX_MAX_PUSH_BYTES (${limit} bytes); the parts before the limit were routed`);
  }
}

/** FastCGI records or name-value pairs broke the FastCGI 1.0 format. */
export class MalformedFastcgiError extends MuxError {
  constructor(message: string) {
    super(ERR_MALFORMED_FASTCGI, message);
  }
}

export class BackendUnavailableError extends MuxError {
  constructor(cause: string) {
    super(ERR_BACKEND_UNAVAILABLE, `the FastCGI backend could not be reached: ${cause}`);
  }
}
