// Child process: the FastCGI app for the bench; every request becomes an empty held stream that names its token,
// and with `?channel=c` a text/event-stream subscribed to channel c; a WebSocket opening (MULTIPLEX_TRANSPORT=websocket)
// is accepted the same way, subscribed to channel c (docs/protocol.md §7.1).
// A FastCGI responder written on muxgate's record codec, as a lean app in a compiled language would be: it reads each
// request whole (params, then stdin to its end), answers it, honours FCGI_KEEP_CONN, and nothing more. node-fastcgi,
// which it replaces, built a node:http request and response per request and spent as much CPU per subscribe as
// muxgate's shard (bench/RESULTS.md, what the profiles showed): the storm rows then measured that framework.
import net from 'node:net';
import {
  FCGI_ABORT_REQUEST, FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_KEEP_CONN, FCGI_PARAMS, FCGI_REQUEST_COMPLETE, FCGI_STDIN, FCGI_STDOUT,
  RecordDecoder, beginRequestFlags, decodeParams, encodeRecords, endRequestBody, type RecordSink,
} from '../src/protocol/fastcgi-records.ts';

const EMPTY = Buffer.alloc(0);
const BODY = '--bb--\r\n'; // no parts: it only sets up the requester's stream
const END_BODY = endRequestBody(0, FCGI_REQUEST_COMPLETE);
const socketPath = process.argv[2];

/** The CGI head and body that answer a request. */
function answer(params: Map<string, string>): string {
  const channel = new URLSearchParams(params.get('QUERY_STRING') ?? '').get('channel');
  let head = `Content-Type: application/x-multiplex; boundary=bb\r\nContent-Length: ${BODY.length}\r\nMultiplex-Hold: stream\r\n` +
    `X-Token: ${params.get('MULTIPLEX_TOKEN') ?? ''}\r\n`;
  // A WebSocket's messages are the bare parts, as the peers' are: not SSE events (protocol §7.1).
  if (params.get('MULTIPLEX_TRANSPORT') !== 'websocket') head += `Multiplex-Content-Type: ${channel === null ? 'text/plain' : 'text/event-stream'}\r\n`;
  if (channel !== null) head += `Multiplex-Channel: ${channel}\r\n`;
  return `${head}\r\n${BODY}`;
}

/** One connection: its requests in turn (muxgate sends one at a time on a connection). */
class FastcgiConnection implements RecordSink {
  readonly #socket: net.Socket;
  readonly #decoder = new RecordDecoder(this);
  #requestId = 0;
  #keepsConnection = false;
  #params: Buffer[] = [];
  #decoded: Map<string, string> | null = null;

  constructor(socket: net.Socket) {
    this.#socket = socket;
  }

  push(chunk: Buffer): void {
    this.#decoder.push(chunk);
  }

  onRecord(type: number, requestId: number, content: Buffer): void {
    if (type === FCGI_BEGIN_REQUEST) {
      this.#requestId = requestId;
      this.#keepsConnection = (beginRequestFlags(content) & FCGI_KEEP_CONN) !== 0;
      this.#params = [];
      this.#decoded = null;
      return;
    }
    if (requestId !== this.#requestId || this.#requestId === 0) return;
    if (type === FCGI_PARAMS) {
      if (content.length > 0) this.#params.push(content);
      else this.#decoded = decodeParams(this.#params.length === 1 ? this.#params[0]! : Buffer.concat(this.#params));
    } else if (type === FCGI_STDIN && content.length === 0 && this.#decoded !== null) {
      this.#end(answer(this.#decoded));
    } else if (type === FCGI_ABORT_REQUEST) {
      this.#end(null);
    }
  }

  onError(): void {
    this.#socket.destroy();
  }

  /** The answer (stdout, its end and the end of the request) in one write; the connection closes unless kept. */
  #end(output: string | null): void {
    const requestId = this.#requestId;
    this.#requestId = 0;
    const records = [
      ...(output === null ? [] : [encodeRecords(FCGI_STDOUT, requestId, Buffer.from(output, 'latin1'))]),
      encodeRecords(FCGI_STDOUT, requestId, EMPTY), encodeRecords(FCGI_END_REQUEST, requestId, END_BODY),
    ];
    const bytes = Buffer.concat(records);
    if (this.#keepsConnection) this.#socket.write(bytes);
    else this.#socket.end(bytes);
  }
}

function onData(this: net.Socket & { fastcgi: FastcgiConnection }, chunk: Buffer): void {
  this.fastcgi.push(chunk);
}

function onError(this: net.Socket): void {
  this.destroy();
}

const server = net.createServer((socket) => {
  (socket as net.Socket & { fastcgi: FastcgiConnection }).fastcgi = new FastcgiConnection(socket);
  socket.on('data', onData);
  socket.on('error', onError);
});
server.listen(socketPath, () => process.send!('ready'));

process.once('disconnect', () => process.exit(0));
