// Child process: Pushpin's origin. Every GET /sub/<channel> is answered as a GRIP stream held on that channel; every
// WebSocket on /ws/<channel> reaches it as WebSocket-over-HTTP requests (POST, application/websocket-events), and its
// answer to the OPEN event accepts the WebSocket and subscribes it to the channel (a GRIP control message).
import http from 'node:http';

const CHANNEL = /^\/(sub|ws)\/([A-Za-z0-9_.:@-]{1,128})$/;
const EVENTS = 'application/websocket-events';

/** `TEXT <hex length>\r\n<content>\r\n`, the WebSocket-over-HTTP framing of a text message. */
function textEvent(content: string): string {
  return `TEXT ${Buffer.byteLength(content).toString(16)}\r\n${content}\r\n`;
}

/** The answer to a batch of WebSocket events: OPEN accepted and subscribed, CLOSE acknowledged, the rest ignored. */
function answerEvents(channel: string, body: string): string {
  let answer = '';
  if (body.startsWith('OPEN\r\n')) answer += `OPEN\r\n${textEvent(`c:${JSON.stringify({ type: 'subscribe', channel })}`)}`;
  if (/(^|\n)CLOSE[ \r]/.test(body)) answer += 'CLOSE\r\n';
  return answer;
}

const server = http.createServer((req, res) => {
  const [, kind, channel] = CHANNEL.exec(req.url ?? '') ?? [];
  if (channel === undefined) {
    res.writeHead(404).end();
    return;
  }
  if (kind === 'sub') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Grip-Hold': 'stream', 'Grip-Channel': channel });
    res.end();
    return;
  }
  let body = '';
  req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
  req.once('end', () => {
    // `grip`: the answer's `c:` messages are control messages; message-prefix="": the other messages go as they are.
    res.writeHead(200, { 'Content-Type': EVENTS, 'Sec-WebSocket-Extensions': 'grip; message-prefix=""' });
    res.end(answerEvents(channel, body));
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.once('disconnect', () => process.exit(0));
