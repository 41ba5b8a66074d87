// The contract between the main thread and its shards: what starts a shard, and the messages on its control port.
import type { MessagePort } from 'node:worker_threads';
import type { Socket } from 'node:net';
import type { BackendAddress, Config } from './config.ts';
import type { TlsPair } from './tls-pair.ts';

/** Which listener accepted a connection: the shard serves it with that listener's HTTP server (h2c: MUX_H2C_LISTEN). */
export type ListenerKind = 'public' | 'push' | 'h2c';

/** What the main thread gives a shard task (piscina's task argument). */
export interface ShardInit {
  index: number;
  config: Config;
  backend: BackendAddress;
  control: MessagePort;
  /** Open connections per shard (Int32Array), read by the acceptor to pick the least loaded one. */
  connectionCounts: SharedArrayBuffer;
  /** The certificate and key the public listener serves (the current pair, for a restarted shard); null: plain HTTP. */
  tls: TlsPair | null;
}

/** Main thread → shard. */
export type ControlMessage =
  | { type: 'socket'; socket: Socket; listener: ListenerKind }
  | { type: 'peer'; shard: number; port: MessagePort | null }
  | { type: 'metrics'; id: number }
  /** A reloaded certificate and key (SIGHUP): handshakes from now on use them; connections made keep theirs. */
  | { type: 'tls'; pair: TlsPair }
  | { type: 'shutdown' }
  /** Blocks the shard's thread, as a runaway computation would: for tests of the supervisor and metrics. */
  | { type: 'stall'; ms: number };

/** Shard → main thread. */
export type ShardReport =
  | { type: 'ready'; shard: number; threadId: number }
  | { type: 'metrics'; id: number; metrics: object[] };
