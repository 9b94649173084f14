// What a wait comes to: the kernel's siginfo and rusage as an ExitInfo, kept
// once known so every later wait gives the same answer.
import { native, type RawExit } from './native.js';
import { signalName } from './internal/signals.js';
import type { ExitInfo, Rusage } from './types.js';

export function toExitInfo(raw: RawExit): ExitInfo {
  const r = raw.rusage;
  const rusage: Rusage = Object.freeze({
    userCpuMs: r.utimeUs / 1000,
    systemCpuMs: r.stimeUs / 1000,
    maxRssKb: r.maxrss,
    minorPageFaults: r.minflt,
    majorPageFaults: r.majflt,
    fsReads: r.inblock,
    fsWrites: r.oublock,
    voluntaryContextSwitches: r.nvcsw,
    involuntaryContextSwitches: r.nivcsw,
  });
  if (raw.code === native.CLD_EXITED) {
    return Object.freeze({ pid: raw.pid, code: raw.status, signal: null, signalNumber: null, rusage });
  }
  // CLD_KILLED or CLD_DUMPED: WEXITED reports nothing else.
  const signal = signalName(raw.status);
  return Object.freeze({ pid: raw.pid, code: null, signal, signalNumber: raw.status, rusage });
}

export function unknownExit(pid: number): ExitInfo {
  return Object.freeze({ pid, code: null, signal: null, signalNumber: null });
}

/** What waiting on a PidFd came to; kept so every later wait gives the same answer. */
export type Outcome = { info: ExitInfo } | { error: Error };

export function settle(outcome: Outcome): ExitInfo {
  if ('error' in outcome) throw outcome.error;
  return outcome.info;
}

export interface Waiter {
  resolve(info: ExitInfo): void;
  reject(err: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export function deliver(waiter: Waiter, outcome: Outcome): void {
  if ('error' in outcome) waiter.reject(outcome.error);
  else waiter.resolve(outcome.info);
}
