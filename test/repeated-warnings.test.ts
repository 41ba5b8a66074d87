// Repeated warnings: one line per kind per interval with a count, never a line per occurrence; and end to end, a flood
// of refused pushes gives a few warn lines while the metric counts each one.
import { describe, it, mock, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../src/log.ts';
import { RepeatedWarnings } from '../src/repeated-warnings.ts';
import { mintToken } from '../src/protocol/token.ts';
import { startMuxgate, waitForMetric } from './helpers/muxgate.ts';
import { push } from './helpers/fixtures.ts';

interface Line {
  level: 'warn' | 'debug';
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that records warn and debug lines. */
function recordingLogger(isDebug = false): { log: Logger; lines: Line[]; warns: () => Line[] } {
  const lines: Line[] = [];
  const log = {
    warn: (fields: Record<string, unknown>, message: string) => lines.push({ level: 'warn', fields, message }),
    debug: (fields: Record<string, unknown>, message: string) => lines.push({ level: 'debug', fields, message }),
    isLevelEnabled: (level: string) => isDebug || level !== 'debug',
  } as unknown as Logger;
  return { log, lines, warns: () => lines.filter((line) => line.level === 'warn') };
}

const INTERVAL_MS = 10_000;

describe('RepeatedWarnings', () => {
  afterEach(() => mock.timers.reset());

  it('logs the first of a kind at once and its repeats in one line with their count when the interval ends', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { log, warns } = recordingLogger();
    const warnings = new RepeatedWarnings(log, INTERVAL_MS);
    for (let i = 0; i < 300; i++) warnings.warn('push_refused', { remote: `10.0.0.${i}` }, 'push refused');
    assert.deepEqual(warns(), [{ level: 'warn', fields: { kind: 'push_refused', remote: '10.0.0.0' }, message: 'push refused' }]);
    mock.timers.tick(INTERVAL_MS);
    assert.equal(warns().length, 2);
    assert.deepEqual(warns()[1], {
      level: 'warn', fields: { remote: '10.0.0.1', kind: 'push_refused', repeats: 299, intervalSeconds: 10 }, message: 'push refused',
    });
    // A quiet interval ends the count; the next one is logged at once.
    mock.timers.tick(INTERVAL_MS);
    assert.equal(warns().length, 2);
    warnings.warn('push_refused', { remote: '10.0.0.1' }, 'push refused');
    assert.equal(warns().length, 3);
    assert.equal(warns()[2]!.fields.repeats, undefined);
  });

  it('gives a flood that lasts one line per interval', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { log, warns } = recordingLogger();
    const warnings = new RepeatedWarnings(log, INTERVAL_MS);
    for (let interval = 0; interval < 5; interval++) {
      for (let i = 0; i < 100; i++) warnings.warn('slow_consumer', { unsentBytes: i }, 'slow consumer dropped');
      mock.timers.tick(INTERVAL_MS);
    }
    assert.deepEqual(warns().map((line) => line.fields.repeats), [undefined, 99, 100, 100, 100, 100]);
  });

  it('counts each kind apart', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { log, warns } = recordingLogger();
    const warnings = new RepeatedWarnings(log, INTERVAL_MS);
    for (let i = 0; i < 10; i++) {
      warnings.warn('push_refused', {}, 'push refused');
      warnings.warn('push_rejected', { code: 'X' }, 'push body rejected');
    }
    assert.deepEqual(warns().map((line) => line.fields.kind), ['push_refused', 'push_rejected']);
    mock.timers.tick(INTERVAL_MS);
    assert.deepEqual(warns().slice(2).map((line) => [line.fields.kind, line.fields.repeats]), [['push_refused', 9], ['push_rejected', 9]]);
  });

  it('logs each repeat at debug level when debug is on', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { log, lines } = recordingLogger(true);
    const warnings = new RepeatedWarnings(log, INTERVAL_MS);
    for (let i = 0; i < 3; i++) warnings.warn('push_refused', { i }, 'push refused');
    assert.deepEqual(lines.map((line) => [line.level, line.fields.i]), [['warn', 0], ['debug', 1], ['debug', 2]]);
  });

  it('masks tokens in the fields of the lines it logs at warn level', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { log, warns } = recordingLogger();
    const warnings = new RepeatedWarnings(log, INTERVAL_MS);
    const token = mintToken('n1', 0);
    for (let i = 0; i < 2; i++) warnings.warn('backend_body_rejected', { err: `Multiplex-Token ${token} has no colon`, count: 1 }, 'rejected');
    mock.timers.tick(INTERVAL_MS);
    assert.deepEqual(warns().map((line) => line.fields.err), ['Multiplex-Token n1.0.[masked] has no colon', 'Multiplex-Token n1.0.[masked] has no colon']);
    assert.equal(warns()[0]!.fields.count, 1);
  });

  it('flush() reports what is counted and stops the timers', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { log, warns } = recordingLogger();
    const warnings = new RepeatedWarnings(log, INTERVAL_MS);
    for (let i = 0; i < 5; i++) warnings.warn('close_events_dropped', { queueLimit: 10 }, 'close events dropped');
    warnings.warn('push_refused', {}, 'push refused');
    warnings.flush();
    assert.deepEqual(warns().map((line) => [line.fields.kind, line.fields.repeats]), [
      ['close_events_dropped', undefined], ['push_refused', undefined], ['close_events_dropped', 4],
    ]);
    mock.timers.tick(INTERVAL_MS);
    assert.equal(warns().length, 3);
    // After a flush, the next one is logged at once.
    warnings.warn('push_refused', {}, 'push refused');
    assert.equal(warns().length, 4);
  });

  it('never keeps a process alive with its timers', async () => {
    const module = fileURLToPath(new URL('../src/repeated-warnings.ts', import.meta.url));
    const script = `
      const { RepeatedWarnings } = await import(${JSON.stringify(module)});
      const log = { warn() {}, debug() {}, isLevelEnabled: () => false };
      const warnings = new RepeatedWarnings(log, 3_600_000);
      for (let i = 0; i < 3; i++) warnings.warn('kind', {}, 'message');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error('the process was still running after 10 s: a warning timer keeps it alive'));
      }, 10_000);
      child.once('exit', (exitCode) => {
        clearTimeout(timer);
        resolve(exitCode);
      });
    });
    assert.equal(code, 0);
  });
});

describe('repeated warnings end to end', () => {
  it('300 refused pushes give a few warn lines, one with the count; the metric counts every one', async () => {
    const mux = await startMuxgate({ MUX_SHARDS: '1', MUX_PUSH_SECRET: 'right-secret', MUX_LOG_LEVEL: 'info' });
    const refused = 'push refused: missing or wrong bearer secret';
    try {
      for (let i = 0; i < 300; i++) await push(mux.pushUrl, [{ tokens: ['n.0.AAAAAAAAAAAAAAAAAAAAAA'], body: 'x' }], { secret: 'wrong', status: 401 });
      await waitForMetric(mux.metricsUrl, 'muxgate_requests_total{listener="push",class="4xx"}', (value) => value === 300);
    } finally {
      assert.equal(await mux.stop(), 0);
    }
    // Stopping reports what was counted: wait for that line, then every line is in.
    await mux.waitForLog((line) => line.msg === refused && line.repeats !== undefined);
    const lines = mux.logs.filter((line) => line.msg === refused);
    assert.ok(lines.length <= 3, `${lines.length} lines for 300 refused pushes`);
    assert.ok(lines.every((line) => line.level === 40 && line.kind === 'push_refused'));
    const counted = lines.reduce((sum, line) => sum + (line.repeats === undefined ? 1 : Number(line.repeats)), 0);
    assert.equal(counted, 300);
    assert.equal(lines.find((line) => line.repeats !== undefined)!.remote, '127.0.0.1');
  });
});
