// The messages between the shards of one node, and the codec of their part batches: RoutedItems inside the process,
// encoded once per batch for the port (numbers at named offsets, names in one array, bodies in one transferred buffer).
import type { LoggedPart, Replay } from './channel-log.ts';
import type { RoutedItem } from './routed-item.ts';

/** Items for one shard, as they cross the port. */
export interface PartBatch {
  type: 'parts';
  /** ITEM_FIELDS numbers per item, at the offsets below. */
  meta: Float64Array;
  /** Per item, its tokens, then its channels. */
  names: string[];
  /** The items' bodies, one after another. */
  bytes: ArrayBuffer;
  /** Acknowledgements for the destination's receipts that left in the same turn: one message instead of two. */
  acks?: Ack[];
}

// An item's numbers in `meta`, from i * ITEM_FIELDS.
const BODY_END = 0;
const FLAGS = 1;
const PARSED_AT = 2;
const CHANNEL_ID = 3;
const RECEIPT_ID = 4;
const ORIGIN = 5;
const TOKEN_COUNT = 6;
const CHANNEL_COUNT = 7;
const ITEM_FIELDS = 8;

const FLAG_CLOSE = 1;
const FLAG_TO_SEQUENCE = 2;
const FLAG_BINARY = 4;

/** What an item achieved on a shard, for the receipt waiting on the shard that sent it. */
export interface Ack {
  receiptId: number;
  deliveries: number;
  gone: string[];
  /** Channel → the streams that have the part (null: not a channel part). */
  channels: Record<string, number> | null;
  /** Tokens handed to other nodes. */
  forwarded: number;
}

/** Acknowledgements for one shard's receipts, in a turn that sends it no parts. */
export interface AckBatch {
  type: 'acks';
  acks: Ack[];
}

/** To the sequencer: the channel parts numbered above `since`, for a resuming stream. */
export interface ReplayRequest {
  type: 'replay';
  from: number;
  id: number;
  channels: string[];
  since: number;
}

export interface ReplayAnswer {
  type: 'replayed';
  id: number;
  parts: LoggedPart[];
  isComplete: boolean;
}

/** To the sequencer: this shard's streams now do (or no longer) subscribe to a channel (multi-node only). */
export interface InterestMessage {
  type: 'interest';
  from: number;
  channel: string;
  isInterested: boolean;
}

export type PeerMessage = PartBatch | AckBatch | ReplayRequest | ReplayAnswer | InterestMessage;

/** One batch for the port, and the buffers it transfers rather than copies. */
export function encodePartBatch(items: readonly RoutedItem[]): { batch: PartBatch; transfer: ArrayBuffer[] } {
  let size = 0;
  for (const item of items) size += item.body.length;
  const bytes = new ArrayBuffer(size);
  const packed = new Uint8Array(bytes);
  const meta = new Float64Array(items.length * ITEM_FIELDS);
  const names: string[] = [];
  let end = 0;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    packed.set(item.body, end);
    end += item.body.length;
    const at = i * ITEM_FIELDS;
    meta[at + BODY_END] = end;
    meta[at + FLAGS] = (item.isClose ? FLAG_CLOSE : 0) | (item.isToSequence ? FLAG_TO_SEQUENCE : 0) | (item.isBinary ? FLAG_BINARY : 0);
    meta[at + PARSED_AT] = item.parsedAt;
    meta[at + CHANNEL_ID] = item.channelId;
    meta[at + RECEIPT_ID] = item.receiptId;
    meta[at + ORIGIN] = item.origin;
    meta[at + TOKEN_COUNT] = item.tokens.length;
    meta[at + CHANNEL_COUNT] = item.channels.length;
    for (const token of item.tokens) names.push(token);
    for (const channel of item.channels) names.push(channel);
  }
  return { batch: { type: 'parts', meta, names, bytes }, transfer: [bytes, meta.buffer] };
}

/** The batch's items; their bodies are views of its one buffer. */
export function decodePartBatch(batch: PartBatch): RoutedItem[] {
  const { meta, names } = batch;
  const bytes = Buffer.from(batch.bytes);
  const items: RoutedItem[] = [];
  let start = 0;
  let name = 0;
  for (let at = 0; at < meta.length; at += ITEM_FIELDS) {
    const end = meta[at + BODY_END];
    const flags = meta[at + FLAGS];
    const tokensEnd = name + meta[at + TOKEN_COUNT];
    const channelsEnd = tokensEnd + meta[at + CHANNEL_COUNT];
    items.push({
      tokens: names.slice(name, tokensEnd),
      channels: names.slice(tokensEnd, channelsEnd),
      body: bytes.subarray(start, end),
      isClose: (flags & FLAG_CLOSE) !== 0,
      isBinary: (flags & FLAG_BINARY) !== 0,
      parsedAt: meta[at + PARSED_AT],
      channelId: meta[at + CHANNEL_ID],
      receiptId: meta[at + RECEIPT_ID],
      origin: meta[at + ORIGIN],
      isToSequence: (flags & FLAG_TO_SEQUENCE) !== 0,
    });
    start = end;
    name = channelsEnd;
  }
  return items;
}

/** The replayed parts' bodies arrive as plain Uint8Arrays: Buffers again, without a copy. */
export function decodeReplayAnswer(answer: ReplayAnswer): Replay {
  const parts = answer.parts.map((part) => ({ ...part, body: Buffer.from(part.body.buffer, part.body.byteOffset, part.body.length) }));
  return { parts, isComplete: answer.isComplete };
}
