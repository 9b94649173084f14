// TaskChannel: the supervisor's side of a worker's task socket (fd 3) as
// PROTOCOL.md frames it. Requests go out, answers come back in turn and
// settle them; whatever else comes back is a break of the protocol, which
// the WorkerHandle owning the channel deals with.

import { writeSync, writevSync } from 'node:fs';
import * as net from 'node:net';
import { WorkerError } from './errors.js';
import { invalidArgType, optionsObject } from './internal/args.js';
import { Queue } from './internal/queue.js';
import { FrameDecoder, FrameFlags, FrameType, decodeErrorBody, encodeFrame, encodeFrameParts } from './protocol.js';

/** Who waits for the answer to one request: settled once, synchronously, as the answer is read. */
export interface Pending {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
  /**
   * The pieces of the answer that come before its end (PART frames), in
   * order, for a request sent with `parts`. A promise returned stops the
   * reading of the task socket until it settles, and the request is settled
   * only after it has. A throw, or a promise that rejects, fails the
   * request (see PartCalls).
   */
  part?(chunk: Buffer): unknown;
}

/** What WorkerHandle.request() and WorkerPool.run() take besides the payload. */
export interface RequestOptions {
  /**
   * Take the answer in pieces as the worker sends them (its library's
   * `part()`), in order, before the request resolves with the last piece.
   * Without it, the worker's library joins the pieces into one answer (up
   * to maxFrame in all). Return a promise to stop reading the worker's
   * answers until it settles: the worker then waits in its next write once
   * the socket's buffer is full (pieces already read still come, in order);
   * the request settles only after every promise it returned has. If it
   * throws, or a promise it returned rejects, the request rejects with that
   * error (the first one), and the rest of the answer is dropped as it comes.
   */
  onPart?: (chunk: Buffer) => unknown;
}

/** Whether `value` is a promise, or anything else with a `then` to wait on. @internal */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** `options` of request() and run(), checked. @throws TypeError naming the bad option */
export function requestOptions(options: RequestOptions | undefined): RequestOptions {
  const opts = optionsObject(options);
  const onPart = opts['onPart'];
  if (onPart === undefined) return {};
  if (typeof onPart !== 'function') throw invalidArgType('options.onPart', 'of type function', onPart);
  return { onPart: onPart as RequestOptions['onPart'] };
}

/**
 * What the part() calls of one request came to. A part() that throws, or a
 * promise it returned that rejects, is the receiver's failure, never the
 * worker's: it must neither escape into the socket's read callback (the
 * rest of what was read would be lost, and the stream with it) nor go
 * unheard. The first one fails the request; and the request settles only
 * once every promise part() returned has, so no failure comes after it
 * resolved.
 */
class PartCalls {
  /** The first failure, once there is one. */
  failure: { error: unknown } | null = null;
  #unsettled = 0;
  #afterAll: (() => void) | null = null;
  readonly #failed: (error: unknown) => void;

  /** `failed` hears of the first failure as it happens. */
  constructor(failed: (error: unknown) => void) {
    this.#failed = failed;
  }

  /** Run `call`; what it returned, if a promise, comes back as one that never rejects, to hold the reading on. */
  call(call: () => unknown): PromiseLike<void> | undefined {
    let returned: unknown;
    try {
      returned = call();
    } catch (err) {
      this.#fail(err);
      return undefined;
    }
    if (!isThenable(returned)) return undefined;
    this.#unsettled++;
    return Promise.resolve(returned).then(
      () => this.#settled(),
      (err: unknown) => {
        this.#fail(err);
        this.#settled();
      },
    );
  }

  /** Run `settle` once every promise part() returned has settled: now, if none is pending. */
  afterAll(settle: () => void): void {
    if (this.#unsettled === 0) settle();
    else this.#afterAll = settle;
  }

  #fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = { error };
    this.#failed(error);
  }

  #settled(): void {
    if (--this.#unsettled > 0 || this.#afterAll === null) return;
    const settle = this.#afterAll;
    this.#afterAll = null;
    settle();
  }
}

/** A request written and not yet answered; `pending` null once abandon()ed, or failed by its part() (its answer is dropped). */
interface Sent {
  id: number;
  pending: Pending | null;
  /** Sent flagged PARTS: PART frames may come before its answer. */
  parts: boolean;
  /** Made at its first PART frame. */
  calls: PartCalls | null;
}

/** What the channel tells its owner; each `what` follows "worker pid N ". */
export interface TaskChannelEvents {
  /** The worker broke the protocol: it must be killed, and every request failed. */
  breach(what: string): void;
  /** The task socket ended (EOF) or failed: nothing more can be asked or answered. */
  lost(what: string): void;
}

/**
 * Payloads up to this size are copied next to their header (a slice of
 * Buffer's pool); a larger one goes out as is, with its header, in one
 * writev(2): no copy, and no allocation of a frame-sized buffer per task
 * (which, at 64 KiB, could set glibc trimming and growing its heap with brk
 * on every task).
 */
const WRITEV_ABOVE = 4096;

/** Largest read from a task socket: the size of the one buffer every read of it goes into. */
const READ_BUFFER_SIZE = 64 * 1024;

/** Where a socket made by taskSocket() hands what it reads: its TaskChannel's reader, once there is one. */
interface ReadHook {
  deliver: ((buffer: Buffer, nread: number) => void) | null;
  /** Chunks read before there was a reader (copies), for the channel to take first. */
  early: Buffer[];
}
const readHooks = new WeakMap<net.Socket, ReadHook>();

/**
 * A net.Socket over the supervisor's end `fd` of a task socket that reads
 * with `onread`: libuv reads into one buffer, reused for every read, and
 * none of the Readable's per-chunk work is done. The TaskChannel made on
 * it decodes straight from that buffer; 'data' listeners (the channel's own
 * stands for it) get each chunk as a copy, as from any socket, and what is
 * read before there is either is kept for the channel. @internal
 */
export function taskSocket(fd: number): net.Socket {
  const hook: ReadHook = { deliver: null, early: [] };
  const onread: net.OnReadOpts = {
    buffer: Buffer.allocUnsafe(READ_BUFFER_SIZE),
    callback: (nread, buf) => {
      // `buf` is the buffer above, with this read's bytes at its start.
      if (hook.deliver !== null) hook.deliver(buf as Buffer, nread);
      else if (socket.listenerCount('data') > 0) socket.emit('data', Buffer.from(buf.subarray(0, nread)));
      else hook.early.push(Buffer.from(buf.subarray(0, nread)));
      return true; // go on reading
    },
  };
  // new net.Socket() takes `onread` as connect() does (Node >= 12.2), though @types/node lists it for connect() only.
  const socket: net.Socket = new net.Socket({ fd, readable: true, writable: true, onread } as net.SocketConstructorOpts);
  readHooks.set(socket, hook);
  return socket;
}

/** The doorbell that follows every control message on the task socket. */
const WAKE_FRAME: Buffer = encodeFrame(FrameType.WAKE, 0, Buffer.alloc(0))[0]!;

export class TaskChannel {
  readonly #socket: net.Socket;
  readonly #pid: number;
  readonly #maxFrame: number;
  readonly #events: TaskChannelEvents;
  readonly #decoder: FrameDecoder;
  /** Requests written and not yet answered, oldest first: the order answers must come in. */
  #sent = new Queue<Sent>();
  /** How many of #sent still have someone waiting (not abandon()ed). */
  #waiting = 0;
  #nextId = 1;
  /** Promises returned for parts that have not settled: while any is pending, the socket is not read. */
  #holds = 0;
  /** The socket's fd, written directly while nothing is queued on the socket (see #write); -1 if unknown. */
  readonly #fd: number;

  constructor(socket: net.Socket, pid: number, maxFrame: number, events: TaskChannelEvents) {
    this.#socket = socket;
    this.#pid = pid;
    this.#maxFrame = maxFrame;
    this.#events = events;
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    this.#fd = typeof fd === 'number' && fd >= 0 ? fd : -1;
    const decoder = new FrameDecoder(maxFrame, {
      frame: (type, id, payload) => (type === FrameType.PART ? this.#part(id, payload) : this.#settle(type, id, payload)),
      oversize: (type, id, length) => this.#oversize(type, id, length),
      corrupt: (err) => events.breach(`broke the task protocol: ${err.message}`),
    });
    this.#decoder = decoder;
    const onData = (chunk: Buffer): void => decoder.push(chunk);
    socket.on('data', onData);
    const hook = readHooks.get(socket);
    if (hook) {
      // A taskSocket(): decode from its read buffer while onData is the only
      // 'data' listener; with others (or without onData: removed by someone
      // who reads the frames by hand), every listener gets a copy as 'data'.
      let listening = true;
      socket.on('removeListener', (event: string | symbol, listener: unknown) => {
        if (event === 'data' && listener === onData) listening = false;
      });
      hook.deliver = (buffer, nread) => {
        if (listening && socket.listenerCount('data') === 1) decoder.pushBorrowed(buffer, nread);
        else socket.emit('data', Buffer.from(buffer.subarray(0, nread)));
      };
      for (const chunk of hook.early.splice(0)) socket.emit('data', chunk);
    }
    // The task socket lives as long as the worker (PROTOCOL.md, "Lifetime"):
    // EOF or an error on it while the worker runs, unasked, ends the worker.
    socket.on('end', () => events.lost('closed its task socket (fd 3)'));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      // EPIPE and ECONNRESET are how a write or read meets a peer that closed its end.
      events.lost(err.code === 'EPIPE' || err.code === 'ECONNRESET' ? 'closed its task socket (fd 3)' : `broke its task socket (fd 3: ${err.message})`),
    );
  }

  /**
   * Write one REQUEST and resolve with its answer. Once the socket is gone
   * (the worker's end of it closed) nothing is written, and the request
   * waits for the owner to fail it. Rejects, with nothing pending, for bytes
   * encodeFrame refuses.
   */
  request(bytes: Uint8Array, onPart?: (chunk: Buffer) => unknown): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => this.send(bytes, { resolve, reject, ...(onPart ? { part: onPart } : {}) }, onPart !== undefined));
  }

  /**
   * request() for a caller with its own `pending` (the pool's task): no
   * promise of its own. `pending` is settled synchronously when the answer
   * is read, or (rejected, nothing sent) in a microtask for bytes
   * encodeFrame refuses. With `parts`, the REQUEST is flagged PARTS and
   * `pending.part` gets the pieces of the answer the worker sends first.
   */
  send(bytes: Uint8Array, pending: Pending, parts = false): void {
    const id = this.#nextId;
    let frame: Buffer[];
    try {
      frame = encodeFrameParts(FrameType.REQUEST, id, bytes, WRITEV_ABOVE, parts ? FrameFlags.PARTS : 0);
    } catch (err) {
      // Nothing pending, nothing sent. On a later turn, as a promise would:
      // a pool whose queued tasks are all refused so does not recurse.
      queueMicrotask(() => pending.reject(err as Error));
      return;
    }
    this.#nextId = id >= 0xffff_ffff ? 1 : id + 1;
    this.#sent.push({ id, pending, parts, calls: null });
    this.#waiting++;
    if (!this.#socket.destroyed) this.#write(frame);
  }

  /** Ring the doorbell: a control message is waiting on fd 4. */
  wake(): void {
    if (!this.#socket.destroyed && this.#socket.writable) this.#write([WAKE_FRAME]);
  }

  /**
   * Write a frame: straight to the fd (one write(2) or writev(2), none of
   * the stream's bookkeeping) while nothing waits in the socket's own
   * queue, which takes whatever that write leaves (EAGAIN, a partial
   * write) so the bytes stay in order. An error on the direct write ends
   * the socket as one on socket.write() would.
   */
  #write(frame: Buffer[]): void {
    const socket = this.#socket;
    if (this.#fd < 0 || socket.writableLength > 0 || !socket.writable) {
      for (const buf of frame) socket.write(buf);
      return;
    }
    let written: number;
    try {
      written = frame.length === 1 ? writeSync(this.#fd, frame[0]!) : writevSync(this.#fd, frame);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        socket.destroy(err as Error);
        return;
      }
      written = 0;
    }
    for (const buf of frame) {
      if (written >= buf.length) {
        written -= buf.length;
        continue;
      }
      socket.write(written === 0 ? buf : buf.subarray(written));
      written = 0;
    }
  }

  /** Forget the requests written so far (their answers, if they come, are dropped). */
  abandon(): void {
    for (const sent of this.#sent.drain()) this.#sent.push({ id: sent.id, pending: null, parts: sent.parts, calls: null });
    this.#waiting = 0;
  }

  /** Reject every request waiting for an answer with `err`. */
  failAll(err: Error): void {
    const sent = this.#sent.drain();
    this.#waiting = 0;
    for (const s of sent) s.pending?.reject(err);
  }

  /** Stop reading and writing: the socket is closed. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Requests written and not yet answered. */
  get pendingRequests(): number {
    return this.#waiting;
  }

  /** False while the payload of an oversize answer is being discarded (see WorkerHandle#inSync). */
  get inSync(): boolean {
    return !this.#decoder.skipping;
  }

  /**
   * Whether a frame of `type` can be an answer; if not, the worker broke the
   * protocol (PROTOCOL.md: WAKE and REQUEST go only to a worker, and no
   * other type is defined), whatever its id.
   */
  #isAnswer(type: number, id: number): boolean {
    if (type === FrameType.RESPONSE || type === FrameType.ERROR) return true;
    if (type === FrameType.PART) {
      // Only an oversize one comes here: a worker library splits its parts to fit.
      this.#events.breach(`sent a PART frame (id ${id}) over the maximum frame size of ${this.#maxFrame} bytes`);
      return false;
    }
    this.#events.breach(`sent a frame of type ${type} (id ${id}); a worker sends only RESPONSE, ERROR and PART frames`);
    return false;
  }

  /**
   * The request an answer for `id` settles: the oldest one written, since
   * a worker answers in order. An id that is anything else (one never sent,
   * one answered already, one out of turn) breaks the protocol: undefined.
   * One whose `pending` is null (abandon()ed, or failed by its part()) has
   * its answer dropped.
   */
  #answer(id: number): Sent | undefined {
    const oldest = this.#sent.peek();
    if (oldest === undefined || oldest.id !== id) {
      this.#events.breach(`answered request ${id}, which is not the one waiting for an answer${oldest === undefined ? ' (none is)' : ` (${oldest.id})`}`);
      return undefined;
    }
    this.#sent.shift();
    if (oldest.pending !== null) this.#waiting--;
    return oldest;
  }

  /**
   * Settle an answered request with `settle`, once the promises its part()
   * returned have settled; with the first failure of its part() instead,
   * if there was one.
   */
  #finish(sent: Sent, pending: Pending, settle: () => void): void {
    const calls = sent.calls;
    if (calls === null) {
      settle();
      return;
    }
    calls.afterAll(() => (calls.failure === null ? settle() : pending.reject(calls.failure.error as Error)));
  }

  /**
   * A PART frame: the next piece of the answer to the oldest request, which
   * must have been sent flagged PARTS (PROTOCOL.md); dropped for an
   * abandon()ed one. While a promise its receiver returned is pending, the
   * socket is not read (parts already read are still delivered, in order):
   * the worker then waits in its write, which is how a slow receiver slows
   * the handler producing the answer.
   */
  #part(id: number, payload: Buffer): void {
    const oldest = this.#sent.peek();
    if (oldest === undefined || oldest.id !== id || !oldest.parts) {
      const waiting = oldest === undefined ? 'none is' : oldest.id !== id ? `request ${oldest.id} is` : 'it was not sent flagged PARTS';
      this.#events.breach(`sent a PART frame for request ${id}, which takes no parts now (${waiting})`);
      return;
    }
    const pending = oldest.pending;
    // Abandon()ed, or failed by its part(): the rest of its answer is dropped.
    if (pending === null || pending.part === undefined) return;
    const calls = (oldest.calls ??= new PartCalls(() => this.#partFailed(oldest)));
    const wait = calls.call(() => pending.part!(payload));
    if (wait !== undefined) this.#holdReading(wait);
  }

  /**
   * The part() of `sent` failed. Not answered yet: it rejects now, and the
   * rest of its answer is dropped as it comes, so the requests after it are
   * read as ever. Answered already: #finish rejects it.
   */
  #partFailed(sent: Sent): void {
    const pending = sent.pending;
    if (pending === null || this.#sent.peek() !== sent) return;
    sent.pending = null;
    this.#waiting--;
    pending.reject(sent.calls!.failure!.error as Error);
  }

  /** Stop reading the task socket until `until` settles (and every other hold has ended). */
  #holdReading(until: PromiseLike<unknown>): void {
    if (this.#holds++ === 0) this.#socket.pause();
    const release = (): void => {
      if (--this.#holds === 0 && !this.#socket.destroyed) this.#socket.resume();
    };
    until.then(release, release);
  }

  #settle(type: number, id: number, payload: Buffer): void {
    if (!this.#isAnswer(type, id)) return;
    const sent = this.#answer(id);
    const p = sent?.pending;
    if (!sent || !p) return;
    if (type === FrameType.RESPONSE) {
      if (sent.calls === null) p.resolve(payload); // the usual case, without a closure
      else this.#finish(sent, p, () => p.resolve(payload));
      return;
    }
    const body = decodeErrorBody(payload);
    const code = body.code === 'FRAME_TOO_LARGE' ? 'ERR_WORKER_FRAME_TOO_LARGE' : 'ERR_WORKER_TASK';
    const err = new WorkerError(code, `worker pid ${this.#pid} failed the task (${body.code}): ${body.message}`, { pid: this.#pid, workerCode: body.code });
    this.#finish(sent, p, () => p.reject(err));
  }

  /**
   * An answer over maxFrame: rejected now, not once `length` bytes have gone
   * by, since a worker that announced more than it sends would hold the task
   * for ever. The decoder goes on discarding; see inSync.
   */
  #oversize(type: number, id: number, length: number): void {
    if (!this.#isAnswer(type, id)) return;
    const sent = this.#answer(id);
    const pending = sent?.pending;
    if (!sent || !pending) return;
    // After the rest of this chunk has been pushed: an answer whose bytes
    // have all arrived leaves the decoder back in step (inSync) by then.
    const err = new WorkerError(
      'ERR_WORKER_FRAME_TOO_LARGE',
      `worker pid ${this.#pid} answered with ${length} bytes, over the maximum frame size of ${this.#maxFrame} bytes; the response was discarded`,
      { pid: this.#pid },
    );
    queueMicrotask(() => this.#finish(sent, pending, () => pending.reject(err)));
  }
}
