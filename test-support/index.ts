// Shared by every package's tests: what the kernel says about this process
// and its children, read from /proc. Tests assert on these, never on mocks.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/**
 * The fds open in a process, each as "N -> what it points at", sorted: two
 * lists are equal only if the same numbers point at the same objects. The fd
 * readdirSync itself uses is gone by the time it would be read, so it is
 * left out rather than counted as a leak.
 */
export function openFds(pid: number | 'self' = 'self'): string[] {
  const fds: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      fds.push(`${fd} -> ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      // closed meanwhile (the directory fd itself)
    }
  }
  return fds.sort();
}

/** What fd points at in a process: "pipe:[123]", "/etc/hostname", "socket:[456]". */
export function fdTarget(fd: number, pid: number | 'self' = 'self'): string {
  return readlinkSync(`/proc/${pid}/fd/${fd}`);
}

/** The open-file flags of fd (O_CLOEXEC, O_NONBLOCK, ...), from /proc/<pid>/fdinfo. */
export function fdFlags(fd: number, pid: number | 'self' = 'self'): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`no flags in /proc/${pid}/fdinfo/${fd}`);
  return parseInt(m[1]!, 8);
}

/** The error fn throws; fails the test if it does not throw. */
export function errorOf<E = NodeJS.ErrnoException>(fn: () => unknown): E {
  try {
    fn();
  } catch (err) {
    return err as E;
  }
  throw new Error('expected an error, but nothing was thrown');
}

/** The fields of /proc/<pid>/stat after "pid (comm)" (comm may hold spaces), or null once it is gone. */
function statFields(pid: number | string): string[] | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The state letter of a process (R, S, Z for a zombie, ...), or null once the pid is gone. */
export function processState(pid: number): string | null {
  return statFields(pid)?.[0] ?? null;
}

/** Pids of this process's children, in the given state ('Z': zombies) or any. */
export function children(state?: string): number[] {
  const me = String(process.pid);
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields && fields[1] === me && (state === undefined || fields[0] === state)) found.push(Number(entry));
  }
  return found;
}

/** Children of this process that exited and nobody reaped. */
export function zombieChildren(): number[] {
  return children('Z');
}

/** What terminateMidCall's child prints when no worker took it down. */
export const SURVIVED = { status: 0, signal: null, stderr: '', stdout: 'survived\n' };

/**
 * Terminates worker threads in the middle of calls into a binding, `rounds`
 * times, each worker a moment later (0-24 ms) than the one before, all in a
 * child process so that a crash shows as a signal. Each worker runs `setup`
 * once, then `loop` over and over (one pass per event-loop turn). A binding's
 * Node-API call that the dying worker refuses must not become a C++
 * exception escaping into V8 (std::terminate, SIGABRT). Returns how the child
 * ended and what it printed: SURVIVED when all went well.
 */
export function terminateMidCall(
  setup: string,
  loop: string,
  options: { rounds?: number; trackUnmanagedFds?: boolean; cwd?: string } = {},
): { status: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string } {
  const { rounds = 80, trackUnmanagedFds = false, cwd } = options;
  const body = `${setup}\nconst go = () => { ${loop}\n setImmediate(go); };\ngo();\nrequire('node:worker_threads').parentPort.postMessage(0);`;
  const script = `
    const { Worker } = require('node:worker_threads');
    (async () => {
      for (let round = 0; round < ${rounds}; round++) {
        await new Promise((resolve) => {
          const w = new Worker(${JSON.stringify(body)}, { eval: true, trackUnmanagedFds: ${trackUnmanagedFds} });
          w.once('message', () => setTimeout(() => w.terminate(), round % 25));
          w.once('exit', resolve);
        });
      }
      console.log('survived');
    })();`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd, timeout: 120_000 });
  return { status: run.status, signal: run.signal, stderr: run.stderr, stdout: run.stdout };
}

/** What a built package needs at run time: copied by readableBy(). */
const PACKAGE_PARTS = ['package.json', 'dist', 'prebuilds', 'src/build/Release'];

/**
 * Built packages (name -> package root) where another user can read them,
 * for tests that run a process as nobody: the roots themselves when that
 * user can read them (and `extra`, files inside a root the test also runs,
 * such as a fixture), else copies in a temporary directory readable by all,
 * each under node_modules/<name> with its extra files at the same place
 * inside, so that relative imports and imports of each other resolve there
 * as well. A checkout under a directory of mode 0700 (what mktemp -d makes)
 * is one nobody cannot read. remove() deletes the copies, if any.
 */
export function readableBy(
  user: { uid: number; gid: number },
  packages: Record<string, string>,
  extra: Record<string, string[]> = {},
): { roots: Record<string, string>; remove: () => void } {
  const needed = Object.entries(packages).flatMap(([name, root]) => [join(root, 'package.json'), ...(extra[name] ?? []).map((file) => join(root, file))]);
  const probe = spawnSync(process.execPath, ['-e', `for (const p of ${JSON.stringify(needed)}) require('fs').accessSync(p, require('fs').constants.R_OK)`], {
    ...user,
    cwd: '/',
  });
  if (probe.status === 0) return { roots: { ...packages }, remove: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'folk-readable-'));
  chmodSync(dir, 0o755);
  const roots: Record<string, string> = {};
  for (const [name, root] of Object.entries(packages)) {
    roots[name] = join(dir, 'node_modules', name);
    for (const part of [...PACKAGE_PARTS, ...(extra[name] ?? [])]) {
      if (existsSync(join(root, part))) cpSync(join(root, part), join(roots[name]!, part), { recursive: true });
    }
  }
  return { roots, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
