// The chat as a person uses it: real Chromium pages, their WebSocket or EventSource held by muxgate, against the
// bundled demo and against the PHP example behind a real php-fpm.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startPhpFpm } from './helpers/php-fpm.ts';
import { startMuxgate } from './helpers/muxgate.ts';

const ROOT = join(import.meta.dirname, '..');
const ARTIFACTS = join(ROOT, 'test-artifacts');
// Room for a busy machine (two Chromium pages, php-fpm, other tests), not a latency figure: under load a chat message
// took 0.2-0.9 s here. Latency is the bench's business.
const WAIT = { timeout: 10_000 };
let browser: Browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser.close();
});

type Transport = 'websocket' | 'sse';

/** A person in their own browser profile, joined to a room; the page picks its transport unless told one. */
async function joinRoom(url: string, nick: string, room: string, transport?: Transport): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${url}/${transport === undefined ? '' : `?transport=${transport}`}#${room}`);
  await page.fill('#nick', nick);
  await page.click('#join');
  await page.waitForSelector('#status[data-state="connected"]', WAIT);
  await page.waitForSelector('li[data-event="welcome"]', WAIT);
  return page;
}

/** Waits until the room bar says the page chats over this transport. */
async function waitForTransport(page: Page, transport: Transport): Promise<void> {
  await page.waitForSelector(`#transport[data-transport="${transport}"]`, WAIT);
  await page.waitForSelector('#status[data-state="connected"]', WAIT);
  assert.equal(await page.textContent('#transport'), transport === 'websocket' ? 'WebSocket' : 'SSE');
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#send');
}

/** Says something and waits for the backend's answer to the sender alone: the composer is emptied once it is sent. */
async function sayAndWaitForSent(page: Page, text: string): Promise<void> {
  await say(page, text);
  await page.waitForSelector('#text:placeholder-shown', WAIT);
}

/** A reload resumes: what `speaker` says while `reader`'s page is gone arrives once it is back, once. */
async function reloadResumes(speaker: Page, reader: Page, transport: 'sse' | 'websocket'): Promise<void> {
  const reloaded = reader.reload();
  await sayAndWaitForSent(speaker, 'said during the reload');
  await reloaded;
  await reader.waitForSelector('li.message >> text=said during the reload', WAIT);
  await reader.waitForSelector('#status[data-state="connected"]', WAIT);
  await waitForTransport(reader, transport);
  await sayAndWaitForSent(speaker, 'after the reload');
  await reader.waitForSelector('li.message >> text=after the reload', WAIT);
  const seen = await messages(reader);
  assert.equal(seen.filter((m) => m.includes('said during the reload')).length, 1, seen.join(' | '));
}

function messages(page: Page): Promise<string[]> {
  return page.$$eval('#messages li.message', (items) => items.map((item) => item.textContent ?? ''));
}

/** Over SSE (the page's fallback, asked for by ?transport=sse): chat, another room, and a reload that resumes. */
async function sseChatScenario(url: string, name: string): Promise<void> {
  const ada = await joinRoom(url, 'ada', 'lab', 'sse');
  const bob = await joinRoom(url, 'bob', 'lab', 'sse');
  const eve = await joinRoom(url, 'eve', 'elsewhere', 'sse');
  await waitForTransport(ada, 'sse');
  await ada.waitForSelector('li[data-event="join"] >> text=bob joined', WAIT);

  await say(ada, 'hello bob');
  await bob.waitForSelector('li.message >> text=hello bob', WAIT);
  await ada.waitForSelector('li.message >> text=hello bob', WAIT);
  await say(bob, 'hi ada');
  await ada.waitForSelector('li.message >> text=hi ada', WAIT);
  await ada.screenshot({ path: join(ARTIFACTS, `${name}-chat.png`) });

  await reloadResumes(ada, bob, 'sse');
  await bob.screenshot({ path: join(ARTIFACTS, `${name}-after-reload.png`) });

  assert.deepEqual(await messages(eve), [], 'the other room saw nothing');
  for (const page of [ada, bob, eve]) await page.context().close();
}

test('two tabs chat over SSE through the bundled demo; another room sees nothing; a reload resumes', async () => {
  const mux = await startMuxgate({ MUX_SHARDS: '2' });
  try {
    await sseChatScenario(mux.url, 'demo');
  } finally {
    await mux.stop();
  }
});

/** muxgate in front of the PHP example (examples/php-chat) behind a php-fpm of its own, for the scenario. */
async function withPhpChat(scenario: (url: string) => Promise<void>): Promise<void> {
  const fpm = await startPhpFpm({ documentRoot: join(ROOT, 'examples/php-chat') });
  const mux = await startMuxgate({
    MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SCRIPT_FILENAME: join(ROOT, 'examples/php-chat/chat.php'),
    MUX_EVENTS: 'close', MUX_CHANNEL_HISTORY: '100', MUX_SHARDS: '2',
  });
  try {
    await scenario(mux.url);
  } finally {
    await mux.stop();
    await fpm.stop();
  }
}

test('the same over SSE through the PHP example behind php-fpm', () => withPhpChat(async (url) => {
  await sseChatScenario(url, 'php');
  // Leaving is told to the room by the PHP script, answering muxgate's close event.
  const ada = await joinRoom(url, 'ada', 'bye', 'sse');
  const bob = await joinRoom(url, 'bob', 'bye', 'sse');
  await bob.context().close();
  await ada.waitForSelector('li[data-event="leave"] >> text=bob left', WAIT);
  await ada.context().close();
}));

/** Over WebSocket, the page's first choice: chat both ways, a reload that resumes, another room, and the switch to SSE in a mixed room. */
async function webSocketChatScenario(url: string, name: string): Promise<void> {
  const ada = await joinRoom(url, 'ada', 'lab');
  const bob = await joinRoom(url, 'bob', 'lab');
  const eve = await joinRoom(url, 'eve', 'elsewhere');
  for (const page of [ada, bob, eve]) await waitForTransport(page, 'websocket');
  await ada.waitForSelector('li[data-event="join"] >> text=bob joined', WAIT);

  await sayAndWaitForSent(ada, 'hello bob');
  await bob.waitForSelector('li.message >> text=hello bob', WAIT);
  await ada.waitForSelector('li.message >> text=hello bob', WAIT);
  await sayAndWaitForSent(bob, 'hi ada');
  await ada.waitForSelector('li.message >> text=hi ada', WAIT);
  await ada.screenshot({ path: join(ARTIFACTS, `${name}-websocket-chat.png`) });

  // Over WebSocket too: the page passes the last id it saw.
  await reloadResumes(ada, bob, 'websocket');

  // The switch: ada moves to SSE, in the same room as bob's WebSocket, and the two still chat.
  await ada.click('#transport');
  await waitForTransport(ada, 'sse');
  await ada.waitForSelector('li[data-event="welcome"]', WAIT);
  assert.equal(new URL(ada.url()).searchParams.get('transport'), 'sse');
  await say(bob, 'to ada on SSE');
  await ada.waitForSelector('li.message >> text=to ada on SSE', WAIT);
  await sayAndWaitForSent(ada, 'to bob on WebSocket');
  await bob.waitForSelector('li.message >> text=to bob on WebSocket', WAIT);

  assert.deepEqual(await messages(eve), [], 'the other room saw nothing');
  for (const page of [ada, bob, eve]) await page.context().close();
}

/** What a page's own WebSockets received, kept in the page by openWebSocket. */
interface SocketsInPage {
  sockets: Record<string, WebSocket>;
  received: Record<string, Array<string | number>>;
}

/** Opens Chromium's own WebSocket in the page, as `name`; resolves once it opened, or with the close code if it never did. */
function openWebSocket(page: Page, url: string, name: string): Promise<{ isOpen: boolean; code?: number }> {
  return page.evaluate(([url, name]) => new Promise((resolve) => {
    const state = globalThis as unknown as SocketsInPage;
    state.sockets ??= {};
    state.received ??= {};
    const socket = new WebSocket(url);
    socket.binaryType = 'arraybuffer';
    state.sockets[name] = socket;
    const received: Array<string | number> = state.received[name] = [];
    socket.onmessage = (event) => received.push(typeof event.data === 'string' ? event.data : -1);
    socket.onopen = () => resolve({ isOpen: true });
    socket.onclose = (event) => {
      received.push(event.code);
      resolve({ isOpen: false, code: event.code });
    };
  }), [url, name] as const);
}

function sendOnWebSocket(page: Page, name: string, data: string | number[]): Promise<void> {
  return page.evaluate(([name, data]) => {
    const socket = (globalThis as unknown as SocketsInPage).sockets[name]!;
    socket.send(typeof data === 'string' ? data : new Uint8Array(data));
  }, [name, data] as const);
}

/** Waits until the socket `name` has received `count` messages that contain `text`; resolves with all it received. */
async function waitForMessages(page: Page, name: string, text: string, count = 1): Promise<Array<string | number>> {
  await page.waitForFunction(([name, text, count]) => {
    const received = (globalThis as unknown as SocketsInPage).received[name]!;
    return received.filter((data) => typeof data === 'string' && data.includes(text)).length >= count;
  }, [name, text, count] as const, WAIT);
  return page.evaluate((name) => (globalThis as unknown as SocketsInPage).received[name]!, name);
}

/**
 * The backend's side of the WebSocket chat, from Chromium's own WebSocket: an opening refused and one accepted, a
 * message to the room, the sender's own `sent` reply, and `rejected` replies that leave the connection open.
 */
async function webSocketProtocolScenario(url: string): Promise<void> {
  const page = await (await browser.newContext()).newPage();
  const events = `${url.replace(/^http/, 'ws')}/events`;

  // A nick the backend refuses: its 400 is relayed and nothing is upgraded.
  assert.deepEqual(await openWebSocket(page, `${events}?room=raw&nick=`, 'refused'), { isOpen: false, code: 1006 });

  assert.deepEqual(await openWebSocket(page, `${events}?room=raw&nick=ann`, 'ann'), { isOpen: true });
  const [welcome] = await waitForMessages(page, 'ann', 'event: welcome');
  assert.match(String(welcome), /^event: welcome\ndata: \{.*"nick":"ann".*"resumed":false/);
  assert.deepEqual(await openWebSocket(page, `${events}?room=raw&nick=ben`, 'ben'), { isOpen: true });
  await waitForMessages(page, 'ann', '"nick":"ben"');

  await sendOnWebSocket(page, 'ann', 'hello ben');
  const annSees = await waitForMessages(page, 'ann', 'event: sent');
  const benSees = await waitForMessages(page, 'ben', '"text":"hello ben"');
  await waitForMessages(page, 'ann', '"text":"hello ben"');
  assert.equal(benSees.filter((data) => String(data).includes('event: sent')).length, 0, 'only the sender is answered');
  assert.equal(annSees.filter((data) => String(data).includes('event: sent')).length, 1);

  // What the backend refuses is answered to the sender alone, and the connection stays open.
  await sendOnWebSocket(page, 'ben', [1, 2, 3]);
  await waitForMessages(page, 'ben', 'messages must be text');
  await sendOnWebSocket(page, 'ben', 'x'.repeat(2001));
  await waitForMessages(page, 'ben', 'event: rejected', 2);
  await sendOnWebSocket(page, 'ben', 'still here');
  await waitForMessages(page, 'ann', '"text":"still here"');
  await waitForMessages(page, 'ben', 'event: sent');
  const annAtEnd = await waitForMessages(page, 'ann', 'event: sent');
  assert.equal(annAtEnd.filter((data) => String(data).includes('event: rejected')).length, 0, 'the room never saw a rejection');
  await page.context().close();
}

test('two tabs chat over WebSocket through the bundled demo; the room bar says WebSocket and switches to SSE', async () => {
  const mux = await startMuxgate({ MUX_SHARDS: '2' });
  try {
    await webSocketChatScenario(mux.url, 'demo');
    await webSocketProtocolScenario(mux.url);
  } finally {
    await mux.stop();
  }
});

test('a page without a working WebSocket falls back to SSE, and the room bar says so', async () => {
  const mux = await startMuxgate({ MUX_SHARDS: '1' });
  try {
    const context = await browser.newContext();
    // A WebSocket that never opens, as behind a proxy that does not pass the upgrade on: the backend answers 404.
    await context.addInitScript(() => {
      const Real = globalThis.WebSocket;
      globalThis.WebSocket = class extends Real {
        constructor(url: string | URL) {
          super(String(url).replace('/events', '/nowhere'));
        }
      };
    });
    const page = await context.newPage();
    await page.goto(`${mux.url}/#fallback`);
    await page.fill('#nick', 'ada');
    await page.click('#join');
    await waitForTransport(page, 'sse');
    await page.waitForSelector('li[data-event="fallback"]', WAIT);
    await page.waitForSelector('li[data-event="welcome"]', WAIT);
    await sayAndWaitForSent(page, 'sent over fetch');
    await page.waitForSelector('li.message >> text=sent over fetch', WAIT);
    await context.close();
  } finally {
    await mux.stop();
  }
});

test('the chat over WebSocket through the PHP example behind php-fpm: chat, replies to the sender, leaving', () => withPhpChat(async (url) => {
  await webSocketChatScenario(url, 'php');
  await webSocketProtocolScenario(url);
  // A WebSocket that ends is told to the room by the PHP script, answering muxgate's close event.
  const ada = await joinRoom(url, 'ada', 'bye');
  const bob = await joinRoom(url, 'bob', 'bye');
  await waitForTransport(bob, 'websocket');
  await bob.context().close();
  await ada.waitForSelector('li[data-event="leave"] >> text=bob left', WAIT);
  await ada.context().close();
}));
