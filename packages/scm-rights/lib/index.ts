import { kMaxLength } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import { getSystemErrorMap, types } from 'node:util';
import { native, type NativePoller } from './native.js';

const { isDataView } = types;

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

// ---------------------------------------------------------------------------
// Errors shaped like Node's.

type CodedError = Error & { code: string; errno?: number; syscall?: string };

function withCode<E extends Error>(err: E, code: string): E & { code: string } {
  return Object.assign(err, { code });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return `type number (${value})`;
  return `type ${typeof value}`;
}

function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  return withCode(
    new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_TYPE',
  );
}

function outOfRange(name: string, range: string, actual: unknown): RangeError {
  return withCode(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${String(actual)}`),
    'ERR_OUT_OF_RANGE',
  );
}

function codeError(code: string, message: string): CodedError {
  return withCode(new Error(message), code);
}

/** A Node-style system error from a negative errno, as libuv reports them. */
function errnoError(errno: number, syscall: string): CodedError {
  const [code, description] = getSystemErrorMap().get(errno) ?? ['UNKNOWN', 'unknown error'];
  return Object.assign(new Error(`${code}: ${description}, ${syscall}`), { errno, code, syscall });
}

/** As Node's AbortError: name 'AbortError', code 'ABORT_ERR', the signal's reason as cause. */
function abortError(signal: AbortSignal): CodedError {
  const err = codeError('ABORT_ERR', 'The operation was aborted');
  err.name = 'AbortError';
  (err as Error & { cause?: unknown }).cause = signal.reason;
  return err;
}

function socketClosed(): CodedError {
  return codeError('ERR_SOCKET_CLOSED', 'The FdSocket was closed before the message was sent');
}

// ---------------------------------------------------------------------------
// Argument validation: each check names the argument it rejects.

function validateFd(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw outOfRange(name, 'an integer >= 0 and <= 2147483647', value);
  }
}

function validateData(name: string, value: unknown): asserts value is ArrayBufferView {
  if (!ArrayBuffer.isView(value)) throw invalidArgType(name, 'an instance of Buffer, TypedArray, or DataView', value);
  // A typed array over a detached (transferred) buffer reads as empty; a
  // DataView throws a bare TypeError on every read of its size instead.
  if (isDataView(value)) {
    try {
      void value.byteLength;
    } catch {
      throw withCode(
        new TypeError(`The "${name}" argument is a view of a detached ArrayBuffer (it was transferred); it has no bytes to send`),
        'ERR_INVALID_ARG_VALUE',
      );
    }
  }
}

const NO_FDS: readonly number[] = Object.freeze([]);

/**
 * The fds as checked: a copy, each element read once, so what reaches the
 * binding is what was validated (an array whose getters or length change
 * between reads would otherwise hand it a value nobody checked).
 */
function checkedFds(value: unknown): number[] {
  if (!Array.isArray(value)) throw invalidArgType('fds', 'an array of fd numbers', value);
  const length = value.length;
  // Checked before the syscall: the kernel would say only EINVAL.
  if (length > native.SCM_MAX_FD) {
    throw outOfRange('fds', `at most ${native.SCM_MAX_FD} fds per message (SCM_MAX_FD)`, `${length} fds`);
  }
  if (length === 0) return NO_FDS as number[];
  const fds = new Array<number>(length);
  for (let i = 0; i < length; i++) {
    const fd: unknown = value[i];
    // The name is only built for an error: this runs on every send.
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) validateFd(`fds[${i}]`, fd);
    fds[i] = fd as number;
  }
  return fds;
}

function validateInt(name: string, value: unknown, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(name, `an integer >= ${min} and <= ${max}`, value);
  }
}

function optionsObject(name: string, options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType(name, 'of type object', options);
  }
  return options as Record<string, unknown>;
}

/** Close fds this package received or dup'd and is dropping (errors ignored: nothing sensible to do if one is gone). */
function closeAll(fds: readonly number[] | null | undefined): void {
  if (fds && fds.length > 0) native.closeFds(fds);
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
  for (let i = 0; i < fds.length; i++) {
    const fd: unknown = fds[i];
    validateFd(`fds[${i}]`, fd);
    list[i] = fd;
  }
  closeAll(list);
}

// ---------------------------------------------------------------------------
// The synchronous calls.

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
  validateFd('socketFd', socketFd);
  validateData('data', data);
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
  validateFd('socketFd', socketFd);
  const opts = optionsObject('options', options);
  const maxBytes = opts.maxBytes ?? 65536;
  const maxFds = opts.maxFds ?? native.SCM_MAX_FD;
  validateInt('options.maxBytes', maxBytes, 1, MAX_RECV_BYTES);
  validateInt('options.maxFds', maxFds, 0, native.SCM_MAX_FD);
  let received: [Buffer, number[], number];
  try {
    received = native.recvFds(socketFd, maxBytes, maxFds);
  } catch (err) {
    const e = err as CodedError;
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
function noPeer(socketFd: number, option: string): CodedError {
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
  validateFd('socketFd', socketFd);
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
  validateFd('socketFd', socketFd);
  // Asked first: a listening socket would get a pidfd for this very process.
  if (native.socketInfo(socketFd)[2]) throw noPeer(socketFd, 'SO_PEERPIDFD');
  try {
    return native.peerPidFd(socketFd);
  } catch (err) {
    const e = err as CodedError;
    if (e.code === 'ENODATA') throw noPeer(socketFd, 'SO_PEERPIDFD');
    if (e.code === 'ENOPROTOOPT') e.message = `${e.message}: SO_PEERPIDFD needs Linux 6.5 or later`;
    throw e;
  }
}

// ---------------------------------------------------------------------------
// FdSocket

export interface FdSocketOptions {
  /**
   * The largest message accepted, in bytes. On a seqpacket socket a longer
   * datagram fails the socket with `ERR_MESSAGE_TOO_LARGE`; on a stream
   * socket so does a frame header announcing more. Default 256 KiB for
   * seqpacket (above the kernel's default socket buffer), 64 MiB for stream.
   */
  maxMessageBytes?: number;
  /** Keep the socket open for sending after the peer's end of file. Default `false`: close it. */
  allowHalfOpen?: boolean;
  /** Messages read ahead of the consumer before reading pauses (the kernel buffer then holds the rest). Default 1024. */
  highWaterMark?: number;
}

export interface SendOptions {
  /**
   * Cancels the send while it waits in the queue: it rejects with an
   * `AbortError` and nothing of it is written. Once part of a message is in
   * the kernel the rest must follow, so from then on an abort is ignored.
   */
  signal?: AbortSignal;
}

/** A small FIFO that does not shift arrays. */
class Queue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
    return item;
  }
  /** Take out one item (an aborted send); rare, so a linear search is fine. */
  remove(item: T): boolean {
    const i = this.#items.indexOf(item, this.#head);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
    return true;
  }
  drain(): T[] {
    const rest = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return rest;
  }
}

interface PendingSend {
  /** What is left to write, exactly as it goes on the wire (frame header included). */
  bytes: Buffer;
  /** Some bytes are out: the rest must follow, so it can no longer be aborted. */
  started: boolean;
  /** Our own dups, sent with the first byte and closed once sent; null after. */
  fds: number[] | null;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A stream-socket frame being assembled. */
interface Frame {
  len: number; // payload bytes; -1 until the header is complete
  nfds: number; // fds the header announces
  hdr: Buffer | null;
  hdrFill: number;
  buf: Buffer | null;
  filled: number;
  data: Buffer | null;
  fds: number[] | null;
}

interface Terminal {
  error: Error | null; // null: end of file
  finished: boolean;
}

/** Bytes in a stream frame header: payload length (u32 LE), then fd count (u32 LE). */
export const FRAME_HEADER_BYTES = 8;

const RESOLVED: Promise<void> = Promise.resolve();
const BATCH_CHUNKS = 256;
// Shared by every FdSocket of this thread: the native side fills them just
// before calling onRead, which copies them out before anything else runs.
const META = new Int32Array(BATCH_CHUNKS * 3);
const FDS = new Int32Array(4 * native.SCM_MAX_FD);
const STREAM_CHUNK = 64 * 1024;
// Fds owned by an open FdSocket of this thread. Two poll handles on one fd
// make libuv abort the process once one of them closes it, so a second
// FdSocket on the same fd is refused up front.
const OWNED = new Set<number>();

/**
 * An AF_UNIX seqpacket or stream socket that carries fds with its messages,
 * driven by the event loop (a libuv poll handle: no thread is parked).
 *
 * The FdSocket owns the fd from construction: `close()` closes it. Messages
 * arrive as `'message'` events or through `for await`, each `{ data, fds }`;
 * the fds are then the consumer's to close. Fds received but not yet handed
 * over when the socket closes are closed with it.
 *
 * On a seqpacket socket one message is one datagram, so any peer that sends
 * datagrams (CPython's `socket.send_fds`, C) interoperates. On a stream
 * socket each message is a frame: an 8-byte header (payload length u32 LE,
 * fd count u32 LE) then the payload, written with one sendmsg whose fds ride
 * on the header's first byte; see the README for why that keeps fds with
 * their message however the bytes are split.
 *
 * Events: `'message'` ({ data, fds }), `'end'` (the peer closed; after every
 * message before it), `'error'`, `'close'`.
 */
export class FdSocket extends EventEmitter {
  /** The socket fd, owned by this object until close(). */
  readonly fd: number;
  /** 'seqpacket' (one datagram per message) or 'stream' (framed). */
  readonly type: 'seqpacket' | 'stream';

  #poller: NativePoller;
  /** The poller's private duplicate of `fd`, which every read and write uses (see the constructor). */
  #io: number;
  #stream: boolean;
  #maxMessageBytes: number;
  #allowHalfOpen: boolean;
  #highWaterMark: number;

  #closed = false;
  #paused = false;
  #reading = false;
  #writing = false;
  #delivering = false;
  #iterating = false;
  // Calls to the iterator's next() waiting for a message, oldest first: a
  // caller may call next() again before the last one settled.
  #waiters = new Queue<{ resolve: (r: IteratorResult<FdMessage>) => void; reject: (err: Error) => void }>();
  #iterError: Error | null = null;

  #inbox = new Queue<FdMessage>();
  #sends = new Queue<PendingSend>();
  #terminal: Terminal | null = null;
  #frame: Frame | null = null;
  #done: Frame[] = [];

  /**
   * Wrap `fd`, an AF_UNIX SOCK_SEQPACKET or SOCK_STREAM socket. The socket's
   * file description is made non-blocking (libuv requires it). If this
   * throws, the fd is still yours.
   *
   * The socket is polled, read and written through a private close-on-exec
   * duplicate of `fd` (so an FdSocket holds two fds): libuv aborts the
   * process when an fd it polls is closed under it, and `fd` is public.
   * Closed by hand, `fd` takes nothing with it; close() closes it only while
   * it still refers to this socket.
   */
  constructor(fd: number, options?: FdSocketOptions) {
    super();
    validateFd('fd', fd);
    if (OWNED.has(fd)) {
      throw withCode(
        new TypeError(`The "fd" argument is invalid: fd ${fd} is already owned by an open FdSocket`),
        'ERR_INVALID_ARG_VALUE',
      );
    }
    const opts = optionsObject('options', options);
    const [family, type, listening] = native.socketInfo(fd);
    if (family !== native.AF_UNIX || (type !== native.SOCK_SEQPACKET && type !== native.SOCK_STREAM)) {
      throw withCode(
        new TypeError('The "fd" argument must be an AF_UNIX SOCK_SEQPACKET or SOCK_STREAM socket'),
        'ERR_INVALID_ARG_VALUE',
      );
    }
    if (listening) {
      // Its reads would fail with a bare EINVAL once a connection comes, its sends with ENOTCONN.
      throw withCode(
        new TypeError(`The "fd" argument is a listening socket (fd ${fd}); an FdSocket needs a connected one: accept a connection and wrap that`),
        'ERR_INVALID_ARG_VALUE',
      );
    }
    this.#stream = type === native.SOCK_STREAM;
    this.type = this.#stream ? 'stream' : 'seqpacket';
    const maxMessageBytes = opts.maxMessageBytes ?? (this.#stream ? 64 * 1024 * 1024 : 256 * 1024);
    // A stream frame is assembled in one Buffer, so no larger than Node allows.
    const most = this.#stream ? Math.min(0xffffffff, kMaxLength) : 64 * 1024 * 1024;
    validateInt('options.maxMessageBytes', maxMessageBytes, 1, most);
    this.#maxMessageBytes = maxMessageBytes;
    const allowHalfOpen = opts.allowHalfOpen ?? false;
    if (typeof allowHalfOpen !== 'boolean') throw invalidArgType('options.allowHalfOpen', 'of type boolean', allowHalfOpen);
    this.#allowHalfOpen = allowHalfOpen;
    const highWaterMark = opts.highWaterMark ?? 1024;
    validateInt('options.highWaterMark', highWaterMark, 1, 0x7fffffff);
    this.#highWaterMark = highWaterMark;

    // A datagram must land whole, so each seqpacket read gets room for the
    // largest; stream reads take what is there.
    const chunk = this.#stream ? STREAM_CHUNK : maxMessageBytes;
    try {
      this.#poller = new native.Poller(fd, chunk, chunk + 4 * STREAM_CHUNK, META, FDS, this.#onRead, this.#onWritable);
    } catch (err) {
      const e = err as CodedError;
      // libuv's own words ("file already exists") do not say what is wrong.
      if (e.code === 'EEXIST') {
        e.message += `: fd ${fd} is already watched by another handle on this event loop (a net.Socket?)`;
      }
      throw e;
    }
    this.#io = this.#poller.io();
    this.fd = fd;
    OWNED.add(fd);
  }

  // Reading starts when someone listens for 'message', as with net.Socket's
  // 'data' (once() and prependOnceListener() go through these). Overrides
  // rather than a 'newListener' handler, which removeAllListeners() would drop.
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    super.on(event, listener);
    if (event === 'message') queueMicrotask(() => this.#deliver());
    return this;
  }

  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return this.on(event, listener);
  }

  override prependListener(event: string | symbol, listener: (...args: any[]) => void): this {
    super.prependListener(event, listener);
    if (event === 'message') queueMicrotask(() => this.#deliver());
    return this;
  }

  /** True once close() ran (or the socket ended or failed and closed itself). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends queued behind a full socket buffer, not yet written. */
  get pendingSends(): number {
    return this.#sends.length;
  }

  /**
   * Send one message with `fds` attached. Resolves once the kernel has the
   * whole message; waits (on the event loop) while the socket buffer is
   * full, which is the backpressure: await it before sending more.
   *
   * `data` and `fds` are captured at the call: you may reuse the buffer and
   * close your fds as soon as send() returns. The peer gets its own fds.
   * Rejects with `ERR_SOCKET_CLOSED` if the socket closes first, or with the
   * sendmsg error (EPIPE when the peer is gone, EMSGSIZE for a datagram
   * larger than the socket buffer), or an `AbortError` (`options.signal`).
   * Bad arguments throw synchronously.
   */
  send(data: ArrayBufferView, fds: number[] = [], options?: SendOptions): Promise<void> {
    validateData('data', data);
    const list = checkedFds(fds);
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      signal = optionsObject('options', options).signal as AbortSignal | undefined;
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw invalidArgType('options.signal', 'an instance of AbortSignal', signal);
      }
      if (signal?.aborted) return Promise.reject(abortError(signal));
    }
    if (this.#closed) return Promise.reject(socketClosed());
    const view = data;
    const bytes = view instanceof Uint8Array ? view : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    const len = bytes.byteLength;
    if (this.#stream && len > 0xffffffff) throw outOfRange('data.byteLength', '<= 4294967295', len);
    const total = this.#stream ? FRAME_HEADER_BYTES + len : len;
    let sent = -1;
    if (this.#sends.length === 0) {
      // The fast path: straight to the kernel, header built natively.
      try {
        sent = native.trySend(this.#io, bytes, list.length > 0 ? list : null, this.#stream);
      } catch (err) {
        return Promise.reject(err);
      }
      if (sent === total) return RESOLVED;
    }
    // Queue a copy of the bytes as they go on the wire. Once any byte went
    // out the fds went with it; otherwise keep our own dups of them.
    let owned: number[] | null = null;
    if (sent <= 0 && list.length > 0) {
      owned = [];
      try {
        for (const fd of list) owned.push(this.#poller.dup(fd));
      } catch (err) {
        this.#drop(owned);
        return Promise.reject(err);
      }
    }
    let wire: Buffer;
    if (this.#stream) {
      wire = Buffer.allocUnsafe(total);
      wire.writeUInt32LE(len, 0);
      wire.writeUInt32LE(list.length, 4);
      wire.set(bytes, FRAME_HEADER_BYTES);
    } else {
      wire = Buffer.from(bytes);
    }
    const entry: PendingSend = { bytes: wire, started: false, fds: owned, resolve: noop, reject: noop };
    if (sent > 0) advance(entry, sent);
    const promise = new Promise<void>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (signal !== undefined) {
      const s = signal;
      const onAbort = () => {
        // A message partly written must be finished, or the stream's framing breaks.
        if (entry.started || !this.#sends.remove(entry)) return;
        this.#drop(entry.fds);
        entry.fds = null;
        entry.reject(abortError(s));
        this.#update();
      };
      s.addEventListener('abort', onAbort, { once: true });
      const { resolve, reject } = entry;
      entry.resolve = () => {
        s.removeEventListener('abort', onAbort);
        resolve();
      };
      entry.reject = (err) => {
        s.removeEventListener('abort', onAbort);
        reject(err);
      };
    }
    this.#sends.push(entry);
    this.#update();
    return promise;
  }

  /** Stop reading: messages wait in the kernel's socket buffer (and backpressure the peer). */
  pause(): this {
    this.#paused = true;
    this.#update();
    return this;
  }

  /** Undo pause(). */
  resume(): this {
    this.#paused = false;
    queueMicrotask(() => this.#deliver());
    return this;
  }

  /** Keep the event loop alive while the socket waits (the default). */
  ref(): this {
    if (!this.#closed) this.#poller.ref();
    return this;
  }

  /** Let the process exit even though the socket still waits for messages or to send. */
  unref(): this {
    if (!this.#closed) this.#poller.unref();
    return this;
  }

  /**
   * Close the socket fd now. Queued sends reject with `ERR_SOCKET_CLOSED`;
   * fds received and not yet handed to a consumer are closed; `'close'`
   * follows on the next tick. Idempotent.
   */
  close(): void {
    this.#destroy(null);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Messages in order. Only one iterator at a time; while it is active,
   * messages go to it rather than to 'message' listeners. Leaving the loop
   * early (break, return, throw) closes the socket, as with Node streams.
   * Ends after the peer's end of file; throws the socket's error.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<FdMessage> {
    if (this.#iterating) throw codeError('ERR_INVALID_STATE', 'The FdSocket is already being iterated');
    this.#iterating = true;
    queueMicrotask(() => this.#deliver());
    const iterator: AsyncIterableIterator<FdMessage> = {
      next: () => this.#next(),
      return: () => {
        this.#iterating = false;
        this.close();
        return Promise.resolve({ done: true, value: undefined });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  // --- receiving ----------------------------------------------------------

  #onRead = (chunks: number, data: Buffer | undefined, status: number): void => {
    let offset = 0;
    let fdAt = 0;
    for (let i = 0; i < chunks; i++) {
      const len = META[3 * i]!;
      const nfds = META[3 * i + 1]!;
      const flags = META[3 * i + 2]!;
      const fds: number[] =
        nfds === 0 ? [] : nfds === 1 ? [FDS[fdAt]!] : Array.from(FDS.subarray(fdAt, fdAt + nfds));
      fdAt += nfds;
      const bytes = data === undefined ? Buffer.alloc(0) : data.subarray(offset, offset + len);
      offset += len;
      if (this.#terminal !== null) {
        this.#drop(fds); // nothing after a failure is delivered
      } else if (flags & native.MSG_CTRUNC) {
        this.#drop(fds);
        this.#fail(
          codeError('ERR_FDS_TRUNCATED', `recvmsg: fds of a message were dropped (MSG_CTRUNC; out of fds?)`),
        );
      } else if (this.#stream) {
        this.#feed(bytes, nfds > 0 ? fds : null);
      } else if (flags & native.MSG_TRUNC) {
        this.#drop(fds);
        this.#fail(
          codeError(
            'ERR_MESSAGE_TOO_LARGE',
            `recvmsg: a message was longer than maxMessageBytes (${this.#maxMessageBytes}); its fds were closed`,
          ),
        );
      } else {
        this.#inbox.push({ data: bytes, fds });
      }
    }
    if (status === 1 && this.#terminal === null) {
      const f = this.#frame;
      if (f !== null) {
        this.#frame = null;
        this.#drop(f.fds);
        this.#fail(
          codeError(
            'ERR_INCOMPLETE_MESSAGE',
            `The peer closed the stream in the middle of a message (${f.len < 0 ? 'in its header' : `${f.filled} of ${f.len} bytes`}); its fds were closed`,
          ),
        );
      } else {
        this.#terminal = { error: null, finished: false };
      }
    } else if (status < 0 && this.#terminal === null) {
      this.#fail(errnoError(status, 'recvmsg'));
    }
    this.#deliver();
  };

  /**
   * Stream framing. One read returns zero or more fd-less segments and at
   * most one segment with fds, last: Linux stops a stream read right after
   * the segment whose fds it took. That segment begins with the first byte of
   * the sendmsg that carried the fds, which (as send() writes) is the first
   * byte of a frame header. So the fds of a read belong to the last frame
   * that starts inside it, and the header's fd count lets us check that.
   */
  #feed(b: Buffer, fds: number[] | null): void {
    const done = this.#done;
    done.length = 0;
    let last: Frame | null = null;
    let pos = 0;
    while (pos < b.length) {
      let f = this.#frame;
      if (f === null) {
        f = { len: -1, nfds: 0, hdr: null, hdrFill: 0, buf: null, filled: 0, data: null, fds: null };
        this.#frame = f;
        last = f;
        if (b.length - pos >= FRAME_HEADER_BYTES) {
          f.len = b.readUInt32LE(pos);
          f.nfds = b.readUInt32LE(pos + 4);
          pos += FRAME_HEADER_BYTES;
          if (!this.#checkHeader(f, fds)) return;
        }
      }
      if (f.len < 0) {
        f.hdr ??= Buffer.allocUnsafe(FRAME_HEADER_BYTES);
        const n = Math.min(FRAME_HEADER_BYTES - f.hdrFill, b.length - pos);
        b.copy(f.hdr, f.hdrFill, pos, pos + n);
        f.hdrFill += n;
        pos += n;
        if (f.hdrFill < FRAME_HEADER_BYTES) break;
        f.len = f.hdr.readUInt32LE(0);
        f.nfds = f.hdr.readUInt32LE(4);
        if (!this.#checkHeader(f, fds)) return;
      }
      const need = f.len - f.filled;
      const avail = b.length - pos;
      if (f.buf === null && avail >= need) {
        f.data = b.subarray(pos, pos + need); // whole in this read: no copy
        pos += need;
      } else {
        if (f.buf === null) {
          try {
            f.buf = Buffer.allocUnsafe(f.len);
          } catch {
            this.#keepDone();
            this.#protocolError(fds, `no memory for a ${f.len}-byte message`, 'ERR_MESSAGE_TOO_LARGE');
            return;
          }
        }
        const n = Math.min(need, avail);
        b.copy(f.buf, f.filled, pos, pos + n);
        f.filled += n;
        pos += n;
        if (f.filled < f.len) break;
        f.data = f.buf;
      }
      done.push(f);
      this.#frame = null;
    }
    if (fds !== null) {
      if (last === null) {
        this.#protocolError(fds, 'fds arrived in the middle of a message');
        return;
      }
      last.fds = fds;
    }
    for (let i = 0; i < done.length; i++) {
      const f = done[i]!;
      if ((f.fds?.length ?? 0) !== f.nfds) {
        this.#protocolError(null, `a message announced ${f.nfds} fds and carried ${f.fds?.length ?? 0}`);
        return;
      }
      this.#inbox.push({ data: f.data!, fds: f.fds ?? [] });
      done[i] = undefined as unknown as Frame;
    }
    done.length = 0;
  }

  #checkHeader(f: Frame, fds: number[] | null): boolean {
    if (f.nfds > native.SCM_MAX_FD || f.len > this.#maxMessageBytes) this.#keepDone();
    if (f.nfds > native.SCM_MAX_FD) {
      this.#protocolError(fds, `a frame header announced ${f.nfds} fds (at most ${native.SCM_MAX_FD})`);
      return false;
    }
    if (f.len > this.#maxMessageBytes) {
      this.#protocolError(
        fds,
        `a frame header announced ${f.len} bytes, over maxMessageBytes (${this.#maxMessageBytes})`,
        'ERR_MESSAGE_TOO_LARGE',
      );
      return false;
    }
    return true;
  }

  /**
   * A frame of this read is refused: the complete frames before it in the
   * same read are still messages, delivered ahead of the error. They cannot
   * own fds (a read's fds belong to its last frame), so one announcing some
   * is broken too, and so is everything after it.
   */
  #keepDone(): void {
    const done = this.#done;
    for (let i = 0; i < done.length && done[i]!.nfds === 0; i++) this.#inbox.push({ data: done[i]!.data!, fds: [] });
    done.length = 0;
  }

  /** The stream no longer parses: close every fd of the read and of frames in progress. */
  #protocolError(fds: number[] | null, why: string, code = 'ERR_INVALID_FRAME'): void {
    this.#drop(fds);
    for (const f of this.#done) if (f) this.#drop(f.fds);
    this.#done.length = 0;
    if (this.#frame) this.#drop(this.#frame.fds);
    this.#frame = null;
    this.#fail(codeError(code, `FdSocket stream framing: ${why}`));
  }

  /** Deliver what came before, then fail: a terminal error waits behind the inbox. */
  #fail(error: Error): void {
    this.#terminal ??= { error, finished: false };
  }

  #next(): Promise<IteratorResult<FdMessage>> {
    const m = this.#waiters.length === 0 ? this.#inbox.shift() : undefined;
    if (m !== undefined) {
      this.#handOver(m);
      this.#update();
      return Promise.resolve({ value: m, done: false });
    }
    // An iterator that reported its end or error is no longer the active one.
    if (this.#iterError !== null) {
      const err = this.#iterError;
      this.#iterError = null;
      this.#iterating = false;
      return Promise.reject(err);
    }
    if (this.#closed || this.#terminal?.finished) {
      this.#iterating = false;
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#deliver();
    });
  }

  #deliver(): void {
    if (this.#delivering || this.#closed) return;
    this.#delivering = true;
    let threw = true;
    try {
      // A listener may close the socket; then nothing more is delivered.
      while (!this.#closed) {
        if (this.#iterating) {
          if (this.#waiters.length === 0 || this.#inbox.length === 0) break;
          const w = this.#waiters.shift()!;
          w.resolve({ value: this.#handOver(this.#inbox.shift()!), done: false });
        } else {
          if (this.#paused || this.#inbox.length === 0 || this.listenerCount('message') === 0) break;
          this.emit('message', this.#handOver(this.#inbox.shift()!));
        }
      }
      threw = false;
    } finally {
      this.#delivering = false;
      // A listener threw (it goes on to become an uncaught exception): the
      // rest are still ours; hand them over on the next tick.
      if (threw) process.nextTick(() => this.#deliver());
    }
    if (this.#closed) return;
    if (this.#inbox.length === 0 && this.#terminal !== null && !this.#terminal.finished) this.#finish(this.#terminal);
    this.#update();
  }

  #finish(t: Terminal): void {
    t.finished = true;
    if (t.error !== null) {
      this.#destroy(t.error);
      return;
    }
    for (const w of this.#waiters.drain()) w.resolve({ value: undefined, done: true });
    this.#iterating = false;
    // An 'end' listener that throws (an uncaught exception) must not leave
    // the socket open for good: nothing would ever close it.
    try {
      this.emit('end');
    } finally {
      if (!this.#allowHalfOpen) this.close();
    }
  }

  // --- sending ------------------------------------------------------------

  #onWritable = (): void => {
    const q = this.#sends;
    for (let p = q.peek(); p !== undefined; p = q.peek()) {
      const total = p.bytes.length;
      let n: number;
      try {
        n = native.trySend(this.#io, p.bytes, p.fds, false);
      } catch (err) {
        q.shift();
        this.#drop(p.fds);
        // Part of this message is in the kernel already, so whatever is
        // written next would be read as the rest of it. Shut the writing
        // side instead: the peer reads end of file mid-message (an FdSocket
        // reports ERR_INCOMPLETE_MESSAGE) and every later send fails (EPIPE).
        // Mostly the error here is EPIPE already; ENOMEM is the other case.
        if (p.started && this.#stream) native.shutdownWrite(this.#io);
        p.reject(err as Error);
        continue;
      }
      if (n < 0) break;
      if (n === total) {
        q.shift();
        this.#drop(p.fds);
        p.resolve();
        continue;
      }
      this.#drop(p.fds);
      advance(p, n);
      break;
    }
    this.#update();
  };

  // --- state --------------------------------------------------------------

  // Fds received, or dup'd for a queued send, are held by the poller until
  // they are handed over or dropped: if the thread ends first (no JavaScript
  // runs then), the poller's teardown closes them.

  /** The message's fds are the consumer's from here on. */
  #handOver(m: FdMessage): FdMessage {
    const n = m.fds.length;
    if (n > 0) this.#poller.release(n === 1 ? m.fds[0]! : m.fds);
    return m;
  }

  /** Close fds held for us (those no longer held are left alone). */
  #drop(fds: readonly number[] | null | undefined): void {
    if (fds && fds.length > 0) this.#poller.drop(fds);
  }

  /** Point the poll handle at what is wanted now: reading while someone consumes and the inbox has room; writing while sends wait. */
  #update(): void {
    if (this.#closed) return;
    const consumer = this.#iterating || (!this.#paused && this.listenerCount('message') > 0);
    const reading = consumer && this.#terminal === null && this.#inbox.length < this.#highWaterMark;
    const writing = this.#sends.length > 0;
    if (reading === this.#reading && writing === this.#writing) return;
    this.#reading = reading;
    this.#writing = writing;
    this.#poller.setEvents(reading, writing);
  }

  #destroy(error: Error | null): void {
    if (this.#closed) return;
    this.#closed = true;
    // Closes, with the socket, every fd still held for us: those of queued
    // sends, of the inbox and of a frame in progress.
    this.#poller.close();
    OWNED.delete(this.fd);
    for (const p of this.#sends.drain()) p.reject(socketClosed());
    this.#inbox.drain();
    this.#frame = null;
    const waiters = this.#waiters.drain();
    let reported = false;
    if (this.#iterating && error !== null) {
      // The oldest waiting next() gets the error; as with any iterator that
      // threw, the calls after it are done.
      const w = waiters.shift();
      if (w !== undefined) w.reject(error);
      else this.#iterError = error;
      reported = true;
    }
    for (const w of waiters) w.resolve({ value: undefined, done: true });
    if (this.#iterError === null) this.#iterating = false;
    process.nextTick(() => {
      if (error !== null && (!reported || this.listenerCount('error') > 0)) this.emit('error', error);
      this.emit('close');
    });
  }
}

/** Drop the first n bytes of a queued send (the kernel took them; with them any fds). */
function advance(p: PendingSend, n: number): void {
  p.started = true;
  p.fds = null;
  p.bytes = p.bytes.subarray(n);
}

function noop(): void {}

// Typed events.
export interface FdSocket {
  on(event: 'message', listener: (message: FdMessage) => void): this;
  on(event: 'end' | 'close', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'message', listener: (message: FdMessage) => void): this;
  once(event: 'end' | 'close', listener: () => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}
