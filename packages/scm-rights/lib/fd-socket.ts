// FdSocket: an AF_UNIX socket that carries fds with its messages, on the
// event loop. Delivery to consumers ('message' listeners or an async
// iterator) and the socket's life live here; the receiving side is
// ./receiver.ts (the stream framing ./frame.ts), the sending side ./outbox.ts.
import { EventEmitter } from 'node:events';
import { abortError, invalidArgValue, optionsObject, outOfRange, validateFd, type CodedError } from './internal/args.js';
import { Queue } from './internal/queue.js';
import { checkedFds, validateData } from './checks.js';
import { codeError, socketClosed } from './errors.js';
import { native, type NativePoller } from './native.js';
import { isStreamSocket, sendSignal, socketOptions, type FdSocketOptions, type SendOptions } from './options.js';
import { Outbox } from './outbox.js';
import { FDS, META, Receiver, type Terminal } from './receiver.js';
import type { FdMessage } from './sync.js';

interface Waiter {
  resolve: (r: IteratorResult<FdMessage>) => void;
  reject: (err: Error) => void;
}

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
  #outbox: Outbox;
  #receiver: Receiver;
  #allowHalfOpen: boolean;
  #highWaterMark: number;
  #fdHighWaterMark: number;
  /** The fds the native reads may bring in, as last told (see #update). */
  #fdBudget = 0;

  #closed = false;
  #paused = false;
  #reading = false;
  #writing = false;
  #delivering = false;
  #iterating = false;
  // Calls to the iterator's next() waiting for a message, oldest first: a
  // caller may call next() again before the last one settled.
  #waiters = new Queue<Waiter>();
  #iterError: Error | null = null;

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
    validateFd(fd, 'fd');
    if (OWNED.has(fd)) throw invalidArgValue('fd', `is invalid: fd ${fd} is already owned by an open FdSocket`);
    const given = optionsObject(options);
    const stream = isStreamSocket(fd);
    const opts = socketOptions(given, stream);
    this.type = stream ? 'stream' : 'seqpacket';
    this.#allowHalfOpen = opts.allowHalfOpen;
    this.#highWaterMark = opts.highWaterMark;
    this.#fdHighWaterMark = opts.fdHighWaterMark;
    // A datagram must land whole, so each seqpacket read gets room for the
    // largest; stream reads take what is there.
    const chunk = stream ? STREAM_CHUNK : opts.maxMessageBytes;
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
    this.#outbox = new Outbox(this.#poller, this.#poller.io(), stream, () => this.#update());
    this.#receiver = new Receiver(stream, opts.maxMessageBytes, (fds) => this.#drop(fds));
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
    return this.#outbox.length;
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
    validateData(data, 'data');
    const list = checkedFds(fds);
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      signal = sendSignal(options);
      if (signal?.aborted) return Promise.reject(abortError(signal));
    }
    if (this.#closed) return Promise.reject(socketClosed());
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (this.type === 'stream' && bytes.byteLength > 0xffffffff) {
      throw outOfRange('data.byteLength', '<= 4294967295', bytes.byteLength);
    }
    const sent = this.#outbox.send(bytes, list, signal);
    this.#update();
    return sent;
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
    this.#receiver.onBatch(chunks, data, status);
    this.#deliver();
  };

  #next(): Promise<IteratorResult<FdMessage>> {
    const m = this.#waiters.length === 0 ? this.#receiver.shift() : undefined;
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
    if (this.#closed || this.#receiver.terminal?.finished) {
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
          if (this.#waiters.length === 0 || this.#receiver.queuedMessages === 0) break;
          const w = this.#waiters.shift()!;
          w.resolve({ value: this.#handOver(this.#receiver.shift()!), done: false });
        } else {
          if (this.#paused || this.#receiver.queuedMessages === 0 || this.listenerCount('message') === 0) break;
          this.emit('message', this.#handOver(this.#receiver.shift()!));
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
    const terminal = this.#receiver.terminal;
    if (this.#receiver.queuedMessages === 0 && terminal !== null && !terminal.finished) this.#finish(terminal);
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

  // --- state --------------------------------------------------------------

  #onWritable = (): void => {
    this.#outbox.flush();
    this.#update();
  };

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

  /**
   * Point the poll handle at what is wanted now: reading while someone
   * consumes and the inbox has room, in messages and in fds; writing while
   * sends wait. Messages read ahead keep their fds open in this process, so
   * the fds they may bring in are capped too: past that the peer meets a
   * full socket buffer (backpressure) instead of filling our fd table.
   */
  #update(): void {
    if (this.#closed) return;
    const consumer = this.#iterating || (!this.#paused && this.listenerCount('message') > 0);
    const fdRoom = this.#fdHighWaterMark - this.#receiver.queuedFds;
    const reading =
      consumer && this.#receiver.terminal === null && this.#receiver.queuedMessages < this.#highWaterMark && fdRoom > 0;
    const writing = this.#outbox.length > 0;
    // The budget matters only while reading; telling it costs a native call.
    const budget = reading ? fdRoom : this.#fdBudget;
    if (reading === this.#reading && writing === this.#writing && budget === this.#fdBudget) return;
    this.#reading = reading;
    this.#writing = writing;
    this.#fdBudget = budget;
    this.#poller.setEvents(reading, writing, budget);
  }

  #destroy(error: Error | null): void {
    if (this.#closed) return;
    this.#closed = true;
    // Closes, with the socket, every fd still held for us: those of queued
    // sends, of the inbox and of a frame in progress.
    this.#poller.close();
    OWNED.delete(this.fd);
    this.#outbox.close();
    this.#receiver.close();
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
