// Figures, not assertions: task round trips per second to PHP echo workers.
//
//   WorkerPool, 1 PHP worker        @folk/worker-spawn: pool.run() with 1 task in flight
//   WorkerPool, 2 PHP workers       the same with 2 (and 8) tasks in flight
//   WorkerHandle.request            spawnWorker() without the pool, 1 PHP worker, 1 in flight
//   child_process + 'pipe' fd 3     hand-rolled: child_process.spawn(php, { stdio:
//                                   [..., 'pipe'] }) and the same 12-byte framing, the
//                                   PHP side a minimal fread/fwrite loop on php://fd/3
//   C ping-pong over a socketpair   two C processes echoing the same frames: the limit
//
// Each figure is the median of TRIP_ROUNDS runs of TASKS round trips (16-byte
// and 64 KiB payloads). The contenders run round-robin, each round starting
// one further along and with worker processes of its own (two running the
// same code have differed by up to 2x), so load from elsewhere on the
// machine and the luck of a process's placement hit each alike;
// a ratio is the median of the ratios within each round (against the
// hand-rolled run, or the C run, of the same round), which a burst of load
// in one round cannot tilt. 2 shared cores: noisy; read the ratios, not the
// last digit. Prints a table; asserts nothing.
//
// Then crash isolation: healthy tasks per second through a pool of 2 PHP
// workers from 8 closed-loop clients, alone and beside 4 clients whose task
// kills its worker every time (a memory-limit fatal), and the ratio of the
// two (the median of ROUNDS runs of POISON_MS each, alternating).
//
//   node bench/worker-spawn/index.mjs
//   node bench/worker-spawn/index.mjs --quick   one short round: checks that every
//                                               contender runs; its figures mean nothing
//   node bench/worker-spawn/index.mjs --poison  the crash-isolation figures only
//   node bench/worker-spawn/index.mjs --round-trips  the round-trip figures only
import { execFileSync, spawn as cpSpawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';


const { WorkerPool, spawnWorker, FrameDecoder, FrameType, encodeFrame, PHP_WORKER_LIBRARY } = await import(
  '../../packages/worker-spawn/dist/index.js'
);

const QUICK = process.argv.includes('--quick');
const POISON_ONLY = process.argv.includes('--poison');
const ROUND_TRIPS_ONLY = process.argv.includes('--round-trips');
const ROUNDS = QUICK ? 1 : 5;
const POISON_MS = QUICK ? 300 : 3000;
const TRIP_ROUNDS = QUICK ? 1 : 11;
const TASKS = QUICK ? 400 : 10_000;
const WARMUP = QUICK ? 100 : 500;
const SMALL = Buffer.alloc(16, 0x61);
const LARGE = Buffer.alloc(64 * 1024, 0x62);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  execFileSync('php', ['-m'], { stdio: 'ignore' });
} catch {
  console.error('php is not installed: this benchmark needs php-cli (Debian/Ubuntu: apt-get install -y php-cli)');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'folk-bench-worker-spawn-'));


// The folk echo worker: the shipped library, a few lines.
const folkEcho = join(dir, 'echo.php');
writeFileSync(
  folkEcho,
  `<?php
require ${JSON.stringify(PHP_WORKER_LIBRARY)};
$w = Folk\\WorkerConnection::fromEnv();
while ($t = $w->receive()) { $w->respond($t, $t->payload); }
`,
);

// An application worker with a route whose code dies: 'poison' runs out of
// memory_limit (PHP's fatal error, exit status 255), anything else is echoed.
const appPhp = join(dir, 'app.php');
writeFileSync(
  appPhp,
  `<?php
require ${JSON.stringify(PHP_WORKER_LIBRARY)};
ini_set('display_errors', '0');
ini_set('log_errors', '0');
$w = Folk\\WorkerConnection::fromEnv();
while ($t = $w->receive()) {
  if ($t->payload === 'poison') { ini_set('memory_limit', '16M'); $hog = str_repeat('x', 64 << 20); }
  $w->respond($t, $t->payload);
}
`,
);

// The hand-rolled echo worker: what one writes without a library, on fd 3 only.
const rawEcho = join(dir, 'raw-echo.php');
writeFileSync(
  rawEcho,
  `<?php
$io = fopen('php://fd/3', 'r+');
stream_set_write_buffer($io, 0);
function readn($io, $n) {
  $out = '';
  while (strlen($out) < $n) {
    $chunk = fread($io, $n - strlen($out));
    if ($chunk === false || $chunk === '') exit(0);
    $out .= $chunk;
  }
  return $out;
}
while (true) {
  $h = unpack('Cv/Ct/nf/Nid/Nlen', readn($io, 12));
  $p = $h['len'] > 0 ? readn($io, $h['len']) : '';
  fwrite($io, pack('CCnNN', 1, 2, 0, $h['id'], strlen($p)) . $p);
}
`,
);

// The limit: C ping-pong of the same frames over a socketpair.
const cSource = join(dir, 'pingpong.c');
const cBinary = join(dir, 'pingpong');
writeFileSync(
  cSource,
  `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
static void full(int fd, char *buf, size_t n, int rd) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = rd ? read(fd, buf + done, n - done) : write(fd, buf + done, n - done);
    if (r <= 0) exit(0);
    done += (size_t)r;
  }
}
int main(int argc, char **argv) {
  long tasks = atol(argv[1]);
  size_t len = (size_t)atol(argv[2]);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1;
  char *buf = malloc(12 + len);
  memset(buf, 'a', 12 + len);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    for (;;) {
      full(sv[1], buf, 12, 1);
      full(sv[1], buf + 12, len, 1);
      full(sv[1], buf, 12 + len, 0);
    }
  }
  close(sv[1]);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < tasks; i++) {
    full(sv[0], buf, 12 + len, 0);
    full(sv[0], buf, 12, 1);
    full(sv[0], buf + 12, len, 1);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("%f\\n", (double)tasks / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9));
  return 0;
}
`,
);
let haveC = true;
try {
  execFileSync('cc', ['-O2', '-o', cBinary, cSource], { stdio: 'inherit' });
} catch {
  haveC = false;
  console.error('cc failed: no C figure');
}

/** Round trips per second: `tasks` calls of `run`, `concurrency` in flight. */
async function closedLoop(run, payload, concurrency, tasks) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < tasks) await run(payload);
    }),
  );
  return tasks / ((performance.now() - started) / 1000);
}

// Each contender: start() -> { run(payload), concurrency, stop() }.
async function folkPool(size, concurrency) {
  const pool = new WorkerPool({ script: folkEcho, size });
  await pool.ready();
  return { run: (p) => pool.run(p), concurrency, stop: () => pool.stop() };
}

async function folkWorker() {
  const worker = spawnWorker({ script: folkEcho });
  await worker.ready;
  return { run: (p) => worker.request(p), concurrency: 1, stop: () => worker.stop() };
}

async function handRolled() {
  const child = cpSpawn('php', [rawEcho], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
  const io = child.stdio[3];
  const waiting = new Map();
  let nextId = 1;
  const decoder = new FrameDecoder(64 * 1024 * 1024, {
    frame: (_type, id, data) => {
      const resolve = waiting.get(id);
      waiting.delete(id);
      resolve(data);
    },
    oversize: () => {},
    corrupt: (err) => {
      throw err;
    },
  });
  io.on('data', (chunk) => decoder.push(chunk));
  return {
    run: (p) =>
      new Promise((resolve) => {
        const id = nextId++;
        waiting.set(id, resolve);
        for (const b of encodeFrame(FrameType.REQUEST, id, p)) io.write(b);
      }),
    concurrency: 1,
    stop: async () => {
      io.destroy();
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve()));
    },
  };
}

const fmt = (n) => Math.round(n).toLocaleString('en-US').padStart(9);

/**
 * Healthy tasks per second from `healthyClients` closed loops over `ms`, with
 * `poisonClients` more sending the task that kills its worker; and how many
 * of each went through (a healthy task that failed is counted apart).
 */
async function poisonRun(poisonClients, healthyClients, ms) {
  const pool = new WorkerPool({ script: appPhp, size: 2 });
  await pool.ready();
  const counts = { healthy: 0, healthyFailed: 0, poison: 0 };
  const until = performance.now() + ms;
  const loop = async (payload, onDone) => {
    while (performance.now() < until) onDone(await pool.run(payload).then(() => true, () => false));
  };
  await Promise.all([
    ...Array.from({ length: healthyClients }, () => loop(SMALL, (ok) => (ok ? counts.healthy++ : counts.healthyFailed++))),
    ...Array.from({ length: poisonClients }, () => loop('poison', () => counts.poison++)),
  ]);
  await pool.stop();
  return { perSecond: counts.healthy / (ms / 1000), ...counts, crashed: pool.stats().crashed };
}

async function crashIsolation() {
  const alone = [];
  const beside = [];
  const replaced = [];
  let healthyFailed = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const a = await poisonRun(0, 8, POISON_MS);
    const b = await poisonRun(4, 8, POISON_MS);
    alone.push(a.perSecond);
    beside.push(b.perSecond);
    replaced.push(b.crashed / (POISON_MS / 1000));
    healthyFailed += a.healthyFailed + b.healthyFailed;
  }
  const [a, b] = [median(alone), median(beside)];
  console.log(`\ncrash isolation: healthy tasks/s, 8 clients, pool of 2 PHP workers, median of ${ROUNDS} runs of ${POISON_MS} ms`);
  console.log(`  alone                                        ${fmt(a)}`);
  console.log(`  beside 4 clients whose task kills its worker ${fmt(b)}        ${(b / a).toFixed(4)}x`);
  console.log(`  (workers lost and replaced: ${fmt(median(replaced)).trim()}/s; healthy tasks that failed, all runs: ${healthyFailed})`);
}

/** The C figure: its own process measures its own loop. */
function cPingPong(payload, tasks) {
  return Number(execFileSync(cBinary, [String(tasks), String(payload.length)], { encoding: 'utf8' }));
}

const CONTENDERS = [
  ['WorkerPool, 1 PHP worker, 1 in flight', () => folkPool(1, 1)],
  ['WorkerPool, 2 PHP workers, 2 in flight', () => folkPool(2, 2)],
  ['WorkerPool, 2 PHP workers, 8 in flight', () => folkPool(2, 8)],
  ['WorkerHandle.request, 1 PHP worker (no pool)', () => folkWorker()],
  ["child_process + 'pipe' fd 3 (hand-rolled)", () => handRolled()],
];
const HAND_ROLLED = 4;

try {
  if (!POISON_ONLY) await roundTrips();
  if (!ROUND_TRIPS_ONLY) await crashIsolation();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

async function roundTrips() {
  console.log(
    `worker-spawn: task round trips/s, median of ${TRIP_ROUNDS} interleaved rounds, each ratio the median of the ratios within a round${QUICK ? ' (--quick: a smoke run, not figures)' : ''} ` +
      `(${availableParallelism()} CPUs, php ${execFileSync('php', ['-r', 'echo PHP_VERSION;'], { encoding: 'utf8' })})`,
  );
  for (const [label, payload] of [
    ['16 B', SMALL],
    ['64 KiB', LARGE],
  ]) {
    const tasks = payload === LARGE ? TASKS / 4 : TASKS;
    // Round-robin, so load from elsewhere on the machine hits every contender
    // alike, and each round starts one contender further on (the C run too).
    // Every round starts its contenders afresh: on this machine two worker
    // processes running the same code have differed by up to 2x for their
    // whole life (where the scheduler puts them, how deep the other CPU
    // sleeps), so each contender gets a new draw per round.
    const figures = CONTENDERS.map(() => []);
    const cFigures = [];
    const order = [...CONTENDERS.keys(), ...(haveC ? ['C'] : [])];
    for (let r = 0; r < TRIP_ROUNDS; r++) {
      const started = [];
      for (const [, start] of CONTENDERS) started.push(await start());
      for (const c of started) await closedLoop(c.run, payload, c.concurrency, WARMUP); // warm up
      for (let k = 0; k < order.length; k++) {
        const i = order[(r + k) % order.length];
        if (i === 'C') cFigures.push(cPingPong(payload, tasks));
        else figures[i].push(await closedLoop(started[i].run, payload, started[i].concurrency, tasks));
      }
      for (const c of started) await c.stop();
    }
    // Ratios within each round, then their median.
    const within = (xs, base) => (base.length === xs.length ? median(xs.map((x, r) => x / base[r])) : NaN);
    const rows = CONTENDERS.map(([name], i) => [name, figures[i]]);
    rows.push(['C ping-pong over a socketpair (limit)', haveC ? cFigures : []]);
    const base = figures[HAND_ROLLED];
    console.log(`\npayload ${label}${' '.repeat(38 - label.length)}  round trips/s   vs hand-rolled   vs C`);
    for (const [name, xs] of rows) {
      const value = xs.length ? median(xs) : NaN;
      console.log(`  ${name.padEnd(44)} ${fmt(value)}        ${within(xs, base).toFixed(2)}x        ${within(xs, cFigures).toFixed(2)}x`);
    }
  }
}
