// The parent's side of the child's fds: every parent fd the child is to get
// checked open, then the pipes and /dev/null of 0-2 set up, then closed
// again (the child's ends always, the parent's too if the spawn failed).
import * as net from 'node:net';
import { isOpen } from './cloexec.js';
import { spawnError, spawnFailure, systemError } from './errors.js';
import { DEV_NULL, native } from './native.js';
import type { SpawnRequest } from './options.js';
import type { StdioOption } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

/** One of the child's fds 0-2, as the parent provides it. */
export interface StdioSetup {
  target: number;
  /** A parent fd, or DEV_NULL. */
  source: number;
  /** Inherited stdio: a parent fd that is not open leaves the child's closed too. */
  optional?: boolean;
  /** The parent's end of a pipe, and which way the child uses it. */
  parentEnd?: { fd: number; childReads: boolean };
}

/**
 * Checks every parent fd the child is to get, before any fd of ours exists:
 * a pipe (or the binding's /dev/null) takes the lowest free number and
 * would otherwise pass for a closed fd named here. (With fd 0 closed, an
 * inherited stdin was the read end of the child's own stdout pipe.) Returns
 * which of 0-2 the child inherits: a closed fd that stdio would inherit
 * stays closed in the child.
 *
 * @throws the spawn error EBADF (step fcntl) naming the first closed one.
 */
export function checkParentFds(request: SpawnRequest): boolean[] {
  const { fds, stdio } = request;
  const inherited = stdio.map((how, i) => (how === 'inherit' || (how === undefined && !fds.has(i))) && isOpen(i));
  const mustBeOpen: Array<[number, number]> = [...fds];
  for (let i = 0; i < 3; i++) {
    const how = stdio[i];
    if (typeof how === 'number') mustBeOpen.push([i, how]);
  }
  for (const [target, source] of mustBeOpen) {
    if (isOpen(source)) continue;
    const raw: ErrnoException & { fd?: number } = systemError('EBADF', 'fcntl', 'fcntl');
    raw.fd = source;
    throw spawnError(raw, request, target);
  }
  return inherited;
}

/**
 * The child's 0-2: inherited where `inherited` says so, /dev/null, new
 * pipes or the parent fds asked for. On failure nothing opened here is left
 * open, and an errno error (pipe2 out of fds: EMFILE) is a spawn error.
 */
export function openStdio(request: SpawnRequest, inherited: boolean[]): StdioSetup[] {
  const setups: StdioSetup[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const setup = stdioSetup(i, request.stdio[i], inherited[i]!);
      if (setup) setups.push(setup);
    }
  } catch (err) {
    closeChildEnds(setups);
    closeParentEnds(setups);
    throw spawnFailure(err, request);
  }
  return setups;
}

function stdioSetup(target: number, how: StdioOption | undefined, inherited: boolean): StdioSetup | null {
  // Unless fds[target] places it or it is closed here.
  if (how === undefined || how === 'inherit') return inherited ? { target, source: target, optional: true } : null;
  if (how === 'ignore') return { target, source: DEV_NULL };
  if (how !== 'pipe') return { target, source: how };
  const [readEnd, writeEnd] = native.pipe();
  const childReads = target === 0;
  return { target, source: childReads ? readEnd : writeEnd, parentEnd: { fd: childReads ? writeEnd : readEnd, childReads } };
}

/** The child's ends of the pipes: done with once the child has them, or once the spawn failed. */
export function closeChildEnds(setups: StdioSetup[]): void {
  for (const s of setups) if (s.parentEnd) closeQuietly(s.source);
}

/** The parent's ends of the pipes, when no child is left to talk to. */
export function closeParentEnds(setups: StdioSetup[]): void {
  for (const s of setups) if (s.parentEnd) closeQuietly(s.parentEnd.fd);
}

/** `subprocess.stdin`, `stdout`, `stderr`: a socket over each pipe's parent end, else null. */
export function parentStreams(setups: StdioSetup[]): Array<net.Socket | null> {
  return [0, 1, 2].map((i) => {
    const end = setups.find((s) => s.target === i)?.parentEnd;
    if (!end) return null;
    return new net.Socket({ fd: end.fd, readable: !end.childReads, writable: end.childReads });
  });
}

function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // Already closed: nothing to undo.
  }
}
