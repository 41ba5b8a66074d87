// Child process: Pushpin's origin. Every GET /sub/<channel> is answered as a GRIP stream held on that channel.
import http from 'node:http';

const server = http.createServer((req, res) => {
  const channel = /^\/sub\/([A-Za-z0-9_.:@-]{1,128})$/.exec(req.url ?? '')?.[1];
  if (channel === undefined) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Grip-Hold': 'stream', 'Grip-Channel': channel });
  res.end();
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.once('disconnect', () => process.exit(0));
