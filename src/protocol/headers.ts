// Parsers for the values of the Multiplex-* headers and of the Content-Type that announces a multiplexed body.

import { BadHeaderValueError } from '../errors.ts';

const MAX_SECONDS = 31_536_000;
const SECONDS = /^[0-9]+(?:\.[0-9]+)?$/;
// RFC 9110 token
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 2046: 1-70 bchars, the last one not a space
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

/** Channel names: what a part's and a response's Multiplex-Channel may name. */
export const CHANNEL_NAME = /^[A-Za-z0-9_.:@-]{1,128}$/;

function isOws(ch: string): boolean {
  return ch === ' ' || ch === '\t';
}

/** Trims RFC 9110 optional whitespace (space and tab only) from both ends. */
function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value[start]!)) start++;
  while (end > start && isOws(value[end - 1]!)) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

/** "a, b ,c" -> ['a', 'b', 'c']; empty elements are skipped. The caller validates the elements. */
export function parseList(value: string): string[] {
  const items: string[] = [];
  for (const raw of value.split(',')) {
    const item = trimOws(raw);
    if (item !== '') items.push(item);
  }
  return items;
}

function secondsOrNaN(value: string): number {
  const text = trimOws(value);
  if (!SECONDS.test(text)) return NaN;
  const seconds = Number(text);
  return seconds <= MAX_SECONDS ? seconds : NaN;
}

/** Non-negative decimal seconds ("20", "0.5"), at most one year. */
export function parseSeconds(header: string, value: string): number {
  const seconds = secondsOrNaN(value);
  if (Number.isNaN(seconds)) {
    throw new BadHeaderValueError(header, value, `decimal seconds from 0 to ${MAX_SECONDS}, e.g. "20" or "0.5"`);
  }
  return seconds;
}

/** Resolves the C-style escapes \n \r \t \\ \"; any other escaped character stands for itself. */
export function unescapeC(value: string): string {
  if (!value.includes('\\')) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (ch !== '\\' || i === value.length - 1) {
      out += ch;
      continue;
    }
    const next = value[++i]!;
    out += next === 'n' ? '\n' : next === 'r' ? '\r' : next === 't' ? '\t' : next;
  }
  return out;
}

export interface KeepAlive {
  seconds: number;
  /** null: use the default for the stream's content type */
  data: Buffer | null;
}

const KEEP_ALIVE = 'Multiplex-Keep-Alive';
const KEEP_ALIVE_EXPECTED = 'S or S; data="..." with S > 0 decimal seconds and non-empty data';

/** 'S' or 'S; data="..."' (C escapes inside the quotes). */
export function parseKeepAlive(value: string): KeepAlive {
  const semicolon = value.indexOf(';');
  const seconds = secondsOrNaN(semicolon === -1 ? value : value.slice(0, semicolon));
  if (!(seconds > 0)) throw new BadHeaderValueError(KEEP_ALIVE, value, KEEP_ALIVE_EXPECTED);
  if (semicolon === -1) return { seconds, data: null };

  const param = trimOws(value.slice(semicolon + 1));
  const equals = param.indexOf('=');
  if (equals === -1 || trimOws(param.slice(0, equals)).toLowerCase() !== 'data') {
    throw new BadHeaderValueError(KEEP_ALIVE, value, KEEP_ALIVE_EXPECTED);
  }
  const quoted = trimOws(param.slice(equals + 1));
  const end = closingQuote(quoted);
  // the quoted string must be the whole rest of the value, and not empty
  if (end === -1 || end !== quoted.length - 1 || end === 1) {
    throw new BadHeaderValueError(KEEP_ALIVE, value, KEEP_ALIVE_EXPECTED);
  }
  // header values arrive as latin1 strings: one char per byte
  return { seconds, data: Buffer.from(unescapeC(quoted.slice(1, end)), 'latin1') };
}

/** Index of the quote closing the quoted string that starts at text[0], or -1. */
function closingQuote(text: string): number {
  if (text[0] !== '"') return -1;
  for (let i = 1; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\') i++;
    else if (ch === '"') return i;
  }
  return -1;
}

export type HoldMode = 'stream' | 'response' | 'none';

export function parseHold(value: string | undefined): HoldMode {
  if (value === undefined) return 'none';
  // The literals, not the header's string: a held stream keeps its mode for life.
  switch (trimOws(value).toLowerCase()) {
    case 'stream': return 'stream';
    case 'response': return 'response';
    case 'none': return 'none';
  }
  throw new BadHeaderValueError('Multiplex-Hold', value, '"stream", "response" or "none"');
}

export interface MediaType {
  /** "type/subtype", lowercased */
  type: string;
  /** parameter names lowercased, quoted values unquoted */
  params: Map<string, string>;
}

const MEDIA_TYPE_EXPECTED = 'type/subtype followed by ; name=value parameters (value a token or a quoted string)';

function badMediaType(value: string): never {
  throw new BadHeaderValueError('Content-Type', value, MEDIA_TYPE_EXPECTED);
}

/** RFC 9110 media-type: type "/" subtype *( OWS ";" OWS [ parameter ] ). */
export function parseMediaType(value: string): MediaType {
  let semicolon = value.indexOf(';');
  const type = trimOws(semicolon === -1 ? value : value.slice(0, semicolon)).toLowerCase();
  const slash = type.indexOf('/');
  if (slash === -1 || !TOKEN.test(type.slice(0, slash)) || !TOKEN.test(type.slice(slash + 1))) badMediaType(value);

  const params = new Map<string, string>();
  let i = semicolon === -1 ? value.length : semicolon + 1;
  while (i < value.length) {
    while (i < value.length && isOws(value[i]!)) i++;
    if (value[i] === ';') {
      i++;
      continue;
    }
    if (i === value.length) break;
    const equals = value.indexOf('=', i);
    if (equals === -1) badMediaType(value);
    const name = value.slice(i, equals).toLowerCase();
    if (!TOKEN.test(name)) badMediaType(value);
    let paramValue: string;
    if (value[equals + 1] === '"') {
      const close = closingQuote(value.slice(equals + 1));
      if (close === -1) badMediaType(value);
      paramValue = value.slice(equals + 2, equals + 1 + close).replace(/\\(.)/gs, '$1');
      i = equals + 2 + close;
    } else {
      semicolon = value.indexOf(';', equals);
      const end = semicolon === -1 ? value.length : semicolon;
      paramValue = trimOws(value.slice(equals + 1, end));
      if (!TOKEN.test(paramValue)) badMediaType(value);
      i = end;
    }
    // a repeated parameter is ambiguous: two parsers could pick different ones
    if (params.has(name)) badMediaType(value);
    params.set(name, paramValue);
    while (i < value.length && isOws(value[i]!)) i++;
    if (i < value.length && value[i] !== ';') badMediaType(value);
  }
  return { type, params };
}

/**
 * The boundary of an application/x-multiplex Content-Type, or null for any other type.
 * A multiplex type with a missing or invalid boundary is an error, not an ordinary response.
 */
export function multiplexBoundary(contentType: string | undefined): string | null {
  if (contentType === undefined) return null;
  const semicolon = contentType.indexOf(';');
  const type = trimOws(semicolon === -1 ? contentType : contentType.slice(0, semicolon)).toLowerCase();
  if (type !== 'application/x-multiplex') return null;
  const boundary = parseMediaType(contentType).params.get('boundary');
  if (boundary === undefined || !BOUNDARY.test(boundary)) {
    throw new BadHeaderValueError(
      'Content-Type',
      contentType,
      `application/x-multiplex; boundary=B with B 1-70 characters from [0-9A-Za-z'()+_,-./:=? ], not ending in a space`,
    );
  }
  return boundary;
}

export interface ChannelSubscription {
  name: string;
  /** Resume after this channel id (`name; since=<id>`), or null for live parts only. */
  since: number | null;
}

/** `Multiplex-Channel: a, b; since=42`: the channels a held stream subscribes to. */
export function parseChannelSubscriptions(value: string): ChannelSubscription[] {
  const subscriptions: ChannelSubscription[] = [];
  const seen = new Set<string>();
  for (const item of parseList(value)) {
    const [rawName, ...params] = item.split(';');
    const name = trimOws(rawName!);
    if (!CHANNEL_NAME.test(name)) {
      throw new BadHeaderValueError('Multiplex-Channel', value, 'channel names of 1 to 128 characters from [A-Za-z0-9_.:@-]');
    }
    let since: number | null = null;
    for (const param of params) {
      const match = /^\s*since\s*=\s*(\d{1,15})\s*$/i.exec(param);
      if (match === null) throw new BadHeaderValueError('Multiplex-Channel', value, 'name or name; since=<channel id>');
      since = Number(match[1]);
    }
    if (!seen.has(name)) {
      seen.add(name);
      subscriptions.push({ name, since });
    }
  }
  return subscriptions;
}
