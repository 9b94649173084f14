// The same application as app.php, for machines without php: a Node worker
// speaking the same protocol through @folk/worker-spawn/worker.
const { serve } = require('@folk/worker-spawn/worker');

let served = 0;

function reply(status, body, type = 'text/plain; charset=utf-8') {
  return Buffer.concat([Buffer.from(JSON.stringify({ status, headers: { 'content-type': type } }) + '\n'), Buffer.from(body)]);
}

serve((payload) => {
  served++;
  const nl = payload.indexOf(0x0a);
  const req = JSON.parse(payload.subarray(0, nl).toString());
  const body = payload.subarray(nl + 1);
  const url = new URL(req.url, 'http://worker');
  switch (`${req.method} ${url.pathname}`) {
    case 'GET /':
      return reply(200, `Hello from Node ${process.version} (fallback worker), worker pid ${process.pid} (request ${served} of this worker)\n`);
    case 'GET /json':
      return reply(
        200,
        JSON.stringify({ node: process.version, pid: process.pid, served, method: req.method, url: req.url, query: Object.fromEntries(url.searchParams), user_agent: req.headers['user-agent'] ?? null }, null, 4) + '\n',
        'application/json',
      );
    case 'POST /echo':
      return reply(200, body, req.headers['content-type'] ?? 'application/octet-stream');
    case 'GET /slow':
      return new Promise((resolve) => setTimeout(() => resolve(reply(200, 'slept\n')), Math.min(10000, Number(url.searchParams.get('ms') ?? 100))));
    case 'GET /error':
      throw new Error('this route always fails');
    default:
      return reply(404, `no route for ${req.method} ${url.pathname}\n`);
  }
});
