import * as net from 'node:net';
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { PidFd, type ExitInfo, type PidFdWaitOptions } from '@folk/pidfd';
import { DEV_NULL, native, type NativeSpawnPlan } from './native.js';

export type { ExitInfo, Rusage } from '@folk/pidfd';
export { PidFd } from '@folk/pidfd';

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

/** An fd handed to a socket-activated child, optionally named (LISTEN_FDNAMES). */
export type ListenFdOption = number | { fd: number; name?: string };

export interface SpawnOptions {
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

export interface StdioFromFdMapOptions {
  /** For a missing `fds[0]`. Default `'inherit'`. */
  stdin?: 'inherit' | 'ignore' | 'pipe';
  /** For a missing `fds[1]`. Default `'inherit'`. */
  stdout?: 'inherit' | 'ignore' | 'pipe';
  /** For a missing `fds[2]`. Default `'inherit'`. */
  stderr?: 'inherit' | 'ignore' | 'pipe';
}

// ---------------------------------------------------------------------------
// Node-style errors and argument checks

type ErrnoException = NodeJS.ErrnoException;

function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const got = actual === null ? 'null' : Array.isArray(actual) ? 'an array' : `type ${typeof actual}`;
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${got}`);
  (err as ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** A value for an error message; never throws (String() does, for a null-prototype object or a detached typed array). */
function shown(actual: unknown): string {
  if (typeof actual === 'string') return `'${actual}'`;
  if (actual === null || (typeof actual !== 'object' && typeof actual !== 'function')) return String(actual);
  return Array.isArray(actual) ? 'an array' : `type ${typeof actual}`;
}

function invalidArgValue(name: string, reason: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument ${reason}. Received ${shown(actual)}`);
  (err as ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

const INT32_MAX = 2 ** 31 - 1;

function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    const err = new RangeError(
      `The value of "${name}" is out of range. It must be an integer >= ${min} && <= ${max}. Received ${value}`,
    );
    (err as ErrnoException).code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  return value;
}

function validateFd(value: unknown, name: string): number {
  return validateInteger(value, name, 0, INT32_MAX);
}

/** A string the kernel can take: C strings end at the first NUL byte. */
function validateCString(value: unknown, name: string): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (value.includes('\0')) throw invalidArgValue(name, 'must be a string without null bytes', value);
  return value;
}

function optionsObject(options: unknown, name = 'options'): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType(name, 'of type object', options);
  }
  return options as Record<string, unknown>;
}

function optionalBoolean(options: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalidArgType(`options.${key}`, 'of type boolean', value);
  return value;
}

const ERRNO = osConstants.errno as Record<string, number>;

// libuv's wording for the errors we raise ourselves rather than get from a syscall.
const MESSAGES: Record<string, string> = {
  EACCES: 'permission denied',
  EBADF: 'bad file descriptor',
  EINVAL: 'invalid argument',
  ENOENT: 'no such file or directory',
  ERANGE: 'result too large',
};

function systemError(code: string, syscall: string, what: string): ErrnoException {
  const err: ErrnoException = new Error(`${code}: ${MESSAGES[code] ?? code}, ${what}`);
  err.errno = -(ERRNO[code] ?? 0);
  err.code = code;
  err.syscall = syscall;
  return err;
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

/**
 * The public face of a failed spawn: `syscall: 'spawn'`, `path`, `spawnargs`
 * like child_process, the system call that failed as `step`, and a message
 * that says what was being done.
 */
function spawnError(
  raw: ErrnoException,
  file: string,
  args: string[],
  cwd: string | null,
  childFd: number | undefined,
): ErrnoException {
  const step = raw.syscall ?? 'spawn';
  let what = `spawn '${file}'`;
  if (step === 'chdir') what = `chdir '${cwd}' (spawn '${file}')`;
  else if (step === 'fcntl' && childFd !== undefined) {
    what = `spawn '${file}' (fd ${(raw as { fd?: number }).fd} for child fd ${childFd} is not open)`;
  } else if (step !== 'execve' && step !== 'spawn') what = `${step} (spawn '${file}')`;
  if (raw.code === 'ENOSYS' && MIN_KERNEL[step]) what += `: needs Linux ${MIN_KERNEL[step]} or later`;
  const err: ErrnoException & { spawnargs?: string[]; step?: string } = new Error(`${raw.code}: ${errnoText(raw)}, ${what}`);
  err.errno = raw.errno;
  err.code = raw.code;
  err.syscall = 'spawn';
  err.path = file;
  err.spawnargs = args;
  err.step = step;
  return err;
}

// ---------------------------------------------------------------------------
// Signals

const SIGNALS = osConstants.signals as Record<string, number>;
/** What Node ignores for itself (and CPython's restore_signals resets too). */
const RESTORED_SIGNALS = [SIGNALS['SIGPIPE']!, SIGNALS['SIGXFSZ']!];

function signalNumber(value: unknown, name: string): number {
  if (typeof value === 'number') return validateInteger(value, name, 1, 64);
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string or number', value);
  if (!Object.hasOwn(SIGNALS, value)) {
    const err = new TypeError(`Unknown signal: ${value}`);
    (err as ErrnoException).code = 'ERR_UNKNOWN_SIGNAL';
    throw err;
  }
  return SIGNALS[value]!;
}

// ---------------------------------------------------------------------------
// Fd maps

/** `{ '3': 7 }` -> [[3, 7]], every key and value checked. */
function fdMapEntries(value: unknown, name: string): Array<[number, number]> {
  if (value === undefined) return [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(name, 'of type object (child fd -> parent fd)', value);
  }
  const entries: Array<[number, number]> = [];
  for (const [key, source] of Object.entries(value)) {
    const target = Number(key);
    if (!/^(0|[1-9][0-9]*)$/.test(key) || target > INT32_MAX) {
      throw invalidArgValue(name, `must have child fd numbers as keys (got key '${key}')`, key);
    }
    entries.push([target, validateFd(source, `${name}[${key}]`)]);
  }
  return entries;
}

const STDIO_NAMES = ['stdin', 'stdout', 'stderr'] as const;

let nrOpen: number | undefined;
/**
 * fs.nr_open: no fd number can reach it in any process. Read once; 1048576
 * (the kernel's default) when /proc cannot tell.
 */
function fdNumberCeiling(): number {
  if (nrOpen === undefined) {
    try {
      nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'latin1'));
    } catch {
      // No /proc: the default.
    }
    if (!Number.isInteger(nrOpen) || nrOpen! <= 0) nrOpen = 1048576;
  }
  return nrOpen!;
}

/**
 * An fd map as a `child_process.spawn` `stdio` array, for code that stays
 * with child_process: index i holds the parent fd for child fd i, a gap
 * above 2 is `'ignore'` (closed), a gap in 0-2 takes `options.stdin` /
 * `stdout` / `stderr` (default `'inherit'`).
 *
 * child_process forks the parent (time grows with its memory) and lets the
 * child inherit every parent fd that lacks FD_CLOEXEC; `spawn` here does neither.
 */
export function stdioFromFdMap(
  fds: Record<number, number>,
  options?: StdioFromFdMapOptions,
): Array<number | 'inherit' | 'ignore' | 'pipe'> {
  const entries = fdMapEntries(fds, 'fds');
  const opts = optionsObject(options);
  const stdio: Array<number | 'inherit' | 'ignore' | 'pipe'> = [];
  for (let i = 0; i < 3; i++) {
    const key = STDIO_NAMES[i]!;
    const fallback = opts[key] ?? 'inherit';
    if (fallback !== 'inherit' && fallback !== 'ignore' && fallback !== 'pipe') {
      throw invalidArgValue(`options.${key}`, "must be 'inherit', 'ignore' or 'pipe'", fallback);
    }
    stdio.push(fallback);
  }
  // The array is as long as the highest child fd: refuse numbers no process
  // can have rather than exhaust the heap building it.
  const ceiling = fdNumberCeiling();
  for (const [target] of entries) {
    if (target >= ceiling) {
      const err = new RangeError(
        `The "fds" argument has child fd ${target}, above the highest fd number a process can have (fs.nr_open - 1 = ${ceiling - 1})`,
      );
      (err as ErrnoException).code = 'ERR_OUT_OF_RANGE';
      throw err;
    }
  }
  for (const [target, source] of entries) {
    while (stdio.length <= target) stdio.push('ignore');
    stdio[target] = source;
  }
  return stdio;
}

// ---------------------------------------------------------------------------
// CLOEXEC

/**
 * Whether `fd` survives execve (FD_CLOEXEC is clear). Every fd Node and the
 * folk packages create is close-on-exec, so this is normally `false`
 * except for 0-2 and fds inherited from a parent.
 *
 * @throws EBADF when `fd` is not open.
 */
export function isInheritable(fd: number): boolean {
  validateFd(fd, 'fd');
  try {
    return !native.getCloexec(fd);
  } catch (err) {
    throw explainFcntl(err, fd);
  }
}

/**
 * Set or clear FD_CLOEXEC on `fd`. Only needed for children started some
 * other way (child_process, exec): `spawn` here places fds without touching
 * the parent's flags.
 *
 * @throws EBADF when `fd` is not open.
 */
export function setInheritable(fd: number, inheritable: boolean): void {
  validateFd(fd, 'fd');
  if (typeof inheritable !== 'boolean') throw invalidArgType('inheritable', 'of type boolean', inheritable);
  try {
    native.setCloexec(fd, !inheritable);
  } catch (err) {
    throw explainFcntl(err, fd);
  }
}

function explainFcntl(err: unknown, fd: number): unknown {
  const e = err as ErrnoException;
  if (e instanceof Error && e.syscall === 'fcntl') e.message += ` (fd ${fd})`;
  return e;
}

// ---------------------------------------------------------------------------
// systemd socket activation

const SD_LISTEN_FDS_START = 3;
const LISTEN_VARS = ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

// The numbers in the LISTEN_* variables are read exactly as libsystemd reads
// them (parse_pid, safe_atou64 and safe_atoi in its parse-util.c, on top of
// glibc's strtoull and strtol), so that what one accepts the other does too:
// leading spaces, a sign, "0x" hex, a leading 0 for octal, and systemd's own
// "0b" and "0o". test/listen-fds-libsystemd.test.ts holds the two side by side.

type Parsed = { value: bigint } | { code: 'EINVAL' | 'ERANGE' };

const U64_LIMIT = 2n ** 64n;
const DIGITS: Record<number, RegExp> = { 2: /^[01]*/, 8: /^[0-7]*/, 10: /^[0-9]*/, 16: /^[0-9a-fA-F]*/ };
const RADIX_PREFIX: Record<number, string> = { 2: '0b', 8: '0o', 10: '', 16: '0x' };

/**
 * glibc's strtol (`signed`) or strtoull asked to read all of `text`:
 * C-locale spaces, a sign, digits (base 0: "0x" before a hex digit means
 * hex, a leading 0 octal, else decimal). Overflow is ERANGE even with junk
 * after the digits (the callers look at errno first); no digits, or junk, is
 * EINVAL. strtoull negates a "-" number modulo 2^64, as C does.
 */
function strtoWhole(text: string, base: number, signed: boolean): Parsed {
  let s = text.replace(/^[ \t\n\v\f\r]*/, '');
  let negative = false;
  if (s[0] === '+' || s[0] === '-') {
    negative = s[0] === '-';
    s = s.slice(1);
  }
  if ((base === 0 || base === 16) && /^0[xX][0-9a-fA-F]/.test(s)) {
    base = 16;
    s = s.slice(2);
  } else if (base === 0) {
    base = s[0] === '0' ? 8 : 10;
  }
  const digits = DIGITS[base]!.exec(s)![0];
  if (digits === '') return { code: 'EINVAL' };
  const magnitude = BigInt(RADIX_PREFIX[base] + digits);
  const limit = signed ? 2n ** 63n - (negative ? 0n : 1n) : U64_LIMIT - 1n;
  if (magnitude > limit) return { code: 'ERANGE' };
  if (digits.length !== s.length) return { code: 'EINVAL' };
  if (signed) return { value: negative ? -magnitude : magnitude };
  return { value: negative && magnitude !== 0n ? U64_LIMIT - magnitude : magnitude };
}

/** What systemd does before strtol sees a number: skip its WHITESPACE, and take "0b"/"0o" as binary/octal (mangle_base). */
function systemdNumber(text: string): { digits: string; base: number } {
  const s = text.replace(/^[ \t\n\r]*/, '');
  if (/^0[bB]/.test(s)) return { digits: s.slice(2), base: 2 };
  if (/^0[oO]/.test(s)) return { digits: s.slice(2), base: 8 };
  return { digits: s, base: 0 };
}

/** libsystemd's safe_atoi: an int. */
function safeAtoi(text: string): Parsed {
  const { digits, base } = systemdNumber(text);
  const r = strtoWhole(digits, base, true);
  if ('code' in r) return r;
  return r.value < -(2n ** 31n) || r.value >= 2n ** 31n ? { code: 'ERANGE' } : r;
}

/** libsystemd's safe_atou64 (and safe_atolu, on 64-bit): strtoull, where "-" before a number other than 0 is ERANGE. */
function safeAtou64(text: string): Parsed {
  const { digits, base } = systemdNumber(text);
  const r = strtoWhole(digits, base, false);
  if ('code' in r) return r;
  return r.value !== 0n && digits[0] === '-' ? { code: 'ERANGE' } : r;
}

/** libsystemd's parse_pid: safe_atolu, then a pid_t above 0 (ERANGE otherwise). */
function parsePid(text: string): Parsed {
  const r = safeAtou64(text);
  if ('code' in r) return r;
  const pid = BigInt.asIntN(32, r.value);
  return BigInt.asUintN(64, pid) !== r.value || pid <= 0n ? { code: 'ERANGE' } : { value: pid };
}

/**
 * LISTEN_FDNAMES as libsystemd splits it: at every ":", empty names kept
 * (`a::b` is three names); a backslash takes the next character as it is
 * (`a\:b` is one name, `a:b`). null for a lone backslash at the end
 * (libsystemd's EINVAL).
 */
function splitFdNames(text: string): string[] | null {
  const names: string[] = [];
  let name = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\') {
      if (i + 1 === text.length) return null;
      name += text[++i];
    } else if (c === ':') {
      names.push(name);
      name = '';
    } else {
      name += c;
    }
  }
  names.push(name);
  return names;
}

function listenError(code: string, what: string): ErrnoException {
  return systemError(code, 'listenFds', what);
}

/** What a LISTEN_* variable that does not parse is, for the message. */
function unreadable(name: string, text: string, code: 'EINVAL' | 'ERANGE', kind: string): ErrnoException {
  const problem = code === 'ERANGE' ? `out of range for ${kind}` : `not ${kind}`;
  return listenError(code, `${name} is ${problem}: ${JSON.stringify(text)}`);
}

/**
 * sd_listen_fds: the number of fds handed to this process (0 when the
 * variables are missing or meant for another one), each made close-on-exec.
 */
function listenFdCount(pidText?: string, pidfdidText?: string, countText?: string): number {
  if (pidText === undefined) return 0;
  const pid = parsePid(pidText);
  if ('code' in pid) throw unreadable('LISTEN_PID', pidText, pid.code, 'a pid');
  if (pid.value !== BigInt(process.pid)) return 0;
  if (pidfdidText !== undefined) {
    const id = safeAtou64(pidfdidText);
    if ('code' in id) throw unreadable('LISTEN_PIDFDID', pidfdidText, id.code, 'a pidfd inode id');
    // Another process that got our pid (in another pid namespace, or after
    // the intended one exited): not for us. Where the kernel cannot tell,
    // LISTEN_PID alone decides, as in libsystemd.
    const own = native.selfPidfdInodeId();
    if (own !== null && BigInt(own) !== id.value) return 0;
  }
  if (countText === undefined) return 0;
  const count = safeAtoi(countText);
  if ('code' in count) throw unreadable('LISTEN_FDS', countText, count.code, 'a number of fds');
  if (count.value <= 0n || count.value > BigInt(INT32_MAX - SD_LISTEN_FDS_START)) {
    throw unreadable('LISTEN_FDS', countText, 'EINVAL', 'a number of fds (1 or more)');
  }
  const n = Number(count.value);
  for (let fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
    try {
      native.setCloexec(fd, true);
    } catch (err) {
      if ((err as ErrnoException).code !== 'EBADF') throw explainFcntl(err, fd);
      throw listenError('EBADF', `LISTEN_FDS=${n} promises fds ${SD_LISTEN_FDS_START}-${SD_LISTEN_FDS_START + n - 1}, but fd ${fd} is not open`);
    }
  }
  return n;
}

/**
 * The fds this process was handed by socket activation, read as libsystemd's
 * sd_listen_fds_with_names reads them: when LISTEN_PID is this process's
 * pid (and LISTEN_PIDFDID, when set, the inode id of its pidfd), fds
 * 3 .. 3 + LISTEN_FDS - 1, named from LISTEN_FDNAMES (`'unknown'` when it is
 * not set). Each is made close-on-exec, so children do not inherit them by
 * accident. Returns `[]` when the variables are absent or meant for another
 * process.
 *
 * @throws an `EINVAL` Error when a variable does not parse, LISTEN_FDS is 0
 * or less, or LISTEN_FDNAMES does not name exactly LISTEN_FDS fds; `ERANGE`
 * for a number out of range; `EBADF` when a promised fd is not open.
 */
export function listenFds(options?: ListenFdsOptions): ListenFd[] {
  const unset = optionalBoolean(optionsObject(options), 'unsetEnvironment', true);
  const env = process.env;
  const [pidText, pidfdidText, countText, namesText] = LISTEN_VARS.map((name) => env[name]);
  // libsystemd removes them whatever it finds in them, errors included.
  if (unset) for (const name of LISTEN_VARS) delete env[name];
  // libsystemd's order: the names are split first, and counted last, after
  // the fds were made close-on-exec.
  const names = namesText === undefined ? undefined : splitFdNames(namesText);
  if (names === null) throw listenError('EINVAL', `LISTEN_FDNAMES ends in a lone backslash: ${JSON.stringify(namesText)}`);
  const count = listenFdCount(pidText, pidfdidText, countText);
  if (count === 0) return [];
  if (names !== undefined && names.length !== count) {
    throw listenError('EINVAL', `LISTEN_FDNAMES has ${names.length} names for LISTEN_FDS=${count}: ${JSON.stringify(namesText)}`);
  }
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names?.[i] ?? 'unknown' }));
}

/**
 * systemd's rule for a name in LISTEN_FDNAMES (fdname_is_valid: up to 255
 * printable ASCII characters, empty allowed, no ":"), less the backslash,
 * which libsystemd reads as an escape: the child would see another name.
 */
function validateListenName(value: unknown, name: string): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (!/^[\x20-\x39\x3b-\x5b\x5d-\x7e]{0,255}$/.test(value)) {
    throw invalidArgValue(name, 'must be at most 255 printable ASCII characters, without ":" or "\\"', value);
  }
  return value;
}

// ---------------------------------------------------------------------------
// spawn

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

/** What the parent keeps open while spawning, closed again whatever happens. */
interface StdioSetup {
  target: number;
  source: number;
  /** Inherited stdio: a parent fd that is not open leaves the child's closed too. */
  optional?: boolean;
  /** The parent's end of a pipe, and which way the child uses it. */
  parentEnd?: { fd: number; childReads: boolean };
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * Node's own process.env object, backed by the C environment on the main
 * thread. Taken at load, so code that later assigns a plain object to
 * process.env gets that object's contents, not the C environment.
 */
const NATIVE_ENV = process.env;

/**
 * execvp's search, done in the parent before the clone (the child must not
 * allocate). A name without "/" is looked up in the child's PATH; empty or
 * relative PATH entries are relative to the child's cwd.
 */
function resolveFile(file: string, path: string, cwd: string | null): string | { code: string } {
  if (file.includes('/')) return file;
  let denied = false;
  for (const dir of path.split(':')) {
    let candidate = `${dir === '' ? '.' : dir}/${file}`;
    if (!isAbsolute(candidate) && cwd !== null) candidate = resolvePath(cwd, candidate);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch (err) {
      if ((err as ErrnoException).code === 'EACCES') denied = true;
    }
  }
  return { code: denied ? 'EACCES' : 'ENOENT' };
}

function rlimitNumber(value: unknown, name: string): number {
  if (value === Infinity) return -1;
  return validateInteger(value, name, 0, Number.MAX_SAFE_INTEGER);
}

function rlimitTriples(value: unknown): number[] {
  const limits = optionsObject(value, 'options.rlimits');
  const flat: number[] = [];
  for (const [key, limit] of Object.entries(limits)) {
    if (limit === undefined) continue;
    // Own keys only: 'constructor' or 'toString' must not find Object.prototype's.
    const resource = Object.hasOwn(native.RLIMITS, key) ? native.RLIMITS[key] : undefined;
    if (resource === undefined) throw invalidArgValue('options.rlimits', `has an unknown resource '${key}'`, key);
    const name = `options.rlimits.${key}`;
    if (typeof limit === 'object' && limit !== null) {
      const pair = limit as Record<string, unknown>;
      flat.push(resource, rlimitNumber(pair['soft'], `${name}.soft`), rlimitNumber(pair['hard'], `${name}.hard`));
    } else {
      const both = rlimitNumber(limit, name);
      flat.push(resource, both, both);
    }
  }
  return flat;
}

function optionalId(value: unknown, name: string): number {
  return value === undefined ? -1 : validateInteger(value, name, 0, INT32_MAX);
}

function isOpen(fd: number): boolean {
  try {
    native.getCloexec(fd);
    return true;
  } catch {
    return false; // F_GETFD fails only with EBADF
  }
}

function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // Already closed: nothing to undo.
  }
}

/**
 * Start `file` with `args`, placing exactly the fds asked for.
 *
 * The child is created with a vfork-style clone (no copy of the parent's
 * memory), so this takes the same time whatever the parent's size, and it
 * returns once the child has called execve. Only 0-2 and the mapped fds
 * exist in the child (unless `closeOtherFds: false`).
 *
 * @throws TypeError/RangeError for bad arguments; an `Error` with `code`
 * (ENOENT, EACCES, ENOEXEC, ...), `syscall: 'spawn'`, `path`, `spawnargs`
 * and `step` (the call that failed: 'execve', 'chdir', 'setuid', ...) when
 * the program cannot be started. No child and no fd is left behind then.
 */
export function spawn(file: string, args: readonly string[] = [], options?: SpawnOptions): Subprocess {
  validateCString(file, 'file');
  if (file === '') throw invalidArgValue('file', 'cannot be empty', file);
  if (!Array.isArray(args)) throw invalidArgType('args', 'an instance of Array', args);
  // Array.from, not map: map skips the holes of a sparse array.
  const argList = Array.from(args, (a, i) => validateCString(a, `args[${i}]`));
  const opts = optionsObject(options);

  // Environment. On the main thread process.env is the C environment
  // itself, which the binding copies faster than we could list it here; a
  // worker's process.env is its own copy, and LISTEN_* needs editing.
  const envValue = opts['env'] === undefined ? process.env : optionsObject(opts['env'], 'options.env');
  let envp: string[] | null = null;
  if (envValue !== NATIVE_ENV || !isMainThread || opts['listenFds'] !== undefined) {
    envp = [];
    for (const [key, value] of Object.entries(envValue)) {
      if (value === undefined) continue;
      validateCString(key, 'options.env');
      // Coerced like child_process does; a value String() cannot convert is named.
      let text: string;
      try {
        text = String(value);
      } catch (cause) {
        const err = invalidArgType(`options.env.${key}`, 'a string (or a value String() can convert)', value);
        (err as Error).cause = cause;
        throw err;
      }
      envp.push(validateCString(`${key}=${text}`, `options.env.${key}`));
    }
  }

  let cwd: string | null = null;
  if (opts['cwd'] !== undefined) {
    const value = opts['cwd'];
    let path: unknown = value;
    if (value instanceof URL) {
      try {
        path = fileURLToPath(value);
      } catch (cause) {
        // Node's own words ("The URL must be of scheme file") do not say which argument.
        const err = new TypeError(`The "options.cwd" argument must be a path or a file: URL: ${(cause as Error).message}`);
        (err as ErrnoException).code = (cause as ErrnoException).code ?? 'ERR_INVALID_ARG_VALUE';
        err.cause = cause;
        throw err;
      }
    }
    cwd = validateCString(path, 'options.cwd');
  }
  const argv0 = opts['argv0'] === undefined ? file : validateCString(opts['argv0'], 'options.argv0');

  // The fd map: explicit entries, then stdio, then LISTEN_FDS.
  const map = new Map<number, number>();
  for (const [target, source] of fdMapEntries(opts['fds'], 'options.fds')) map.set(target, source);

  const stdio: Array<StdioOption | undefined> = STDIO_NAMES.map((key) => {
    const value = opts[key];
    if (value === undefined) return undefined;
    if (typeof value === 'number') return validateFd(value, `options.${key}`);
    if (value !== 'inherit' && value !== 'ignore' && value !== 'pipe') {
      throw invalidArgValue(`options.${key}`, "must be 'inherit', 'ignore', 'pipe' or an fd number", value);
    }
    return value;
  });
  for (let i = 0; i < 3; i++) {
    if (stdio[i] !== undefined && map.has(i)) {
      throw invalidArgValue(`options.${STDIO_NAMES[i]}`, `conflicts with options.fds[${i}]`, stdio[i]);
    }
  }

  const listenNames: string[] = [];
  if (opts['listenFds'] !== undefined) {
    const list = opts['listenFds'];
    if (!Array.isArray(list)) throw invalidArgType('options.listenFds', 'an instance of Array', list);
    // A plain loop, not forEach, which skips holes and would shift the fds after one.
    for (let i = 0; i < list.length; i++) {
      const entry: unknown = list[i];
      const name = `options.listenFds[${i}]`;
      let fd: number;
      let fdName = 'unknown';
      if (typeof entry === 'object' && entry !== null) {
        const e = entry as Record<string, unknown>;
        fd = validateFd(e['fd'], `${name}.fd`);
        if (e['name'] !== undefined) fdName = validateListenName(e['name'], `${name}.name`);
      } else {
        fd = validateFd(entry, name);
      }
      const target = SD_LISTEN_FDS_START + i;
      if (map.has(target)) throw invalidArgValue('options.listenFds', `puts fd ${target} where options.fds has one`, fd);
      map.set(target, fd);
      listenNames.push(fdName);
    }
  }

  // Socket activation as systemd sets it up: stale LISTEN_* variables
  // never reach the child; with fds, LISTEN_PID and LISTEN_PIDFDID are
  // filled in by the child itself (see ChildMain). Without fds, none is set:
  // libsystemd takes LISTEN_FDS=0 for an error.
  let listenPidIndex = -1;
  let listenPidfdidIndex = -1;
  if (envp !== null && opts['listenFds'] !== undefined) {
    const kept = envp.filter((e) => !/^LISTEN_(PID|PIDFDID|FDS|FDNAMES)=/.test(e));
    envp.length = 0;
    envp.push(...kept);
    if (listenNames.length > 0) {
      envp.push(`LISTEN_FDS=${listenNames.length}`, `LISTEN_FDNAMES=${listenNames.join(':')}`, 'LISTEN_PID=', 'LISTEN_PIDFDID=');
      listenPidIndex = envp.length - 2;
      listenPidfdidIndex = envp.length - 1;
    }
  }

  const pdeathsig = opts['pdeathsig'] === undefined ? 0 : signalNumber(opts['pdeathsig'], 'options.pdeathsig');
  const umask = opts['umask'] === undefined ? -1 : validateInteger(opts['umask'], 'options.umask', 0, 0o777);
  const rlimits = opts['rlimits'] === undefined ? [] : rlimitTriples(opts['rlimits']);
  let groups: number[] | null = null;
  if (opts['groups'] !== undefined) {
    const value = opts['groups'];
    if (!Array.isArray(value)) throw invalidArgType('options.groups', 'an instance of Array', value);
    groups = Array.from(value, (g: unknown, i: number) => validateInteger(g, `options.groups[${i}]`, 0, INT32_MAX));
  }
  const uid = optionalId(opts['uid'], 'options.uid');
  const gid = optionalId(opts['gid'], 'options.gid');
  const closeOtherFds = optionalBoolean(opts, 'closeOtherFds', true);
  const setsid = optionalBoolean(opts, 'setsid', false);
  const noNewPrivs = optionalBoolean(opts, 'noNewPrivs', false);
  const restoreSignals = optionalBoolean(opts, 'restoreSignals', true);

  const childEnvPath = envValue['PATH'];
  const resolved = resolveFile(file, typeof childEnvPath === 'string' ? childEnvPath : DEFAULT_PATH, cwd);
  if (typeof resolved !== 'string') {
    const code = resolved.code;
    throw spawnError(systemError(code, 'execve', 'execve'), file, argList, cwd, undefined);
  }

  // Every parent fd the child is to get is checked now, before any fd of
  // ours exists: a pipe (or the binding's /dev/null) takes the lowest free
  // number and would otherwise pass for a closed fd named here. (With fd 0
  // closed, an inherited stdin was the read end of the child's own stdout
  // pipe.) A closed fd that stdio would inherit stays closed in the child.
  const inheritOpen = stdio.map((how, i) => (how === 'inherit' || (how === undefined && !map.has(i))) && isOpen(i));
  const mustBeOpen: Array<[number, number]> = [...map];
  for (let i = 0; i < 3; i++) {
    const how = stdio[i];
    if (typeof how === 'number') mustBeOpen.push([i, how]);
  }
  for (const [target, source] of mustBeOpen) {
    if (isOpen(source)) continue;
    const raw: ErrnoException & { fd?: number } = systemError('EBADF', 'fcntl', 'fcntl');
    raw.fd = source;
    throw spawnError(raw, file, argList, cwd, target);
  }

  // From here on fds are opened; all of them are closed again below.
  const setups: StdioSetup[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const how = stdio[i];
      if (how === undefined || how === 'inherit') {
        // Unless fds[i] places it or it is closed here.
        if (inheritOpen[i]) setups.push({ target: i, source: i, optional: true });
      } else if (how === 'ignore') {
        setups.push({ target: i, source: DEV_NULL });
      } else if (how === 'pipe') {
        const [readEnd, writeEnd] = native.pipe();
        const childReads = i === 0;
        setups.push({
          target: i,
          source: childReads ? readEnd : writeEnd,
          parentEnd: { fd: childReads ? writeEnd : readEnd, childReads },
        });
      } else {
        setups.push({ target: i, source: how });
      }
    }
  } catch (err) {
    cleanup(setups, true);
    // pipe2 out of fds (EMFILE): a spawn error like the others, naming the program.
    const e = err as ErrnoException;
    if (e instanceof Error && typeof e.syscall === 'string' && typeof e.code === 'string') {
      throw spawnError(e, file, argList, cwd, undefined);
    }
    throw err;
  }

  const plan: NativeSpawnPlan = {
    file: resolved,
    argv: [argv0, ...argList],
    envp,
    listenPidIndex,
    listenPidfdidIndex,
    cwd,
    targets: [],
    sources: [],
    optional: [],
    closeOtherFds,
    setsid,
    pdeathsig,
    umask,
    rlimits,
    noNewPrivs,
    uid,
    gid,
    groups,
    dropGroups: groups === null && (uid !== -1 || gid !== -1),
    defaultSignals: restoreSignals ? RESTORED_SIGNALS : [],
  };
  for (const s of setups) {
    plan.targets.push(s.target);
    plan.sources.push(s.source);
    plan.optional.push(s.optional === true);
  }
  for (const [target, source] of map) {
    plan.targets.push(target);
    plan.sources.push(source);
    plan.optional.push(false);
  }

  let pid: number;
  let pidfdNumber: number;
  try {
    [pid, pidfdNumber] = native.spawn(plan);
  } catch (err) {
    cleanup(setups, true);
    const e = err as ErrnoException & { childFd?: number; fdLimit?: number };
    if (e instanceof Error && typeof e.syscall === 'string' && typeof e.code === 'string') {
      throw spawnError(e, file, argList, cwd, e.childFd);
    }
    if (e instanceof RangeError && e.code === 'ERR_OUT_OF_RANGE' && e.childFd !== undefined) {
      // A child fd number at or past the fd limit the child starts with.
      const target = e.childFd;
      let name = 'options.fds';
      if (target >= SD_LISTEN_FDS_START && target < SD_LISTEN_FDS_START + listenNames.length) {
        name = `options.listenFds[${target - SD_LISTEN_FDS_START}]`;
      } else if (target < 3 && stdio[target] !== undefined) {
        name = `options.${STDIO_NAMES[target]}`;
      }
      e.message =
        `The value of "${name}" is out of range. A child fd number must be below the child's ` +
        `RLIMIT_NOFILE (${e.fdLimit}), this process's. Received child fd ${target}`;
    }
    throw err;
  }
  cleanup(setups, false);

  let pidfd: PidFd;
  try {
    pidfd = PidFd.adopt(pidfdNumber, { pid, reap: true });
  } catch (err) {
    // Not expected for a pidfd fresh from the kernel (before 6.13 adopt reads
    // /proc/self/fdinfo, so a process without /proc would get here). Leave
    // no running child nobody can reach, and no zombie.
    native.killAndReap(pid, pidfdNumber);
    for (const s of setups) if (s.parentEnd) closeQuietly(s.parentEnd.fd);
    // Out of fds for the PidFd's private duplicate (EMFILE from fcntl): a
    // spawn error like any other, naming the program and the step.
    const e = err as ErrnoException;
    if (e instanceof Error && typeof e.syscall === 'string' && typeof e.code === 'string') {
      throw spawnError(e, file, argList, cwd, undefined);
    }
    throw err;
  }
  const streams = [0, 1, 2].map((i) => {
    const end = setups.find((s) => s.target === i)?.parentEnd;
    if (!end) return null;
    return new net.Socket({ fd: end.fd, readable: !end.childReads, writable: end.childReads });
  });
  return new Subprocess(CONSTRUCT, pid, pidfd, streams);
}

/**
 * Close what the parent opened for the child: the child's ends always, and
 * the parent's ends too when the spawn failed.
 */
function cleanup(setups: StdioSetup[], failed: boolean): void {
  for (const s of setups) {
    if (!s.parentEnd) continue;
    closeQuietly(s.source);
    if (failed) closeQuietly(s.parentEnd.fd);
  }
}
