// Child process: the FastCGI app for the bench; every request becomes an empty held stream that names its token,
// and with `?channel=c` a text/event-stream subscribed to channel c.
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:net';

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
    'Multiplex-Content-Type': channel === null ? 'text/plain' : 'text/event-stream',
    'X-Token': params.MULTIPLEX_TOKEN ?? '',
  };
  if (channel !== null) headers['Multiplex-Channel'] = channel;
  res.writeHead(200, headers);
  res.end(BODY);
}

const server = fcgi.createServer((req, res) => {
  // Answer after the (empty) body, as php-fpm does: answering and closing before muxgate has sent
  // its end of stdin loses the response in fastcgi-client now and then (a 502 for the client).
  req.resume();
  req.once('end', () => answer(req, res));
});
// node-fastcgi writes a record after ending each connection (ERR_STREAM_WRITE_AFTER_END on Node 26); without
// a listener it destroys the socket, dropping a response still queued on it under load.
server.on('clientError', () => {});
server.listen(socketPath, () => process.send!('ready'));

process.once('disconnect', () => process.exit(0));
