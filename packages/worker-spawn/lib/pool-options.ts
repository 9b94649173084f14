// What a WorkerPool is told and what it tells: its options, checked once
// here, and the shapes of its reports.

import { availableParallelism } from 'node:os';
import { invalidArgType, optionalInteger, optionsObject, outOfRange, validateCString } from './internal/args.js';
import { DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, MIN_MAX_FRAME } from './protocol.js';
import type { SpawnWorkerOptions } from './worker-handle.js';

export interface WorkerPoolOptions extends SpawnWorkerOptions {
  /** Workers kept running. Default: the number of CPUs (`os.availableParallelism()`). With `maxSize`, the fewest kept. */
  size?: number;
  /**
   * Grow up to this many workers while tasks wait for one, like php-fpm's
   * `pm = dynamic`: a task queued with no idle worker starts one more.
   * Workers above `size` stop after `idleTtl` ms idle (with `idleTtl` 0 they
   * stay). Default: `size` (a fixed pool).
   */
  maxSize?: number;
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
  /**
   * Milliseconds a new worker has to say ready before it is killed (and
   * counted as a crash); with `prototype`, also what a prototype's preload
   * has to finish in (else it is killed: a 'spawnError', retried with the
   * crash backoff). Default 30000.
   */
  readyTimeout?: number;
  /** Tasks that may wait for a worker; more are rejected with ERR_WORKER_QUEUE_FULL. Default 10000. */
  maxQueue?: number;
  /**
   * Delay before replacing a worker lost in a crash loop (one that died
   * before saying ready, or idle within `resetAfter` ms of saying it, or
   * could not be started): `initial` ms, doubling per consecutive such loss
   * up to `max` ms, reset by a completed task. Default 100 / 10000. A worker
   * that dies with a task in hand is replaced at once, and so is one that had
   * been ready for `resetAfter` ms (default 1000; 0: never, only a task
   * shows a worker was serving), which also resets the streak. A crash loop
   * holds up no other replacement. `wasServing`: for workers that serve
   * outside tasks (their own event loop), asked about one that died idle
   * within `resetAfter` ms of saying ready; `true` (it had a request of its
   * own in hand) replaces it at once, as with a task in hand.
   */
  backoff?: { initial?: number; max?: number; resetAfter?: number; wasServing?: (worker: PoolWorkerInfo) => boolean };
  /**
   * Fork workers from a prototype instead of starting each with `command`:
   * one PHP process runs `preload` once, then forks a worker on request,
   * which runs `script` with all `preload` defined already loaded (README,
   * "Prototype workers"). PHP only (ext-pcntl, ext-posix, ext-sockets).
   */
  prototype?: PrototypeOptions;
}

export interface PrototypeOptions {
  /** The PHP file the prototype runs once before forking: autoloaders, container, config, warm caches. */
  preload: string;
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
 * the next frame could not be trusted to start where the announced length
 * says. `'prototype'`: the prototype it was forked from died. `'retired'`:
 * WorkerPool.retire() said it was leaving.
 */
export type RecycleReason = 'maxJobs' | 'idleTtl' | 'memory' | 'execTimeout' | 'reload' | 'oversize' | 'prototype' | 'retired';

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
  /** Workers replaced on purpose (a RecycleReason: maxJobs, idleTtl, memory, execTimeout, reload, retire()...). */
  recycled: number;
  /** Tasks that hit execTimeout. */
  timedOut: number;
  /** Every live worker. */
  list: PoolWorkerInfo[];
}

/** The pool's own options, checked, with their defaults. */
export interface PoolSettings {
  size: number;
  maxSize: number;
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
  /** A worker ready this long (ms) before it died was serving, not crash looping; 0: no time is enough. */
  backoffResetAfter: number;
  /** Asked whether a worker lost idle soon after ready was serving outside tasks; null: it was not. */
  backoffWasServing: ((worker: PoolWorkerInfo) => boolean) | null;
  /** The prototype's preload, when workers are forked from one. */
  preload: string | null;
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
  const settings: Omit<PoolSettings, 'backoffInitial' | 'backoffMax' | 'backoffResetAfter' | 'backoffWasServing' | 'preload' | 'maxSize'> = {
    size: optionalInteger(opts, 'size', availableParallelism(), 1, 1024),
    maxJobs: optionalInteger(opts, 'maxJobs', 0, 0),
    allocateTimeout: optionalInteger(opts, 'allocateTimeout', 60_000, 0, MAX_MS),
    execTimeout: optionalInteger(opts, 'execTimeout', 0, 0, MAX_MS),
    idleTtl: optionalInteger(opts, 'idleTtl', 0, 0, MAX_MS),
    maxWorkerMemory: optionalInteger(opts, 'maxWorkerMemory', 0, 0),
    destroyTimeout: optionalInteger(opts, 'destroyTimeout', 5000, 0, MAX_MS),
    readyTimeout: optionalInteger(opts, 'readyTimeout', 30_000, 1, MAX_MS),
    maxQueue: optionalInteger(opts, 'maxQueue', 10_000, 0),
    maxFrame: optionalInteger(opts, 'maxFrame', DEFAULT_MAX_FRAME, MIN_MAX_FRAME, MAX_FRAME_LIMIT),
  };
  const maxSize = optionalInteger(opts, 'maxSize', settings.size, 1, 1024);
  if (maxSize < settings.size) throw outOfRange('options.maxSize', `an integer >= options.size (${settings.size}) && <= 1024`, maxSize);
  const backoff = optionsObject(opts['backoff'], 'options.backoff');
  const backoffInitial = optionalInteger(backoff, 'initial', 100, 0, MAX_MS, 'options.backoff');
  const backoffMax = optionalInteger(backoff, 'max', 10_000, 0, MAX_MS, 'options.backoff');
  const backoffResetAfter = optionalInteger(backoff, 'resetAfter', 1000, 0, MAX_MS, 'options.backoff');
  const backoffWasServing = backoff['wasServing'] ?? null;
  if (backoffWasServing !== null && typeof backoffWasServing !== 'function') throw invalidArgType('options.backoff.wasServing', 'of type function', backoffWasServing);
  let preload: string | null = null;
  if (opts['prototype'] !== undefined) {
    const prototype = optionsObject(opts['prototype'], 'options.prototype');
    preload = validateCString(prototype['preload'], 'options.prototype.preload');
  }
  const { size, maxSize: _m, maxJobs, allocateTimeout, execTimeout, idleTtl, maxWorkerMemory, destroyTimeout, readyTimeout, maxQueue, backoff: _b, prototype: _p, ...spawnOptions } =
    options;
  return { settings: { ...settings, maxSize, backoffInitial, backoffMax, backoffResetAfter, backoffWasServing: backoffWasServing as PoolSettings['backoffWasServing'], preload }, spawnOptions: { ...spawnOptions, maxFrame: settings.maxFrame } };
}
