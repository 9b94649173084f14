// spawn()'s arguments read into a SpawnRequest: every value checked, every
// default filled in, nothing opened and nothing looked up on disk. Errors
// come in the order the arguments are read, which is the order below.
import { fileURLToPath } from 'node:url';
import {
  INT32_MAX,
  invalidArgType,
  invalidArgValue,
  optionalBoolean,
  optionsObject,
  validateCString,
  validateFd,
  validateInteger,
} from './internal/args.js';
import { childEnvironment } from './env.js';
import { STDIO_NAMES, fdMapEntries } from './fd-map.js';
import { parseIsolation, type IsolationRequest } from './isolation.js';
import { SD_LISTEN_FDS_START, addListenFds, listenEnvironment } from './listen-fds.js';
import { native } from './native.js';
import { signalNumber } from './internal/signals.js';
import type { StdioOption } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

/** What spawn() was asked to do, checked; what only the parent's fds and the disk can refuse is left for later. */
export interface SpawnRequest {
  /** `file` as given: a path, or a name to look for in `path`. */
  file: string;
  args: string[];
  argv0: string;
  /** "NAME=value" strings; null for the C environment, which process.env then holds (see lib/env.ts). */
  envp: string[] | null;
  /** The index in envp of "LISTEN_PID=", which the child fills in; -1 for none. */
  listenPidIndex: number;
  /** The index in envp of "LISTEN_PIDFDID=", its last entry, which the child fills in or drops; -1 for none. */
  listenPidfdidIndex: number;
  /** The child's PATH. */
  path: string;
  cwd: string | null;
  /** Child fd -> parent fd: options.fds, then options.listenFds at 3, 4, ... */
  fds: Map<number, number>;
  /** options.stdin/stdout/stderr; undefined where not given. */
  stdio: Array<StdioOption | undefined>;
  /** How many of `fds` came from options.listenFds. */
  listenCount: number;
  /** Signal number; 0 for none. */
  pdeathsig: number;
  /** -1 to keep the parent's. */
  umask: number;
  /** Flat [resource, soft, hard, ...]; -1 means unlimited. */
  rlimits: number[];
  groups: number[] | null;
  /** -1 to keep. */
  uid: number;
  gid: number;
  closeOtherFds: boolean;
  setsid: boolean;
  noNewPrivs: boolean;
  restoreSignals: boolean;
  /** Namespaces, maps, mounts, cgroup; null when none was asked for. */
  isolation: IsolationRequest | null;
}

/** Read spawn(file, args, options) into a SpawnRequest; throws TypeError/RangeError naming the argument. */
export function parseSpawn(file: unknown, args: unknown, options: unknown): SpawnRequest {
  const program = validateCString(file, 'file');
  if (program === '') throw invalidArgValue('file', 'cannot be empty', program);
  if (!Array.isArray(args)) throw invalidArgType('args', 'an instance of Array', args);
  // Array.from, not map: map skips the holes of a sparse array.
  const argList = Array.from(args, (a, i) => validateCString(a, `args[${i}]`));
  const opts = optionsObject(options);
  const env = childEnvironment(opts['env'], opts['listenFds'] !== undefined);
  const cwd = parseCwd(opts['cwd']);
  const argv0 = opts['argv0'] === undefined ? program : validateCString(opts['argv0'], 'options.argv0');
  // The fd map: explicit entries, then stdio, then LISTEN_FDS.
  const fds = new Map(fdMapEntries(opts['fds'], 'options.fds'));
  const stdio = parseStdio(opts, fds);
  const listenNames = addListenFds(opts['listenFds'], fds);
  return {
    file: program,
    args: argList,
    argv0,
    ...listenEnvironment(env.envp, listenNames),
    path: env.path,
    cwd,
    fds,
    stdio,
    listenCount: listenNames?.length ?? 0,
    pdeathsig: opts['pdeathsig'] === undefined ? 0 : signalNumber(opts['pdeathsig'], 'options.pdeathsig', 1),
    umask: opts['umask'] === undefined ? -1 : validateInteger(opts['umask'], 'options.umask', 0, 0o777),
    rlimits: opts['rlimits'] === undefined ? [] : rlimitTriples(opts['rlimits']),
    groups: parseGroups(opts['groups']),
    uid: optionalId(opts['uid'], 'options.uid'),
    gid: optionalId(opts['gid'], 'options.gid'),
    closeOtherFds: optionalBoolean(opts, 'closeOtherFds', true),
    setsid: optionalBoolean(opts, 'setsid', false),
    noNewPrivs: optionalBoolean(opts, 'noNewPrivs', false),
    restoreSignals: optionalBoolean(opts, 'restoreSignals', true),
    isolation: parseIsolation(opts),
  };
}

/** The option that put child fd `target` in the request, for an error about it. */
export function childFdOption(request: SpawnRequest, target: number): string {
  if (target >= SD_LISTEN_FDS_START && target < SD_LISTEN_FDS_START + request.listenCount) {
    return `options.listenFds[${target - SD_LISTEN_FDS_START}]`;
  }
  if (target < 3 && request.stdio[target] !== undefined) return `options.${STDIO_NAMES[target]}`;
  return 'options.fds';
}

function parseCwd(value: unknown): string | null {
  if (value === undefined) return null;
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
  return validateCString(path, 'options.cwd');
}

/** options.stdin/stdout/stderr, each refused when `fds` also places that fd. */
function parseStdio(opts: Record<string, unknown>, fds: Map<number, number>): Array<StdioOption | undefined> {
  const stdio = STDIO_NAMES.map((key): StdioOption | undefined => {
    const value = opts[key];
    if (value === undefined) return undefined;
    if (typeof value === 'number') return validateFd(value, `options.${key}`);
    if (value !== 'inherit' && value !== 'ignore' && value !== 'pipe') {
      throw invalidArgValue(`options.${key}`, "must be 'inherit', 'ignore', 'pipe' or an fd number", value);
    }
    return value;
  });
  for (let i = 0; i < 3; i++) {
    if (stdio[i] !== undefined && fds.has(i)) {
      throw invalidArgValue(`options.${STDIO_NAMES[i]}`, `conflicts with options.fds[${i}]`, stdio[i]);
    }
  }
  return stdio;
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

function parseGroups(value: unknown): number[] | null {
  if (value === undefined) return null;
  if (!Array.isArray(value)) throw invalidArgType('options.groups', 'an instance of Array', value);
  return Array.from(value, (g: unknown, i: number) => validateInteger(g, `options.groups[${i}]`, 0, INT32_MAX));
}

function optionalId(value: unknown, name: string): number {
  return value === undefined ? -1 : validateInteger(value, name, 0, INT32_MAX);
}
