// The README's first minutes: `npm start` with a fresh HOME and no MUX_* settings serves the demo chat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawHttp } from './helpers/raw-http.ts';

const ROOT = join(import.meta.dirname, '..');

test('npm start serves the demo chat at the URL it prints; two clients chat through it', async () => {
  const home = mkdtempSync(join(tmpdir(), 'home-'));
  // Detached: its own process group, so that npm, sh and node all stop together.
  const child = spawn('npm', ['start'], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: home }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL within 20 s:\n${output}`)), 20_000);
      child.stdout!.on('data', () => {
        const match = /muxgate listening: open (http:\/\/localhost:\d+)/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
    });
    assert.equal(url, 'http://localhost:8080');
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>muxgate chat<\/title>/);

    const reader = await RawHttp.get(`${url}/events?room=readme&nick=reader`);
    await reader.waitFor((t) => t.includes('event: welcome'));
    const sent = await fetch(`${url}/send`, { method: 'POST', body: JSON.stringify({ room: 'readme', nick: 'writer', text: 'hello from the README' }) });
    assert.deepEqual(await sent.json(), { ok: true });
    await reader.waitFor((t) => t.includes('"text":"hello from the README"'));
    reader.close();
  } finally {
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
  }
});
