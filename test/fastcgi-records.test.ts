import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_KEEP_CONN, FCGI_MAX_CONTENT_BYTES, FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDIN, FCGI_STDOUT,
  FCGI_UNKNOWN_TYPE, RecordDecoder, beginRequestBody, beginRequestFlags, decodeParams, encodeParams, encodeRecords, endRequestBody,
} from '../src/protocol/fastcgi-records.ts';
import { MalformedFastcgiError, MuxError } from '../src/errors.ts';

interface Decoded {
  type: number;
  requestId: number;
  content: Buffer;
}

/** Decodes the chunks; the records and errors the sink saw, in order. */
function decode(chunks: Buffer[]): { records: Decoded[]; errors: MuxError[]; isDone: boolean } {
  const records: Decoded[] = [];
  const errors: MuxError[] = [];
  const decoder = new RecordDecoder({
    onRecord(type, requestId, content) {
      assert.equal(errors.length, 0, 'a record was delivered after an error');
      records.push({ type, requestId, content });
    },
    onError(error) {
      errors.push(error);
    },
  });
  for (const chunk of chunks) decoder.push(chunk);
  return { records, errors, isDone: decoder.isDone };
}

const plain = (records: Decoded[]) => records.map(({ type, requestId, content }) => ({ type, requestId, content: content.toString('latin1') }));

/** The input in pieces of the given lengths (copies), the rest in a last piece. */
function inPieces(input: Buffer, lengths: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let at = 0;
  for (const length of lengths) pieces.push(Buffer.from(input.subarray(at, (at += length))));
  return [...pieces, Buffer.from(input.subarray(at))];
}

describe('encodeRecords', () => {
  const cases = [
    { name: 'empty content: one empty record, the end of a stream', type: FCGI_STDIN, id: 1, content: '', hex: '0105000100000000' },
    { name: 'content padded to 8 bytes with zeros', type: FCGI_STDOUT, id: 0x0102, content: 'hello', hex: `0106010200050300${Buffer.from('hello').toString('hex')}000000` },
    { name: 'content of 8 bytes: no padding', type: FCGI_PARAMS, id: 65535, content: '12345678', hex: `0104ffff00080000${Buffer.from('12345678').toString('hex')}` },
  ];
  for (const { name, type, id, content, hex } of cases) {
    it(name, () => {
      assert.equal(encodeRecords(type, id, Buffer.from(content)).toString('hex'), hex);
    });
  }

  it('splits content into records of at most 65,535 bytes, without a trailing empty record', () => {
    for (const length of [FCGI_MAX_CONTENT_BYTES, FCGI_MAX_CONTENT_BYTES + 1, 2 * FCGI_MAX_CONTENT_BYTES, 150_000]) {
      const content = Buffer.alloc(length);
      for (let i = 0; i < length; i++) content[i] = i % 251;
      const out = encodeRecords(FCGI_STDIN, 7, content);
      const { records, errors } = decode([out]);
      assert.deepEqual(errors, []);
      const sizes = records.map((record) => record.content.length);
      assert.deepEqual(sizes, Array.from({ length: Math.ceil(length / FCGI_MAX_CONTENT_BYTES) }, (_, i) => Math.min(FCGI_MAX_CONTENT_BYTES, length - i * FCGI_MAX_CONTENT_BYTES)));
      assert.ok(Buffer.concat(records.map((record) => record.content)).equals(content));
      assert.ok(records.every((record) => record.type === FCGI_STDIN && record.requestId === 7));
      assert.equal(out.length, sizes.reduce((sum, size) => sum + 8 + size + (-size & 7), 0), 'a record is not padded to 8 bytes');
    }
  });

  it('writes zero padding whatever the memory it was given held', () => {
    // Buffer.allocUnsafe hands out pooled memory: dirty it first
    Buffer.allocUnsafe(4096).fill(0xff);
    for (let length = 1; length < 8; length++) {
      const out = encodeRecords(FCGI_STDOUT, 1, Buffer.alloc(length, 0x61));
      assert.equal(out[6], 8 - length);
      assert.ok(out.subarray(8 + length).equals(Buffer.alloc(8 - length)), `padding after ${length} bytes is not zeros`);
      assert.equal(out[7], 0, 'the reserved byte is not zero');
    }
  });
});

describe('begin- and end-request bodies', () => {
  it('a responder that keeps its connection', () => {
    const body = beginRequestBody(FCGI_RESPONDER, FCGI_KEEP_CONN);
    assert.deepEqual([...body], [0, 1, 1, 0, 0, 0, 0, 0]);
    assert.equal(beginRequestFlags(body), FCGI_KEEP_CONN);
    assert.equal(beginRequestFlags(beginRequestBody(FCGI_RESPONDER, 0)), 0);
  });

  it('an end-request body: a signed application status and the protocol status', () => {
    assert.equal(endRequestBody(-1, 3).toString('hex'), 'ffffffff03000000');
    assert.equal(endRequestBody(255, 0).toString('hex'), '000000ff00000000');
  });
});

describe('encodeParams and decodeParams', () => {
  const cases: Array<{ name: string; params: Record<string, string>; hex?: string }> = [
    { name: 'no params', params: {}, hex: '' },
    { name: 'short ASCII names and values: one length byte each', params: { A: 'b', CD: '' }, hex: '0101' + '4162' + '0200' + '4344' },
    { name: 'a value of 128 bytes: a four-byte length with the high bit set', params: { V: 'x'.repeat(128) }, hex: '0180000080' + '56' + '78'.repeat(128) },
    { name: 'a name of 127 bytes: still one byte', params: { ['N'.repeat(127)]: '' }, hex: '7f00' + '4e'.repeat(127) },
    { name: 'non-ASCII: lengths in UTF-8 bytes', params: { É: 'é✓' }, hex: '0205' + Buffer.from('Éé✓').toString('hex') },
    // 64 characters, 128 bytes: a length counted in characters would take one byte and be wrong
    { name: 'non-ASCII past 127 bytes in fewer characters', params: { A: 'é'.repeat(64) }, hex: '0180000080' + '41' + Buffer.from('é'.repeat(64)).toString('hex') },
  ];
  for (const { name, params, hex } of cases) {
    it(name, () => {
      const encoded = encodeParams(params);
      if (hex !== undefined) assert.equal(encoded.toString('hex'), hex);
      assert.deepEqual(decodeParams(encoded), new Map(Object.entries(params)));
    });
  }

  it('decodes a short length written in four bytes, and keeps the last value of a name given twice', () => {
    const content = Buffer.from([0x80, 0, 0, 1, 1, 0x41, 0x62, 1, 1, 0x41, 0x63]);
    assert.deepEqual(decodeParams(content), new Map([['A', 'c']]));
  });

  const malformed = [
    { name: 'a four-byte length cut short', hex: '8500', at: 0 },
    { name: 'a value length missing', hex: '01', at: 0 },
    { name: 'a pair longer than what is left', hex: '01014142' + '0103414243', at: 4 },
    { name: 'a name-value pair declaring 2 GiB', hex: 'ffffffff00', at: 0 },
  ];
  for (const { name, hex, at } of malformed) {
    it(`${name} is a MalformedFastcgiError naming the pair`, () => {
      assert.throws(() => decodeParams(Buffer.from(hex, 'hex')), (error: unknown) => {
        assert.ok(error instanceof MalformedFastcgiError);
        assert.equal(error.code, 'MUX_ERR_MALFORMED_FASTCGI');
        assert.match(error.message, new RegExp(`pair at byte ${at}\\b`));
        return true;
      });
    });
  }

  const text = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'grapheme', maxLength: 80 }),
    fc.integer({ min: 120, max: 70_000 }).map((length) => 'v'.repeat(length)),
  );

  it('property: what encodeParams writes, decodeParams reads back', () => {
    fc.assert(
      fc.property(fc.dictionary(text, text, { maxKeys: 12 }), (params) => {
        assert.deepEqual(decodeParams(encodeParams(params)), new Map(Object.entries(params)));
      }),
      { numRuns: 200 },
    );
  });
});

describe('RecordDecoder', () => {
  const stdout = encodeRecords(FCGI_STDOUT, 1, Buffer.from('Status: 200\r\n\r\nhi'));
  const emptyStdout = encodeRecords(FCGI_STDOUT, 1, Buffer.alloc(0));
  const end = encodeRecords(FCGI_END_REQUEST, 1, endRequestBody(0, 0));
  const answer = Buffer.concat([stdout, emptyStdout, end]);
  const expected = [
    { type: FCGI_STDOUT, requestId: 1, content: 'Status: 200\r\n\r\nhi' },
    { type: FCGI_STDOUT, requestId: 1, content: '' },
    { type: FCGI_END_REQUEST, requestId: 1, content: '\0'.repeat(8) },
  ];

  it('gives each record of a chunk as a view of it', () => {
    const { records, errors, isDone } = decode([answer]);
    assert.deepEqual(errors, []);
    assert.equal(isDone, false);
    assert.deepEqual(plain(records), expected);
    assert.equal(records[0]!.content.buffer, answer.buffer);
    assert.equal(records[0]!.content.byteOffset, answer.byteOffset + 8);
  });

  it('gives the same records however the input is cut: in heads, contents and paddings, one byte at a time', () => {
    for (let cut = 0; cut <= answer.length; cut++) {
      assert.deepEqual(plain(decode([answer.subarray(0, cut), answer.subarray(cut)]).records), expected, `cut at ${cut}`);
    }
    assert.deepEqual(plain(decode(Array.from(answer, (byte) => Buffer.from([byte]))).records), expected);
  });

  it('gives a record once its content is complete, before its padding has arrived', () => {
    const { records } = decode([stdout.subarray(0, stdout.length - 1)]);
    assert.deepEqual(plain(records), expected.slice(0, 1));
  });

  const malformed = [
    { name: 'a record of version 0', bytes: Buffer.from([0, FCGI_STDOUT, 0, 1, 0, 0, 0, 0]), message: /version 0, expected 1/ },
    { name: 'an end-request body of 7 bytes', bytes: encodeRecords(FCGI_END_REQUEST, 1, Buffer.alloc(7)), message: /type 3 with 7 bytes of content, expected 8/ },
    { name: 'a begin-request body of 16 bytes', bytes: encodeRecords(FCGI_BEGIN_REQUEST, 1, Buffer.alloc(16)), message: /type 1 with 16 bytes/ },
    { name: 'an unknown-type body of none', bytes: encodeRecords(FCGI_UNKNOWN_TYPE, 0, Buffer.alloc(0)), message: /type 11 with 0 bytes/ },
  ];
  for (const { name, bytes, message } of malformed) {
    it(`${name} ends decoding with a MalformedFastcgiError; what follows is ignored`, () => {
      const { records, errors, isDone } = decode([stdout, Buffer.concat([bytes, stdout]), stdout]);
      assert.deepEqual(plain(records), expected.slice(0, 1));
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof MalformedFastcgiError);
      assert.equal(errors[0].code, 'MUX_ERR_MALFORMED_FASTCGI');
      assert.match(errors[0].message, message);
      assert.equal(isDone, true);
    });
  }

  const recordArb = fc.record({
    type: fc.constantFrom(FCGI_STDOUT, FCGI_STDIN, FCGI_PARAMS, 0, 255, FCGI_END_REQUEST, FCGI_BEGIN_REQUEST),
    requestId: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 65_535 })),
    content: fc.oneof(
      { weight: 6, arbitrary: fc.uint8Array({ maxLength: 40 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 140_000 }).map((length) => new Uint8Array(length).fill(length & 0xff)) },
    ),
  }).map((record) => (record.type === FCGI_END_REQUEST || record.type === FCGI_BEGIN_REQUEST ? { ...record, content: new Uint8Array(8).fill(9) } : record));

  it('property: records encoded one after another, cut anywhere, decode to the same records', () => {
    fc.assert(
      fc.property(fc.array(recordArb, { maxLength: 8 }), fc.array(fc.oneof(fc.nat(16), fc.nat(70_000)), { maxLength: 30 }), (records, lengths) => {
        const input = Buffer.concat(records.map(({ type, requestId, content }) => encodeRecords(type, requestId, content)));
        // content over 65,535 bytes comes back as several records
        const expectedRecords = records.flatMap(({ type, requestId, content }) => {
          const pieces = [];
          for (let from = 0; from === 0 || from < content.length; from += FCGI_MAX_CONTENT_BYTES) {
            pieces.push({ type, requestId, content: Buffer.from(content.subarray(from, from + FCGI_MAX_CONTENT_BYTES)).toString('latin1') });
          }
          return pieces;
        });
        const whole = decode([input]);
        const split = decode(inPieces(input, lengths));
        assert.deepEqual(whole.errors, []);
        assert.deepEqual(plain(whole.records), expectedRecords);
        assert.deepEqual(plain(split.records), expectedRecords);
      }),
      { numRuns: 200 },
    );
  });
});
