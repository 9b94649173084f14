// The child's environment, and the PATH search done in it (inside the new
// root, when there is one).
import { accessSync, constants as fsConstants, lstatSync, readlinkSync, statSync } from 'node:fs';
import { isAbsolute, join as joinPath, resolve as resolvePath } from 'node:path';
import { types } from 'node:util';
import { invalidArgType, optionsObject, validateCString } from './internal/args.js';
import { native } from './native.js';

type ErrnoException = NodeJS.ErrnoException;

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * process.env as found at load, if it is backed by the C environment
 * (environ), which the binding then copies itself; else null, and every
 * spawn lists the environment out. Node's own object on the main thread
 * is (so is a worker's made with SHARE_ENV); a worker's own copy is not,
 * nor a plain object that code which ran first put in its place (a test
 * setup's `process.env = { ...process.env }`): the child must get what
 * such an object holds, as child_process gives it. Held by identity, so an
 * object assigned to process.env later is listed out too.
 */
const C_BACKED_ENV = writesReachEnviron(process.env) ? process.env : null;

/**
 * Whether a variable set through `env` shows in the C environment: one
 * write of a name nobody uses, read back with getenv(3), then removed, so
 * nothing is left in either. A Proxy may show other contents than it
 * passes on, so it never counts.
 */
function writesReachEnviron(env: NodeJS.ProcessEnv): boolean {
  if (env === null || typeof env !== 'object' || types.isProxy(env)) return false;
  const name = `FOLK_FD_INHERIT_PROBE_${process.pid}_${Math.random().toString(36).slice(2)}`;
  try {
    env[name] = name;
    return native.getenv(name) === name;
  } catch {
    // A frozen object, or a setter that throws: not Node's.
    return false;
  } finally {
    delete env[name];
  }
}

export interface ChildEnvironment {
  /** "NAME=value" strings; null for the C environment, which the binding copies itself. */
  envp: string[] | null;
  /** The child's PATH, where a program name without "/" is looked for. */
  path: string;
}

/**
 * `options.env` (default `process.env`) as the child gets it. When that is
 * the C-backed process.env, the binding copies the C environment, faster
 * than we could list it here; anything else is listed, and so is every
 * environment when `listing` (for LISTEN_* to be edited) asks for it.
 */
export function childEnvironment(value: unknown, listing: boolean): ChildEnvironment {
  const env = value === undefined ? process.env : optionsObject(value, 'options.env');
  let envp: string[] | null = null;
  if (env !== C_BACKED_ENV || listing) {
    envp = [];
    for (const [key, entry] of Object.entries(env)) {
      if (entry === undefined) continue;
      validateCString(key, 'options.env');
      envp.push(validateCString(`${key}=${envText(key, entry)}`, `options.env.${key}`));
    }
  }
  const path = env['PATH'];
  return { envp, path: typeof path === 'string' ? path : DEFAULT_PATH };
}

/** Coerced like child_process does; a value String() cannot convert is named. */
function envText(key: string, value: unknown): string {
  try {
    return String(value);
  } catch (cause) {
    const err = invalidArgType(`options.env.${key}`, 'a string (or a value String() can convert)', value);
    (err as Error).cause = cause;
    throw err;
  }
}

/**
 * execvp's search, done in the parent before the clone (the child must not
 * allocate). A name without "/" is looked up in the child's PATH; empty or
 * relative PATH entries are relative to the child's cwd. With `root` (the
 * directory that becomes the child's "/"), every path is the child's, looked
 * up inside it, as execvp after a chroot would: cwd is then "/" unless given.
 * Returns the path to execve (the child's), or the error code execvp would
 * give when nothing is found.
 */
export function resolveFile(file: string, path: string, cwd: string | null, root: string | null = null): string | { code: 'EACCES' | 'ENOENT' } {
  if (file.includes('/')) return file;
  // The child's cwd; in a new root, a path there, relative to its "/" (the child chdirs there first).
  const base = root === null ? cwd : resolvePath('/', cwd ?? '/');
  let denied = false;
  for (const dir of path.split(':')) {
    let candidate = `${dir === '' ? '.' : dir}/${file}`;
    if (!isAbsolute(candidate) && base !== null) candidate = resolvePath(base, candidate);
    try {
      const here = root === null ? candidate : hostPathInRoot(root, candidate);
      if (!statSync(here).isFile()) continue;
      accessSync(here, fsConstants.X_OK);
      return candidate;
    } catch (err) {
      if ((err as ErrnoException).code === 'EACCES') denied = true;
    }
  }
  return { code: denied ? 'EACCES' : 'ENOENT' };
}

/** The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Where the absolute path `path` of a child whose "/" is `root` is found
 * from here. Symlinks are followed inside the root, not on this side: an
 * absolute target starts again at `root` (Alpine's /bin/sh -> /bin/busybox),
 * and ".." stops there, as for any process whose root it is. Throws what
 * lstat throws (ENOENT, ENOTDIR, EACCES), or ELOOP.
 */
function hostPathInRoot(root: string, path: string): string {
  const pending = path.split('/');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const here = joinPath(root, ...resolved, part);
    if (!lstatSync(here).isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw Object.assign(new Error(`ELOOP: too many symbolic links, '${path}'`), { code: 'ELOOP' });
    const target = readlinkSync(here);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/'));
  }
  return joinPath(root, ...resolved);
}
