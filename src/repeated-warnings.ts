// Warnings that outside input can repeat at will, at most one line per kind per interval: a flood of refused
// requests or cut clients cannot flood the log.
import type { Logger } from './log.ts';
import { redact } from './redact.ts';

/** Long enough for an error message; what is logged is masked by redact() all the same. */
const MAX_FIELD_CHARS = 1000;

interface Kind {
  name: string;
  message: string;
  /** Occurrences since the last line, not logged yet. */
  repeats: number;
  /** The fields of the first of those repeats. */
  sample: Record<string, unknown> | null;
  /** Armed while an interval runs: from a line logged until the next one may be. */
  timer: NodeJS.Timeout | null;
}

/** Strings redacted, the rest as is: the one copy made per line logged. */
function masked(fields: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key in fields) {
    const value = fields[key];
    copy[key] = typeof value === 'string' ? redact(value, MAX_FIELD_CHARS) : value;
  }
  return copy;
}

/**
 * warn(kind, fields, message): the first occurrence of a kind is logged at once; the repeats within the next interval
 * are counted (at debug level, each is logged too) and reported together in one line when the interval ends, with
 * `repeats` and the fields of one of them; a kind quiet for a whole interval is logged at once again. A repeat costs a
 * counter. The timers are unref'd: they never keep a thread alive. flush() reports what is counted (at shutdown).
 */
export class RepeatedWarnings {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #kinds = new Map<string, Kind>();
  readonly #onInterval = (kind: Kind): void => {
    if (kind.repeats === 0) {
      kind.timer = null;
      return;
    }
    this.#report(kind);
    kind.timer = setTimeout(this.#onInterval, this.#intervalMs, kind).unref();
  };

  constructor(log: Logger, intervalMs: number) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  /** `kind` is a fixed name (`push_refused`), never built from input: each one is kept for the life of the thread. */
  warn(kind: string, fields: Record<string, unknown>, message: string): void {
    let state = this.#kinds.get(kind);
    if (state === undefined) {
      state = { name: kind, message, repeats: 0, sample: null, timer: null };
      this.#kinds.set(kind, state);
    }
    if (state.timer !== null) {
      if (state.repeats++ === 0) state.sample = fields;
      if (this.#log.isLevelEnabled('debug')) this.#log.debug(fields, message);
      return;
    }
    state.message = message;
    this.#log.warn({ kind, ...masked(fields) }, message);
    state.timer = setTimeout(this.#onInterval, this.#intervalMs, state).unref();
  }

  /** Reports every count not reported yet and stops the timers. */
  flush(): void {
    for (const kind of this.#kinds.values()) {
      if (kind.repeats > 0) this.#report(kind);
      if (kind.timer !== null) clearTimeout(kind.timer);
      kind.timer = null;
    }
  }

  #report(kind: Kind): void {
    const sample = kind.sample === null ? {} : masked(kind.sample);
    this.#log.warn({ ...sample, kind: kind.name, repeats: kind.repeats, intervalSeconds: this.#intervalMs / 1000 }, kind.message);
    kind.repeats = 0;
    kind.sample = null;
  }
}
