// The one seam between TypeScript and C++: the shape of src/binding.cc's
// exports, declared once so lib/index.ts is type-checked against it.
import { loadNative } from './internal/native-loader.js';

/** A spawn fully decided by lib/index.ts; src/spawn.cc only carries it out. */
export interface NativeSpawnPlan {
  /** The program to execve: a path (PATH was already searched). */
  file: string;
  argv: string[];
  /** "NAME=value" strings; null for the C environment (environ), when process.env is Node's own object backed by it (lib/env.ts). */
  envp: string[] | null;
  /** Index in envp of the string "LISTEN_PID=", whose value the child fills with its pid; -1 for none. */
  listenPidIndex: number;
  /** Index in envp of "LISTEN_PIDFDID=", which must be the last entry: the child fills in its pidfd's inode id, or drops the entry when the kernel cannot tell; -1 for none. */
  listenPidfdidIndex: number;
  cwd: string | null;
  /** Child fd numbers, their parent fds (DEV_NULL for /dev/null, opened by the binding), and whether a closed parent fd just leaves it closed (inherited stdio). */
  targets: number[];
  sources: number[];
  optional: boolean[];
  closeOtherFds: boolean;
  setsid: boolean;
  /** Signal number, 0 for none. */
  pdeathsig: number;
  /** -1 to keep the parent's. */
  umask: number;
  /** Flat [resource, soft, hard, ...]; -1 means unlimited. */
  rlimits: number[];
  noNewPrivs: boolean;
  /** -1 to keep. */
  uid: number;
  gid: number;
  groups: number[] | null;
  /** With groups null: try setgroups(0) anyway (for a uid/gid change), ignoring EPERM. */
  dropGroups: boolean;
  /** Signals set to SIG_DFL in the child even though the parent ignores them. */
  defaultSignals: number[];
  /** Namespaces, maps, mounts and cgroup; null for none (the plain spawn). */
  isolation: NativeIsolationPlan | null;
}

/** What src/spawn.h calls the IsolationPlan. The binding refuses a mount step without CLONE_NEWNS, a hostname without CLONE_NEWUTS and maps without CLONE_NEWUSER. */
export interface NativeIsolationPlan {
  /** CLONE_NEW* flags, from NAMESPACES. */
  cloneFlags: number;
  /** "inside outside count\n" lines, each map written by the parent in one write; null: not written. */
  uidMap: string | null;
  gidMap: string | null;
  /** Write "deny" to /proc/PID/setgroups before gid_map. */
  denySetgroups: boolean;
  hostname: string | null;
  /** Propagation applied to / (recursively) in the new mount namespace; null without one. */
  propagation: 'private' | 'slave' | null;
  /** pivot_root into this directory. */
  root: string | null;
  /** Mount a new /proc (inside root, when given). */
  mountProc: boolean;
  /** A cgroup v2 directory, opened and checked by the binding (EINVAL with `fsType` if it is not one). */
  cgroup: string | null;
}

/** A source in NativeSpawnPlan.sources meaning /dev/null. */
export const DEV_NULL = -2;

/** How the child is created; see CloneMode in src/spawn.h. */
export const CloneMode = {
  /** clone3 + CLONE_PIDFD + CLONE_CLEAR_SIGHAND (Linux 5.5, x86-64). */
  Clone3ClearSighand: 0,
  /** clone3 + CLONE_PIDFD (5.3, x86-64); handlers reset in the child. */
  Clone3: 1,
  /** clone(2) + CLONE_PIDFD (5.2). */
  ClonePidfd: 2,
  /** clone(2), then pidfd_open (5.3). */
  ClonePidfdOpen: 3,
} as const;
export type CloneMode = (typeof CloneMode)[keyof typeof CloneMode];

/** How the child closes fds it was not given; see CloseMethod in src/spawn.h. */
export const CloseMethod = {
  /** close_range(CLOSE_RANGE_CLOEXEC) (5.11). */
  CloseRangeCloexec: 0,
  /** close_range (5.9). */
  CloseRange: 1,
  /** close() on each number up to the fd limit. */
  CloseLoop: 2,
} as const;
export type CloseMethod = (typeof CloseMethod)[keyof typeof CloseMethod];

/** How a child that fails before execve reports it; see ReportMode in src/spawn.h. */
export const ReportMode = {
  /** Not probed yet: the first spawn finds out. */
  Unknown: -1,
  /** Through the plan in shared memory (a real kernel). */
  Memory: 0,
  /** Through a close-on-exec pipe (qemu-user, where CLONE_VM is a fork). */
  Pipe: 1,
} as const;
export type ReportMode = (typeof ReportMode)[keyof typeof ReportMode];

/**
 * @internal Hooks for this package's own tests, which force each fallback
 * src/clone.cc and src/spawn.cc choose between (and the pdeathsig race) so that every path
 * runs on this kernel. Process-wide, like the choices they force.
 */
export interface NativeTestingHooks {
  /** The creation path spawns take now (the first that worked on this kernel). */
  getCloneMode(): CloneMode;
  /** Force a creation path. */
  setCloneMode(mode: CloneMode): void;
  /** The first way to close fds a spawn tries now. */
  getCloseMethod(): CloseMethod;
  /** Start from a fallback for closing fds. */
  setCloseMethod(method: CloseMethod): void;
  /** How children report a failure now (Unknown until the first spawn's probe). */
  getReportMode(): ReportMode;
  /** Force a way (Unknown: probe again). */
  setReportMode(mode: ReportMode): void;
  /** Make the child believe its parent's pid was this (0: the real one), as if the parent had died during the spawn; in a new pid namespace the child watches this pid's pidfd. */
  setAssumedParentPid(pid: number): void;
}

export interface NativeBinding {
  /**
   * Create the child and return once it has called execve: [pid, pidfd].
   * Throws an errno Error whose `syscall` names the failing step (execve,
   * chdir, dup2, clone, ...) and, for a closed parent fd, `fd`/`childFd`;
   * a RangeError (ERR_OUT_OF_RANGE) with `childFd` and `fdLimit` for a
   * child fd number at or above this process's soft RLIMIT_NOFILE.
   */
  spawn(plan: NativeSpawnPlan): [number, number];
  /** pipe2(O_CLOEXEC): [readEnd, writeEnd]. */
  pipe(): [number, number];
  /** close(2), for the ends pipe() made (fs.closeSync would make a worker thread warn about an fd it did not open). */
  close(fd: number): void;
  /** The inode id of a pidfd for this process (pidfs, Linux 6.9+) in decimal, as LISTEN_PIDFDID holds it; null when the kernel cannot tell. */
  selfPidfdInodeId(): string | null;
  /** getenv(3): the variable's value in the C environment, or null. */
  getenv(name: string): string | null;
  /** SIGKILL, reap and close the pidfd of a child spawn() could not hand out. */
  killAndReap(pid: number, pidfd: number): void;
  getCloexec(fd: number): boolean;
  setCloexec(fd: number, on: boolean): void;
  /** @internal For this package's tests only; no part of any API. */
  readonly testing: NativeTestingHooks;
  /**
   * One datagram to an AF_UNIX address (sun_path's bytes: a path, or a NUL
   * byte and an abstract name) from a new socket closed at once: bytes sent.
   * Throws an errno Error with syscall 'socket' or 'sendto'.
   */
  notifySend(address: Buffer, message: Buffer): number;
  /** RLIMIT_* numbers by lower-case name without the prefix. */
  readonly RLIMITS: Readonly<Record<string, number>>;
  /** CLONE_NEW* flags by the names of options.namespaces. */
  readonly NAMESPACES: Readonly<Record<string, number>>;
}

export const native = loadNative({
  name: '@folk/fd-inherit',
  target: 'fd_inherit',
  requirePrebuild(key) {
    // A literal path per binary, inside `try`: see NativePackage.requirePrebuild.
    try {
      if (key === 'linux-x64-glibc') return require('../prebuilds/linux-x64/@folk+fd-inherit.glibc.node');
      if (key === 'linux-x64-musl') return require('../prebuilds/linux-x64/@folk+fd-inherit.musl.node');
      if (key === 'linux-arm64-glibc') return require('../prebuilds/linux-arm64/@folk+fd-inherit.glibc.node');
      if (key === 'linux-arm64-musl') return require('../prebuilds/linux-arm64/@folk+fd-inherit.musl.node');
    } finally {
      // Errors go to loadNative.
    }
    return undefined;
  },
}) as NativeBinding;
