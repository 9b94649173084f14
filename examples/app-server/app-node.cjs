// The routes of public/index.php for machines without php: a Node worker
// speaking the same task format as php/runtime.php (CGI variables, then the
// body; the answer is status, header lines, an empty line, the body) through
// @folk/worker-spawn/worker.
const { serve } = require('@folk/worker-spawn/worker');

function reply(status, body, type = 'text/plain; charset=utf-8', headers = []) {
  return Buffer.concat([Buffer.from(`${status}\n${[`Content-Type: ${type}`, ...headers].join('\n')}\n\n`), Buffer.from(body)]);
}

function parse(task) {
  const nl = task.indexOf(0x0a);
  const length = Number(task.latin1Slice(0, nl));
  const parts = task.latin1Slice(nl + 1, nl + 1 + length).split('\0');
  const server = {};
  for (let i = 0; i + 1 < parts.length; i += 2) server[parts[i]] = parts[i + 1];
  return { server, body: task.subarray(nl + 1 + length) };
}

serve((task) => {
  const { server, body } = parse(task);
  const url = new URL(server.REQUEST_URI, 'http://worker');
  switch (`${server.REQUEST_METHOD} ${url.pathname}`) {
    case 'GET /':
    case 'GET /finish': // (no fastcgi_finish_request() here: answered when done, as ever)
      return reply(200, `Hello from Node ${process.version} (fallback worker), worker pid ${process.pid}\n`);
    case 'GET /redirect':
      return reply(302, '', 'text/html; charset=UTF-8', ['Location: /']);
    case 'GET /json': {
      const query = Object.fromEntries(url.searchParams);
      const json = { node: process.version, pid: process.pid, method: server.REQUEST_METHOD, uri: server.REQUEST_URI, query, user_agent: server.HTTP_USER_AGENT ?? null };
      return reply(200, `${JSON.stringify(json, null, 4)}\n`, 'application/json');
    }
    case 'GET /data': {
      const items = Array.from({ length: 54 }, (_, j) => {
        const i = j + 1;
        return { id: i, name: `item ${i}`, price: i * 1.25, tags: ['red', 'green', 'blue'], stock: (i * 7) % 13, active: i % 3 !== 0 };
      });
      return reply(200, JSON.stringify({ count: items.length, items }), 'application/json');
    }
    case 'POST /echo':
      return reply(200, body, server.CONTENT_TYPE || 'application/octet-stream');
    case 'GET /slow':
      return new Promise((resolve) => setTimeout(() => resolve(reply(200, 'slept\n')), Math.min(10000, Number(url.searchParams.get('ms') ?? 100))));
    case 'GET /error':
      // As an uncaught exception in PHP: logged, and a 500.
      process.stderr.write('Error: this route always fails\n');
      return reply(500, '');
    default:
      return reply(404, `no route for ${server.REQUEST_METHOD} ${url.pathname}\n`);
  }
});
