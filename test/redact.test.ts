// Outside input in messages and logs: tokens masked, whole, truncated or altered, while what was wrong stays readable;
// and end to end, a live token in malformed input never reaches a log line above debug.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { quote, redact } from '../src/redact.ts';
import { mintToken } from '../src/protocol/token.ts';
import { MultiplexParser } from '../src/protocol/multiplex-parser.ts';
import { CgiHeadParser } from '../src/protocol/cgi-response.ts';
import { multiplexBoundary, parseChannelSubscriptions, parseKeepAlive } from '../src/protocol/headers.ts';
import type { MuxError } from '../src/errors.ts';
import { PHP_ROOT, openStream, phpBackend, sendPush } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate, type Muxgate } from './helpers/muxgate.ts';

// A minted token whose node id is random too, as MUX_NODE_ID's default is.
const TOKEN = 'Hq3x9Ak_.1.pSx0bF7n0V2lW4yQm8Rk2A';
const SECRET = 'pSx0bF7n0V2lW4yQm8Rk2A';

/** Every 8-character piece of the secret: none may show. */
function assertNoPieceOf(secret: string, text: string): void {
  for (let i = 0; i + 8 <= secret.length; i++) {
    assert.ok(!text.includes(secret.slice(i, i + 8)), `${JSON.stringify(secret.slice(i, i + 8))} of the secret shows in ${text}`);
  }
}

describe('redact', () => {
  const masked: Array<[string, string, string]> = [
    ['a whole token', `Multiplex-Token ${TOKEN}`, 'Multiplex-Token [masked].1.[masked]'],
    ['a token with a character added', `${TOKEN}x, b`, '[masked].1.[masked], b'],
    ['a token with a character changed', TOKEN.replace('V2', 'V3'), '[masked].1.[masked]'],
    ['a truncated token', TOKEN.slice(0, 20), '[masked].1.[masked]'],
    ['a token cut by a space', `${TOKEN.slice(0, 22)} ${TOKEN.slice(22)}`, '[masked].1.[masked] [masked]'],
    ['a secret alone, inside other text', `x=${SECRET};`, 'x=[masked];'],
    ['random runs joined by - and _', 'ab_9Zk-Qx7pLm2', '[masked]'],
  ];
  for (const [name, input, output] of masked) {
    it(`masks ${name}`, () => {
      assert.equal(redact(input), output);
    });
  }

  const kept = [
    'Multiplex-Token a b', 'Content-Type: text/event-stream; charset=utf-8', 'room-42, news', 'MUX_ERR_MALFORMED_MULTIPLEX',
    'HTTP/1.1 200 OK', 'x-multiplex', '2000', 'application/octet-stream', 'n.0.short', '::ffff:127.0.0.1', 'a'.repeat(64),
  ];
  for (const input of kept) {
    it(`keeps ${JSON.stringify(input)}`, () => {
      assert.equal(redact(input), input);
    });
  }

  it('cuts at maxChars, judging the run the cut falls in whole', () => {
    assert.equal(redact('a'.repeat(150)), `${'a'.repeat(100)}...`);
    // the cut falls 4 characters into the secret: those 4 must not show either
    const text = `${'x '.repeat(48)}${SECRET} tail`;
    assert.equal(redact(text), `${'x '.repeat(48)}[masked]...`);
    assert.equal(redact('short', 100), 'short');
  });

  // Short pieces are the fixed cases above: a random run of 8 to 15 characters reads as words once in a few thousand.
  it('masks every minted token, whole or with a character added, removed or changed, in any text', () => {
    const tokenChar = fc.constantFrom(...'aZ09_-');
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), fc.nat(), fc.constantFrom('add', 'remove', 'change', 'none'), tokenChar, (around, at, edit, char) => {
        const token = mintToken('node-a', 3);
        const secret = token.slice(token.lastIndexOf('.') + 1);
        const i = token.length - 1 - (at % secret.length);
        const altered = edit === 'none' ? token
          : token.slice(0, i) + (edit === 'remove' ? '' : char) + token.slice(edit === 'add' ? i : i + 1);
        assertNoPieceOf(secret, redact(`${around} ${altered} ${around}`, 200));
      }),
      { numRuns: 500 },
    );
  });

  it('quote() gives a JSON string of the redacted text', () => {
    assert.equal(quote(`a "${TOKEN}"`), JSON.stringify('a "[masked].1.[masked]"'));
  });
});

describe('errors that quote input mask tokens', () => {
  function multiplexError(header: string): MuxError {
    const errors: MuxError[] = [];
    const parser = new MultiplexParser('B', { maxPartBytes: 1000, maxPartHeaderBytes: 1000, maxTargetsPerPart: 10 }, {
      onPart() {},
      onError: (error) => errors.push(error),
    });
    parser.push(Buffer.from(`--B\r\n${header}\r\n\r\nx\r\n--B--`, 'latin1'));
    assert.equal(errors.length, 1, header);
    return errors[0]!;
  }

  const parts: Array<[string, string, RegExp]> = [
    ['a part header line without a colon', `Multiplex-Token ${TOKEN}`, /^part 1: part header line "Multiplex-Token \[masked\]\.1\.\[masked\]" has no colon/],
    ['an invalid token', `Multiplex-Token: ${TOKEN}${SECRET}${SECRET}`, /^part 1: Multiplex-Token: "\[masked\]\.1\.\[masked\]" is invalid/],
    ['an invalid channel', `Multiplex-Channel: ${TOKEN}/x`, /Multiplex-Channel: "\[masked\]\.1\.\[masked\]\/x" is invalid/],
    ['an invalid header name', `${SECRET} x: 1`, /part header name "\[masked\] x" is not a valid token/],
    ['an invalid Multiplex-Close', `Multiplex-Close: ${SECRET}`, /Multiplex-Close: "\[masked\]" is invalid/],
  ];
  for (const [name, header, message] of parts) {
    it(`MultiplexParser: ${name}`, () => {
      const error = multiplexError(header);
      assert.match(error.message, message);
      assertNoPieceOf(SECRET, error.message);
    });
  }

  const heads: Array<[string, string, RegExp]> = [
    ['a CGI line without a colon', `X-Token ${TOKEN}\r\n\r\n`, /CGI header line "X-Token \[masked\]\.1\.\[masked\]" has no colon/],
    ['a control character in a value', `X-Token: ${TOKEN}\x01\r\n\r\n`, /CGI header X-Token: "\[masked\]\.1\.\[masked\]\\u0001" holds a control character/],
    ['a control character in a value whose name is a secret', `${SECRET}: \x01\r\n\r\n`, /CGI header \[masked\]: /],
    ['an invalid Status', `Status: ${SECRET}\r\n\r\n`, /CGI Status: "\[masked\]" is invalid/],
    ['an invalid header name', `X ${SECRET}: 1\r\n\r\n`, /CGI header name "X \[masked\]" is not a valid token/],
  ];
  for (const [name, head, message] of heads) {
    it(`CgiHeadParser: ${name}`, () => {
      assert.throws(() => new CgiHeadParser(8192).push(Buffer.from(head, 'latin1')), (error: Error) => {
        assert.match(error.message, message);
        assertNoPieceOf(SECRET, error.message);
        return true;
      });
    });
  }

  const values: Array<[string, () => unknown, RegExp]> = [
    ['Multiplex-Keep-Alive', () => parseKeepAlive(`20; data=${TOKEN}`), /^Multiplex-Keep-Alive: "20; data=\[masked\]\.1\.\[masked\]" is invalid/],
    ['Multiplex-Channel', () => parseChannelSubscriptions(`${TOKEN}/x`), /^Multiplex-Channel: "\[masked\]\.1\.\[masked\]\/x" is invalid/],
    ['Content-Type', () => multiplexBoundary(`application/x-multiplex; boundary="${SECRET}${SECRET}${SECRET}${SECRET}"`), /^Content-Type: "application\/x-multiplex; boundary=\\"\[masked\]\\"" is invalid/],
  ];
  for (const [name, parse, message] of values) {
    it(`header values: ${name}`, () => {
      assert.throws(parse, (error: Error) => {
        assert.match(error.message, message);
        assertNoPieceOf(SECRET, error.message);
        return true;
      });
    });
  }
});

describe('tokens in logs end to end', () => {
  let fpm: PhpFpm;
  let mux: Muxgate;

  before(async () => {
    fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
    // A node id that reads as words, so that the lines below can be matched exactly (a random one is masked too).
    mux = await startMuxgate({ ...phpBackend(fpm), MUX_SHARDS: '2', MUX_NODE_ID: 'node-a' });
  });

  after(async () => {
    await mux.stop();
    await fpm.stop();
  });

  it('a live token in malformed part headers and header values, from a backend or a pusher, shows in no log line above debug', async () => {
    const { client: stream, token } = await openStream(mux.url, 'hold=stream&silent=1');
    const secret = token.slice(token.lastIndexOf('.') + 1);
    const rejected = 'backend multiplexed body rejected; the parts before it stand';

    const partHeaders: Array<[string, RegExp]> = [
      [`Multiplex-Token ${token}`, /has no colon/],
      [`Multiplex-Token ${token.slice(0, -6)}`, /has no colon/],
      [`Multiplex-Token: ${token}!`, /Multiplex-Token: .* is invalid/],
      [`Multiplex-Channel: ${token}/x`, /Multiplex-Channel: .* is invalid/],
    ];
    for (const [header, what] of partHeaders) {
      const response = await fetch(`${mux.url}/broken.php?case=part-header`, { headers: { 'X-Part-Header': header } });
      await response.arrayBuffer();
      // The first line of a kind is a warning, its repeats debug lines until the interval ends.
      const line = await mux.waitForLog((l) => l.msg === rejected && what.test(String(l.err)));
      assertNoPieceOf(secret, JSON.stringify(line));
    }
    const badValue = await fetch(`${mux.url}/broken.php?case=keep-alive`, { headers: { 'X-Keep-Alive': `${token}` } });
    assert.equal(badValue.status, 502);
    const badValueLine = await mux.waitForLog((l) => l.msg === 'backend sent a bad Multiplex-* header' && /Multiplex-Keep-Alive/.test(String(l.err)));
    assert.match(String(badValueLine.err), /Multiplex-Keep-Alive: "node-a\.[01]\.\[masked\]"/);

    const pushed = await sendPush(mux.pushUrl, `--PB\r\nMultiplex-Token ${token}\r\n\r\nx\r\n--PB--\r\n`);
    assert.equal(pushed.status, 400);
    assertNoPieceOf(secret, pushed.text);
    await mux.waitForLog((l) => l.msg === 'push body rejected; the parts before it stand' && /has no colon/.test(String(l.err)));
    stream.close();

    // Stopping reports the repeats counted: every line is in once the count of rejected bodies is.
    await mux.stop();
    await mux.waitForLog((l) => l.msg === rejected && l.repeats !== undefined);
    const above = mux.logs.filter((l) => Number(l.level) > 20);
    for (const line of above) assertNoPieceOf(secret, JSON.stringify(line));
    // The warnings still say what was wrong; the debug lines, where a token may show, did name it.
    const first = above.find((l) => l.msg === rejected)!;
    assert.match(String(first.err), /^part 1: part header line "Multiplex-Token node-a\.[01]\.\[masked\]" has no colon/);
    assert.ok(mux.logs.some((l) => Number(l.level) === 20 && JSON.stringify(l).includes(token)), 'no debug line names the token');
  });
});
