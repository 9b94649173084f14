// Calls every public function of the four native packages with arguments
// drawn at random (wrong types, closed and huge fds, NaN, objects whose
// valueOf or property reads throw, proxies, long arrays, big buffers), in a
// process of its own: a native crash shows as this process's signal, and
// the fds it plays with are its own (a closed fd number reused by the test
// runner could otherwise be wrapped and closed).
//
//   node fuzz-arguments.mjs SEED ROUNDS
//
// Prints one JSON line: { calls, succeeded, problems }. A problem is a throw
// of something that is not an Error with a message, an fd left open by a call
// that threw, or a promise that neither settled nor stayed pending politely
// (a rejection nobody could catch).
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn as childSpawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packages = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'packages');
const load = (name) => import(join(packages, name, 'dist', 'index.mjs'));
const [{ socketpair, socketpairStreams }, { PidFd }, fdInherit, scm] = await Promise.all(['socketpair', 'pidfd', 'fd-inherit', 'scm-rights'].map(load));

/** A small seeded generator (mulberry32): a failure names a seed that repeats it. */
let state = 0;
function random() {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];

const closedFd = (() => {
  const fd = openSync('/dev/null', 'r');
  closeSync(fd);
  return fd;
})();
const throwing = { valueOf: () => { throw new Error('valueOf'); }, toString: () => { throw new Error('toString'); } };
const trap = () => { throw new Error('proxy trap'); };
const hostile = new Proxy({}, { get: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap });
const SCALARS = [undefined, null, true, false, 0, -0, 1, 2, 3, -1, 0.5, NaN, Infinity, -Infinity, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 31), 1e300,
  '', 'x', '0', '3', 'stream', 'dgram', 'seqpacket', 'SIGTERM', 'SIGKILL', 'SIGNOPE', 'a\0b', Symbol('s'), 10n, () => 1, new Date(0),
  closedFd, 4096, 65536, throwing, hostile, Object.create(null), {}, [], [0], [closedFd], [-1], [NaN], ['x'], Array(300).fill(closedFd),
  Buffer.alloc(0), Buffer.alloc(70_000), new Uint8Array(3), new ArrayBuffer(4)];
/** Option names the packages read, so random objects sometimes hit them. */
const KEYS = ['cloexec', 'nonblock', 'allowHalfOpen', 'flags', 'fds', 'env', 'cwd', 'stdio', 'signal', 'timeout', 'maxFds', 'maxBytes',
  'maxMessageBytes', 'uid', 'gid', 'argv0', 'detached', 'listenFds', 'unsetEnvironment', 'names', 'socket', 'state', 'status', 'rlimits',
  'umask', 'noNewPrivileges', 'pdeathsig', 'namespaces', 'keepOpen', 'nonBlocking'];
function value(depth = 0) {
  const r = random();
  if (depth < 2 && r < 0.15) {
    const o = {};
    for (let i = Math.floor(random() * 4); i > 0; i--) o[pick(KEYS)] = value(depth + 1);
    return o;
  }
  if (depth < 2 && r < 0.2) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
  return pick(SCALARS);
}

const openFds = () => readdirSync('/proc/self/fd').flatMap((fd) => {
  try {
    return [`${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`];
  } catch {
    return [];
  }
});
const shown = (args) => args.map((a) => {
  try {
    return typeof a === 'symbol' || typeof a === 'bigint' || typeof a === 'function' ? String(a) : JSON.stringify(a)?.slice(0, 60);
  } catch {
    return '(unprintable)';
  }
}).join(', ');

const calls = {};
const succeeded = {};
const problems = new Set();

/** One call: a result (given to `release`), or a throw that must be an Error with a message and leave no fd behind. */
async function call(name, fn, args, release = () => {}) {
  calls[name] = (calls[name] ?? 0) + 1;
  const before = openFds();
  try {
    let result = fn(...args);
    if (result instanceof Promise) result = await Promise.race([result, new Promise((resolve) => setTimeout(resolve, 100, 'pending'))]);
    succeeded[name] = (succeeded[name] ?? 0) + 1;
    release(result);
  } catch (err) {
    if (!(err instanceof Error) || err.message === '') problems.add(`${name}(${shown(args)}) threw ${String(err)}, not an Error with a message`);
    const leaked = openFds().filter((fd) => !before.includes(fd));
    if (leaked.length > 0) problems.add(`${name}(${shown(args)}) threw and left ${leaked.join(', ')} open`);
  }
}
const closeAll = (fds) => Array.isArray(fds) && fds.forEach((fd) => typeof fd === 'number' && closeSync(fd));
async function fuzz(seed, rounds) {
  state = seed;
  process.on('unhandledRejection', (err) => problems.add(`a rejection nobody could catch: ${err}`));
  for (let round = 0; round < rounds; round++) {
    await oneRound();
  }
  console.log(JSON.stringify({ calls, succeeded, problems: [...problems] }));
}

async function oneRound() {
  // @folk/socketpair
  await call('socketpair', socketpair, [value(), value()], closeAll);
  await call('socketpairStreams', socketpairStreams, [value()], (pair) => pair.forEach((s) => s.destroy()));

  // @folk/pidfd, on a child of ours (a random pid could be anyone's: only opened, never signalled)
  const child = childSpawn('sleep', ['30'], { stdio: 'ignore' });
  await call('PidFd.open', PidFd.open, [pick([child.pid, value()]), value()], (p) => p.close());
  const pidfd = PidFd.open(child.pid);
  await call('PidFd.kill', (...a) => pidfd.kill(...a), [pick(['SIGCONT', value()])]);
  await call('PidFd.getFd', (...a) => pidfd.getFd(...a), [pick([0, value()])], closeSync);
  await call('PidFd.wait', (...a) => pidfd.wait(...a), [value()]);
  await call('PidFd.tryWait', (...a) => pidfd.tryWait(...a), [value()]);
  child.kill('SIGKILL');
  await pidfd.wait().catch(() => {});
  pidfd.close();
  await call('PidFd.adopt', PidFd.adopt, [value(), value()], (p) => p.close());

  // @folk/fd-inherit (no cgroup option: it would make directories under /sys/fs/cgroup)
  const options = value();
  if (options !== null && typeof options === 'object' && !Array.isArray(options) && options !== hostile) delete options.cgroup;
  await call('spawn', fdInherit.spawn, [pick(['/bin/true', 'true', value()]), pick([[], value()]), options], (sub) => sub.wait().catch(() => {}));
  await call('isInheritable', fdInherit.isInheritable, [value()]);
  await call('stdioFromFdMap', fdInherit.stdioFromFdMap, [value(), value()]);
  await call('listenFds', fdInherit.listenFds, [value()], (list) => list.forEach((l) => closeSync(l.fd)));
  await call('notify', fdInherit.notify, [value(), value()]);

  // @folk/scm-rights, on a non-blocking pair of ours
  const [a, b] = socketpair('stream', { nonblock: true });
  await call('sendFds', scm.sendFds, [pick([a, value()]), pick([Buffer.from('x'), value()]), pick([[0], value()])]);
  await call('recvFds', scm.recvFds, [pick([b, value()]), value()], (m) => closeAll(m.fds));
  await call('peerCredentials', scm.peerCredentials, [pick([a, value()])]);
  await call('peerPidFd', scm.peerPidFd, [pick([a, value()])], closeSync);
  let socket = null;
  await call('new FdSocket', (...x) => (socket = new scm.FdSocket(...x)), [pick([a, value()]), value()]);
  if (socket !== null) {
    socket.on('error', () => {});
    await call('FdSocket.send', (...x) => socket.send(...x), [value(), value(), value()]);
    socket.close();
  } else {
    closeSync(a);
  }
  closeSync(b);

  // Last, on fds opened for them (and random values): closeFds and
  // setInheritable act on any fd they are given, and this process's own
  // (its stdout, the files above) are not theirs to close.
  // (closedFd may be open again by now: an fd of ours becomes one no process has this many of.)
  const spare = [0, 1, 2].map(() => openSync('/dev/null', 'r'));
  const ours = (x) => Number.isInteger(x) && x >= 0 && !spare.includes(x) && existsSync(`/proc/self/fd/${x}`);
  const onlySpare = (v) => (ours(v) ? 99_999 : Array.isArray(v) ? v.map((x) => (ours(x) ? 99_999 : x)) : v);
  await call('setInheritable', fdInherit.setInheritable, [onlySpare(pick([spare[0], value()])), pick([true, false, value()])]);
  await call('closeFds', scm.closeFds, [onlySpare(pick([spare, spare.slice(1), value()]))]);
  for (const fd of spare) {
    try {
      closeSync(fd);
    } catch {
      // closed by closeFds
    }
  }
}

// Random fds would hit whatever this process inherited (a test runner's
// IPC socket), and its stdout and stderr, which a parent's 'pipe' makes
// sockets (a blocking recvFds(1) waits for ever): run again with exactly
// fds 0, 1 and 2, through @folk/fd-inherit's spawn, the output in files.
if (process.env.FOLK_FUZZ_CLEAN !== '1') {
  const dir = mkdtempSync(join(tmpdir(), 'folk-fuzz-'));
  const [out, err] = ['out', 'err'].map((name) => openSync(join(dir, name), 'w+'));
  const again = fdInherit.spawn(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdin: 'ignore', stdout: out, stderr: err, env: { ...process.env, FOLK_FUZZ_CLEAN: '1' },
  });
  const exit = await again.wait();
  process.stdout.write(readFileSync(join(dir, 'out')));
  process.stderr.write(readFileSync(join(dir, 'err')));
  closeAll([out, err]);
  rmSync(dir, { recursive: true });
  if (exit.signal !== null) process.kill(process.pid, exit.signal);
  process.exitCode = exit.code ?? 1;
} else {
  await fuzz(...process.argv.slice(2).map(Number));
  process.exit(0); // (handles of random spawns may linger)
}

