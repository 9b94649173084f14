// A CommonJS user of @folk/fd-inherit, installed from its tarball.
const { closeSync, openSync } = require('node:fs');
const { isInheritable, setInheritable, spawn, stdioFromFdMap, listenFds } = require('@folk/fd-inherit');

async function main() {
  // Exit codes and signals come back through the child's pidfd.
  const ok = spawn('/bin/sh', ['-c', 'exit 7'], { stdin: 'ignore' });
  const exit = await ok.wait();
  if (exit.code !== 7 || exit.pid !== ok.pid) throw new Error(`exit ${JSON.stringify(exit)}`);
  ok.pidfd.close();

  const sleeper = spawn('/bin/sleep', ['60']);
  sleeper.kill('SIGKILL');
  if ((await sleeper.wait()).signal !== 'SIGKILL') throw new Error('kill did not arrive');
  sleeper.pidfd.close();

  // CLOEXEC helpers.
  const fd = openSync('/dev/null', 'r');
  setInheritable(fd, true);
  if (!isInheritable(fd)) throw new Error('setInheritable(true) did not stick');
  setInheritable(fd, false);
  if (isInheritable(fd)) throw new Error('setInheritable(false) did not stick');
  closeSync(fd);

  const stdio = stdioFromFdMap({ 3: 10 }, { stdin: 'ignore' });
  if (JSON.stringify(stdio) !== JSON.stringify(['ignore', 'inherit', 'inherit', 10])) throw new Error(`stdio ${stdio}`);
  if (listenFds().length !== 0) throw new Error('no socket activation here');

  let threw = false;
  try {
    spawn('/bin/true', [], { fds: { 3: -1 } });
  } catch (err) {
    threw = err instanceof RangeError && err.code === 'ERR_OUT_OF_RANGE';
  }
  if (!threw) throw new Error('a negative fd was not refused');
  console.log('ok');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
