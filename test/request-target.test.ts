// The request target (RFC 9112 §3.2): origin-form passes, absolute-form becomes origin-form with its authority.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestTarget } from '../src/protocol/request-target.ts';

test('origin-form passes unchanged, with no authority', () => {
  assert.deepEqual(parseRequestTarget('/a/b?c=1', 'GET'), { path: '/a/b?c=1', authority: null });
  assert.deepEqual(parseRequestTarget('/', 'POST'), { path: '/', authority: null });
});

test('absolute-form: the path the backend sees, and the authority that replaces Host', () => {
  const table: Array<[string, string, string]> = [
    ['http://evil.example:99/dump', '/dump', 'evil.example:99'],
    ['HTTP://Example.COM/x?y=1', '/x?y=1', 'Example.COM'],
    ['https://example.com', '/', 'example.com'],
    ['http://example.com?q=1', '/?q=1', 'example.com'],
    ['http://[::1]:8080/v6', '/v6', '[::1]:8080'],
    ['http://127.0.0.1/', '/', '127.0.0.1'],
  ];
  for (const [target, path, authority] of table) assert.deepEqual(parseRequestTarget(target, 'GET'), { path, authority }, target);
});

test('anything else is refused: other schemes, no or bad authority, user info, relative paths, * but for OPTIONS', () => {
  for (const target of ['ftp://example.com/', 'http:///path', 'http://user:pw@example.com/', 'http://exa mple.com/', 'http://a/b#frag',
    'example.com/path', 'path', '*', 'javascript:alert(1)', '']) {
    assert.equal(parseRequestTarget(target, 'GET'), null, target);
  }
  assert.deepEqual(parseRequestTarget('*', 'OPTIONS'), { path: '*', authority: null });
});
