// An ES module user of @folk/worker-spawn, installed from its tarball (with
// the tarballs of the four packages it composes).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { CONTROL_FD, PHP_WORKER_LIBRARY, TASK_FD, WorkerError, WorkerPool, serverFd, spawnWorker } from '@folk/worker-spawn';

if (TASK_FD !== 3 || CONTROL_FD !== 4) throw new Error(`fd constants ${TASK_FD}/${CONTROL_FD}`);

// A Node worker using the package's ./worker export, resolved from this project.
// FOLK_E2E_NODE is the command that starts this same Node when its binary
// cannot be exec'd directly (the arm64 one, under qemu).
const node = process.env.FOLK_E2E_NODE || process.execPath;
const nodeWorker = join(process.cwd(), 'upper-worker.cjs');
writeFileSync(
  nodeWorker,
  `require('@folk/worker-spawn/worker').serve((p) => {
     if (p.toString() === 'fail') throw new Error('asked to fail');
     return p.toString().toUpperCase();
   });\n`,
);

const worker = spawnWorker({ command: node, script: nodeWorker });
const ready = await worker.ready;
if (ready.pid !== worker.pid || ready.lang !== 'node') throw new Error(`ready: ${JSON.stringify(ready)}`);
if ((await worker.request('hello')).toString() !== 'HELLO') throw new Error('request answered wrongly');
const exit = await worker.stop();
if (exit.code !== 0) throw new Error(`worker exit: ${JSON.stringify(exit)}`);

const pool = new WorkerPool({ command: node, script: nodeWorker, size: 2, maxJobs: 10 });
const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => pool.run(`task ${i}`)));
answers.forEach((a, i) => {
  if (a.toString() !== `TASK ${i}`) throw new Error(`task ${i}: ${a}`);
});
try {
  await pool.run('fail');
  throw new Error('a failing task resolved');
} catch (err) {
  if (!(err instanceof WorkerError) || err.code !== 'ERR_WORKER_TASK') throw err;
}
const stats = pool.stats();
if (stats.completed !== 50 || stats.recycled < 4) throw new Error(`stats: ${JSON.stringify(stats)}`);
await pool.stop();

// The PHP library ships in the tarball and runs from there. Like the package's
// own tests, this needs php-cli and fails (never skips) without it.
if (!readFileSync(PHP_WORKER_LIBRARY, 'utf8').includes('namespace Folk;')) throw new Error('php/Worker.php missing');
try {
  execFileSync('php', ['-m'], { stdio: 'ignore' });
} catch {
  throw new Error('php is not installed: the @folk/worker-spawn consumer needs php-cli 8.1+ (Debian/Ubuntu: apt-get install -y php-cli)');
}
{
  const script = join(process.cwd(), 'echo.php');
  writeFileSync(script, `<?php\nrequire ${JSON.stringify(PHP_WORKER_LIBRARY)};\nFolk\\Worker::fromEnv()->serve(fn ($p) => strrev($p));\n`);
  const w = spawnWorker({ script });
  if ((await w.ready).lang !== 'php') throw new Error('php worker: no ready handshake');
  if ((await w.request('abc')).toString() !== 'cba') throw new Error('php worker answered wrongly');
  if ((await w.stop()).code !== 0) throw new Error('php worker did not exit 0');
}
if (!existsSync(PHP_WORKER_LIBRARY)) throw new Error('library path');
const server = net.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
if (!Number.isInteger(serverFd(server))) throw new Error('serverFd');
await new Promise((resolve) => server.close(resolve));
console.log('ok');
