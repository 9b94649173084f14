// TaskChannel: the supervisor's side of a worker's task socket (fd 3) as
// PROTOCOL.md frames it. Requests go out, answers come back in turn and
// settle them; whatever else comes back is a break of the protocol, which
// the WorkerHandle owning the channel deals with.

import type * as net from 'node:net';
import { WorkerError } from './errors.js';
import { FrameDecoder, FrameType, decodeErrorBody, encodeFrame } from './protocol.js';

interface Pending {
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
}

/** What the channel tells its owner; each `what` follows "worker pid N ". */
export interface TaskChannelEvents {
  /** The worker broke the protocol: it must be killed, and every request failed. */
  breach(what: string): void;
  /** The task socket ended (EOF) or failed: nothing more can be asked or answered. */
  lost(what: string): void;
}

/** The doorbell that follows every control message on the task socket. */
const WAKE_FRAME: Buffer = encodeFrame(FrameType.WAKE, 0, Buffer.alloc(0))[0]!;

export class TaskChannel {
  readonly #socket: net.Socket;
  readonly #pid: number;
  readonly #maxFrame: number;
  readonly #events: TaskChannelEvents;
  readonly #decoder: FrameDecoder;
  /**
   * Requests written and not yet answered, oldest first (the order answers
   * must come in); null for one abandon()ed, whose answer is dropped.
   */
  #pending = new Map<number, Pending | null>();
  #nextId = 1;

  constructor(socket: net.Socket, pid: number, maxFrame: number, events: TaskChannelEvents) {
    this.#socket = socket;
    this.#pid = pid;
    this.#maxFrame = maxFrame;
    this.#events = events;
    const decoder = new FrameDecoder(maxFrame, {
      frame: (type, id, payload) => this.#settle(type, id, payload),
      oversize: (type, id, length) => this.#oversize(type, id, length),
      corrupt: (err) => events.breach(`broke the task protocol: ${err.message}`),
    });
    this.#decoder = decoder;
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
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
  request(bytes: Uint8Array): Promise<Buffer> {
    const id = this.#nextId;
    let frame: Buffer[];
    try {
      frame = encodeFrame(FrameType.REQUEST, id, bytes);
    } catch (err) {
      return Promise.reject(err); // nothing pending, nothing sent
    }
    this.#nextId = id >= 0xffff_ffff ? 1 : id + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (this.#socket.destroyed) return;
      for (const buf of frame) this.#socket.write(buf);
    });
  }

  /** Ring the doorbell: a control message is waiting on fd 4. */
  wake(): void {
    if (!this.#socket.destroyed && this.#socket.writable) this.#socket.write(WAKE_FRAME);
  }

  /** Forget the requests written so far (their answers, if they come, are dropped). */
  abandon(): void {
    for (const id of this.#pending.keys()) this.#pending.set(id, null);
  }

  /** Reject every request waiting for an answer with `err`. */
  failAll(err: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p?.reject(err);
  }

  /** Stop reading and writing: the socket is closed. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Requests written and not yet answered. */
  get pendingRequests(): number {
    let n = 0;
    for (const p of this.#pending.values()) if (p !== null) n++;
    return n;
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
    this.#events.breach(`sent a frame of type ${type} (id ${id}); a worker sends only RESPONSE and ERROR frames`);
    return false;
  }

  /**
   * The request an answer for `id` settles: the oldest one written, since
   * a worker answers in order. An id that is anything else (one never sent,
   * one answered already, one out of turn) breaks the protocol: undefined.
   * Null for an abandon()ed request: drop the answer.
   */
  #answer(id: number): Pending | null | undefined {
    const oldest = this.#pending.keys().next();
    if (oldest.done || oldest.value !== id) {
      this.#events.breach(`answered request ${id}, which is not the one waiting for an answer${oldest.done ? ' (none is)' : ` (${oldest.value})`}`);
      return undefined;
    }
    const p = this.#pending.get(id)!;
    this.#pending.delete(id);
    return p;
  }

  #settle(type: number, id: number, payload: Buffer): void {
    if (!this.#isAnswer(type, id)) return;
    const p = this.#answer(id);
    if (!p) return;
    if (type === FrameType.RESPONSE) {
      p.resolve(payload);
      return;
    }
    const body = decodeErrorBody(payload);
    const code = body.code === 'FRAME_TOO_LARGE' ? 'ERR_WORKER_FRAME_TOO_LARGE' : 'ERR_WORKER_TASK';
    p.reject(new WorkerError(code, `worker pid ${this.#pid} failed the task (${body.code}): ${body.message}`, { pid: this.#pid, workerCode: body.code }));
  }

  /**
   * An answer over maxFrame: rejected now, not once `length` bytes have gone
   * by, since a worker that announced more than it sends would hold the task
   * for ever. The decoder goes on discarding; see inSync.
   */
  #oversize(type: number, id: number, length: number): void {
    if (!this.#isAnswer(type, id)) return;
    this.#answer(id)?.reject(
      new WorkerError(
        'ERR_WORKER_FRAME_TOO_LARGE',
        `worker pid ${this.#pid} answered with ${length} bytes, over the maximum frame size of ${this.#maxFrame} bytes; the response was discarded`,
        { pid: this.#pid },
      ),
    );
  }
}
