// The one seam between TypeScript and C++: the shape of the addon's exports
// (src/pidfd.cc's Init, with the Handle of src/handle.cc), declared once so
// lib/index.ts is type-checked against it.
import { loadNative } from './internal/native-loader.js';

/** struct rusage as waitid(2) fills it; times in microseconds. */
export interface RawRusage {
  utimeUs: number;
  stimeUs: number;
  maxrss: number;
  minflt: number;
  majflt: number;
  inblock: number;
  oublock: number;
  nvcsw: number;
  nivcsw: number;
}

/** The parts of siginfo_t that waitid(2) sets for an exited child. */
export interface RawExit {
  pid: number;
  /** si_code: CLD_EXITED, CLD_KILLED or CLD_DUMPED. */
  code: number;
  /** si_status: the exit code for CLD_EXITED, else the signal number. */
  status: number;
  rusage: RawRusage;
}

/**
 * Owns one pidfd: the number it was given (closed by close(), by the
 * garbage collector or when the thread's environment ends, only while it
 * still refers to the same file) and a private close-on-exec duplicate that
 * every syscall and the poll use, so a public number closed by hand can
 * neither make libuv abort nor redirect a call; its uv_poll_t and, when
 * needed, a SIGCHLD uv_signal_t. src/internal/handles.h (from
 * internal/native/) says how these end.
 */
export interface NativeHandle {
  /** Watch the pidfd for POLLIN on the event loop (and no longer for SIGCHLD); `onReady` runs on each readiness until stop(). */
  watchPidfd(onReady: (err: Error | null) => void): void;
  /** Watch for SIGCHLD instead of the pidfd (for an exit a tracer holds); `onReady(null)` runs on each SIGCHLD until stop() or watchPidfd(). */
  watchSigchld(onReady: (err: Error | null) => void): void;
  /** Stop both watchers. */
  stop(): void;
  ref(): void;
  unref(): void;
  /** The private duplicate (-1 once closed): pass it, never the public number, to the syscalls below. */
  privateFd(): number;
  /** Stop, close the poll handle and the private fd, and the public fd if it still refers to the same file (device and inode). Idempotent. */
  close(): void;
}

export interface NativeBinding {
  /** pidfd_open(pid, 0): a new O_CLOEXEC pidfd. */
  pidfdOpen(pid: number): number;
  /** pidfd_send_signal(pidfd, signal, NULL, 0). */
  sendSignal(pidfd: number, signal: number): void;
  /** waitid(P_PIDFD, pidfd, WEXITED [| WNOHANG unless block] [| WNOWAIT]); null when nothing is waitable yet (never with block). */
  waitid(pidfd: number, noWait: boolean, block: boolean): RawExit | null;
  /** poll(2) for POLLIN; -1 blocks. */
  readable(pidfd: number, timeoutMs: number): boolean;
  /** pidfd_getfd(pidfd, targetFd, 0): a new O_CLOEXEC fd. */
  getfd(pidfd: number, targetFd: number): number;
  /** The pid of a pidfd from fstatfs + ioctl(PIDFD_GET_INFO) (6.13); -1 when that cannot tell. Never throws. */
  pidfdPid(fd: number): number;
  /** Whether fd is a pidfd for one thread (PIDFD_THREAD, 6.9: O_EXCL in its status flags); false if not open. */
  isThreadPidfd(fd: number): boolean;
  /**
   * ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT) (Linux 6.15): the wait status of a
   * process that has exited and been reaped by its parent, whoever that was;
   * null while it runs or is unreaped, or when the kernel keeps no such record.
   */
  exitStatus(pidfd: number): number | null;
  /** close(2), errors ignored. */
  close(fd: number): void;
  /**
   * Takes ownership of `fd` once it has made its private duplicate; throws
   * (EMFILE...; a TypeError when `fd` is another Handle's private duplicate,
   * in any thread) with `fd` still the caller's. With `reap`, an environment
   * torn down while the Handle is open reaps the process (at once, or from a
   * thread that waits for its exit).
   */
  Handle: new (fd: number, reap: boolean) => NativeHandle;
  readonly CLD_EXITED: number;
  readonly CLD_KILLED: number;
  readonly CLD_DUMPED: number;
}

export const native = loadNative({
  name: '@folk/pidfd',
  target: 'pidfd',
  requirePrebuild(key) {
    // A literal path per binary, inside `try`: see NativePackage.requirePrebuild.
    try {
      if (key === 'linux-x64-glibc') return require('../prebuilds/linux-x64/@folk+pidfd.glibc.node');
      if (key === 'linux-x64-musl') return require('../prebuilds/linux-x64/@folk+pidfd.musl.node');
      if (key === 'linux-arm64-glibc') return require('../prebuilds/linux-arm64/@folk+pidfd.glibc.node');
      if (key === 'linux-arm64-musl') return require('../prebuilds/linux-arm64/@folk+pidfd.musl.node');
    } finally {
      // Errors go to loadNative.
    }
    return undefined;
  },
}) as NativeBinding;
