// What a WorkerPool is told and what it tells: its options, checked once
// here, and the shapes of its reports.

import { availableParallelism } from 'node:os';
import { intOption, optionsObject } from './args.js';
import { DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, MIN_MAX_FRAME } from './protocol.js';
import type { SpawnWorkerOptions } from './worker-handle.js';

export interface WorkerPoolOptions extends SpawnWorkerOptions {
  /** Workers kept running. Default: the number of CPUs (`os.availableParallelism()`). */
  size?: number;
  /** Replace a worker after it has served this many tasks. Default 0: never. */
  maxJobs?: number;
  /** Milliseconds a task may wait in the queue for a free worker before it is rejected. Default 60000; 0: forever. */
  allocateTimeout?: number;
  /** Milliseconds a task may run; past that its worker is killed and the task rejected. Default 0: no limit. */
  execTimeout?: number;
  /** Replace a worker that has been idle this many milliseconds. Default 0: never. */
  idleTtl?: number;
  /** Replace a worker whose resident memory (VmRSS) exceeds this many bytes after a task. Default 0: no limit. */
  maxWorkerMemory?: number;
  /** Milliseconds a stopping worker gets to finish its task before SIGTERM (then SIGKILL 1 s later). Default 5000. */
  destroyTimeout?: number;
  /** Milliseconds a new worker has to say ready before it is killed (and counted as a crash). Default 30000. */
  readyTimeout?: number;
  /** Tasks that may wait for a worker; more are rejected with ERR_WORKER_QUEUE_FULL. Default 10000. */
  maxQueue?: number;
  /**
   * Delay before replacing a worker lost in a crash loop (one that died
   * before saying ready, or while idle, or could not be started): `initial`
   * ms, doubling per consecutive such loss up to `max` ms, reset by a
   * completed task. Default 100 / 10000. A worker that dies with a task in
   * hand is replaced at once, and a crash loop holds up no other replacement.
   */
  backoff?: { initial?: number; max?: number };
}

/** A worker as the pool reports it in events and stats. */
export interface PoolWorkerInfo {
  pid: number;
  state: 'starting' | 'idle' | 'busy' | 'stopping';
  /** Tasks this worker has completed. */
  jobs: number;
  /** Incremented by every reload(); workers of an older generation are being replaced. */
  generation: number;
  /** When the worker was spawned (Date.now()). */
  startedAt: number;
}

/**
 * Why the pool replaced a worker on purpose. `'oversize'`: its answer was
 * over maxFrame and not all of it had arrived when its task was rejected, so
 * the next frame could not be trusted to start where the announced length says.
 */
export type RecycleReason = 'maxJobs' | 'idleTtl' | 'memory' | 'execTimeout' | 'reload' | 'oversize';

export interface ReloadOptions {
  /**
   * Milliseconds an old worker still busy once its replacement is ready may
   * take to finish its task; past that it is killed and the task rejected
   * with ERR_WORKER_DRAIN_TIMEOUT. Default 60000; 0: wait as long as it takes.
   */
  drainTimeout?: number;
}

export interface PoolStats {
  /** The configured size. */
  size: number;
  /** Workers alive now, in any state (more than `size` during a reload). */
  workers: number;
  starting: number;
  idle: number;
  busy: number;
  stopping: number;
  /** Tasks waiting for a worker. */
  queued: number;
  /** Tasks answered with a response. */
  completed: number;
  /** Tasks rejected, for any reason. */
  failed: number;
  /** Workers started since the pool was created. */
  spawned: number;
  /** Workers that exited without being asked to. */
  crashed: number;
  /** Workers replaced on purpose (maxJobs, idleTtl, memory, execTimeout, reload). */
  recycled: number;
  /** Tasks that hit execTimeout. */
  timedOut: number;
  /** Every live worker. */
  list: PoolWorkerInfo[];
}

/** The pool's own options, checked, with their defaults. */
export interface PoolSettings {
  size: number;
  maxJobs: number;
  allocateTimeout: number;
  execTimeout: number;
  idleTtl: number;
  maxWorkerMemory: number;
  destroyTimeout: number;
  readyTimeout: number;
  maxQueue: number;
  maxFrame: number;
  backoffInitial: number;
  backoffMax: number;
}

const MAX_MS = 2 ** 31 - 1;

/**
 * The pool's settings, and the options its workers are spawned with (those
 * spawnWorker checks itself when the first worker starts).
 * @throws TypeError/RangeError naming the bad option
 */
export function poolSettings(options: WorkerPoolOptions): { settings: PoolSettings; spawnOptions: SpawnWorkerOptions } {
  // A pool needs at least a script, so undefined is as wrong as null here.
  const opts = optionsObject(options ?? null);
  const settings: Omit<PoolSettings, 'backoffInitial' | 'backoffMax'> = {
    size: intOption(opts, 'size', availableParallelism(), 1, 1024),
    maxJobs: intOption(opts, 'maxJobs', 0, 0),
    allocateTimeout: intOption(opts, 'allocateTimeout', 60_000, 0, MAX_MS),
    execTimeout: intOption(opts, 'execTimeout', 0, 0, MAX_MS),
    idleTtl: intOption(opts, 'idleTtl', 0, 0, MAX_MS),
    maxWorkerMemory: intOption(opts, 'maxWorkerMemory', 0, 0),
    destroyTimeout: intOption(opts, 'destroyTimeout', 5000, 0, MAX_MS),
    readyTimeout: intOption(opts, 'readyTimeout', 30_000, 1, MAX_MS),
    maxQueue: intOption(opts, 'maxQueue', 10_000, 0),
    maxFrame: intOption(opts, 'maxFrame', DEFAULT_MAX_FRAME, MIN_MAX_FRAME, MAX_FRAME_LIMIT),
  };
  const backoff = optionsObject(opts['backoff'], 'options.backoff');
  const backoffInitial = intOption(backoff, 'initial', 100, 0, MAX_MS, 'options.backoff');
  const backoffMax = intOption(backoff, 'max', 10_000, 0, MAX_MS, 'options.backoff');
  const { size, maxJobs, allocateTimeout, execTimeout, idleTtl, maxWorkerMemory, destroyTimeout, readyTimeout, maxQueue, backoff: _b, ...spawnOptions } =
    options;
  return { settings: { ...settings, backoffInitial, backoffMax }, spawnOptions: { ...spawnOptions, maxFrame: settings.maxFrame } };
}
