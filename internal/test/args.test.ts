// internal/args.ts: the words are pinned to Node's own errors for the same
// values (Buffer.alloc's "size", spawnSync's "options.cwd", events.once's
// "options.signal"), and nothing a caller passes makes describing it throw.
import { spawnSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { describe as group, expect, it } from 'vitest';
import {
  abortError,
  describe,
  detachedError,
  illegalConstructor,
  invalidArgType,
  invalidArgValue,
  optionalBoolean,
  optionalInteger,
  optionsObject,
  outOfRange,
  shown,
  validateAbortSignal,
  validateCString,
  validateFd,
  validateInteger,
} from '../args.js';

/** The error `fn` throws (the test fails if it returns). */
function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('did not throw');
}

class Custom {}

group('invalidArgType', () => {
  it.each<[string, unknown]>([
    ['a string', '3'],
    ['a long string', 'a'.repeat(40)],
    ['a string with a quote', "it's"],
    ['a bigint', 10n],
    ['a boolean', true],
    ['a symbol', Symbol('x')],
    ['undefined', undefined],
    ['null', null],
    ['an array', []],
    ['a plain object', {}],
    ['a Map', new Map()],
    ['an instance of a class', new Custom()],
    ['a null-prototype object', Object.create(null)],
    ['a named function', function f() {}],
    ['an anonymous function', [() => {}][0]],
    ['a class', class K {}],
  ])('says what it received as Node does: %s', (_what, value) => {
    const ours = invalidArgType('size', 'of type number', value);
    const node = thrown(() => Buffer.alloc(value as number));
    expect(ours).toBeInstanceOf(TypeError);
    expect(ours.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(ours.message).toBe(node.message);
  });

  it('includes the value for a number, as Node does: "Received type number (5)"', () => {
    expect(invalidArgType('fd', 'of type string', 5).message).toBe('The "fd" argument must be of type string. Received type number (5)');
    expect(invalidArgType('fd', 'of type string', -0).message).toMatch(/Received type number \(-0\)$/);
  });

  it('calls a dotted name a property, as Node does', () => {
    const expected = 'of type string or an instance of Buffer or URL';
    const node = thrown(() => spawnSync('true', [], { cwd: 5 as never }));
    expect(invalidArgType('options.cwd', expected, 5).message).toBe(node.message);
  });

  it('never throws, and runs no code of the value: Proxies, revoked Proxies, getters, null prototypes', () => {
    let ran = 0;
    const trap = (): never => {
      ran++;
      throw new Error('trap ran');
    };
    const hostile = new Proxy({}, { get: trap, getPrototypeOf: trap, getOwnPropertyDescriptor: trap, has: trap, ownKeys: trap });
    const revocable = Proxy.revocable({}, {});
    revocable.revoke();
    const fnProxy = new Proxy(function named() {}, { get: trap, getOwnPropertyDescriptor: trap });
    const getterCtor = Object.create({
      get constructor() {
        return trap();
      },
    });
    const protoProxy = Object.create(new Proxy({}, { get: trap, getOwnPropertyDescriptor: trap }));
    const staticName = class {
      static get name(): string {
        return trap();
      }
    };
    const tagged = Object.defineProperty(Object.create(null), Symbol.toStringTag, { get: trap });
    const inspectable = Object.assign(Object.create(null), { [Symbol.for('nodejs.util.inspect.custom')]: trap });
    const cases: [unknown, string][] = [
      [hostile, 'type object (a Proxy)'],
      [revocable.proxy, 'type object (a Proxy)'],
      [fnProxy, 'type function (a Proxy)'],
      [getterCtor, 'type object'],
      [protoProxy, 'type object'],
      [new staticName(), 'type object'],
      [staticName, 'type function'],
      [tagged, '[Object: null prototype]'],
      [inspectable, '[Object: null prototype]'],
    ];
    for (const [value, words] of cases) {
      const message = invalidArgType('x', 'of type number', value).message;
      expect(message).toMatch(/^The "x" argument must be of type number\. Received ./);
      if (words) expect(message).toContain(`Received ${words}`);
      expect(shown(value)).toBe(describe(value));
      expect(invalidArgValue('x', 'is wrong', value).message).toMatch(/^The "x" argument is wrong\. Received ./);
      expect(outOfRange('x', 'small', value).message).toMatch(/Received ./);
    }
    expect(ran).toBe(0);
  });
});

group('invalidArgValue', () => {
  it('says why, and shows a primitive as util.inspect writes it, an object as invalidArgType would', () => {
    const err = invalidArgValue('type', "must be one of 'stream', 'seqpacket'", 'raw');
    expect(err).toBeInstanceOf(TypeError);
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: `The "type" argument must be one of 'stream', 'seqpacket'. Received 'raw'` });
    expect(invalidArgValue('fd', 'must be a pidfd', 3).message).toBe('The "fd" argument must be a pidfd. Received 3');
    expect(invalidArgValue('options.stdout', 'is odd', []).message).toBe('The "options.stdout" property is odd. Received an instance of Array');
    expect(invalidArgValue('x', 'is odd', 'y'.repeat(200)).message).toMatch(/Received 'y{127}\.\.\.$/);
  });

  it('without a value, says only why', () => {
    expect(invalidArgValue('fd', 'is a listening socket').message).toBe('The "fd" argument is a listening socket');
    expect(invalidArgValue('fd', 'is odd', undefined).message).toBe('The "fd" argument is odd. Received undefined');
  });
});

group('outOfRange and validateInteger', () => {
  it('writes large integers with separators, as Node does', () => {
    expect(outOfRange('n', 'small', 2 ** 40).message).toBe('The value of "n" is out of range. It must be small. Received 1_099_511_627_776');
    expect(outOfRange('n', 'small', -(2 ** 40)).message).toMatch(/Received -1_099_511_627_776$/);
    expect(outOfRange('n', 'small', 2n ** 40n).message).toMatch(/Received 1_099_511_627_776n$/);
    expect(outOfRange('n', 'small', 5n).message).toMatch(/Received 5n$/);
    expect(outOfRange('n', 'small', 4294967295).message).toMatch(/Received 4294967295$/);
    expect(outOfRange('n', 'small', 1.5).message).toMatch(/Received 1\.5$/);
    expect(outOfRange('n', 'small', 1.5)).toBeInstanceOf(RangeError);
  });

  it('a number of the wrong kind is ERR_OUT_OF_RANGE naming both bounds; not a number, ERR_INVALID_ARG_TYPE', () => {
    for (const bad of [-1, 2 ** 31, 1.5, NaN, Infinity]) {
      const err = thrown(() => validateFd(bad, 'fd'));
      expect(err).toBeInstanceOf(RangeError);
      expect(err.code).toBe('ERR_OUT_OF_RANGE');
      expect(err.message).toContain('It must be an integer >= 0 && <= 2147483647.');
    }
    expect(thrown(() => validateFd('3', 'fd'))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining("Received type string ('3')") });
    expect(validateFd(0, 'fd')).toBe(0);
    expect(validateFd(2 ** 31 - 1, 'fd')).toBe(2 ** 31 - 1);
  });

  it('leaves a bound at the safe-integer limit unsaid', () => {
    expect(thrown(() => validateInteger(0, 'n', 1)).message).toContain('It must be an integer >= 1.');
    expect(thrown(() => validateInteger(9, 'n', undefined, 8)).message).toContain('It must be an integer <= 8.');
    expect(thrown(() => validateInteger(0.5, 'n')).message).toContain('It must be an integer.');
  });
});

group('options', () => {
  it('optionsObject: {} for undefined, the object itself, and a TypeError for anything else', () => {
    expect(optionsObject(undefined)).toEqual({});
    const o = { a: 1 };
    expect(optionsObject(o)).toBe(o);
    for (const bad of [null, [], 'x', 5, () => {}]) {
      expect(thrown(() => optionsObject(bad))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    }
    expect(thrown(() => optionsObject(5, 'options.backoff')).message).toBe(
      'The "options.backoff" property must be of type object. Received type number (5)',
    );
  });

  it('optionalBoolean and optionalInteger: the fallback for undefined, the value, or an error naming prefix.key', () => {
    expect(optionalBoolean({}, 'reap', true)).toBe(true);
    expect(optionalBoolean({ reap: false }, 'reap', true)).toBe(false);
    expect(thrown(() => optionalBoolean({ reap: 1 }, 'reap', false)).message).toBe(
      'The "options.reap" property must be of type boolean. Received type number (1)',
    );
    expect(thrown(() => optionalBoolean({ on: 'x' }, 'on', false, 'options.backoff')).message).toContain('"options.backoff.on"');
    expect(optionalInteger({}, 'size', 4, 1)).toBe(4);
    expect(optionalInteger({ size: 2 }, 'size', 4, 1)).toBe(2);
    expect(thrown(() => optionalInteger({ size: 0 }, 'size', 4, 1, 10)).message).toBe(
      'The value of "options.size" is out of range. It must be an integer >= 1 && <= 10. Received 0',
    );
    expect(thrown(() => optionalInteger({ ms: 'x' }, 'ms', 4, 0, undefined, 'options.backoff')).message).toContain('"options.backoff.ms"');
  });

  it('validateAbortSignal: as events.once checks options.signal', async () => {
    const signal = new AbortController().signal;
    expect(validateAbortSignal(signal, 'options.signal')).toBe(signal);
    expect(validateAbortSignal(undefined, 'options.signal')).toBeUndefined();
    // A signal of another realm is recognised by its shape, as Node does.
    const foreign = { aborted: false, addEventListener() {}, removeEventListener() {} };
    expect(validateAbortSignal(foreign, 'options.signal')).toBe(foreign);
    for (const bad of [5, null, 'soon', {}]) {
      const node = await once(new EventEmitter(), 'x', { signal: bad as never }).then(
        () => new Error('resolved'),
        (err: Error) => err,
      );
      expect(thrown(() => validateAbortSignal(bad, 'options.signal')).message).toBe(node.message);
    }
  });

  it('validateCString refuses a NUL byte, which would cut a C string short', () => {
    expect(validateCString('/bin/true', 'file')).toBe('/bin/true');
    expect(thrown(() => validateCString('a\0b', 'file'))).toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
      message: `The "file" argument must be a string without null bytes. Received 'a\\x00b'`,
    });
    expect(thrown(() => validateCString(1, 'file')).code).toBe('ERR_INVALID_ARG_TYPE');
  });
});

group('other errors', () => {
  it('abortError is shaped as Node reports an aborted operation, the reason as cause', async () => {
    const controller = new AbortController();
    controller.abort(new Error('changed my mind'));
    const node = await once(new EventEmitter(), 'x', { signal: controller.signal }).then(
      () => new Error('resolved'),
      (err: Error & { code?: string }) => err,
    );
    const ours = abortError(controller.signal);
    expect(ours).toMatchObject({ name: node.name, code: (node as { code?: string }).code, message: node.message });
    expect(ours.cause).toBe(controller.signal.reason);
  });

  it('illegalConstructor and detachedError', () => {
    expect(illegalConstructor('use PidFd.open(pid)')).toMatchObject({
      name: 'TypeError',
      code: 'ERR_ILLEGAL_CONSTRUCTOR',
      message: 'Illegal constructor: use PidFd.open(pid)',
    });
    expect(detachedError('data')).toMatchObject({
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_VALUE',
      message: 'The "data" argument is a view of a detached ArrayBuffer (it was transferred); it has no bytes to send',
    });
  });
});
