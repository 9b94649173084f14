// Figures, not assertions: examples/app-server with its shipped defaults
// against the standard way PHP is served, nginx + php-fpm, with the same
// PHP code (examples/app-server/public/index.php) and the same number of PHP
// workers, measured with wrk.
//
//   routes        GET / (hello), GET /data (5 KB of JSON), POST /echo (a 4 KB body back),
//                 GET /finish (hello, ended with fastcgi_finish_request(), as Symfony
//                 and Laravel end every response), GET /redirect (a Location header,
//                 then exit(), as scripts everywhere redirect)
//   concurrency   1, 16, 64 keep-alive connections (wrk -t1)
//   rounds        the contenders take turns on every route and concurrency,
//                 which goes first alternating, ROUNDS times; medians printed
//   failures      requests that failed while a PHP worker was SIGKILLed under
//                 load, while the server reloaded (SIGHUP to ours, SIGUSR2
//                 to php-fpm), several times each, and while a route that
//                 kills its worker (crash.php) was requested every 50 ms
//   cpu           microseconds of CPU per request, HTTP side and PHP side,
//                 for both contenders
//   fronts        ours with one front and with one per CPU, hello at 64
//                 connections, and the CPU each kind of process used: is the
//                 front still the bottleneck?
//
//   node bench/app-server/index.mjs                 (needs root for apt, or nginx, php-fpm and wrk installed)
//   node bench/app-server/index.mjs --quick         one short round: checks that it runs, figures mean nothing
//   node bench/app-server/index.mjs --duration 5 --rounds 3 --workers 2
//   node bench/app-server/index.mjs --routes /,/data --connections 64 --table-only --ours "--fronts 1"
//   node bench/app-server/index.mjs --table-only --variant "two fronts=--fronts 2" --variant "before=/tmp/base/index.mjs"
//   taskset -c 0 node bench/app-server/index.mjs --connections 1   every process on one CPU: the work per
//                 request without the cost of waking a process on another CPU (high in some virtual machines)
//
// nginx, php-fpm and wrk are installed with apt-get when missing, here and
// only here (CI never runs this). nginx runs with worker_processes auto,
// access_log off, keepalive_requests 1000000; php-fpm with pm = static and
// opcache (its default); ours with nothing but --listen and --workers.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptInstall, findFpm, have, startFpm, startNginx } from '../php-fpm.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const APP = join(repo, 'examples', 'app-server');
// Both serve a copy of public/ with one more script: the poison route of
// the failures table, which kills the worker running it (as a segfault or
// the OOM killer would).
const PUBLIC = join(APP, 'public');
function documentRoot(dir) {
  const root = join(dir, 'www');
  mkdirSync(root);
  copyFileSync(join(PUBLIC, 'index.php'), join(root, 'index.php'));
  writeFileSync(join(root, 'crash.php'), '<?php\nposix_kill(getmypid(), 9);\n');
  return root;
}

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const QUICK = args.includes('--quick');
const DURATION = option('duration', QUICK ? 1 : 4);
const ROUNDS = option('rounds', QUICK ? 1 : 3);
// Ours' default (workers = auto: one per CPU, the PHP workers serving the connections); php-fpm gets as many.
const WORKERS = option('workers', availableParallelism());
const list = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1].split(',') : null;
};
const CONCURRENCY = list('connections')?.map(Number) ?? (QUICK ? [16] : [1, 16, 64]);
const ALL_ROUTES = [
  { name: 'hello', path: '/' },
  { name: 'json 5 KB', path: '/data' },
  { name: 'echo 4 KB', path: '/echo', post: 4096 },
  { name: 'hello, finish', path: '/finish' },
  { name: 'redirect, exit()', path: '/redirect', status: 302 },
];
const ROUTES = ALL_ROUTES.filter((r) => !list('routes') || list('routes').includes(r.path));
const ONLY_TABLE = args.includes('--table-only');
/** More options for ours in the main table, e.g. --ours "--fronts 1". */
const OURS = args.includes('--ours') ? args[args.indexOf('--ours') + 1].split(' ').filter(Boolean) : [];
/**
 * More contenders in the same interleaved rounds (main table only), each
 * --variant "NAME=OPTIONS", OPTIONS optionally starting with another copy's
 * index.mjs (before/after a change): --variant "base=/tmp/base/index.mjs".
 */
const VARIANTS = args.flatMap((a, i) => (a === '--variant' ? [args[i + 1]] : [])).map((text) => {
  const eq = text.indexOf('=');
  const words = text.slice(eq + 1).split(' ').filter(Boolean);
  const app = words[0]?.endsWith('.mjs') ? words.shift() : join(APP, 'index.mjs');
  return { name: text.slice(0, eq), app, extra: words };
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Tools

function install() {
  const missing = [];
  if (!have('nginx') && !existsSync('/usr/sbin/nginx')) missing.push('nginx');
  if (findFpm() === null) missing.push('php-fpm');
  if (!have('wrk')) missing.push('wrk');
  const refused = aptInstall(missing);
  if (refused !== null) {
    console.error(refused);
    process.exit(1);
  }
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Children of a pid (from /proc). */
function childrenOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** utime + stime of a process, in clock ticks (0 once gone). */
function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

function get(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: body ? { 'content-type': 'application/octet-stream' } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitUp(port, what) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await get(port, 'GET', '/')).status === 200) return;
    } catch {
      // not yet
    }
    await sleep(50);
  }
  throw new Error(`${what} did not come up on port ${port}`);
}

// ---------------------------------------------------------------------------
// The contenders

async function startFpmNginx(dir) {
  const port = await freePort();
  const socket = join(dir, 'fpm.sock');
  const php = await startFpm(dir, socket, ['pm = static', `pm.max_children = ${WORKERS}`, 'pm.max_requests = 0']);
  const web = startNginx(dir, { port, root: join(dir, 'www'), socket });
  try {
    await waitUp(port, 'nginx + php-fpm');
  } catch (err) {
    // SIGTERM: their masters take their workers with them (SIGKILL would leave those behind).
    web.kill('SIGTERM');
    php.kill('SIGTERM');
    const log = (name) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8').split('\n').slice(0, 5).join('\n') : '');
    throw new Error(`${err.message}\nphp-fpm said:\n${log('php-fpm.log')}\nnginx said:\n${log('nginx-error.log')}`);
  }
  return {
    name: 'nginx+php-fpm',
    port,
    workerPids: () => childrenOf(php.pid),
    frontPids: () => childrenOf(web.pid),
    kill: (pid) => process.kill(pid, 'SIGKILL'),
    reload: () => process.kill(php.pid, 'SIGUSR2'),
    ready: () => waitUp(port, 'nginx + php-fpm'),
    masterOfWorkers: () => php.pid,
    async stop() {
      web.kill('SIGQUIT');
      php.kill('SIGQUIT');
      await Promise.all([new Promise((r) => web.once('exit', r)), new Promise((r) => php.once('exit', r))]);
    },
  };
}

async function startOurs(extra = [], app = join(APP, 'index.mjs'), name = null) {
  const port = await freePort();
  const child = spawn(process.execPath, [app, '--listen', `127.0.0.1:${port}`, '--root', join(dir, 'www'), '--workers', String(WORKERS), ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  await waitUp(port, 'examples/app-server');
  const fronts = () => childrenOf(child.pid);
  return {
    name: name ?? (extra.length ? `ours ${extra.join(' ')}` : 'ours'),
    port,
    workerPids: () => fronts().flatMap(childrenOf),
    frontPids: fronts,
    kill: (pid) => process.kill(pid, 'SIGKILL'),
    reload: () => child.kill('SIGHUP'),
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

// ---------------------------------------------------------------------------
// wrk

function toMs(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2]];
}

function wrk(port, route, connections, seconds, dir) {
  const argv = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '10s'];
  if (route.post) {
    const script = join(dir, `post-${route.post}.lua`);
    if (!existsSync(script)) writeFileSync(script, `wrk.method = "POST"\nwrk.body = string.rep("a", ${route.post})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
    argv.push('-s', script);
  }
  argv.push(`http://127.0.0.1:${port}${route.path}`);
  return new Promise((resolve) => {
    const child = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', () => {
      const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
      resolve({
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
        requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
        p50: toMs(/ 50%\s+(\S+)/.exec(out)?.[1] ?? ''),
        p99: toMs(/ 99%\s+(\S+)/.exec(out)?.[1] ?? ''),
        errors: (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0),
        raw: out,
      });
    });
  });
}

/** CPU microseconds per request of the contender's HTTP processes and PHP processes (16 connections, medians over ROUNDS runs). */
async function cpuPerRequest(contender, route) {
  const runs = [];
  for (let round = 0; round < ROUNDS; round++) {
    await wrk(contender.port, route, 16, 1, dir);
    const pids = [contender.frontPids(), contender.workerPids()];
    const before = pids.map((list) => list.map(cpuTicks));
    const r = await wrk(contender.port, route, 16, DURATION, dir);
    // A tick is 10 ms: ticks * 10,000 us / requests.
    const used = pids.map((list, k) => list.reduce((a, pid, i) => a + cpuTicks(pid) - before[k][i], 0));
    runs.push(used.map((ticks) => (ticks * 10_000) / r.requests));
  }
  return { front: median(runs.map((r) => r[0])), php: median(runs.map((r) => r[1])) };
}

// ---------------------------------------------------------------------------

install();
const dir = mkdtempSync(join(tmpdir(), 'folk-bench-app-server-'));
documentRoot(dir);
const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-');
let fpm;
let ours;
const variants = [];
try {
  fpm = await startFpmNginx(dir);
  ours = await startOurs(OURS);
  for (const v of VARIANTS) variants.push(await startOurs(v.extra, v.app, v.name));
  const contenders = [ours, fpm, ...variants];

  // The same code answers the same on both.
  for (const route of ROUTES) {
    const body = route.post ? Buffer.alloc(route.post, 0x61) : undefined;
    const [a, b] = await Promise.all(contenders.map((c) => get(c.port, route.post ? 'POST' : 'GET', route.path, body)));
    const unpid = (reply) => reply.body.toString('latin1').replace(/worker pid \d+/, 'worker pid N'); // (hello says which worker)
    const status = route.status ?? 200;
    if (a.status !== status || b.status !== status || unpid(a) !== unpid(b) || a.headers.location !== b.headers.location) {
      throw new Error(`${route.path}: ours ${a.status} (${a.body.length} bytes), nginx+php-fpm ${b.status} (${b.body.length} bytes): not the same answer`);
    }
  }

  console.log(`${WORKERS} PHP workers each; ours: ${ours.frontPids().length} fronts; nginx: ${fpm.frontPids().length} worker processes; ` +
    `${availableParallelism()} CPUs; wrk -t1, ${DURATION} s per run, ${ROUNDS} round(s), contenders alternating`);
  const results = new Map(); // key -> { ours: [], fpm: [], <variant name>: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const route of ROUTES) {
      for (const c of CONCURRENCY) {
        const key = `${route.name}|${c}`;
        if (!results.has(key)) results.set(key, Object.fromEntries([['ours', []], ['fpm', []], ...variants.map((v) => [v.name, []])]));
        // Who goes first turns over from one run to the next.
        const turn = (round + ROUTES.indexOf(route) + c) % contenders.length;
        const order = [...contenders.slice(turn), ...contenders.slice(0, turn)];
        for (const contender of order) {
          await wrk(contender.port, route, c, 1, dir); // warm the connections and opcache
          const r = await wrk(contender.port, route, c, DURATION, dir);
          results.get(key)[contender === ours ? 'ours' : contender === fpm ? 'fpm' : contender.name].push(r);
          process.stdout.write('.');
        }
      }
    }
  }
  console.log('\n');
  console.log('| route | conns | ours req/s | php-fpm req/s | ratio | ours p50 ms | php-fpm p50 ms | ours p99 ms | php-fpm p99 ms | errors (ours / php-fpm) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const [key, { ours: o, fpm: f }] of results) {
    const [route, c] = key.split('|');
    const rps = [median(o.map((r) => r.rps)), median(f.map((r) => r.rps))];
    const p50 = [median(o.map((r) => r.p50)), median(f.map((r) => r.p50))];
    const p99 = [median(o.map((r) => r.p99)), median(f.map((r) => r.p99))];
    const errors = [o.reduce((a, r) => a + r.errors, 0), f.reduce((a, r) => a + r.errors, 0)];
    console.log(`| ${route} | ${c} | ${fmt(rps[0])} | ${fmt(rps[1])} | ${fmt(rps[0] / rps[1], 2)}x | ${fmt(p50[0], 2)} | ${fmt(p50[1], 2)} | ${fmt(p99[0], 2)} | ${fmt(p99[1], 2)} | ${errors[0]} / ${errors[1]} |`);
  }
  if (variants.length > 0) {
    console.log('\nEvery contender against php-fpm in the same rounds:');
    console.log('| route | conns | contender | req/s | ratio | p50 ms | p99 ms | p99 / php-fpm | errors |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const [key, runs] of results) {
      const [route, c] = key.split('|');
      const fpmRps = median(runs.fpm.map((r) => r.rps));
      const fpmP99 = median(runs.fpm.map((r) => r.p99));
      for (const [name, rs] of Object.entries(runs)) {
        const rps = median(rs.map((r) => r.rps));
        const p99 = median(rs.map((r) => r.p99));
        const label = name === 'fpm' ? 'nginx+php-fpm' : name === 'ours' ? ours.name : name;
        console.log(`| ${route} | ${c} | ${label} | ${fmt(rps)} | ${fmt(rps / fpmRps, 2)}x | ${fmt(median(rs.map((r) => r.p50)), 2)} | ${fmt(p99, 2)} | ${fmt(p99 / fpmP99, 2)} | ${rs.reduce((a, r) => a + r.errors, 0)} |`);
      }
    }
  }

  // Failures: a worker SIGKILLed, and reloads, under load (hello, 16 connections).
  const KILLS = QUICK ? 2 : 5;
  const RELOADS = QUICK ? 1 : 3;
  if (!ONLY_TABLE) {
    const hello = ALL_ROUTES[0];
    const disruptionSeconds = Math.max(2, DURATION);
    console.log(`\nFailed requests (non-2xx and socket errors) under 16 connections on GET / during ${disruptionSeconds} s:`);
    console.log('| event | ours | nginx+php-fpm |');
    console.log('| --- | --- | --- |');
    const disrupt = async (contender, act, times) => {
      const run = wrk(contender.port, hello, 16, disruptionSeconds, dir);
      for (let i = 0; i < times; i++) {
        await sleep((disruptionSeconds * 1000) / (times + 1));
        act(contender);
      }
      const r = await run;
      await sleep(500);
      return r;
    };
    const killOne = (contender) => {
      const pids = contender.workerPids();
      if (pids.length) contender.kill(pids[Math.floor(Math.random() * pids.length)]);
    };
    const killed = [await disrupt(ours, killOne, KILLS), await disrupt(fpm, killOne, KILLS)];
    console.log(`| ${KILLS} PHP workers SIGKILLed | ${killed[0].errors} of ${killed[0].requests} | ${killed[1].errors} of ${killed[1].requests} |`);
    await Promise.all([ours, fpm].map((c) => waitUp(c.port, c.name)));
    await sleep(1000);
    const reloaded = [await disrupt(ours, (c) => c.reload(), RELOADS), await disrupt(fpm, (c) => c.reload(), RELOADS)];
    console.log(`| ${RELOADS} reloads (SIGHUP to ours, SIGUSR2 to php-fpm) | ${reloaded[0].errors} of ${reloaded[0].requests} | ${reloaded[1].errors} of ${reloaded[1].requests} |`);
    // A poison route: each request to it kills the worker serving it. The
    // other requests should not notice more than the workers it costs.
    const poisoned = async (contender) => {
      let running = true;
      let hits = 0;
      const loop = (async () => {
        for (; running; hits++) {
          await get(contender.port, 'GET', '/crash.php').catch(() => {});
          await sleep(50);
        }
      })();
      const r = await wrk(contender.port, hello, 16, disruptionSeconds, dir);
      running = false;
      await loop;
      await sleep(500);
      return { ...r, hits };
    };
    await Promise.all([ours, fpm].map((c) => waitUp(c.port, c.name)));
    const poison = [await poisoned(ours), await poisoned(fpm)];
    console.log(`| a route that kills its worker, every 50 ms (hits: ours ${poison[0].hits}, php-fpm ${poison[1].hits}) | ${poison[0].errors} of ${poison[0].requests} | ${poison[1].errors} of ${poison[1].requests} |`);

    // Where the CPU goes: microseconds of CPU per request for each kind of
    // process (the HTTP side: our fronts or nginx's workers; the PHP side:
    // our workers or php-fpm's children), at 16 connections.
    console.log(`\nCPU per request at 16 connections (us, median of ${ROUNDS} run(s); utime + stime from /proc):`);
    console.log('| route | ours: fronts | ours: PHP workers | ours: total | nginx | php-fpm | nginx+php-fpm: total |');
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const route of ROUTES) {
      const [o, f] = [await cpuPerRequest(ours, route), await cpuPerRequest(fpm, route)];
      console.log(`| ${route.name} | ${fmt(o.front, 1)} | ${fmt(o.php, 1)} | ${fmt(o.front + o.php, 1)} | ${fmt(f.front, 1)} | ${fmt(f.php, 1)} | ${fmt(f.front + f.php, 1)} |`);
    }

    // Is the front the bottleneck? One front against the default, hello at 64
    // connections, with the CPU time each kind of process used during the run.
    await fpm.stop();
    fpm = null;
    await ours.stop();
    ours = null;
    console.log(`\nFronts, GET / at 64 connections (${DURATION} s, ${ROUNDS} round(s); CPU in % of one core over the run, median):`);
    console.log('| fronts | req/s | p99 ms | CPU per front | CPU of all PHP workers |');
    console.log('| --- | --- | --- | --- | --- |');
    for (const extra of [['--fronts', '1'], ['--fronts', String(availableParallelism())]]) {
      const server = await startOurs(extra);
      try {
        const runs = [];
        for (let round = 0; round < ROUNDS; round++) {
          await wrk(server.port, hello, 64, 1, dir);
          const fronts = server.frontPids();
          const workers = server.workerPids();
          const before = [fronts.map(cpuTicks), workers.map(cpuTicks)];
          const started = process.hrtime.bigint();
          const r = await wrk(server.port, hello, 64, DURATION, dir);
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          const pct = (ticks) => (ticks / 100 / seconds) * 100;
          r.frontCpu = fronts.map((pid, i) => pct(cpuTicks(pid) - before[0][i]));
          r.workerCpu = pct(workers.reduce((a, pid, i) => a + cpuTicks(pid) - before[1][i], 0));
          runs.push(r);
        }
        const frontCpu = runs[0].frontCpu.map((_, i) => median(runs.map((r) => r.frontCpu[i] ?? 0)));
        console.log(`| ${server.frontPids().length} | ${fmt(median(runs.map((r) => r.rps)))} | ${fmt(median(runs.map((r) => r.p99)), 2)} | ${frontCpu.map((x) => `${fmt(x)}%`).join(', ')} | ${fmt(median(runs.map((r) => r.workerCpu)))}% |`);
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  await fpm?.stop().catch(() => {});
  await ours?.stop().catch(() => {});
  for (const v of variants) await v.stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
