import * as net from 'node:net';
import { closeSync } from 'node:fs';
import { invalidArgType, invalidArgValue, optionalBoolean, optionsObject } from './internal/args.js';
import { native } from './native.js';

/** The kind of AF_UNIX socket pair to create. */
export type SocketType = 'stream' | 'seqpacket' | 'dgram';

export interface SocketPairOptions {
  /** Set FD_CLOEXEC on both ends, so no child process inherits them. Default `true`. */
  cloexec?: boolean;
  /** Set O_NONBLOCK on both ends. Default `false`. */
  nonblock?: boolean;
}

export interface SocketPairStreamsOptions {
  /** Passed to each `net.Socket`: keep the writable side open after the peer ends. Default `false`. */
  allowHalfOpen?: boolean;
}

const TYPES: Record<SocketType, number> = {
  stream: native.SOCK_STREAM,
  seqpacket: native.SOCK_SEQPACKET,
  dgram: native.SOCK_DGRAM,
};

/**
 * Create a pair of connected AF_UNIX sockets with socketpair(2).
 *
 * Returns two plain fd numbers; close them with `fs.closeSync`. Both ends are
 * close-on-exec unless `cloexec: false` is passed.
 *
 * @throws TypeError for an unknown `type` or bad options; an `Error` with
 * `code`, `errno` and `syscall: 'socketpair'` when the kernel refuses (EMFILE, ENFILE, ...).
 */
export function socketpair(type: SocketType = 'stream', options?: SocketPairOptions): [number, number] {
  if (typeof type !== 'string') throw invalidArgType('type', "one of 'stream', 'seqpacket', 'dgram'", type);
  if (!Object.hasOwn(TYPES, type)) throw invalidArgValue('type', "must be one of 'stream', 'seqpacket', 'dgram'", type);
  const opts = optionsObject(options);
  const cloexec = optionalBoolean(opts, 'cloexec', true);
  const nonblock = optionalBoolean(opts, 'nonblock', false);
  return native.socketpair(TYPES[type], cloexec, nonblock);
}

/**
 * Create a connected stream pair as two `net.Socket` duplexes.
 *
 * Each socket owns its fd: destroying or ending a socket closes its fd, and
 * nothing else ever closes it. Both fds are close-on-exec.
 */
export function socketpairStreams(options?: SocketPairStreamsOptions): [net.Socket, net.Socket] {
  const opts = optionsObject(options);
  const allowHalfOpen = optionalBoolean(opts, 'allowHalfOpen', false);
  const [a, b] = native.socketpair(TYPES.stream, true, false);
  let first: net.Socket | undefined;
  try {
    first = new net.Socket({ fd: a, readable: true, writable: true, allowHalfOpen });
    const second = new net.Socket({ fd: b, readable: true, writable: true, allowHalfOpen });
    return [first, second];
  } catch (err) {
    // Whatever was wrapped is closed by its socket; the rest by hand.
    if (first) first.destroy();
    else closeSync(a);
    closeSync(b);
    throw err;
  }
}
