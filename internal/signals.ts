// Signals by name or number, as kill() and spawn options take them, and the
// name of a number, as exit information gives it.
import { constants } from 'node:os';
import { invalidArgType, validateInteger, withCode } from './args.js';

const SIGNAL_NUMBERS = constants.signals as Record<string, number>;
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, number] of Object.entries(SIGNAL_NUMBERS)) {
  // Aliases (SIGIOT, SIGPOLL) come after the names the kernel documents.
  if (!SIGNAL_NAMES.has(number)) SIGNAL_NAMES.set(number, name as NodeJS.Signals);
}
/** _NSIG - 1 on Linux: the real-time signals end at 64. */
const MAX_SIGNAL = 64;

/**
 * A signal name or number as its number: a number from `min` (0 is kill()'s
 * "does it exist?") to 64, or a name Node knows (ERR_UNKNOWN_SIGNAL otherwise).
 */
export function signalNumber(value: unknown, name: string, min = 0): number {
  if (typeof value === 'number') return validateInteger(value, name, min, MAX_SIGNAL);
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string or number', value);
  if (!Object.hasOwn(SIGNAL_NUMBERS, value)) throw withCode(new TypeError(`Unknown signal: ${value}`), 'ERR_UNKNOWN_SIGNAL');
  return SIGNAL_NUMBERS[value]!;
}

/** The name of signal `number` (the first name the kernel documents for it), or null. */
export function signalName(number: number): NodeJS.Signals | null {
  return SIGNAL_NAMES.get(number) ?? null;
}
