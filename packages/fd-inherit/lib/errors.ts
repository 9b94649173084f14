// Errors that are not about a bad argument: the ones we raise ourselves in
// libuv's words, and the renaming that turns what a step of a spawn threw
// into the error spawn() gives its caller.
import { constants as osConstants } from 'node:os';
import { isolationStep } from './isolation.js';
import type { SpawnRequest } from './options.js';

type ErrnoException = NodeJS.ErrnoException;

const ERRNO = osConstants.errno as Record<string, number>;

// libuv's wording for the errors we raise ourselves rather than get from a syscall.
const MESSAGES: Record<string, string> = {
  EACCES: 'permission denied',
  EAFNOSUPPORT: 'address family not supported',
  EBADF: 'bad file descriptor',
  EINVAL: 'invalid argument',
  ENAMETOOLONG: 'name too long',
  ENOENT: 'no such file or directory',
  ERANGE: 'result too large',
  ESRCH: 'no such process',
};

export function systemError(code: string, syscall: string, what: string): ErrnoException {
  const err: ErrnoException = new Error(`${code}: ${MESSAGES[code] ?? code}, ${what}`);
  err.errno = -(ERRNO[code] ?? 0);
  err.code = code;
  err.syscall = syscall;
  return err;
}

export function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  (err as ErrnoException).code = 'ABORT_ERR';
  return err;
}

/** An errno error from the binding for fcntl on `fd`: the message names the fd. */
export function explainFcntl(err: unknown, fd: number): unknown {
  const e = err as ErrnoException;
  if (e instanceof Error && e.syscall === 'fcntl') e.message += ` (fd ${fd})`;
  return e;
}

/** Whether `err` is an errno Error from a system call (the binding's, or systemError's). */
function isErrno(err: unknown): err is ErrnoException {
  const e = err as ErrnoException;
  return e instanceof Error && typeof e.syscall === 'string' && typeof e.code === 'string';
}

/** The part of a binding error's message after "CODE: " and before ", syscall". */
function errnoText(err: ErrnoException): string {
  const m = /^[A-Z0-9_]+: (.*), [^,]*$/.exec(err.message);
  return m ? m[1]! : err.message;
}

// The first kernel with each creation path; only ever reported when all of
// them were refused.
const MIN_KERNEL: Record<string, string> = {
  clone: '5.3 (clone3, or clone with CLONE_PIDFD and pidfd_open)',
  pidfd_open: '5.3',
};

/** What spawn() names in its errors. */
type Spawned = Pick<SpawnRequest, 'file' | 'args' | 'cwd'> & Partial<Pick<SpawnRequest, 'isolation'>>;

/**
 * The public face of a failed spawn: `syscall: 'spawn'`, `path`, `spawnargs`
 * like child_process, the system call that failed as `step`, and a message
 * that says what was being done. `childFd`: the child fd a closed parent fd
 * was meant for.
 */
export function spawnError(raw: ErrnoException, spawned: Spawned, childFd?: number): ErrnoException {
  const { file, cwd } = spawned;
  const step = raw.syscall ?? 'spawn';
  const isolation = isolationStep(raw, step, spawned.isolation ?? null, `spawn '${file}'`);
  let what = `spawn '${file}'`;
  if (isolation !== null) what = isolation.what;
  else if (step === 'chdir') what = `chdir '${cwd}' (spawn '${file}')`;
  else if (step === 'fcntl' && childFd !== undefined) {
    what = `spawn '${file}' (fd ${(raw as { fd?: number }).fd} for child fd ${childFd} is not open)`;
  } else if (step !== 'execve' && step !== 'spawn') what = `${step} (spawn '${file}')`;
  if (raw.code === 'ENOSYS' && MIN_KERNEL[step]) what += `: needs Linux ${MIN_KERNEL[step]} or later`;
  const err: ErrnoException & { spawnargs?: string[]; step?: string; namespace?: string } = new Error(
    `${raw.code}: ${errnoText(raw)}, ${what}`,
  );
  err.errno = raw.errno;
  err.code = raw.code;
  err.syscall = 'spawn';
  err.path = file;
  err.spawnargs = spawned.args;
  err.step = step;
  if (isolation?.namespace !== undefined) err.namespace = isolation.namespace;
  return err;
}

/** What a step of spawn() threw, as spawn() throws it: errno errors renamed, anything else as it is. */
export function spawnFailure(err: unknown, spawned: Spawned, childFd?: number): unknown {
  return isErrno(err) ? spawnError(err, spawned, childFd) : err;
}

/**
 * What the binding's spawn threw, as spawn() throws it: errno errors
 * renamed, and a child fd number at or past the fd limit the child starts
 * with told against the option that asked for it (`optionFor`).
 */
export function nativeSpawnFailure(err: unknown, spawned: Spawned, optionFor: (childFd: number) => string): unknown {
  if (isErrno(err)) return spawnError(err, spawned, (err as { childFd?: number }).childFd);
  const e = err as ErrnoException & { childFd?: number; fdLimit?: number };
  if (e instanceof RangeError && e.code === 'ERR_OUT_OF_RANGE' && e.childFd !== undefined) {
    e.message =
      `The value of "${optionFor(e.childFd)}" is out of range. A child fd number must be below the child's ` +
      `RLIMIT_NOFILE (${e.fdLimit}), this process's. Received child fd ${e.childFd}`;
  }
  return err;
}
