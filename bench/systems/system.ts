// What the scenarios need from a system under test: where to subscribe, how to publish, which processes are the server.

/** Where a message goes: every subscriber of a channel, or one muxgate token. */
export type Address = { channel: string } | { token: string };

export interface PublishRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * Builds the publish request for one message; `marker` is the `@T=<µs>;` the subscribers look for; `isWebSocket`:
 * the subscribers are WebSockets (the message is the marker alone, without SSE framing).
 */
export type PublishFormat = (address: Address, marker: string, isWebSocket: boolean) => PublishRequest;

export type SystemKind = 'muxgate' | 'nchan' | 'pushpin';

export interface RunningSystem {
  /** e.g. "muxgate, 2 shards" */
  label: string;
  kind: SystemKind;
  /** The port subscribers connect to, on 127.0.0.1. */
  port: number;
  /** Several nodes: the subscribers are spread evenly over these ports (the first is `port`). */
  ports?: number[];
  /** The raw HTTP/1.1 request a subscriber sends; `{channel}` is replaced by its channel. */
  subscribeRequest: string;
  /** The raw RFC 6455 opening a WebSocket subscriber sends (`webSocketOpening`); `{channel}` as above. */
  webSocketRequest: string;
  /** Over TLS and HTTP/2 (the tls scenario): the path an h2 subscriber GETs; `{channel}` as above. */
  http2Path?: string;
  /** muxgate only: the request of a stream addressed by its token (named in the X-Token response header). */
  tokenStreamRequest?: string;
  /** Base URL publishes go to (keep-alive). */
  publishUrl: string;
  /** Every process of the server (for CPU and RSS), not its application backend. */
  serverPids(): number[];
  /** muxgate: the processes of its FastCGI backend (for CPU while connecting). */
  backendPids?(): number[];
  /** muxgate only: each shard's event-loop delay p99 in ms since the last call (reading it starts a new interval). */
  loopDelaysMs?(): Promise<number[]>;
  /** Warnings the server logged, for the notes. */
  warnings(): string[];
  stop(): Promise<void>;
}

/** SSE framing of a marker, for the systems that write the published bytes verbatim. */
export function sseEvent(marker: string): string {
  return `data: ${marker}\n\n`;
}
