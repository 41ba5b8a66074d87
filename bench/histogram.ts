// Latency histogram with 0.1 ms buckets, sent between processes as [bucket, count] pairs. The subscribers
// (bench/subscriber.c, bench/subscriber-h2.c) record into the same buckets: BUCKET_US and BUCKETS in
// bench/subscriber-common.h must match these.

const BUCKET_US = 100;
const BUCKETS = 600_000; // 60 s; slower deliveries land in the last bucket

export type SparseHistogram = Array<[bucket: number, count: number]>;

export class LatencyHistogram {
  private counts = new Uint32Array(BUCKETS);

  add(sparse: SparseHistogram): void {
    for (const [bucket, count] of sparse) this.counts[bucket] += count;
  }

  /** The upper bound, in ms, of the bucket holding the q-quantile (0 < q <= 1); NaN when empty. */
  quantileMs(q: number): number {
    let total = 0;
    for (let i = 0; i < BUCKETS; i++) total += this.counts[i];
    if (total === 0) return NaN;
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return ((i + 1) * BUCKET_US) / 1000;
    }
    return NaN;
  }
}
