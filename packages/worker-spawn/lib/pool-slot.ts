// A WorkerPool's record of one of its workers: what the pool knows about
// it beyond what its WorkerHandle knows, and the timers running for it.

import type { PoolWorkerInfo, RecycleReason } from './pool-options.js';
import type { Pending } from './task-channel.js';
import type { WorkerHandle } from './worker-handle.js';

/** A task the pool holds, queued or running. */
export interface Job {
  payload: Uint8Array;
  /** run()'s options.onPart: the pieces of the answer before its end. */
  onPart: ((chunk: Buffer) => unknown) | undefined;
  resolve: (value: Buffer) => void;
  reject: (err: Error) => void;
  settled: boolean;
  allocateTimer: NodeJS.Timeout | null;
}

export interface Slot {
  worker: WorkerHandle;
  state: PoolWorkerInfo['state'];
  jobs: number;
  generation: number;
  /** Stop after the current task: a reload replacement for it is ready. */
  draining: boolean;
  /** Killed at readyTimeout: a ready message already on its way is ignored. */
  killed: boolean;
  /** Why it is stopping, when on purpose. */
  reason: RecycleReason | 'stop' | null;
  job: Job | null;
  /** Settles `job` from the worker's answer: made once per slot (WorkerPool#assign), not per task. */
  answer: Pending | null;
  startedAt: number;
  /** When the pool saw it ready (Date.now()); null before. */
  readyAt: number | null;
  idleTimer: NodeJS.Timeout | null;
  readyTimer: NodeJS.Timeout | null;
  execTimer: NodeJS.Timeout | null;
  /** Ends a reload's wait for the task of a draining worker (ReloadOptions.drainTimeout). */
  drainTimer: NodeJS.Timeout | null;
}

/** A slot for a worker just spawned, in `generation`. */
export function newSlot(worker: WorkerHandle, generation: number): Slot {
  return {
    worker,
    state: 'starting',
    jobs: 0,
    generation,
    draining: false,
    killed: false,
    reason: null,
    job: null,
    answer: null,
    startedAt: Date.now(),
    readyAt: null,
    idleTimer: null,
    readyTimer: null,
    execTimer: null,
    drainTimer: null,
  };
}

export function clearSlotTimers(slot: Slot): void {
  for (const key of ['idleTimer', 'readyTimer', 'execTimer', 'drainTimer'] as const) {
    const t = slot[key];
    if (t) clearTimeout(t);
    slot[key] = null;
  }
}

export function slotInfo(slot: Slot): PoolWorkerInfo {
  return { pid: slot.worker.pid, state: slot.state, jobs: slot.jobs, generation: slot.generation, startedAt: slot.startedAt };
}
