// Argument checks, in Node's shapes: TypeError/RangeError naming the
// argument, with Node's codes. Every module of this package takes them from
// here, and only from here.

function describe(actual: unknown): string {
  if (actual === null) return 'null';
  if (Array.isArray(actual)) return 'an array';
  if (typeof actual === 'number' || typeof actual === 'string') return `type ${typeof actual} (${String(actual)})`;
  return `type ${typeof actual}`;
}

function withCode<E extends Error>(err: E, code: string): E {
  (err as E & { code: string }).code = code;
  return err;
}

export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  return withCode(new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE');
}

/** TypeError ERR_INVALID_ARG_VALUE: `The "name" argument ${reason}`. */
export function invalidArgValue(name: string, reason: string): TypeError {
  return withCode(new TypeError(`The "${name}" argument ${reason}`), 'ERR_INVALID_ARG_VALUE');
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  return withCode(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${String(actual)}`), 'ERR_OUT_OF_RANGE');
}

/** TypeError ERR_ILLEGAL_CONSTRUCTOR for a class only this package constructs. */
export function illegalConstructor(name: string, from: string): TypeError {
  return withCode(new TypeError(`Illegal constructor: a ${name} comes from ${from}`), 'ERR_ILLEGAL_CONSTRUCTOR');
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
  if (value.includes('\0')) throw invalidArgValue(name, `must be a string without null bytes. Received '${value}'`);
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
  return invalidArgValue(name, 'is a view of a detached ArrayBuffer (it was transferred); it has no bytes to send');
}
