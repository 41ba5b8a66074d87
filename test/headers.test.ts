import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { multiplexBoundary, parseHold, parseKeepAlive, parseList, parseMediaType, parseSeconds, unescapeC } from '../src/protocol/headers.ts';
import { BadHeaderValueError } from '../src/errors.ts';

function assertBad(fn: () => unknown, header: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadHeaderValueError, `expected BadHeaderValueError, got ${String(err)}`);
    assert.equal(err.code, 'MUX_ERR_BAD_HEADER');
    assert.ok(err.message.startsWith(`${header}: `), err.message);
    assert.match(err.message, /is invalid: expected /);
    return true;
  });
}

describe('parseList', () => {
  const table: Array<[string, string[]]> = [
    ['a', ['a']],
    ['a, b ,c', ['a', 'b', 'c']],
    ['a,,b, ,\t,', ['a', 'b']],
    ['', []],
    [' , ', []],
    ['\ta\t', ['a']],
  ];
  for (const [value, expected] of table) {
    it(`${JSON.stringify(value)} -> ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseList(value), expected);
    });
  }

  it('round-trips any list of non-empty elements without commas or edge whitespace', () => {
    const item = fc.string({ unit: fc.constantFrom(...'ab:@-_. '), minLength: 1, maxLength: 8 }).filter((s) => s.trim() === s && s !== '');
    fc.assert(
      fc.property(fc.array(item, { maxLength: 6 }), fc.constantFrom(',', ', ', ' ,\t'), (items, separator) => {
        assert.deepEqual(parseList(items.join(separator)), items);
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseSeconds', () => {
  const good: Array<[string, number]> = [
    ['0', 0],
    ['20', 20],
    ['0.5', 0.5],
    [' 1.25 ', 1.25],
    ['007', 7],
    ['31536000', 31_536_000],
  ];
  for (const [value, expected] of good) {
    it(`${JSON.stringify(value)} -> ${expected}`, () => {
      assert.equal(parseSeconds('Multiplex-Timeout', value), expected);
    });
  }
  for (const value of ['', ' ', '-1', '+1', '1e3', '0x10', '.5', '5.', '1,5', 'Infinity', 'NaN', '31536000.5', '31536001', '1 2', '20s']) {
    it(`rejects ${JSON.stringify(value)}, naming the header`, () => {
      assertBad(() => parseSeconds('Multiplex-Timeout', value), 'Multiplex-Timeout');
    });
  }
});

describe('unescapeC', () => {
  const table: Array<[string, string]> = [
    ['plain', 'plain'],
    ['a\\nb', 'a\nb'],
    ['\\r\\n\\t', '\r\n\t'],
    ['\\\\', '\\'],
    ['\\"quoted\\"', '"quoted"'],
    ['\\q\\0', 'q0'],
    ['\\\\n', '\\n'],
    ['trailing\\', 'trailing\\'],
    [':\\n\\n', ':\n\n'],
  ];
  for (const [value, expected] of table) {
    it(`${JSON.stringify(value)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(unescapeC(value), expected);
    });
  }

  it('inverts C escaping of any string', () => {
    const escape = (s: string) => s.replace(/[\\"\n\r\t]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]!);
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'ab\\"\n\r\t ') }), (s) => {
        assert.equal(unescapeC(escape(s)), s);
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseKeepAlive', () => {
  const good: Array<[string, number, string | null]> = [
    ['20', 20, null],
    ['0.5', 0.5, null],
    ['20; data="ping"', 20, 'ping'],
    ['20;data=":\\n\\n"', 20, ':\n\n'],
    ['15 ;  DATA = "a\\"b;c" ', 15, 'a"b;c'],
    ['1; data="\\r\\n\\\\"', 1, '\r\n\\'],
    ['1; data="caf\xe9"', 1, 'caf\xe9'],
  ];
  for (const [value, seconds, data] of good) {
    it(`${JSON.stringify(value)}`, () => {
      const keepAlive = parseKeepAlive(value);
      assert.equal(keepAlive.seconds, seconds);
      if (data === null) assert.equal(keepAlive.data, null);
      else assert.deepEqual(keepAlive.data, Buffer.from(data, 'latin1'));
    });
  }
  const bad = [
    '',
    '0',
    '0; data="x"',
    '-5',
    'abc',
    '20;',
    '20; data=ping',
    '20; data=""',
    '20; data="unterminated',
    '20; data="x\\"',
    '20; data="x" extra',
    '20; data="x"; data="y"',
    '20; other="x"',
    '20 data="x"',
    '99999999999',
  ];
  for (const value of bad) {
    it(`rejects ${JSON.stringify(value)}`, () => {
      assertBad(() => parseKeepAlive(value), 'Multiplex-Keep-Alive');
    });
  }
});

describe('parseHold', () => {
  const table: Array<[string | undefined, string]> = [
    [undefined, 'none'],
    ['stream', 'stream'],
    ['Stream', 'stream'],
    [' RESPONSE ', 'response'],
    ['none', 'none'],
  ];
  for (const [value, expected] of table) {
    it(`${JSON.stringify(value)} -> ${expected}`, () => {
      assert.equal(parseHold(value), expected);
    });
  }
  for (const value of ['', 'yes', 'streams', 'stream, response']) {
    it(`rejects ${JSON.stringify(value)}`, () => {
      assertBad(() => parseHold(value), 'Multiplex-Hold');
    });
  }
});

describe('parseMediaType', () => {
  it('lowercases the type and parameter names and keeps parameter values', () => {
    const media = parseMediaType('Text/HTML; Charset=UTF-8');
    assert.equal(media.type, 'text/html');
    assert.deepEqual([...media.params], [['charset', 'UTF-8']]);
  });

  it('unquotes quoted values, with quoted-pairs, semicolons and spaces inside', () => {
    const media = parseMediaType('application/x-multiplex; boundary="a b;c\\"d"; x=y');
    assert.deepEqual([...media.params], [['boundary', 'a b;c"d'], ['x', 'y']]);
  });

  it('accepts whitespace around separators and empty parameters', () => {
    const media = parseMediaType(' text/plain ;charset=utf-8 ; ;\tformat=flowed ;');
    assert.equal(media.type, 'text/plain');
    assert.deepEqual([...media.params], [['charset', 'utf-8'], ['format', 'flowed']]);
  });

  it('accepts a type without parameters', () => {
    assert.deepEqual(parseMediaType('text/event-stream'), { type: 'text/event-stream', params: new Map() });
  });

  const bad = [
    '',
    'text',
    'text/',
    '/plain',
    'text/pl ain',
    'text/plain; charset',
    'text/plain; charset=',
    'text/plain; =utf-8',
    'text/plain; charset = utf-8',
    'text/plain; a=b c',
    'text/plain; a="unterminated',
    'text/plain; a="x"y',
    'text/plain; a=1; A=2',
    'text/plain; a=b=c',
  ];
  for (const value of bad) {
    it(`rejects ${JSON.stringify(value)}`, () => {
      assertBad(() => parseMediaType(value), 'Content-Type');
    });
  }
});

describe('multiplexBoundary', () => {
  const table: Array<[string | undefined, string | null]> = [
    [undefined, null],
    ['text/html', null],
    ['text/html; boundary=x', null],
    ['application/x-multiplexed; boundary=x', null],
    ['garbage;;;', null],
    ['application/x-multiplex; boundary=B', 'B'],
    ['Application/X-Multiplex;BOUNDARY=frontier', 'frontier'],
    ['application/x-multiplex; charset=utf-8; boundary="a b:c=d?"', 'a b:c=d?'],
    [`application/x-multiplex; boundary=${'x'.repeat(70)}`, 'x'.repeat(70)],
    ["application/x-multiplex; boundary=\"'()+_,-./:=?\"", "'()+_,-./:=?"],
  ];
  for (const [value, expected] of table) {
    it(`${JSON.stringify(value)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(multiplexBoundary(value), expected);
    });
  }
  const bad = [
    'application/x-multiplex',
    'application/x-multiplex; charset=utf-8',
    'application/x-multiplex; boundary=""',
    'application/x-multiplex; boundary="ends with space "',
    `application/x-multiplex; boundary=${'x'.repeat(71)}`,
    'application/x-multiplex; boundary="a\\"b"',
    'application/x-multiplex; boundary=a*b',
    'application/x-multiplex; boundary="caf\xe9"',
    'application/x-multiplex; boundary="a\\\rb"',
    'application/x-multiplex; boundary',
  ];
  for (const value of bad) {
    it(`rejects ${JSON.stringify(value)}`, () => {
      assertBad(() => multiplexBoundary(value), 'Content-Type');
    });
  }
});
