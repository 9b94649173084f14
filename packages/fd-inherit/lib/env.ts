// The child's environment, and the PATH search done in it.
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { invalidArgType, optionsObject, validateCString } from './internal/args.js';

type ErrnoException = NodeJS.ErrnoException;

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * Node's own process.env object, backed by the C environment on the main
 * thread. Taken at load, so code that later assigns a plain object to
 * process.env gets that object's contents, not the C environment.
 */
const NATIVE_ENV = process.env;

export interface ChildEnvironment {
  /** "NAME=value" strings; null for this process's own environment, which the binding copies itself. */
  envp: string[] | null;
  /** The child's PATH, where a program name without "/" is looked for. */
  path: string;
}

/**
 * `options.env` (default `process.env`) as the child gets it. On the main
 * thread process.env is the C environment itself, which the binding copies
 * faster than we could list it here; a worker's process.env is its own
 * copy, and `listing` (for LISTEN_* to be edited) asks for the list anyway.
 */
export function childEnvironment(value: unknown, listing: boolean): ChildEnvironment {
  const env = value === undefined ? process.env : optionsObject(value, 'options.env');
  let envp: string[] | null = null;
  if (env !== NATIVE_ENV || !isMainThread || listing) {
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
 * relative PATH entries are relative to the child's cwd. The error code
 * execvp would give when nothing is found.
 */
export function resolveFile(file: string, path: string, cwd: string | null): string | { code: 'EACCES' | 'ENOENT' } {
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
