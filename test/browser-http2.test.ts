// The demo chat over HTTPS and HTTP/2 in real Chromium, trusting the test's certificate by its public key: ten tabs
// of one browser share one HTTP/2 connection (where HTTP/1.1 would hold six and leave the rest waiting), all receive a
// message one of them sends, and a reload resumes. The WebSocket transport, which Chromium opens over HTTP/1.1 beside it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startMuxgate, type Muxgate } from './helpers/muxgate.ts';
import { TestCa } from './helpers/tls-certs.ts';
import { waitUntil } from './helpers/wait.ts';

const WAIT = { timeout: 15_000 };
const TABS = 10;
const ca = new TestCa();
const leaf = ca.leaf('browser-h2', '2C01');
let browser: Browser;
let mux: Muxgate;

/** The SHA-256 of the certificate's SubjectPublicKeyInfo, base64: what --ignore-certificate-errors-spki-list takes. */
function spkiHash(certFile: string): string {
  const spki = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

before(async () => {
  mux = await startMuxgate({ MUX_SHARDS: '1', MUX_TLS_CERT: leaf.certFile, MUX_TLS_KEY: leaf.keyFile });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spkiHash(leaf.certFile)}`],
  });
});

after(async () => {
  await browser?.close();
  await mux?.stop();
  ca.remove();
});

/** The sum of a metric's samples whose labels include this one (`protocol="h2"`), over every shard. */
async function sampleSum(name: string, label: string): Promise<number> {
  const text = await (await fetch(mux.metricsUrl)).text();
  let sum = 0;
  for (const match of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    if (match[1].split(',').includes(label)) sum += Number(match[2]);
  }
  return sum;
}

async function connectionsByProtocol(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const protocol of ['h2', 'http1', 'http1_tls', 'tls_handshake']) {
    counts[protocol] = await sampleSum('muxgate_connections_by_protocol', `protocol="${protocol}"`);
  }
  return counts;
}

/** A tab of the browser `context`, joined to the room as `nick` over the transport. */
async function openTab(context: BrowserContext, nick: string, room: string, transport: 'sse' | 'websocket'): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${mux.url}/?transport=${transport}#${room}`);
  await page.fill('#nick', nick);
  await page.click('#join');
  await page.waitForSelector(`#transport[data-transport="${transport}"]`, WAIT);
  await page.waitForSelector('#status[data-state="connected"]', WAIT);
  await page.waitForSelector('li[data-event="welcome"]', WAIT);
  return page;
}

async function sayAndWaitForSent(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#send');
  await page.waitForSelector('#text:placeholder-shown', WAIT);
}

function messages(page: Page): Promise<string[]> {
  return page.$$eval('#messages li.message', (items) => items.map((item) => item.textContent ?? ''));
}

/** The protocol the page's navigation went over, as the browser reports it. */
function navigationProtocol(page: Page): Promise<string> {
  return page.evaluate(() => (performance.getEntriesByType('navigation' as 'mark')[0] as unknown as { nextHopProtocol: string }).nextHopProtocol);
}

test(`${TABS} tabs of one browser chat over SSE on ONE HTTP/2 connection; all receive; a reload resumes`, async () => {
  const context = await browser.newContext();
  try {
    const tabs: Page[] = [];
    // All at once: over HTTP/1.1 the seventh EventSource would wait for a free connection.
    for (let i = 0; i < TABS; i++) tabs.push(await openTab(context, `tab${i}`, 'tabs', 'sse'));
    for (const tab of tabs) assert.equal(await navigationProtocol(tab), 'h2');

    await sayAndWaitForSent(tabs[3], 'hello from tab 3');
    await Promise.all(tabs.map((tab) => tab.waitForSelector('li.message >> text=hello from tab 3', WAIT)));

    const held = await waitUntil(async () => {
      const value = await sampleSum('muxgate_held_streams', 'shard="0"');
      return value >= TABS ? value : 0;
    }, 10_000, `${TABS} held streams`);
    assert.ok(held >= TABS, `${held} held streams`);
    assert.ok(await sampleSum('muxgate_http2_streams', 'shard="0"') >= TABS, `at least ${TABS} HTTP/2 streams open`);
    assert.deepEqual(await connectionsByProtocol(), { h2: 1, http1: 0, http1_tls: 0, tls_handshake: 0 },
      `the ${TABS} tabs' pages, EventSources and messages went over one HTTP/2 connection`);

    // A reload resumes: what tab 0 says while tab 1 is gone arrives once it is back, once.
    const reloaded = tabs[1].reload();
    await sayAndWaitForSent(tabs[0], 'said during the reload');
    await reloaded;
    await tabs[1].waitForSelector('#status[data-state="connected"]', WAIT);
    await tabs[1].waitForSelector('li.message >> text=said during the reload', WAIT);
    await sayAndWaitForSent(tabs[0], 'after the reload');
    await Promise.all(tabs.map((tab) => tab.waitForSelector('li.message >> text=after the reload', WAIT)));
    const seen = await messages(tabs[1]);
    assert.equal(seen.filter((m) => m.includes('said during the reload')).length, 1, seen.join(' | '));
    assert.equal((await connectionsByProtocol()).h2, 1, 'the reload reused the connection');
  } finally {
    await context.close();
  }
});

test('over WebSocket, Chromium opens each WebSocket on an HTTP/1.1 connection of its own beside the HTTP/2 one (no RFC 8441)', async () => {
  const context = await browser.newContext();
  try {
    const ada = await openTab(context, 'ada', 'sockets', 'websocket');
    const bob = await openTab(context, 'bob', 'sockets', 'websocket');
    assert.equal(await navigationProtocol(ada), 'h2');
    await sayAndWaitForSent(ada, 'hello over a WebSocket');
    await bob.waitForSelector('li.message >> text=hello over a WebSocket', WAIT);
    const counts = await connectionsByProtocol();
    assert.equal(counts.h2, 1, JSON.stringify(counts));
    assert.equal(counts.http1_tls, 2, `one HTTP/1.1 connection per WebSocket: ${JSON.stringify(counts)}`);
  } finally {
    await context.close();
  }
});
