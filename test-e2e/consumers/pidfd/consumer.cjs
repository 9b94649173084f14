// A CommonJS user of @folk/pidfd, installed from its tarball.
const { spawn } = require('node:child_process');
const { PidFd } = require('@folk/pidfd');

async function main() {
  // Our own process: a handle to it can borrow its fds with pidfd_getfd.
  const self = PidFd.open(process.pid);
  const fd = self.getFd(1);
  if (!Number.isInteger(fd) || fd < 0) throw new Error(`getFd gave ${fd}`);
  require('node:fs').closeSync(fd);

  // Bad arguments are TypeErrors/RangeErrors with Node's codes.
  try {
    PidFd.open(-1);
    throw new Error('open(-1) succeeded');
  } catch (err) {
    if (!(err instanceof RangeError) || err.code !== 'ERR_OUT_OF_RANGE') throw err;
  }

  // Plain JavaScript cannot reach the TypeScript-private constructor either
  // (it would have made a handle owning stdout).
  try {
    new PidFd(1, process.pid, false);
    throw new Error('new PidFd() succeeded');
  } catch (err) {
    if (!(err instanceof TypeError) || err.code !== 'ERR_ILLEGAL_CONSTRUCTOR') throw err;
  }

  // An aborted wait rejects with AbortError; a kill resolves the next one.
  const sleeper = spawn('sleep', ['1000'], { stdio: 'ignore' });
  const p = PidFd.open(sleeper.pid);
  const ac = new AbortController();
  const aborted = p.wait({ signal: ac.signal }).then(
    () => 'resolved',
    (err) => err.name,
  );
  ac.abort();
  if ((await aborted) !== 'AbortError') throw new Error('abort did not reject');
  const waiting = p.wait();
  p.kill(9);
  const info = await waiting;
  if (info.pid !== sleeper.pid) throw new Error(`wait: ${JSON.stringify(info)}`);
  p[Symbol.dispose]();
  self.close();
  console.log('ok');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
