// Child process: the FastCGI app for the bench; every request becomes an empty held stream that names its token,
// and with `?channel=c` a text/event-stream subscribed to channel c; a WebSocket opening (MULTIPLEX_TRANSPORT=websocket)
// is accepted the same way, subscribed to channel c (docs/protocol.md §7.1).
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:net';
import { dropWritesAfterEnd } from '../examples/demo-chat/node-fastcgi-fix.ts';

interface FastcgiSocket {
  /** The raw FastCGI params of the request (node-fastcgi's Request). */
  params: Record<string, string | undefined>;
}

const fcgi = createRequire(import.meta.url)('node-fastcgi') as {
  createServer(responder: (req: IncomingMessage, res: ServerResponse) => void): Server;
};

const BODY = Buffer.from('--bb--\r\n'); // no parts: it only sets up the requester's stream
const socketPath = process.argv[2];

function answer(req: IncomingMessage, res: ServerResponse): void {
  const params = (req.socket as unknown as FastcgiSocket).params;
  const channel = new URLSearchParams(params.QUERY_STRING ?? '').get('channel');
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/x-multiplex; boundary=bb',
    'Content-Length': BODY.length,
    'Multiplex-Hold': 'stream',
    'X-Token': params.MULTIPLEX_TOKEN ?? '',
  };
  // A WebSocket's messages are the bare parts, as the peers' are: not SSE events (protocol §7.1).
  if (params.MULTIPLEX_TRANSPORT !== 'websocket') headers['Multiplex-Content-Type'] = channel === null ? 'text/plain' : 'text/event-stream';
  if (channel !== null) headers['Multiplex-Channel'] = channel;
  res.writeHead(200, headers);
  res.end(BODY);
}

const server = fcgi.createServer(answer);
server.on('connection', dropWritesAfterEnd);
server.listen(socketPath, () => process.send!('ready'));

process.once('disconnect', () => process.exit(0));
