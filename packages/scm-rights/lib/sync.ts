// The synchronous calls: one sendmsg or recvmsg each, and the peer's credentials.
import { kMaxLength } from 'node:buffer';
import { constants as osConstants } from 'node:os';
import { invalidArgType, optionsObject, validateFd, validateInteger, withCode } from './internal/args.js';
import { checkedFds, validateData } from './checks.js';
import { codeError, type SystemError } from './errors.js';
import { native } from './native.js';

/** The most fds one message may carry (the kernel's SCM_MAX_FD). */
export const SCM_MAX_FD: number = native.SCM_MAX_FD;

/** What a receive hands back: the bytes, and the fds that came with them (now owned by the receiver). */
export interface FdMessage {
  data: Buffer;
  fds: number[];
}

export interface RecvFdsOptions {
  /**
   * The largest message (or stream chunk) to read, in bytes: an integer from
   * 1 to 2147483647. Default 65536. A buffer this large is allocated for the
   * call, so keep it near the largest message you expect.
   */
  maxBytes?: number;
  /** The most fds to accept; a message carrying more is an error. Default 253 (SCM_MAX_FD). */
  maxFds?: number;
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Close fds this package received and is dropping (errors ignored: nothing sensible to do if one is gone). */
function closeAll(fds: readonly number[]): void {
  if (fds.length > 0) native.closeFds(fds);
}

/**
 * close(2) each fd in `fds`, ignoring errors (an fd already closed is not
 * one to report). For fds this package handed you, such as those a message
 * brought: fs.closeSync would do the same, but in a worker thread Node warns
 * ("closed but not opened in unmanaged mode") about every fd its fs module
 * did not open itself. As with fs.closeSync, pass only fds that are yours.
 *
 * @throws TypeError/RangeError (`ERR_INVALID_ARG_TYPE`, `ERR_OUT_OF_RANGE`)
 * unless `fds` is an array of fd numbers; nothing is closed then.
 */
export function closeFds(fds: readonly number[]): void {
  if (!Array.isArray(fds)) throw invalidArgType('fds', 'an array of fd numbers', fds);
  const list = new Array<number>(fds.length);
  for (let i = 0; i < fds.length; i++) list[i] = validateFd(fds[i], `fds[${i}]`);
  closeAll(list);
}

// The largest recvFds buffer: what one recvmsg can report (an int), and a Buffer can hold.
const MAX_RECV_BYTES = Math.min(0x7fffffff, kMaxLength);

/**
 * Send `data` with `fds` attached, in one sendmsg(2). Returns the bytes sent.
 *
 * The receiver gets its own copies of the fds; yours stay open. On a
 * blocking socket this blocks until there is room; on a full non-blocking
 * one it throws with `code: 'EAGAIN'` and nothing (fds included) is sent. On
 * a stream socket a short write may send fewer bytes than given; the fds go
 * with the first byte.
 *
 * @throws RangeError `ERR_OUT_OF_RANGE` for more than 253 fds, before any syscall.
 */
export function sendFds(socketFd: number, data: ArrayBufferView, fds: number[]): number {
  validateFd(socketFd, 'socketFd');
  validateData(data, 'data');
  const list = checkedFds(fds);
  if (data.byteLength === 0 && list.length > 0 && native.socketInfo(socketFd)[1] === native.SOCK_STREAM) {
    // Linux sends nothing for zero bytes on a stream socket, and the fds
    // would vanish without an error.
    throw withCode(
      new RangeError('The "data" argument must not be empty when sending fds over a stream socket'),
      'ERR_INVALID_ARG_VALUE',
    );
  }
  return native.sendFds(socketFd, data, list);
}

/**
 * Receive one message with recvmsg(2), with MSG_CMSG_CLOEXEC so every fd
 * that arrives is close-on-exec. The fds returned are yours to close.
 *
 * An empty `data` with no fds means end of file (on a seqpacket socket it
 * may also be an empty message). Blocks on a blocking socket; throws EAGAIN
 * on an empty non-blocking one.
 *
 * @throws `ERR_FDS_TRUNCATED` if the message carried more than `maxFds` fds,
 * or the process ran out of fd slots (MSG_CTRUNC): every fd that arrived is
 * closed first (the kernel drops any it could not install), and the
 * message's bytes are consumed.
 * @throws `ERR_MESSAGE_TRUNCATED` if a message on a seqpacket or datagram
 * socket was longer than `maxBytes` (MSG_TRUNC): its fds are closed.
 */
export function recvFds(socketFd: number, options?: RecvFdsOptions): FdMessage {
  validateFd(socketFd, 'socketFd');
  const opts = optionsObject(options);
  const maxBytes = validateInteger(opts['maxBytes'] ?? 65536, 'options.maxBytes', 1, MAX_RECV_BYTES);
  const maxFds = validateInteger(opts['maxFds'] ?? native.SCM_MAX_FD, 'options.maxFds', 0, native.SCM_MAX_FD);
  let received: [Buffer, number[], number];
  try {
    received = native.recvFds(socketFd, maxBytes, maxFds);
  } catch (err) {
    const e = err as SystemError;
    if (e.code === 'ENOMEM' && e.syscall === 'malloc') {
      e.message += `: no memory for a ${maxBytes}-byte receive buffer (options.maxBytes); nothing was read`;
    }
    throw e;
  }
  const [data, fds, flags] = received;
  if (flags & native.MSG_CTRUNC) {
    closeAll(fds);
    // There was room for more than maxFds, so fewer arriving means the
    // kernel could not install them: the process is out of fd slots
    // (EMFILE), not over maxFds.
    const why =
      fds.length < maxFds
        ? `the process ran out of fds (EMFILE) while receiving a message's fds (MSG_CTRUNC)`
        : `the message carried more fds than maxFds (${maxFds}) allows (MSG_CTRUNC)`;
    throw Object.assign(
      codeError('ERR_FDS_TRUNCATED', `recvmsg: ${why}; every fd that arrived was closed, and the message's bytes consumed`),
      { syscall: 'recvmsg' },
    );
  }
  if (flags & native.MSG_TRUNC) {
    closeAll(fds);
    throw Object.assign(
      codeError(
        'ERR_MESSAGE_TRUNCATED',
        `recvmsg: the message was longer than maxBytes (${maxBytes}) and was cut short (MSG_TRUNC); ` +
          `its ${fds.length} fds were closed`,
      ),
      { syscall: 'recvmsg' },
    );
  }
  return { data, fds };
}

// The kernel's uid and gid for "no credentials": (uid_t)-1, which no user has.
const NO_ID = 0xffffffff;

/**
 * The error for a socket with no peer process to name. The kernel does not
 * fail there: SO_PEERCRED gives pid 0 and uid = gid = -1, SO_PEERPIDFD gives
 * ENODATA, and a listening AF_UNIX socket reports its own process (kept for
 * the connections it accepts). So this says what the socket is instead.
 */
function noPeer(socketFd: number, option: string): SystemError {
  const [family, type, listening] = native.socketInfo(socketFd);
  let why: string;
  if (family !== native.AF_UNIX) {
    why = `is not an AF_UNIX socket (address family ${family}); only AF_UNIX sockets know their peer process`;
  } else if (listening) why = 'is a listening socket; the connections it accepts have peers';
  else if (type === native.SOCK_DGRAM) {
    why = 'is an AF_UNIX datagram socket that is unconnected or was connected with connect(2), which records no peer (socketpair(2) does)';
  } else why = 'is not connected';
  return Object.assign(new Error(`ENOTCONN: socket has no peer process, getsockopt ${option}: fd ${socketFd} ${why}`), {
    errno: -osConstants.errno.ENOTCONN,
    code: 'ENOTCONN',
    syscall: 'getsockopt',
  });
}

/**
 * The pid, uid and gid of the process at the other end (SO_PEERCRED), as of
 * connect(2) or socketpair(2). The pid is 0 if that process is outside this
 * process's pid namespace.
 *
 * @throws `code: 'ENOTCONN'` if the socket has no peer process: unconnected,
 * listening, not AF_UNIX, or an AF_UNIX datagram socket that connect(2)ed.
 */
export function peerCredentials(socketFd: number): PeerCredentials {
  validateFd(socketFd, 'socketFd');
  const [pid, uid, gid] = native.peerCredentials(socketFd);
  if ((uid === NO_ID && gid === NO_ID) || native.socketInfo(socketFd)[2]) throw noPeer(socketFd, 'SO_PEERCRED');
  return { pid, uid, gid };
}

/**
 * A pidfd for the peer process (SO_PEERPIDFD, Linux 6.5+): race-free, unlike
 * the pid of peerCredentials. Close-on-exec; yours to close.
 *
 * @throws `code: 'ENOTCONN'` if the socket has no peer process, as peerCredentials.
 * @throws `code: 'ENOPROTOOPT'` on kernels before 6.5, with a message saying so.
 */
export function peerPidFd(socketFd: number): number {
  validateFd(socketFd, 'socketFd');
  // Asked first: a listening socket would get a pidfd for this very process.
  if (native.socketInfo(socketFd)[2]) throw noPeer(socketFd, 'SO_PEERPIDFD');
  try {
    return native.peerPidFd(socketFd);
  } catch (err) {
    const e = err as SystemError;
    if (e.code === 'ENODATA') throw noPeer(socketFd, 'SO_PEERPIDFD');
    if (e.code === 'ENOPROTOOPT') e.message = `${e.message}: SO_PEERPIDFD needs Linux 6.5 or later`;
    throw e;
  }
}
