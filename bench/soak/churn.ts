// The churn: held streams opening and ending their three ways while token and channel parts are pushed to them,
// and the check that every live stream gets exactly the parts owed to it, in order.
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from './connection.ts';
import { Failures } from './failures.ts';
import { PushClient, part } from './push-client.ts';
import { Stream, type EndMode } from './stream.ts';

export const CHANNELS = 8;
/** How long a stream may take to get its token, and a closing stream its last parts. */
const OPEN_TIMEOUT_MS = 15_000;
const VERIFY_TIMEOUT_MS = 10_000;

export interface ChurnOptions {
  pushUrl: string;
  /** the public listener's port */
  port: number;
  /** held streams kept open at once */
  streams: number;
  /** each stream lives a random time in this range (ms) before it ends */
  lifetimeMs: [number, number];
}

export interface PartCounts {
  /** parts pushed (a part to n streams counts once) */
  pushed: number;
  /** deliveries a live, checked stream was owed */
  expected: number;
  received: number;
  lost: number;
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

export class Churn {
  readonly failures = new Failures();
  readonly tokenParts: PartCounts = { pushed: 0, expected: 0, received: 0, lost: 0 };
  readonly channelParts: PartCounts = { pushed: 0, expected: 0, received: 0, lost: 0 };
  readonly ended: Record<EndMode, number> = { drain: 0, abrupt: 0, server: 0 };
  /** token → how its stream ended, for the close events */
  readonly endedTokens = new Map<string, EndMode>();
  opened = 0;
  pushRequests = 0;
  #isStopping = false;
  #nextId = 1;
  /** Live streams that are not closing: the token pusher picks from these. */
  readonly #pool: Stream[] = [];
  /** Per channel: the seq the next channel part gets. */
  readonly #channelNext: number[] = Array(CHANNELS).fill(1);
  #channelInFlight: Promise<void> | null = null;
  readonly #pusher: PushClient;
  readonly #options: ChurnOptions;

  constructor(options: ChurnOptions) {
    this.#pusher = new PushClient(options.pushUrl);
    this.#options = options;
  }

  get cycles(): number {
    return this.ended.drain + this.ended.abrupt + this.ended.server;
  }

  get lost(): number {
    return this.tokenParts.lost + this.channelParts.lost;
  }

  /** Runs the slots, the token pusher and the channel pusher until `until` resolves, then ends every stream. */
  async run(until: Promise<void>): Promise<void> {
    const slots = Array.from({ length: this.#options.streams }, (_, slot) => this.#runSlot(slot, until));
    const pushers = [this.#runTokenPusher(), this.#runChannelPusher()];
    await until;
    this.#isStopping = true;
    await Promise.all([...slots, ...pushers]);
    this.#pusher.close();
  }

  /** Checks one line of a stream's body against what the stream is owed. */
  onLine(stream: Stream, line: string): void {
    if (line.startsWith('token=')) {
      if (stream.isLive) this.failures.add('a second token line', `stream ${stream.id}`);
      stream.token = line.slice(6);
      stream.isLive = true;
      stream.channelFrom = this.#channelNext[Number(stream.channel.slice(1))]!;
      // a channel part that came before the token must be older than what a live stream is owed
      if (stream.channelLast >= stream.channelFrom) this.failures.add('channel part from the future', `stream ${stream.id}`);
      this.#addToPool(stream);
    } else if (line.startsWith('t ')) {
      const seq = this.#ownEntry(line, `${stream.id}:`);
      this.tokenParts.received++;
      if (seq === 0) this.failures.add('token part for another stream', `stream ${stream.id} got ${JSON.stringify(line.slice(0, 80))}`);
      else if (seq <= stream.tokenReceived) this.failures.add('token part duplicated or reordered', `stream ${stream.id}: ${seq} after ${stream.tokenReceived}`);
      else {
        if (seq > stream.tokenReceived + 1) this.#lose(this.tokenParts, seq - stream.tokenReceived - 1, 'token parts skipped', `stream ${stream.id}: ${seq} after ${stream.tokenReceived}`);
        stream.tokenReceived = seq;
      }
    } else if (line.startsWith('c ')) {
      const seq = this.#ownEntry(line, `${stream.channel}:`);
      this.channelParts.received++;
      if (seq === 0) this.failures.add('channel part for another channel', `stream ${stream.id} (${stream.channel}) got ${JSON.stringify(line.slice(0, 80))}`);
      else if (stream.channelLast === 0) {
        if (stream.isLive && seq > stream.channelFrom) this.#lose(this.channelParts, seq - stream.channelFrom, 'channel parts skipped', `stream ${stream.id}: first ${seq}, owed from ${stream.channelFrom}`);
        stream.channelLast = seq;
      } else if (seq <= stream.channelLast) {
        this.failures.add('channel part duplicated or reordered', `stream ${stream.id}: ${seq} after ${stream.channelLast}`);
      } else {
        if (seq > stream.channelLast + 1) this.#lose(this.channelParts, seq - stream.channelLast - 1, 'channel parts skipped', `stream ${stream.id}: ${seq} after ${stream.channelLast}`);
        stream.channelLast = seq;
      }
    } else if (line === 'close') {
      if (stream.mode !== 'server') this.failures.add('close part for a stream not closed by a push', `stream ${stream.id}`);
      stream.hasClosePart = true;
    } else {
      this.failures.add('unexpected body line', JSON.stringify(line.slice(0, 80)));
    }
    stream.changed();
  }

  #lose(counts: PartCounts, n: number, kind: string, example: string): void {
    counts.lost += n;
    this.failures.add(kind, example);
  }

  /** The seq in `t 3:5 9:1` (or `c c2:40 c5:7`) that belongs to this stream, or 0. */
  #ownEntry(line: string, key: string): number {
    for (const entry of line.slice(2).split(' ')) if (entry.startsWith(key)) return Number(entry.slice(key.length));
    return 0;
  }

  #addToPool(stream: Stream): void {
    stream.poolIndex = this.#pool.length;
    this.#pool.push(stream);
  }

  #removeFromPool(stream: Stream): void {
    const at = stream.poolIndex;
    if (at < 0) return;
    const last = this.#pool.pop()!;
    if (last !== stream) {
      this.#pool[at] = last;
      last.poolIndex = at;
    }
    stream.poolIndex = -1;
  }

  async #runSlot(slot: number, until: Promise<void>): Promise<void> {
    // spread the first requests over a second rather than 300 at once
    await sleep((slot * 1000) / this.#options.streams);
    let connection: Connection | null = null;
    while (!this.#isStopping) {
      const roll = Math.random();
      const mode: EndMode = roll < 0.4 ? 'drain' : roll < 0.7 ? 'abrupt' : 'server';
      const stream = new Stream(this.#nextId++, `c${randomInt(0, CHANNELS - 1)}`, mode);
      if (connection === null || connection.isClosed) {
        try {
          connection = await Connection.open(this.#options.port, this);
        } catch (error) {
          this.failures.add('connect failed', (error as Error).message);
          await sleep(100);
          continue;
        }
      }
      connection.request(stream);
      if (!(await stream.waitFor(() => stream.isLive || stream.hasEnded, OPEN_TIMEOUT_MS)) || !stream.isLive) {
        this.failures.add('stream did not open', `stream ${stream.id}: ${stream.hasEnded ? 'ended' : 'no token'} within ${OPEN_TIMEOUT_MS} ms`);
        stream.isClosing = true;
        connection.socket.destroy();
        connection = null;
        continue;
      }
      this.opened++;
      await Promise.race([sleep(randomInt(...this.#options.lifetimeMs)), until]);
      connection = await this.#finish(stream, connection);
    }
    connection?.socket.end();
  }

  /** Ends a stream its way; checks what it was owed. Returns the connection when it can be used again. */
  async #finish(stream: Stream, connection: Connection): Promise<Connection | null> {
    stream.isClosing = true;
    this.#removeFromPool(stream);
    this.ended[stream.mode]++;
    this.endedTokens.set(stream.token, stream.mode);
    if (stream.mode === 'abrupt') {
      stream.isDestroyed = true;
      connection.socket.destroy();
      return null;
    }
    // What it is owed: every token part addressed to it, and every channel part pushed since it went live.
    const channelTo = this.#channelNext[Number(stream.channel.slice(1))]! - 1;
    await stream.waitFor(() => stream.pendingPushes === 0, VERIFY_TIMEOUT_MS);
    await this.#channelInFlight;
    if (stream.mode === 'server') {
      try {
        const answer = await this.#pusher.push(part(`Multiplex-Token: ${stream.token}\r\nMultiplex-Close: true\r\n`, 'close\n'));
        this.pushRequests++;
        if (answer.status !== 200 || answer.json.deliveries !== 1) this.failures.add('close push not delivered', `stream ${stream.id}: ${answer.status} ${JSON.stringify(answer.json)}`);
      } catch (error) {
        this.failures.add('push failed', (error as Error).message);
      }
      if (!(await stream.waitFor(() => stream.hasEnded, VERIFY_TIMEOUT_MS))) this.failures.add('closed stream did not end', `stream ${stream.id}`);
    }
    await stream.waitFor(() => stream.tokenReceived >= stream.tokenSent && (channelTo < stream.channelFrom || stream.channelLast >= channelTo), VERIFY_TIMEOUT_MS);
    this.tokenParts.expected += stream.tokenSent;
    if (stream.tokenReceived < stream.tokenSent) {
      this.#lose(this.tokenParts, stream.tokenSent - stream.tokenReceived, 'token parts never received', `stream ${stream.id}: ${stream.tokenReceived} of ${stream.tokenSent}`);
    }
    if (channelTo >= stream.channelFrom) {
      this.channelParts.expected += channelTo - stream.channelFrom + 1;
      const have = Math.max(stream.channelLast, stream.channelFrom - 1);
      if (have < channelTo) this.#lose(this.channelParts, channelTo - have, 'channel parts never received', `stream ${stream.id}: up to ${stream.channelLast} of ${stream.channelFrom}..${channelTo}`);
    }
    // a stream ended by a push leaves a reusable keep-alive connection: use it for the next stream half the time
    if (stream.mode === 'server' && stream.hasEnded && !connection.isClosed && Math.random() < 0.5) return connection;
    connection.socket.end();
    return null;
  }

  /** Pushes 1-8 parts per request, each to 1-3 live streams (and now and then a dead token), one request at a time. */
  async #runTokenPusher(): Promise<void> {
    while (!this.#isStopping) {
      if (this.#pool.length === 0) {
        await sleep(20);
        continue;
      }
      const targets: Stream[][] = [];
      let body = '';
      let bogus = '';
      for (let p = randomInt(1, 8); p > 0; p--) {
        const streams = new Set<Stream>();
        for (let n = randomInt(1, 3); n > 0; n--) streams.add(this.#pool[randomInt(0, this.#pool.length - 1)]!);
        const list = [...streams];
        const tokens = list.map((s) => s.token);
        if (bogus === '' && Math.random() < 0.05) {
          bogus = `soak.0.${'A'.repeat(22)}`;
          tokens.push(bogus);
        }
        body += part(`Multiplex-Token: ${tokens.join(', ')}\r\n`, `t ${list.map((s) => `${s.id}:${++s.tokenSent}`).join(' ')}\n`);
        for (const s of list) s.pendingPushes++;
        targets.push(list);
        this.tokenParts.pushed++;
      }
      try {
        const answer = await this.#pusher.push(body);
        this.pushRequests++;
        const gone = new Set(answer.json.gone ?? []);
        const named = targets.reduce((sum, list) => sum + list.length, 0);
        if (answer.status !== 200) this.failures.add('push refused', `${answer.status} ${JSON.stringify(answer.json).slice(0, 200)}`);
        if (bogus !== '' && !gone.has(bogus)) this.failures.add('a dead token was not reported gone', JSON.stringify(answer.json).slice(0, 200));
        let goneLive = 0;
        for (const list of targets) {
          for (const s of list) {
            if (gone.has(s.token) && !s.isDestroyed) {
              goneLive++;
              this.failures.add('live stream reported gone', `stream ${s.id} (${s.mode})`);
            }
          }
        }
        // every (part, stream) pair counts as a delivery, but for streams the client dropped meanwhile
        const sure = targets.reduce((sum, list) => sum + list.filter((s) => !s.isDestroyed).length, 0);
        const deliveries = answer.json.deliveries ?? -1;
        if (goneLive === 0 && (deliveries < sure || deliveries > named)) {
          this.failures.add('deliveries miscounted', `${deliveries} for ${named} pairs (${sure} to streams still open): ${JSON.stringify(answer.json).slice(0, 200)}`);
        }
      } catch (error) {
        this.failures.add('push failed', (error as Error).message);
      }
      for (const list of targets) {
        for (const s of list) {
          s.pendingPushes--;
          s.changed();
        }
      }
      await sleep(10);
    }
  }

  /** Pushes 1-3 channel parts per request, each to 1-2 of the channels, one request at a time. */
  async #runChannelPusher(): Promise<void> {
    while (!this.#isStopping) {
      let body = '';
      for (let p = randomInt(1, 3); p > 0; p--) {
        const channels = new Set<number>();
        for (let n = randomInt(1, 2); n > 0; n--) channels.add(randomInt(0, CHANNELS - 1));
        const list = [...channels];
        body += part(`Multiplex-Channel: ${list.map((c) => `c${c}`).join(', ')}\r\n`, `c ${list.map((c) => `c${c}:${this.#channelNext[c]!++}`).join(' ')}\n`);
        this.channelParts.pushed++;
      }
      const request = this.#pusher.push(body).then((answer) => {
        this.pushRequests++;
        if (answer.status !== 200) this.failures.add('push refused', `${answer.status} ${JSON.stringify(answer.json).slice(0, 200)}`);
      }, (error: Error) => this.failures.add('push failed', error.message));
      this.#channelInFlight = request;
      await request;
      this.#channelInFlight = null;
      await sleep(25);
    }
  }
}
