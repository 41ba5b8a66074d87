// What the end-to-end tests share around test/php: the scripts' root and the environment that puts them behind muxgate.
import { join } from 'node:path';
import type { PhpFpm } from './php-fpm.ts';

/** test/php: the scripts the tests run in a real php-fpm. */
export const PHP_ROOT = join(import.meta.dirname, '..', 'php');

/** muxgate's environment for the scripts of PHP_ROOT behind this php-fpm. */
export function phpBackend(fpm: Pick<PhpFpm, 'host' | 'port'>): { MUX_FASTCGI: string; MUX_DOCUMENT_ROOT: string } {
  return { MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_DOCUMENT_ROOT: PHP_ROOT };
}
