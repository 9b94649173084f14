// An FdSocket's sending side: straight to the kernel while the socket has
// room, else a queue written in order as it becomes writable. The promise of
// a send settles once the kernel has the whole message: that is the
// backpressure.
import { abortError } from './internal/args.js';
import { Queue } from './internal/queue.js';
import { socketClosed } from './errors.js';
import { encodeFrame, FRAME_HEADER_BYTES } from './frame.js';
import { native, type NativePoller } from './native.js';

const RESOLVED: Promise<void> = Promise.resolve();

function noop(): void {}

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

/** Drop the first n bytes of a queued send (the kernel took them; with them any fds). */
function advance(p: PendingSend, n: number): void {
  p.started = true;
  p.fds = null;
  p.bytes = p.bytes.subarray(n);
}

export class Outbox {
  readonly #poller: NativePoller;
  readonly #io: number;
  readonly #stream: boolean;
  /** Called when the queue changed other than through send() or flush(): an abort took a send out. */
  readonly #changed: () => void;
  #queue = new Queue<PendingSend>();

  /** `io` is the poller's private duplicate of the socket; `stream` frames each message. */
  constructor(poller: NativePoller, io: number, stream: boolean, changed: () => void) {
    this.#poller = poller;
    this.#io = io;
    this.#stream = stream;
    this.#changed = changed;
  }

  /** Sends queued, not yet (wholly) written. */
  get length(): number {
    return this.#queue.length;
  }

  /**
   * One message, its arguments already checked. Written now if the queue is
   * empty and the socket has room (the fast path: the binding writes the
   * frame header, no copy); else a copy of the bytes, and dups of the fds,
   * wait in the queue for flush().
   */
  send(bytes: Uint8Array, fds: number[], signal: AbortSignal | undefined): Promise<void> {
    const len = bytes.byteLength;
    const total = this.#stream ? FRAME_HEADER_BYTES + len : len;
    let sent = -1;
    if (this.#queue.length === 0) {
      try {
        sent = native.trySend(this.#io, bytes, fds.length > 0 ? fds : null, this.#stream);
      } catch (err) {
        return Promise.reject(err);
      }
      if (sent === total) return RESOLVED;
    }
    // Once any byte went out the fds went with it; otherwise keep our own dups of them.
    let owned: number[] | null = null;
    if (sent <= 0 && fds.length > 0) {
      owned = [];
      try {
        for (const fd of fds) owned.push(this.#poller.dup(fd));
      } catch (err) {
        this.#drop(owned);
        return Promise.reject(err);
      }
    }
    const wire = this.#stream ? encodeFrame(bytes, fds.length) : Buffer.from(bytes);
    const entry: PendingSend = { bytes: wire, started: false, fds: owned, resolve: noop, reject: noop };
    if (sent > 0) advance(entry, sent);
    const promise = new Promise<void>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (signal !== undefined) this.#abortOn(signal, entry);
    this.#queue.push(entry);
    return promise;
  }

  /** The socket is writable: write queued sends, oldest first, until it is full again. */
  flush(): void {
    const q = this.#queue;
    for (let p = q.peek(); p !== undefined; p = q.peek()) {
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
      if (n < 0) return;
      this.#drop(p.fds);
      if (n < p.bytes.length) {
        advance(p, n);
        return;
      }
      q.shift();
      p.resolve();
    }
  }

  /** The socket closed: every queued send rejects with ERR_SOCKET_CLOSED (their dups were closed with the poller). */
  close(): void {
    for (const p of this.#queue.drain()) p.reject(socketClosed());
  }

  /** An abort takes the send out while none of it is written; its promise then rejects with an AbortError. */
  #abortOn(signal: AbortSignal, entry: PendingSend): void {
    const onAbort = () => {
      // A message partly written must be finished, or the stream's framing breaks.
      if (entry.started || !this.#queue.remove(entry)) return;
      this.#drop(entry.fds);
      entry.fds = null;
      entry.reject(abortError(signal));
      this.#changed();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const { resolve, reject } = entry;
    entry.resolve = () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    entry.reject = (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    };
  }

  /** Close our dups (those no longer held are left alone). */
  #drop(fds: readonly number[] | null): void {
    if (fds !== null && fds.length > 0) this.#poller.drop(fds);
  }
}
