// examples/push-from-cron: the shell and PHP scripts reach a demo room through the push API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startMuxgate } from './helpers/muxgate.ts';
import { RawHttp } from './helpers/raw-http.ts';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'push-from-cron');

test('push.sh and announce.php put a message in a demo room, with the secret', async () => {
  const mux = await startMuxgate({ MUX_SHARDS: '2', MUX_PUSH_SECRET: 'cron-secret' });
  try {
    const reader = await RawHttp.get(`${mux.url}/events?room=ops&nick=watcher`);
    await reader.waitFor((t) => t.includes('event: welcome'));
    const env = { PATH: process.env.PATH, MUX_PUSH_URL: mux.pushUrl, MUX_PUSH_SECRET: 'cron-secret' };
    const shell = JSON.parse(execFileSync(join(EXAMPLE, 'push.sh'), ['ops', 'Deploy "finished"'], { env, encoding: 'utf8' }));
    assert.deepEqual(shell, { parts: 1, deliveries: 1, gone: [], channels: { 'room-ops': 1 } });
    await reader.waitFor((t) => t.includes('"nick":"cron","text":"Deploy \\"finished\\""'));
    const php = JSON.parse(execFileSync('php', [join(EXAMPLE, 'announce.php'), 'ops'], { env, encoding: 'utf8' }));
    assert.equal(php.deliveries, 1);
    await reader.waitFor((t) => /"text":"It is \d\d:\d\d\."/.test(t));
    // Refused for the secret, not for anything else: curl --fail-with-body prints the 401's answer and exits 22.
    assert.throws(() => execFileSync(join(EXAMPLE, 'push.sh'), ['ops', 'x'], { env: { ...env, MUX_PUSH_SECRET: 'wrong' }, stdio: 'pipe' }),
      (error: { status: number; stdout: Buffer }) => error.status === 22 && /"error":"unauthorized/.test(error.stdout.toString()));
    reader.close();
  } finally {
    await mux.stop();
  }
});
