// Statistics the bench and the soak share: medians over runs, field by field; means and slopes over samples.

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

export function mean(values: number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

/** The least-squares slope of ys over xs; 0 when the xs do not vary. */
export function slope(xs: number[], ys: number[]): number {
  const xMean = mean(xs);
  const yMean = mean(ys);
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i] - xMean) * (ys[i] - yMean);
    den += (xs[i] - xMean) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
