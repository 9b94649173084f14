// Errors we raise ourselves in libuv's words, and the context added to the
// binding's errno errors (what was being done; the kernel an ENOSYS needs).
import { constants } from 'node:os';
import { invalidArgValue } from './internal/args.js';
import { readFileSync } from 'node:fs';

type ErrnoException = NodeJS.ErrnoException;

// The messages libuv gives the few errors we raise ourselves rather than get
// from a syscall.
const MESSAGES: Record<string, string> = {
  EBADF: 'bad file descriptor',
  ECHILD: 'no child processes',
  ESRCH: 'no such process',
};

export function systemError(code: string, syscall: string, detail: string): ErrnoException {
  const err: ErrnoException = new Error(`${code}: ${MESSAGES[code]}, ${syscall} (${detail})`);
  err.errno = -(constants.errno as Record<string, number>)[code]!;
  err.code = code;
  err.syscall = syscall;
  return err;
}

// The first kernel with each call.
const MIN_KERNEL: Record<string, string> = {
  pidfd_send_signal: '5.1',
  pidfd_open: '5.3',
  waitid: '5.4 (P_PIDFD)',
  pidfd_getfd: '5.6',
};

/** Say what was being done on an errno error from the binding; ENOSYS names the kernel needed. */
export function explain(err: unknown, detail: string): unknown {
  const e = err as ErrnoException;
  if (!(e instanceof Error) || typeof e.syscall !== 'string') return err;
  e.message += ` (${detail})`;
  const kernel = MIN_KERNEL[e.syscall];
  if (e.code === 'ENOSYS' && kernel) e.message += `: ${e.syscall} needs Linux ${kernel} or later`;
  return e;
}

/** The pid a pidfd refers to, read from /proc/self/fdinfo (before Linux 6.13's PIDFD_GET_INFO). */
export function readFdinfoPid(fd: number): number {
  let text: string;
  try {
    text = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
  } catch (err) {
    if ((err as ErrnoException).code === 'ENOENT') throw systemError('EBADF', 'adopt', `fd ${fd} is not open`);
    throw err;
  }
  const m = /^Pid:\s*(-?\d+)\s*$/m.exec(text);
  if (!m) throw invalidArgValue('fd', 'must be a pidfd', fd);
  return Number(m[1]);
}
