// Hostile input for the pure parsers: random bytes and damaged valid input (bit flips, inserted CR/LF/NUL and
// boundaries, truncation, duplication, huge runs). Whatever comes in, a parser ends in a result or in its
// documented error, within a time bound, and never yields anything that was not in the input.
// FUZZ_RUNS sets the runs per property (`npm run fuzz`: 200,000); FUZZ_SEED (and FUZZ_PATH) replay a failure;
// FUZZ_RUN_MS is the time one input may take (plus 1 ms per KiB).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { MultiplexParser } from '../src/protocol/multiplex-parser.ts';
import type { MultiplexParserLimits, Part } from '../src/protocol/multiplex-parser.ts';
import { CgiHeadParser } from '../src/protocol/cgi-response.ts';
import type { CgiHead } from '../src/protocol/cgi-response.ts';
import {
  CHANNEL_NAME, multiplexBoundary, parseChannelSubscriptions, parseHold, parseKeepAlive, parseList, parseMediaType, parseSeconds, unescapeC,
} from '../src/protocol/headers.ts';
import { MAX_SHARDS, NODE_ID_PATTERN, localTokenShard, mintToken, parseTokenRoute } from '../src/protocol/token.ts';
import {
  FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_MAX_RECORD_BYTES, FCGI_PARAMS, FCGI_STDOUT, FCGI_UNKNOWN_TYPE, RecordDecoder, decodeParams, encodeParams,
  encodeRecords,
} from '../src/protocol/fastcgi-records.ts';
import { BadCgiHeadError, BadHeaderValueError, MalformedFastcgiError, MuxError } from '../src/errors.ts';
import { envInteger } from './helpers/env.ts';


const RUNS = envInteger('FUZZ_RUNS', 150);
const RUN_BUDGET_MS = envInteger('FUZZ_RUN_MS', 1000);
/** A run that has not returned after this long is a hang: the watchdog prints its input and kills the process. */
const HANG_MS = Math.max(30_000, RUN_BUDGET_MS * 10);
const HUGE_BYTES = 1_200_000;

function runParameters(numRuns = RUNS): { numRuns: number; seed?: number; path?: string } {
  const parameters: { numRuns: number; seed?: number; path?: string } = { numRuns };
  const seed = process.env.FUZZ_SEED;
  if (seed) {
    // fast-check prints seeds as signed 32-bit integers
    if (!/^-?\d+$/.test(seed)) throw new Error(`FUZZ_SEED=${JSON.stringify(seed)} is invalid: expected the integer seed fast-check printed`);
    parameters.seed = Number(seed);
  }
  if (process.env.FUZZ_PATH) parameters.path = process.env.FUZZ_PATH;
  return parameters;
}

// ---- time bound per input ----

// A synchronous infinite loop cannot be timed out from its own thread: a watchdog thread watches the run
// counter and, when one run stays busy for HANG_MS, saves that input to a file and kills the process.
const LABELS = ['MultiplexParser', 'CgiHeadParser', 'header values', 'tokens', 'FastCGI records', 'FastCGI params'] as const;
type Label = (typeof LABELS)[number];
const WATCHED_BYTES = 4 * 1024 * 1024;
// [run counter, busy flag, input length, label index]
const watchState = new Int32Array(new SharedArrayBuffer(16));
const watchInput = Buffer.from(new SharedArrayBuffer(WATCHED_BYTES));
const watchdog = new Worker(
  `
  const { workerData } = require('node:worker_threads');
  const { writeFileSync, writeSync } = require('node:fs');
  const { join } = require('node:path');
  const { tmpdir } = require('node:os');
  const state = new Int32Array(workerData.state);
  const input = Buffer.from(workerData.input);
  let run = -1;
  let since = Date.now();
  setInterval(() => {
    const current = Atomics.load(state, 0);
    if (current !== run || Atomics.load(state, 1) === 0) {
      run = current;
      since = Date.now();
      return;
    }
    if (Date.now() - since < workerData.hangMs) return;
    const bytes = input.subarray(0, Math.min(Atomics.load(state, 2), input.length));
    const path = join(tmpdir(), 'muxgate-fuzz-hang-' + process.pid + '.bin');
    writeFileSync(path, bytes);
    writeSync(2, 'fuzz: a ' + workerData.labels[Atomics.load(state, 3)] + ' run has not returned after ' + workerData.hangMs
      + ' ms: a hang. Its ' + bytes.length + '-byte input (latin1 for strings) is in ' + path + '; it starts (hex) '
      + bytes.subarray(0, 256).toString('hex') + '\\n');
    process.kill(process.pid, 'SIGKILL');
  }, 200);
  `,
  { eval: true, workerData: { state: watchState.buffer, input: watchInput.buffer, labels: LABELS, hangMs: HANG_MS } },
);
watchdog.unref();
after(() => watchdog.terminate());

/** Runs the work on one input, failing when it takes longer than the budget for the input's size. */
function timed<T>(label: Label, input: Buffer | string, work: () => T): T {
  const size = input.length;
  const watched = typeof input === 'string' ? watchInput.write(input, 0, 'latin1') : input.copy(watchInput, 0, 0, WATCHED_BYTES);
  Atomics.store(watchState, 2, watched);
  Atomics.store(watchState, 3, LABELS.indexOf(label));
  Atomics.add(watchState, 0, 1);
  Atomics.store(watchState, 1, 1);
  const started = performance.now();
  let result: T;
  try {
    result = work();
  } finally {
    Atomics.store(watchState, 1, 0);
  }
  const ms = performance.now() - started;
  const budget = RUN_BUDGET_MS + size / 1024;
  assert.ok(ms <= budget, `${label} took ${ms.toFixed(0)} ms on a ${size}-byte input (budget ${budget.toFixed(0)} ms): super-linear or stuck`);
  return result;
}

// ---- damage ----

interface Edit {
  kind: 'flip' | 'set' | 'insert' | 'delete' | 'truncate' | 'duplicate' | 'huge';
  at: number;
  /** flip: the bit; set: the byte; delete, duplicate: the length; huge: the total bytes */
  n: number;
  /** duplicate: extra copies */
  times: number;
  bytes: Buffer;
}

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const EMPTY = Buffer.alloc(0);
const SPECIAL_BYTES = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2c, 0x2d, 0x2e, 0x3a, 0x3b, 0x3d, 0x5c, 0x7f, 0x80, 0xff];

function editArb(dictionary: readonly string[], maxHuge: number): fc.Arbitrary<Edit> {
  const fragment = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...dictionary).map(latin1) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((a) => Buffer.from(a)) },
  );
  const edit = (kind: Edit['kind'], n: fc.Arbitrary<number>, bytes: fc.Arbitrary<Buffer> = fc.constant(EMPTY), times: fc.Arbitrary<number> = fc.constant(1)) =>
    fc.record({ kind: fc.constant(kind), at: fc.nat(), n, times, bytes });
  return fc.oneof(
    { weight: 3, arbitrary: edit('flip', fc.nat(7)) },
    { weight: 2, arbitrary: edit('set', fc.constantFrom(...SPECIAL_BYTES)) },
    { weight: 6, arbitrary: edit('insert', fc.constant(0), fragment) },
    { weight: 2, arbitrary: edit('delete', fc.integer({ min: 1, max: 16 })) },
    { weight: 1, arbitrary: edit('truncate', fc.constant(0)) },
    { weight: 2, arbitrary: edit('duplicate', fc.integer({ min: 1, max: 64 }), fc.constant(EMPTY), fc.integer({ min: 1, max: 4 })) },
    {
      weight: 1,
      arbitrary: edit('huge', fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: 1024, max: Math.min(70_000, maxHuge) }) },
        { weight: 1, arbitrary: fc.integer({ min: Math.min(70_000, maxHuge), max: maxHuge }) },
      ), fragment),
    },
  );
}

/** Damage: 1 to 5 edits by default; maxHuge bounds the runs a 'huge' edit inserts. */
function editsArb(dictionary: readonly string[], { minLength = 1, maxLength = 5, maxHuge = HUGE_BYTES } = {}): fc.Arbitrary<Edit[]> {
  return fc.array(editArb(dictionary, maxHuge), { minLength, maxLength });
}

function damage(input: Buffer, edits: readonly Edit[]): Buffer {
  let bytes = input;
  for (const edit of edits) {
    const at = edit.at % (bytes.length + 1);
    switch (edit.kind) {
      case 'flip':
      case 'set':
        if (bytes.length === 0) break;
        bytes = Buffer.from(bytes);
        if (edit.kind === 'flip') bytes[edit.at % bytes.length]! ^= 1 << edit.n;
        else bytes[edit.at % bytes.length] = edit.n;
        break;
      case 'insert':
        bytes = Buffer.concat([bytes.subarray(0, at), edit.bytes, bytes.subarray(at)]);
        break;
      case 'delete':
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + edit.n)]);
        break;
      case 'truncate':
        bytes = bytes.subarray(0, at);
        break;
      case 'duplicate': {
        const piece = bytes.subarray(at, at + edit.n);
        bytes = Buffer.concat([bytes.subarray(0, at + piece.length), ...Array<Buffer>(edit.times).fill(piece), bytes.subarray(at + piece.length)]);
        break;
      }
      case 'huge':
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.alloc(edit.n, edit.bytes), bytes.subarray(at)]);
        break;
    }
  }
  return bytes;
}

/** How the input reaches the parser: one chunk, random cuts, or (small inputs) one byte at a time. */
const chunkingArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.nat(), { maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constant('bytes' as const) },
);

function cut(input: Buffer, chunking: number[] | 'bytes'): Buffer[] {
  if (chunking === 'bytes' && input.length <= 4096) return Array.from(input, (byte) => Buffer.from([byte]));
  const cuts = chunking === 'bytes' ? [] : chunking;
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  // copies: a view handed out by the parser must not reach into another chunk's memory by accident
  for (const point of [...points, input.length]) {
    chunks.push(Buffer.from(input.subarray(last, point)));
    last = point;
  }
  return chunks;
}

/** Hostile text for string parsers: fragments rich in separators, quotes, escapes, controls and numbers. */
function soupArb(fragments: readonly string[], maxLength = 24): fc.Arbitrary<string> {
  return fc.array(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...fragments) }, { weight: 1, arbitrary: fc.string({ maxLength: 4 }) }), { maxLength })
    .map((parts) => parts.join(''));
}

// ---- the multiplex parser ----

const TOKEN = /^[A-Za-z0-9_.-]{1,64}$/;
const LF = 0x0a;
const PARSER_ERROR_CODES = new Set(['MUX_ERR_MALFORMED_MULTIPLEX', 'MUX_ERR_PART_TOO_LARGE', 'MUX_ERR_PART_HEADERS_TOO_LARGE']);
const REAL_LIMITS: MultiplexParserLimits = { maxPartBytes: 1_048_576, maxPartHeaderBytes: 1_048_576, maxTargetsPerPart: 100_000 };

const limitsArb: fc.Arbitrary<MultiplexParserLimits> = fc.oneof(
  fc.constant(REAL_LIMITS),
  fc.record({ maxPartBytes: fc.nat(80), maxPartHeaderBytes: fc.nat(300), maxTargetsPerPart: fc.nat(6) }),
  fc.record({ maxPartBytes: fc.nat(70_000), maxPartHeaderBytes: fc.nat(70_000), maxTargetsPerPart: fc.nat(2000) }),
);

const boundaryArb = fc.oneof(
  fc.constantFrom('B', '-', '--', 'a b', '=_?', 'x'.repeat(70)),
  fc.string({ unit: fc.constantFrom(...'aZ09\'()+_,-./:=? '), minLength: 1, maxLength: 70 }).map((b) => (b.endsWith(' ') ? `${b.slice(0, -1)}z` : b)),
);

function multiplexDictionary(boundary: string): string[] {
  return [
    '\r', '\n', '\r\n', '\0', '\r\n\r\n', '-', '--', ' ', '\t', ':', ',', '\xff', boundary, `--${boundary}`, `\r\n--${boundary}`,
    `\r\n--${boundary}--`, `\r\n--${boundary}\r\n\r\n`, `--${boundary}-`, `\r\n--${boundary} \t\r\n`, 'Multiplex-Token: ', 'multiplex-token:',
    'Multiplex-Channel: ', 'Multiplex-Close: true\r\n', 'Multiplex-Close: maybe\r\n', 'Multiplex-Binary: 1\r\n', 'Multiplex-Binary: no?\r\n', ' \r\n', 'a', 'n1.0.AAAAAAAAAAAAAAAAAAAAAA', 'room:1@x', 'x,',
  ];
}

interface GenPart {
  tokens: string[];
  channels: string[];
  isClose: boolean;
  isBinary: boolean;
  body: Uint8Array;
}

const partArb: fc.Arbitrary<GenPart> = fc.record({
  tokens: fc.array(fc.string({ unit: fc.constantFrom(...'aZ09_.-'), minLength: 1, maxLength: 64 }), { maxLength: 3 }),
  channels: fc.array(fc.string({ unit: fc.constantFrom(...'aZ09_.:@-'), minLength: 1, maxLength: 128 }), { maxLength: 2 }),
  isClose: fc.boolean(),
  isBinary: fc.boolean(),
  body: fc.uint8Array({ maxLength: 40 }),
});

function serialise(boundary: string, parts: readonly GenPart[], preamble: string): Buffer {
  const delimiter = latin1(`\r\n--${boundary}`);
  const out: Buffer[] = [latin1(preamble === '' ? `--${boundary}` : `${preamble}\r\n--${boundary}`)];
  for (const part of parts) {
    let head = '\r\n';
    if (part.tokens.length > 0) head += `Multiplex-Token: ${part.tokens.join(', ')}\r\n`;
    if (part.channels.length > 0) head += `Multiplex-Channel: ${part.channels.join(', ')}\r\n`;
    if (part.isClose) head += 'Multiplex-Close: true\r\n';
    if (part.isBinary) head += 'Multiplex-Binary: true\r\n';
    const body = Buffer.from(part.body);
    // a body may not hold the delimiter
    for (let at = body.indexOf(delimiter); at !== -1; at = body.indexOf(delimiter, at)) body[at] = 0x58;
    out.push(latin1(`${head}\r\n`), body, delimiter);
  }
  out.push(latin1('--\r\n'));
  return Buffer.concat(out);
}

const validMultiplexArb = boundaryArb.chain((boundary) =>
  fc.record({
    boundary: fc.constant(boundary),
    input: fc.tuple(fc.array(partArb, { maxLength: 5 }), fc.constantFrom('', 'preamble', `x--${boundary}`)).map(([parts, preamble]) => serialise(boundary, parts, preamble)),
  }),
);

interface Outcome {
  parts: Part[];
  errors: MuxError[];
  isDone: boolean;
  partCount: number;
}

/** push() every chunk, end(), then check that more input and another end() change nothing. */
function runMultiplex(boundary: string, limits: MultiplexParserLimits, chunks: readonly Buffer[]): Outcome {
  const outcome: Outcome = { parts: [], errors: [], isDone: false, partCount: 0 };
  const parser = new MultiplexParser(boundary, limits, {
    onPart(part) {
      assert.equal(outcome.errors.length, 0, 'a part was delivered after an error');
      outcome.parts.push(part);
    },
    onError(error) {
      outcome.errors.push(error);
    },
  });
  try {
    for (const chunk of chunks) parser.push(chunk);
    parser.end();
  } catch (error) {
    assert.fail(`MultiplexParser threw out of push() or end(): ${String(error)}`);
  }
  outcome.isDone = parser.isDone;
  outcome.partCount = parser.partCount;
  const calls = outcome.parts.length + outcome.errors.length;
  parser.push(latin1(`\r\n--${boundary}\r\nMultiplex-Token: late\r\n\r\nlate\r\n--${boundary}--`));
  parser.end();
  assert.equal(outcome.parts.length + outcome.errors.length, calls, 'the sink was called after the body was done');
  return outcome;
}

function checkOutcome(outcome: Outcome, limits: MultiplexParserLimits): void {
  assert.equal(outcome.isDone, true, 'end() left the parser not done');
  assert.equal(outcome.partCount, outcome.parts.length);
  assert.ok(outcome.errors.length <= 1, `${outcome.errors.length} errors reported`);
  for (const error of outcome.errors) {
    assert.ok(error instanceof MuxError && PARSER_ERROR_CODES.has(error.code), `undocumented error: ${String(error)}`);
  }
  for (const part of outcome.parts) {
    assert.ok(part.body.length <= limits.maxPartBytes, 'a body over maxPartBytes');
    assert.ok(part.tokens.length + part.channels.length <= limits.maxTargetsPerPart, 'more targets than maxTargetsPerPart');
    for (const token of part.tokens) assert.match(token, TOKEN);
    for (const channel of part.channels) assert.match(channel, CHANNEL_NAME);
  }
}

/**
 * For a body pushed as one chunk, every part is located in it: the body is a view of the input between the
 * blank line of its headers and the next delimiter, and each token and channel was named in its headers.
 */
function checkPartsInInput(input: Buffer, boundary: string, limits: MultiplexParserLimits, outcome: Outcome): void {
  const delimiter = latin1(`\r\n--${boundary}`);
  const text = input.toString('latin1');
  // where the first part's headers start: after `--B` at the very start, or after the first CRLF--B
  let open = text.startsWith(`--${boundary}`) ? boundary.length + 2 : input.indexOf(delimiter) + delimiter.length;
  for (const part of outcome.parts) {
    const body = part.body;
    assert.equal(body.buffer, input.buffer, 'a body is not a view of the input');
    const at = body.byteOffset - input.byteOffset;
    assert.ok(at >= open && at + body.length <= input.length, `a body at ${at} lies outside its part (headers from ${open})`);
    assert.ok(input.subarray(at + body.length, at + body.length + delimiter.length).equals(delimiter), 'a body does not end at a delimiter');
    assert.equal(body.indexOf(delimiter), -1, 'a body holds a delimiter');
    assert.equal(input[at - 1], LF, 'a body does not start after the blank line');
    const head = text.slice(open, at);
    assert.match(head, /^[ \t]*\r\n/, 'a part does not start with the boundary line');
    // a bare LF must not end a header line: CRLF only
    assert.doesNotMatch(head, /(?:^|[^\r])\n/, 'a part whose headers hold a bare LF was delivered');
    assert.ok(head.length <= limits.maxPartHeaderBytes, `part headers of ${head.length} bytes passed a limit of ${limits.maxPartHeaderBytes}`);
    const lowerHead = head.toLowerCase();
    assertInOrder(part.tokens, head, 'token');
    assertInOrder(part.channels, head, 'channel');
    if (part.tokens.length > 0) assert.ok(lowerHead.includes('multiplex-token:'));
    if (part.channels.length > 0) assert.ok(lowerHead.includes('multiplex-channel:'));
    if (part.isClose) assert.ok(lowerHead.includes('multiplex-close:'));
    if (part.isBinary) assert.ok(lowerHead.includes('multiplex-binary:'));
    open = at + body.length + delimiter.length;
  }
  // without an error, the body was closed right after the last delimiter
  if (outcome.errors.length === 0) assert.equal(text.slice(open, open + 2), '--', 'a body without its close delimiter ended without an error');
}

/** Each string occurs in the text after the one before it (linear, unlike includes() per item). */
function assertInOrder(items: readonly string[], text: string, what: string): void {
  let cursor = 0;
  for (const item of items) {
    const at = text.indexOf(item, cursor);
    assert.ok(at !== -1, `${what} ${JSON.stringify(item.slice(0, 100))} is not in the input (in order)`);
    cursor = at + item.length;
  }
}

function summary(outcome: Outcome) {
  return {
    parts: outcome.parts.map((p) => ({ tokens: p.tokens, channels: p.channels, isClose: p.isClose, isBinary: p.isBinary, body: p.body.toString('latin1') })),
    error: outcome.errors[0]?.code ?? null,
  };
}

function fuzzMultiplex(boundary: string, limits: MultiplexParserLimits, input: Buffer, chunking: number[] | 'bytes'): void {
  timed('MultiplexParser', input, () => {
    const whole = runMultiplex(boundary, limits, [input]);
    checkOutcome(whole, limits);
    checkPartsInInput(input, boundary, limits, whole);
    const split = runMultiplex(boundary, limits, cut(input, chunking));
    checkOutcome(split, limits);
    assert.deepEqual(summary(split), summary(whole), 'the chunking changed the outcome');
  });
}

describe('fuzz: MultiplexParser', () => {
  it('damaged valid bodies: a result or a documented error, only parts that were in the input', () => {
    const arb = validMultiplexArb.chain(({ boundary, input }) =>
      fc.record({ boundary: fc.constant(boundary), input: fc.constant(input), edits: editsArb(multiplexDictionary(boundary)), limits: limitsArb, chunking: chunkingArb }));
    fc.assert(fc.property(arb, ({ boundary, input, edits, limits, chunking }) => fuzzMultiplex(boundary, limits, damage(input, edits), chunking)), runParameters());
  });

  it('soups of delimiters, line ends and part headers', () => {
    const arb = boundaryArb.chain((boundary) =>
      fc.record({
        boundary: fc.constant(boundary),
        input: soupArb(multiplexDictionary(boundary), 40).map(latin1),
        limits: limitsArb,
        chunking: chunkingArb,
      }));
    fc.assert(fc.property(arb, ({ boundary, input, limits, chunking }) => fuzzMultiplex(boundary, limits, input, chunking)), runParameters());
  });

  it('random bytes, with boundaries short enough to occur in them', () => {
    const arb = fc.record({
      boundary: fc.constantFrom('-', 'a', '=', '\xff'),
      input: fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)),
      limits: limitsArb,
      chunking: chunkingArb,
    });
    fc.assert(fc.property(arb, ({ boundary, input, limits, chunking }) => fuzzMultiplex(boundary, limits, input, chunking)), runParameters());
  });

  it('the error for a bad byte after too much boundary padding does not depend on the chunking', () => {
    const limits = { ...REAL_LIMITS, maxPartHeaderBytes: 2 };
    const whole = summary(runMultiplex('B', limits, [latin1('--B   x')]));
    const split = summary(runMultiplex('B', limits, [latin1('--B   '), latin1('x')]));
    assert.deepEqual(split, whole);
  });

  it('huge bodies, header lines and target lists stop at the limits, fed in any chunks', () => {
    const arb = fc.record({
      unit: fc.constantFrom('a', '\r', '\r\n', '-', ' ', 'a,', 'Multiplex-Token: a\r\n', '\r\n--', 'x\r\n-'),
      where: fc.constantFrom('preamble', 'headers', 'token list', 'body'),
      size: fc.integer({ min: 1, max: HUGE_BYTES }),
      limits: limitsArb,
      chunking: fc.array(fc.nat(), { maxLength: 30 }),
    });
    fc.assert(
      fc.property(arb, ({ unit, where, size, limits, chunking }) => {
        const run = Buffer.alloc(size, latin1(unit));
        const pieces: Record<typeof where, Buffer[]> = {
          preamble: [run, latin1('\r\n--B\r\n\r\nx\r\n--B--')],
          headers: [latin1('--B\r\nX-Long: '), run, latin1('\r\n\r\nx\r\n--B--')],
          'token list': [latin1('--B\r\nMultiplex-Token: '), run, latin1('\r\n\r\nx\r\n--B--')],
          body: [latin1('--B\r\n\r\n'), run, latin1('\r\n--B--')],
        };
        fuzzMultiplex('B', limits, Buffer.concat(pieces[where]), chunking);
      }),
      runParameters(Math.max(10, Math.ceil(RUNS / 20))),
    );
  });
});

// ---- the CGI head parser, and what the gateway does with a head ----

const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const OWS_EDGE = /^[ \t]|[ \t]$/;

const headLineArb = fc.oneof(
  fc.constantFrom(
    'Status: 200', 'Status: 404 Not Found', 'Status: 999 X', 'Status: 099', 'Status: 000 Zero', 'Status: 100 Continue', 'Status: 1000', 'Location: /elsewhere', 'Content-Type: text/plain', 'Set-Cookie: a=b; Path=/',
    'Content-Type: application/x-multiplex; boundary=B', 'Content-Type: application/x-multiplex; boundary="a b"', 'Multiplex-Hold: stream',
    'Multiplex-Hold: response', 'Multiplex-Content-Type: text/event-stream', 'Multiplex-Keep-Alive: 20', 'Multiplex-Keep-Alive: 0.5; data="ping\\n"',
    'Multiplex-Timeout: 30', 'Multiplex-Channel: room-1, news; since=42', 'X-Empty:', 'X-Tab:\tv\t',
  ),
  fc.tuple(fc.string({ unit: fc.constantFrom(...'aZ-_!~'), minLength: 1, maxLength: 12 }), fc.string({ unit: fc.constantFrom(...'a 9;=",\t'), maxLength: 20 }))
    .map(([name, value]) => `${name}: ${value}`),
);

const validHeadArb = fc
  .tuple(fc.array(headLineArb, { maxLength: 8 }), fc.constantFrom('\r\n', '\n'), fc.uint8Array({ maxLength: 30 }))
  .map(([lines, eol, body]) => Buffer.concat([latin1(lines.map((line) => line + eol).join('') + eol), Buffer.from(body)]));

const HEAD_DICTIONARY = [
  '\r', '\n', '\r\n', '\r\n\r\n', '\n\n', '\0', '\x7f', '\x01', '\xe9', ':', ' ', '\t', ' \r\n', 'Status: ', 'Status: 99', 'Status: 2000',
  'status:200 OK\r\n', 'Location: x\r\n', 'Content-Type: application/x-multiplex; boundary=', 'Multiplex-Channel: ', ';since=', 'X: \r y',
];

interface HeadOutcome {
  head: CgiHead | null;
  /** the bytes after the head: the rest of the completing chunk and every chunk after it */
  rest: Buffer;
  error: BadCgiHeadError | null;
}

function runHead(chunks: readonly Buffer[], maxHeadBytes: number): HeadOutcome {
  const parser = new CgiHeadParser(maxHeadBytes);
  for (let i = 0; i < chunks.length; i++) {
    let result: ReturnType<CgiHeadParser['push']>;
    try {
      result = parser.push(chunks[i]!);
    } catch (error) {
      assert.ok(error instanceof BadCgiHeadError && error.code === 'MUX_ERR_BAD_CGI_HEAD', `CgiHeadParser threw an undocumented error: ${String(error)}`);
      return { head: null, rest: EMPTY, error };
    }
    if (result !== null) return { head: result.head, rest: Buffer.concat([result.rest, ...chunks.slice(i + 1)]), error: null };
  }
  return { head: null, rest: EMPTY, error: null };
}

/** Parses a head's Multiplex-* headers as the gateway does: only BadHeaderValueError may come out. */
function interpretHead(head: CgiHead, rest: Buffer): void {
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    try {
      if (lower === 'content-type') {
        const boundary = multiplexBoundary(value);
        if (boundary !== null) {
          const whole = runMultiplex(boundary, REAL_LIMITS, [rest]);
          checkOutcome(whole, REAL_LIMITS);
          checkPartsInInput(rest, boundary, REAL_LIMITS, whole);
        }
      } else if (lower === 'multiplex-hold') parseHold(value);
      else if (lower === 'multiplex-content-type') parseMediaType(value);
      else if (lower === 'multiplex-keep-alive') parseKeepAlive(value);
      else if (lower === 'multiplex-timeout') parseSeconds('Multiplex-Timeout', value);
      else if (lower === 'multiplex-channel') parseChannelSubscriptions(value);
    } catch (error) {
      assert.ok(error instanceof BadHeaderValueError, `${name}: ${JSON.stringify(value)} threw an undocumented error: ${String(error)}`);
    }
  }
}

function fuzzHead(input: Buffer, maxHeadBytes: number, chunking: number[] | 'bytes'): void {
  timed('CgiHeadParser', input, () => {
    const whole = runHead([input], maxHeadBytes);
    const split = runHead(cut(input, chunking), maxHeadBytes);
    assert.deepEqual(
      { head: split.head, rest: split.rest.toString('latin1'), error: split.error?.message ?? null },
      { head: whole.head, rest: whole.rest.toString('latin1'), error: whole.error?.message ?? null },
      'the chunking changed the outcome',
    );
    if (whole.head === null) return;
    const headBytes = input.length - whole.rest.length;
    assert.ok(whole.rest.equals(input.subarray(headBytes)), 'the rest is not what followed the head');
    assert.ok(headBytes <= maxHeadBytes, `a head of ${headBytes} bytes passed a limit of ${maxHeadBytes}`);
    const headText = input.toString('latin1', 0, headBytes);
    assert.match(headText, /(^|\n)\r?\n$/, 'the head does not end with a blank line');
    // one line end throughout: every LF after a CR, or none
    const crlfs = headText.split('\r\n').length - 1;
    assert.ok(crlfs === 0 || crlfs === headText.split('\n').length - 1, 'a head that mixes CRLF and bare LF line ends was accepted');
    const { status, statusText, headers } = whole.head;
    assert.ok(Number.isInteger(status) && status >= 100 && status <= 999, `status ${status}`);
    assert.doesNotMatch(statusText, CONTROL);
    let cursor = 0;
    for (const [name, value] of headers) {
      assert.match(name, HEADER_NAME);
      assert.notEqual(name.toLowerCase(), 'status');
      // a CR or LF in a value would split the response built from it
      assert.doesNotMatch(value, CONTROL, `header ${name} holds a control character`);
      assert.doesNotMatch(value, OWS_EDGE, `header ${name} is not trimmed`);
      // the header is the next `name:` line of the input, its value what follows the colon and spaces
      const isFirstLine = cursor === 0 && headText.startsWith(`${name}:`);
      const newline = isFirstLine ? -1 : headText.indexOf(`\n${name}:`, cursor);
      assert.ok(isFirstLine || newline !== -1, `header ${name} is not a line of the input`);
      const at = newline + 1;
      let valueAt = at + name.length + 1;
      while (headText[valueAt] === ' ' || headText[valueAt] === '\t') valueAt++;
      assert.ok(headText.startsWith(value, valueAt), `header ${name}: ${JSON.stringify(value.slice(0, 100))} is not in the input`);
      cursor = valueAt + value.length;
    }
    interpretHead(whole.head, whole.rest);
  });
}

const maxHeadArb = fc.oneof(fc.constant(65_536), fc.integer({ min: 1, max: 200 }));

describe('fuzz: CgiHeadParser', () => {
  it('damaged valid heads: a head or BadCgiHeadError, never a control character in a value', () => {
    fc.assert(
      fc.property(validHeadArb, editsArb(HEAD_DICTIONARY), maxHeadArb, chunkingArb, (input, edits, maxHeadBytes, chunking) =>
        fuzzHead(damage(input, edits), maxHeadBytes, chunking)),
      runParameters(),
    );
  });

  it('random bytes and soups of header fragments', () => {
    const inputArb = fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), soupArb(HEAD_DICTIONARY, 40).map(latin1));
    fc.assert(fc.property(inputArb, maxHeadArb, chunkingArb, (input, maxHeadBytes, chunking) => fuzzHead(input, maxHeadBytes, chunking)), runParameters());
  });
});

// ---- header values ----

const VALUE_FRAGMENTS = [
  'a', 'Z', '0', '9', '.', '_', '-', ':', '@', '/', ',', ';', '=', '"', '\\', ' ', '\t', '\r', '\n', '\0', '\x7f', '\xff', '\xe9', '(', '?',
  '\\n', '\\"', '\\\\', '0.5', '20', '31536000', '31536001', '99999999999999999', '1e3', 'since', 'since=', 'since=42', 'data=', 'data="x"',
  'boundary=', 'boundary=B', 'boundary="a b"', 'stream', 'response', 'none', 'text/event-stream', 'application/x-multiplex', 'room-1', '"',
];

const VALID_VALUES = [
  'a, b ,c', '20', '0.5', '31536000', 'ping\\n\\"x\\"', '20; data="ping\\n"', '0.25', 'stream', ' Response ', 'text/event-stream; charset=utf-8',
  'application/x-multiplex; boundary=B', 'application/x-multiplex; boundary="a b\'()+_,-./:=?"', 'room-1, news; since=42, a:b@c',
  'multipart/mixed; a="x\\"y"; b=c',
];

/** A header value comes from a CGI head (at most 64 KiB) or a request head (MUX_MAX_REQUEST_HEAD_BYTES, 16 KiB). */
const MAX_VALUE_BYTES = 70_000;

/** Content-Types that are almost multiplex ones: boundaries empty, too long, ending in a space, quoted or not. */
const contentTypeArb = fc
  .tuple(
    fc.constantFrom('application/x-multiplex', 'Application/X-Multiplex', ' application/x-multiplex ', 'application/x-multiplexed', 'text/plain'),
    fc.constantFrom('; boundary=', ';boundary=', ' ; BOUNDARY = ', '; charset=utf-8; boundary=', '; boundary=B; boundary='),
    fc.string({ unit: fc.constantFrom('a', 'Z', '0', ' ', '-', '=', '?', '"', '\\', ';', '\t', '\r'), maxLength: 75 }),
    fc.boolean(),
  )
  .map(([type, param, boundary, isQuoted]) => `${type}${param}${isQuoted ? `"${boundary}"` : boundary}`);

const valueArb = fc.oneof(
  { weight: 1, arbitrary: contentTypeArb },
  { weight: 3, arbitrary: soupArb(VALUE_FRAGMENTS) },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom(...VALID_VALUES), editsArb(VALUE_FRAGMENTS, { minLength: 0, maxLength: 3, maxHuge: MAX_VALUE_BYTES }))
      .map(([value, edits]) => damage(latin1(value), edits).toString('latin1')),
  },
  // any UTF-16 string: header values arrive as latin1, but nothing may break on others
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);

/** Calls a header-value parser: its result, or null when it threw the documented BadHeaderValueError. */
function parsed<T>(parse: () => T): T | null {
  try {
    return parse();
  } catch (error) {
    assert.ok(error instanceof BadHeaderValueError && error.code === 'MUX_ERR_BAD_HEADER', `undocumented error: ${String(error)}`);
    return null;
  }
}

function isSubsequence(needle: string, haystack: string): boolean {
  let at = 0;
  for (const ch of needle) {
    at = haystack.indexOf(ch, at);
    if (at === -1) return false;
    at += ch.length;
  }
  return true;
}

const C_ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t' };
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

function fuzzValue(value: string): void {
  timed('header values', value, () => {
    // the items are the input's, in order, with only commas and spaces or tabs between them
    let cursor = 0;
    for (const item of parseList(value)) {
      assert.ok(item !== '' && !item.includes(',') && !OWS_EDGE.test(item), `parseList gave ${JSON.stringify(item.slice(0, 100))}`);
      while (value[cursor] === ',' || value[cursor] === ' ' || value[cursor] === '\t') cursor++;
      assert.ok(value.startsWith(item, cursor), `parseList gave ${JSON.stringify(item.slice(0, 100))}, not the next item of the input`);
      cursor += item.length;
    }

    const seconds = parsed(() => parseSeconds('Multiplex-Timeout', value));
    if (seconds !== null) assert.ok(Number.isFinite(seconds) && seconds >= 0 && seconds <= 31_536_000, `parseSeconds gave ${seconds}`);

    const unescaped = unescapeC(value);
    assert.equal(unescaped, value.replace(/\\([\s\S])/g, (_, ch: string) => C_ESCAPES[ch] ?? ch));

    const keepAlive = parsed(() => parseKeepAlive(value));
    if (keepAlive !== null) {
      assert.ok(Number.isFinite(keepAlive.seconds) && keepAlive.seconds > 0 && keepAlive.seconds <= 31_536_000);
      if (keepAlive.data !== null) {
        assert.ok(keepAlive.data.length > 0 && keepAlive.data.length <= value.length && value.includes('"'), 'parseKeepAlive made up data');
      }
    }

    const hold = parsed(() => parseHold(value));
    if (hold !== null) assert.ok(['stream', 'response', 'none'].includes(hold) && value.toLowerCase().includes(hold));

    const mediaType = parsed(() => parseMediaType(value));
    if (mediaType !== null) {
      const lower = value.toLowerCase();
      assert.match(mediaType.type, /^[!#$%&'*+.^_`|~0-9a-z-]+\/[!#$%&'*+.^_`|~0-9a-z-]+$/);
      assert.ok(lower.replace(/^[ \t]+/, '').startsWith(mediaType.type), `type ${mediaType.type.slice(0, 100)} does not open the input`);
      for (const [name, paramValue] of mediaType.params) {
        assert.ok(HEADER_NAME.test(name) && isSubsequence(`${name}=`, lower), `parameter ${name.slice(0, 100)} is not in the input`);
        // quoted-pairs are unescaped: what is left is a subsequence of the input
        assert.ok(isSubsequence(paramValue, value), `parameter value ${JSON.stringify(paramValue.slice(0, 100))} is not in the input`);
      }
    }

    const boundary = parsed(() => multiplexBoundary(value));
    if (boundary !== null) {
      assert.match(boundary, BOUNDARY);
      assert.ok(isSubsequence(boundary, value));
      // a boundary the header parser accepts is one the body parser accepts
      new MultiplexParser(boundary, REAL_LIMITS, { onPart() {}, onError() {} });
    }

    const subscriptions = parsed(() => parseChannelSubscriptions(value));
    if (subscriptions !== null) {
      const names = new Set<string>();
      for (const { name, since } of subscriptions) {
        assert.ok(CHANNEL_NAME.test(name) && value.includes(name), `channel ${JSON.stringify(name)}`);
        assert.ok(!names.has(name), `channel ${name} subscribed twice`);
        names.add(name);
        if (since !== null) assert.ok(Number.isSafeInteger(since) && new RegExp(`since\\s*=\\s*0*${since}(?!\\d)`, 'i').test(value), `since ${since}`);
      }
    }
  });
}

describe('fuzz: header values', () => {
  it('every parser returns what was in the input or throws BadHeaderValueError', () => {
    fc.assert(fc.property(valueArb, fuzzValue), runParameters());
  });

  it('huge values: long lists, long numbers, long quoted strings', () => {
    const arb = fc.record({
      unit: fc.constantFrom('a,', ', ', 'room-1, ', '9', '\\n', '"', ';', '; a=b', 'x', ' '),
      prefix: fc.constantFrom('', '20; data="', 'text/plain; p="', 'application/x-multiplex; boundary=', 'room; since='),
      size: fc.integer({ min: 1, max: MAX_VALUE_BYTES }),
    });
    fc.assert(fc.property(arb, ({ unit, prefix, size }) => fuzzValue(prefix + unit.repeat(Math.ceil(size / unit.length)))), runParameters(Math.max(10, Math.ceil(RUNS / 10))));
  });

  // Found by this file: a quadratic duplicate check let a 64 KiB CGI head naming 16,000 channels block a shard
  // for about a second.
  // A ratio, not a time: 4× the channels take about 4× as long when linear, 16× when quadratic. The best of 3 runs of
  // each, so that a busy machine's pauses do not decide it.
  it('parseChannelSubscriptions is linear in the number of channels', () => {
    const bestMs = (count: number) => {
      const header = Array.from({ length: count }, (_, i) => i.toString(36)).join(',');
      let best = Infinity;
      for (let run = 0; run < 3; run++) {
        const started = performance.now();
        assert.equal(parseChannelSubscriptions(header).length, count);
        best = Math.min(best, performance.now() - started);
      }
      return best;
    };
    const [few, many] = [bestMs(6000), bestMs(24_000)];
    assert.ok(many < 8 * few, `6,000 channels took ${few.toFixed(1)} ms, 24,000 took ${many.toFixed(1)} ms`);
  });
});

// ---- tokens ----

const NODE_IDS = ['n', 'node1', 'Hq3x9Ak_', 'a-b_C', 'x'.repeat(16)];
const TOKEN_DICTIONARY = ['.', '..', '0', '00', 'z', 'Z', '1023', 'sg', '-', '_', 'A'.repeat(22), 'A'.repeat(21), 'node1.', '\0', ' ', '+', '\xe9', '\u{1F600}'];

/** `<node>.<shard>.<secret>` with each piece valid or subtly not: leading zeros, signs, case, lengths, dots. */
const craftedTokenArb = fc
  .tuple(
    fc.oneof(fc.constantFrom(...NODE_IDS), fc.constantFrom('', 'x'.repeat(17), 'a.b', 'n!', 'n ', '\xe9')),
    fc.oneof(
      fc.nat(MAX_SHARDS + 100).map((n) => n.toString(36)),
      fc.constantFrom('', '0', '00', '01', '0z', 'Z', '+1', '-1', ' 1', '1 ', '1e3', '0x1', 'sg', 'sf', 'zz', '1'.repeat(40), 'a.', '.', '\u0661'),
    ),
    fc.oneof(fc.constant('A'.repeat(22)), fc.string({ unit: fc.constantFrom('A', '_', '-', '.', '9', '\0'), minLength: 20, maxLength: 24 })),
  )
  .map(([node, shard, secret]) => `${node}.${shard}.${secret}`);

const tokenArb = fc.oneof(
  craftedTokenArb,
  fc.tuple(fc.constantFrom(...NODE_IDS), fc.nat(MAX_SHARDS - 1), editsArb(TOKEN_DICTIONARY, { maxLength: 3, maxHuge: 4096 }), fc.boolean())
    .map(([node, shard, edits, isDamaged]) => {
      const token = mintToken(node, shard);
      return isDamaged ? damage(latin1(token), edits).toString('latin1') : token;
    }),
  soupArb([...TOKEN_DICTIONARY, ...NODE_IDS, 'a', '1', '9']),
  fc.string({ unit: 'binary', maxLength: 80 }),
);

describe('fuzz: tokens', () => {
  it('parseTokenRoute names only routes written in the token, and localTokenShard agrees with it', () => {
    fc.assert(
      fc.property(tokenArb, fc.constantFrom(...NODE_IDS), (token, nodeId) =>
        timed('tokens', token, () => {
          const route = parseTokenRoute(token);
          if (route !== null) {
            assert.match(route.nodeId, NODE_ID_PATTERN);
            assert.ok(Number.isInteger(route.shard) && route.shard >= 0 && route.shard < MAX_SHARDS);
            const prefix = `${route.nodeId}.${route.shard.toString(36)}.`;
            assert.ok(token.startsWith(prefix) && token.length === prefix.length + 22, `route ${JSON.stringify(route)} is not what ${JSON.stringify(token)} says`);
          }
          // this node's prefix, another node's, and the one the token starts with (muxgate's own node ids are valid ones)
          const ownNode = token.slice(0, Math.max(0, token.indexOf('.')));
          for (const node of new Set(NODE_ID_PATTERN.test(ownNode) ? [nodeId, ownNode] : [nodeId])) {
            const shard = localTokenShard(token, `${node}.`);
            assert.equal(shard, route !== null && route.nodeId === node ? route.shard : -1, `localTokenShard(${JSON.stringify(token)}, "${node}.")`);
          }
        })),
      runParameters(),
    );
  });
});

// ---- FastCGI records ----

/** Heads (valid, of another version, of fixed-size types with other sizes), lengths and padding bytes. */
const FASTCGI_DICTIONARY = [
  '\x01\x06\x00\x01\x00\x05\x03\x00', '\x01\x03\x00\x01\x00\x08\x00\x00', '\x01\x03\x00\x01\x00\x02\x00\x00', '\x01\x06\x00\x01\x00\x00\x00\x00',
  '\x01\x06\xff\xff\xff\xff\xff\x00', '\x02\x06\x00\x01', '\x00', '\x01', '\x08', '\xff', '\xff\xff', '\x00\x00\x00\x00\x00\x00\x00', '\x80\x00\x00\x01',
];
const FIXED_SIZE_TYPES = new Set([FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_UNKNOWN_TYPE]);

const fastcgiRecordArb = fc.record({
  type: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(FCGI_STDOUT, FCGI_PARAMS, FCGI_END_REQUEST) }, { weight: 1, arbitrary: fc.nat(255) }),
  requestId: fc.oneof(fc.constant(1), fc.nat(65_535)),
  content: fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: 60 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 70_000 }).map((length) => new Uint8Array(length).fill(0x61)) },
  ),
}).map(({ type, requestId, content }) => encodeRecords(type, requestId, FIXED_SIZE_TYPES.has(type) ? new Uint8Array(8) : content));

const validRecordsArb = fc.array(fastcgiRecordArb, { maxLength: 6 }).map((records) => Buffer.concat(records));

interface RecordsOutcome {
  records: Array<{ type: number; requestId: number; content: Buffer }>;
  error: MuxError | null;
}

/** push() every chunk, then check that more input after an error changes nothing. */
function runRecords(chunks: readonly Buffer[]): RecordsOutcome {
  const outcome: RecordsOutcome = { records: [], error: null };
  const decoder = new RecordDecoder({
    onRecord(type, requestId, content) {
      assert.equal(outcome.error, null, 'a record was delivered after an error');
      outcome.records.push({ type, requestId, content });
    },
    onError(error) {
      assert.equal(outcome.error, null, 'a second error');
      outcome.error = error;
    },
  });
  try {
    for (const chunk of chunks) decoder.push(chunk);
  } catch (error) {
    assert.fail(`RecordDecoder threw out of push(): ${String(error)}`);
  }
  assert.equal(decoder.isDone, outcome.error !== null, 'isDone disagrees with the error');
  if (outcome.error !== null) {
    assert.ok(outcome.error instanceof MalformedFastcgiError && outcome.error.code === 'MUX_ERR_MALFORMED_FASTCGI', `undocumented error: ${String(outcome.error)}`);
    const count = outcome.records.length;
    decoder.push(encodeRecords(FCGI_STDOUT, 1, latin1('late')));
    assert.equal(outcome.records.length, count, 'a record was delivered after an error');
  }
  return outcome;
}

/**
 * For input pushed as one chunk, the records are the input's, one after another from its start: each content a view
 * of the input right after a head that gives its type, request id and length. Decoding stops where the input ends
 * inside a record, or with the error at a head that is not version 1 or gives a fixed-size body another size.
 */
function checkRecordsInInput(input: Buffer, outcome: RecordsOutcome): void {
  let at = 0;
  for (const { type, requestId, content } of outcome.records) {
    assert.ok(at + 8 + content.length <= input.length, `a record at ${at} runs past the input`);
    assert.deepEqual([input[at], input[at + 1], input.readUInt16BE(at + 2), input.readUInt16BE(at + 4)], [1, type, requestId, content.length], `the head at ${at}`);
    if (content.length > 0) assert.ok(content.buffer === input.buffer && content.byteOffset === input.byteOffset + at + 8, `the content at ${at} is not a view of the input`);
    at += 8 + content.length + input[at + 6]!;
  }
  const rest = input.length - at;
  if (outcome.error === null) {
    assert.ok(rest <= 0 || rest < 8 || rest < 8 + input.readUInt16BE(at + 4), `a whole record at ${at} was not delivered`);
    return;
  }
  assert.ok(rest >= 8, 'an error without a whole head');
  const type = input[at + 1]!;
  assert.ok(input[at] !== 1 || (FIXED_SIZE_TYPES.has(type) && input.readUInt16BE(at + 4) !== 8), `an error at a valid head (${input.toString('hex', at, at + 8)})`);
}

const recordsSummary = (outcome: RecordsOutcome) => ({
  records: outcome.records.map(({ type, requestId, content }) => [type, requestId, content.toString('latin1')]),
  error: outcome.error?.message ?? null,
});

function fuzzRecords(input: Buffer, chunking: number[] | 'bytes'): void {
  timed('FastCGI records', input, () => {
    const whole = runRecords([input]);
    checkRecordsInInput(input, whole);
    assert.deepEqual(recordsSummary(runRecords(cut(input, chunking))), recordsSummary(whole), 'the chunking changed the outcome');
  });
}

const paramsArb = fc.dictionary(
  fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 8 })),
  fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.nat(300).map((length) => 'v'.repeat(length))),
  { maxKeys: 8 },
);

describe('fuzz: FastCGI records', () => {
  it('damaged valid record streams: records that were in the input, or MalformedFastcgiError', () => {
    fc.assert(fc.property(validRecordsArb, editsArb(FASTCGI_DICTIONARY), chunkingArb, (input, edits, chunking) => fuzzRecords(damage(input, edits), chunking)), runParameters());
  });

  it('random bytes and soups of heads', () => {
    const inputArb = fc.oneof(fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)), soupArb(FASTCGI_DICTIONARY, 40).map(latin1));
    fc.assert(fc.property(inputArb, chunkingArb, fuzzRecords), runParameters());
  });

  it('damaged params: name-value pairs or MalformedFastcgiError', () => {
    fc.assert(
      fc.property(paramsArb, editsArb(FASTCGI_DICTIONARY, { minLength: 0 }), (params, edits) => {
        const input = damage(encodeParams(params), edits);
        timed('FastCGI params', input, () => {
          let decoded: Map<string, string>;
          try {
            decoded = decodeParams(input);
          } catch (error) {
            assert.ok(error instanceof MalformedFastcgiError && error.code === 'MUX_ERR_MALFORMED_FASTCGI', `undocumented error: ${String(error)}`);
            return;
          }
          if (edits.length === 0) assert.deepEqual(decoded, new Map(Object.entries(params)));
          // each pair takes at least its two length bytes and its bytes
          let bytes = 0;
          for (const [name, value] of decoded) bytes += 2 + Buffer.byteLength(name.replaceAll('\ufffd', '')) + Buffer.byteLength(value.replaceAll('\ufffd', ''));
          assert.ok(bytes <= input.length, `${decoded.size} pairs of ${bytes} bytes from ${input.length} bytes of input`);
        });
      }),
      runParameters(),
    );
  });
});

// ---- memory ----

// Found by this file: a part fed in tiny chunks kept one Buffer view per chunk, about 140 bytes of heap per body
// byte fed one byte at a time (a chunked push body of 1-byte chunks does that): a 1 MiB part pinned ~145 MB.
it('MultiplexParser holds a part fed one byte at a time in about its own size', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const size = 128 * 1024;
  const parser = new MultiplexParser('B', REAL_LIMITS, { onPart() {}, onError(error) { assert.fail(error) } });
  parser.push(latin1('--B\r\n\r\n'));
  const body = Buffer.alloc(size, 0x61);
  gc();
  const before = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  for (let i = 0; i < size; i++) parser.push(body.subarray(i, i + 1));
  gc();
  const held = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - before;
  parser.push(latin1('\r\n--B--'));
  assert.ok(held < 8 * size, `a ${size}-byte part fed byte by byte holds ${(held / size).toFixed(0)} bytes per byte`);
});

it('RecordDecoder holds a record fed one byte at a time in about its own size', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let delivered = 0;
  const decoder = new RecordDecoder({ onRecord(_type, _requestId, content) { delivered = content.length; }, onError(error) { assert.fail(error) } });
  const input = encodeRecords(FCGI_STDOUT, 1, Buffer.alloc(65_535, 0x61));
  gc();
  const before = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  // all but the content's last byte: the record is still being gathered
  const gathered = 8 + 65_534;
  for (let i = 0; i < gathered; i++) decoder.push(input.subarray(i, i + 1));
  gc();
  const held = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - before;
  decoder.push(input.subarray(gathered));
  assert.equal(delivered, 65_535);
  assert.ok(held < 4 * FCGI_MAX_RECORD_BYTES, `a record fed byte by byte holds ${held} bytes`);
});
