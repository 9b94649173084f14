// The shapes @folk/pidfd takes and gives: exit information, rusage, options.

/** Resource usage of an exited process (and the descendants it waited for), from waitid(2). */
export interface Rusage {
  /** CPU time spent in user mode, in milliseconds (microsecond precision). */
  readonly userCpuMs: number;
  /** CPU time spent in the kernel, in milliseconds (microsecond precision). */
  readonly systemCpuMs: number;
  /** Peak resident set size, in kilobytes. */
  readonly maxRssKb: number;
  /** Page faults served without I/O. */
  readonly minorPageFaults: number;
  /** Page faults that needed I/O. */
  readonly majorPageFaults: number;
  /** Block input operations. */
  readonly fsReads: number;
  /** Block output operations. */
  readonly fsWrites: number;
  readonly voluntaryContextSwitches: number;
  readonly involuntaryContextSwitches: number;
}

/**
 * How a process ended.
 *
 * - Exited normally: `code` is its exit code, `signal` and `signalNumber` are null.
 * - Killed by a signal: `code` is null, `signalNumber` is the signal and
 *   `signal` its name (null for the unnamed real-time signals).
 * - Exited, but its status is not ours to know (not our child, or someone
 *   else, such as libuv for a `child_process` child, reaped it first): `code`,
 *   `signal` and `signalNumber` are all null and there is no `rusage`.
 */
export interface ExitInfo {
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly signalNumber: number | null;
  readonly rusage?: Rusage;
}

export interface PidFdOpenOptions {
  /**
   * The process is our own child and nothing else reaps it (for example one
   * spawned by `@folk/fd-inherit`): waiting reaps it with waitid(P_PIDFD).
   * Never set this for a `child_process` child; libuv reaps those, and if
   * we reap first its `'exit'` event never fires and the ChildProcess keeps
   * Node alive for ever. Default `false`.
   *
   * The PidFd is then the only thing that can reap the process, and it does
   * so only in `wait()`, `waitSync()`, `tryWait()` once the process has
   * exited, or `close()` once it has exited. Nothing reaps it in the
   * background: a handle closed while the process runs, or dropped and
   * garbage-collected without any of those, leaves the process a zombie
   * when it exits, until this Node process ends. Keep the handle until the
   * process has exited, and wait for it.
   */
  reap?: boolean;
}

export interface PidFdAdoptOptions extends PidFdOpenOptions {
  /** The process id, when the caller knows it. Default: asked of the kernel (PIDFD_GET_INFO, else /proc/self/fdinfo). */
  pid?: number;
}

export interface PidFdWaitOptions {
  /** Cancels this wait (the promise rejects with an `AbortError`); other waits go on. */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------
// Node-style errors
