// Shared by the test files: what a process has open, what its children are,
// and small ways to run a child to completion.
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import type { Subprocess } from '../lib/index.js';

/** The fds open in a process, each with what it points at, sorted. */
export function openFds(pid: number | 'self' = 'self'): string[] {
  const fds: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      fds.push(`${fd} -> ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      // The fd readdirSync itself used, already closed.
    }
  }
  return fds.sort();
}

/** fd number -> link target, for a process other than ourselves. */
export function fdTable(pid: number): Map<number, string> {
  const table = new Map<number, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) table.set(Number(fd), readlinkSync(`/proc/${pid}/fd/${fd}`));
  return table;
}

export function link(fd: number, pid: number | 'self' = 'self'): string {
  return readlinkSync(`/proc/${pid}/fd/${fd}`);
}

const O_CLOEXEC = 0o2000000;

/** Whether fd of pid has FD_CLOEXEC, from /proc/<pid>/fdinfo. */
export function hasCloexec(fd: number, pid: number | 'self' = 'self'): boolean {
  const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const m = /^flags:\s+([0-7]+)$/m.exec(info);
  if (!m) throw new Error(`no flags in fdinfo of ${fd}`);
  return (parseInt(m[1]!, 8) & O_CLOEXEC) !== 0;
}

/** Pids of this process's children that are zombies (exited, not reaped). */
export function zombieChildren(): number[] {
  return children('Z');
}

/** Pids of this process's children, in the given state (R, S, Z, ...) or any. */
export function children(state?: string): number[] {
  const zombies: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if ((state === undefined || fields[0] === state) && Number(fields[1]) === process.pid) zombies.push(Number(entry));
  }
  return zombies;
}

/** A field of /proc/<pid>/stat after the command name (3 = state, 4 = ppid, 6 = session ...). */
export function statField(pid: number, field: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[field - 3]!;
}

export async function readAll(stream: Readable | null): Promise<string> {
  if (!stream) throw new Error('no stream');
  stream.setEncoding('utf8');
  let text = '';
  for await (const chunk of stream) text += chunk;
  return text;
}

/** Wait for a child with stdout: 'pipe' and return its output and exit code. */
export async function outputOf(child: Subprocess): Promise<{ out: string; code: number | null; signal: string | null }> {
  const [out, exit] = await Promise.all([readAll(child.stdout), child.wait()]);
  return { out, code: exit.code, signal: exit.signal };
}

export function errorOf(fn: () => unknown): NodeJS.ErrnoException & { step?: string; spawnargs?: string[] } {
  try {
    fn();
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error('expected an error');
}

/** Run fn with a fresh directory, removed afterwards (after the promise settles, for an async fn). */
export function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'fd-inherit-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  let result: T;
  try {
    result = fn(dir);
  } catch (err) {
    remove();
    throw err;
  }
  if (result instanceof Promise) return result.finally(remove) as T;
  remove();
  return result;
}

/** The built package, for helper processes that run outside vitest. */
export const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

export function requireDist(): void {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run "pnpm run build" in packages/fd-inherit first`);
}
