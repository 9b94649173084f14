// The public face of @folk/fd-inherit: spawn(), and what the other modules
// export to users. spawn() itself is the order of its steps; each step
// lives with what it is about.
import { PidFd } from '@folk/pidfd';
import { resolveFile } from './env.js';
import { nativeSpawnFailure, spawnError, spawnFailure, systemError } from './errors.js';
import { native, type NativeSpawnPlan } from './native.js';
import { childFdOption, parseSpawn, type SpawnRequest } from './options.js';
import { nativePlan } from './plan.js';
import { checkParentFds, closeChildEnds, closeParentEnds, openStdio, parentStreams, type StdioSetup } from './stdio.js';
import { createSubprocess, type Subprocess } from './subprocess.js';
import type { SpawnOptions } from './types.js';

export type { ExitInfo, Rusage } from '@folk/pidfd';
export { PidFd } from '@folk/pidfd';
export { isInheritable, setInheritable } from './cloexec.js';
export { stdioFromFdMap } from './fd-map.js';
export { listenFds } from './listen-fds.js';
export { notify } from './notify.js';
export { Subprocess } from './subprocess.js';
export type {
  IdMapping,
  IsolationOptions,
  ListenFd,
  ListenFdOption,
  ListenFdsOptions,
  NamespaceName,
  NotifyOptions,
  NotifyState,
  RlimitName,
  RlimitValue,
  SpawnOptions,
  StdioFromFdMapOptions,
  StdioOption,
} from './types.js';

/**
 * Start `file` with `args`, placing exactly the fds asked for.
 *
 * The child is created with a vfork-style clone (no copy of the parent's
 * memory), so this takes the same time whatever the parent's size, and it
 * returns once the child has called execve. Only 0-2 and the mapped fds
 * exist in the child (unless `closeOtherFds: false`).
 *
 * @throws TypeError/RangeError for bad arguments; an `Error` with `code`
 * (ENOENT, EACCES, ENOEXEC, ...), `syscall: 'spawn'`, `path`, `spawnargs`
 * and `step` (the call that failed: 'execve', 'chdir', 'setuid', ...) when
 * the program cannot be started. No child and no fd is left behind then.
 */
export function spawn(file: string, args: readonly string[] = [], options?: SpawnOptions): Subprocess {
  const request = parseSpawn(file, args, options);
  const program = findProgram(request);
  const inherited = checkParentFds(request);
  // From here on fds are opened; each step closes them again if it fails.
  const setups = openStdio(request, inherited);
  const [pid, pidfdNumber] = startChild(request, nativePlan(request, program, setups), setups);
  const pidfd = adoptPidfd(request, pid, pidfdNumber, setups);
  return createSubprocess(pid, pidfd, parentStreams(setups));
}

/** The program's path, PATH searched in the parent before the clone (the child must not allocate); inside the new root, if any. */
function findProgram(request: SpawnRequest): string {
  const found = resolveFile(request.file, request.path, request.cwd, request.isolation?.root ?? null);
  if (typeof found === 'string') return found;
  throw spawnError(systemError(found.code, 'execve', 'execve'), request);
}

/** The binding's spawn: [pid, pidfd] once the child has called execve. The child's pipe ends are closed either way. */
function startChild(request: SpawnRequest, plan: NativeSpawnPlan, setups: StdioSetup[]): [number, number] {
  try {
    return native.spawn(plan);
  } catch (err) {
    closeParentEnds(setups);
    throw nativeSpawnFailure(err, request, (childFd) => childFdOption(request, childFd));
  } finally {
    closeChildEnds(setups);
  }
}

/** The child's pidfd as a PidFd that reaps it; if that cannot be made, the child is killed and reaped, and nothing is left open. */
function adoptPidfd(request: SpawnRequest, pid: number, pidfd: number, setups: StdioSetup[]): PidFd {
  try {
    return PidFd.adopt(pidfd, { pid, reap: true });
  } catch (err) {
    // Not expected for a pidfd fresh from the kernel (before 6.13 adopt reads
    // /proc/self/fdinfo, so a process without /proc would get here). Leave
    // no running child nobody can reach, and no zombie.
    native.killAndReap(pid, pidfd);
    closeParentEnds(setups);
    // Out of fds for the PidFd's private duplicate (EMFILE from fcntl): a
    // spawn error like any other, naming the program and the step.
    throw spawnFailure(err, request);
  }
}
