// A CommonJS user of @folk/fd-inherit, installed from its tarball.
const { closeSync, existsSync, openSync, readFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { isInheritable, setInheritable, spawn, stdioFromFdMap, listenFds, PidFd } = require('@folk/fd-inherit');

// This project names @folk/fd-inherit alone; @folk/pidfd comes in as its
// ordinary dependency (a semver range, as published), with its own prebuild.
function checkPidfdDependency() {
  const own = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8'));
  if (Object.keys(own.dependencies).join() !== '@folk/fd-inherit') throw new Error('the project should depend on fd-inherit alone');
  const here = dirname(require.resolve('@folk/fd-inherit/package.json'));
  const manifest = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
  const range = manifest.dependencies && manifest.dependencies['@folk/pidfd'];
  if (!/^[\^~]?[0-9]+\.[0-9]+\.[0-9]+$/.test(String(range))) throw new Error(`@folk/pidfd dependency: ${JSON.stringify(range)}`);
  const pidfdDir = dirname(require.resolve('@folk/pidfd/package.json', { paths: [here] }));
  if (require(pidfdDir).PidFd !== PidFd) throw new Error('PidFd is not the one from the installed @folk/pidfd');
  if (existsSync(join(pidfdDir, 'build'))) throw new Error('@folk/pidfd was compiled instead of using its prebuild');
}

async function main() {
  checkPidfdDependency();

  // Exit codes and signals come back through the child's pidfd.
  const ok = spawn('/bin/sh', ['-c', 'exit 7'], { stdin: 'ignore' });
  if (!(ok.pidfd instanceof PidFd)) throw new Error('subprocess.pidfd is not a PidFd');
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
