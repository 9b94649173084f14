// The plan the binding carries out: everything decided here, so the code
// between clone and execve only follows it.
import { nativeIsolation } from './isolation.js';
import type { NativeSpawnPlan } from './native.js';
import type { SpawnRequest } from './options.js';
import { RESTORED_SIGNALS } from './signals.js';
import type { StdioSetup } from './stdio.js';

/** `request` as src/spawn.cc takes it, with the program found (`file`) and 0-2 set up (`setups`). */
export function nativePlan(request: SpawnRequest, file: string, setups: readonly StdioSetup[]): NativeSpawnPlan {
  const { uid, gid, groups } = request;
  const plan: NativeSpawnPlan = {
    file,
    argv: [request.argv0, ...request.args],
    envp: request.envp,
    listenPidIndex: request.listenPidIndex,
    listenPidfdidIndex: request.listenPidfdidIndex,
    cwd: request.cwd,
    targets: [],
    sources: [],
    optional: [],
    closeOtherFds: request.closeOtherFds,
    setsid: request.setsid,
    pdeathsig: request.pdeathsig,
    umask: request.umask,
    rlimits: request.rlimits,
    noNewPrivs: request.noNewPrivs,
    uid,
    gid,
    groups,
    // A child running as another user keeps none of our supplementary groups.
    dropGroups: groups === null && (uid !== -1 || gid !== -1),
    defaultSignals: request.restoreSignals ? [...RESTORED_SIGNALS] : [],
    isolation: nativeIsolation(request.isolation),
  };
  for (const s of setups) {
    plan.targets.push(s.target);
    plan.sources.push(s.source);
    plan.optional.push(s.optional === true);
  }
  for (const [target, source] of request.fds) {
    plan.targets.push(target);
    plan.sources.push(source);
    plan.optional.push(false);
  }
  return plan;
}
