// WorkerPool: a fixed number of FD 3/4 workers, one task at a time each,
// with the supervision rules of RoadRunner-style PHP application servers.

import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import type { ExitInfo } from '@folk/pidfd';
import { WorkerError, describeExit, intOption, optionsObject, toPayload } from './errors.js';
import { DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, MIN_MAX_FRAME } from './protocol.js';
import { readRss, spawnWorker, type SpawnWorkerOptions, type Worker } from './spawn.js';

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

interface Job {
  payload: Uint8Array;
  resolve: (value: Buffer) => void;
  reject: (err: Error) => void;
  settled: boolean;
  allocateTimer: NodeJS.Timeout | null;
}

interface Slot {
  worker: Worker;
  state: PoolWorkerInfo['state'];
  jobs: number;
  generation: number;
  /** Stop after the current task: a reload replacement for it is ready. */
  draining: boolean;
  /** Killed at readyTimeout: a ready message already on its way is ignored. */
  killed: boolean;
  /** Set once it has left service unasked (#lose): the delay its replacement waits, in ms. */
  restartDelay: number | null;
  /** Why it is stopping, when on purpose. */
  reason: RecycleReason | 'stop' | null;
  job: Job | null;
  startedAt: number;
  idleTimer: NodeJS.Timeout | null;
  readyTimer: NodeJS.Timeout | null;
  execTimer: NodeJS.Timeout | null;
  /** Ends a reload's wait for the task of a draining worker (ReloadOptions.drainTimeout). */
  drainTimer: NodeJS.Timeout | null;
}

/** FIFO of jobs; settled jobs (allocate timeouts) are skipped when taken. */
class JobQueue {
  #items: (Job | undefined)[] = [];
  #head = 0;
  #live = 0;
  get length(): number {
    return this.#live;
  }
  push(job: Job): void {
    this.#items.push(job);
    this.#live++;
  }
  /** A queued job settled elsewhere (timed out) no longer counts. */
  forget(): void {
    this.#live--;
  }
  shift(): Job | undefined {
    while (this.#head < this.#items.length) {
      const job = this.#items[this.#head];
      this.#items[this.#head++] = undefined;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      if (job && !job.settled) {
        this.#live--;
        return job;
      }
    }
    return undefined;
  }
  drain(): Job[] {
    const out: Job[] = [];
    for (let job = this.shift(); job; job = this.shift()) out.push(job);
    return out;
  }
}

const RETRYABLE_TASK_ERRORS = new Set(['ERR_WORKER_TASK', 'ERR_WORKER_FRAME_TOO_LARGE']);

/**
 * A pool of FD 3/4 workers (PHP by default). Each worker serves one task at
 * a time; tasks wait in a bounded queue for a free worker.
 *
 * Events: `'spawn'` (info, on the next tick), `'ready'` (info), `'exit'`
 * (info, ExitInfo), `'crash'` (info, ExitInfo, restartInMs: 0 for a worker
 * that died with a task in hand, the backoff for a crash loop), `'recycle'`
 * (info, reason), `'workerError'` (info, message, fatal) for a worker's own
 * error reports and the pool's about a worker that never got ready, `'spawnError'`
 * (error) when a worker cannot be started, `'stdout'` (chunk, info) for
 * what workers print.
 */
export class WorkerPool extends EventEmitter {
  readonly size: number;
  readonly maxJobs: number;
  readonly allocateTimeout: number;
  readonly execTimeout: number;
  readonly idleTtl: number;
  readonly maxWorkerMemory: number;
  readonly destroyTimeout: number;
  readonly readyTimeout: number;
  readonly maxQueue: number;
  readonly maxFrame: number;

  #spawnOptions: SpawnWorkerOptions;
  #backoffInitial: number;
  #backoffMax: number;
  #slots = new Set<Slot>();
  #queue = new JobQueue();
  #generation = 0;
  /** The drainTimeout of the latest reload(), for the workers it replaces. */
  #drainTimeout = 60_000;
  /** Consecutive workers lost in a crash loop; a completed task resets it. */
  #crashStreak = 0;
  #backoffUntil = 0;
  /** Replacements that wait for #backoffUntil: one per worker lost in a crash loop since it last passed. */
  #heldBack = 0;
  #backoffTimer: NodeJS.Timeout | null = null;
  #stopping: Promise<void> | null = null;
  #reloads: Array<{ generation: number; resolve: () => void }> = [];
  #readyWaiters: Array<() => void> = [];
  #counts = { completed: 0, failed: 0, spawned: 0, crashed: 0, recycled: 0, timedOut: 0 };

  constructor(options: WorkerPoolOptions) {
    super();
    // A pool needs at least a script, so undefined is as wrong as null here.
    const opts = optionsObject(options ?? null);
    this.size = intOption(opts, 'size', availableParallelism(), 1, 1024);
    this.maxJobs = intOption(opts, 'maxJobs', 0, 0);
    this.allocateTimeout = intOption(opts, 'allocateTimeout', 60_000, 0, 2 ** 31 - 1);
    this.execTimeout = intOption(opts, 'execTimeout', 0, 0, 2 ** 31 - 1);
    this.idleTtl = intOption(opts, 'idleTtl', 0, 0, 2 ** 31 - 1);
    this.maxWorkerMemory = intOption(opts, 'maxWorkerMemory', 0, 0);
    this.destroyTimeout = intOption(opts, 'destroyTimeout', 5000, 0, 2 ** 31 - 1);
    this.readyTimeout = intOption(opts, 'readyTimeout', 30_000, 1, 2 ** 31 - 1);
    this.maxQueue = intOption(opts, 'maxQueue', 10_000, 0);
    this.maxFrame = intOption(opts, 'maxFrame', DEFAULT_MAX_FRAME, MIN_MAX_FRAME, MAX_FRAME_LIMIT);
    const backoff = optionsObject(opts['backoff'], 'options.backoff');
    this.#backoffInitial = intOption(backoff, 'initial', 100, 0, 2 ** 31 - 1, 'options.backoff');
    this.#backoffMax = intOption(backoff, 'max', 10_000, 0, 2 ** 31 - 1, 'options.backoff');
    const { size, maxJobs, allocateTimeout, execTimeout, idleTtl, maxWorkerMemory, destroyTimeout, readyTimeout, maxQueue, backoff: _b, ...spawnOptions } =
      options;
    this.#spawnOptions = { ...spawnOptions, maxFrame: this.maxFrame };
    // The first worker starts in the caller's stack: bad options or a missing
    // program (ENOENT: no php) throw here instead of becoming a crash loop.
    this.#spawnSlot(true);
    this.#ensureWorkers();
  }

  /**
   * Run one task: resolves with the worker's response bytes.
   *
   * Rejects with a WorkerError whose code says why: ERR_WORKER_TASK (the
   * worker's handler failed), ERR_WORKER_FRAME_TOO_LARGE, ERR_WORKER_CRASHED
   * (the worker died during the task), ERR_WORKER_PROTOCOL (the worker broke
   * the protocol; it is killed), ERR_WORKER_EXEC_TIMEOUT,
   * ERR_WORKER_DRAIN_TIMEOUT (see reload()), ERR_WORKER_ALLOCATE_TIMEOUT,
   * ERR_WORKER_QUEUE_FULL, ERR_WORKER_POOL_STOPPED.
   */
  run(payload: string | Uint8Array): Promise<Buffer> {
    let bytes: Uint8Array;
    try {
      bytes = toPayload(payload);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#stopping) return this.#reject(new WorkerError('ERR_WORKER_POOL_STOPPED', 'the worker pool is stopped; no new tasks are accepted'));
    if (bytes.byteLength > this.maxFrame) {
      return this.#reject(
        new WorkerError(
          'ERR_WORKER_FRAME_TOO_LARGE',
          `task payload of ${bytes.byteLength} bytes exceeds the maximum frame size of ${this.maxFrame} bytes; nothing was sent`,
        ),
      );
    }
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = { payload: bytes, resolve, reject, settled: false, allocateTimer: null };
      const slot = this.#idleSlot();
      if (slot && this.#queue.length === 0) {
        this.#assign(slot, job);
        return;
      }
      if (this.#queue.length >= this.maxQueue) {
        this.#fail(
          job,
          new WorkerError('ERR_WORKER_QUEUE_FULL', `the task queue is full (maxQueue ${this.maxQueue} tasks waiting for a worker)`),
        );
        return;
      }
      if (this.allocateTimeout > 0) {
        job.allocateTimer = setTimeout(() => {
          job.allocateTimer = null;
          this.#queue.forget();
          this.#fail(
            job,
            new WorkerError(
              'ERR_WORKER_ALLOCATE_TIMEOUT',
              `no worker became free within allocateTimeout (${this.allocateTimeout} ms); ${this.#slots.size} workers, ${this.#queue.length} tasks queued`,
            ),
          );
        }, this.allocateTimeout);
      }
      this.#queue.push(job);
    });
  }

  /** Resolves once `size` workers of the current generation have said ready, or once the pool has stopped. */
  ready(): Promise<void> {
    if (this.#readyCount() >= this.size) return Promise.resolve();
    // stop() settles the waiters it finds; later ones would wait for workers that never come.
    if (this.#stopping) return this.#stopping;
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /**
   * Replace every worker with a fresh one (after deploying new code, say)
   * without failing a task: each old worker keeps serving until a new one is
   * ready, then finishes its current task and stops. A task still running
   * `drainTimeout` ms after that (default 60000) is rejected with
   * ERR_WORKER_DRAIN_TIMEOUT and its worker killed. Resolves when every old
   * worker has exited. Bad options reject (TypeError/RangeError), and nothing
   * is replaced.
   */
  reload(options?: ReloadOptions): Promise<void> {
    // Not this.#reject: a refused reload is no failed task.
    if (this.#stopping) return Promise.reject(new WorkerError('ERR_WORKER_POOL_STOPPED', 'the worker pool is stopped; nothing to reload'));
    try {
      this.#drainTimeout = intOption(optionsObject(options), 'drainTimeout', 60_000, 0, 2 ** 31 - 1);
    } catch (err) {
      return Promise.reject(err);
    }
    const generation = ++this.#generation;
    // Old workers still starting serve nobody yet: drop them now.
    for (const slot of this.#slots) if (slot.state === 'starting' && slot.generation < generation) this.#recycle(slot, 'reload');
    const done = new Promise<void>((resolve) => this.#reloads.push({ generation, resolve }));
    this.#ensureWorkers();
    this.#checkReloads();
    return done;
  }

  /**
   * Stop accepting tasks, reject the queued ones (ERR_WORKER_POOL_STOPPED),
   * let running tasks finish (up to destroyTimeout), and stop every worker.
   * Resolves when all have exited and their fds are closed. Idempotent.
   */
  stop(): Promise<void> {
    if (this.#stopping) return this.#stopping;
    if (this.#backoffTimer) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = null;
    for (const job of this.#queue.drain()) {
      this.#fail(job, new WorkerError('ERR_WORKER_POOL_STOPPED', 'the worker pool was stopped before a worker took this task'));
    }
    const stops: Promise<unknown>[] = [];
    for (const slot of this.#slots) {
      this.#clearTimers(slot);
      slot.state = 'stopping';
      slot.reason = 'stop';
      stops.push(slot.worker.stop({ timeout: this.destroyTimeout }));
    }
    this.#stopping = Promise.all(stops).then(() => {
      for (const r of this.#reloads.splice(0)) r.resolve();
      for (const w of this.#readyWaiters.splice(0)) w();
    });
    return this.#stopping;
  }

  /** `await using pool = new WorkerPool(...)`: stop() at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Counters and the state of every worker. */
  stats(): PoolStats {
    const list = [...this.#slots].map((s) => this.#info(s));
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
      list,
    };
  }

  // ---- scheduling ------------------------------------------------------

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

  /** An idle worker, preferring the current generation. */
  #idleSlot(): Slot | undefined {
    let old: Slot | undefined;
    for (const slot of this.#slots) {
      if (slot.state !== 'idle') continue;
      if (slot.generation === this.#generation) return slot;
      old ??= slot;
    }
    return old;
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const slot = this.#idleSlot();
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
    slot.worker.request(job.payload).then(
      (response) => {
        if (job.settled) return;
        job.settled = true;
        this.#counts.completed++;
        this.#crashStreak = 0;
        slot.jobs++;
        job.resolve(response);
        this.#afterJob(slot);
      },
      (err: Error) => {
        if (job.settled) return;
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
        if (err instanceof WorkerError && !RETRYABLE_TASK_ERRORS.has(err.code)) return;
        this.#fail(job, err);
        slot.jobs++;
        this.#afterJob(slot);
      },
    );
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
    if (reason) this.#recycle(slot, reason);
    else this.#becomeIdle(slot);
    this.#dispatch();
  }

  #becomeIdle(slot: Slot): void {
    slot.state = 'idle';
    if (this.idleTtl > 0) {
      slot.idleTimer = setTimeout(() => {
        slot.idleTimer = null;
        if (slot.state === 'idle') this.#recycle(slot, 'idleTtl');
      }, this.idleTtl);
    }
  }

  #execTimedOut(slot: Slot, job: Job): void {
    slot.execTimer = null;
    if (job.settled) return;
    this.#counts.timedOut++;
    this.#fail(
      job,
      new WorkerError(
        'ERR_WORKER_EXEC_TIMEOUT',
        `task exceeded execTimeout (${this.execTimeout} ms); worker pid ${slot.worker.pid} was killed and is being replaced`,
        { pid: slot.worker.pid },
      ),
    );
    this.#abandon(slot, 'execTimeout');
  }

  /** Give up on a busy worker whose task was rejected: forget its answer, replace it, kill it. */
  #abandon(slot: Slot, reason: RecycleReason): void {
    slot.worker.abandon();
    this.#recycle(slot, reason);
    slot.worker.kill('SIGKILL');
  }

  /** Stop a healthy worker on purpose and start its replacement. */
  #recycle(slot: Slot, reason: RecycleReason): void {
    if (slot.state === 'stopping') return;
    this.#clearTimers(slot);
    slot.state = 'stopping';
    slot.reason = reason;
    this.#counts.recycled++;
    this.emit('recycle', this.#info(slot), reason);
    this.#ensureWorkers();
    slot.worker.stop({ timeout: this.destroyTimeout }).catch(() => {});
  }

  #clearTimers(slot: Slot): void {
    for (const key of ['idleTimer', 'readyTimer', 'execTimer', 'drainTimer'] as const) {
      const t = slot[key];
      if (t) clearTimeout(t);
      slot[key] = null;
    }
  }

  /**
   * Start workers until `size` of the current generation are alive or
   * starting. Only the replacements of workers lost in a crash loop wait for
   * the backoff; any other (a worker that died with its task, one recycled,
   * a reload) starts now, so a crash loop never costs the pool the rest of
   * its capacity.
   */
  #ensureWorkers(): void {
    if (this.#stopping) return;
    let live = 0;
    for (const slot of this.#slots) if (slot.generation === this.#generation && slot.state !== 'stopping') live++;
    const missing = this.size - live;
    if (missing <= 0) return;
    const wait = this.#backoffUntil - Date.now();
    if (wait <= 0) this.#heldBack = 0;
    const held = Math.min(missing, this.#heldBack);
    for (let i = held; i < missing; i++) if (!this.#spawnSlot(false)) return;
    if (held > 0) {
      this.#backoffTimer ??= setTimeout(() => {
        this.#backoffTimer = null;
        this.#ensureWorkers();
      }, wait);
    }
  }

  /** Spawn one worker; false (after scheduling a retry) if it could not be started. */
  #spawnSlot(rethrow: boolean): boolean {
    let worker: Worker;
    try {
      worker = spawnWorker(this.#spawnOptions);
    } catch (err) {
      if (rethrow) throw err;
      this.emit('spawnError', err);
      this.#crashed();
      // Retry from the event loop, never from here: with a zero backoff an
      // immediate retry recurses until the stack overflows.
      this.#backoffTimer ??= setTimeout(() => {
        this.#backoffTimer = null;
        this.#ensureWorkers();
      }, Math.max(0, this.#backoffUntil - Date.now()));
      return false;
    }
    const slot: Slot = {
      worker,
      state: 'starting',
      jobs: 0,
      generation: this.#generation,
      draining: false,
      killed: false,
      restartDelay: null,
      reason: null,
      job: null,
      startedAt: Date.now(),
      idleTimer: null,
      readyTimer: null,
      execTimer: null,
      drainTimer: null,
    };
    this.#slots.add(slot);
    this.#counts.spawned++;
    worker.stdout.on('data', (chunk: Buffer) => this.emit('stdout', chunk, this.#info(slot)));
    worker.on('workerError', (message: string, fatal: boolean) => this.emit('workerError', this.#info(slot), message, fatal));
    worker.on('exit', (info: ExitInfo) => this.#onExit(slot, info));
    worker.on('broken', () => this.#broken(slot));
    slot.readyTimer = setTimeout(() => {
      slot.readyTimer = null;
      slot.killed = true;
      this.emit('workerError', this.#info(slot), `worker did not say ready within readyTimeout (${this.readyTimeout} ms); killed`, true);
      worker.kill('SIGKILL');
    }, this.readyTimeout);
    worker.ready.then(
      () => this.#onReady(slot),
      (err: Error) => {
        // A worker the pool killed (readyTimeout) or stopped on purpose was
        // reported, or needs no report; any other is news (a script that
        // exits at once, a pid mismatch).
        if (slot.killed || slot.reason !== null) return;
        this.emit('workerError', this.#info(slot), err.message, true);
        worker.kill('SIGKILL');
      },
    );
    // On the next tick, so a listener added right after the constructor
    // (which starts the first worker) sees the first 'spawn' too.
    const info = this.#info(slot);
    process.nextTick(() => this.emit('spawn', info));
    return true;
  }

  #onReady(slot: Slot): void {
    if (slot.readyTimer) clearTimeout(slot.readyTimer);
    slot.readyTimer = null;
    if (slot.state !== 'starting' || slot.killed) return;
    this.#becomeIdle(slot);
    this.emit('ready', this.#info(slot));
    if (slot.generation === this.#generation) this.#retireOne();
    if (this.#readyCount() >= this.size) for (const w of this.#readyWaiters.splice(0)) w();
    this.#dispatch();
  }

  /** A new-generation worker is ready: one old worker may go (now if idle, else after its task). */
  #retireOne(): void {
    let busy: Slot | undefined;
    for (const slot of this.#slots) {
      if (slot.generation === this.#generation || slot.draining || slot.state === 'stopping') continue;
      if (slot.state === 'idle') {
        this.#recycle(slot, 'reload');
        return;
      }
      busy ??= slot;
    }
    if (!busy) return;
    busy.draining = true;
    const job = busy.job;
    if (this.#drainTimeout > 0 && job) {
      const timeout = this.#drainTimeout;
      busy.drainTimer = setTimeout(() => this.#drainTimedOut(busy, job, timeout), timeout);
    }
  }

  /** A reload's old worker is still on its task drainTimeout ms after its replacement was ready: give up on the task. */
  #drainTimedOut(slot: Slot, job: Job, timeout: number): void {
    slot.drainTimer = null;
    if (job.settled) return;
    this.#fail(
      job,
      new WorkerError(
        'ERR_WORKER_DRAIN_TIMEOUT',
        `the task was still running drainTimeout (${timeout} ms) after reload() replaced its worker; worker pid ${slot.worker.pid} was killed`,
        { pid: slot.worker.pid },
      ),
    );
    this.#abandon(slot, 'reload');
  }

  #readyCount(): number {
    let n = 0;
    for (const slot of this.#slots) if (slot.generation === this.#generation && (slot.state === 'idle' || slot.state === 'busy')) n++;
    return n;
  }

  /** Count one more worker lost in a crash loop, whose replacement waits; returns the backoff delay it sets, in ms. */
  #crashed(): number {
    this.#crashStreak++;
    this.#heldBack++;
    const delay = Math.min(this.#backoffInitial * 2 ** Math.min(this.#crashStreak - 1, 30), this.#backoffMax);
    this.#backoffUntil = Date.now() + delay;
    return delay;
  }

  /**
   * A worker left service without being asked to (it exited, or broke the
   * protocol): decide, once, how long its replacement waits. One that had a
   * task in hand was ready and serving, and most likely that task killed it
   * (a fatal error, exit()): it is replaced at once, and the task's failure
   * is the whole cost. One that died before saying ready, or idle, is a
   * crash loop: backoff.
   */
  #lose(slot: Slot): number {
    slot.restartDelay ??= slot.job !== null ? 0 : this.#crashed();
    return slot.restartDelay;
  }

  /**
   * The worker can take no more tasks (Worker 'broken'): it is being killed.
   * Out of service now, so no task goes to it and its replacement starts
   * without waiting for the exit; the exit settles its task and counts the crash.
   */
  #broken(slot: Slot): void {
    if (slot.state === 'stopping') return;
    this.#lose(slot);
    this.#clearTimers(slot);
    slot.state = 'stopping';
    this.#ensureWorkers();
  }

  #onExit(slot: Slot, info: ExitInfo): void {
    this.#clearTimers(slot);
    this.#slots.delete(slot);
    const crashed = slot.reason === null && !this.#stopping;
    const restartDelay = crashed ? this.#lose(slot) : 0;
    const job = slot.job;
    slot.job = null;
    slot.state = 'stopping';
    if (job && !job.settled) this.#fail(job, this.#exitError(slot, info));
    const workerInfo = this.#info(slot);
    this.emit('exit', workerInfo, info);
    if (crashed) {
      this.#counts.crashed++;
      this.emit('crash', workerInfo, info, restartDelay);
    }
    this.#ensureWorkers();
    this.#dispatch();
    this.#checkReloads();
  }

  /** What a task that was running on a worker that exited is rejected with. */
  #exitError(slot: Slot, info: ExitInfo): WorkerError {
    // Killed for breaking the protocol (its task socket ended and it did not
    // exit): that is the reason, not a crash of its own.
    if (slot.worker.protocolExit) return slot.worker.protocolExit;
    const exit = { code: info.code, signal: info.signal };
    if (this.#stopping) {
      const message = `the worker pool was stopped while the task ran; worker pid ${info.pid} ended (${describeExit(info)})`;
      return new WorkerError('ERR_WORKER_POOL_STOPPED', message, { pid: info.pid, exit });
    }
    return new WorkerError('ERR_WORKER_CRASHED', `worker pid ${info.pid} crashed (${describeExit(info)}) while running the task`, { pid: info.pid, exit });
  }

  #checkReloads(): void {
    if (this.#reloads.length === 0) return;
    this.#reloads = this.#reloads.filter((r) => {
      for (const slot of this.#slots) if (slot.generation < r.generation) return true;
      r.resolve();
      return false;
    });
  }

  #info(slot: Slot): PoolWorkerInfo {
    return { pid: slot.worker.pid, state: slot.state, jobs: slot.jobs, generation: slot.generation, startedAt: slot.startedAt };
  }
}
