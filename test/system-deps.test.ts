// test/setup/system-deps.sh (npm test's pretest) on staged machines: a PATH of stub programs and a root for the fixed
// paths, with `id` and `apt-get` stand-ins that say who runs it and record what it asked to install.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCRIPT = join(import.meta.dirname, 'setup', 'system-deps.sh');
const ON_PATH = ['php', 'prometheus', 'promtool', 'redis-server', 'redis-cli', 'curl', 'ss', 'openssl', 'nghttp', 'h2load'];
const EVERYTHING_APT_INSTALLS: Record<string, string[]> = {
  'php-fpm': ['usr/sbin/php-fpm8.2'], 'php-cli': ['bin/php'], prometheus: ['bin/prometheus', 'bin/promtool'],
  'redis-server': ['bin/redis-server'], 'redis-tools': ['bin/redis-cli'], chromium: ['usr/bin/chromium'],
  curl: ['bin/curl'], iproute2: ['bin/ss'], openssl: ['bin/openssl'],
  'nghttp2-client': ['bin/nghttp', 'bin/h2load'],
};

interface Machine {
  dir: string;
  /** Runs the script; `apt-get` records its arguments and DEBIAN_FRONTEND, and installs the packages that `works`. */
  run(): { status: number | null; stdout: string; stderr: string; aptCalls: string[] };
  remove(...paths: string[]): void;
}

function executable(path: string, text = '#!/bin/sh\nexit 0\n'): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

/** A machine with every program the tests need, run by `uid`, with or without apt-get and sudo. */
function stageMachine(options: { uid: number; hasApt?: boolean; hasSudo?: boolean; aptInstalls?: boolean }): Machine {
  const dir = mkdtempSync(join(tmpdir(), 'system-deps-'));
  for (const name of ON_PATH) executable(join(dir, 'bin', name));
  executable(join(dir, 'usr/bin/chromium'));
  executable(join(dir, 'usr/sbin/php-fpm8.2'));
  executable(join(dir, 'bin/id'), `#!/bin/sh\necho ${options.uid}\n`);
  if (options.hasSudo) executable(join(dir, 'bin/sudo'));
  const log = join(dir, 'apt-calls');
  writeFileSync(log, '');
  if (options.hasApt ?? true) {
    const installs = Object.entries(EVERYTHING_APT_INSTALLS).map(([pkg, paths]) =>
      `  ${pkg}) for f in ${paths.map((p) => `"${dir}/${p}"`).join(' ')}; do printf '#!/bin/sh\\n' > "$f"; /bin/chmod +x "$f"; done ;;`);
    executable(join(dir, 'bin/apt-get'), [
      '#!/bin/sh',
      `echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "${log}"`,
      options.aptInstalls === false ? 'case "$*" in *install*) echo "E: Unable to locate package" >&2; exit 100 ;; esac' : '',
      'for pkg in "$@"; do case $pkg in', ...installs, '  esac; done',
      options.aptInstalls === false ? '' : 'exit 0',
    ].join('\n') + '\n');
  }
  return {
    dir,
    run() {
      const result = spawnSync('/bin/sh', [SCRIPT], {
        env: { PATH: join(dir, 'bin'), MUXGATE_SYSTEM_ROOT: dir }, encoding: 'utf8', timeout: 10_000,
      });
      const aptCalls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
      return { status: result.status, stdout: result.stdout, stderr: result.stderr, aptCalls };
    },
    remove(...paths) {
      for (const path of paths) rmSync(join(dir, path));
    },
  };
}

function withMachine(options: Parameters<typeof stageMachine>[0], body: (machine: Machine) => void): void {
  const machine = stageMachine(options);
  try {
    body(machine);
  } finally {
    rmSync(machine.dir, { recursive: true, force: true });
  }
}

test('with every program there, it exits 0 without a word and installs nothing, root or not', () => {
  for (const uid of [0, 1000]) {
    withMachine({ uid }, (machine) => {
      assert.deepEqual(machine.run(), { status: 0, stdout: '', stderr: '', aptCalls: [] });
    });
  }
});

test('php-fpm is found on PATH or as a versioned /usr/sbin/php-fpmX.Y, as test/helpers/php-fpm.ts finds it', () => {
  withMachine({ uid: 1000 }, (machine) => {
    machine.remove('usr/sbin/php-fpm8.2');
    executable(join(machine.dir, 'bin/php-fpm'));
    assert.equal(machine.run().status, 0);
    machine.remove('bin/php-fpm');
    executable(join(machine.dir, 'usr/sbin/php-fpm.conf.d'));
    const result = machine.run();
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^muxgate tests: php-fpm missing;/);
  });
});

test('not root: it stops with exit 1 and the exact apt-get command for the missing packages, each named once', () => {
  withMachine({ uid: 1000, hasSudo: true }, (machine) => {
    machine.remove('usr/bin/chromium', 'bin/promtool', 'bin/prometheus', 'bin/ss', 'bin/nghttp', 'bin/h2load');
    const result = machine.run();
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'muxgate tests: prometheus, promtool, /usr/bin/chromium, ss, nghttp, h2load missing; install them, then run npm test again:\n' +
      '  sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus chromium iproute2 nghttp2-client\n');
    assert.deepEqual(result.aptCalls, []);
  });
  withMachine({ uid: 1000 }, (machine) => {
    machine.remove('bin/redis-cli');
    const result = machine.run();
    assert.equal(result.status, 1);
    assert.equal(result.stderr, 'muxgate tests: redis-cli missing; install them as root, then run npm test again:\n' +
      "  su -c 'apt-get update && apt-get install -y --no-install-recommends redis-tools'\n");
  });
});

test('without apt-get it stops with exit 1 and names the Debian packages to find equivalents of', () => {
  withMachine({ uid: 0, hasApt: false }, (machine) => {
    machine.remove('bin/php', 'usr/sbin/php-fpm8.2');
    const result = machine.run();
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^muxgate tests: php-fpm, php missing, and this is no Debian system \(no apt-get\): .*Debian packages php-fpm php-cli,/);
  });
});

test('as root it installs the missing packages non-interactively, in one line saying what and why, and goes on', () => {
  withMachine({ uid: 0 }, (machine) => {
    machine.remove('usr/bin/chromium', 'bin/redis-server', 'bin/redis-cli', 'bin/openssl');
    const result = machine.run();
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'muxgate tests: installing redis-server redis-tools chromium openssl with apt-get: ' +
      'the tests run redis-server, redis-cli, /usr/bin/chromium, openssl for real, and they are missing\n');
    assert.equal(result.stderr, '');
    assert.deepEqual(result.aptCalls, [
      'DEBIAN_FRONTEND=noninteractive -qq update',
      'DEBIAN_FRONTEND=noninteractive -qq install -y --no-install-recommends redis-server redis-tools chromium openssl',
    ]);
    assert.deepEqual(machine.run(), { status: 0, stdout: '', stderr: '', aptCalls: result.aptCalls });
  });
});

test('as root, when apt-get fails, it exits 1 with the command to run', () => {
  withMachine({ uid: 0, aptInstalls: false }, (machine) => {
    machine.remove('bin/curl');
    const result = machine.run();
    assert.equal(result.status, 1);
    assert.match(result.stderr, /E: Unable to locate package\n/);
    assert.match(result.stderr, /muxgate tests: apt-get could not install curl \(its errors are above\); run it yourself: apt-get install -y --no-install-recommends curl\n$/);
  });
});
