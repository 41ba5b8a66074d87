// The messages between nodes (through Redis): RoutedItems inside the process, on the wire
// [u32 header length][header JSON][bodies], one JSON per message, not per part. Redis histories keep these frames:
// a field added to an item goes at its end, so that entries stored before it (and nodes from before it) still read.
import type { RoutedItem } from './routed-item.ts';

/** What a channel part carries for the node that sent it, which delivers it to its own shards when it comes back. */
export interface ChannelEcho {
  receiptId: number;
  /** The shard holding the receipt. */
  origin: number;
  /** The part's tokens on each shard of the sending node. */
  tokensByShard: string[][];
  /** The part's tokens that named no live route: gone, for the receipt. */
  invalid: string[];
  /** The part's tokens handed to other nodes. */
  forwarded: number;
}

/** One item in a header: the tokens of the receiving shard, the channels, and the numbers of the part. */
type HeaderItem = [tokens: string[], channels: string[], bodyLength: number, isClose: 0 | 1, parsedAt: number, isBinary?: 0 | 1];

interface Header {
  node: string;
  items: HeaderItem[];
  /** Only on a channel part's message, which holds that one part. */
  echo?: ChannelEcho;
}

export interface NodeMessage {
  /** The node that sent it. */
  node: string;
  items: RoutedItem[];
  echo: ChannelEcho | null;
}

const LENGTH_BYTES = 4;

export function encodeNodeMessage(node: string, items: readonly RoutedItem[], echo: ChannelEcho | null): Buffer {
  const header: Header = {
    node, items: items.map((item) => [item.tokens, item.channels, item.body.length, item.isClose ? 1 : 0, item.parsedAt, item.isBinary ? 1 : 0]),
  };
  if (echo !== null) header.echo = echo;
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.allocUnsafe(LENGTH_BYTES);
  length.writeUInt32BE(json.length);
  return Buffer.concat([length, json, ...items.map((item) => item.body)]);
}

/** The message's items, numbered `channelId` (0: not a channel part); their bodies are views of the frame. Throws when unreadable. */
export function decodeNodeMessage(frame: Buffer, channelId: number): NodeMessage {
  const length = frame.readUInt32BE(0);
  const header = JSON.parse(frame.toString('utf8', LENGTH_BYTES, LENGTH_BYTES + length)) as Header;
  let at = LENGTH_BYTES + length;
  const items: RoutedItem[] = [];
  for (const [tokens, channels, bodyLength, isClose, parsedAt, isBinary] of header.items) {
    const body = frame.subarray(at, at + bodyLength);
    items.push({ tokens, channels, body, isClose: isClose === 1, isBinary: isBinary === 1, parsedAt, channelId, receiptId: 0, origin: 0, isToSequence: false });
    at += bodyLength;
  }
  return { node: header.node, items, echo: header.echo ?? null };
}
