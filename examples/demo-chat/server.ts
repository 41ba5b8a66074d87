// The bundled demo backend: a chat room FastCGI app that speaks muxgate's multiplex protocol.
import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync, unlinkSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Server, Socket } from 'node:net';
import { join } from 'node:path';
import { dropWritesAfterEnd } from './node-fastcgi-fix.ts';

interface NodeFastcgi {
  /** A net.Server that emits node:http-style requests and responses for FastCGI ones. */
  createServer(responder: (req: IncomingMessage, res: ServerResponse) => void): Server;
}
/** node-fastcgi's stand-in for req.socket: the raw FastCGI params live on it. */
interface FastcgiRequestSocket {
  params: FastcgiParams;
}
type FastcgiParams = Record<string, string | undefined>;

const fastcgi = createRequire(import.meta.url)('node-fastcgi') as NodeFastcgi;

const DEFAULT_LISTEN = '127.0.0.1:9000';
const ROOM_PATTERN = /^[a-z0-9-]{1,40}$/;
const MAX_NICK_CHARS = 40;
const MAX_TEXT_CHARS = 2000;
const MAX_SEND_BODY_BYTES = 16 * 1024;
const KEEP_ALIVE_SECONDS = 20;

const publicDir = join(import.meta.dirname, 'public');
const staticFiles = new Map<string, { type: string; body: Buffer }>([
  ['/', { type: 'text/html; charset=utf-8', body: readFileSync(join(publicDir, 'index.html')) }],
  ['/app.js', { type: 'text/javascript; charset=utf-8', body: readFileSync(join(publicDir, 'app.js')) }],
  ['/style.css', { type: 'text/css; charset=utf-8', body: readFileSync(join(publicDir, 'style.css')) }],
]);

/** One part: to tokens, or to the readers of a room's channel. */
interface Part {
  tokens?: readonly string[];
  channel?: string;
  body: string;
}

/** The exact application/x-multiplex body. */
export function multiplexBody(boundary: string, parts: readonly Part[]): string {
  let body = '';
  for (const part of parts) {
    body += `--${boundary}\r\n`;
    if (part.tokens !== undefined) body += `Multiplex-Token: ${part.tokens.join(', ')}\r\n`;
    if (part.channel !== undefined) body += `Multiplex-Channel: ${part.channel}\r\n`;
    body += `\r\n${part.body}\r\n`;
  }
  return `${body}--${boundary}--\r\n`;
}

function sseEvent(event: string, data: unknown): string {
  // JSON.stringify escapes newlines, so the data is one line as SSE requires.
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The channel muxgate keeps the room's readers in: the app itself keeps no list of anyone. */
function roomChannel(room: string): string {
  return `room-${room}`;
}

function sendMultiplexed(res: ServerResponse, headers: Record<string, string>, parts: readonly Part[]): void {
  const boundary = randomBytes(16).toString('hex');
  const body = multiplexBody(boundary, parts);
  res.writeHead(200, {
    'Content-Type': `application/x-multiplex; boundary=${boundary}`,
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function validNick(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= MAX_NICK_CHARS;
}

function validRoom(value: unknown): value is string {
  return typeof value === 'string' && ROOM_PATTERN.test(value);
}

/**
 * GET /events?room=&nick=: hold the requester as an SSE stream subscribed to the room. A browser
 * that reconnects sends Last-Event-ID, passed on as `since`, and muxgate replays what it missed.
 */
function handleEvents(res: ServerResponse, params: FastcgiParams, query: URLSearchParams): void {
  const room = query.get('room');
  const nick = query.get('nick');
  if (!validRoom(room)) return sendJson(res, 400, { error: 'room must match [a-z0-9-]{1,40}' });
  if (!validNick(nick)) return sendJson(res, 400, { error: `nick must be 1 to ${MAX_NICK_CHARS} characters` });
  const token = params.MULTIPLEX_TOKEN!;
  // EventSource sends Last-Event-ID when it reconnects; a reloaded page passes ?since= itself.
  const lastEventId = params.HTTP_LAST_EVENT_ID ?? query.get('since') ?? '';
  const isResuming = /^\d{1,15}$/.test(lastEventId);
  const at = Date.now();
  const parts: Part[] = [{ tokens: [token], body: sseEvent('welcome', { room, nick, token, resumed: isResuming, at }) }];
  if (!isResuming) parts.push({ channel: roomChannel(room), body: sseEvent('join', { room, nick, at }) });
  sendMultiplexed(res, {
    'Multiplex-Hold': 'stream',
    'Multiplex-Content-Type': 'text/event-stream',
    'Multiplex-Keep-Alive': String(KEEP_ALIVE_SECONDS),
    'Multiplex-Channel': roomChannel(room) + (isResuming ? `; since=${lastEventId}` : ''),
  }, parts);
}

/** muxgate's close event (MUX_EVENTS) for a reader's stream: tell the room who left. */
function handleLeave(res: ServerResponse, params: FastcgiParams, query: URLSearchParams): void {
  const room = query.get('room');
  const nick = query.get('nick');
  // A client that is only reconnecting comes back at once: announce those that really left.
  if (!validRoom(room) || !validNick(nick) || params.MULTIPLEX_REASON === 'shutdown') return sendJson(res, 204, {});
  sendMultiplexed(res, {}, [{ channel: roomChannel(room), body: sseEvent('leave', { room, nick, at: Date.now() }) }]);
}

async function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** POST /send {room, nick, text}: one part to the room's channel, and `{"ok":true}` to the sender. */
async function handleSend(req: IncomingMessage, res: ServerResponse, token: string): Promise<void> {
  const text = await readBody(req, MAX_SEND_BODY_BYTES);
  if (text === undefined) return sendJson(res, 413, { error: `body must be at most ${MAX_SEND_BODY_BYTES} bytes` });
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return sendJson(res, 400, { error: 'body must be JSON: {"room", "nick", "text"}' });
  }
  if (typeof message !== 'object' || message === null) {
    return sendJson(res, 400, { error: 'body must be a JSON object: {"room", "nick", "text"}' });
  }
  const { room, nick, text: said } = message as Record<string, unknown>;
  if (!validRoom(room)) return sendJson(res, 400, { error: 'room must match [a-z0-9-]{1,40}' });
  if (!validNick(nick)) return sendJson(res, 400, { error: `nick must be 1 to ${MAX_NICK_CHARS} characters` });
  if (typeof said !== 'string' || said.length < 1 || said.length > MAX_TEXT_CHARS) {
    return sendJson(res, 400, { error: `text must be 1 to ${MAX_TEXT_CHARS} characters` });
  }
  sendMultiplexed(res, { 'Multiplex-Content-Type': 'application/json' }, [
    { channel: roomChannel(room), body: sseEvent('message', { nick, text: said, at: Date.now() }) },
    { tokens: [token], body: '{"ok":true}' },
  ]);
}

function handleRequest(req: IncomingMessage, res: ServerResponse): void {
  const params = (req.socket as unknown as FastcgiRequestSocket).params;
  const token = params.MULTIPLEX_TOKEN ?? '';
  const url = new URL(params.REQUEST_URI ?? req.url ?? '/', 'http://demo-chat.invalid');
  const method = req.method ?? 'GET';

  if (params.MULTIPLEX_EVENT === 'close' && url.pathname === '/events') return handleLeave(res, params, url.searchParams);
  if (method === 'GET' || method === 'HEAD') {
    const file = staticFiles.get(url.pathname);
    if (file !== undefined) {
      res.writeHead(200, { 'Content-Type': file.type, 'Content-Length': file.body.length, 'Cache-Control': 'no-cache' });
      res.end(method === 'HEAD' ? undefined : file.body);
      return;
    }
  }
  if (method === 'GET' && url.pathname === '/events' && token !== '') return handleEvents(res, params, url.searchParams);
  if (method === 'POST' && url.pathname === '/send' && token !== '') {
    handleSend(req, res, token).catch((error: unknown) => {
      console.error('demo-chat: /send failed:', error);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
    return;
  }
  sendJson(res, 404, { error: 'not found' });
}

type ListenTarget = { path: string } | { host: string; port: number };

function parseListen(value: string): ListenTarget {
  if (value.startsWith('/')) return { path: value };
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65535) {
    console.error(`DEMO_CHAT_LISTEN=${JSON.stringify(value)} is invalid: expected /path/to.sock or host:port`);
    process.exit(2);
  }
  return { host: match[1] ?? match[2]!, port };
}

function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function main(): void {
  const target = parseListen(process.env.DEMO_CHAT_LISTEN || DEFAULT_LISTEN);
  const server = fastcgi.createServer(handleRequest);
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    dropWritesAfterEnd(socket);
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  server.on('error', (error: Error) => {
    console.error('demo-chat:', error.message);
    process.exit(1);
  });

  let isClosing = false;
  const shutdown = (): void => {
    if (isClosing) return;
    isClosing = true;
    for (const socket of connections) socket.destroy();
    server.close(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  process.once('disconnect', shutdown);

  if ('path' in target) removeStaleSocket(target.path);
  server.listen(target, () => {
    const address = server.address() as AddressInfo | string;
    const shown = typeof address === 'string'
      ? address
      : `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    console.log(`demo-chat listening on ${shown}`);
    process.send?.({ ready: true, address: shown });
  });
}

if (import.meta.main) main();
