// A CommonJS user of @folk/worker-spawn, installed from its tarball.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { WorkerPool, WorkerError } = require('@folk/worker-spawn');
const { serve } = require('@folk/worker-spawn/worker');

if (typeof serve !== 'function') throw new Error('./worker export has no serve()');

const script = join(process.cwd(), 'len-worker.cjs');
writeFileSync(script, "require('@folk/worker-spawn/worker').serve((p) => String(p.length));\n");

(async () => {
  const pool = new WorkerPool({ command: process.execPath, script, size: 1, maxFrame: 4096 });
  const payload = Buffer.alloc(4096, 0xff);
  if ((await pool.run(payload)).toString() !== '4096') throw new Error('length worker answered wrongly');
  try {
    await pool.run(Buffer.alloc(4097));
    throw new Error('an oversize task was accepted');
  } catch (err) {
    if (!(err instanceof WorkerError) || err.code !== 'ERR_WORKER_FRAME_TOO_LARGE') throw err;
  }
  await pool.stop();
  console.log('ok');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
