// The php-fpm test helper: a real php-fpm answers a FastCGI request and sees MULTIPLEX_TOKEN.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fastcgiClient from 'fastcgi-client';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';

// The package's types declare `export default`, but it is `module.exports = createClient`.
const createClient = fastcgiClient as unknown as typeof fastcgiClient.default;

let documentRoot: string;
let fpm: PhpFpm | undefined;

before(async () => {
  documentRoot = await mkdtemp(join(tmpdir(), 'muxgate-docroot-'));
  await writeFile(
    join(documentRoot, 'hello.php'),
    `<?php header('Content-Type: text/plain'); echo "hi ", $_SERVER['MULTIPLEX_TOKEN'] ?? '';`,
  );
  fpm = await startPhpFpm({ documentRoot, maxChildren: 2 });
});

after(async () => {
  await fpm?.stop();
  if (documentRoot !== undefined) await rm(documentRoot, { recursive: true, force: true });
});

test('php-fpm runs a script and passes MULTIPLEX_TOKEN through', { timeout: 15_000 }, async () => {
  assert.ok(fpm);
  const client = createClient({ host: fpm.host, port: fpm.port, skipCheckServer: true });
  await new Promise<void>((resolve) => client.once('ready', () => resolve()));
  const params = {
    SCRIPT_FILENAME: join(documentRoot, 'hello.php'),
    REQUEST_METHOD: 'GET',
    MULTIPLEX_TOKEN: 'abc',
  };
  const { stdout, stderr, exitStatus } = await new Promise<{ stdout: string; stderr: string; exitStatus: unknown }>(
    (resolve, reject) => {
      client.request(params, (error, request) => {
        if (error) return reject(error);
        let out = '';
        let err = '';
        request.stdout.setEncoding('utf8').on('data', (text: string) => { out += text; });
        request.stderr.setEncoding('utf8').on('data', (text: string) => { err += text; });
        request.stdout.once('end', () => resolve({ stdout: out, stderr: err, exitStatus: request.getExitStatus() }));
        request.stdin.end();
      });
    },
  );
  assert.equal(stderr, '', `php wrote to stderr; php-fpm log:\n${fpm.stderrLog()}`);
  assert.equal(exitStatus, 0);
  assert.match(stdout, /^Content-type: text\/plain/im);
  assert.ok(stdout.includes('hi abc'), `stdout was ${JSON.stringify(stdout)}`);
});

test('stop() ends php-fpm, frees its port and keeps its log readable', { timeout: 15_000 }, async () => {
  const second = await startPhpFpm({ documentRoot, maxChildren: 1 });
  await second.stop();
  await second.stop();
  assert.match(second.stderrLog(), /exiting, bye-bye/);
  const isRefused = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: second.host, port: second.port });
    socket.once('connect', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(true));
  });
  assert.ok(isRefused, 'php-fpm still accepts connections after stop()');
});

test('a php-fpm that cannot start fails with its log in the error', { timeout: 15_000 }, async () => {
  await assert.rejects(
    startPhpFpm({ documentRoot: join(documentRoot, 'missing') }),
    /did not start[\s\S]*chdir path .* does not exist/,
  );
});
