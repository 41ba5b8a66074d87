// muxgate's live heap, per thread: what its full collections leave, read from the --trace-gc lines in its output.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';

/** V8's --trace-gc line for a full collection: the isolate (thread) and the heap it left, in MB. */
const MARK_COMPACT = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: (?:Incremental )?Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/;

/**
 * Writes, in `dir`, a module that turns --trace-gc on in every thread of the process that imports it
 * (`--import <it>` in NODE_OPTIONS, where --trace-gc itself is not allowed); returns its path.
 */
export function writeTraceGcPreload(dir: string): string {
  const path = join(dir, 'trace-gc.mjs');
  writeFileSync(path, "import { setFlagsFromString } from 'node:v8';\nsetFlagsFromString('--trace-gc');\n");
  return path;
}

/**
 * Reads muxgate's --trace-gc lines from the muxgate helper's log as they come, leaving every line there for its
 * waitForLog. What a full collection leaves is the live heap: unlike RSS it does not wander with V8's sizing
 * decisions, so a leak of a few KiB per stream shows within a minute.
 */
export class LiveHeap {
  /** Per thread (V8 isolate): the heap its last full collection left, KiB. */
  readonly latest: Record<string, number> = {};
  collections = 0;
  readonly #logs: ReadonlyArray<Record<string, unknown>>;
  /** Lines of #logs read so far. */
  #readUpTo = 0;

  constructor(logs: ReadonlyArray<Record<string, unknown>>) {
    this.#logs = logs;
  }

  /** Takes in the full collections logged since the last read. */
  read(): void {
    for (; this.#readUpTo < this.#logs.length; this.#readUpTo++) {
      const line = this.#logs[this.#readUpTo]!;
      if (line.level !== undefined || typeof line.msg !== 'string') continue;
      const match = MARK_COMPACT.exec(line.msg);
      if (match === null) continue;
      this.latest[match[1]!] = Number(match[2]) * 1024;
      this.collections++;
    }
  }
}
