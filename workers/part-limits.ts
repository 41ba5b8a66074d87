// The limits every multiplexed body is parsed with, whoever sent it.
import type { Config } from '../src/config.ts';
import type { MultiplexParserLimits } from '../src/protocol/multiplex-parser.ts';

/** Part headers may list many tokens: 1 MiB holds about 30,000 (channels scale further). */
const MAX_PART_HEADER_BYTES = 1_048_576;
const MAX_TARGETS_PER_PART = 100_000;

export function partLimits(config: Readonly<Config>): MultiplexParserLimits {
  return { maxPartBytes: config.maxPartBytes, maxPartHeaderBytes: MAX_PART_HEADER_BYTES, maxTargetsPerPart: MAX_TARGETS_PER_PART };
}
