// The bundled demo chat (examples/demo-chat), run as a child process when no MUX_FASTCGI is set.
import type { ChildProcess } from 'node:child_process';
import type { BackendAddress } from './config.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { fork } = process.getBuiltinModule('node:child_process');
const { tmpdir } = process.getBuiltinModule('node:os');
const { join } = process.getBuiltinModule('node:path');
const { fileURLToPath } = process.getBuiltinModule('node:url');

const SERVER = fileURLToPath(new URL('../examples/demo-chat/server.ts', import.meta.url));
const START_TIMEOUT_MS = 10_000;

export interface DemoBackend {
  address: BackendAddress;
  stop(): Promise<void>;
}

export async function startDemoBackend(): Promise<DemoBackend> {
  const path = join(tmpdir(), `muxgate-demo-${process.pid}.sock`);
  const child: ChildProcess = fork(SERVER, [], {
    env: { ...process.env, DEMO_CHAT_LISTEN: path },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo backend did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo backend exited with code ${code} before it was ready`));
    });
  });
  return {
    address: { kind: 'unix', path },
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
