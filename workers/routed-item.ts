// The one shape of a part on its way inside the process: from the router to another shard, to the sequencer, and
// from another node. Codecs encode it once at a wire (peer-codec.ts between shards, node-codec.ts between nodes).

export interface RoutedItem {
  /** The tokens it is for: on its way to a shard, that shard's; on its way to the sequencer, all the part's. */
  tokens: string[];
  /** The channels it is for ([]: a token part). */
  channels: string[];
  body: Buffer;
  isClose: boolean;
  /** `Multiplex-Binary`: a binary message on a WebSocket. */
  isBinary: boolean;
  /** Epoch milliseconds when the part was parsed, for the push-to-write latency. */
  parsedAt: number;
  /** The node-wide id of a numbered channel part (0: not numbered). */
  channelId: number;
  /** The receipt that waits for this item's acknowledgement (0: none), and the shard that holds it. */
  receiptId: number;
  origin: number;
  /** A channel part on its way to the sequencer, to be numbered and broadcast; else it is to be written. */
  isToSequence: boolean;
}

/** An item for tokens only, without any yet: the router adds each token of a part it sends there. */
export function tokenItem(part: PartBody, parsedAt: number, receiptId: number, origin: number): RoutedItem {
  const { body, isClose, isBinary } = part;
  return { tokens: [], channels: [], body, isClose, isBinary, parsedAt, channelId: 0, receiptId, origin, isToSequence: false };
}

/** What a copy of a part carries besides its addresses. */
export type PartBody = Pick<RoutedItem, 'body' | 'isClose' | 'isBinary'>;
