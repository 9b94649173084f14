// The parent's handle on a spawned child.
import type * as net from 'node:net';
import type { ExitInfo, PidFd, PidFdWaitOptions } from '@folk/pidfd';
import { validateAbortSignal, optionsObject } from './internal/args.js';
import { abortError, systemError } from './errors.js';
import { signalNumber } from './internal/signals.js';

type ErrnoException = NodeJS.ErrnoException;

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
 *
 * Once the child is reaped, its pidfd is closed (like Go's os.Process after
 * Wait), unless the caller took it by reading `pidfd` before then: a loop
 * of `await spawn(...).wait()` holds no fd it never saw.
 */
export class Subprocess {
  /**
   * Process id. It stays after the child has been reaped, when the number
   * may already name another process: signal through `kill()` or `pidfd`.
   */
  readonly pid: number;
  /** The parent's end of the child's stdin, when `stdin: 'pipe'`. */
  readonly stdin: net.Socket | null;
  /** The parent's end of the child's stdout, when `stdout: 'pipe'`. */
  readonly stdout: net.Socket | null;
  /** The parent's end of the child's stderr, when `stderr: 'pipe'`. */
  readonly stderr: net.Socket | null;
  readonly #pidfd: PidFd;
  /** Whose the pidfd is: ours, to close once the child is reaped; the caller's, who read `pidfd` first; or closed by us. */
  #pidfdOwner: 'subprocess' | 'caller' | 'released' = 'subprocess';
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
    this.#pidfd = pidfd;
    this.stdin = stdio[0] ?? null;
    this.stdout = stdio[1] ?? null;
    this.stderr = stdio[2] ?? null;
    // Reap on exit even if nobody asks, then let the pidfd go. A failure
    // here (the pidfd closed by the caller who took it) reaches whoever
    // calls wait(); unobserved, it is not an unhandled rejection. Every
    // other wait() pending on the pidfd was answered together with this one.
    this.#exit = pidfd.wait();
    this.#exit.then(
      () => this.#release(),
      () => {},
    );
  }

  /**
   * A race-free handle to the child, obtained as part of its creation.
   * Reading it while the child's pidfd is open makes it yours: it is no
   * longer closed when the child is reaped, so close it yourself (or let
   * `[Symbol.dispose]` do it). Read after the child was reaped and the
   * Subprocess closed it, it is that closed PidFd (`fd` -1).
   */
  get pidfd(): PidFd {
    if (this.#pidfdOwner === 'subprocess') this.#pidfdOwner = 'caller';
    return this.#pidfd;
  }

  /**
   * Resolves with how the child ended, once it has (it is reaped then).
   * Waits on the event loop; every call gets the same answer.
   * `options.signal` cancels this call's wait only.
   */
  wait(options?: PidFdWaitOptions): Promise<ExitInfo> {
    if (options === undefined) return this.#exit;
    if (this.#pidfdOwner !== 'released') return this.#pidfd.wait(options);
    return answered(this.#exit, options);
  }

  /**
   * Send a signal (default `'SIGTERM'`) through the pidfd: never to a
   * process that reused the pid. ESRCH once the child has exited.
   */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    if (this.#pidfdOwner !== 'released') return this.#pidfd.kill(signal);
    signalNumber(signal, 'signal', 0);
    throw systemError('ESRCH', 'pidfd_send_signal', `pidfd_send_signal (process ${this.pid} has exited)`);
  }

  /** Keep the event loop alive until the child exits (the default). */
  ref(): this {
    this.#pidfd.ref();
    return this;
  }

  /** Do not keep the event loop alive for this child; it is still reaped if the loop runs when it exits. */
  unref(): this {
    this.#pidfd.unref();
    return this;
  }

  /**
   * For `using`: a child still running gets SIGTERM, as a `child_process`
   * child's `[Symbol.dispose]` does, and the pidfd, taken or not, is closed
   * once the child has been reaped (at once if it already was). Closing it
   * any earlier would leave a zombie. The pipes are left alone: they end
   * when the child does. Calling it again does nothing.
   */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const close = () => this.#pidfd.close();
    this.#exit.then(close, close);
    try {
      this.kill('SIGTERM');
    } catch (err) {
      // It has exited (ESRCH), or the caller closed the pidfd (EBADF): there
      // is nothing left to stop.
      const code = (err as ErrnoException).code;
      if (code !== 'ESRCH' && code !== 'EBADF') throw err;
    }
  }

  /** The child is reaped: close its pidfd, unless the caller took it. */
  #release(): void {
    if (this.#pidfdOwner !== 'subprocess') return;
    this.#pidfdOwner = 'released';
    this.#pidfd.close();
  }
}

/** wait(options) once the pidfd is gone: the exit already known, the options checked as PidFd.wait checks them. */
function answered(exit: Promise<ExitInfo>, options: PidFdWaitOptions): Promise<ExitInfo> {
  let signal: AbortSignal | undefined;
  try {
    signal = validateAbortSignal(optionsObject(options).signal, 'options.signal');
  } catch (err) {
    return Promise.reject(err);
  }
  return signal?.aborted ? Promise.reject(abortError(signal)) : exit;
}

/** The Subprocess for a child spawn() has just started; it takes over `pidfd` and the streams. */
export function createSubprocess(pid: number, pidfd: PidFd, stdio: Array<net.Socket | null>): Subprocess {
  return new Subprocess(CONSTRUCT, pid, pidfd, stdio);
}
