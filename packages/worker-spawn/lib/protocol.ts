// The task-channel framing of PROTOCOL.md and the bytes of a task payload,
// shared by the supervisor (worker-handle.ts, pool.ts) and the Node worker
// library (serve.ts).

import { detachedError, invalidArgType, outOfRange } from './internal/args.js';
import { payloadTooLarge } from './errors.js';

/** Whether `buffer` was detached (transferred away): it then throws on nearly every use. */
function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/** Protocol version carried in every frame header. */
export const PROTOCOL_VERSION = 1;
/** Bytes in a frame header: version u8, type u8, flags u16, id u32, length u32 (big-endian). */
export const HEADER_SIZE = 12;
/** Default largest payload in one frame: 16 MiB. */
export const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;
/** The length field is a u32. */
export const MAX_FRAME_LIMIT = 0xffff_ffff;
/** Smallest accepted maximum: an ERROR frame must always fit. */
export const MIN_MAX_FRAME = 1024;
/** Largest control datagram. */
export const CONTROL_MAX = 65536;

export const FrameType = {
  REQUEST: 1,
  RESPONSE: 2,
  ERROR: 3,
  /** Supervisor to worker, empty: a control message is waiting on fd 4 (see PROTOCOL.md). */
  WAKE: 4,
  /** Worker to supervisor: the next piece of an answer, before its RESPONSE (only for a REQUEST flagged PARTS). */
  PART: 5,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** Bits of a frame header's `flags`. */
export const FrameFlags = {
  /** On a REQUEST: the supervisor takes PART frames for it. */
  PARTS: 1,
} as const;

/** Payloads at or below this size are copied next to their header so one write(2) carries both. */
const COALESCE_LIMIT = 64 * 1024;

function checkUint(name: string, value: unknown, max: number): void {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < 0 || value > max) throw outOfRange(name, `an integer >= 0 and <= ${max}`, value);
}

/**
 * Encode one frame as the buffers to write, in order.
 *
 * @throws TypeError/RangeError for a `type` that is not a u8, an `id` that is
 * not a u32, or a `payload` that is not a Uint8Array of at most 2^32-1 bytes
 * (or is one over a detached ArrayBuffer).
 */
export function encodeFrame(type: number, id: number, payload: Uint8Array, flags = 0): Buffer[] {
  return encodeFrameParts(type, id, payload, COALESCE_LIMIT, flags);
}

/**
 * encodeFrame, copying a payload of at most `coalesceLimit` bytes next to
 * its header and leaving a larger one as a buffer of its own (for a writer
 * that sends both with one writev(2)). @internal
 */
export function encodeFrameParts(type: number, id: number, payload: Uint8Array, coalesceLimit: number, flags = 0): Buffer[] {
  checkUint('type', type, 0xff);
  checkUint('id', id, MAX_FRAME_LIMIT);
  checkUint('flags', flags, 0xffff);
  if (!(payload instanceof Uint8Array)) throw invalidArgType('payload', 'an instance of Uint8Array', payload);
  if (isDetached(payload.buffer)) throw detachedError('payload');
  const length = payload.byteLength;
  if (length > MAX_FRAME_LIMIT) throw outOfRange('payload.byteLength', `<= ${MAX_FRAME_LIMIT}`, length);
  if (length <= coalesceLimit) {
    const out = Buffer.allocUnsafe(HEADER_SIZE + length);
    writeHeader(out, type, flags, id, length);
    out.set(payload, HEADER_SIZE);
    return [out];
  }
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  writeHeader(header, type, flags, id, length);
  return [header, Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, length)];
}

function writeHeader(out: Buffer, type: number, flags: number, id: number, length: number): void {
  // Byte by byte (a Uint8Array keeps the low 8 bits of each): type, flags,
  // id and length were range-checked already, and Buffer#writeUInt32BE
  // checks again.
  out[0] = PROTOCOL_VERSION;
  out[1] = type;
  out[2] = flags >>> 8;
  out[3] = flags;
  out[4] = id >>> 24;
  out[5] = id >>> 16;
  out[6] = id >>> 8;
  out[7] = id;
  out[8] = length >>> 24;
  out[9] = length >>> 16;
  out[10] = length >>> 8;
  out[11] = length;
}

/** Where a FrameDecoder delivers what it reads, in stream order. */
export interface FrameSink {
  /** A complete frame within the size limit; `flags` as its header gave them. */
  frame(type: number, id: number, payload: Buffer, flags: number): void;
  /** A header announced more than the limit; its payload is being skipped, never buffered. */
  oversize(type: number, id: number, length: number): void;
  /** The stream is not this protocol (bad version); nothing more will be delivered. */
  corrupt(error: Error): void;
}

type DecoderMode = 'header' | 'body' | 'skip' | 'dead';

/** Up to this many bytes a loop copies faster than Buffer#copy, which makes a view of its source first. */
const SMALL_COPY = 64;

/**
 * Incremental decoder for the task stream. Feed it chunks as they arrive;
 * it never buffers more than one frame, and skips oversize payloads so the
 * stream stays in sync.
 */
export class FrameDecoder {
  private header = Buffer.alloc(HEADER_SIZE);
  private headerFill = 0;
  private parts: Buffer[] = [];
  /** The payload being read, copied into as it comes: while pushBorrowed() feeds the decoder. */
  private body: Buffer | null = null;
  private borrowed = false;
  private remaining = 0;
  private mode: DecoderMode = 'header';
  private type = 0;
  private flags = 0;
  private id = 0;
  private length = 0;

  /**
   * @throws TypeError/RangeError unless `maxFrame` is an integer 0 .. 2^32-1
   * and `sink` has the three functions of a FrameSink.
   */
  constructor(
    private readonly maxFrame: number,
    private readonly sink: FrameSink,
  ) {
    checkUint('maxFrame', maxFrame, MAX_FRAME_LIMIT);
    if (sink === null || typeof sink !== 'object') throw invalidArgType('sink', 'of type object', sink);
    for (const key of ['frame', 'oversize', 'corrupt'] as const) {
      if (typeof sink[key] !== 'function') throw invalidArgType(`sink.${key}`, 'of type function', sink[key]);
    }
  }

  /**
   * True while the payload of an oversize frame is being discarded: the
   * stream is back at a frame boundary only once all `length` bytes the
   * header announced have been pushed.
   */
  get skipping(): boolean {
    return this.mode === 'skip';
  }

  /** Feed the next bytes of the stream. @throws TypeError unless `chunk` is a Buffer. */
  push(chunk: Buffer): void {
    if (!Buffer.isBuffer(chunk)) throw invalidArgType('chunk', 'an instance of Buffer', chunk);
    this.pushBytes(chunk, chunk.length);
  }

  /**
   * push() for the first `end` bytes of `buffer`, whose memory is reused
   * once the call returns (a socket's onread buffer): what the decoder
   * keeps or delivers of it is copied out, each payload into one buffer of
   * its own length. @internal
   */
  pushBorrowed(buffer: Buffer, end: number): void {
    this.borrowed = true;
    try {
      this.pushBytes(buffer, end);
    } finally {
      this.borrowed = false;
    }
  }

  private pushBytes(chunk: Buffer, end: number): void {
    let offset = 0;
    while (offset < end && this.mode !== 'dead') {
      if (this.mode === 'header') {
        // Fast path: a whole header (and often the whole frame) inside this chunk.
        if (this.headerFill === 0 && end - offset >= HEADER_SIZE) {
          if (!this.startFrame(chunk, offset)) return;
          offset += HEADER_SIZE;
        } else {
          const take = Math.min(HEADER_SIZE - this.headerFill, end - offset);
          chunk.copy(this.header, this.headerFill, offset, offset + take);
          this.headerFill += take;
          offset += take;
          if (this.headerFill < HEADER_SIZE) return;
          this.headerFill = 0;
          if (!this.startFrame(this.header, 0)) return;
        }
        // startFrame moved the state on (TS cannot see that through the call).
        if ((this.mode as DecoderMode) === 'body' && this.remaining === 0) this.finishFrame();
        continue;
      }
      const take = Math.min(this.remaining, end - offset);
      if (this.mode === 'body') {
        if (this.borrowed || this.body !== null) this.copyBody(chunk, offset, take);
        else this.parts.push(chunk.subarray(offset, offset + take));
      }
      offset += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        if (this.mode === 'body') this.finishFrame();
        else this.mode = 'header';
      }
    }
  }

  /** Copy `take` payload bytes at `offset` into the frame's own buffer (made on the first, with what push() kept so far). */
  private copyBody(chunk: Buffer, offset: number, take: number): void {
    if (this.body === null) {
      this.body = Buffer.allocUnsafe(this.length);
      let at = 0;
      for (const part of this.parts) at += part.copy(this.body, at);
      this.parts = [];
    }
    const at = this.length - this.remaining;
    if (take > SMALL_COPY) chunk.copy(this.body, at, offset, offset + take);
    else for (let i = 0; i < take; i++) this.body[at + i] = chunk[offset + i]!;
  }

  private startFrame(buf: Buffer, at: number): boolean {
    const version = buf.readUInt8(at);
    if (version !== PROTOCOL_VERSION) {
      this.mode = 'dead';
      this.sink.corrupt(
        new Error(`task frame with protocol version ${version}; expected ${PROTOCOL_VERSION} (the peer does not speak this protocol)`),
      );
      return false;
    }
    this.type = buf.readUInt8(at + 1);
    this.flags = buf.readUInt16BE(at + 2);
    this.id = buf.readUInt32BE(at + 4);
    this.length = buf.readUInt32BE(at + 8);
    this.remaining = this.length;
    if (this.length > this.maxFrame) {
      this.mode = 'skip'; // length > maxFrame >= 0, so there is always something to skip
      this.sink.oversize(this.type, this.id, this.length);
    } else {
      this.mode = 'body';
    }
    return true;
  }

  private finishFrame(): void {
    const parts = this.parts;
    const body = this.body;
    this.parts = [];
    this.body = null;
    this.mode = 'header';
    const payload =
      body !== null ? body : parts.length === 1 ? parts[0]! : parts.length === 0 ? Buffer.alloc(0) : Buffer.concat(parts, this.length);
    this.sink.frame(this.type, this.id, payload, this.flags);
  }
}

/** The JSON body of an ERROR frame. */
export interface ErrorBody {
  code: string;
  message: string;
}

/**
 * The ERROR payload for `code` and `message`, always within `maxFrame`: a
 * message too long for it is cut (halved until the JSON fits; JSON may
 * escape a character into 6 bytes), never the JSON, so the receiver still
 * reads the code.
 */
export function encodeErrorBody(code: string, message: string, maxFrame: number): Buffer {
  let text = message;
  let body = Buffer.from(JSON.stringify({ code, message: text }));
  while (body.length > maxFrame && text.length > 0) {
    text = text.slice(0, Math.floor(text.length / 2));
    body = Buffer.from(JSON.stringify({ code, message: `${text}... (cut to fit the maximum frame size)` }));
  }
  return body;
}

export function decodeErrorBody(payload: Buffer): ErrorBody {
  try {
    const parsed = JSON.parse(payload.toString('utf8')) as Partial<ErrorBody>;
    return {
      code: typeof parsed.code === 'string' ? parsed.code : 'HANDLER_ERROR',
      message: typeof parsed.message === 'string' ? parsed.message : String(parsed.message),
    };
  } catch {
    return { code: 'HANDLER_ERROR', message: payload.toString('utf8') };
  }
}

/** Bytes of a task payload: Buffer/TypedArray as is, strings as UTF-8. */
export function toPayload(payload: unknown, name = 'payload'): Uint8Array {
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (ArrayBuffer.isView(payload)) {
    // A detached typed array reads as empty, but copying from it (or asking a
    // detached DataView its size) throws V8's bare TypeError.
    if (isDetached(payload.buffer)) throw detachedError(name);
    if (payload instanceof Uint8Array) return payload;
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  if (payload instanceof ArrayBuffer) {
    if (isDetached(payload)) throw detachedError(name);
    return new Uint8Array(payload);
  }
  throw invalidArgType(name, 'of type string or an instance of Buffer, TypedArray, DataView or ArrayBuffer', payload);
}

/**
 * The bytes of one task, within `maxFrame`.
 * @throws what toPayload throws; WorkerError ERR_WORKER_FRAME_TOO_LARGE (naming `pid` if given) over `maxFrame`
 */
export function taskPayload(payload: unknown, maxFrame: number, pid?: number): Uint8Array {
  const bytes = toPayload(payload);
  if (bytes.byteLength > maxFrame) throw payloadTooLarge(bytes.byteLength, maxFrame, pid);
  return bytes;
}
