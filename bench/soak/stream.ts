// One held stream of the churn, from its request to its end: what it was sent and got, and waits on either.

export type EndMode = 'drain' | 'abrupt' | 'server';

interface Waiter {
  isReady: () => boolean;
  resolve: (isReady: boolean) => void;
  timer: NodeJS.Timeout;
}

export class Stream {
  readonly id: number;
  readonly channel: string;
  readonly mode: EndMode;
  token = '';
  /** Its token arrived: parts may be addressed to it from now on. */
  isLive = false;
  isClosing = false;
  isDestroyed = false;
  /** The response ended (last chunk) or the connection closed. */
  hasEnded = false;
  hasClosePart = false;
  /** The channel seq the channel pusher was to give next when the stream went live. */
  channelFrom = 0;
  /** Token parts addressed to it, and the last one received (they are numbered 1, 2, ...). */
  tokenSent = 0;
  tokenReceived = 0;
  /** The last channel seq received (they come in order, without a gap, from the first one received). */
  channelLast = 0;
  /** Token pushes naming it, not answered yet. */
  pendingPushes = 0;
  /** Index in the pool of streams the token pusher picks from, or -1. */
  poolIndex = -1;
  readonly #waiters = new Set<Waiter>();

  constructor(id: number, channel: string, mode: EndMode) {
    this.id = id;
    this.channel = channel;
    this.mode = mode;
  }

  /** Resolves true once the condition holds, false after the timeout. */
  waitFor(isReady: () => boolean, timeoutMs: number): Promise<boolean> {
    if (isReady()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        isReady,
        resolve,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          resolve(isReady());
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  changed(): void {
    for (const waiter of this.#waiters) {
      if (!waiter.isReady()) continue;
      clearTimeout(waiter.timer);
      this.#waiters.delete(waiter);
      waiter.resolve(true);
    }
  }
}
