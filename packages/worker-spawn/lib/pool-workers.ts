// PoolWorkers: the workers of a WorkerPool and their lives. Starting them,
// telling when they are ready, replacing them (on purpose, after a crash,
// in a reload), and what their exits mean for the task each had in hand.
// The pool (pool.ts) hands out tasks; this decides which workers there are.

import { CrashBackoff } from './backoff.js';
import type { ControlMessage } from './control-channel.js';
import { WorkerError, taskEndedError } from './errors.js';
import type { Job } from './pool-slot.js';
import type { PoolSettings, PoolWorkerInfo, RecycleReason } from './pool-options.js';
import { clearSlotTimers, newSlot, slotInfo, type Slot } from './pool-slot.js';
import { PoolPrototypes } from './pool-prototypes.js';
import type { Prototype } from './prototype.js';
import { spawnWorker, workerFromProcess, type SpawnWorkerOptions, type WorkerExitInfo, type WorkerHandle } from './worker-handle.js';

/** What PoolWorkers asks of the pool it serves. */
export interface PoolHooks {
  /** Emit one of the pool's events. */
  emit(event: string, ...args: unknown[]): void;
  /** A worker may have come free, or capacity changed: hand out queued tasks. */
  dispatch(): void;
  /** Reject a task (a failed task, counted). */
  fail(job: Job, err: Error): void;
  /** Tasks waiting for a worker. */
  queued(): number;
  /** A control message from a worker, other than ready; `fds` are the pool's (to pass on, or close). */
  message(info: PoolWorkerInfo, message: ControlMessage, fds: number[]): void;
}

export class PoolWorkers {
  readonly slots = new Set<Slot>();
  /** Incremented by every reload; workers of an older generation are being replaced. */
  generation = 0;
  /** stop() was called: nothing is started or replaced any more. */
  stopping = false;
  readonly counts = { spawned: 0, crashed: 0, recycled: 0 };
  readonly #settings: PoolSettings;
  readonly #spawnOptions: SpawnWorkerOptions;
  readonly #hooks: PoolHooks;
  readonly #backoff: CrashBackoff;
  /** The drainTimeout of the latest reload(), for the workers it replaces. */
  #drainTimeout = 60_000;
  #reloads: Array<{ generation: number; resolve: () => void }> = [];
  /** With options.prototype: the prototypes workers are forked from. */
  readonly #prototypes: PoolPrototypes | null;
  #readyWaiters: Array<() => void> = [];

  constructor(settings: PoolSettings, spawnOptions: SpawnWorkerOptions, hooks: PoolHooks) {
    this.#settings = settings;
    this.#spawnOptions = spawnOptions;
    this.#hooks = hooks;
    this.#backoff = new CrashBackoff(settings.backoffInitial, settings.backoffMax);
    this.#prototypes =
      settings.preload === null
        ? null
        : new PoolPrototypes(spawnOptions, settings.preload, settings.maxFrame, settings.readyTimeout, {
            stdout: (chunk, pid) => hooks.emit('stdout', chunk, { pid, state: 'prototype' }),
            ended: (proto) => this.#prototypeEnded(proto),
          });
  }

  /**
   * Start the workers. The first starts in the caller's stack: bad options
   * or a missing program (ENOENT: no php) throw here instead of becoming a
   * crash loop.
   */
  start(): void {
    this.#spawnSlot(true);
    this.ensure();
  }

  /**
   * Start workers until `size` of the current generation are alive or
   * starting, or up to `maxSize` while tasks wait or, during a reload, old
   * workers are busy. Only the replacements of workers lost in a crash loop wait for
   * the backoff; any other (a worker that died with its task, one recycled,
   * a reload) starts now, so a crash loop never costs the pool the rest of
   * its capacity.
   */
  ensure(): void {
    if (this.stopping) return;
    let live = 0;
    let busy = 0;
    for (const slot of this.slots) {
      if (slot.generation !== this.generation) {
        // A reload's old worker in service with no replacement yet: the load
        // it carries needs a new one (#makeWay retires it when one is ready).
        if (slot.state === 'busy' && !slot.draining) busy++;
        continue;
      }
      // One out of service unasked (#broken) holds its place until its exit says whether it crashed.
      if (slot.state === 'stopping' && slot.reason !== null) continue;
      live++;
      if (slot.state === 'busy') busy++;
    }
    live += this.#prototypes?.forkingFor(this.generation) ?? 0;
    // Between size and maxSize: one worker per task in hand or waiting.
    const { size, maxSize } = this.#settings;
    const wanted = Math.min(maxSize, Math.max(size, busy + this.#hooks.queued()));
    const missing = wanted - live;
    if (missing <= 0) return;
    const held = this.#backoff.held(missing);
    for (let i = held; i < missing; i++) if (!this.#spawnSlot(false)) return;
    if (held > 0) this.#backoff.retryLater(() => this.ensure());
  }

  /** An idle worker, preferring the current generation. */
  idle(): Slot | undefined {
    let old: Slot | undefined;
    for (const slot of this.slots) {
      if (slot.state !== 'idle') continue;
      if (slot.generation === this.generation) return slot;
      old ??= slot;
    }
    return old;
  }

  /** Workers of the current generation that have said ready and serve. */
  readyCount(): number {
    let n = 0;
    for (const slot of this.slots) if (slot.generation === this.generation && (slot.state === 'idle' || slot.state === 'busy')) n++;
    return n;
  }

  /** Resolves once `size` workers of the current generation are ready, or the pool has stopped. */
  whenReady(): Promise<void> {
    if (this.readyCount() >= this.#settings.size) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** A task completed: whatever was failing works again. */
  taskCompleted(): void {
    this.#backoff.reset();
  }

  becomeIdle(slot: Slot): void {
    slot.state = 'idle';
    if (this.#settings.idleTtl > 0) {
      slot.idleTimer = setTimeout(() => {
        slot.idleTimer = null;
        if (slot.state === 'idle') this.recycle(slot, 'idleTtl');
      }, this.#settings.idleTtl);
    }
  }

  /** Stop a healthy worker on purpose and start its replacement. */
  recycle(slot: Slot, reason: RecycleReason): void {
    if (slot.state === 'stopping') return;
    this.#letGo(slot, reason);
    slot.worker.stop({ timeout: this.#settings.destroyTimeout }).catch(() => {});
  }

  /**
   * The worker with this pid is leaving on purpose (WorkerPool.retire): one
   * in service or starting is recycled (asked to stop, not interrupted); one
   * already out of service unasked (#broken: its task socket ended, as when
   * it exits) is let go, its exit no crash. One stopping on purpose, or
   * killed at readyTimeout, is left alone. False: no live worker has that pid.
   */
  retire(pid: number): boolean {
    const slot = this.find(pid);
    if (!slot) return false;
    if (slot.reason !== null || slot.killed || this.stopping) return true;
    if (slot.state === 'stopping') this.#letGo(slot, 'retired');
    else this.recycle(slot, 'retired');
    return true;
  }

  /** Out of service on purpose, for `reason`: reported, and replaced now. */
  #letGo(slot: Slot, reason: RecycleReason): void {
    clearSlotTimers(slot);
    slot.state = 'stopping';
    slot.reason = reason;
    this.counts.recycled++;
    this.#hooks.emit('recycle', slotInfo(slot), reason);
    this.ensure();
  }

  /** Give up on a busy worker whose task was rejected: forget its answer, replace it, kill it. */
  abandon(slot: Slot, reason: RecycleReason): void {
    slot.worker.abandon();
    this.recycle(slot, reason);
    slot.worker.kill('SIGKILL');
  }

  /** Start a new generation; resolves when every worker of an older one has exited. */
  reload(drainTimeout: number): Promise<void> {
    this.#drainTimeout = drainTimeout;
    const generation = ++this.generation;
    // New code is loaded by a new prototype; the old one forks no more and
    // exits once the workers it forked have been reaped.
    this.#prototypes?.retireCurrent();
    // Old workers still starting serve nobody yet: drop them now.
    for (const slot of this.slots) if (slot.state === 'starting' && slot.generation < generation) this.recycle(slot, 'reload');
    const done = new Promise<void>((resolve) => this.#reloads.push({ generation, resolve }));
    this.ensure();
    this.#checkReloads();
    return done;
  }

  /** Stop every worker (each gets destroyTimeout to finish its task); resolves when all have exited, and settles every wait. */
  stopAll(): Promise<void> {
    this.stopping = true;
    this.#backoff.cancel();
    const stops: Promise<unknown>[] = [];
    for (const slot of this.slots) {
      clearSlotTimers(slot);
      slot.state = 'stopping';
      slot.reason = 'stop';
      stops.push(slot.worker.stop({ timeout: this.#settings.destroyTimeout }));
    }
    return Promise.all(stops).then(async () => {
      await this.#prototypes?.stopAll(this.#settings.destroyTimeout);
      for (const r of this.#reloads.splice(0)) r.resolve();
      for (const w of this.#readyWaiters.splice(0)) w();
    });
  }

  /** The pid of the prototype new workers are forked from; null without one (not yet started, or between two). */
  prototypePid(): number | null {
    return this.#prototypes?.pid() ?? null;
  }

  /** The slot of the worker with this pid that has not exited, if any. */
  find(pid: number): Slot | undefined {
    for (const slot of this.slots) if (slot.worker.pid === pid && !slot.worker.hasExited) return slot;
    return undefined;
  }

  list(): PoolWorkerInfo[] {
    return [...this.slots].map((s) => slotInfo(s));
  }

  /** Spawn one worker; false (after scheduling a retry) if it could not be started. */
  #spawnSlot(rethrow: boolean): boolean {
    if (this.#prototypes) return this.#forkSlot(this.#prototypes, rethrow);
    let worker: WorkerHandle;
    try {
      worker = spawnWorker(this.#spawnOptions);
    } catch (err) {
      if (rethrow) throw err;
      this.#spawnFailed(err);
      return false;
    }
    this.#addSlot(worker);
    return true;
  }

  #spawnFailed(err: unknown): void {
    this.#hooks.emit('spawnError', err);
    this.#backoff.crashed();
    this.#backoff.retryLater(() => this.ensure());
  }

  /** Ask the prototype for a worker; it joins the pool once its pidfd is held. */
  #forkSlot(prototypes: PoolPrototypes, rethrow: boolean): boolean {
    const generation = this.generation;
    try {
      prototypes.fork(
        generation,
        (proc) => {
          if (!this.stopping) return void this.#addSlot(workerFromProcess(proc, this.#settings.maxFrame), generation);
          // Forked while the pool stopped: stop() resolves once it is gone.
          proc.close();
          return proc.exited;
        },
        (err) => {
          if (!this.stopping) this.#spawnFailed(err);
        },
      );
    } catch (err) {
      if (rethrow) throw err;
      this.#spawnFailed(err);
      return false;
    }
    return true;
  }

  /**
   * A prototype ended. Retired (a reload, stop()): expected. Otherwise it
   * crashed: the workers it forked are stopped (stop on control, SIGTERM,
   * SIGKILL, through their pidfds) and replaced from a new prototype, which
   * starts after the crash backoff.
   */
  #prototypeEnded(proto: Prototype): void {
    if (this.stopping || proto.retired) return;
    this.#backoff.crashed();
    for (const slot of this.slots) if (proto.workers.has(slot.worker.pid)) this.recycle(slot, 'prototype');
    this.ensure();
  }

  #addSlot(worker: WorkerHandle, generation = this.generation): void {
    const slot = newSlot(worker, generation);
    this.slots.add(slot);
    this.counts.spawned++;
    this.#watch(slot);
    // On the next tick, so a listener added right after the constructor
    // (which starts the first worker) sees the first 'spawn' too.
    const info = slotInfo(slot);
    process.nextTick(() => this.#hooks.emit('spawn', info));
  }

  /** Follow a new worker: its output, reports, readiness (within readyTimeout), breakage and exit. */
  #watch(slot: Slot): void {
    const { worker } = slot;
    const emit = this.#hooks.emit;
    worker.stdout.on('data', (chunk: Buffer) => emit('stdout', chunk, slotInfo(slot)));
    worker.on('workerError', (message: string, fatal: boolean) => emit('workerError', slotInfo(slot), message, fatal));
    // Every control message but ready, with its fds: this listener is their owner (WorkerHandle#receive).
    worker.on('message', (message: ControlMessage, fds: number[]) => this.#hooks.message(slotInfo(slot), message, fds));
    worker.on('exit', (info: WorkerExitInfo) => this.#onExit(slot, info));
    worker.on('broken', () => this.#broken(slot));
    const { readyTimeout } = this.#settings;
    slot.readyTimer = setTimeout(() => {
      slot.readyTimer = null;
      slot.killed = true;
      emit('workerError', slotInfo(slot), `worker did not say ready within readyTimeout (${readyTimeout} ms); killed`, true);
      worker.kill('SIGKILL');
    }, readyTimeout);
    // Ready as the worker's ready message is read (the handle's 'ready'),
    // not a microtask later: a message it sent right after, read in the same
    // turn, then comes from a worker the pool calls idle, after its 'ready'.
    worker.once('ready', () => this.#onReady(slot));
    worker.ready.catch((err: Error) => {
      // A worker the pool killed (readyTimeout) or stopped on purpose was
      // reported, or needs no report; any other is news (a script that
      // exits at once, a pid mismatch).
      if (slot.killed || slot.reason !== null) return;
      emit('workerError', slotInfo(slot), err.message, true);
      worker.kill('SIGKILL');
    });
  }

  #onReady(slot: Slot): void {
    if (slot.readyTimer) clearTimeout(slot.readyTimer);
    slot.readyTimer = null;
    if (slot.state !== 'starting' || slot.killed) return;
    slot.readyAt = Date.now();
    this.becomeIdle(slot);
    this.#hooks.emit('ready', slotInfo(slot));
    if (slot.generation === this.generation) this.#makeWay();
    // Forked for a generation a reload has since replaced (the fork was in
    // flight): it serves nobody, as the old workers reload() drops at once.
    else this.recycle(slot, 'reload');
    if (this.readyCount() >= this.#settings.size) for (const w of this.#readyWaiters.splice(0)) w();
    this.#hooks.dispatch();
  }

  /**
   * A worker of the current generation is ready: old workers make way for
   * it. Until `size` new ones are ready, one old worker per new one (an
   * idle one first), so the pool keeps its capacity through a reload; from
   * then on, every old worker left, so a pool grown above `size` is
   * replaced whole, and then shrinks to what its load needs (ensure()).
   */
  #makeWay(): void {
    const old = [...this.slots].filter((slot) => slot.generation !== this.generation && slot.state !== 'stopping' && !slot.draining);
    if (this.readyCount() >= this.#settings.size) {
      for (const slot of old) this.#retireOld(slot);
      return;
    }
    const next = old.find((slot) => slot.state === 'idle') ?? old[0];
    if (next) this.#retireOld(next);
  }

  /** A reload's old worker goes: at once if it serves nobody now, else after its task (within drainTimeout). */
  #retireOld(slot: Slot): void {
    if (slot.state !== 'busy') {
      this.recycle(slot, 'reload');
      return;
    }
    slot.draining = true;
    const job = slot.job;
    if (this.#drainTimeout > 0 && job) {
      const timeout = this.#drainTimeout;
      slot.drainTimer = setTimeout(() => this.#drainTimedOut(slot, job, timeout), timeout);
    }
  }

  /** A reload's old worker is still on its task drainTimeout ms after its replacement was ready: give up on the task. */
  #drainTimedOut(slot: Slot, job: Job, timeout: number): void {
    slot.drainTimer = null;
    if (slot.job !== job) return;
    // A task its onPart failed is settled, and its worker still on it: that
    // worker is killed all the same, the task's own error kept.
    if (!job.settled) {
      const { pid } = slot.worker;
      const message = `the task was still running drainTimeout (${timeout} ms) after reload() replaced its worker; worker pid ${pid} was killed`;
      this.#hooks.fail(job, new WorkerError('ERR_WORKER_DRAIN_TIMEOUT', message, { pid }));
    }
    this.abandon(slot, 'reload');
  }

  /**
   * A worker exited without being asked to: how long its replacement waits.
   * One that had been ready for backoffResetAfter ms was serving (a worker
   * with its own event loop takes no tasks, so no completed task says so):
   * whatever killed it (SIGKILL, the OOM killer, an exit() in the code it
   * ran) is no crash loop; it is replaced at once, and the streak starts
   * over, as after a completed task. One that had a task in hand was ready
   * and serving, and most likely that task killed it (a fatal error,
   * exit()): it is replaced at once, and the task's failure is the whole
   * cost; so is one that backoff.wasServing says had a request of its own
   * in hand. One that died before saying ready, or idle soon after, is a
   * crash loop: backoff.
   */
  #lose(slot: Slot): number {
    const { backoffResetAfter } = this.#settings;
    if (backoffResetAfter > 0 && slot.readyAt !== null && Date.now() - slot.readyAt >= backoffResetAfter) {
      this.#backoff.reset();
      return 0;
    }
    return slot.job !== null || this.#wasServing(slot) ? 0 : this.#backoff.crashed();
  }

  /** What backoff.wasServing says of a ready worker lost idle; a throw counts as no (and is reported). */
  #wasServing(slot: Slot): boolean {
    const ask = this.#settings.backoffWasServing;
    if (ask === null || slot.readyAt === null) return false;
    try {
      return ask(slotInfo(slot)) === true;
    } catch (err) {
      this.#hooks.emit('workerError', slotInfo(slot), `options.backoff.wasServing threw (${String(err)}); counted as a crash loop`, false);
      return false;
    }
  }

  /**
   * The worker can take no more tasks (WorkerHandle 'broken'): it broke the
   * protocol and is being killed, or its task socket ended, as it does when
   * the worker exits. Out of service now, so no task goes to it; its
   * replacement waits for the exit (the pidfd says so at once, or the kill
   * that follows), which settles its task and says whether it crashed: a
   * worker that said it was leaving, in a message read before that exit
   * (retire()), did not.
   */
  #broken(slot: Slot): void {
    if (slot.state === 'stopping') return;
    clearSlotTimers(slot);
    slot.state = 'stopping';
  }

  #onExit(slot: Slot, info: WorkerExitInfo): void {
    clearSlotTimers(slot);
    this.slots.delete(slot);
    const crashed = slot.reason === null && !this.stopping;
    const restartDelay = crashed ? this.#lose(slot) : 0;
    const job = slot.job;
    slot.job = null;
    slot.state = 'stopping';
    if (job && !job.settled) this.#hooks.fail(job, taskEndedError(info, this.stopping));
    const workerInfo = slotInfo(slot);
    this.#hooks.emit('exit', workerInfo, info);
    if (crashed) {
      this.counts.crashed++;
      this.#hooks.emit('crash', workerInfo, info, restartDelay);
    }
    this.ensure();
    this.#hooks.dispatch();
    this.#checkReloads();
  }

  #checkReloads(): void {
    if (this.#reloads.length === 0) return;
    this.#reloads = this.#reloads.filter((r) => {
      for (const slot of this.slots) if (slot.generation < r.generation) return true;
      r.resolve();
      return false;
    });
  }
}
