// Is the FastCGI backend accepting connections? For /readyz.
import type { BackendAddress } from './config.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const net = process.getBuiltinModule('node:net');

/** Resolves null when a connection could be opened within timeoutMs, else the reason. */
export function probeBackend(address: BackendAddress, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = address.kind === 'unix' ? net.connect(address.path) : net.connect(address.port, address.host);
    const done = (reason: string | null) => {
      socket.destroy();
      resolve(reason);
    };
    socket.setTimeout(timeoutMs, () => done(`no connection within ${timeoutMs} ms`));
    socket.once('connect', () => done(null));
    socket.once('error', (error) => done(error.message));
  });
}
