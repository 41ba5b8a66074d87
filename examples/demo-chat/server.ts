// The bundled demo backend: a chat room FastCGI app that speaks muxgate's multiplex protocol, to WebSocket and SSE readers.
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

/**
 * Every part is the text of one SSE event, whichever the reader's transport: one part to a room's channel reaches its
 * SSE and WebSocket readers alike, and the page reads the event's name and data from a WebSocket message itself.
 */
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
 * GET /events?room=&nick=: hold the requester in the room's channel, as an SSE stream or, for a WebSocket opening
 * (MULTIPLEX_TRANSPORT=websocket), as a WebSocket whose messages are the same SSE events. A browser whose EventSource
 * reconnects sends Last-Event-ID, a page that reconnects its WebSocket or reloads passes ?since=: passed on as `since`,
 * muxgate replays what the reader missed.
 */
function handleEvents(res: ServerResponse, params: FastcgiParams, query: URLSearchParams): void {
  const room = query.get('room');
  const nick = query.get('nick');
  if (!validRoom(room)) return sendJson(res, 400, { error: 'room must match [a-z0-9-]{1,40}' });
  if (!validNick(nick)) return sendJson(res, 400, { error: `nick must be 1 to ${MAX_NICK_CHARS} characters` });
  const token = params.MULTIPLEX_TOKEN!;
  // EventSource sends Last-Event-ID when it reconnects; a reloaded page, or a WebSocket reconnecting, passes ?since=.
  const lastEventId = params.HTTP_LAST_EVENT_ID ?? query.get('since') ?? '';
  const isResuming = /^\d{1,15}$/.test(lastEventId);
  const at = Date.now();
  const parts: Part[] = [{ tokens: [token], body: sseEvent('welcome', { room, nick, token, resumed: isResuming, at }) }];
  if (!isResuming) parts.push({ channel: roomChannel(room), body: sseEvent('join', { room, nick, at }) });
  const headers: Record<string, string> = {
    'Multiplex-Hold': 'stream',
    // An SSE comment on a stream, a ping on a WebSocket.
    'Multiplex-Keep-Alive': String(KEEP_ALIVE_SECONDS),
    'Multiplex-Channel': roomChannel(room) + (isResuming ? `; since=${lastEventId}` : ''),
    // SSE events on both transports: on a WebSocket too, each room part then carries its id (protocol §7.1).
    'Multiplex-Content-Type': 'text/event-stream',
  };
  sendMultiplexed(res, headers, parts);
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

/** The text of a chat line, or why it is not one. */
function checkText(text: unknown): string | undefined {
  if (typeof text !== 'string' || text.length < 1 || text.length > MAX_TEXT_CHARS) {
    return `text must be 1 to ${MAX_TEXT_CHARS} characters`;
  }
  return undefined;
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
  const textError = checkText(said);
  if (textError !== undefined) return sendJson(res, 400, { error: textError });
  sendMultiplexed(res, { 'Multiplex-Content-Type': 'application/json' }, [
    { channel: roomChannel(room), body: sseEvent('message', { nick, text: said, at: Date.now() }) },
    { tokens: [token], body: '{"ok":true}' },
  ]);
}

/**
 * A WebSocket message (MULTIPLEX_EVENT=message): the chat line itself, from the reader of the opening's room and nick.
 * One part to the room's channel and a `sent` reply to the sender, or only a `rejected` reply saying why: an error
 * status would make muxgate close the connection.
 */
async function handleMessage(req: IncomingMessage, res: ServerResponse, params: FastcgiParams, query: URLSearchParams): Promise<void> {
  const token = params.MULTIPLEX_TOKEN!;
  const room = query.get('room');
  const nick = query.get('nick');
  const reject = (error: string): void => sendMultiplexed(res, {}, [{ tokens: [token], body: sseEvent('rejected', { error }) }]);
  if (!validRoom(room) || !validNick(nick)) return reject('the connection has no valid room and nick');
  if (!(params.CONTENT_TYPE ?? '').startsWith('text/')) return reject('messages must be text');
  const text = await readBody(req, MAX_SEND_BODY_BYTES);
  const textError = text === undefined ? `messages must be at most ${MAX_SEND_BODY_BYTES} bytes` : checkText(text);
  if (textError !== undefined) return reject(textError);
  const at = Date.now();
  sendMultiplexed(res, {}, [
    { channel: roomChannel(room), body: sseEvent('message', { nick, text, at }) },
    { tokens: [token], body: sseEvent('sent', { at }) },
  ]);
}

/** Answers a request handled asynchronously, or a 500 if it failed. */
function settle(what: string, res: ServerResponse, handling: Promise<void>): void {
  handling.catch((error: unknown) => {
    console.error(`demo-chat: ${what} failed:`, error);
    if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
    else res.destroy();
  });
}

function handleRequest(req: IncomingMessage, res: ServerResponse): void {
  const params = (req.socket as unknown as FastcgiRequestSocket).params;
  const token = params.MULTIPLEX_TOKEN ?? '';
  const url = new URL(params.REQUEST_URI ?? req.url ?? '/', 'http://demo-chat.invalid');
  const method = req.method ?? 'GET';

  if (params.MULTIPLEX_EVENT === 'close' && url.pathname === '/events') return handleLeave(res, params, url.searchParams);
  if (params.MULTIPLEX_EVENT === 'message' && url.pathname === '/events' && token !== '') {
    return settle('a WebSocket message', res, handleMessage(req, res, params, url.searchParams));
  }
  if (method === 'GET' || method === 'HEAD') {
    const file = staticFiles.get(url.pathname);
    if (file !== undefined) {
      res.writeHead(200, { 'Content-Type': file.type, 'Content-Length': file.body.length, 'Cache-Control': 'no-cache' });
      res.end(method === 'HEAD' ? undefined : file.body);
      return;
    }
  }
  if (method === 'GET' && url.pathname === '/events' && token !== '') return handleEvents(res, params, url.searchParams);
  if (method === 'POST' && url.pathname === '/send' && token !== '') return settle('/send', res, handleSend(req, res, token));
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
