// What the end-to-end tests share around test/php and the push API: the scripts' root and the environment that puts
// them behind muxgate, the files the scripts log to, a held stream opened with its token, and a push with its answer.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type tls from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { PhpFpm } from './php-fpm.ts';
import { RawHttp } from './raw-http.ts';
import { waitUntil } from './wait.ts';

/** test/php: the scripts the tests run in a real php-fpm. */
export const PHP_ROOT = join(import.meta.dirname, '..', 'php');

/** muxgate's environment for the scripts of PHP_ROOT behind this php-fpm. */
export function phpBackend(fpm: Pick<PhpFpm, 'host' | 'port'>): { MUX_FASTCGI: string; MUX_DOCUMENT_ROOT: string } {
  return { MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_DOCUMENT_ROOT: PHP_ROOT };
}

/**
 * A file in a directory of its own that test/php scripts append lines to, named to php-fpm by an environment variable
 * (EVENT_LOG, REQUEST_LOG, OVERLAP_LOG): what the backend did, for the test to read or wait for.
 */
export class ScriptLog {
  readonly path = join(mkdtempSync(join(tmpdir(), 'muxgate-script-log-')), 'log');

  /** Its lines so far; none before a script first wrote. */
  lines(): string[] {
    return existsSync(this.path) ? readFileSync(this.path, 'utf8').split('\n').filter((line) => line !== '') : [];
  }

  /** Resolves with the first line that satisfies the predicate, as soon as a script has written it. */
  waitForLine(predicate: (line: string) => boolean, timeoutMs = 5000, what = 'a matching line'): Promise<string> {
    return waitUntil(() => this.lines().find(predicate), timeoutMs, () => `${what} in ${this.path} (lines: ${this.lines().slice(-10).join(' | ')})`);
  }

  clear(): void {
    writeFileSync(this.path, '');
  }

  remove(): void {
    rmSync(dirname(this.path), { recursive: true, force: true });
  }
}

/** A client holding a stream open, and the stream's token. */
export interface OpenStream {
  client: RawHttp;
  token: string;
}

export interface OpenStreamOptions {
  /** The script of PHP_ROOT that answers: stream.php by default, or another that tells its token in X-Token. */
  script?: string;
  /** The request line's HTTP version. */
  version?: '1.1' | '1.0';
  /** Request header lines to add. */
  headers?: string[];
  timeoutMs?: number;
  /** The TLS client's options (its `ca`) for an https:// URL. */
  secure?: tls.ConnectionOptions;
}

/**
 * GET of a test/php script that holds a stream and tells its token in X-Token (stream.php, room.php, slow-body.php);
 * the query shapes the stream (see the script). Resolves once the 200 head has arrived and, from stream.php without
 * `silent`, the stream's own part that tells its token, so that `client.text` holds them.
 */
export async function openStream(url: string, query: string, options: OpenStreamOptions = {}): Promise<OpenStream> {
  const script = options.script ?? 'stream.php';
  const timeoutMs = options.timeoutMs ?? 5000;
  const what = `${script}?${query}`;
  const client = await RawHttp.get(`${url}/${script}?${query}`, options.version, options.headers, options.secure);
  try {
    const head = await client.waitFor((t) => t.includes('\r\n\r\n'), timeoutMs, `the head of ${what}`);
    assert.match(head, /^HTTP\/1\.[01] 200 /, `${what} answered ${JSON.stringify(head.slice(0, 300))}`);
    const token = /\r\nX-Token: (\S+)\r\n/i.exec(head)?.[1];
    assert.ok(token !== undefined, `${what} told no token: ${JSON.stringify(head.slice(0, 300))}`);
    if (script === 'stream.php' && !/(^|&)silent=/.test(query)) {
      await client.waitFor((t) => t.includes(`token=${token}\n`), timeoutMs, `the part of ${what} that tells its token`);
    }
    return { client, token };
  } catch (error) {
    client.close();
    throw error;
  }
}

/** One part of a multiplexed body: its targets, whether it closes them, whether it is binary, its body. */
export interface PushPart {
  tokens?: string[];
  channels?: string[];
  close?: boolean;
  binary?: boolean;
  body: string;
}

/** A multipart body for the push API or a test backend. */
export function multiplexBody(boundary: string, parts: PushPart[]): string {
  let out = '';
  for (const part of parts) {
    out += `--${boundary}\r\n`;
    if (part.tokens) out += `Multiplex-Token: ${part.tokens.join(', ')}\r\n`;
    if (part.channels) out += `Multiplex-Channel: ${part.channels.join(', ')}\r\n`;
    if (part.close) out += 'Multiplex-Close: true\r\n';
    if (part.binary) out += 'Multiplex-Binary: true\r\n';
    out += `\r\n${part.body}\r\n`;
  }
  return out + `--${boundary}--\r\n`;
}

/** The JSON that POST /push answers (docs/protocol.md), a refusal's error and code included. */
export interface PushAnswer {
  parts: number;
  deliveries: number;
  gone: string[];
  channels?: Record<string, number>;
  forwarded?: number;
  unconfirmed?: number;
  error?: string;
  code?: string;
}

export interface PushReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  answer: PushAnswer;
  /** How long the answer took to arrive whole. */
  ms: number;
}

export interface PushOptions {
  /** The boundary named in the Content-Type, and the parts' when they are given as parts; PB by default. */
  boundary?: string;
  /** Sent as `Authorization: Bearer <secret>`. */
  secret?: string;
  /** Header fields that add to those above or replace them (Content-Type, Authorization, Connection). */
  headers?: Record<string, string>;
  /** The connections to push over (a pusher of its own, one connection); Node's global agent by default. */
  agent?: http.Agent;
  timeoutMs?: number;
}

/** One POST /push of the parts, or of a body as it is; resolves with the reply, whatever its status. */
export function sendPush(pushUrl: string, body: PushPart[] | string | Buffer, options: PushOptions = {}): Promise<PushReply> {
  const boundary = options.boundary ?? 'PB';
  const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : multiplexBody(boundary, body);
  const headers: Record<string, string | number> = {
    'content-type': `application/x-multiplex; boundary=${boundary}`,
    'content-length': Buffer.byteLength(payload),
  };
  if (options.secret !== undefined) headers.authorization = `Bearer ${options.secret}`;
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name.toLowerCase()] = value;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = http.request(pushUrl, { method: 'POST', agent: options.agent, headers }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (data: string) => { text += data; });
      response.on('end', () => {
        const ms = Math.round(performance.now() - started);
        let answer: PushAnswer;
        try {
          answer = JSON.parse(text);
        } catch {
          return reject(new Error(`POST ${pushUrl} answered ${response.statusCode} without JSON: ${JSON.stringify(text.slice(0, 200))}`));
        }
        resolve({ status: response.statusCode!, headers: response.headers, text, answer, ms });
      });
    });
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer to POST ${pushUrl} within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end(payload);
  });
}

/** One POST /push that must be answered `status` (200 unless told otherwise); resolves with its answer. */
export async function push(pushUrl: string, body: PushPart[] | string | Buffer, options: PushOptions & { status?: number } = {}): Promise<PushAnswer> {
  const reply = await sendPush(pushUrl, body, options);
  assert.equal(reply.status, options.status ?? 200, `POST /push answered ${reply.status}: ${reply.text.slice(0, 500)}`);
  return reply.answer;
}
