// `npm run soak`: muxgate under churn for SOAK_SECONDS (default 600) against a real php-fpm. A pool of held
// streams keeps disconnecting and reconnecting while parts are pushed to their tokens and channels; every live
// stream checks that it gets exactly the parts addressed to it, in order, and every ended stream its close event.
// muxgate's RSS, open fds, gauges and live heap (what full collections leave, from --trace-gc) are sampled; a
// Markdown summary goes to stdout (progress to stderr), and the exit code is 1 on a lost part, a protocol error,
// or RSS/fds/live heap growing after warm-up beyond the thresholds (defaults: RSS +20 %, fds +10 % and 0.05 per
// churn cycle, live heap 2.5 KiB per churn cycle). The soak itself is in bench/soak/, run by bench/soak/run.ts.
import { runSoak } from './soak/run.ts';

function envSeconds(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`soak: ${name}=${JSON.stringify(text)} is invalid: expected a positive number\n`);
    process.exit(2);
  }
  return value;
}

const abort = new AbortController();
// Ctrl-C ends the churn early; the checks, the summary and the clean-up still run.
process.once('SIGINT', () => abort.abort());
process.once('SIGTERM', () => abort.abort());
const result = await runSoak({
  seconds: envSeconds('SOAK_SECONDS', 600),
  streams: Math.round(envSeconds('SOAK_STREAMS', 300)),
  signal: abort.signal,
});
process.stdout.write(result.markdown + '\n');
process.exitCode = result.isOk ? 0 : 1;
