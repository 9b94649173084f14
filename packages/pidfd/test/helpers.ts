import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export { O_CLOEXEC, errorOf, fdFlags, openFds, processState as procState } from '@folk/test-support';

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
