// The errors this package makes itself, shaped like Node's (argument errors
// come from ./internal/args.ts).
import { getSystemErrorMap } from 'node:util';
import { withCode, type CodedError } from './internal/args.js';

export type SystemError = CodedError & { errno?: number; syscall?: string };

export function codeError(code: string, message: string): CodedError {
  return withCode(new Error(message), code);
}

/** A Node-style system error from a negative errno, as libuv reports them. */
export function errnoError(errno: number, syscall: string): SystemError {
  const [code, description] = getSystemErrorMap().get(errno) ?? ['UNKNOWN', 'unknown error'];
  return Object.assign(new Error(`${code}: ${description}, ${syscall}`), { errno, code, syscall });
}

export function socketClosed(): CodedError {
  return codeError('ERR_SOCKET_CLOSED', 'The FdSocket was closed before the message was sent');
}
