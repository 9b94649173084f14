// WorkerError: what tasks and calls of this package reject with, a `code`
// on every one.

/** Codes of the errors this package rejects tasks and calls with. */
export type WorkerErrorCode =
  | 'ERR_WORKER_FRAME_TOO_LARGE'
  | 'ERR_WORKER_PROTOCOL'
  | 'ERR_WORKER_TASK'
  | 'ERR_WORKER_EXITED'
  | 'ERR_WORKER_CRASHED'
  | 'ERR_WORKER_EXEC_TIMEOUT'
  | 'ERR_WORKER_DRAIN_TIMEOUT'
  | 'ERR_WORKER_ALLOCATE_TIMEOUT'
  | 'ERR_WORKER_QUEUE_FULL'
  | 'ERR_WORKER_POOL_STOPPED'
  | 'ERR_WORKER_STOPPED'
  | 'ERR_WORKER_PID_MISMATCH'
  | 'ERR_WORKER_NOT_FOUND'
  | 'ERR_WORKER_PROTOTYPE';

/** An error from a worker or the pool; `code` says which. */
export class WorkerError extends Error {
  override name = 'WorkerError';
  /** One of the `ERR_WORKER_*` codes. */
  readonly code: WorkerErrorCode;
  /** The worker involved, when there is one. */
  pid?: number;
  /** For ERR_WORKER_TASK: the code the worker put in its ERROR frame (`HANDLER_ERROR`, ...). */
  workerCode?: string;
  /** For ERR_WORKER_CRASHED / ERR_WORKER_EXITED: how the worker ended. */
  exit?: { code: number | null; signal: string | null };

  constructor(code: WorkerErrorCode, message: string, extra?: Partial<Pick<WorkerError, 'pid' | 'workerCode' | 'exit'>>) {
    super(message);
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** "exit code 3" / "signal SIGKILL": how a worker ended, for messages. */
export function describeExit(exit: { code: number | null; signal: string | null }): string {
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

/** ERR_WORKER_FRAME_TOO_LARGE for a task payload refused before anything was sent. */
/**
 * What a pool task that was running on a worker that exited is rejected
 * with: the reason the worker was killed for breaking the protocol (its
 * task socket ended and it did not exit), ERR_WORKER_POOL_STOPPED while
 * the pool stops, else ERR_WORKER_CRASHED.
 */
export function taskEndedError(
  info: { pid: number; code: number | null; signal: string | null; reason?: WorkerError },
  poolStopping: boolean,
): WorkerError {
  if (info.reason) return info.reason;
  const exit = { code: info.code, signal: info.signal };
  if (poolStopping) {
    const message = `the worker pool was stopped while the task ran; worker pid ${info.pid} ended (${describeExit(info)})`;
    return new WorkerError('ERR_WORKER_POOL_STOPPED', message, { pid: info.pid, exit });
  }
  return new WorkerError('ERR_WORKER_CRASHED', `worker pid ${info.pid} crashed (${describeExit(info)}) while running the task`, { pid: info.pid, exit });
}

export function payloadTooLarge(bytes: number, maxFrame: number, pid?: number): WorkerError {
  return new WorkerError(
    'ERR_WORKER_FRAME_TOO_LARGE',
    `task payload of ${bytes} bytes exceeds the maximum frame size of ${maxFrame} bytes; nothing was sent`,
    pid === undefined ? undefined : { pid },
  );
}
