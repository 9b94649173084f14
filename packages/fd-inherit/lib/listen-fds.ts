// systemd socket activation, both ways: the LISTEN_* variables a child gets
// from spawn({ listenFds }), and listenFds(), which reads them in a process
// that was handed fds.
import {
  INT32_MAX,
  invalidArgType,
  invalidArgValue,
  optionalBoolean,
  optionsObject,
  validateFd,
} from './internal/args.js';
import { explainFcntl, systemError } from './errors.js';
import { native } from './native.js';
import type { ListenFd, ListenFdsOptions } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

export const SD_LISTEN_FDS_START = 3;

// ---------------------------------------------------------------------------
// The receiving side: listenFds()

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

// ---------------------------------------------------------------------------
// The sending side: spawn({ listenFds })

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

/**
 * `options.listenFds` added to the fd map `fds` at 3, 4, ...: the names, in
 * order (`'unknown'` for an unnamed fd); null when the option is not given.
 */
export function addListenFds(list: unknown, fds: Map<number, number>): string[] | null {
  if (list === undefined) return null;
  if (!Array.isArray(list)) throw invalidArgType('options.listenFds', 'an instance of Array', list);
  const names: string[] = [];
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
    if (fds.has(target)) throw invalidArgValue('options.listenFds', `puts fd ${target} where options.fds has one`, fd);
    fds.set(target, fd);
    names.push(fdName);
  }
  return names;
}

/** An environment with the LISTEN_* variables for a child, and where in it the child fills in its own pid and pidfd id. */
export interface ListenEnvironment {
  envp: string[] | null;
  /** The index of "LISTEN_PID=" in envp; -1 for none. */
  listenPidIndex: number;
  /** The index of "LISTEN_PIDFDID=", the last entry; -1 for none. */
  listenPidfdidIndex: number;
}

/**
 * Socket activation as systemd sets it up: stale LISTEN_* variables never
 * reach the child; with fds, LISTEN_PID and LISTEN_PIDFDID are filled in by
 * the child itself (see ChildMain in src/child.cc). Without fds, none is
 * set: libsystemd takes LISTEN_FDS=0 for an error. `envp` is not changed.
 */
export function listenEnvironment(envp: string[] | null, names: string[] | null): ListenEnvironment {
  if (envp === null || names === null) return { envp, listenPidIndex: -1, listenPidfdidIndex: -1 };
  const kept = envp.filter((e) => !/^LISTEN_(PID|PIDFDID|FDS|FDNAMES)=/.test(e));
  if (names.length === 0) return { envp: kept, listenPidIndex: -1, listenPidfdidIndex: -1 };
  kept.push(`LISTEN_FDS=${names.length}`, `LISTEN_FDNAMES=${names.join(':')}`, 'LISTEN_PID=', 'LISTEN_PIDFDID=');
  return { envp: kept, listenPidIndex: kept.length - 2, listenPidfdidIndex: kept.length - 1 };
}
