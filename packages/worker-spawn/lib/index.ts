import { join } from 'node:path';

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
 * Absolute path of the PHP worker library shipped in this package
 * (`php/Worker.php`): `require` it from a PHP worker script, or copy it.
 */
export const PHP_WORKER_LIBRARY: string = join(__dirname, '..', 'php', 'Worker.php');
export { WorkerPool, type WorkerPoolOptions, type PoolStats, type PoolWorkerInfo, type RecycleReason } from './pool.js';
