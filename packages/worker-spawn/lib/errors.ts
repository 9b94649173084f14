// Errors and argument validation, in Node's shapes: a `code` on every error,
// TypeError/RangeError naming the argument for bad input.

/** Codes of the errors this package rejects tasks and calls with. */
export type WorkerErrorCode =
  | 'ERR_WORKER_FRAME_TOO_LARGE'
  | 'ERR_WORKER_PROTOCOL'
  | 'ERR_WORKER_TASK'
  | 'ERR_WORKER_EXITED'
  | 'ERR_WORKER_CRASHED'
  | 'ERR_WORKER_EXEC_TIMEOUT'
  | 'ERR_WORKER_DRAIN_TIMEOUT'
  | 'ERR_WORKER_ALLOCATE_TIMEOUT'
  | 'ERR_WORKER_QUEUE_FULL'
  | 'ERR_WORKER_POOL_STOPPED'
  | 'ERR_WORKER_STOPPED'
  | 'ERR_WORKER_PID_MISMATCH';

/** An error from a worker or the pool; `code` says which. */
export class WorkerError extends Error {
  override name = 'WorkerError';
  /** One of the `ERR_WORKER_*` codes. */
  readonly code: WorkerErrorCode;
  /** The worker involved, when there is one. */
  pid?: number;
  /** For ERR_WORKER_TASK: the code the worker put in its ERROR frame (`HANDLER_ERROR`, ...). */
  workerCode?: string;
  /** For ERR_WORKER_CRASHED / ERR_WORKER_EXITED: how the worker ended. */
  exit?: { code: number | null; signal: string | null };

  constructor(code: WorkerErrorCode, message: string, extra?: Partial<Pick<WorkerError, 'pid' | 'workerCode' | 'exit'>>) {
    super(message);
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** "exit code 3" / "signal SIGKILL": how a worker ended, for messages. */
export function describeExit(exit: { code: number | null; signal: string | null }): string {
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

function describe(actual: unknown): string {
  if (actual === null) return 'null';
  if (Array.isArray(actual)) return 'an array';
  if (typeof actual === 'number' || typeof actual === 'string') return `type ${typeof actual} (${String(actual)})`;
  return `type ${typeof actual}`;
}

export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`);
  (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  const err = new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${String(actual)}`);
  (err as NodeJS.ErrnoException).code = 'ERR_OUT_OF_RANGE';
  return err;
}

export function optionsObject(options: unknown, name = 'options'): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType(name, 'of type object', options);
  }
  return options as Record<string, unknown>;
}

/** An integer option within [min, max]; `fallback` when undefined. */
export function intOption(opts: Record<string, unknown>, key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER, prefix = 'options'): number {
  const value = opts[key];
  if (value === undefined) return fallback;
  const name = `${prefix}.${key}`;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(name, `an integer >= ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` and <= ${max}`}`, value);
  }
  return value;
}

export function stringOption(opts: Record<string, unknown>, key: string, fallback: string | undefined, prefix = 'options'): string | undefined {
  const value = opts[key];
  if (value === undefined) return fallback;
  return stringValue(value, `${prefix}.${key}`);
}

/** `value`, if it is a string the kernel can take (no NUL byte: C strings end there). */
export function stringValue(value: unknown, name: string): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (value.includes('\0')) {
    const err = new TypeError(`The "${name}" argument must be a string without null bytes. Received '${value}'`);
    (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  return value;
}

/** Whether `buffer` was detached (transferred away): it then throws on nearly every use. */
export function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

export function detachedError(name: string): TypeError {
  const err = new TypeError(`The "${name}" argument is a view of a detached ArrayBuffer (it was transferred); it has no bytes to send`);
  (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
  return err;
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
