// ControlChannel: the supervisor's end of a worker's control socket (fd 4)
// as PROTOCOL.md uses it: one JSON message per datagram, fds attached.

import { EventEmitter } from 'node:events';
import type { FdSocket } from '@folk/scm-rights';
import { illegalConstructor, invalidArgType, invalidArgValue, optionsObject, validateCString } from './internal/args.js';
import { CONTROL_MAX } from './protocol.js';

/** What a worker says when it is ready (see PROTOCOL.md). */
export interface ReadyMessage {
  type: 'ready';
  pid: number;
  protocol: number;
  runtime: string;
  lang: string;
  version: string;
  [key: string]: unknown;
}

/** A control message (see PROTOCOL.md); `type` says which. */
export interface ControlMessage {
  type: string;
  [key: string]: unknown;
}

/**
 * Control message types the library sends and handles itself (PROTOCOL.md):
 * `ready` and `error` from a worker, `stop` and `fds` to one. A pool's
 * `send()` refuses them, its `'message'` event never carries them, and the
 * PHP library's `send()` and `onMessage()` treat them the same way.
 */
export const RESERVED_CONTROL_TYPES: readonly string[] = Object.freeze(['ready', 'error', 'stop', 'fds']);

/** Only a WorkerHandle constructs its ControlChannel. @internal */
export const CONSTRUCT_CONTROL: unique symbol = Symbol('ControlChannel');

/** What a ControlChannel asks of the WorkerHandle that owns it. @internal */
export interface ControlHooks {
  /** Ring the doorbell on the task socket: a message is waiting on fd 4. */
  wake(): void;
  /** One message from the worker, with its fds. */
  receive(message: ControlMessage, fds: number[]): void;
  /** The worker broke the protocol on fd 4 (`what` follows "worker pid N "): it must be killed. */
  breach(what: string): void;
  /** Why nothing may be sent to the worker now (it broke the protocol and is being killed), or null. */
  refusal(): Error | null;
}

/**
 * A control datagram as a message (PROTOCOL.md), on either side.
 * @throws Error saying why it is none: not JSON, or JSON of anything but an object with a string `type` @internal
 */
export function decodeMessage(data: Buffer): ControlMessage {
  const parsed: unknown = JSON.parse(data.toString('utf8'));
  if (parsed === null || typeof parsed !== 'object' || typeof (parsed as ControlMessage).type !== 'string') {
    throw new Error('not an object with a string "type"');
  }
  return parsed as ControlMessage;
}

/** A datagram from the worker as a message; one that is not JSON with a string `type` becomes a non-fatal `error`. */
function parseMessage(data: Buffer): ControlMessage {
  try {
    return decodeMessage(data);
  } catch (err) {
    return { type: 'error', message: `unreadable control message from the worker: ${(err as Error).message}`, fatal: false };
  }
}

/** `message` as the datagram to send. @throws for what cannot be one @internal */
export function encodeMessage(message: ControlMessage): Buffer {
  if (message === null || typeof message !== 'object' || typeof message.type !== 'string') {
    throw invalidArgType('message', 'an object with a string "type"', message);
  }
  let json: string;
  try {
    json = JSON.stringify(message);
  } catch (err) {
    throw invalidArgValue('message', `cannot be sent as JSON: ${(err as Error).message}`);
  }
  const body = Buffer.from(json);
  if (body.length > CONTROL_MAX) {
    const err = new RangeError(`The "message" argument must be at most ${CONTROL_MAX} bytes as JSON (one control datagram); this one is ${body.length}`);
    (err as NodeJS.ErrnoException).code = 'ERR_OUT_OF_RANGE';
    throw err;
  }
  return body;
}

/**
 * The supervisor's end of the control socket (a SOCK_SEQPACKET pair, one
 * JSON message per datagram). Sends messages, with fds when asked, and
 * emits what the worker sends:
 * - `'message'` (message, fds): every message. Fds a worker sends along
 *   belong to this event's listeners (close each once); with none here they
 *   go to the WorkerHandle's `'message'` listeners, and with none there either
 *   they are closed before anything is emitted (see WorkerHandle#receive).
 * - `'close'`.
 */
export class ControlChannel extends EventEmitter {
  /** The underlying message socket (from @folk/scm-rights). */
  readonly socket: FdSocket;
  readonly #hooks: ControlHooks;
  readonly #wake: () => void;

  /** @internal */
  constructor(token: typeof CONSTRUCT_CONTROL, socket: FdSocket, hooks: ControlHooks) {
    if (token !== CONSTRUCT_CONTROL) throw illegalConstructor("a ControlChannel comes from a WorkerHandle's `control`");
    super();
    this.socket = socket;
    this.#hooks = hooks;
    this.#wake = () => hooks.wake();
    socket.on('message', ({ data, fds }) => hooks.receive(parseMessage(data), fds));
    socket.on('error', (err: NodeJS.ErrnoException) => this.#failed(err));
    socket.on('close', () => this.emit('close'));
  }

  /**
   * The socket failed (it closes; the messages before the failure were all
   * delivered). EPIPE and ECONNRESET are the worker going away, which its
   * exit (the pidfd) reports. A datagram over CONTROL_MAX breaks the
   * protocol. Any other failure leaves a worker that can neither be told
   * to stop nor heard any more: it is killed the same way, saying why.
   */
  #failed(err: NodeJS.ErrnoException): void {
    if (err.code === 'EPIPE' || err.code === 'ECONNRESET') return;
    this.#hooks.breach(
      err.code === 'ERR_MESSAGE_TOO_LARGE'
        ? `sent a control datagram over ${CONTROL_MAX} bytes, the most one control message may be (PROTOCOL.md)`
        : `lost its control socket (fd 4: ${err.message})`,
    );
  }

  /**
   * Send one control message, with fds attached if given (the worker gets its
   * own copies). Bad arguments (no string `type`, JSON.stringify failing,
   * over 64 KiB of JSON, fds that are not fd numbers) reject, and nothing is
   * sent; so does a worker that broke the protocol and is being killed (with
   * the `ERR_WORKER_PROTOCOL` error saying how).
   */
  send(message: ControlMessage, fds: number[] = []): Promise<void> {
    const refused = this.#hooks.refusal();
    if (refused) return Promise.reject(refused);
    let sent: Promise<void>;
    try {
      // FdSocket.send throws (rather than rejects) for fds that are not fd numbers.
      sent = this.socket.send(encodeMessage(message), fds);
    } catch (err) {
      return Promise.reject(err);
    }
    // Once the datagram is in the worker's socket buffer, ring the doorbell
    // on the task socket: a worker blocked reading fd 3 then reads fd 4.
    return sent.then(this.#wake);
  }

  /**
   * Hand fds to the worker (for example a listening socket to accept on).
   * Yours stay open; close them when you no longer need them. Bad arguments
   * reject, as with send().
   */
  sendFds(fds: number[], options?: { tag?: string; meta?: unknown }): Promise<void> {
    let opts: Record<string, unknown>;
    let tag: string;
    try {
      opts = optionsObject(options);
      tag = opts.tag === undefined ? '' : validateCString(opts.tag, 'options.tag');
    } catch (err) {
      return Promise.reject(err);
    }
    if (!Array.isArray(fds) || fds.length === 0) {
      return Promise.reject(invalidArgType('fds', 'a non-empty array of fd numbers', fds));
    }
    return this.send({ type: 'fds', tag, count: fds.length, meta: opts['meta'] ?? null }, fds);
  }

  close(): void {
    this.socket.close();
  }
}
