// Node-shaped errors for bad arguments, and the checks that raise them.
// Kept together, apart from everything else, so that moving to the shared
// copy in internal/ is one import change.

export type ErrnoException = NodeJS.ErrnoException;

export const INT32_MAX = 2 ** 31 - 1;

export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const got = actual === null ? 'null' : Array.isArray(actual) ? 'an array' : `type ${typeof actual}`;
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${got}`);
  (err as ErrnoException).code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** A value for an error message; never throws (String() does, for a null-prototype object or a detached typed array). */
export function shown(actual: unknown): string {
  if (typeof actual === 'string') return `'${actual}'`;
  if (actual === null || (typeof actual !== 'object' && typeof actual !== 'function')) return String(actual);
  return Array.isArray(actual) ? 'an array' : `type ${typeof actual}`;
}

export function invalidArgValue(name: string, reason: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument ${reason}. Received ${shown(actual)}`);
  (err as ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

export function validateInteger(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    const err = new RangeError(
      `The value of "${name}" is out of range. It must be an integer >= ${min} && <= ${max}. Received ${value}`,
    );
    (err as ErrnoException).code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  return value;
}

export function validateFd(value: unknown, name: string): number {
  return validateInteger(value, name, 0, INT32_MAX);
}

/** A string the kernel can take: C strings end at the first NUL byte. */
export function validateCString(value: unknown, name: string): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (value.includes('\0')) throw invalidArgValue(name, 'must be a string without null bytes', value);
  return value;
}

export function optionsObject(options: unknown, name = 'options'): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType(name, 'of type object', options);
  }
  return options as Record<string, unknown>;
}

export function optionalBoolean(options: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalidArgType(`options.${key}`, 'of type boolean', value);
  return value;
}

/** options[key] as an AbortSignal, or undefined; duck-typed as Node's own APIs do, so a signal from another realm works. */
export function optionalAbortSignal(options: Record<string, unknown>, key: string): AbortSignal | undefined {
  const value = options[key];
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || !('aborted' in value)) {
    throw invalidArgType(`options.${key}`, 'an instance of AbortSignal', value);
  }
  return value as AbortSignal;
}
