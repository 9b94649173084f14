// Figures, not assertions: prototype workers against exec'd ones.
//
//   need a worker -> ready   exec'd: spawnWorker() of a script that runs the
//                            preload itself (php start-up + preload), until
//                            its ready message; forked: a fork request to a
//                            warm prototype that ran the same preload, until
//                            the forked worker's ready message
//   need a worker -> first   the same, until the answer to the worker's first
//   answer                   task: what a request that finds no worker waits
//   php-fpm, pm = ondemand   a FastCGI request to php-fpm's socket when its
//                            pool has no child (php-fpm forks one from its
//                            master), until php-fpm ends the request: a script
//                            that requires the same preload, and a bare one
//                            (php-fpm's fork alone); and the same request again
//                            once the child exists. php-fpm cannot keep a
//                            bootstrap's state between requests: opcache.preload
//                            keeps classes and functions only, not the preload's
//                            array, so its scripts include the preload, as a
//                            php-fpm application does on every request
//   PSS of 8 workers         the sum of Pss in /proc/<pid>/smaps_rollup of 8
//                            idle workers each way (forked: with and without
//                            the prototype itself)
//
// The preload builds an array of 320,000 strings and defines a class (about
// 50 ms of work on this machine; the figure printed says how long it took).
// Median of ROUNDS starts each way, alternating. 2 shared cores: noisy.
// php-fpm is installed with apt-get when missing and this runs as root;
// otherwise its rows are skipped.
//
//   node bench/worker-spawn/prototype.mjs [--quick] [--no-fpm]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aptInstall, fastcgiGet, findFpm, startFpm, stopFpm } from '../php-fpm.mjs';

const ws = '../../packages/worker-spawn/dist';
const { spawnWorker, workerFromProcess } = await import(`${ws}/worker-handle.js`);
const { Prototype } = await import(`${ws}/prototype.js`);
const { processPlan } = await import(`${ws}/worker-process.js`);
const { PHP_WORKER_LIBRARY } = await import(`${ws}/php-library.js`);

const QUICK = process.argv.includes('--quick');
const FPM = !process.argv.includes('--no-fpm');
const ROUNDS = QUICK ? 2 : 15;
const MAX_FRAME = 1 << 24;

const dir = mkdtempSync(join(tmpdir(), 'folk-bench-prototype-'));
const preload = join(dir, 'preload.php');
writeFileSync(
  preload,
  `<?php
$t0 = hrtime(true);
final class App { public static function greet(string $s): string { return "hello $s"; } }
$table = [];
for ($i = 0; $i < 320000; $i++) { $table["key$i"] = str_repeat(chr(65 + $i % 26), 24) . $i; }
$preloadMs = (hrtime(true) - $t0) / 1e6;
`,
);
const body = `require ${JSON.stringify(PHP_WORKER_LIBRARY)};
Folk\\WorkerConnection::fromEnv()->serve(fn (string $p) => $p === 'ms' ? (string) $GLOBALS['preloadMs'] : App::greet($p) . count($GLOBALS['table']));
`;
// exec'd: the script runs the preload itself; forked: the prototype did.
const execScript = join(dir, 'exec-worker.php');
writeFileSync(execScript, `<?php\nrequire ${JSON.stringify(preload)};\n${body}`);
const forkScript = join(dir, 'fork-worker.php');
writeFileSync(forkScript, `<?php\n${body}`);

// php-fpm's scripts: the same preload on every request, and none.
const fpmBoot = join(dir, 'fpm-boot.php');
writeFileSync(fpmBoot, `<?php\nrequire ${JSON.stringify(preload)};\necho App::greet('x') . count($table) . ' ' . $preloadMs;\n`);
const fpmBare = join(dir, 'fpm-bare.php');
writeFileSync(fpmBare, `<?php\necho 'hello x';\n`);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const childrenOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const pss = (pid) => Number(/^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))[1]);

function startPrototype() {
  const plan = processPlan({ script: forkScript }, true);
  return new Prototype({ ...plan, argv: [join(PHP_WORKER_LIBRARY, '..', 'prototype.php'), preload, ...plan.argv] }, preload, MAX_FRAME);
}

const since = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** A worker started, ready (ms), and the answer to its first task (firstMs), the same answer whichever way it started. */
async function firstAnswer(t0, worker) {
  await worker.ready;
  const ms = since(t0);
  const answer = (await worker.request('x')).toString();
  const firstMs = since(t0);
  if (!answer.startsWith('hello x320000')) throw new Error(`the worker lacks the preload: ${answer}`);
  return { ms, firstMs, worker };
}

function execStart() {
  const t0 = process.hrtime.bigint();
  const worker = spawnWorker({ script: execScript, maxFrame: MAX_FRAME });
  worker.stdout.resume();
  return firstAnswer(t0, worker);
}

async function forkStart(proto) {
  const t0 = process.hrtime.bigint();
  return firstAnswer(t0, workerFromProcess(await proto.fork(), MAX_FRAME));
}

/** php-fpm, pm = ondemand: a request to a pool with no child (cold), then the same with the child there (warm). */
async function fpmRound(master, socket, script, expected) {
  for (let i = 0; i < 400 && childrenOf(master.pid).length > 0; i++) await sleep(25); // idle children leave after 1 s
  if (childrenOf(master.pid).length > 0) throw new Error('php-fpm kept a child past its idle timeout');
  let t0 = process.hrtime.bigint();
  const cold = (await fastcgiGet(socket, script)).toString();
  const coldMs = since(t0);
  t0 = process.hrtime.bigint();
  await fastcgiGet(socket, script);
  const warmMs = since(t0);
  const m = /\r\n\r\n(.*?)(?: ([\d.]+))?$/s.exec(cold);
  if (m?.[1] !== expected) throw new Error(`php-fpm answered ${JSON.stringify(cold.slice(-80))}`);
  return { coldMs, warmMs, preloadMs: Number(m[2] ?? NaN) };
}

const proto = startPrototype();
proto.process.stdout.resume();
await proto.ready;
try {
  const exec = [];
  const fork = [];
  const preloadMs = [];
  for (let i = 0; i < ROUNDS; i++) {
    const e = await execStart();
    preloadMs.push(Number((await e.worker.request('ms')).toString()));
    exec.push(e);
    await e.worker.stop();
    const f = await forkStart(proto);
    fork.push(f);
    await f.worker.stop();
  }

  // php-fpm with the same preload (required by the script) and without, ondemand: every cold request forks.
  let fpm = null;
  if (FPM) {
    const refused = findFpm() === null ? aptInstall(['php-fpm']) : null;
    if (refused !== null) console.error(`${refused}; the php-fpm rows are skipped`);
    else {
      const socket = join(dir, 'fpm.sock');
      const master = await startFpm(dir, socket, ['pm = ondemand', 'pm.max_children = 8', 'pm.process_idle_timeout = 1s', 'pm.max_requests = 0']);
      try {
        fpm = { boot: [], bare: [], version: /PHP (\S+)/.exec(execFileSync(findFpm(), ['-v'], { encoding: 'utf8' }))?.[1] ?? '?' };
        for (let i = 0; i < ROUNDS; i++) {
          fpm.boot.push(await fpmRound(master, socket, fpmBoot, 'hello x320000'));
          fpm.bare.push(await fpmRound(master, socket, fpmBare, 'hello x'));
        }
      } finally {
        await stopFpm(master);
      }
    }
  }

  // Memory: 8 idle workers each way, each having answered one task.
  const execWorkers = [];
  const forkWorkers = [];
  for (let i = 0; i < 8; i++) execWorkers.push((await execStart()).worker);
  for (let i = 0; i < 8; i++) forkWorkers.push((await forkStart(proto)).worker);
  for (const w of [...execWorkers, ...forkWorkers]) await w.request('x');
  const execPss = execWorkers.reduce((n, w) => n + pss(w.pid), 0);
  const forkPss = forkWorkers.reduce((n, w) => n + pss(w.pid), 0);
  const protoPss = pss(proto.pid);
  await Promise.all([...execWorkers, ...forkWorkers].map((w) => w.stop()));

  const row = (name, value) => console.log(`| ${name.padEnd(56)} | ${value.padStart(12)} |`);
  const ms = (runs, key) => median(runs.map((r) => r[key])).toFixed(1);
  console.log(`preload: ${median(preloadMs).toFixed(1)} ms inside PHP (exec'd workers, median); ${ROUNDS} starts each way, median\n`);
  console.log(`| ${'need a worker -> ready'.padEnd(56)} | ${'ms'.padStart(12)} |`);
  console.log(`| ${'-'.repeat(56)} | ${'-'.repeat(12)} |`);
  row("exec'd (php start-up + preload)", ms(exec, 'ms'));
  row('forked from a warm prototype', ms(fork, 'ms'));
  row('ratio', `${(ms(exec, 'ms') / ms(fork, 'ms')).toFixed(1)}x`);
  console.log('');
  if (fpm) console.log(`php-fpm ${fpm.version}: the preload took ${ms(fpm.boot, 'preloadMs')} ms inside its child (opcache on, php-fpm's default)\n`);
  console.log(`| ${'no worker yet: request -> answer'.padEnd(56)} | ${'ms'.padStart(12)} |`);
  console.log(`| ${'-'.repeat(56)} | ${'-'.repeat(12)} |`);
  row("exec'd worker (php start-up + preload + task)", ms(exec, 'firstMs'));
  row('forked from a warm prototype (fork + task)', ms(fork, 'firstMs'));
  if (fpm) {
    row('php-fpm ondemand, script requires the preload', ms(fpm.boot, 'coldMs'));
    row('php-fpm ondemand, bare script (its fork alone)', ms(fpm.bare, 'coldMs'));
    row('php-fpm, child there: the preload script again', ms(fpm.boot, 'warmMs'));
    row('php-fpm, child there: the bare script again', ms(fpm.bare, 'warmMs'));
  }
  console.log('');
  console.log(`| ${'PSS of 8 idle workers'.padEnd(56)} | ${'MiB'.padStart(12)} |`);
  console.log(`| ${'-'.repeat(56)} | ${'-'.repeat(12)} |`);
  row("exec'd", (execPss / 1024).toFixed(1));
  row('forked', (forkPss / 1024).toFixed(1));
  row('forked + the prototype', ((forkPss + protoPss) / 1024).toFixed(1));
} finally {
  proto.retire();
  await proto.process.exited;
  rmSync(dir, { recursive: true, force: true });
}
