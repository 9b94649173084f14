// An FdSocket's receiving side: what each readable wakeup's batch of recvmsg
// results becomes. Messages, in order, wait in `inbox` for a consumer; after
// them comes at most one terminal state (the peer's end of file or an error).
import { Queue } from './internal/queue.js';
import { codeError, errnoError } from './errors.js';
import { FrameDecoder } from './frame.js';
import { native } from './native.js';
import type { FdMessage } from './sync.js';

/** How receiving ended: error null for end of file; finished once reported to the consumer. */
export interface Terminal {
  error: Error | null;
  finished: boolean;
}

const BATCH_CHUNKS = 256;
// Where the binding puts a batch, shared by every FdSocket of this thread:
// the native side fills them just before calling onRead, which copies them
// out before anything else runs. Per chunk: [length, fd count, msg_flags].
export const META = new Int32Array(BATCH_CHUNKS * 3);
export const FDS = new Int32Array(4 * native.SCM_MAX_FD);

export class Receiver {
  /** Messages received, not yet handed to a consumer (their fds still held). */
  readonly #inbox = new Queue<FdMessage>();
  /** The fds of the messages in #inbox: they sit in this process's fd table until consumed. */
  #inboxFds = 0;
  #terminal: Terminal | null = null;
  readonly #maxMessageBytes: number;
  /** Stream sockets only. */
  readonly #decoder: FrameDecoder | null;
  readonly #drop: (fds: readonly number[] | null) => void;

  /** `drop` closes fds the socket holds for us, as they are refused. */
  constructor(stream: boolean, maxMessageBytes: number, drop: (fds: readonly number[] | null) => void) {
    this.#maxMessageBytes = maxMessageBytes;
    this.#drop = drop;
    this.#decoder = stream ? new FrameDecoder(maxMessageBytes, (data, fds) => this.#enqueue(data, fds), drop) : null;
  }

  /** Null while receiving goes on. */
  get terminal(): Terminal | null {
    return this.#terminal;
  }

  /** Messages received and not yet taken. */
  get queuedMessages(): number {
    return this.#inbox.length;
  }

  /** The fds those messages carry (a stream frame still in progress holds its own, not counted). */
  get queuedFds(): number {
    return this.#inboxFds;
  }

  /** The oldest message received, out of the inbox (its fds still held: hand them over); undefined if none. */
  shift(): FdMessage | undefined {
    const m = this.#inbox.shift();
    if (m !== undefined) this.#inboxFds -= m.fds.length;
    return m;
  }

  /** One batch (see META); status: 0, 1 for end of file, or -errno. */
  onBatch(chunks: number, data: Buffer | undefined, status: number): void {
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
      this.#received(bytes, fds, flags);
    }
    if (status === 1 && this.#terminal === null) {
      const incomplete = this.#decoder?.end() ?? null;
      if (incomplete !== null) this.#fail(incomplete);
      else this.#terminal = { error: null, finished: false };
    } else if (status < 0 && this.#terminal === null) {
      this.#fail(errnoError(status, 'recvmsg'));
    }
  }

  /** The socket closed: forget what is unread (the socket closed its fds). */
  close(): void {
    this.#inbox.drain();
    this.#inboxFds = 0;
    this.#decoder?.reset();
  }

  #enqueue(data: Buffer, fds: number[]): void {
    this.#inbox.push({ data, fds });
    this.#inboxFds += fds.length;
  }

  /** One recvmsg's worth: a datagram, or a piece of the stream for the decoder. */
  #received(bytes: Buffer, fds: number[], flags: number): void {
    if (this.#terminal !== null) {
      this.#drop(fds); // nothing after a failure is delivered
    } else if (flags & native.MSG_CTRUNC) {
      this.#drop(fds);
      this.#fail(codeError('ERR_FDS_TRUNCATED', `recvmsg: fds of a message were dropped (MSG_CTRUNC; out of fds?)`));
    } else if (this.#decoder !== null) {
      const broken = this.#decoder.feed(bytes, fds.length > 0 ? fds : null);
      if (broken !== null) this.#fail(broken);
    } else if (flags & native.MSG_TRUNC) {
      this.#drop(fds);
      this.#fail(
        codeError(
          'ERR_MESSAGE_TOO_LARGE',
          `recvmsg: a message was longer than maxMessageBytes (${this.#maxMessageBytes}); its fds were closed`,
        ),
      );
    } else {
      this.#enqueue(bytes, fds);
    }
  }

  /** Deliver what came before, then fail: a terminal error waits behind the inbox. */
  #fail(error: Error): void {
    this.#terminal ??= { error, finished: false };
  }
}
