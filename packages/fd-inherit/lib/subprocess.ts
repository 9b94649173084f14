// The parent's handle on a spawned child.
import type * as net from 'node:net';
import type { ExitInfo, PidFd, PidFdWaitOptions } from '@folk/pidfd';
import type { ErrnoException } from './args.js';

// Only spawn() constructs a Subprocess: the class is exported for
// instanceof and types, and a hand-made one would share (and close) a PidFd
// nobody meant it to own.
const CONSTRUCT: unique symbol = Symbol('Subprocess');

/**
 * A child started by `spawn`. It is reaped through its `pidfd`
 * (waitid(P_PIDFD)) as soon as it exits, whether or not anyone calls
 * `wait()`: nothing else in the process reaps it, it never becomes a
 * lasting zombie, and it does not disturb `child_process` children. Like a
 * `child_process` child, it keeps the event loop alive until it exits,
 * unless `unref()` is called.
 */
export class Subprocess {
  /** Process id. Prefer `pidfd` for anything that must not hit a reused pid. */
  readonly pid: number;
  /** A race-free handle to the child, obtained as part of its creation. Owns the pidfd. */
  readonly pidfd: PidFd;
  /** The parent's end of the child's stdin, when `stdin: 'pipe'`. */
  readonly stdin: net.Socket | null;
  /** The parent's end of the child's stdout, when `stdout: 'pipe'`. */
  readonly stdout: net.Socket | null;
  /** The parent's end of the child's stderr, when `stderr: 'pipe'`. */
  readonly stderr: net.Socket | null;
  readonly #exit: Promise<ExitInfo>;
  #disposed = false;

  /** @internal */
  constructor(token: typeof CONSTRUCT, pid: number, pidfd: PidFd, stdio: Array<net.Socket | null>) {
    if (token !== CONSTRUCT) {
      const err = new TypeError('Illegal constructor: a Subprocess comes from spawn()');
      (err as ErrnoException).code = 'ERR_ILLEGAL_CONSTRUCTOR';
      throw err;
    }
    this.pid = pid;
    this.pidfd = pidfd;
    this.stdin = stdio[0] ?? null;
    this.stdout = stdio[1] ?? null;
    this.stderr = stdio[2] ?? null;
    // Reap on exit even if nobody asks. A failure here (the pidfd closed by
    // its owner first) reaches whoever calls wait(); unobserved, it is not an
    // unhandled rejection.
    this.#exit = pidfd.wait();
    this.#exit.catch(() => {});
  }

  /**
   * Resolves with how the child ended, once it has (it is reaped then).
   * Waits on the event loop; every call gets the same answer.
   * `options.signal` cancels this call's wait only.
   */
  wait(options?: PidFdWaitOptions): Promise<ExitInfo> {
    if (options === undefined) return this.#exit;
    return this.pidfd.wait(options);
  }

  /** Send a signal (default `'SIGTERM'`) through the pidfd: never to a process that reused the pid. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    this.pidfd.kill(signal);
  }

  /** Keep the event loop alive until the child exits (the default). */
  ref(): this {
    this.pidfd.ref();
    return this;
  }

  /** Do not keep the event loop alive for this child; it is still reaped if the loop runs when it exits. */
  unref(): this {
    this.pidfd.unref();
    return this;
  }

  /**
   * For `using`: a child still running gets SIGTERM, as a `child_process`
   * child's `[Symbol.dispose]` does, and the pidfd is closed once the child
   * has been reaped (at once if it already was). Closing it any earlier
   * would leave a zombie. The pipes are left alone: they end when the child
   * does. Calling it again does nothing.
   */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const close = () => this.pidfd.close();
    this.#exit.then(close, close);
    try {
      this.pidfd.kill('SIGTERM');
    } catch (err) {
      // It has exited (ESRCH), or its owner closed the pidfd (EBADF): there
      // is nothing left to stop.
      const code = (err as ErrnoException).code;
      if (code !== 'ESRCH' && code !== 'EBADF') throw err;
    }
  }
}

/** The Subprocess for a child spawn() has just started; it takes over `pidfd` and the streams. */
export function createSubprocess(pid: number, pidfd: PidFd, stdio: Array<net.Socket | null>): Subprocess {
  return new Subprocess(CONSTRUCT, pid, pidfd, stdio);
}
