// --self-test: a few requests to the running server, printed, then a burst
// with a reload of every worker in the middle; throws on the first check
// that fails.
import * as http from 'node:http';

/** One HTTP request to ourselves; resolves with status, headers and body. */
export function fetchLocal(port, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { 'user-agent': 'self-test', ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** server: { port, label, maxBody, reload(): Promise<{ before, after }> } */
export async function selfTest(server) {
  const { port, label } = server;
  const check = (ok, what) => {
    if (!ok) throw new Error(`self-test failed: ${what}`);
  };
  const show = (method, path, r) => console.log(`${method} ${path} -> ${r.status}\n${r.body.toString().trimEnd().replace(/^/gm, '  ')}`);

  let r = await fetchLocal(port, 'GET', '/');
  show('GET', '/', r);
  check(r.status === 200 && r.body.toString().startsWith(`Hello from ${label}`), 'GET / greets');

  r = await fetchLocal(port, 'GET', '/finish');
  show('GET', '/finish', r);
  check(r.status === 200 && r.body.toString().startsWith('Hello from'), 'GET /finish answers (through fastcgi_finish_request() where the workers have it)');

  r = await fetchLocal(port, 'GET', '/redirect');
  console.log(`GET /redirect -> ${r.status}, Location: ${r.headers.location}`);
  check(r.status === 302 && r.headers.location === '/', 'GET /redirect answers 302 with its Location (the script ends with exit())');

  r = await fetchLocal(port, 'GET', '/json?name=folk');
  show('GET', '/json?name=folk', r);
  check(r.status === 200 && JSON.parse(r.body.toString()).query.name === 'folk', 'GET /json parses the query');

  const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  r = await fetchLocal(port, 'POST', '/echo', binary);
  console.log(`POST /echo (256 bytes, every value) -> ${r.status}, ${r.body.length} bytes, identical: ${r.body.equals(binary)}`);
  check(r.status === 200 && r.body.equals(binary), 'POST /echo returns the body unchanged');

  r = await fetchLocal(port, 'GET', '/error');
  show('GET', '/error', r);
  check(r.status === 500, 'GET /error (an uncaught exception) becomes a 500');

  r = await fetchLocal(port, 'GET', '/nope');
  show('GET', '/nope', r);
  check(r.status === 404, 'unknown routes are 404');

  r = await fetchLocal(port, 'POST', '/echo', Buffer.alloc(server.maxBody + 1));
  show('POST', `/echo (${server.maxBody + 1} bytes)`, r);
  check(r.status === 413, 'a body over --max-body is refused with 413');

  // Many requests at once, with a zero-downtime reload of every worker in the middle.
  const burst = Array.from({ length: 50 }, (_, i) => fetchLocal(port, 'GET', i % 10 === 0 ? '/slow?ms=20' : '/json'));
  const reloaded = server.reload();
  const results = await Promise.all(burst);
  const { before, after } = await reloaded;
  const failed = results.filter((x) => x.status !== 200).length;
  console.log(`50 concurrent requests with a reload in the middle -> ${50 - failed} x 200, ${failed} failed; workers ${before.join(',')} replaced by ${after.join(',')}`);
  check(failed === 0, 'no request fails during a reload');
  check(after.length === before.length && after.every((pid) => !before.includes(pid)), 'reload replaced every worker');
}
