// What an FdSocket and its send() accept: the option types, and the checks
// made before anything is built from them.
import { kMaxLength } from 'node:buffer';
import { invalidArgType, invalidArgValue, optionsObject, validateAbortSignal, validateInteger } from './internal/args.js';
import { native } from './native.js';

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
  /**
   * Fds read ahead of the consumer (carried by messages received and not
   * yet taken) before reading pauses; the kernel buffer then holds the
   * rest, and a fast sender meets a full socket. Each sits in this process's
   * fd table until consumed, so this, not the message count, is what keeps
   * a peer from filling the table (EMFILE). One read may take it over by
   * one message's fds (at most 253). Default 256.
   */
  fdHighWaterMark?: number;
}

export interface SendOptions {
  /**
   * Cancels the send while it waits in the queue: it rejects with an
   * `AbortError` and nothing of it is written. Once part of a message is in
   * the kernel the rest must follow, so from then on an abort is ignored.
   */
  signal?: AbortSignal;
}

/** Whether `fd` is a stream socket, once it is known to be one an FdSocket can wrap. */
export function isStreamSocket(fd: number): boolean {
  const [family, type, listening] = native.socketInfo(fd);
  if (family !== native.AF_UNIX || (type !== native.SOCK_SEQPACKET && type !== native.SOCK_STREAM)) {
    throw invalidArgValue('fd', 'must be an AF_UNIX SOCK_SEQPACKET or SOCK_STREAM socket');
  }
  if (listening) {
    // Its reads would fail with a bare EINVAL once a connection comes, its sends with ENOTCONN.
    throw invalidArgValue('fd', `is a listening socket (fd ${fd}); an FdSocket needs a connected one: accept a connection and wrap that`);
  }
  return type === native.SOCK_STREAM;
}

// Fds read ahead by default: enough to keep a consumer of one-fd messages
// busy in batches, far below any RLIMIT_NOFILE Node runs under (1024 at the
// least), so a peer cannot fill the fd table, however many fds it sends.
const DEFAULT_FD_HIGH_WATER_MARK = 256;

export function socketOptions(opts: Record<string, unknown>, stream: boolean): Required<FdSocketOptions> {
  // A stream frame is assembled in one Buffer, so no larger than Node allows.
  const most = stream ? Math.min(0xffffffff, kMaxLength) : 64 * 1024 * 1024;
  const maxMessageBytes = validateInteger(opts['maxMessageBytes'] ?? (stream ? 64 * 1024 * 1024 : 256 * 1024), 'options.maxMessageBytes', 1, most);
  const allowHalfOpen = opts['allowHalfOpen'] ?? false;
  if (typeof allowHalfOpen !== 'boolean') throw invalidArgType('options.allowHalfOpen', 'of type boolean', allowHalfOpen);
  const highWaterMark = validateInteger(opts['highWaterMark'] ?? 1024, 'options.highWaterMark', 1, 0x7fffffff);
  const fdHighWaterMark = validateInteger(
    opts['fdHighWaterMark'] ?? DEFAULT_FD_HIGH_WATER_MARK,
    'options.fdHighWaterMark',
    1,
    0x7fffffff,
  );
  return { maxMessageBytes, allowHalfOpen, highWaterMark, fdHighWaterMark };
}

/** The `signal` of send()'s options, if any. */
export function sendSignal(options: unknown): AbortSignal | undefined {
  return validateAbortSignal(optionsObject(options)['signal'], 'options.signal');
}
