// The signals a child gets back at their defaults; names and numbers come
// from internal/signals.ts.
import { constants as osConstants } from 'node:os';

const SIGNALS = osConstants.signals as Record<string, number>;

/** What Node ignores for itself (and CPython's restore_signals resets too). */
export const RESTORED_SIGNALS: readonly number[] = [SIGNALS['SIGPIPE']!, SIGNALS['SIGXFSZ']!];
