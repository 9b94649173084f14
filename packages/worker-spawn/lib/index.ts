// @folk/worker-spawn: the FD 3/4 worker pattern in layers. The raw plumbing
// (spawnWorkerProcess), one worker speaking PROTOCOL.md on it (spawnWorker),
// a pool of those (WorkerPool). The child's side for Node workers is
// `@folk/worker-spawn/worker` (serve.ts); for PHP workers, php/Worker.php.

import { WorkerHandle } from './worker-handle.js';

export { TASK_FD, CONTROL_FD, spawnWorkerProcess, WorkerProcess, type WorkerProcessOptions } from './worker-process.js';
export { spawnWorker, WorkerHandle, type SpawnWorkerOptions, type StopOptions, type WorkerExitInfo } from './worker-handle.js';
export { ControlChannel, RESERVED_CONTROL_TYPES, type ReadyMessage, type ControlMessage } from './control-channel.js';
export { WorkerPool, type WorkerPoolOptions, type PoolStats, type PoolWorkerInfo, type RecycleReason, type ReloadOptions } from './pool.js';
export { WorkerError, type WorkerErrorCode } from './errors.js';
export type { RequestOptions } from './task-channel.js';
export { readRss } from './rss.js';
export { serverFd } from './server-fd.js';
export { PHP_WORKER_LIBRARY } from './php-library.js';
export { DEFAULT_MAX_FRAME, HEADER_SIZE, PROTOCOL_VERSION, FrameType, FrameFlags, FrameDecoder, encodeFrame, type FrameSink } from './protocol.js';
export type { ExitInfo } from '@folk/pidfd';
export type { IdMapping, IsolationOptions, NamespaceName } from '@folk/fd-inherit';

/**
 * @deprecated Renamed `WorkerHandle`: `Worker` is also the name of
 * `node:worker_threads`' class. The same class: `instanceof` holds for both.
 */
export const Worker: typeof WorkerHandle = WorkerHandle;
/** @deprecated Renamed `WorkerHandle`. */
export type Worker = WorkerHandle;
