// Fd maps (child fd -> parent fd): reading one from the caller, and turning
// one into the stdio array child_process takes.
import { readFileSync } from 'node:fs';
import { INT32_MAX, invalidArgType, invalidArgValue, optionsObject, validateFd } from './internal/args.js';
import type { StdioFromFdMapOptions } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

/** `{ '3': 7 }` -> [[3, 7]], every key and value checked. */
export function fdMapEntries(value: unknown, name: string): Array<[number, number]> {
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

export const STDIO_NAMES = ['stdin', 'stdout', 'stderr'] as const;

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
