// The churn's POST /push client: multiplex bodies over a few keep-alive connections, the answer's JSON read back.
import http from 'node:http';

const BOUNDARY = 'soak-7f3a';

export interface PushAnswer {
  status: number;
  json: { parts?: number; deliveries?: number; gone?: string[]; channels?: Record<string, number> };
}

/** One part of a push body: its header lines (each ending in CRLF) and its body. */
export function part(headers: string, body: string): string {
  return `--${BOUNDARY}\r\n${headers}\r\n${body}\r\n`;
}

export class PushClient {
  readonly #url: URL;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

  constructor(pushUrl: string) {
    this.#url = new URL(pushUrl);
  }

  /** Pushes the parts (made by `part`), closed by the final delimiter. */
  push(parts: string): Promise<PushAnswer> {
    const body = `${parts}--${BOUNDARY}--\r\n`;
    return new Promise((resolve, reject) => {
      const request = http.request(this.#url, {
        method: 'POST',
        agent: this.#agent,
        headers: { 'Content-Type': `application/x-multiplex; boundary=${BOUNDARY}`, 'Content-Length': Buffer.byteLength(body) },
      }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => { text += chunk; });
        response.on('end', () => {
          try {
            resolve({ status: response.statusCode ?? 0, json: JSON.parse(text) });
          } catch {
            resolve({ status: response.statusCode ?? 0, json: {} });
          }
        });
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}
