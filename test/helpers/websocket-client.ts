// A `ws` client for the tests: opened on a test/php/websocket.php URL, it records every message and its close, and
// knows its token from the welcome message.
import { WebSocket, type ClientOptions } from 'ws';
import { waitUntil } from './wait.ts';

export interface ReceivedMessage {
  text: string;
  isBinary: boolean;
  data: Buffer;
}

export class TestWebSocket {
  readonly ws: WebSocket;
  readonly messages: ReceivedMessage[] = [];
  /** The close code and reason once the connection has closed; null before. */
  closed: { code: number; reason: string } | null = null;
  token = '';

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => this.messages.push({ text: data.toString('utf8'), isBinary, data }));
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
    });
    ws.on('error', () => {});
  }

  /** Opens a WebSocket and waits for the welcome message that tells its token. */
  static async open(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<TestWebSocket> {
    const { protocols, ...clientOptions } = options;
    const client = new TestWebSocket(new WebSocket(url, protocols, clientOptions));
    await new Promise<void>((resolve, reject) => {
      client.ws.once('open', () => resolve());
      client.ws.once('error', reject);
      client.ws.once('unexpected-response', (_req, res) => reject(new Error(`${url}: the opening was answered ${res.statusCode}`)));
    });
    const welcome = await client.waitForMessage((message) => message.text.startsWith('welcome '));
    client.token = welcome.text.slice('welcome '.length);
    return client;
  }

  /** The first message so far or to come that satisfies the predicate. */
  waitForMessage(predicate: (message: ReceivedMessage) => boolean, timeoutMs = 10_000): Promise<ReceivedMessage> {
    return waitUntil(() => this.messages.find(predicate), timeoutMs, () => `a matching message (got: ${this.messages.slice(-5).map((m) => JSON.stringify(m.text.slice(0, 60))).join(', ')})`);
  }

  /** The texts received so far. */
  texts(): string[] {
    return this.messages.map((message) => message.text);
  }

  waitForClose(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return waitUntil(() => this.closed, timeoutMs, 'the WebSocket to close');
  }

  close(): void {
    this.ws.terminate();
  }
}

/** The ws:// form of an http:// base URL, with a path. */
export function wsUrl(httpUrl: string, path: string): string {
  return httpUrl.replace(/^http/, 'ws') + path;
}
