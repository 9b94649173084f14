// Figures, not assertions: prototype workers against exec'd ones.
//
//   need a worker -> ready   exec'd: spawnWorker() of a script that runs the
//                            preload itself (php start-up + preload), until
//                            its ready message; forked: a fork request to a
//                            warm prototype that ran the same preload, until
//                            the forked worker's ready message
//   PSS of 8 workers         the sum of Pss in /proc/<pid>/smaps_rollup of 8
//                            idle workers each way (forked: with and without
//                            the prototype itself)
//
// The preload builds an array of 320,000 strings and defines a class (about
// 50 ms of work on this machine; the figure printed says how long it took).
// Median of ROUNDS starts each way, alternating. 2 shared cores: noisy.
//
//   node bench/worker-spawn/prototype.mjs [--quick]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ws = '../../packages/worker-spawn/dist';
const { spawnWorker, workerFromProcess } = await import(`${ws}/worker-handle.js`);
const { Prototype } = await import(`${ws}/prototype.js`);
const { processPlan } = await import(`${ws}/worker-process.js`);
const { PHP_WORKER_LIBRARY } = await import(`${ws}/php-library.js`);

const QUICK = process.argv.includes('--quick');
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

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pss = (pid) => Number(/^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))[1]);

function startPrototype() {
  const plan = processPlan({ script: forkScript }, true);
  return new Prototype({ ...plan, argv: [join(PHP_WORKER_LIBRARY, '..', 'prototype.php'), preload, ...plan.argv] }, preload, MAX_FRAME);
}

async function execStart() {
  const t0 = process.hrtime.bigint();
  const worker = spawnWorker({ script: execScript, maxFrame: MAX_FRAME });
  worker.stdout.resume();
  await worker.ready;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, worker };
}

async function forkStart(proto) {
  const t0 = process.hrtime.bigint();
  const worker = workerFromProcess(await proto.fork(), MAX_FRAME);
  await worker.ready;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, worker };
}

const proto = startPrototype();
proto.process.stdout.resume();
await proto.ready;
try {
  const exec = [];
  const fork = [];
  let preloadMs = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const e = await execStart();
    preloadMs = Number((await e.worker.request('ms')).toString());
    if (!(await e.worker.request('x')).toString().startsWith('hello x320000')) throw new Error('exec worker lacks the preload');
    exec.push(e.ms);
    await e.worker.stop();
    const f = await forkStart(proto);
    if (!(await f.worker.request('x')).toString().startsWith('hello x320000')) throw new Error('forked worker lacks the preload');
    fork.push(f.ms);
    await f.worker.stop();
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

  const row = (name, value) => console.log(`| ${name.padEnd(44)} | ${value.padStart(12)} |`);
  console.log(`preload: ${preloadMs.toFixed(1)} ms inside PHP; ${ROUNDS} starts each way, median\n`);
  console.log(`| ${'need a worker -> ready'.padEnd(44)} | ${'ms'.padStart(12)} |`);
  console.log(`| ${'-'.repeat(44)} | ${'-'.repeat(12)} |`);
  row("exec'd (php start-up + preload)", median(exec).toFixed(1));
  row('forked from a warm prototype', median(fork).toFixed(1));
  row('ratio', `${(median(exec) / median(fork)).toFixed(1)}x`);
  console.log('');
  console.log(`| ${'PSS of 8 idle workers'.padEnd(44)} | ${'MiB'.padStart(12)} |`);
  console.log(`| ${'-'.repeat(44)} | ${'-'.repeat(12)} |`);
  row("exec'd", (execPss / 1024).toFixed(1));
  row('forked', (forkPss / 1024).toFixed(1));
  row('forked + the prototype', ((forkPss + protoPss) / 1024).toFixed(1));
} finally {
  proto.retire();
  await proto.process.exited;
  rmSync(dir, { recursive: true, force: true });
}
