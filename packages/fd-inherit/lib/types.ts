// The public types of the options and results; the code that reads them lives
// in options.ts (spawn), fd-map.ts (stdioFromFdMap) and listen-fds.ts.

/**
 * Where a child's standard fd comes from:
 * - `'inherit'`: the parent's fd of the same number (closed in the child if
 *   closed in the parent).
 * - `'ignore'`: /dev/null.
 * - `'pipe'`: a new pipe; the parent's end is `subprocess.stdin`/`stdout`/`stderr`.
 * - a number: that parent fd.
 */
export type StdioOption = 'inherit' | 'ignore' | 'pipe' | number;

/** The rlimit resources `options.rlimits` accepts (RLIMIT_ + upper case). */
export type RlimitName =
  | 'as'
  | 'core'
  | 'cpu'
  | 'data'
  | 'fsize'
  | 'locks'
  | 'memlock'
  | 'msgqueue'
  | 'nice'
  | 'nofile'
  | 'nproc'
  | 'rss'
  | 'rtprio'
  | 'rttime'
  | 'sigpending'
  | 'stack';

/** One limit: both soft and hard, or each on its own. `Infinity` means unlimited. */
export type RlimitValue = number | { soft: number; hard: number };

/** A namespace kind `options.namespaces` can make new for the child. */
export type NamespaceName = 'user' | 'pid' | 'mount' | 'net' | 'uts' | 'ipc' | 'cgroup';

/** One range of a user namespace's uid or gid map: ids `inside` .. `inside + count - 1` are `outside` .. in this process's namespace. */
export interface IdMapping {
  inside: number;
  outside: number;
  count: number;
}

/**
 * The namespaces, user maps, mounts and cgroup of a child: part of
 * `SpawnOptions`, and on its own what `@folk/worker-spawn` passes through as
 * `isolation`. See the README's "Isolation" section for kernels, privileges
 * and errors.
 */
export interface IsolationOptions {
  /** New namespaces for the child (clone flags): `{ user: true, pid: true, mount: true, net: true }`. */
  namespaces?: Partial<Record<NamespaceName, boolean>>;
  /** With `namespaces.user`: the uid map, written by the parent before the child goes on. Default: none (every id is the overflow id, 65534). */
  uidMap?: IdMapping[];
  /** With `namespaces.user`: the gid map. */
  gidMap?: IdMapping[];
  /** With `namespaces.user`: whether setgroups(2) works in the namespace. `'deny'` (the default) lets an unprivileged parent write a gid map. */
  setgroups?: 'deny' | 'allow';
  /** With `namespaces.uts`: the child's hostname (at most 64 bytes). */
  hostname?: string;
  /** With `namespaces.mount`: a prepared directory that becomes the child's `/` (pivot_root); `cwd` is then a path inside it. */
  root?: string;
  /** With `namespaces.mount`: mount a new `/proc` (inside `root` if given). Default: `true` when `namespaces.pid` is new too. */
  mountProc?: boolean;
  /** With `namespaces.mount`: propagation of every mount, applied first. Default `'private'`. */
  mountPropagation?: 'private' | 'slave';
  /** A cgroup v2 directory the child is created in (CLONE_INTO_CGROUP, Linux 5.7): it is never in this process's cgroup. */
  cgroup?: string;
}

/** An fd handed to a socket-activated child, optionally named (LISTEN_FDNAMES). */
export type ListenFdOption = number | { fd: number; name?: string };

export interface SpawnOptions extends IsolationOptions {
  /**
   * Child fd number -> parent fd. Any child number, 0-2 included, below
   * this process's RLIMIT_NOFILE (which the child starts with; a number at
   * or above it is a RangeError); the same parent fd may appear more than
   * once, and numbers may swap (`{3: 4, 4: 3}`). The parent's fds are not
   * changed (they keep their FD_CLOEXEC).
   */
  fds?: Record<number, number>;
  /** Default `'inherit'`. Conflicts with `fds[0]`. */
  stdin?: StdioOption;
  /** Default `'inherit'`. Conflicts with `fds[1]`. */
  stdout?: StdioOption;
  /** Default `'inherit'`. Conflicts with `fds[2]`. */
  stderr?: StdioOption;
  /** The child's whole environment. Default `process.env`. Entries whose value is `undefined` are left out. */
  env?: Record<string, string | undefined>;
  /** Working directory of the child. Default: the parent's. */
  cwd?: string | URL;
  /** `argv[0]` of the child. Default: `file` as given. */
  argv0?: string;
  /** Start a new session (setsid(2)): the child leads a new session and process group. Default `false`. */
  setsid?: boolean;
  /** Signal the child gets when the thread that spawned it dies (PR_SET_PDEATHSIG). */
  pdeathsig?: NodeJS.Signals | number;
  /**
   * Close every fd in the child except 0-2 and the ones asked for, whatever
   * their FD_CLOEXEC flag in the parent. Default `true`.
   */
  closeOtherFds?: boolean;
  /** File mode creation mask of the child, 0 to 0o777. */
  umask?: number;
  /** Resource limits of the child, for example `{ nofile: 1024, core: 0 }`. */
  rlimits?: Partial<Record<RlimitName, RlimitValue>>;
  /**
   * Set SIGPIPE and SIGXFSZ back to their default action in the child. Node
   * ignores both for itself, and an ignored signal stays ignored across
   * execve, so without this a child writing to a closed pipe gets EPIPE
   * instead of dying quietly as programs expect. Other signals: handled ones
   * are always reset to default, ignored ones stay ignored. Default `true`.
   */
  restoreSignals?: boolean;
  /** PR_SET_NO_NEW_PRIVS: execve can never grant the child privileges (setuid bits, file capabilities). Default `false`. */
  noNewPrivs?: boolean;
  /** Run the child as this user id (needs privilege, normally root). */
  uid?: number;
  /** Run the child as this group id (needs privilege). */
  gid?: number;
  /**
   * Supplementary groups of the child (needs privilege); `[]` drops them all.
   * Default: the parent's, except that with `uid` or `gid` they are dropped
   * (when the parent is privileged enough to), as `child_process` does, so a
   * child running as another user keeps none of root's groups.
   */
  groups?: number[];
  /**
   * systemd socket activation: these parent fds arrive in the child at 3, 4,
   * ... with LISTEN_FDS, LISTEN_FDNAMES (`'unknown'` for unnamed ones),
   * LISTEN_PID set to the child's own pid and, where the kernel can tell
   * (Linux 6.9+), LISTEN_PIDFDID to the inode id of its pidfd, as systemd
   * 258 does. Stale LISTEN_* variables in `env` are replaced (with `[]`,
   * removed). Conflicts with `fds` at those numbers.
   */
  listenFds?: ListenFdOption[];
}

/** A child fd handed over by systemd (or anything else speaking the LISTEN_FDS protocol). */
export interface ListenFd {
  fd: number;
  /** From LISTEN_FDNAMES (possibly `''`); `'unknown'` when LISTEN_FDNAMES is not set. */
  name: string;
}

export interface ListenFdsOptions {
  /** Remove LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS and LISTEN_FDNAMES from `process.env`, so no child of ours sees them. Default `true`. */
  unsetEnvironment?: boolean;
}

/** What notify() sends: a string of "NAME=value" lines as sd_notify takes it, or the assignments as an object. */
export type NotifyState = string | Readonly<Record<string, string | number | bigint | boolean>>;

export interface NotifyOptions {
  /** The socket to send to: an absolute path or `@name` (abstract). Default `process.env.NOTIFY_SOCKET`. */
  socket?: string;
  /** Remove NOTIFY_SOCKET from `process.env` afterwards, sent or not. Default `false`. */
  unsetEnvironment?: boolean;
}

export interface StdioFromFdMapOptions {
  /** For a missing `fds[0]`. Default `'inherit'`. */
  stdin?: 'inherit' | 'ignore' | 'pipe';
  /** For a missing `fds[1]`. Default `'inherit'`. */
  stdout?: 'inherit' | 'ignore' | 'pipe';
  /** For a missing `fds[2]`. Default `'inherit'`. */
  stderr?: 'inherit' | 'ignore' | 'pipe';
}
