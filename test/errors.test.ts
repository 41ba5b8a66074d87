// Every error class has its own name and a stable code, exported for metrics, the push API and tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as errors from '../src/errors.ts';

test('each error class is named after itself and carries its exported code', () => {
  const made: Array<[Error & { code: string }, string, string]> = [
    [new errors.ConfigError('MUX_X', 'y', 'z'), 'ConfigError', errors.ERR_CONFIG],
    [new errors.BadCgiHeadError('m'), 'BadCgiHeadError', errors.ERR_BAD_CGI_HEAD],
    [new errors.MalformedMultiplexError('m'), 'MalformedMultiplexError', errors.ERR_MALFORMED_MULTIPLEX],
    [new errors.PartTooLargeError(1), 'PartTooLargeError', errors.ERR_PART_TOO_LARGE],
    [new errors.PartHeadersTooLargeError(1), 'PartHeadersTooLargeError', errors.ERR_PART_HEADERS_TOO_LARGE],
    [new errors.BadHeaderValueError('Multiplex-Hold', 'x', 'stream'), 'BadHeaderValueError', errors.ERR_BAD_HEADER],
    [new errors.PushTooLargeError(1), 'PushTooLargeError', errors.ERR_PUSH_TOO_LARGE],
    [new errors.MalformedFastcgiError('m'), 'MalformedFastcgiError', errors.ERR_MALFORMED_FASTCGI],
    [new errors.BackendUnavailableError('m'), 'BackendUnavailableError', errors.ERR_BACKEND_UNAVAILABLE],
  ];
  for (const [error, name, code] of made) {
    assert.ok(error instanceof errors.MuxError);
    assert.equal(error.name, name);
    assert.equal(error.code, code);
    assert.match(String(error), new RegExp(`^${name}: `));
  }
  const codes = Object.entries(errors).filter(([key]) => key.startsWith('ERR_')).map(([, value]) => value);
  assert.equal(new Set(codes).size, made.length, 'every code is used by one class');
  for (const code of codes) assert.match(String(code), /^MUX_ERR_[A-Z_]+$/);
});
