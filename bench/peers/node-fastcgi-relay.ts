// Child process: the least a Node gateway can do per request, as a floor for scenario 5. A node:http server relays
// each GET to php-fpm over a FastCGI connection of its own (as nginx does without keepalive) and answers with the
// script's body: no tokens, no multiplexing, no limits, no metrics. Usage: node node-fastcgi-relay.ts <fpm host:port> <script>
import http from 'node:http';
import net from 'node:net';
import {
  FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDIN, FCGI_STDOUT, RecordDecoder, beginRequestBody, encodeParams,
  encodeRecords,
} from '../../src/protocol/fastcgi-records.ts';

const [host, port] = process.argv[2].split(':');
const script = process.argv[3];

const EMPTY = Buffer.alloc(0);
const BEGIN = encodeRecords(FCGI_BEGIN_REQUEST, 1, beginRequestBody(FCGI_RESPONDER, 0));
const END_OF_PARAMS_AND_STDIN = Buffer.concat([encodeRecords(FCGI_PARAMS, 1, EMPTY), encodeRecords(FCGI_STDIN, 1, EMPTY)]);

const server = http.createServer((req, res) => {
  const params = encodeParams({
    GATEWAY_INTERFACE: 'CGI/1.1', SERVER_SOFTWARE: 'relay', SERVER_PROTOCOL: 'HTTP/1.1', REQUEST_METHOD: req.method!,
    REQUEST_URI: req.url!, SCRIPT_FILENAME: script, SCRIPT_NAME: '/hello.php', QUERY_STRING: '', REMOTE_ADDR: '127.0.0.1',
    SERVER_NAME: 'localhost', SERVER_PORT: '80', HTTP_HOST: req.headers.host ?? '',
  });
  const fastcgi = net.connect(Number(port), host, () => fastcgi.write(Buffer.concat([BEGIN, encodeRecords(FCGI_PARAMS, 1, params), END_OF_PARAMS_AND_STDIN])));
  const output: Buffer[] = [];
  const decoder = new RecordDecoder({
    onRecord(type, _requestId, content) {
      if (type === FCGI_STDOUT) output.push(content);
      if (type !== FCGI_END_REQUEST) return;
      const response = Buffer.concat(output);
      const headEnd = response.indexOf('\r\n\r\n');
      res.setHeader('Content-Type', /^content-type:\s*(.*)$/im.exec(response.toString('latin1', 0, headEnd))?.[1] ?? 'text/html');
      res.end(response.subarray(headEnd + 4));
    },
    onError: () => {
      fastcgi.destroy();
      res.destroy();
    },
  });
  fastcgi.on('data', (chunk: Buffer) => decoder.push(chunk));
  // php-fpm closes after its end-request record: close at once, so the TIME_WAIT is its own
  fastcgi.on('end', () => fastcgi.destroy());
  fastcgi.on('error', () => res.destroy());
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.once('disconnect', () => process.exit(0));
