// Argument checks and the errors they throw, written once for every package
// (scripts/sync-internal.mjs copies this file into each package that imports
// it; see native-loader.ts).
//
// The words are Node's own (lib/internal/errors.js), so our errors read like
// those of fs or net: ERR_INVALID_ARG_TYPE says `The "fd" argument must be of
// type number. Received type string ('3')`, and `property` for a dotted name
// (`options.reap`); ERR_OUT_OF_RANGE says `The value of "fd" is out of range.
// It must be ... Received -1`. One difference: where Node would itself throw
// while describing the value (a Proxy whose traps throw, a revoked one, a
// getter on the prototype chain), these never do: describing a value runs
// none of the caller's code, so a bad argument ends in the error that names it.
import { inspect, types } from 'node:util';

export type CodedError = Error & { code: string };

export const INT32_MAX = 2 ** 31 - 1;

export function withCode<E extends Error>(err: E, code: string): E & { code: string } {
  return Object.assign(err, { code });
}

/** `argument`, or `property` for a name with a dot in it (`options.reap`), as Node says. */
function noun(name: string): string {
  return name.includes('.') ? 'property' : 'argument';
}

/** An own data property, read without running a getter or a Proxy trap. */
function ownValue(object: object, key: string): unknown {
  if (types.isProxy(object)) return undefined;
  const d = Object.getOwnPropertyDescriptor(object, key);
  return d !== undefined && 'value' in d ? d.value : undefined;
}

/**
 * The name of the object's constructor, found as `value.constructor.name`
 * would be but without running any code: null when the prototype chain has
 * no constructor at all (Object.create(null)), undefined when it cannot be
 * told without running code (a getter, a Proxy on the chain).
 */
function constructorName(value: object): string | null | undefined {
  for (let o: object | null = value; o !== null; o = Object.getPrototypeOf(o) as object | null) {
    if (types.isProxy(o)) return undefined;
    const d = Object.getOwnPropertyDescriptor(o, 'constructor');
    if (d === undefined) continue;
    const ctor = 'value' in d ? d.value : undefined;
    if (typeof ctor !== 'function') return undefined;
    const name = ownValue(ctor, 'name');
    return typeof name === 'string' && name !== '' ? name : undefined;
  }
  return null;
}

/**
 * What ERR_INVALID_ARG_TYPE says it received: `type number (5)`, `type
 * string ('x')`, `undefined`, `null`, `an instance of Map`, `function f`,
 * `[Object: null prototype] {}`; `type object (a Proxy)` for a Proxy, which
 * Node's own words would open. Never throws.
 */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  switch (typeof value) {
    case 'bigint':
      return `type bigint (${value}n)`;
    case 'number':
      return `type number (${Object.is(value, -0) ? '-0' : String(value)})`;
    case 'boolean':
    case 'symbol':
      return `type ${typeof value} (${String(value)})`;
    case 'string': {
      const text = value.length > 28 ? `${value.slice(0, 25)}...` : value;
      return `type string (${text.includes("'") ? JSON.stringify(text) : `'${text}'`})`;
    }
  }
  try {
    if (types.isProxy(value)) return `type ${typeof value} (a Proxy)`;
    if (typeof value === 'function') {
      const name = ownValue(value, 'name');
      return typeof name === 'string' ? `function ${name}` : 'type function';
    }
    const name = constructorName(value as object);
    if (typeof name === 'string') return `an instance of ${name}`;
    // What util.inspect writes at depth -1, without the getters it would run.
    if (name === null) return `[Object: null prototype]${Reflect.ownKeys(value as object).length === 0 ? ' {}' : ''}`;
    return `type ${typeof value}`;
  } catch {
    return `type ${typeof value}`;
  }
}

/** A value as an error message shows it after "Received": primitives as util.inspect writes them, objects as describe(). Never throws. */
export function shown(value: unknown): string {
  if (value !== null && (typeof value === 'object' || typeof value === 'function')) return describe(value);
  const text = inspect(value, { colors: false });
  return text.length > 128 ? `${text.slice(0, 128)}...` : text;
}

/** `1_099_511_627_776` for large integers, as Node's ERR_OUT_OF_RANGE writes them. */
function withSeparators(digits: string): string {
  let out = '';
  let i = digits.length;
  const start = digits[0] === '-' ? 1 : 0;
  for (; i >= start + 4; i -= 3) out = `_${digits.slice(i - 3, i)}${out}`;
  return `${digits.slice(0, i)}${out}`;
}

/** TypeError ERR_INVALID_ARG_TYPE: `The "name" argument must be ${expected}. Received ...`. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError & { code: string } {
  return withCode(
    new TypeError(`The "${name}" ${noun(name)} must be ${expected}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_TYPE',
  );
}

/**
 * TypeError ERR_INVALID_ARG_VALUE: `The "name" argument ${reason}`, then
 * `. Received ${shown(actual)}` when there is a value worth showing.
 */
export function invalidArgValue(name: string, reason: string, ...actual: [unknown] | []): TypeError & { code: string } {
  const received = actual.length === 0 ? '' : `. Received ${shown(actual[0])}`;
  return withCode(new TypeError(`The "${name}" ${noun(name)} ${reason}${received}`), 'ERR_INVALID_ARG_VALUE');
}

/** RangeError ERR_OUT_OF_RANGE: `The value of "name" is out of range. It must be ${range}. Received ...`. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError & { code: string } {
  let received: string;
  if (typeof actual === 'number' && Number.isInteger(actual) && Math.abs(actual) > 2 ** 32) {
    received = withSeparators(String(actual));
  } else if (typeof actual === 'bigint') {
    const digits = String(actual);
    received = `${actual > 2n ** 32n || actual < -(2n ** 32n) ? withSeparators(digits) : digits}n`;
  } else {
    received = shown(actual);
  }
  return withCode(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${received}`),
    'ERR_OUT_OF_RANGE',
  );
}

/** TypeError ERR_ILLEGAL_CONSTRUCTOR for a class only the package may construct: `Illegal constructor: ${how}`. */
export function illegalConstructor(how: string): TypeError & { code: string } {
  return withCode(new TypeError(`Illegal constructor: ${how}`), 'ERR_ILLEGAL_CONSTRUCTOR');
}

/** TypeError ERR_INVALID_ARG_VALUE for bytes to send whose ArrayBuffer was transferred away. */
export function detachedError(name: string): TypeError & { code: string } {
  return invalidArgValue(name, 'is a view of a detached ArrayBuffer (it was transferred); it has no bytes to send');
}

/** As Node's AbortError: name 'AbortError', code 'ABORT_ERR', the signal's reason as its cause. */
export function abortError(signal: AbortSignal): CodedError {
  const err = withCode(new Error('The operation was aborted', { cause: signal.reason }), 'ABORT_ERR');
  err.name = 'AbortError';
  return err;
}

/**
 * An integer from `min` to `max`: ERR_INVALID_ARG_TYPE if not a number,
 * ERR_OUT_OF_RANGE otherwise. A bound at the safe-integer limit goes unsaid.
 */
export function validateInteger(
  value: unknown,
  name: string,
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    const bounds = [min > Number.MIN_SAFE_INTEGER ? `>= ${min}` : '', max < Number.MAX_SAFE_INTEGER ? `<= ${max}` : ''];
    throw outOfRange(name, ['an integer', bounds.filter(Boolean).join(' && ')].filter(Boolean).join(' '), value);
  }
  return value;
}

/** An fd number: an integer from 0 to 2147483647. */
export function validateFd(value: unknown, name: string): number {
  return validateInteger(value, name, 0, INT32_MAX);
}

/** A string the kernel can take: C strings end at the first NUL byte. */
export function validateCString(value: unknown, name: string): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
  if (value.includes('\0')) throw invalidArgValue(name, 'must be a string without null bytes', value);
  return value;
}

/** An options argument: `{}` for undefined, else an object (not null, not an array). */
export function optionsObject(value: unknown, name = 'options'): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(name, 'of type object', value);
  }
  return value as Record<string, unknown>;
}

/** `options[key]` as a boolean, `fallback` when undefined; the error names `${prefix}.${key}`. */
export function optionalBoolean(options: Record<string, unknown>, key: string, fallback: boolean, prefix = 'options'): boolean {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalidArgType(`${prefix}.${key}`, 'of type boolean', value);
  return value;
}

/** `options[key]` as an integer from `min` to `max`, `fallback` when undefined; the error names `${prefix}.${key}`. */
export function optionalInteger(
  options: Record<string, unknown>,
  key: string,
  fallback: number,
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
  prefix = 'options',
): number {
  const value = options[key];
  return value === undefined ? fallback : validateInteger(value, `${prefix}.${key}`, min, max);
}

/**
 * An optional AbortSignal, recognised as Node's own APIs do (any object with
 * `aborted`, so a signal from another realm works).
 */
export function validateAbortSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value !== undefined && (value === null || typeof value !== 'object' || !('aborted' in value))) {
    throw invalidArgType(name, 'an instance of AbortSignal', value);
  }
  return value as AbortSignal | undefined;
}
