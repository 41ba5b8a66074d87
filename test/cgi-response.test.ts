import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CgiHeadParser } from '../src/protocol/cgi-response.ts';
import type { CgiHead } from '../src/protocol/cgi-response.ts';
import { BadCgiHeadError } from '../src/errors.ts';

/** Feeds the chunks until the head is complete; returns the head and all the body bytes after it. */
function parseHead(chunks: Array<string | Buffer>, maxHeadBytes = 8192): { head: CgiHead; rest: Buffer; chunksUsed: number } | null {
  const parser = new CgiHeadParser(maxHeadBytes);
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    const result = parser.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
    if (result !== null) {
      const after = chunks.slice(i + 1).map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c));
      return { head: result.head, rest: Buffer.concat([result.rest, ...after]), chunksUsed: i + 1 };
    }
  }
  return null;
}

function assertBadHead(chunks: Array<string | Buffer>, message: RegExp, maxHeadBytes = 8192): void {
  assert.throws(
    () => parseHead(chunks, maxHeadBytes),
    (err: unknown) => {
      assert.ok(err instanceof BadCgiHeadError, `expected BadCgiHeadError, got ${String(err)}`);
      assert.equal(err.code, 'MUX_ERR_BAD_CGI_HEAD');
      assert.match(err.message, message);
      return true;
    },
  );
}

describe('CgiHeadParser', () => {
  it('parses Status, headers in order and the body that follows', () => {
    const result = parseHead(['Content-Type: text/plain\r\nStatus: 404 Not Found\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody bytes']);
    assert.ok(result);
    assert.deepEqual(result.head, {
      status: 404,
      statusText: 'Not Found',
      headers: [
        ['Content-Type', 'text/plain'],
        ['X-A', '1'],
        ['x-a', '2'],
      ],
    });
    assert.equal(result.rest.toString(), 'body bytes');
  });

  it('returns null until the blank line, then the rest of that chunk', () => {
    const parser = new CgiHeadParser(8192);
    assert.equal(parser.push(Buffer.from('Content-Type: text/plain\r\n')), null);
    assert.equal(parser.push(Buffer.from('X-Y: z\r')), null);
    const result = parser.push(Buffer.from('\n\r\nhello'));
    assert.ok(result);
    assert.deepEqual(result.head.headers, [
      ['Content-Type', 'text/plain'],
      ['X-Y', 'z'],
    ]);
    assert.equal(result.rest.toString(), 'hello');
  });

  it('returns an empty rest when the chunk ends with the blank line', () => {
    const result = new CgiHeadParser(8192).push(Buffer.from('A: b\r\n\r\n'));
    assert.ok(result);
    assert.equal(result.rest.length, 0);
  });

  it('rest is a view of the chunk, not a copy', () => {
    const chunk = Buffer.from('A: b\n\nxyz');
    const result = new CgiHeadParser(8192).push(chunk);
    assert.ok(result);
    assert.equal(result.rest.buffer, chunk.buffer);
    assert.equal(result.rest.toString(), 'xyz');
  });

  it('keeps body bytes that look like headers or blank lines', () => {
    const result = parseHead(['A: b\r\n\r\n\r\n\r\nStatus: 500\r\n']);
    assert.ok(result);
    assert.deepEqual(result.head, { status: 200, statusText: 'OK', headers: [['A', 'b']] });
    assert.equal(result.rest.toString(), '\r\n\r\nStatus: 500\r\n');
  });

  for (const [name, input] of [
    ['LF', 'A: 1\nB: 2\n\nbody'],
    ['CRLF', 'A: 1\r\nB: 2\r\n\r\nbody'],
  ] as const) {
    it(`accepts ${name} line ends throughout`, () => {
      const result = parseHead([input]);
      assert.ok(result);
      assert.deepEqual(result.head.headers, [
        ['A', '1'],
        ['B', '2'],
      ]);
      assert.equal(result.rest.toString(), 'body');
    });
  }

  // The first line's end decides; a line ending otherwise is what a value with a lone LF from user input looks like.
  const mixed: Array<[string, string, RegExp]> = [
    ['a bare LF inside a CRLF head', 'A: 1\r\nX-User: a\nSet-Cookie: evil=1\r\n\r\nbody', /^line 2 of the CGI response head ends with a bare LF but the first line ended with CRLF/],
    ['a bare LF blank line ending a CRLF head', 'A: 1\r\nB: 2\r\n\nbody', /^line 3 .* bare LF .* first line ended with CRLF/],
    ['a CRLF line inside an LF head', 'A: 1\nB: 2\r\nC: 3\n\nbody', /^line 2 .* ends with CRLF but the first line ended with LF/],
    ['a CRLF blank line ending an LF head', 'A: 1\nB: 2\n\r\nbody', /^line 3 .* ends with CRLF but the first line ended with LF/],
    ['a CR before the LF of an LF head', 'A: 1\nB: 2\r\n\n', /^line 2 .* CRLF/],
  ];
  for (const [name, input, message] of mixed) {
    it(`rejects ${name}`, () => {
      assertBadHead([input], message);
    });
  }

  it('rejects a head that mixes line ends wherever it is cut', () => {
    const input = 'Content-Type: text/html\r\nX-User: a\nSet-Cookie: evil=1\r\n\r\nbody';
    for (let at = 0; at <= input.length; at++) assertBadHead([input.slice(0, at), input.slice(at)], /^line 2 .* bare LF/);
  });

  const statuses: Array<[string, number, string]> = [
    ['Status: 404 Not Found\r\n', 404, 'Not Found'],
    ['Status: 404\r\n', 404, 'Not Found'],
    ['STATUS:201  Made it \r\n', 201, 'Made it'],
    ['status: 299\r\n', 299, ''],
    ['Status: 200\r\n', 200, 'OK'],
    ['Status: 999 Custom\r\n', 999, 'Custom'],
    ['Status: 500\tOops\r\n', 500, 'Oops'],
    ['Location: /elsewhere\r\n', 302, 'Found'],
    ['Location: /x\r\nStatus: 301 Moved\r\n', 301, 'Moved'],
    ['', 200, 'OK'],
  ];
  for (const [head, status, statusText] of statuses) {
    it(`${JSON.stringify(head)} -> ${status} ${JSON.stringify(statusText)}`, () => {
      const result = parseHead([`${head}\r\n`]);
      assert.ok(result);
      assert.equal(result.head.status, status);
      assert.equal(result.head.statusText, statusText);
      assert.ok(!result.head.headers.some(([name]) => name.toLowerCase() === 'status'), 'Status is removed from the headers');
    });
  }

  it('accepts an empty head', () => {
    for (const input of ['\r\nbody', '\nbody']) {
      const result = parseHead([input]);
      assert.ok(result);
      assert.deepEqual(result.head, { status: 200, statusText: 'OK', headers: [] });
      assert.equal(result.rest.toString(), 'body');
    }
  });

  it('trims the value but keeps inner whitespace and empty values', () => {
    const result = parseHead(['A: \t a  b \t\r\nB:\r\nC:   \r\n\r\n']);
    assert.ok(result);
    assert.deepEqual(result.head.headers, [
      ['A', 'a  b'],
      ['B', ''],
      ['C', ''],
    ]);
  });

  it('keeps obs-text (latin1 bytes) in values', () => {
    const result = parseHead([Buffer.from([...Buffer.from('X: caf'), 0xe9, 0x0d, 0x0a, 0x0d, 0x0a])]);
    assert.ok(result);
    assert.deepEqual(result.head.headers, [['X', 'caf\xe9']]);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['a status that is not a number', 'Status: OK\r\n\r\n', /Status: "OK" is invalid/],
    ['a 2-digit status', 'Status: 99\r\n\r\n', /Status/],
    ['a 4-digit status', 'Status: 2000\r\n\r\n', /Status/],
    ['a status below 100', 'Status: 099\r\n\r\n', /Status/],
    ['an interim 1xx status', 'Status: 101 Switching Protocols\r\n\r\n', /final status/],
    ['a status glued to its reason', 'Status: 200OK\r\n\r\n', /Status/],
    ['an empty status', 'Status:\r\n\r\n', /Status/],
    ['two Status headers', 'Status: 200\r\nStatus: 404\r\n\r\n', /more than one Status/],
    ['a line without a colon', 'HTTP/1.1 200 OK\r\n\r\n', /no colon/],
    ['an empty header name', ': x\r\n\r\n', /not a valid token/],
    ['a space in the header name', 'Content Type: x\r\n\r\n', /not a valid token/],
    ['a space before the colon', 'Content-Type : x\r\n\r\n', /not a valid token/],
    ['a non-ASCII header name', 'X-Caf\xe9: x\r\n\r\n', /not a valid token/],
    ['obs-fold', 'X-A: a\r\n b\r\n\r\n', /folding/],
    ['a first line starting with a tab', '\tX: y\r\n\r\n', /folding/],
    ['a NUL in a value', 'X: a\x00b\r\n\r\n', /control character/],
    ['a CR alone in a value', 'X: a\rSet-Cookie: evil\r\n\r\n', /control character/],
    ['a CR before CRLF', 'X: a\r\r\n\r\n', /control character/],
    ['an escape in a value', 'X: \x1b[31m\r\n\r\n', /control character/],
    ['a DEL in a value', 'X: a\x7f\r\n\r\n', /control character/],
  ];
  for (const [name, input, message] of bad) {
    it(`rejects ${name}`, () => {
      assertBadHead([input], message);
    });
  }

  it('rejects a head longer than maxHeadBytes and accepts one of exactly that size', () => {
    const head = 'Content-Type: text/plain\r\nX: y\r\n\r\n';
    const ok = parseHead([`${head}body`], head.length);
    assert.ok(ok);
    assert.equal(ok.rest.toString(), 'body');
    assertBadHead([`${head}body`], /exceeds 33 bytes/, head.length - 1);
  });

  it('rejects an endless head line as soon as it passes the limit', () => {
    const parser = new CgiHeadParser(100);
    assert.equal(parser.push(Buffer.from('X: ')), null);
    assert.equal(parser.push(Buffer.alloc(97, 0x61)), null);
    assert.throws(() => parser.push(Buffer.from('a')), BadCgiHeadError);
  });

  it('refuses to be used after the head was complete', () => {
    const parser = new CgiHeadParser(100);
    assert.ok(parser.push(Buffer.from('\r\n')));
    assert.throws(() => parser.push(Buffer.from('x')));
  });

  it('gives the same head and rest for any split of the input', () => {
    const name = fc.string({ unit: fc.constantFrom(...'AbZ-_09!'), minLength: 1, maxLength: 10 });
    const value = fc.string({ unit: fc.constantFrom(...'ab :;,\t"\xe9'), maxLength: 20 });
    const input = fc
      .record({
        headers: fc.array(fc.tuple(name, value), { maxLength: 6 }),
        eol: fc.constantFrom('\r\n', '\n'),
        body: fc.uint8Array({ maxLength: 30 }),
      })
      .map(({ headers, eol, body }) => {
        const head = headers.map(([n, v]) => `${n}: ${v}${eol}`).join('') + eol;
        return { bytes: Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]), headers, body: Buffer.from(body) };
      });
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 12 }), ({ bytes, headers, body }, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let last = 0;
        for (const p of [...points, bytes.length]) {
          chunks.push(bytes.subarray(last, p));
          last = p;
        }
        const whole = parseHead([bytes]);
        const split = parseHead(chunks);
        assert.ok(whole && split);
        assert.deepEqual(split.head, whole.head);
        assert.deepEqual(split.rest, body);
        assert.deepEqual(whole.rest, body);
        assert.deepEqual(
          whole.head.headers,
          headers.filter(([n]) => n.toLowerCase() !== 'status').map(([n, v]) => [n, v.replace(/^[ \t]+|[ \t]+$/g, '')]),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('never throws anything but BadCgiHeadError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.integer({ min: 0, max: 100 }), (bytes, max) => {
        try {
          const result = parseHead([Buffer.from(bytes)], max);
          if (result) {
            for (const [, v] of result.head.headers) assert.doesNotMatch(v, /[\r\n\x00]/);
          }
        } catch (err) {
          assert.ok(err instanceof BadCgiHeadError, String(err));
        }
      }),
      { numRuns: 300 },
    );
  });
});
