#!/usr/bin/env node
// A mini application server: Node's HTTP server in front, a pool of PHP
// workers behind it. Each HTTP request becomes one task on a worker's fd 3;
// the worker's answer becomes the HTTP response. Workers are long-lived
// (no per-request bootstrap, as in RoadRunner), recycled after --max-jobs
// requests, killed past --exec-timeout, and replaced if they crash.
//
//   node examples/app-server/index.mjs                # serve on :8080 until Ctrl-C
//   node examples/app-server/index.mjs --self-test    # start, send a few requests, print, exit 0
//
// Options: --port N (8080), --workers N (2), --max-jobs N (1000),
// --exec-timeout MS (5000), --max-body BYTES (1 MiB: the pool's maxFrame, which
// bounds the request head and body and the response), --node (use the Node
// worker even if php exists).

import { execFileSync } from 'node:child_process';
import * as http from 'node:http';
import { fileURLToPath } from 'node:url';
import { PHP_WORKER_LIBRARY, WorkerPool } from '@folk/worker-spawn';

const here = (name) => fileURLToPath(new URL(name, import.meta.url));

function parseArgs(argv) {
  const opts = { port: 8080, workers: 2, maxJobs: 1000, execTimeout: 5000, maxBody: 1024 * 1024, selfTest: false, node: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const number = () => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${arg} needs a whole number`);
      return n;
    };
    if (arg === '--self-test' || arg === '--once') opts.selfTest = true;
    else if (arg === '--node') opts.node = true;
    else if (arg === '--port') opts.port = number();
    else if (arg === '--workers') opts.workers = number();
    else if (arg === '--max-jobs') opts.maxJobs = number();
    else if (arg === '--exec-timeout') opts.execTimeout = number();
    else if (arg === '--max-body') opts.maxBody = number();
    else throw new Error(`unknown argument ${arg} (see the comment at the top of ${here('index.mjs')})`);
  }
  return opts;
}

/** php-cli with ext-sockets, or the reason there is none. */
function findPhp() {
  try {
    const modules = execFileSync('php', ['-m'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    if (!/^sockets$/m.test(modules)) return { ok: false, why: 'php is installed but has no sockets extension (ext-sockets)' };
    return { ok: true };
  } catch {
    return { ok: false, why: 'php was not found on PATH' };
  }
}

/** The worker the pool runs: PHP when possible, else the Node fallback. */
function chooseWorker(forceNode) {
  if (!forceNode) {
    const php = findPhp();
    if (php.ok) return { label: 'PHP', command: 'php', script: here('app.php'), args: [PHP_WORKER_LIBRARY] };
    console.error(
      `${php.why}. To run the PHP workers, install php-cli:\n` +
        '  Debian/Ubuntu: sudo apt-get install -y php-cli\n' +
        '  Fedora:        sudo dnf install -y php-cli\n' +
        '  Alpine:        apk add php83 php83-sockets\n' +
        'Falling back to the Node worker (same protocol, same routes).',
    );
  }
  return { label: 'Node', command: process.execPath, script: here('app-node.cjs'), args: [] };
}

/** HTTP request -> task payload: a JSON line (method, url, headers), then the raw body. */
function encodeRequest(req, body) {
  const head = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
  return Buffer.concat([Buffer.from(head + '\n'), body]);
}

/** Worker answer -> { status, headers, body }. */
function decodeResponse(payload) {
  const nl = payload.indexOf(0x0a);
  const head = JSON.parse(payload.subarray(0, nl).toString());
  return { status: head.status, headers: head.headers ?? {}, body: payload.subarray(nl + 1) };
}

/** Which HTTP status a failed task becomes. */
const STATUS_FOR = {
  ERR_WORKER_EXEC_TIMEOUT: 504,
  ERR_WORKER_ALLOCATE_TIMEOUT: 503,
  ERR_WORKER_QUEUE_FULL: 503,
  ERR_WORKER_POOL_STOPPED: 503,
  ERR_WORKER_FRAME_TOO_LARGE: 413,
};

function createServer(pool) {
  return http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      // A body that cannot fit one task frame is refused now, not after
      // buffering all of it (the pool would refuse it anyway). The rest is
      // read and dropped, so the client gets the 413 rather than a reset.
      if (size > pool.maxFrame && !res.headersSent) {
        chunks.length = 0;
        res.writeHead(413, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`request body over ${pool.maxFrame} bytes (the pool's maxFrame)\n`);
      }
      if (!res.headersSent) chunks.push(c);
    });
    req.on('end', async () => {
      if (res.headersSent) return;
      try {
        const answer = decodeResponse(await pool.run(encodeRequest(req, Buffer.concat(chunks))));
        res.writeHead(answer.status, answer.headers);
        res.end(answer.body);
      } catch (err) {
        res.writeHead(STATUS_FOR[err.code] ?? 502, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`${err.code ?? 'ERROR'}: ${err.message}\n`);
      }
    });
  });
}

/** One HTTP request to ourselves; resolves with status and body. */
function fetchLocal(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { 'user-agent': 'self-test' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function selfTest(server, pool, label) {
  const { port } = server.address();
  const check = (ok, what) => {
    if (!ok) throw new Error(`self-test failed: ${what}`);
  };
  const show = (method, path, r) => console.log(`${method} ${path} -> ${r.status}\n${r.body.toString().trimEnd().replace(/^/gm, '  ')}`);

  let r = await fetchLocal(port, 'GET', '/');
  show('GET', '/', r);
  check(r.status === 200 && r.body.toString().startsWith(`Hello from ${label}`), 'GET / greets');

  r = await fetchLocal(port, 'GET', '/json?name=folk');
  show('GET', '/json?name=folk', r);
  check(r.status === 200 && JSON.parse(r.body.toString()).query.name === 'folk', 'GET /json parses the query');

  const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  r = await fetchLocal(port, 'POST', '/echo', binary);
  console.log(`POST /echo (256 bytes, every value) -> ${r.status}, ${r.body.length} bytes, identical: ${r.body.equals(binary)}`);
  check(r.status === 200 && r.body.equals(binary), 'POST /echo returns the body unchanged');

  r = await fetchLocal(port, 'GET', '/error');
  show('GET', '/error', r);
  check(r.status === 502 && r.body.toString().includes('this route always fails'), 'GET /error becomes a 502');

  r = await fetchLocal(port, 'GET', '/nope');
  show('GET', '/nope', r);
  check(r.status === 404, 'unknown routes are 404');

  r = await fetchLocal(port, 'POST', '/echo', Buffer.alloc(pool.maxFrame + 1));
  show('POST', `/echo (${pool.maxFrame + 1} bytes)`, r);
  check(r.status === 413, 'a body over the frame limit is refused with 413');

  // Many requests at once, with a zero-downtime reload of every worker in the middle.
  const before = new Set(pool.stats().list.map((w) => w.pid));
  const burst = Array.from({ length: 50 }, (_, i) => fetchLocal(port, 'GET', i % 10 === 0 ? '/slow?ms=20' : '/json'));
  const reloaded = pool.reload();
  const results = await Promise.all(burst);
  await reloaded;
  const after = new Set(pool.stats().list.map((w) => w.pid));
  const failed = results.filter((x) => x.status !== 200).length;
  console.log(
    `50 concurrent requests with a reload in the middle -> ${50 - failed} x 200, ${failed} failed; ` +
      `workers ${[...before].join(',')} replaced by ${[...after].join(',')}`,
  );
  check(failed === 0, 'no request fails during a reload');
  check([...after].every((pid) => !before.has(pid)), 'reload replaced every worker');

  const s = pool.stats();
  console.log(`pool: ${s.workers} workers, ${s.completed} tasks completed, ${s.failed} failed (the /error route), ${s.crashed} crashes`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const worker = chooseWorker(opts.node);
  const pool = new WorkerPool({
    command: worker.command,
    script: worker.script,
    args: worker.args,
    size: Math.max(1, opts.workers),
    maxJobs: opts.maxJobs,
    execTimeout: opts.execTimeout,
    allocateTimeout: 10_000,
    maxFrame: opts.maxBody,
  });
  pool.on('crash', (info, exit, delay) => console.error(`worker ${info.pid} crashed (${exit.signal ?? `exit ${exit.code}`}); replacing in ${delay} ms`));
  pool.on('workerError', (info, message) => console.error(`worker ${info.pid}: ${message}`));
  pool.on('stdout', (chunk, info) => process.stdout.write(`[worker ${info.pid}] ${chunk}`));
  await pool.ready();

  const server = createServer(pool);
  await new Promise((resolve) => server.listen(opts.selfTest ? 0 : opts.port, '127.0.0.1', resolve));
  const { port } = server.address();
  console.log(`app server on http://127.0.0.1:${port}/ with ${pool.size} ${worker.label} workers (pids ${pool.stats().list.map((w) => w.pid).join(', ')})`);

  const shutdown = async () => {
    server.close();
    await pool.stop();
  };
  if (opts.selfTest) {
    try {
      await selfTest(server, pool, worker.label);
    } finally {
      await shutdown();
    }
    console.log('self-test ok');
    return;
  }
  console.log('routes: GET /  GET /json  POST /echo  GET /slow?ms=N  GET /error   (Ctrl-C stops)');
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      console.log(`\n${signal}: stopping workers`);
      shutdown().then(() => process.exit(0));
    });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
