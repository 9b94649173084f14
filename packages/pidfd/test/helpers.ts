import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { once } from 'node:events';
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

/** The state letter in /proc/PID/stat ('Z' for a zombie), or null once the pid is gone. */
export function procState(pid: number): string | null {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))![1]!;
  } catch {
    return null;
  }
}

/**
 * Spawn a child that is ours and that nobody else reaps, the situation
 * `reap: true` is for (what @folk/fd-inherit's spawn produces). Node has no
 * such spawn, so take child_process's and close libuv's process handle at
 * once: libuv then forgets the pid and never calls waitpid on it. This runs
 * before the loop can see the child's SIGCHLD, so libuv cannot have reaped it.
 */
export function spawnUnreaped(command: string, args: string[] = []): number {
  const child = spawn(command, args, { stdio: 'ignore' }) as ChildProcess & { _handle: { close(): void } | null };
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${command}`);
  child._handle!.close();
  child._handle = null;
  return pid;
}

export const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

export interface NodeRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a fixture script with the built package in a fresh Node process. */
export async function runNode(
  script: string,
  args: string[] = [],
  options: { env?: NodeJS.ProcessEnv; nodeArgs?: string[]; uid?: number; gid?: number; onStdout?: (text: string, child: ChildProcess) => void } = {},
): Promise<NodeRun> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), fixture(script), ...args], {
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    options.onStdout?.(stdout, child);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}
