// One application using all five packages, bundled by the e2e suite with
// esbuild (CommonJS and ES module output) and ncc, then run from a directory
// with no node_modules. It is also its own Node worker: WorkerPool starts
// this same file, which serves tasks when it finds the worker's fds.
//   node app.js [--php]     prints "ok" last when everything worked
import { spawn as spawnChild } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, readlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawn } from '@folk/fd-inherit';
import { PidFd } from '@folk/pidfd';
import { recvFds, sendFds } from '@folk/scm-rights';
import { socketpair } from '@folk/socketpair';
import { PHP_WORKER_LIBRARY, WorkerPool } from '@folk/worker-spawn';
import { serve } from '@folk/worker-spawn/worker';

function check(what, ok) {
  if (!ok) throw new Error(`${what} failed`);
  console.log(`${what}: yes`);
}

async function main() {
  const self = process.argv[1];

  // socketpair: bytes across a stream pair.
  const [a, b] = socketpair('stream');
  writeSync(a, 'ping');
  const buf = Buffer.alloc(16);
  check('socketpair', buf.toString('utf8', 0, readSync(b, buf)) === 'ping');

  // pidfd: a wait resolved on the event loop, with the signal that ended it.
  const sleeper = spawnChild('sleep', ['60'], { stdio: 'ignore' });
  const pidfd = PidFd.open(sleeper.pid);
  const waited = pidfd.wait();
  pidfd.kill('SIGKILL');
  check('pidfd wait', (await waited).signal === 'SIGKILL');
  pidfd.close();

  // fd-inherit: the child finds the socket at fd 5 and writes into it.
  const child = spawn('/bin/sh', ['-c', 'echo inherited >&5'], { fds: { 5: b } });
  const exit = await child.wait();
  const n = readSync(a, buf);
  check('fd-inherit spawn with an fd map', exit.code === 0 && buf.toString('utf8', 0, n) === 'inherited\n');
  child.pidfd.close();

  // scm-rights: an fd crosses the socket and arrives as a new fd for the same file.
  const devnull = openSync('/dev/null', 'r');
  sendFds(a, Buffer.from('fd'), [devnull]);
  const msg = recvFds(b);
  check('scm-rights', msg.fds.length === 1 && readlinkSync(`/proc/self/fd/${msg.fds[0]}`) === '/dev/null');
  for (const fd of [devnull, ...msg.fds, a, b]) closeSync(fd);

  // worker-spawn: a Node worker (this very bundle) ...
  const node = new WorkerPool({ command: process.execPath, script: self, size: 1 });
  check('worker-spawn Node worker', (await node.run('task')).toString() === 'node: TASK');
  await node.stop();

  // ... and a PHP worker, when asked for (php-cli on the machine).
  if (process.argv.includes('--php')) {
    check('PHP_WORKER_LIBRARY exists', readFileSync(PHP_WORKER_LIBRARY, 'utf8').includes('namespace Folk;'));
    const php = new WorkerPool({ script: join(dirname(self), 'worker.php'), args: [PHP_WORKER_LIBRARY], size: 1 });
    check('worker-spawn PHP worker', (await php.run('task')).toString() === 'php: TASK');
    await php.stop();
  }
  console.log('ok');
}

if (process.env.FOLK_TASK_FD) {
  serve((payload) => `node: ${payload.toString().toUpperCase()}`);
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
