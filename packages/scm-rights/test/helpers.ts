import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The fds open in this process, each with what it points at. */
export function openFds(): string[] {
  const fds: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      fds.push(`${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // The fd readdirSync itself used, already closed.
    }
  }
  return fds.sort();
}

/** What an fd points at ("pipe:[123]", "/etc/hostname", "socket:[456]"). */
export function target(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}

export const O_CLOEXEC = 0o2000000;

export function fdFlags(fd: number): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`no flags in fdinfo of ${fd}`);
  return parseInt(m[1]!, 8);
}

export function errorOf(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error('expected an error');
}

/** The built package, for child processes (which load it as users do). */
export const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a program with `fd` as its fd 3 (the socket under test) and collect
 * its output. `onSpawn` may act while it runs.
 */
export async function runWithFd3(
  command: string,
  args: string[],
  fd: number,
  onSpawn?: (pid: number) => void | Promise<void>,
): Promise<Run> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe', fd] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(child, 'close');
  await onSpawn?.(child.pid!);
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}

/** python3 -c `script` with the socket as fd 3. */
export async function python(script: string, fd: number): Promise<Run> {
  const r = await runWithFd3('python3', ['-c', script], fd);
  if (r.code !== 0) throw new Error(`python3 failed (${r.code ?? r.signal}): ${r.stderr}`);
  return r;
}
