// Signals by name or number, as options and kill() take them.
import { constants as osConstants } from 'node:os';
import { invalidArgType, validateInteger } from './internal/args.js';

type ErrnoException = NodeJS.ErrnoException;

const SIGNALS = osConstants.signals as Record<string, number>;

/** What Node ignores for itself (and CPython's restore_signals resets too). */
export const RESTORED_SIGNALS: readonly number[] = [SIGNALS['SIGPIPE']!, SIGNALS['SIGXFSZ']!];

/** A signal name or number (`min` to 64: 0 is kill()'s "does it exist?") as its number. */
export function signalNumber(value: unknown, name: string, min = 1): number {
  if (typeof value === 'number') return validateInteger(value, name, min, 64);
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string or number', value);
  if (!Object.hasOwn(SIGNALS, value)) {
    const err = new TypeError(`Unknown signal: ${value}`);
    (err as ErrnoException).code = 'ERR_UNKNOWN_SIGNAL';
    throw err;
  }
  return SIGNALS[value]!;
}
