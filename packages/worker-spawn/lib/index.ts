import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export {
  TASK_FD,
  CONTROL_FD,
  spawnWorker,
  readRss,
  Worker,
  ControlChannel,
  type SpawnWorkerOptions,
  type StopOptions,
  type ReadyMessage,
  type ControlMessage,
} from './spawn.js';
export { WorkerError, type WorkerErrorCode } from './errors.js';
export { serverFd } from './server-fd.js';
export type { ReloadOptions } from './pool.js';
export { DEFAULT_MAX_FRAME, HEADER_SIZE, PROTOCOL_VERSION, FrameType, FrameDecoder, encodeFrame, type FrameSink } from './protocol.js';
export type { ExitInfo } from '@folk/pidfd';

/**
 * Absolute path of the PHP worker library (`php/Worker.php`): `require` it
 * from a PHP worker script, or copy it. `FOLK_PHP_WORKER_LIBRARY` in the
 * environment overrides it; otherwise it is the package's own file, or, in a
 * bundle, `php/Worker.php` beside the bundle when copied there.
 */
export const PHP_WORKER_LIBRARY: string = phpWorkerLibrary();

function phpWorkerLibrary(): string {
  const named = process.env.FOLK_PHP_WORKER_LIBRARY;
  if (named) return resolve(named);
  // Installed, dist/ sits beside php/. In a CommonJS bundle __dirname is the
  // bundle's directory; an ES module bundle has none, and the bundle is
  // taken to be the main script.
  const main = process.argv[1];
  const here = typeof __dirname === 'string' ? __dirname : main ? dirname(resolve(main)) : process.cwd();
  const own = join(here, '..', 'php', 'Worker.php');
  const beside = join(here, 'php', 'Worker.php');
  return !existsSync(own) && existsSync(beside) ? beside : own;
}

export { WorkerPool, type WorkerPoolOptions, type PoolStats, type PoolWorkerInfo, type RecycleReason } from './pool.js';
