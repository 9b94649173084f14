// The fd of a listening net.Server, to hand to workers over the control
// channel. Node has no public API for it (there is no socket(2) either), so
// this is the one place in the package that reads a private field, with a
// clear error where it is missing.

import * as net from 'node:net';
import { invalidArgType } from './args.js';

/**
 * The file descriptor of a listening `net.Server` (TCP or Unix socket), for
 * `worker.control.sendFds([serverFd(server)])`: each worker gets its own copy
 * and may accept on it.
 *
 * Node.js offers no public way to get it: this reads the fd of the server's
 * libuv handle (`server._handle.fd`, an undocumented field present since the
 * early releases). The fd stays the server's: do not close it; close the
 * server instead (the workers' copies keep the socket open and listening).
 *
 * @throws TypeError (`ERR_INVALID_ARG_TYPE`) if `server` is not a net.Server;
 * Error `ERR_SERVER_NOT_RUNNING` if it is not listening (yet, or any more);
 * Error `ERR_FEATURE_UNAVAILABLE_ON_PLATFORM` if this Node.js does not expose
 * the fd. Where that happens, create the socket outside Node and pass its fd
 * instead, e.g. from systemd socket activation (`listenFds()` of
 * `@folk/fd-inherit`).
 */
export function serverFd(server: net.Server): number {
  if (!(server instanceof net.Server)) throw invalidArgType('server', 'an instance of net.Server', server);
  const handle = (server as unknown as { _handle?: { fd?: unknown } | null })._handle;
  if (!server.listening || handle === null || handle === undefined) {
    const err = new Error("The server is not listening: call listen() and wait for 'listening' before taking its fd");
    (err as NodeJS.ErrnoException).code = 'ERR_SERVER_NOT_RUNNING';
    throw err;
  }
  const fd = handle.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    const err = new Error(
      'This Node.js does not expose the fd of a listening net.Server (server._handle.fd); ' +
        'create the listening socket outside Node (systemd socket activation, say) and pass that fd instead',
    );
    (err as NodeJS.ErrnoException).code = 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM';
    throw err;
  }
  return fd;
}
