// What outside input looks like in error messages and log lines: cut short, with anything that could be a token masked.

/**
 * A run of token characters this long could hold a useful piece of a token's secret (22 base64url characters):
 * shorter runs show at most 42 bits of it.
 */
const RUN = /[A-Za-z0-9_-]{8,}/g;
/** Longest token: the run a cut falls in is judged on this much more of the input, never on a short piece. */
const MAX_TOKEN_CHARS = 64;
/** A piece of a run between `-` and `_` that reads as a word, a capitalised word, an acronym or a number. */
const WORD = /^(?:[A-Z]?[a-z]*|[A-Z]+|[0-9]+)$/;
const MASK = '[masked]';

/** Words (`Multiplex-Token`, `text_plain`, `room-42`) are kept; mixed case and digits in one piece look random. */
function isWords(run: string): boolean {
  let start = 0;
  for (let i = 0; i <= run.length; i++) {
    const code = i < run.length ? run.charCodeAt(i) : 0x2d;
    if (code !== 0x2d && code !== 0x5f) continue;
    if (!WORD.test(run.slice(start, i))) return false;
    start = i + 1;
  }
  return true;
}

/**
 * The first maxChars characters of the text, then `...` if it was longer, with every random-looking run of 8 or more
 * token characters replaced by `[masked]`: a whole token, and a truncated or altered one too (a token's node id and
 * secret are such runs). What was wrong stays readable: names, words, numbers and punctuation are kept.
 */
export function redact(text: string, maxChars = 100): string {
  const isCut = text.length > maxChars;
  const head = isCut ? text.slice(0, maxChars + MAX_TOKEN_CHARS) : text;
  let out = '';
  let copied = 0;
  RUN.lastIndex = 0;
  for (let match = RUN.exec(head); match !== null && match.index < maxChars; match = RUN.exec(head)) {
    if (isWords(match[0])) continue;
    out += head.slice(copied, match.index) + MASK;
    copied = match.index + match[0].length;
  }
  if (copied < maxChars) out += head.slice(copied, maxChars);
  return isCut ? `${out}...` : out;
}

/** redact() as a JSON string literal, for quoting input inside a message. */
export function quote(text: string, maxChars = 100): string {
  return JSON.stringify(redact(text, maxChars));
}
