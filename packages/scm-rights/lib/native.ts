// The one seam between TypeScript and C++: the shape of src/scm_rights.cc's
// exports, declared once so lib/index.ts is type-checked against it.
import { loadNative } from './internal/native-loader.js';

/** Called once per readable wakeup with everything recvmsg returned until EAGAIN. */
export type OnRead = (chunks: number, data: Buffer | undefined, status: number) => void;

export interface NativePoller {
  /**
   * Which readiness the uv_poll_t watches; (false, false) stops it.
   * `fdBudget`: how many fds the reads of one readable wakeup may bring in;
   * they stop after the message that reaches it (so at most 253 over).
   */
  setEvents(readable: boolean, writable: boolean, fdBudget: number): void;
  ref(): void;
  unref(): void;
  /** The private duplicate of the socket fd that the poll, reads and writes use; -1 once closed. */
  io(): number;
  /**
   * An F_DUPFD_CLOEXEC copy of `fd`, held. Held fds (these, and every fd a
   * read hands over in `fds`) are closed by close() and when the thread's
   * environment is torn down, unless released or dropped first.
   */
  dup(fd: number): number;
  /** No longer held: handed to a consumer. One fd as a number costs less than an array. */
  release(fds: number | readonly number[]): void;
  /** close(2) each fd that is still held (no other: the number may be another file's by now). */
  drop(fds: number | readonly number[]): void;
  /** Stop polling, close the private duplicate, every fd still held, and the caller's fd while it still refers to the same socket (device and inode). Idempotent. */
  close(): void;
}

export interface NativeBinding {
  /** One sendmsg(2) with SCM_RIGHTS; bytes sent. Throws a Node-style errno Error (EAGAIN included). */
  sendFds(fd: number, data: ArrayBufferView, fds: number[]): number;
  /**
   * One sendmsg(2) with MSG_DONTWAIT; bytes sent, or -1 when the socket is
   * full. With `frame`, the 8-byte stream frame header (body length, fd
   * count) is sent first, in the same call, and counts in the bytes sent.
   */
  trySend(fd: number, body: ArrayBufferView, fds: number[] | null, frame: boolean): number;
  /**
   * One recvmsg(2) with MSG_CMSG_CLOEXEC: [data, fds, msg_flags]. At most
   * maxFds fds; MSG_CTRUNC if there were more (the rest are closed). No
   * memory for a maxBytes buffer: ENOMEM with syscall 'malloc', before
   * anything is read.
   */
  recvFds(fd: number, maxBytes: number, maxFds: number): [Buffer, number[], number];
  /** [address family, SO_TYPE, SO_ACCEPTCONN] of a socket fd. */
  socketInfo(fd: number): [number, number, boolean];
  /** SO_PEERCRED: [pid, uid, gid] as the kernel gives them (uid = gid = 2 ** 32 - 1: no credentials). */
  peerCredentials(fd: number): [number, number, number];
  /** SO_PEERPIDFD: a new O_CLOEXEC pidfd. ENODATA when the socket has no peer. */
  peerPidFd(fd: number): number;
  /** close(2) each fd, ignoring errors (not fs.closeSync, which warns in worker threads). */
  closeFds(fds: readonly number[]): void;
  /** shutdown(SHUT_WR), errors ignored. */
  shutdownWrite(fd: number): void;
  /**
   * A uv_poll_t over a private duplicate of `fd` (fcntl EMFILE..., a
   * TypeError when `fd` is another Poller's private duplicate in any thread,
   * or uv_poll_init EEXIST when another handle of the loop watches `fd`,
   * with `fd` left to the caller); owns both. Each readable wakeup loops recvmsg
   * (MSG_DONTWAIT | MSG_CMSG_CLOEXEC, at most `chunkBytes` per call) until
   * EAGAIN or the batch is full, writes per chunk [length, fd count,
   * msg_flags] into `meta` and the fds into `fds` (held from then on), then
   * calls onRead once.
   * status: 0, 1 for end-of-file, or -errno.
   */
  Poller: new (
    fd: number,
    chunkBytes: number,
    scratchBytes: number,
    meta: Int32Array,
    fds: Int32Array,
    onRead: OnRead,
    onWrite: () => void,
  ) => NativePoller;
  readonly AF_UNIX: number;
  readonly SOCK_STREAM: number;
  readonly SOCK_SEQPACKET: number;
  readonly SOCK_DGRAM: number;
  readonly MSG_TRUNC: number;
  readonly MSG_CTRUNC: number;
  readonly SCM_MAX_FD: number;
}

export const native = loadNative({
  name: '@folk/scm-rights',
  target: 'scm_rights',
  requirePrebuild(key) {
    // A literal path per binary, inside `try`: see NativePackage.requirePrebuild.
    try {
      if (key === 'linux-x64-glibc') return require('../prebuilds/linux-x64/@folk+scm-rights.glibc.node');
      if (key === 'linux-x64-musl') return require('../prebuilds/linux-x64/@folk+scm-rights.musl.node');
      if (key === 'linux-arm64-glibc') return require('../prebuilds/linux-arm64/@folk+scm-rights.glibc.node');
      if (key === 'linux-arm64-musl') return require('../prebuilds/linux-arm64/@folk+scm-rights.musl.node');
    } finally {
      // Errors go to loadNative.
    }
    return undefined;
  },
}) as NativeBinding;
