import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PidFd } from '../lib/index.js';

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

export { epollWatched } from './fixtures/fds.mjs';

/**
 * Whether a process of ours may ptrace a sibling (tracer.py's target is our
 * child, not its own): Yama's ptrace_scope 1 (Ubuntu's default) allows only
 * descendants unless the tracer has CAP_SYS_PTRACE, 2 only with it, 3
 * nobody. (Containers often run as root without it.)
 */
export function canTraceSiblings(): boolean {
  let scope = 0;
  try {
    scope = Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'latin1'));
  } catch {
    // no Yama: ordinary same-user ptrace rules
  }
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'latin1'))?.[1] ?? '0';
  const capSysPtrace = (BigInt(`0x${capEff}`) >> 19n) & 1n; // CAP_SYS_PTRACE is capability 19
  return scope === 0 || (scope < 3 && capSysPtrace === 1n);
}

/**
 * Trace `pid` with ptrace (test/fixtures/tracer.py) so that its exit is
 * shown to the tracer first and kept from us, its parent, until the tracer
 * lets go: `lingerSeconds` after letGo(), which only sends a signal and so
 * can come right before a call that blocks the thread. Disposing of it (a
 * test that failed half-way) ends the tracer and the traced process.
 */
export async function holdExit(
  pid: number,
  lingerSeconds = 0,
): Promise<{ letGo(): void; release(): Promise<void>; [Symbol.asyncDispose](): Promise<void> }> {
  const traced = PidFd.open(pid);
  const tracer = spawn('python3', [fixture('tracer.py'), String(pid), String(lingerSeconds)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(tracer, 'exit');
  // Until the first line, or the end if it failed (its stderr says why).
  let out = '';
  for await (const chunk of tracer.stdout!.setEncoding('utf8')) {
    out += chunk;
    if (out.includes('\n')) break;
  }
  if (out !== 'seized\n') {
    traced.close();
    throw new Error(`tracer.py said ${JSON.stringify(out)}`);
  }
  const letGo = () => void process.kill(tracer.pid!, 'SIGUSR1');
  const release = async () => {
    if (tracer.exitCode === null && tracer.signalCode === null) letGo();
    await exited;
  };
  return {
    letGo,
    release,
    async [Symbol.asyncDispose]() {
      try {
        traced.kill('SIGKILL');
      } catch {
        // ESRCH: it has exited, as it should have
      }
      traced.close();
      await release();
    },
  };
}

export interface NodeRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a fixture script (a name under fixtures/, or a whole path) with the built package in a fresh Node process. */
export async function runNode(
  script: string,
  args: string[] = [],
  options: { env?: NodeJS.ProcessEnv; nodeArgs?: string[]; uid?: number; gid?: number; onStdout?: (text: string, child: ChildProcess) => void } = {},
): Promise<NodeRun> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), isAbsolute(script) ? script : fixture(script), ...args], {
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
