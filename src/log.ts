// The pino logger factory: JSON lines written straight to fd 1 from whichever thread logs.
import { pino } from 'pino';
import type { Logger, LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent, bindings: Record<string, unknown> = {}, isPretty = false): Logger {
  const options = { level, base: { pid: process.pid, ...bindings }, redact: { paths: ['config.pushSecret'], censor: (value: unknown) => (value === null ? null : '[redacted]') } };
  // For humans (MUX_LOG_PRETTY): pino-pretty in a transport thread, a development dependency.
  if (isPretty) return pino(options, pino.transport({ target: 'pino-pretty', options: { destination: 1 } }));
  // Written synchronously on fd 1, so a worker never funnels lines through the main thread
  // and nothing is lost when a thread exits.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}
