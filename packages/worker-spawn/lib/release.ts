// What becomes of a worker's sockets and stdout here once it has exited.
//
// Everything the worker itself wrote is in them already: its exit closed its
// ends after its last write, before the exit could be seen. So each is
// closed as soon as its reader has had what is left, or at once when nobody
// reads. End of file alone is not enough to wait for: a process the worker
// started (a background job, a detached child) may have inherited the other
// end and hold it for as long as it lives. So: keep reading while something
// arrives, and close at the first QUIET_TURNS turns of the event loop in a
// row that bring nothing, or after MAX_TURNS turns. A leftover process that
// writes later gets EPIPE (or SIGPIPE), as in a shell pipeline whose reader
// is gone.

import type * as net from 'node:net';
import type { FdSocket } from '@folk/scm-rights';

const QUIET_TURNS = 2;
const MAX_TURNS = 64;

/** Call `close()` once `progress()` stands still for QUIET_TURNS turns in a row, or after MAX_TURNS, unless `done()` first. */
function closeWhenQuiet(progress: () => number, done: () => boolean, close: () => void): void {
  let seen = progress();
  let quiet = 0;
  let turns = 0;
  const check = (): void => {
    if (done()) return;
    const now = progress();
    if (now !== seen) {
      seen = now;
      quiet = 0;
    } else {
      quiet++;
    }
    if (quiet >= QUIET_TURNS || ++turns >= MAX_TURNS) close();
    else setImmediate(check);
  };
  setImmediate(check);
}

/**
 * Close `socket` once what is left in it has been read (by its readers; with
 * none, it is drained and dropped). Resolves when it has closed.
 */
export function releaseSocket(socket: net.Socket): Promise<void> {
  if (!socket.destroyed) {
    if (socket.listenerCount('data') === 0 && socket.listenerCount('readable') === 0) socket.resume();
    closeWhenQuiet(
      () => socket.bytesRead,
      () => socket.destroyed,
      () => socket.destroy(),
    );
  }
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}

/**
 * Close `socket` once its 'message' listeners have had the messages left in
 * it; at once if it has none (messages nobody takes are closed with it,
 * their fds too). Resolves when its fds are closed.
 */
export function releaseFdSocket(socket: FdSocket): Promise<void> {
  if (!socket.closed) {
    if (socket.listenerCount('message') === 0) {
      socket.close();
    } else {
      let messages = 0;
      socket.on('message', () => messages++);
      closeWhenQuiet(
        () => messages,
        () => socket.closed,
        () => socket.close(),
      );
    }
  }
  // FdSocket closes its fds within close(); 'close' only reports it.
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}
