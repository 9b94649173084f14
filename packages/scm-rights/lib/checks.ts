// The argument checks only this package needs, on top of ./internal/args.ts.
import { types } from 'node:util';
import { detachedError, invalidArgType, outOfRange, validateFd } from './internal/args.js';
import { native } from './native.js';

/** Bytes to send: any ArrayBufferView. */
export function validateData(value: unknown, name: string): asserts value is ArrayBufferView {
  if (!ArrayBuffer.isView(value)) throw invalidArgType(name, 'an instance of Buffer, TypedArray, or DataView', value);
  // A typed array over a detached (transferred) buffer reads as empty; a
  // DataView throws a bare TypeError on every read of its size instead.
  if (types.isDataView(value)) {
    try {
      void value.byteLength;
    } catch {
      throw detachedError(name);
    }
  }
}

const NO_FDS: readonly number[] = Object.freeze([]);

/**
 * The fds as checked: a copy, each element read once, so what reaches the
 * binding is what was validated (an array whose getters or length change
 * between reads would otherwise hand it a value nobody checked).
 */
export function checkedFds(value: unknown): number[] {
  if (!Array.isArray(value)) throw invalidArgType('fds', 'an array of fd numbers', value);
  const length = value.length;
  // Checked before the syscall: the kernel would say only EINVAL.
  if (length > native.SCM_MAX_FD) {
    throw outOfRange('fds.length', `<= ${native.SCM_MAX_FD} (SCM_MAX_FD, the most fds one message carries)`, length);
  }
  if (length === 0) return NO_FDS as number[];
  const fds = new Array<number>(length);
  for (let i = 0; i < length; i++) {
    const fd: unknown = value[i];
    // The name is only built for an error: this runs on every send.
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) validateFd(fd, `fds[${i}]`);
    fds[i] = fd as number;
  }
  return fds;
}
