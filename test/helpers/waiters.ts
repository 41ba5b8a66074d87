// Event-driven waits for a test client: each change of its state wakes the waits, which end as soon as their condition
// holds, or fail at once when the connection has closed (rather than at their timeout).
import type { Socket } from 'node:net';

export class Waiters {
  readonly #waiters = new Set<() => void>();
  readonly #hasClosed: () => boolean;
  readonly #describe: () => string;

  /** `hasClosed`: whether the connection is gone; `describe`: the client's state, for the failure messages. */
  constructor(hasClosed: () => boolean, describe: () => string) {
    this.#hasClosed = hasClosed;
    this.#describe = describe;
  }

  /** Resolves once the predicate holds; rejects after `timeoutMs`, or when the connection closed before. */
  waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.#describe()}`)), timeoutMs);
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (error === undefined) resolve();
        else reject(error);
      };
      const check = () => {
        if (predicate()) done();
        else if (this.#hasClosed()) done(new Error(`connection closed while waiting for ${what}; ${this.#describe()}`));
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Calls `onChange` at every change until it returns true. */
  watch(onChange: () => boolean): void {
    const check = () => {
      if (onChange()) this.#waiters.delete(check);
    };
    this.#waiters.add(check);
  }

  /** The client's state changed. */
  wake(): void {
    for (const waiter of this.#waiters) waiter();
  }
}

/** Resolves once the socket has closed (at once if `hasClosed`); rejects after `timeoutMs` with the client's state. */
export function socketClosed(socket: Socket, hasClosed: boolean, timeoutMs: number, describe: () => string): Promise<void> {
  if (hasClosed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms; ${describe()}`)), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
