// Shared by the test files: what a process has open, what its children are,
// and small ways to run a child to completion.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { O_CLOEXEC, errorOf as errorOfAny, fdFlags, readableBy } from '@folk/test-support';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, expect } from 'vitest';
import type { Subprocess } from '../lib/index.js';

import { openFds, zombieChildren } from '@folk/test-support';

export { children, openFds, zombieChildren } from '@folk/test-support';

/** Every test of the calling file must end with this process's fds as they were and no zombie child. */
export function expectNothingLeftByEachTest(): void {
  let before: string[];
  beforeEach(() => {
    before = openFds();
  });
  afterEach(() => {
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });
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

/** Whether fd of pid has FD_CLOEXEC, from /proc/<pid>/fdinfo. */
export function hasCloexec(fd: number, pid: number | 'self' = 'self'): boolean {
  return (fdFlags(fd, pid) & O_CLOEXEC) !== 0;
}

/** This process's soft RLIMIT_NOFILE: every fd number of a child it spawns is below it. */
export function fdLimit(): number {
  const m = /^Max open files\s+([0-9]+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  if (!m) throw new Error('no "Max open files" in /proc/self/limits');
  return Number(m[1]);
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
  return errorOfAny(fn);
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

/**
 * DIST where `user` (nobody) can read it, with @folk/pidfd beside it as npm
 * puts it, and `extra` files of this package (fixtures, relative to its
 * root) under `root` (readableBy() of @folk/test-support: copies when the
 * checkout is not readable by everyone). remove() when done.
 */
export function readableDist(user: { uid: number; gid: number }, extra: string[] = []): { dist: string; root: string; remove: () => void } {
  requireDist();
  const pidfd = join(createRequire(import.meta.url).resolve('@folk/pidfd/package.json'), '..');
  const { roots, remove } = readableBy(user, { '@folk/fd-inherit': join(DIST, '..', '..'), '@folk/pidfd': pidfd }, { '@folk/fd-inherit': extra });
  const root = roots['@folk/fd-inherit']!;
  return { dist: join(root, 'dist', 'index.js'), root, remove };
}

/**
 * Why libsystemd cannot serve as an oracle here (python3 or libsystemd.so.0
 * missing), or null when it can: tests call it through Python's ctypes.
 */
export function libsystemdMissing(): string | null {
  const probe = spawnSync('python3', ['-c', 'import ctypes; ctypes.CDLL("libsystemd.so.0")'], { encoding: 'utf8' });
  if (probe.error) return `python3 cannot be run (${(probe.error as NodeJS.ErrnoException).code})`;
  if (probe.status !== 0) return `libsystemd.so.0 cannot be loaded: ${probe.stderr.trim().split('\n').pop()}`;
  return null;
}

/** The inode id of the pidfd `fd` as LISTEN_PIDFDID holds it (pidfs, Linux 6.9+); null where the kernel cannot tell. */
export const pidfdInodeId = (createRequire(import.meta.url)('./fixtures/pidfd-id.cjs') as { pidfdInodeId(fd: number): string | null })
  .pidfdInodeId;
