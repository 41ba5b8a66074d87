import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MultiplexParser } from '../src/protocol/multiplex-parser.ts';
import type { MultiplexParserLimits, Part } from '../src/protocol/multiplex-parser.ts';
import { MalformedMultiplexError, MuxError, PartHeadersTooLargeError, PartTooLargeError } from '../src/errors.ts';

const LIMITS: MultiplexParserLimits = { maxPartBytes: 1 << 20, maxPartHeaderBytes: 8192, maxTargetsPerPart: 1000 };

interface Outcome {
  parts: Part[];
  errors: MuxError[];
  isDone: boolean;
  partCount: number;
}

/** Runs the parser over the chunks, then end(), recording what the sink saw. */
function parse(chunks: Buffer | string | Array<Buffer | string>, limits = LIMITS, boundary = 'B', callEnd = true): Outcome {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  const outcome: Outcome = { parts: [], errors: [], isDone: false, partCount: 0 };
  const parser = new MultiplexParser(boundary, limits, {
    onPart(part) {
      assert.equal(outcome.errors.length, 0, 'a part was delivered after an error');
      outcome.parts.push(part);
    },
    onError(err) {
      outcome.errors.push(err);
    },
  });
  for (const chunk of list) parser.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
  if (callEnd) parser.end();
  outcome.isDone = parser.isDone;
  outcome.partCount = parser.partCount;
  assert.equal(outcome.partCount, outcome.parts.length);
  assert.ok(outcome.errors.length <= 1, 'more than one error reported');
  return outcome;
}

/** Parts as plain data, for deepEqual. */
function plain(parts: Part[]): Array<{ tokens: string[]; channels: string[]; isClose: boolean; isBinary: boolean; body: string }> {
  return parts.map((p) => ({ tokens: p.tokens, channels: p.channels, isClose: p.isClose, isBinary: p.isBinary, body: p.body.toString('latin1') }));
}

function part(body: string, tokens: string[] = [], channels: string[] = [], isClose = false, isBinary = false) {
  return { tokens, channels, isClose, isBinary, body };
}

function assertOk(outcome: Outcome): void {
  assert.deepEqual(outcome.errors, []);
  assert.equal(outcome.isDone, true);
}

function assertError(outcome: Outcome, type: abstract new (...args: never[]) => MuxError, code: string, message?: RegExp): void {
  assert.equal(outcome.errors.length, 1, 'expected one error');
  const err = outcome.errors[0]!;
  assert.ok(err instanceof type, `expected ${type.name}, got ${err.constructor.name}: ${err.message}`);
  assert.equal(err.code, code);
  if (message) assert.match(err.message, message);
  assert.equal(outcome.isDone, true);
}

const MALFORMED = 'MUX_ERR_MALFORMED_MULTIPLEX';

describe('MultiplexParser framing', () => {
  it('parses one part with a token', () => {
    const out = parse('--B\r\nMultiplex-Token: t1\r\n\r\nhello\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('hello', ['t1'])]);
  });

  it('parses several parts in order', () => {
    const out = parse('--B\r\nMultiplex-Token: a\r\n\r\none\r\n--B\r\nMultiplex-Token: b\r\n\r\ntwo\r\n--B\r\nMultiplex-Token: a\r\n\r\nthree\r\n--B--\r\n');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('one', ['a']), part('two', ['b']), part('three', ['a'])]);
  });

  it('ignores the preamble, with the first delimiter after a CRLF', () => {
    const out = parse('This is a preamble --B not at line start\r\n--B\r\nMultiplex-Token: t\r\n\r\nx\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x', ['t'])]);
  });

  it('accepts a CRLF before the first delimiter at the start of input', () => {
    const out = parse('\r\n--B\r\n\r\nx\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x')]);
  });

  it('does not take --B inside a preamble line for a delimiter', () => {
    const out = parse('x--B\r\n--B\r\n\r\ny\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('y')]);
  });

  it('ignores the epilogue after the close delimiter', () => {
    const out = parse('--B\r\n\r\nx\r\n--B--\r\nepilogue\r\n--B\r\n\r\nnot a part\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x')]);
  });

  it('accepts a body with no parts (the close delimiter alone)', () => {
    for (const input of ['--B--', '--B--\r\n', 'preamble\r\n--B--']) {
      const out = parse(input);
      assertOk(out);
      assert.deepEqual(out.parts, []);
    }
  });

  it('accepts transport padding after a boundary', () => {
    const out = parse('--B \t \r\n\r\nx\r\n--B\t\r\n\r\ny\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x'), part('y')]);
  });

  it('keeps CRLFs and delimiter look-alikes inside a body', () => {
    const body = '\r\n\r\n-B\r\n-B--B\r\n- -B\r\n--C\r\n';
    const out = parse(`--B\r\n\r\n${body}\r\n--B--`);
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part(body)]);
  });

  it('delivers empty bodies', () => {
    const out = parse('--B\r\nMultiplex-Token: a\r\n\r\n\r\n--B\r\n\r\n\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('', ['a']), part('')]);
  });

  it('keeps binary bytes verbatim', () => {
    const body = Buffer.from([0, 255, 13, 10, 13, 0x2d, 0x2d, 0x42 ^ 1, 128]);
    const out = parse([Buffer.from('--B\r\n\r\n'), body, Buffer.from('\r\n--B--')]);
    assertOk(out);
    assert.deepEqual(out.parts[0]!.body, body);
  });

  it('works with a boundary of RFC 2046 special characters', () => {
    const boundary = "a b'()+_,-./:=?z";
    const out = parse(`--${boundary}\r\n\r\nx\r\n--${boundary}--`, LIMITS, boundary);
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x')]);
  });

  it('delivers a part as soon as its closing delimiter arrives', () => {
    const parts: Part[] = [];
    const parser = new MultiplexParser('B', LIMITS, { onPart: (p) => parts.push(p), onError: (e) => assert.fail(e) });
    parser.push(Buffer.from('--B\r\nMultiplex-Token: t\r\n\r\nfirst'));
    assert.equal(parts.length, 0);
    parser.push(Buffer.from('\r\n--B'));
    assert.equal(parts.length, 1);
    assert.equal(parser.partCount, 1);
    assert.equal(parts[0]!.body.toString(), 'first');
    assert.equal(parser.isDone, false);
    parser.push(Buffer.from('--'));
    assert.equal(parser.isDone, true);
  });

  it('ignores input after the close delimiter and after an error', () => {
    const closed = parse(['--B--', '\r\n--B\r\n\r\nx\r\n--B--']);
    assertOk(closed);
    assert.deepEqual(closed.parts, []);
    const failed = parse(['--Bx', '\r\n--B\r\n\r\nx\r\n--B--']);
    assertError(failed, MalformedMultiplexError, MALFORMED);
    assert.deepEqual(failed.parts, []);
  });

  it('rejects the boundary in the constructor when it could not be a multipart boundary', () => {
    for (const boundary of ['', 'a\r\nb', 'x'.repeat(71)]) {
      assert.throws(() => new MultiplexParser(boundary, LIMITS, { onPart() {}, onError() {} }), RangeError);
    }
  });

  const afterBoundary: Array<[string, string]> = [
    ['a letter', '--B\r\n\r\nx\r\n--Bx\r\n\r\ny\r\n--B--'],
    ['a single dash', '--B\r\n\r\nx\r\n--B-\r\n'],
    ['padding then a letter', '--B\r\n\r\nx\r\n--B  x\r\n'],
    ['padding then --', '--B\r\n\r\nx\r\n--B --'],
    ['CR without LF', '--B\r\n\r\nx\r\n--B\rx'],
    ['a bare LF', '--B\r\n\r\nx\r\n--B\n\r\ny\r\n--B--'],
    ['a longer boundary', '--B\r\n\r\nx\r\n--BB\r\n\r\ny\r\n--B--'],
  ];
  for (const [name, input] of afterBoundary) {
    it(`rejects ${name} after a boundary, keeping the parts before`, () => {
      const out = parse(input);
      assertError(out, MalformedMultiplexError, MALFORMED, /after a boundary/);
      assert.deepEqual(plain(out.parts), [part('x')]);
    });
  }

  it('rejects garbage after the first boundary', () => {
    const out = parse('--Bx\r\n\r\ny\r\n--B--');
    assertError(out, MalformedMultiplexError, MALFORMED, /after a boundary/);
    assert.deepEqual(out.parts, []);
  });

  const truncated: Array<[string, string, number]> = [
    ['empty input', '', 0],
    ['a preamble only', 'hello\r\n', 0],
    ['a partial first delimiter', '--', 0],
    ['headers', '--B\r\nMultiplex-Token: a', 0],
    ['a body', '--B\r\n\r\nabc', 0],
    ['a body ending in a partial delimiter', '--B\r\n\r\nabc\r\n--', 0],
    ['after a boundary', '--B\r\n\r\nabc\r\n--B', 1],
    ['after --B-', '--B\r\n\r\nabc\r\n--B-', 1],
    ['after the boundary line', '--B\r\n\r\nabc\r\n--B\r\n', 1],
  ];
  for (const [name, input, delivered] of truncated) {
    it(`end() reports a truncated body: ${name}`, () => {
      const out = parse(input);
      assertError(out, MalformedMultiplexError, MALFORMED, /truncated/);
      assert.equal(out.parts.length, delivered);
    });
  }

  it('end() reports nothing after the close delimiter, and nothing twice', () => {
    const errors: MuxError[] = [];
    const parser = new MultiplexParser('B', LIMITS, { onPart() {}, onError: (e) => errors.push(e) });
    parser.push(Buffer.from('--B'));
    assert.equal(parser.isDone, false);
    parser.end();
    parser.end();
    assert.equal(errors.length, 1);
    assert.equal(parser.isDone, true);
  });
});

describe('MultiplexParser part headers', () => {
  it('reads a part with no headers (CRLF right after the boundary line)', () => {
    const out = parse('--B\r\n\r\nbody\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('body')]);
  });

  // A backend that strips CRLF from user input but not a lone LF would let a user add a target.
  const bareLf: Array<[string, string]> = [
    ['between two header lines', 'Multiplex-Channel: x\nMultiplex-Token: victim\r\n\r\n'],
    ['ending the last header line', 'Multiplex-Token: a\n\r\n'],
    ['as the blank line', 'Multiplex-Token: a\r\n\n'],
    ['ending a line and as the blank line', 'Multiplex-Token: a\n\n'],
    ['as the blank line of a part without headers', '\n'],
  ];
  for (const [name, headers] of bareLf) {
    it(`rejects a bare LF ${name} in part headers, keeping the parts before`, () => {
      const out = parse(`--B\r\n\r\nfirst\r\n--B\r\n${headers}x\r\n--B--`);
      assertError(out, MalformedMultiplexError, MALFORMED, /^part 2: a part header line ends with a bare LF: expected CRLF$/);
      assert.deepEqual(plain(out.parts), [part('first')]);
    });
  }

  it('rejects a bare LF in part headers wherever the body is cut', () => {
    const input = Buffer.from('--B\r\nMultiplex-Channel: x\nMultiplex-Token: victim\r\n\r\nx\r\n--B--', 'latin1');
    for (let at = 0; at <= input.length; at++) {
      const out = parse([input.subarray(0, at), input.subarray(at)]);
      assertError(out, MalformedMultiplexError, MALFORMED, /bare LF/);
      assert.deepEqual(out.parts, []);
    }
  });

  it('matches header names case-insensitively', () => {
    const out = parse('--B\r\nmultiplex-token: a\r\nMULTIPLEX-CHANNEL: c\r\nMultiplex-close: true\r\n\r\nx\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x', ['a'], ['c'], true)]);
  });

  it('accumulates repeated Multiplex-Token and Multiplex-Channel lists, skipping empty elements', () => {
    const out = parse(
      '--B\r\nMultiplex-Token: a, b ,c\r\nMultiplex-Channel:news,, sport:eu \r\nMultiplex-Token:\td\t, ,\r\nMultiplex-Token:\r\nMultiplex-Channel: u@x\r\n\r\nx\r\n--B--',
    );
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x', ['a', 'b', 'c', 'd'], ['news', 'sport:eu', 'u@x'])]);
  });

  it('keeps duplicate targets as sent (the router decides)', () => {
    const out = parse('--B\r\nMultiplex-Token: a, a\r\n\r\nx\r\n--B--');
    assertOk(out);
    assert.deepEqual(out.parts[0]!.tokens, ['a', 'a']);
  });

  // The two boolean part headers share their values.
  const booleans = [['true', true], ['TRUE', true], ['1', true], ['yes', true], [' Yes ', true], ['false', false], ['0', false], ['no', false]] as const;
  for (const [value, isTrue] of booleans) {
    it(`reads Multiplex-Close: ${JSON.stringify(value)} as ${isTrue}`, () => {
      const out = parse(`--B\r\nMultiplex-Token: a\r\nMultiplex-Close:${value}\r\n\r\n\r\n--B--`);
      assertOk(out);
      assert.equal(out.parts[0]!.isClose, isTrue);
    });
    it(`reads Multiplex-Binary: ${JSON.stringify(value)} as ${isTrue}`, () => {
      const out = parse(`--B\r\nMultiplex-Token: a\r\nMultiplex-Binary:${value}\r\n\r\n\x00\xff\r\n--B--`);
      assertOk(out);
      assert.deepEqual(plain(out.parts), [part('\x00\xff', ['a'], [], false, isTrue)]);
    });
  }

  it('reads Multiplex-Binary per part: the next part is text again unless it says so, the last value of a repeated header wins', () => {
    const out = parse(
      '--B\r\nMultiplex-Binary: true\r\nMultiplex-Token: a\r\n\r\nbin\r\n--B\r\nMultiplex-Token: a\r\n\r\ntext\r\n' +
      '--B\r\nMultiplex-Binary: yes\r\nMultiplex-Binary: no\r\nMultiplex-Close: true\r\nMultiplex-Channel: c\r\n\r\nlast\r\n--B--',
    );
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('bin', ['a'], [], false, true), part('text', ['a']), part('last', [], ['c'], true, false)]);
  });

  it('ignores other part headers', () => {
    const out = parse('--B\r\nContent-Type: text/html\r\nX-Whatever: \x01anything\r\nMultiplex-Token: a\r\n\r\nx\r\n--B--');
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x', ['a'])]);
  });

  it('accepts the longest valid token and channel', () => {
    const token = 'A'.repeat(64);
    const channel = 'c'.repeat(128);
    const out = parse(`--B\r\nMultiplex-Token: ${token}\r\nMultiplex-Channel: ${channel}\r\n\r\nx\r\n--B--`);
    assertOk(out);
    assert.deepEqual(plain(out.parts), [part('x', [token], [channel])]);
  });

  const badHeaders: Array<[string, string, RegExp]> = [
    ['a token with a space', 'Multiplex-Token: a b', /Multiplex-Token: "a b" is invalid/],
    ['a token too long', `Multiplex-Token: ${'a'.repeat(65)}`, /Multiplex-Token/],
    ['a token with a colon', 'Multiplex-Token: a:b', /Multiplex-Token/],
    ['a token with a non-ASCII byte', 'Multiplex-Token: caf\xe9', /Multiplex-Token/],
    ['a channel with a slash', 'Multiplex-Channel: a/b', /Multiplex-Channel: "a\/b" is invalid/],
    ['a channel too long', `Multiplex-Channel: ${'c'.repeat(129)}`, /Multiplex-Channel/],
    ['a bad Multiplex-Close', 'Multiplex-Close: maybe', /Multiplex-Close: "maybe" is invalid/],
    ['a bad Multiplex-Binary', 'Multiplex-Binary: maybe', /Multiplex-Binary: "maybe" is invalid: expected true, 1, yes, false, 0 or no/],
    ['an empty Multiplex-Binary', 'Multiplex-Binary: ', /Multiplex-Binary: "" is invalid/],
    ['a Multiplex-Binary list', 'Multiplex-Binary: true, true', /Multiplex-Binary: "true, true" is invalid/],
    ['a line without a colon', 'Multiplex-Token a', /no colon/],
    ['an empty header name', ': a', /not a valid token/],
    ['a header name with a space', 'Multiplex Token: a', /not a valid token/],
    ['obsolete line folding', 'Multiplex-Token: a,\r\n b', /whitespace/],
  ];
  for (const [name, header, message] of badHeaders) {
    it(`rejects ${name}, keeping the parts before`, () => {
      const out = parse(`--B\r\n\r\nfirst\r\n--B\r\n${header}\r\n\r\nx\r\n--B--`);
      assertError(out, MalformedMultiplexError, MALFORMED, message);
      assert.match(out.errors[0]!.message, /^part 2: /);
      assert.deepEqual(plain(out.parts), [part('first')]);
    });
  }
});

describe('MultiplexParser limits', () => {
  const withLimits = (overrides: Partial<MultiplexParserLimits>): MultiplexParserLimits => ({ ...LIMITS, ...overrides });

  it('accepts a body of exactly maxPartBytes and rejects one byte more', () => {
    const ok = parse('--B\r\n\r\n0123456789\r\n--B--', withLimits({ maxPartBytes: 10 }));
    assertOk(ok);
    assert.equal(ok.parts[0]!.body.length, 10);
    const tooLarge = parse('--B\r\n\r\nfirst\r\n--B\r\n\r\n0123456789A\r\n--B--', withLimits({ maxPartBytes: 10 }));
    assertError(tooLarge, PartTooLargeError, 'MUX_ERR_PART_TOO_LARGE', /10 bytes/);
    assert.deepEqual(plain(tooLarge.parts), [part('first')]);
  });

  it('counts a spanning body against maxPartBytes the same way', () => {
    const chunks = ['--B\r\n\r\n01234', '56789', '\r\n--', 'B--'];
    assertOk(parse(chunks, withLimits({ maxPartBytes: 10 })));
    assertError(parse(['--B\r\n\r\n01234', '56789A', '\r\n--B--'], withLimits({ maxPartBytes: 10 })), PartTooLargeError, 'MUX_ERR_PART_TOO_LARGE');
  });

  it('reports a too-large body as soon as it is buffered, before any delimiter', () => {
    const errors: MuxError[] = [];
    const parser = new MultiplexParser('B', withLimits({ maxPartBytes: 10 }), { onPart: () => assert.fail('no part'), onError: (e) => errors.push(e) });
    parser.push(Buffer.from('--B\r\n\r\n0123456789'));
    assert.equal(errors.length, 0);
    // a trailing partial delimiter is not yet body
    parser.push(Buffer.from('\r\n--'));
    assert.equal(errors.length, 0);
    parser.push(Buffer.from('x'));
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof PartTooLargeError);
    assert.equal(parser.isDone, true);
  });

  it('never holds more than maxPartBytes of an endless body', () => {
    const errors: MuxError[] = [];
    const parser = new MultiplexParser('B', withLimits({ maxPartBytes: 1000 }), { onPart: () => assert.fail('no part'), onError: (e) => errors.push(e) });
    parser.push(Buffer.from('--B\r\n\r\n'));
    const chunk = Buffer.alloc(300, 0x61);
    let pushed = 0;
    while (errors.length === 0) {
      parser.push(chunk);
      pushed += chunk.length;
      assert.ok(pushed <= 1200, 'the limit was not enforced');
    }
    assert.equal(pushed, 1200);
  });

  it('accepts part headers of exactly maxPartHeaderBytes and rejects one byte more', () => {
    // header bytes: everything from after `--B` to the end of the blank line
    const head = '\r\nMultiplex-Token: a\r\n\r\n';
    const input = `--B${head}x\r\n--B--`;
    assertOk(parse(input, withLimits({ maxPartHeaderBytes: head.length })));
    const out = parse(input, withLimits({ maxPartHeaderBytes: head.length - 1 }));
    assertError(out, PartHeadersTooLargeError, 'MUX_ERR_PART_HEADERS_TOO_LARGE', new RegExp(`${head.length - 1} bytes`));
  });

  it('counts transport padding as header bytes, and rejects an endless header line early', () => {
    assertError(parse(`--B${' '.repeat(20)}\r\n\r\nx\r\n--B--`, withLimits({ maxPartHeaderBytes: 20 })), PartHeadersTooLargeError, 'MUX_ERR_PART_HEADERS_TOO_LARGE');
    const errors: MuxError[] = [];
    const parser = new MultiplexParser('B', withLimits({ maxPartHeaderBytes: 100 }), { onPart() {}, onError: (e) => errors.push(e) });
    parser.push(Buffer.from('--B\r\nX-Long: '));
    parser.push(Buffer.alloc(50, 0x61));
    assert.equal(errors.length, 0);
    parser.push(Buffer.alloc(50, 0x61));
    assert.ok(errors[0] instanceof PartHeadersTooLargeError);
  });

  it('resets the header count for each part, and a close delimiter needs no header room', () => {
    const head = '\r\nMultiplex-Token: a\r\n\r\n';
    const input = `--B${head}x\r\n--B${head}y\r\n--B--`;
    const out = parse([...input].map((c) => c), withLimits({ maxPartHeaderBytes: head.length }));
    assertOk(out);
    assert.equal(out.parts.length, 2);
    assertOk(parse(['--B-', '-'], withLimits({ maxPartHeaderBytes: 0 })));
  });

  it('accepts maxTargetsPerPart tokens and channels and rejects one more', () => {
    const limits = withLimits({ maxTargetsPerPart: 3 });
    assertOk(parse('--B\r\nMultiplex-Token: a, b\r\nMultiplex-Channel: c\r\n\r\nx\r\n--B--', limits));
    const out = parse('--B\r\nMultiplex-Token: a, b\r\nMultiplex-Channel: c\r\nMultiplex-Token: d\r\n\r\nx\r\n--B--', limits);
    assertError(out, MalformedMultiplexError, MALFORMED, /more than 3 tokens and channels/);
    assert.deepEqual(out.parts, []);
  });
});

describe('MultiplexParser buffers', () => {
  it('hands out a part within one chunk as a view of that chunk', () => {
    const chunk = Buffer.from('--B\r\nMultiplex-Token: a\r\n\r\nhello\r\n--B--');
    const out = parse(chunk);
    const body = out.parts[0]!.body;
    assert.equal(body.buffer, chunk.buffer);
    assert.equal(body.byteOffset, chunk.byteOffset + chunk.indexOf('hello'));
  });

  it('finds a delimiter split at every position across two chunks', () => {
    const input = '--B\r\nMultiplex-Token: a\r\n\r\nhello\r\n--B\r\n\r\n\r\n--B--';
    const whole = plain(parse(input).parts);
    assert.deepEqual(whole, [part('hello', ['a']), part('')]);
    for (let cut = 0; cut <= input.length; cut++) {
      const out = parse([input.slice(0, cut), input.slice(cut)]);
      assertOk(out);
      assert.deepEqual(plain(out.parts), whole, `cut at ${cut}`);
    }
  });

  it('concatenates a spanning part once, not once per chunk', () => {
    const body = Buffer.alloc(200_000, 0x61);
    for (let i = 0; i < body.length; i += 97) body[i] = 0x0d;
    const input = Buffer.concat([Buffer.from('--B\r\nMultiplex-Token: a\r\n\r\n'), body, Buffer.from('\r\n--B--')]);
    const concat = mock.method(Buffer, 'concat');
    try {
      const out = parse(Array.from({ length: Math.ceil(input.length / 100) }, (_, i) => input.subarray(i * 100, i * 100 + 100)));
      assertOk(out);
      assert.ok(out.parts[0]!.body.equals(body));
      const copied = concat.mock.calls.reduce((sum, call) => sum + (call.result as Buffer).length, 0);
      assert.ok(copied <= body.length, `copied ${copied} bytes for a ${body.length}-byte part`);
    } finally {
      concat.mock.restore();
    }
  });
});

// ---- property tests ----

const TOKEN_CHARS = [...'abcXYZ019_.-'];
const CHANNEL_CHARS = [...'abcXYZ019_.:@-'];
const BOUNDARY_CHARS = [..."aZ09'()+_,-./:=? "];

interface GenPart {
  tokens: string[];
  channels: string[];
  isClose: boolean;
  isBinary: boolean;
  body: Buffer;
  /** serialisation choices that must not change the result */
  style: { repeat: boolean; upper: boolean; padding: string; extra: boolean; closeNo: boolean; binaryNo: boolean };
}

const boundaryArb = fc
  .string({ unit: fc.constantFrom(...BOUNDARY_CHARS), minLength: 1, maxLength: 70 })
  .map((b) => (b.endsWith(' ') ? `${b.slice(0, -1)}x` : b));

/** Bytes rich in CR, LF, dashes and pieces of the delimiter, with the delimiter itself broken up. */
function bytesArb(boundary: string, maxPieces = 12): fc.Arbitrary<Buffer> {
  const delimiter = `\r\n--${boundary}`;
  const piece = fc.oneof(
    fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
    fc.integer({ min: 0, max: delimiter.length - 1 }).map((n) => Buffer.from(delimiter.slice(0, n), 'latin1')),
    fc.constantFrom('\r', '\n', '\r\n', '-', '--', boundary).map((s) => Buffer.from(s, 'latin1')),
  );
  return fc.array(piece, { maxLength: maxPieces }).map((pieces) => breakDelimiters(Buffer.concat(pieces), Buffer.from(delimiter, 'latin1')));
}

function breakDelimiters(bytes: Buffer, delimiter: Buffer): Buffer {
  let at = bytes.indexOf(delimiter);
  while (at !== -1) {
    bytes[at + 1] = 0x58;
    at = bytes.indexOf(delimiter, at);
  }
  return bytes;
}

function genPartArb(boundary: string): fc.Arbitrary<GenPart> {
  return fc.record({
    tokens: fc.array(fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 64 }), { maxLength: 4 }),
    channels: fc.array(fc.string({ unit: fc.constantFrom(...CHANNEL_CHARS), minLength: 1, maxLength: 128 }), { maxLength: 3 }),
    isClose: fc.boolean(),
    isBinary: fc.boolean(),
    body: bytesArb(boundary),
    style: fc.record({
      repeat: fc.boolean(),
      upper: fc.boolean(),
      padding: fc.constantFrom('', ' ', '\t ', '  '),
      extra: fc.boolean(),
      closeNo: fc.boolean(),
      binaryNo: fc.boolean(),
    }),
  });
}

const multipartArb = boundaryArb.chain((boundary) =>
  fc.record({
    boundary: fc.constant(boundary),
    parts: fc.array(genPartArb(boundary), { maxLength: 5 }),
    preamble: bytesArb(boundary, 4),
    epilogue: fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)),
    leadingCrlf: fc.boolean(),
  }),
);

type Multipart = { boundary: string; parts: GenPart[]; preamble: Buffer; epilogue: Buffer; leadingCrlf: boolean };

function serialise(m: Multipart): Buffer {
  const out: Buffer[] = [];
  const add = (s: string) => out.push(Buffer.from(s, 'latin1'));
  let preamble = m.preamble;
  // a preamble must not itself start with the first delimiter
  if (preamble.toString('latin1').startsWith(`--${m.boundary}`)) preamble = Buffer.concat([Buffer.from('x'), preamble]);
  out.push(preamble);
  add(preamble.length > 0 || m.leadingCrlf ? `\r\n--${m.boundary}` : `--${m.boundary}`);
  for (const p of m.parts) {
    const eol = '\r\n';
    const name = (n: string) => (p.style.upper ? n.toUpperCase() : n);
    add(`${p.style.padding}\r\n`);
    if (p.style.extra) add(`Content-Type: application/octet-stream${eol}`);
    if (p.style.repeat) {
      for (const t of p.tokens) add(`${name('Multiplex-Token')}: ${t}${eol}`);
      for (const c of p.channels) add(`${name('Multiplex-Channel')}:${c} ${eol}`);
    } else {
      add(`${name('Multiplex-Token')}: ${p.tokens.join(' ,')}, ${eol}`);
      add(`${name('Multiplex-Channel')}: ,${p.channels.join(',\t')}${eol}`);
    }
    if (p.isClose) add(`${name('Multiplex-Close')}: true${eol}`);
    else if (p.style.closeNo) add(`${name('Multiplex-Close')}: no${eol}`);
    if (p.isBinary) add(`${name('Multiplex-Binary')}: 1${eol}`);
    else if (p.style.binaryNo) add(`${name('Multiplex-Binary')}: false${eol}`);
    add(eol);
    out.push(p.body);
    add(`\r\n--${m.boundary}`);
  }
  add('--');
  out.push(m.epilogue);
  return Buffer.concat(out);
}

/** Cut points → chunks (copies, so no chunk shares memory with another). */
function split(input: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const p of [...points, input.length]) {
    chunks.push(Buffer.from(input.subarray(last, p)));
    last = p;
  }
  return chunks;
}

function summary(out: Outcome) {
  return { parts: plain(out.parts), error: out.errors[0]?.code ?? null, isDone: out.isDone };
}

const limitsArb = fc.record({
  maxPartBytes: fc.integer({ min: 0, max: 64 }),
  maxPartHeaderBytes: fc.integer({ min: 0, max: 200 }),
  maxTargetsPerPart: fc.integer({ min: 0, max: 8 }),
});

/** Byte-level damage: flips, insertions, deletions, duplicated ranges. */
function mutate(input: Buffer, edits: Array<{ at: number; kind: number; byte: number; len: number }>): Buffer {
  let bytes = Buffer.from(input);
  for (const { at, kind, byte, len } of edits) {
    const i = bytes.length === 0 ? 0 : at % bytes.length;
    if (kind === 0 && bytes.length > 0) bytes[i] = byte;
    else if (kind === 1) bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([byte]), bytes.subarray(i)]);
    else if (kind === 2) bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + len)]);
    else bytes = Buffer.concat([bytes.subarray(0, i + len), bytes.subarray(i)]);
  }
  return bytes;
}

const editsArb = fc.array(
  fc.record({ at: fc.nat(), kind: fc.integer({ min: 0, max: 3 }), byte: fc.constantFrom(0x0d, 0x0a, 0x2d, 0x20, 0x3a, 0x2c, 0x00, 0x61, 0xff), len: fc.integer({ min: 1, max: 8 }) }),
  { minLength: 1, maxLength: 4 },
);

describe('MultiplexParser properties', () => {
  it('gives the same parts for any split of a valid body into chunks', () => {
    fc.assert(
      fc.property(multipartArb, fc.array(fc.nat(), { maxLength: 30 }), (m, cuts) => {
        const input = serialise(m);
        const whole = summary(parse(input, LIMITS, m.boundary));
        assert.equal(whole.error, null);
        assert.deepEqual(summary(parse(split(input, cuts), LIMITS, m.boundary)), whole);
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same parts when fed one byte at a time', () => {
    fc.assert(
      fc.property(multipartArb, (m) => {
        const input = serialise(m);
        const bytes = Array.from(input, (b) => Buffer.from([b]));
        assert.deepEqual(summary(parse(bytes, LIMITS, m.boundary)), summary(parse(input, LIMITS, m.boundary)));
      }),
      { numRuns: 100 },
    );
  });

  it('round-trips generated parts through serialise and parse', () => {
    fc.assert(
      fc.property(multipartArb, (m) => {
        const out = parse(serialise(m), LIMITS, m.boundary);
        assertOk(out);
        assert.deepEqual(
          plain(out.parts),
          m.parts.map((p) => ({ tokens: p.tokens, channels: p.channels, isClose: p.isClose, isBinary: p.isBinary, body: p.body.toString('latin1') })),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a bare LF in place of any CRLF of a part\'s headers, however the body is cut', () => {
    const withParts = multipartArb.filter((m) => m.parts.length > 0);
    fc.assert(
      fc.property(withParts, fc.nat(), fc.nat({ max: 4 }), fc.array(fc.nat(), { maxLength: 10 }), (m, pick, partPick, cuts) => {
        const input = serialise(m);
        const text = input.toString('latin1');
        // after the delimiter opening part k (k from 0), its padding and the CRLF ending the boundary line
        const k = partPick % m.parts.length;
        let at = text.indexOf(`--${m.boundary}`, m.preamble.length);
        for (let i = 0; i < k; i++) at = text.indexOf(`\r\n--${m.boundary}`, text.indexOf('\r\n\r\n', at) + 4) + 2;
        let pos = text.indexOf('\r\n', at + m.boundary.length + 2) + 2;
        // the CRLF of each header line and of the blank line (header lines hold no CR or LF)
        const lineEnds: number[] = [];
        for (;;) {
          const end = text.indexOf('\r\n', pos);
          lineEnds.push(end);
          if (end === pos) break;
          pos = end + 2;
        }
        const cr = lineEnds[pick % lineEnds.length]!;
        const damaged = Buffer.concat([input.subarray(0, cr), input.subarray(cr + 1)]);
        const whole = parse(damaged, LIMITS, m.boundary);
        assertError(whole, MalformedMultiplexError, MALFORMED, new RegExp(`^part ${k + 1}: .*bare LF`));
        assert.equal(whole.parts.length, k);
        assert.deepEqual(summary(parse(split(damaged, cuts), LIMITS, m.boundary)), summary(whole));
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on damaged input, reports at most one error, and delivers only byte ranges of the input', () => {
    fc.assert(
      fc.property(multipartArb, editsArb, limitsArb, fc.array(fc.nat(), { maxLength: 10 }), (m, edits, limits, cuts) => {
        const input = mutate(serialise(m), edits);
        const chunks = split(input, cuts);
        const out = parse(chunks, limits, m.boundary);
        assert.equal(out.isDone, true);
        for (const p of out.parts) {
          assert.ok(input.indexOf(p.body) !== -1, 'a body is not a byte range of the input');
          assert.ok(p.body.length <= limits.maxPartBytes);
          assert.ok(p.tokens.length + p.channels.length <= limits.maxTargetsPerPart);
        }
        // the outcome does not depend on how the input was cut
        assert.deepEqual(summary(out), summary(parse(input, limits, m.boundary)));
      }),
      { numRuns: 400 },
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 10 }), limitsArb, (bytes, cuts, limits) => {
        const input = Buffer.from(bytes);
        const out = parse(split(input, cuts), limits, '-');
        assert.equal(out.isDone, true);
        for (const p of out.parts) assert.ok(input.indexOf(p.body) !== -1);
      }),
      { numRuns: 300 },
    );
  });
});
