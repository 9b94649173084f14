// @folk/pidfd: race-free process handles (pidfd_open, pidfd_send_signal,
// waitid(P_PIDFD), pidfd_getfd), waited for on the event loop.
//
// The public face; each part lives in its own module:
//   pid-fd.ts   the PidFd class
//   exit.ts     siginfo and rusage as ExitInfo
//   errors.ts   errors we raise, context for the binding's
//   types.ts    the shapes taken and given; native.ts the binding's
//   internal/   shared with the other packages (arguments, signals)
export { PidFd } from './pid-fd.js';
export type { ExitInfo, PidFdAdoptOptions, PidFdOpenOptions, PidFdWaitOptions, Rusage } from './types.js';
