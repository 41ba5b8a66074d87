// Medians over runs, field by field.

export function median(values: number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The median of every numeric field of the runs. */
export function medianOf<T extends object>(runs: T[]): T {
  const result = { ...runs[0] } as Record<string, unknown>;
  for (const key of Object.keys(result)) {
    if (typeof result[key] === 'number') result[key] = median(runs.map((run) => (run as Record<string, unknown>)[key] as number));
  }
  return result as T;
}
