// The stream frame: how an FdSocket on a SOCK_STREAM socket marks where each
// message begins and which fds are its own (README, "Stream framing").
//
//   payload length (u32 LE) | fd count (u32 LE) | payload
//
// The fds ride on the header's first byte. The header is written in two
// places: here, for sends queued behind a full socket, and in the binding's
// TrySend (src/scm_rights.cc), which writes it on the fast path in the same
// sendmsg as the payload, without a copy. test/frame.test.ts pins the two to
// the same bytes, and this decoder to both.
import { codeError } from './errors.js';
import { native } from './native.js';

/** Bytes in a stream frame header: payload length (u32 LE), then fd count (u32 LE). */
export const FRAME_HEADER_BYTES = 8;

/** Write a frame header at `at`: `length` payload bytes, `nfds` fds. */
export function writeFrameHeader(target: Uint8Array, at: number, length: number, nfds: number): void {
  const view = new DataView(target.buffer, target.byteOffset + at, FRAME_HEADER_BYTES);
  view.setUint32(0, length, true);
  view.setUint32(4, nfds, true);
}

/** The payload length announced by the header at `at`. */
export function frameLength(b: Buffer, at: number): number {
  return b.readUInt32LE(at);
}

/** The fd count announced by the header at `at`. */
export function frameFdCount(b: Buffer, at: number): number {
  return b.readUInt32LE(at + 4);
}

/** A whole frame as it goes on the wire: the header, then a copy of `payload`. */
export function encodeFrame(payload: Uint8Array, nfds: number): Buffer {
  const wire = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength);
  writeFrameHeader(wire, 0, payload.byteLength, nfds);
  wire.set(payload, FRAME_HEADER_BYTES);
  return wire;
}

/** A frame being assembled. */
interface Frame {
  len: number; // payload bytes; -1 until the header is complete
  nfds: number; // fds the header announces
  hdr: Buffer | null; // a header split across reads, gathered
  hdrFill: number;
  buf: Buffer | null; // a payload split across reads, gathered
  filled: number;
  data: Buffer | null; // the payload, once whole
  fds: number[] | null;
}

function newFrame(): Frame {
  return { len: -1, nfds: 0, hdr: null, hdrFill: 0, buf: null, filled: 0, data: null, fds: null };
}

/**
 * Turns what stream reads return into messages.
 *
 * One read returns zero or more fd-less segments and at most one segment
 * with fds, last: Linux stops a stream read right after the segment whose
 * fds it took. That segment begins with the first byte of the sendmsg that
 * carried the fds, which (as FdSocket writes) is the first byte of a frame
 * header. So the fds of a read belong to the last frame that starts inside
 * it, and the header's fd count lets us check that.
 *
 * Fds it holds (of a frame not yet whole) are closed through `drop` when the
 * stream breaks; a message's fds pass to `deliver` with it.
 */
export class FrameDecoder {
  readonly #maxMessageBytes: number;
  readonly #deliver: (data: Buffer, fds: number[]) => void;
  readonly #drop: (fds: readonly number[] | null) => void;
  #frame: Frame | null = null;
  /** Frames completed by the read being fed, delivered once its fds are placed. */
  #done: Frame[] = [];

  constructor(
    maxMessageBytes: number,
    deliver: (data: Buffer, fds: number[]) => void,
    drop: (fds: readonly number[] | null) => void,
  ) {
    this.#maxMessageBytes = maxMessageBytes;
    this.#deliver = deliver;
    this.#drop = drop;
  }

  /**
   * One read's bytes, and its fds (null for none). Whole messages go to
   * `deliver`, in order. Returns the error that ends the stream, if this read
   * broke the framing (every fd involved is closed by then), else null.
   */
  feed(b: Buffer, fds: number[] | null): Error | null {
    const done = this.#done;
    done.length = 0;
    let last: Frame | null = null;
    let pos = 0;
    while (pos < b.length) {
      if (this.#frame === null) last = this.#frame = newFrame();
      const f = this.#frame;
      if (f.len < 0) {
        pos = readHeader(f, b, pos);
        if (f.len < 0) break;
        const refused = this.#checkHeader(f, fds);
        if (refused !== null) return refused;
      }
      pos = this.#readPayload(f, b, pos);
      if (pos < 0) {
        this.#keepDone();
        return this.#broken(fds, `no memory for a ${f.len}-byte message`, 'ERR_MESSAGE_TOO_LARGE');
      }
      if (f.data === null) break;
      done.push(f);
      this.#frame = null;
    }
    if (fds !== null) {
      if (last === null) return this.#broken(fds, 'fds arrived in the middle of a message');
      last.fds = fds;
    }
    for (let i = 0; i < done.length; i++) {
      const f = done[i]!;
      if ((f.fds?.length ?? 0) !== f.nfds) {
        return this.#broken(null, `a message announced ${f.nfds} fds and carried ${f.fds?.length ?? 0}`);
      }
      this.#deliver(f.data!, f.fds ?? []);
      done[i] = undefined as unknown as Frame; // delivered: #broken must not close its fds
    }
    done.length = 0;
    return null;
  }

  /** The peer's end of file: the error for a message it cut short (its fds closed), or null. */
  end(): Error | null {
    const f = this.#frame;
    if (f === null) return null;
    this.#frame = null;
    this.#drop(f.fds);
    const where = f.len < 0 ? 'in its header' : `${f.filled} of ${f.len} bytes`;
    return codeError(
      'ERR_INCOMPLETE_MESSAGE',
      `The peer closed the stream in the middle of a message (${where}); its fds were closed`,
    );
  }

  /** Forget a frame in progress (the socket closed; its fds went with it). */
  reset(): void {
    this.#frame = null;
    this.#done.length = 0;
  }

  /** The payload bytes of `f` in this read from `pos`; the position after them, or -1 with no memory to gather them. */
  #readPayload(f: Frame, b: Buffer, pos: number): number {
    const need = f.len - f.filled;
    const avail = b.length - pos;
    if (f.buf === null && avail >= need) {
      f.data = b.subarray(pos, pos + need); // whole in this read: no copy
      return pos + need;
    }
    if (f.buf === null) {
      try {
        f.buf = Buffer.allocUnsafe(f.len);
      } catch {
        return -1;
      }
    }
    const n = Math.min(need, avail);
    b.copy(f.buf, f.filled, pos, pos + n);
    f.filled += n;
    if (f.filled === f.len) f.data = f.buf;
    return pos + n;
  }

  #checkHeader(f: Frame, fds: number[] | null): Error | null {
    if (f.nfds > native.SCM_MAX_FD) {
      this.#keepDone();
      return this.#broken(fds, `a frame header announced ${f.nfds} fds (at most ${native.SCM_MAX_FD})`);
    }
    if (f.len > this.#maxMessageBytes) {
      this.#keepDone();
      return this.#broken(
        fds,
        `a frame header announced ${f.len} bytes, over maxMessageBytes (${this.#maxMessageBytes})`,
        'ERR_MESSAGE_TOO_LARGE',
      );
    }
    return null;
  }

  /**
   * A frame of this read is refused: the complete frames before it in the
   * same read are still messages, delivered ahead of the error. They cannot
   * own fds (a read's fds belong to its last frame), so one announcing some
   * is broken too, and so is everything after it.
   */
  #keepDone(): void {
    const done = this.#done;
    for (let i = 0; i < done.length && done[i]!.nfds === 0; i++) {
      this.#deliver(done[i]!.data!, []);
      done[i] = undefined as unknown as Frame;
    }
  }

  /** The stream no longer parses: close every fd of the read and of frames in progress. */
  #broken(fds: number[] | null, why: string, code = 'ERR_INVALID_FRAME'): Error {
    this.#drop(fds);
    for (const f of this.#done) if (f) this.#drop(f.fds);
    this.#done.length = 0;
    if (this.#frame) this.#drop(this.#frame.fds);
    this.#frame = null;
    return codeError(code, `FdSocket stream framing: ${why}`);
  }
}

/** The header bytes of `f` in this read from `pos`; the position after them. Sets `f.len` once the header is whole. */
function readHeader(f: Frame, b: Buffer, pos: number): number {
  if (f.hdrFill === 0 && b.length - pos >= FRAME_HEADER_BYTES) {
    f.len = frameLength(b, pos);
    f.nfds = frameFdCount(b, pos);
    return pos + FRAME_HEADER_BYTES;
  }
  f.hdr ??= Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  const n = Math.min(FRAME_HEADER_BYTES - f.hdrFill, b.length - pos);
  b.copy(f.hdr, f.hdrFill, pos, pos + n);
  f.hdrFill += n;
  if (f.hdrFill === FRAME_HEADER_BYTES) {
    f.len = frameLength(f.hdr, 0);
    f.nfds = frameFdCount(f.hdr, 0);
  }
  return pos + n;
}
