// The prototypes of a pool with options.prototype: the one new workers are
// forked from (started when first needed) and retired ones still reaping
// the workers they forked. PoolWorkers (pool-workers.ts) decides when to
// fork and what a prototype's crash means; this keeps the prototypes.

import { dirname, join } from 'node:path';
import { PHP_WORKER_LIBRARY } from './php-library.js';
import { Prototype } from './prototype.js';
import type { SpawnWorkerOptions } from './worker-handle.js';
import { processPlan, type WorkerProcess } from './worker-process.js';

/** php/prototype.php: runs the preload, then forks workers on request. */
const PROTOTYPE_SCRIPT = join(dirname(PHP_WORKER_LIBRARY), 'prototype.php');

/** What PoolPrototypes tells the pool it serves. */
export interface PrototypeHooks {
  /** The prototype wrote to its stdout (so did, through it, the workers it forked). */
  stdout(chunk: Buffer, pid: number): void;
  /** A prototype exited; `proto.retired` says whether that was asked for. */
  ended(proto: Prototype): void;
}

export class PoolPrototypes {
  readonly #spawnOptions: SpawnWorkerOptions;
  readonly #preload: string;
  readonly #maxFrame: number;
  /** How long a prototype's preload may run (the pool's readyTimeout). */
  readonly #readyTimeout: number;
  readonly #hooks: PrototypeHooks;
  /** The prototype new workers are forked from; null until needed, and after a reload or its exit. */
  #current: Prototype | null = null;
  /** Every prototype still running: the current one, and retired ones whose workers are still being reaped. */
  readonly #all = new Set<Prototype>();
  /** Forks asked of a prototype and not yet answered, by generation. */
  readonly #forking: number[] = [];
  /** Each fork until it is answered and what `forked` returned for it (a closing worker's `exited`) has settled: stopAll() waits for them. */
  readonly #settling = new Set<Promise<unknown>>();

  constructor(spawnOptions: SpawnWorkerOptions, preload: string, maxFrame: number, readyTimeout: number, hooks: PrototypeHooks) {
    this.#spawnOptions = spawnOptions;
    this.#preload = preload;
    this.#maxFrame = maxFrame;
    this.#readyTimeout = readyTimeout;
    this.#hooks = hooks;
  }

  /** The pid of the prototype new workers are forked from; null if none runs (not yet started, or between two). */
  pid(): number | null {
    return this.#current && !this.#current.hasExited ? this.#current.pid : null;
  }

  /** Forks of `generation` asked for and not yet answered. */
  forkingFor(generation: number): number {
    let n = 0;
    for (const g of this.#forking) if (g === generation) n++;
    return n;
  }

  /**
   * Fork a worker of `generation` from the current prototype, started if
   * there is none, and hand it to `forked` (or the fork's error to
   * `failed`), in the same turn as it stops counting in forkingFor(): never
   * a moment where the worker is in neither. Throws what starting the
   * prototype throws.
   */
  fork(generation: number, forked: (proc: WorkerProcess) => unknown, failed: (err: unknown) => void): void {
    const proto = this.#currentPrototype();
    this.#forking.push(generation);
    const done = (): void => void this.#forking.splice(this.#forking.indexOf(generation), 1);
    const settling = proto.fork().then(
      (proc) => {
        done();
        return forked(proc);
      },
      (err: unknown) => {
        done();
        failed(err);
      },
    );
    this.#settling.add(settling);
    const settled = (): void => void this.#settling.delete(settling);
    settling.then(settled, (err: unknown) => {
      settled();
      throw err; // a bug of the pool's own: as loud as before
    });
  }

  /** A reload: the current prototype forks no more, and exits once its workers are reaped; the next fork starts a new one. */
  retireCurrent(): void {
    this.#current?.retire();
    this.#current = null;
  }

  /**
   * Retire every prototype and wait for each to exit (SIGKILL after
   * `timeout` ms), and for the forks still in flight: a worker forked while
   * the pool stopped is closed by `forked`, and its fds are closed only
   * once its exit is known.
   */
  async stopAll(timeout: number): Promise<void> {
    await Promise.all([...this.#all].map((proto) => this.#stop(proto, timeout)));
    await Promise.allSettled([...this.#settling]);
  }

  #currentPrototype(): Prototype {
    if (this.#current && !this.#current.hasExited) return this.#current;
    const plan = processPlan(this.#spawnOptions, true);
    const proto = new Prototype({ ...plan, argv: [PROTOTYPE_SCRIPT, this.#preload, ...plan.argv] }, this.#preload, this.#maxFrame, this.#readyTimeout);
    this.#current = proto;
    this.#all.add(proto);
    proto.process.stdout.on('data', (chunk: Buffer) => this.#hooks.stdout(chunk, proto.pid));
    proto.process.on('exit', () => {
      this.#all.delete(proto);
      if (this.#current === proto) this.#current = null;
      this.#hooks.ended(proto);
    });
    return proto;
  }

  async #stop(proto: Prototype, timeout: number): Promise<void> {
    proto.retire();
    const timer = setTimeout(() => proto.kill(), timeout);
    await proto.process.exited;
    clearTimeout(timer);
  }
}
