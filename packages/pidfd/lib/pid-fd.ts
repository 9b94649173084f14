// The PidFd class: one process, by pidfd, waited for on the event loop.
import {
  abortError,
  illegalConstructor,
  INT32_MAX,
  invalidArgValue,
  optionalBoolean,
  optionsObject,
  validateAbortSignal,
  validateInteger,
} from './internal/args.js';
import { explain, readFdinfoPid, systemError } from './errors.js';
import { deliver, exitFromStatus, settle, toExitInfo, unknownExit, type Outcome, type Waiter } from './exit.js';
import { native, type NativeHandle, type RawExit } from './native.js';
import { signalNumber } from './internal/signals.js';
import type { ExitInfo, PidFdAdoptOptions, PidFdOpenOptions, PidFdWaitOptions } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

// Only open() and adopt() may construct: they validate the fd and the pid.
// TypeScript's `private` does not bind plain JavaScript, where `new
// PidFd(fd)` would make the handle own (and close, at close() or garbage
// collection) whatever fd number it was given, libuv's own epoll fd included.
const CONSTRUCT: unique symbol = Symbol('PidFd');

// ---------------------------------------------------------------------------

/**
 * A handle to one process that stays valid however long the process has been
 * gone: signals go to that process or fail with ESRCH, never to a process that
 * reused its pid.
 *
 * The PidFd owns its fd: call `close()` (or use `using`) when done. A PidFd
 * that is garbage-collected without `close()` has its fd closed then, at a
 * time you do not control (and only if the number still refers to the
 * pidfd: see `fd`); a pending `wait()` keeps it from being collected. The
 * collector never reaps: see `PidFdOpenOptions.reap`.
 */
export class PidFd {
  /** The process id the handle was made for. */
  readonly pid: number;
  readonly #reap: boolean;
  #fd: number;
  /** The handle's private duplicate of the pidfd, which every syscall uses (see NativeHandle). */
  readonly #io: number;
  readonly #handle: NativeHandle;
  #outcome: Outcome | undefined;
  readonly #waiters = new Set<Waiter>();
  /** What the native handle watches for the pending waits: nothing, the pidfd's readiness, or SIGCHLD. */
  #watching: 'none' | 'pidfd' | 'sigchld' = 'none';

  private constructor(token: typeof CONSTRUCT, fd: number, pid: number, reap: boolean) {
    if (token !== CONSTRUCT) throw illegalConstructor('use PidFd.open(pid) or PidFd.adopt(fd)');
    this.#handle = new native.Handle(fd, reap);
    this.#io = this.#handle.privateFd();
    this.#fd = fd;
    this.pid = pid;
    this.#reap = reap;
  }

  /**
   * pidfd_open(2): a handle to the process `pid`. The fd is close-on-exec.
   *
   * Opening a pid is race-free for our own children that nobody has reaped yet
   * (their pid cannot be reused before that); for other processes, open it
   * while you know the pid still names the process you mean.
   *
   * @throws ESRCH when no such process exists; EINVAL when `pid` is a thread,
   * not a process; EMFILE/ENFILE; ENOSYS before Linux 5.3.
   */
  static open(pid: number, options?: PidFdOpenOptions): PidFd {
    validateInteger(pid, 'pid', 1, INT32_MAX);
    const reap = optionalBoolean(optionsObject(options), 'reap', false);
    let fd: number;
    try {
      fd = native.pidfdOpen(pid);
    } catch (err) {
      throw explain(err, `pid ${pid}`);
    }
    try {
      return new PidFd(CONSTRUCT, fd, pid, reap);
    } catch (err) {
      // No fd left for the handle's private duplicate (EMFILE): nothing may keep the pidfd.
      native.close(fd);
      throw explain(err, `pid ${pid}: duplicating the pidfd for the handle`);
    }
  }

  /**
   * Take ownership of a pidfd the caller already owns (for example one a
   * spawn returned). On success the PidFd closes it; if this throws, the
   * caller still owns it. The pid is asked of the kernel (PIDFD_GET_INFO on
   * 6.13+, else /proc/self/fdinfo) and checked against `options.pid` if given.
   */
  static adopt(fd: number, options?: PidFdAdoptOptions): PidFd {
    validateInteger(fd, 'fd', 0, INT32_MAX);
    const opts = optionsObject(options);
    const reap = optionalBoolean(opts, 'reap', false);
    const given = opts['pid'] === undefined ? undefined : validateInteger(opts['pid'], 'options.pid', 1, INT32_MAX);
    // Either also proves the fd is a pidfd. The ioctl (6.13) costs a few
    // microseconds, the fdinfo read tens, which counts on every spawn; only
    // fdinfo tells the unusual cases apart (no other fd has a Pid: line).
    const fast = native.pidfdPid(fd);
    const seen = fast > 0 ? fast : readFdinfoPid(fd);
    let pid: number;
    if (given !== undefined) {
      // 0: the process is in a pid namespace we cannot see; -1: already reaped.
      if (seen > 0 && seen !== given) {
        throw invalidArgValue('options.pid', `does not match the process fd ${fd} refers to (pid ${seen})`, given);
      }
      pid = given;
    } else if (seen > 0) {
      pid = seen;
    } else if (seen === 0) {
      throw invalidArgValue('fd', 'refers to a process outside this pid namespace; pass options.pid', fd);
    } else {
      throw systemError('ESRCH', 'adopt', `the process of fd ${fd} was already reaped and no options.pid was given`);
    }
    if (native.isThreadPidfd(fd)) {
      throw invalidArgValue('fd', 'is a pidfd for one thread (PIDFD_THREAD); a PidFd is for a whole process', fd);
    }
    try {
      return new PidFd(CONSTRUCT, fd, pid, reap);
    } catch (err) {
      throw explain(err, `fd ${fd}: duplicating the pidfd for the handle`);
    }
  }

  /**
   * The pidfd, or -1 once closed. Do not close it yourself; call `close()`.
   * (If you did, nothing breaks: the PidFd works through a private
   * duplicate of its own, and `close()` and the garbage collector see that
   * the number no longer refers to the same file and leave it alone.)
   */
  get fd(): number {
    return this.#fd;
  }

  /**
   * pidfd_send_signal(2). `signal` is a name (`'SIGKILL'`) or a number
   * (0 checks that the process exists); default `'SIGTERM'`.
   *
   * @throws ESRCH once the process has exited (even while it is an unreaped
   * zombie, which the kernel would still accept signals for); EPERM.
   */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    const sig = signalNumber(signal, 'signal');
    this.#assertOpen('pidfd_send_signal');
    if (this.#outcome !== undefined || native.readable(this.#io, 0)) {
      throw systemError('ESRCH', 'pidfd_send_signal', `process ${this.pid} has exited`);
    }
    try {
      native.sendSignal(this.#io, sig);
    } catch (err) {
      throw explain(err, `pid ${this.pid}, signal ${signal}`);
    }
  }

  /**
   * Resolves when the process exits, from pidfd readiness on the event loop
   * (no thread is parked, nothing polls on a timer). Any number of waits may
   * be pending on one PidFd; they share one poll handle and one answer.
   *
   * What it resolves with (and what every later wait, `waitSync()` and
   * `tryWait()` on this PidFd then return, unchanged):
   * - `reap: true`: the process is reaped with waitid(P_PIDFD) and the
   *   ExitInfo has `code`/`signal` and `rusage`. If its status was already
   *   gone (someone else reaped it, or it is not our child) the wait rejects
   *   with ECHILD.
   * - default: the status is only peeked (WNOWAIT), so a `child_process`
   *   child's `'exit'` event still fires. If the peek finds it (an unreaped
   *   child of ours), the ExitInfo has `code`/`signal`/`rusage`; if not (not
   *   our child, or libuv reaped it first) it resolves with `code`, `signal`
   *   and `signalNumber` all null.
   * - A child being traced (strace, gdb): the kernel shows its exit to the
   *   tracer first; the wait stays pending, watching for SIGCHLD, until the
   *   tracer lets go, then answers as above.
   *
   * Rejects with an `AbortError` when `options.signal` aborts, and with EBADF
   * if the PidFd is closed while the process still runs.
   */
  wait(options?: PidFdWaitOptions): Promise<ExitInfo> {
    let signal: AbortSignal | undefined;
    try {
      signal = validateAbortSignal(optionsObject(options)['signal'], 'options.signal');
      this.#assertOpen('waitid');
    } catch (err) {
      return Promise.reject(err);
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#outcome !== undefined) {
      const outcome = this.#outcome;
      return new Promise((resolve) => resolve(settle(outcome)));
    }
    return new Promise<ExitInfo>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          this.#forget(waiter);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.add(waiter);
      if (this.#watching === 'none') {
        try {
          this.#handle.watchPidfd(this.#onReady);
        } catch (err) {
          this.#forget(waiter);
          reject(explain(err, `pid ${this.pid}`));
          return;
        }
        this.#watching = 'pidfd';
      }
    });
  }

  /**
   * Blocks the calling thread (and so the event loop) until the process
   * exits; returns what `wait()` would. Meant for scripts and shutdown paths.
   */
  waitSync(): ExitInfo {
    this.#assertOpen('waitid');
    if (this.#outcome === undefined) native.readable(this.#io, -1);
    // Exited; if a tracer still holds the exit, sleep in waitid until it lets go.
    return settle((this.#outcome ?? this.#collect() ?? this.#collect(true))!);
  }

  /**
   * `null` while the process runs (or, having exited, while a tracer still
   * holds its exit); afterwards what `wait()` would give. Never blocks.
   */
  tryWait(): ExitInfo | null {
    this.#assertOpen('waitid');
    if (this.#outcome === undefined && !native.readable(this.#io, 0)) return null;
    const outcome = this.#outcome ?? this.#collect();
    return outcome ? settle(outcome) : null;
  }

  /**
   * pidfd_getfd(2) (Linux 5.6): a close-on-exec duplicate, in this process,
   * of the process's fd `targetFd`. Needs ptrace access to the process.
   *
   * @throws EBADF when the process has no such fd; EPERM without ptrace
   * rights; ESRCH when it has exited.
   */
  getFd(targetFd: number): number {
    validateInteger(targetFd, 'targetFd', 0, INT32_MAX);
    this.#assertOpen('pidfd_getfd');
    try {
      return native.getfd(this.#io, targetFd);
    } catch (err) {
      const e = explain(err, `fd ${targetFd} of pid ${this.pid}`) as ErrnoException;
      if (e.code === 'EPERM') {
        e.message +=
          ': taking an fd from another process needs ptrace access to it ' +
          '(the same user and a kernel.yama.ptrace_scope that allows it, or CAP_SYS_PTRACE)';
      }
      throw e;
    }
  }

  /**
   * How the process ended, asked of the kernel (PIDFD_GET_INFO with
   * PIDFD_INFO_EXIT, Linux 6.15) rather than of waitid: this works for a
   * process that is not our child, once its own parent has reaped it. No
   * `rusage` (the kernel keeps none here). `null` while the process runs or
   * is an unreaped zombie, and on kernels that keep no exit information
   * (before 6.15): the caller then needs the status from the parent.
   * Never reaps.
   */
  exitInfo(): ExitInfo | null {
    this.#assertOpen('ioctl');
    let status: number | null;
    try {
      status = native.exitStatus(this.#io);
    } catch (err) {
      const code = (err as ErrnoException).code;
      // No PIDFD_GET_INFO at all (before 6.13): nothing to be had here.
      if (code === 'ENOTTY' || code === 'EINVAL') return null;
      throw explain(err, `pid ${this.pid}`);
    }
    return status === null ? null : exitFromStatus(this.pid, status);
  }

  /** Pending waits keep the event loop alive (the default), like a child process. */
  ref(): this {
    this.#handle.ref();
    return this;
  }

  /** Pending waits no longer keep the event loop alive; they still resolve if it runs. */
  unref(): this {
    this.#handle.unref();
    return this;
  }

  /**
   * Close the pidfd. Pending waits reject with EBADF, unless the process
   * has already exited: then they settle as they would have on the event
   * loop's next turn (close() collects the exit for them). Idempotent. With
   * `reap: true`, a process that has already exited is reaped first; one
   * still running is not, and stays a zombie after it exits unless something
   * else reaps it, so close after `wait()` settles.
   */
  close(): void {
    if (this.#fd === -1) return;
    // With reap: true nobody else will ever reap the process, and without the
    // fd we cannot: collect an exit that has already happened now, so closing
    // early (say right after kill()) leaves no zombie. Pending waits would
    // have had that exit on the loop's next turn; collect it for them too
    // (a peek without reap). Never blocks. Through the private fd, so
    // never through a number someone closed by hand and the kernel reused.
    if (this.#outcome === undefined && (this.#reap || this.#waiters.size > 0)) {
      try {
        if (native.readable(this.#io, 0)) this.#collect();
      } catch {
        // Closing regardless; the waits get EBADF below.
      }
    }
    this.#fd = -1;
    this.#watching = 'none';
    this.#handle.close();
    const outcome = this.#outcome;
    const waiters = [...this.#waiters];
    for (const w of waiters) {
      this.#forget(w);
      if (outcome) deliver(w, outcome);
      else w.reject(systemError('EBADF', 'waitid', `PidFd of pid ${this.pid} was closed while waiting`));
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #assertOpen(syscall: string): void {
    if (this.#fd === -1) throw systemError('EBADF', syscall, `PidFd of pid ${this.pid} is closed`);
  }

  /** Drop one waiter; the watching stops when nobody is left. */
  #forget(waiter: Waiter): void {
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
    this.#waiters.delete(waiter);
    if (this.#waiters.size === 0 && this.#watching !== 'none') {
      this.#watching = 'none';
      this.#handle.stop();
    }
  }

  // Runs from the native handle: the pidfd is readable, so the process has
  // exited (or polling failed); or, once a tracer was found holding the exit,
  // a SIGCHLD came, perhaps the one saying it let go.
  readonly #onReady = (err: Error | null): void => {
    let outcome: Outcome | null;
    try {
      if (err) throw err;
      outcome = this.#outcome ?? this.#collect();
      if (outcome === null && this.#watching === 'pidfd') {
        // The pidfd stays readable; polling it would wake every loop turn
        // until the tracer lets go, and then the kernel sends us SIGCHLD.
        // Watch for that instead, and ask once more in case it came first.
        this.#handle.watchSigchld(this.#onReady);
        this.#watching = 'sigchld';
        outcome = this.#collect();
      }
    } catch (e) {
      outcome = { error: e as Error };
    }
    if (outcome === null) return; // still held: the next SIGCHLD asks again
    const waiters = [...this.#waiters];
    for (const w of waiters) this.#forget(w);
    for (const w of waiters) deliver(w, outcome);
  };

  /**
   * After readiness: reap or peek, and remember the answer. null (nothing
   * remembered) while a tracer holds the exit: a zombie is shown to its
   * tracer before its parent. (A status someone else reaped, even at this
   * very moment, is ECHILD, never null.) `block` sleeps in the kernel until
   * then instead.
   */
  #collect(block = false): Outcome | null {
    let raw: RawExit | null;
    try {
      raw = native.waitid(this.#io, !this.#reap, block);
    } catch (err) {
      if ((err as ErrnoException).code !== 'ECHILD') throw explain(err, `pid ${this.pid}`);
      if (this.#reap) {
        const error = explain(
          err,
          `pid ${this.pid}: its exit status was already collected elsewhere, or it is not a child of this process`,
        ) as Error;
        return (this.#outcome = { error });
      }
      // Not our child, or reaped by someone else (libuv, for a
      // child_process child): it has exited, with a status we cannot know.
      return (this.#outcome = { info: unknownExit(this.pid) });
    }
    if (raw === null) return null;
    return (this.#outcome = { info: toExitInfo(raw) });
  }
}
