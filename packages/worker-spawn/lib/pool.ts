// WorkerPool: a fixed number of FD 3/4 workers, one task at a time each,
// with the supervision rules of RoadRunner-style PHP application servers.
// Here: the tasks, queued and handed to free workers. Which workers there
// are (started, replaced, reloaded) is pool-workers.ts; the options and
// reports are pool-options.ts.

import { EventEmitter } from 'node:events';
import { closeFds } from '@folk/scm-rights';
import { invalidArgType, invalidArgValue, optionalInteger, optionsObject, validateInteger } from './internal/args.js';
import { RESERVED_CONTROL_TYPES, type ControlMessage } from './control-channel.js';
import { WorkerError } from './errors.js';
import { Queue } from './internal/queue.js';
import { poolSettings, type PoolStats, type PoolWorkerInfo, type RecycleReason, type ReloadOptions, type WorkerPoolOptions } from './pool-options.js';
import type { Job, Slot } from './pool-slot.js';
import { PoolWorkers } from './pool-workers.js';
import { taskPayload } from './protocol.js';
import { readRss } from './rss.js';
import { isThenable, requestOptions, type Pending, type RequestOptions } from './task-channel.js';

export type { PoolStats, PoolWorkerInfo, RecycleReason, ReloadOptions, WorkerPoolOptions } from './pool-options.js';

const RETRYABLE_TASK_ERRORS = new Set(['ERR_WORKER_TASK', 'ERR_WORKER_FRAME_TOO_LARGE']);

/**
 * A pool of FD 3/4 workers (PHP by default). Each worker serves one task at
 * a time; tasks wait in a bounded queue for a free worker.
 *
 * Events: `'spawn'` (info, on the next tick), `'ready'` (info), `'exit'`
 * (info, ExitInfo), `'crash'` (info, ExitInfo, restartInMs: 0 for a worker
 * that died with a task in hand, the backoff for a crash loop), `'recycle'`
 * (info, reason: a RecycleReason, `'retired'` after retire()), `'workerError'` (info, message, fatal) for a worker's own
 * error reports and the pool's about a worker that never got ready, `'spawnError'`
 * (error) when a worker cannot be started, `'stdout'` (chunk, info) for
 * what workers print, `'message'` (info, message, fds) for control messages
 * of the workers' own types (not ready, error, stop or fds), whose fds the
 * listeners own (with none, the pool closes them). A worker's messages all
 * come before its `'exit'` (and `'crash'`).
 */
export class WorkerPool extends EventEmitter {
  readonly size: number;
  readonly maxSize: number;
  readonly maxJobs: number;
  readonly allocateTimeout: number;
  readonly execTimeout: number;
  readonly idleTtl: number;
  readonly maxWorkerMemory: number;
  readonly destroyTimeout: number;
  readonly readyTimeout: number;
  readonly maxQueue: number;
  readonly maxFrame: number;

  readonly #workers: PoolWorkers;
  #queue = new Queue<Job>();
  #stopping: Promise<void> | null = null;
  #counts = { completed: 0, failed: 0, timedOut: 0 };

  constructor(options: WorkerPoolOptions) {
    super();
    const { settings, spawnOptions } = poolSettings(options);
    ({
      size: this.size,
      maxSize: this.maxSize,
      maxJobs: this.maxJobs,
      allocateTimeout: this.allocateTimeout,
      execTimeout: this.execTimeout,
      idleTtl: this.idleTtl,
      maxWorkerMemory: this.maxWorkerMemory,
      destroyTimeout: this.destroyTimeout,
      readyTimeout: this.readyTimeout,
      maxQueue: this.maxQueue,
      maxFrame: this.maxFrame,
    } = settings);
    this.#workers = new PoolWorkers(settings, spawnOptions, {
      emit: (event, ...args) => this.emit(event, ...args),
      dispatch: () => this.#dispatch(),
      fail: (job, err) => this.#fail(job, err),
      queued: () => this.#queue.length,
      message: (info, message, fds) => this.#message(info, message, fds),
    });
    this.#workers.start();
  }

  /**
   * Run one task: resolves with the worker's response bytes.
   *
   * Rejects with a WorkerError whose code says why: ERR_WORKER_TASK (the
   * worker's handler failed), ERR_WORKER_FRAME_TOO_LARGE, ERR_WORKER_CRASHED
   * (the worker died during the task), ERR_WORKER_PROTOCOL (the worker broke
   * the protocol; it is killed), ERR_WORKER_EXEC_TIMEOUT,
   * ERR_WORKER_DRAIN_TIMEOUT (see reload()), ERR_WORKER_ALLOCATE_TIMEOUT,
   * ERR_WORKER_QUEUE_FULL, ERR_WORKER_POOL_STOPPED. `options.onPart`
   * takes the answer in pieces as the worker sends them (RequestOptions);
   * the task then resolves with the last piece, and a task rejected after
   * some pieces came was cut short. An onPart that throws, or whose promise
   * rejects, rejects the task with that error (the worker stays).
   */
  run(payload: string | Uint8Array, options?: RequestOptions): Promise<Buffer> {
    let bytes: Uint8Array;
    let onPart: RequestOptions['onPart'];
    try {
      onPart = requestOptions(options).onPart;
      bytes = taskPayload(payload, this.maxFrame);
    } catch (err) {
      // A refused payload is a failed task; what is no payload at all is a bad argument.
      return err instanceof WorkerError ? this.#reject(err) : Promise.reject(err);
    }
    if (this.#stopping) return this.#reject(new WorkerError('ERR_WORKER_POOL_STOPPED', 'the worker pool is stopped; no new tasks are accepted'));
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = { payload: bytes, onPart, resolve, reject, settled: false, allocateTimer: null };
      const slot = this.#workers.idle();
      if (slot && this.#queue.length === 0) this.#assign(slot, job);
      else this.#enqueue(job);
    });
  }

  /**
   * Send a control message of your own to the worker with this pid (the PHP
   * library's `onMessage()` gets it), with `fds` attached by SCM_RIGHTS: the
   * worker gets its own copies, yours stay open. Resolves once the message
   * is in the worker's socket buffer and the worker has been woken to read
   * it. Rejects with WorkerError `ERR_WORKER_NOT_FOUND` when no worker of
   * this pool with that pid is alive, with `ERR_WORKER_PROTOCOL` (the
   * reason) while one that broke the protocol is being killed, and, with nothing sent, with
   * `ERR_INVALID_ARG_VALUE` for a type the library uses itself
   * (RESERVED_CONTROL_TYPES) and the errors of ControlChannel.send() for
   * other bad arguments (`ERR_OUT_OF_RANGE` over 64 KiB of JSON).
   */
  send(pid: number, message: ControlMessage, fds: number[] = []): Promise<void> {
    try {
      validateInteger(pid, 'pid', 1);
      if (message === null || typeof message !== 'object' || typeof message.type !== 'string') {
        throw invalidArgType('message', 'an object with a string "type"', message);
      }
      if (RESERVED_CONTROL_TYPES.includes(message.type)) {
        throw invalidArgValue('message.type', `must not be one of the library's own types (${RESERVED_CONTROL_TYPES.join(', ')})`, message.type);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const slot = this.#workers.find(pid);
    if (!slot) return Promise.reject(new WorkerError('ERR_WORKER_NOT_FOUND', `no live worker of this pool has pid ${pid}; nothing was sent`, { pid }));
    return slot.worker.control.send(message, fds);
  }

  /**
   * Say that the worker with this pid is leaving on purpose: a worker with
   * its own event loop that ends after its own count of requests, or after
   * an exit() in the code it runs. It takes no more tasks, its replacement
   * starts now (never after the crash backoff), and its exit is no crash:
   * `'recycle'` with reason `'retired'`. It is not interrupted: it is asked
   * to stop as a recycled worker is (a control `stop`, SIGTERM only
   * destroyTimeout ms later), and one already exiting is simply let go. A
   * worker already stopping (recycled, reloaded, the pool stopping) is left
   * alone. Returns false when no worker of this pool with that pid is alive.
   * @throws TypeError/RangeError for a pid that is not a positive integer
   */
  retire(pid: number): boolean {
    validateInteger(pid, 'pid', 1);
    return this.#workers.retire(pid);
  }

  /** With `prototype`: the pid of the PHP process workers are forked from (null while none runs). */
  get prototypePid(): number | null {
    return this.#workers.prototypePid();
  }

  /** Resolves once `size` workers of the current generation have said ready, or once the pool has stopped. */
  ready(): Promise<void> {
    if (this.#workers.readyCount() >= this.size) return Promise.resolve();
    // stop() settles the waiters it finds; later ones would wait for workers that never come.
    if (this.#stopping) return this.#stopping;
    return this.#workers.whenReady();
  }

  /**
   * Replace every worker with a fresh one (after deploying new code, say)
   * without failing a task: each old worker keeps serving until a new one is
   * ready, then finishes its current task and stops; once `size` new ones
   * are ready, all the old ones left do (a pool grown toward maxSize is
   * replaced whole, and grows again as its load needs). A task still running
   * `drainTimeout` ms after that (default 60000) is rejected with
   * ERR_WORKER_DRAIN_TIMEOUT and its worker killed. Resolves when every old
   * worker has exited. Bad options reject (TypeError/RangeError), and nothing
   * is replaced.
   */
  reload(options?: ReloadOptions): Promise<void> {
    // Not this.#reject: a refused reload is no failed task.
    if (this.#stopping) return Promise.reject(new WorkerError('ERR_WORKER_POOL_STOPPED', 'the worker pool is stopped; nothing to reload'));
    let drainTimeout: number;
    try {
      drainTimeout = optionalInteger(optionsObject(options), 'drainTimeout', 60_000, 0, 2 ** 31 - 1);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#workers.reload(drainTimeout);
  }

  /**
   * Stop accepting tasks, reject the queued ones (ERR_WORKER_POOL_STOPPED),
   * let running tasks finish (up to destroyTimeout), and stop every worker.
   * Resolves when all have exited and their fds are closed. Idempotent.
   */
  stop(): Promise<void> {
    if (this.#stopping) return this.#stopping;
    for (const job of this.#queue.drain()) {
      this.#fail(job, new WorkerError('ERR_WORKER_POOL_STOPPED', 'the worker pool was stopped before a worker took this task'));
    }
    this.#stopping = this.#workers.stopAll();
    return this.#stopping;
  }

  /** `await using pool = new WorkerPool(...)`: stop() at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Counters and the state of every worker. */
  stats(): PoolStats {
    const list = this.#workers.list();
    const count = (state: PoolWorkerInfo['state']) => list.filter((w) => w.state === state).length;
    return {
      size: this.size,
      workers: list.length,
      starting: count('starting'),
      idle: count('idle'),
      busy: count('busy'),
      stopping: count('stopping'),
      queued: this.#queue.length,
      ...this.#counts,
      ...this.#workers.counts,
      list,
    };
  }

  // ---- scheduling ------------------------------------------------------

  /** A worker's control message: the workers' own types go to 'message' listeners, with their fds; fds nobody takes are closed. */
  #message(info: PoolWorkerInfo, message: ControlMessage, fds: number[]): void {
    if (RESERVED_CONTROL_TYPES.includes(message.type) || this.listenerCount('message') === 0) {
      if (fds.length > 0) closeFds(fds);
      return;
    }
    this.emit('message', info, message, fds);
  }

  #reject(err: Error): Promise<never> {
    this.#counts.failed++;
    return Promise.reject(err);
  }

  #fail(job: Job, err: Error): void {
    if (job.settled) return;
    job.settled = true;
    if (job.allocateTimer) clearTimeout(job.allocateTimer);
    this.#counts.failed++;
    job.reject(err);
  }

  /** Queue `job` for the next free worker, within maxQueue and allocateTimeout. */
  #enqueue(job: Job): void {
    if (this.#queue.length >= this.maxQueue) {
      this.#fail(job, new WorkerError('ERR_WORKER_QUEUE_FULL', `the task queue is full (maxQueue ${this.maxQueue} tasks waiting for a worker)`));
      return;
    }
    if (this.allocateTimeout > 0) {
      job.allocateTimer = setTimeout(() => {
        job.allocateTimer = null;
        this.#queue.remove(job);
        const message = `no worker became free within allocateTimeout (${this.allocateTimeout} ms); ${this.#workers.slots.size} workers, ${this.#queue.length} tasks queued`;
        this.#fail(job, new WorkerError('ERR_WORKER_ALLOCATE_TIMEOUT', message));
      }, this.allocateTimeout);
    }
    this.#queue.push(job);
    if (this.maxSize > this.size) this.#workers.ensure();
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const slot = this.#workers.idle();
      if (!slot) return;
      const job = this.#queue.shift();
      if (!job) return;
      if (job.allocateTimer) clearTimeout(job.allocateTimer);
      job.allocateTimer = null;
      this.#assign(slot, job);
    }
  }

  #assign(slot: Slot, job: Job): void {
    slot.state = 'busy';
    slot.job = job;
    if (slot.idleTimer) clearTimeout(slot.idleTimer);
    slot.idleTimer = null;
    if (this.execTimeout > 0) slot.execTimer = setTimeout(() => this.#execTimedOut(slot, job), this.execTimeout);
    // The worker settles slot.answer as it reads the answer: the caller's
    // promise (run()'s) is the only one a task makes.
    slot.worker.send(job.payload, (slot.answer ??= this.#answerFor(slot)), job.onPart !== undefined);
  }

  /**
   * What settles the task of `slot` in hand. A slot has one request
   * written at a time, and the answer to it is for `slot.job`: a task that
   * ended otherwise (execTimeout, a reload's drainTimeout) had its answer
   * abandon()ed, and the exit that ends a worker clears `slot.job` only
   * after the worker failed its requests.
   */
  #answerFor(slot: Slot): Pending {
    return {
      resolve: (response) => {
        if (slot.job) this.#completed(slot, slot.job, response);
      },
      reject: (err) => {
        if (slot.job) this.#taskFailed(slot, slot.job, err);
      },
      part: (chunk) => (slot.job && !slot.job.settled ? this.#part(slot.job, chunk) : undefined),
    };
  }

  /**
   * One piece of the answer, to the task's onPart. If it throws, or the
   * promise it returned rejects, the task fails with that error now; its
   * worker is still producing the rest of the answer (dropped: the task is
   * settled), and takes no other task before that answer is read (see
   * #completed) or execTimeout ends it. What is given back to the task
   * channel never throws or rejects: the failure is handled here, where
   * the slot is known.
   */
  #part(job: Job, chunk: Buffer): unknown {
    let returned: unknown;
    try {
      returned = job.onPart?.(chunk);
    } catch (err) {
      this.#fail(job, err as Error);
      return undefined;
    }
    return isThenable(returned) ? Promise.resolve(returned).catch((err: unknown) => this.#fail(job, err as Error)) : undefined;
  }

  /** The worker answered the task in hand; the task may be settled already (its onPart failed), but only now is the worker free. */
  #completed(slot: Slot, job: Job, response: Buffer): void {
    this.#workers.taskCompleted();
    slot.jobs++;
    if (!job.settled) {
      job.settled = true;
      this.#counts.completed++;
      job.resolve(response);
    }
    this.#afterJob(slot);
  }

  #taskFailed(slot: Slot, job: Job, err: Error): void {
    if (err instanceof WorkerError && err.code === 'ERR_WORKER_PROTOCOL') {
      // The worker is being killed; its exit removes the slot. The task gets
      // the reason (PROTOCOL.md) rather than a bare "crashed".
      if (slot.execTimer) clearTimeout(slot.execTimer);
      slot.execTimer = null;
      this.#fail(job, err);
      return;
    }
    // A dead worker is handled (and its task rejected) by the exit
    // handler. Anything that is not a WorkerError never reached the
    // worker (request() refused it): the task fails, the worker is free.
    // So is one that answered with an error (a task its onPart failed
    // is settled already: only the worker's freedom is news).
    if (err instanceof WorkerError && !RETRYABLE_TASK_ERRORS.has(err.code)) return;
    this.#fail(job, err);
    slot.jobs++;
    this.#afterJob(slot);
  }

  #afterJob(slot: Slot): void {
    if (slot.execTimer) clearTimeout(slot.execTimer);
    slot.execTimer = null;
    slot.job = null;
    if (slot.state !== 'busy') return; // stopping: the pool is shutting down
    let reason: RecycleReason | null = null;
    if (!slot.worker.inSync) reason = 'oversize';
    else if (this.maxJobs > 0 && slot.jobs >= this.maxJobs) reason = 'maxJobs';
    else if (slot.draining) reason = 'reload';
    else if (this.maxWorkerMemory > 0 && (readRss(slot.worker.pid) ?? 0) > this.maxWorkerMemory) reason = 'memory';
    if (reason) this.#workers.recycle(slot, reason);
    else this.#workers.becomeIdle(slot);
    this.#dispatch();
  }

  #execTimedOut(slot: Slot, job: Job): void {
    slot.execTimer = null;
    if (slot.job !== job) return;
    // A task its onPart failed is settled, and its worker still on it: that
    // worker is killed all the same, the task's own error kept.
    if (!job.settled) {
      this.#counts.timedOut++;
      const { pid } = slot.worker;
      const message = `task exceeded execTimeout (${this.execTimeout} ms); worker pid ${pid} was killed and is being replaced`;
      this.#fail(job, new WorkerError('ERR_WORKER_EXEC_TIMEOUT', message, { pid }));
    }
    this.#workers.abandon(slot, 'execTimeout');
  }
}
