// Child process: the least a Node gateway can do per request, as a floor for scenario 5. A node:http server relays
// each GET to php-fpm over a FastCGI connection of its own (as nginx does without keepalive) and answers with the
// script's body: no tokens, no multiplexing, no limits, no metrics. Usage: node node-fastcgi-relay.ts <fpm host:port> <script>
import http from 'node:http';
import net from 'node:net';

const [host, port] = process.argv[2].split(':');
const script = process.argv[3];
const BEGIN_REQUEST = 1;
const END_REQUEST = 3;
const PARAMS = 4;
const STDIN = 5;
const STDOUT = 6;

function record(type: number, content: Buffer): Buffer {
  const padding = (8 - (content.length % 8)) % 8;
  const out = Buffer.alloc(8 + content.length + padding);
  out[0] = 1;
  out[1] = type;
  out.writeUInt16BE(1, 2);
  out.writeUInt16BE(content.length, 4);
  out[6] = padding;
  content.copy(out, 8);
  return out;
}

/** Name-value pairs of at most 127 bytes each (FastCGI §3.4). */
function nameValues(params: Record<string, string>): Buffer {
  let text = '';
  for (const name in params) text += String.fromCharCode(name.length, params[name].length) + name + params[name];
  return Buffer.from(text, 'latin1');
}

const BEGIN = record(BEGIN_REQUEST, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]));
const END_OF_PARAMS_AND_STDIN = Buffer.concat([record(PARAMS, Buffer.alloc(0)), record(STDIN, Buffer.alloc(0))]);

const server = http.createServer((req, res) => {
  const params = nameValues({
    GATEWAY_INTERFACE: 'CGI/1.1', SERVER_SOFTWARE: 'relay', SERVER_PROTOCOL: 'HTTP/1.1', REQUEST_METHOD: req.method!,
    REQUEST_URI: req.url!, SCRIPT_FILENAME: script, SCRIPT_NAME: '/hello.php', QUERY_STRING: '', REMOTE_ADDR: '127.0.0.1',
    SERVER_NAME: 'localhost', SERVER_PORT: '80', HTTP_HOST: req.headers.host ?? '',
  });
  const fastcgi = net.connect(Number(port), host, () => fastcgi.write(Buffer.concat([BEGIN, record(PARAMS, params), END_OF_PARAMS_AND_STDIN])));
  const output: Buffer[] = [];
  let pending: Buffer = Buffer.alloc(0);
  fastcgi.on('data', (chunk: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 8) {
      const size = 8 + pending.readUInt16BE(4) + pending[6];
      if (pending.length < size) return;
      if (pending[1] === STDOUT) output.push(pending.subarray(8, 8 + pending.readUInt16BE(4)));
      if (pending[1] === END_REQUEST) {
        const response = Buffer.concat(output);
        const headEnd = response.indexOf('\r\n\r\n');
        res.setHeader('Content-Type', /^content-type:\s*(.*)$/im.exec(response.toString('latin1', 0, headEnd))?.[1] ?? 'text/html');
        res.end(response.subarray(headEnd + 4));
      }
      pending = pending.subarray(size);
    }
  });
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
