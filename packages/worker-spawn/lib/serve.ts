// The child's side of the worker protocol, for Node: what runs inside a
// worker process started by spawnWorker / WorkerPool with
// `command: process.execPath`. The package exports it as
// `@folk/worker-spawn/worker`.
//
//   import { serve } from '@folk/worker-spawn/worker';
//   serve((payload) => payload.toString().toUpperCase());

import { EventEmitter } from 'node:events';
import { fstatSync } from 'node:fs';
import * as net from 'node:net';
import { FdSocket, closeFds } from '@folk/scm-rights';
import { RESERVED_CONTROL_TYPES, decodeMessage, encodeMessage, type ControlMessage } from './control-channel.js';
import { illegalConstructor, invalidArgType, invalidArgValue, optionsObject } from './internal/args.js';
import { CONTROL_MAX, DEFAULT_MAX_FRAME, FrameDecoder, FrameFlags, FrameType, MAX_FRAME_LIMIT, encodeErrorBody, encodeFrame, toPayload } from './protocol.js';

/** What a handler learns about the task besides its payload. */
export interface TaskInfo {
  /** The request id the supervisor chose. */
  id: number;
  /**
   * Send the next piece of the answer now; what the handler returns is the
   * last piece. Resolves once the piece is written (the caller may reuse
   * its buffer then): a supervisor that reads slowly slows the handler
   * here. When the supervisor takes no parts (no `onPart` on its side), the
   * pieces are held and sent joined with the last one, up to FOLK_MAX_FRAME
   * in all. Rejects after the handler has returned.
   */
  part(chunk: string | Uint8Array): Promise<void>;
}

/** The answer a handler is giving: its pieces go out as PART frames, or are held for the end. */
interface Answer {
  id: number;
  /** The REQUEST was flagged PARTS. */
  parts: boolean;
  held: Buffer[];
  done: boolean;
}

/** A task handler: return (or resolve with) the response bytes; throw to answer with an error. */
export type TaskHandler = (payload: Buffer, task: TaskInfo) => string | Uint8Array | Promise<string | Uint8Array>;

export interface ServeOptions {
  /** Descriptors the supervisor sends (e.g. a listening socket). They are yours to close. Default: close them. */
  onFds?: (fds: number[], tag: string, meta: unknown) => void;
}

/** Exit status when started without the fds/environment of the pattern (EX_CONFIG). */
export const EXIT_CONFIG = 78;
/** Exit status after the supervisor sent something that is not the protocol (EX_PROTOCOL). */
export const EXIT_PROTOCOL = 76;

const CONSTRUCT: unique symbol = Symbol('WorkerConnection');

/** Longest error report sent whole; see reportError(). */
const REPORT_MAX = 8192;

type Item = { kind: 'frame'; type: number; id: number; payload: Buffer; flags: number } | { kind: 'oversize'; id: number; length: number };

/**
 * The worker's connection to its supervisor. Emits `'stop'` when asked to
 * stop or when the supervisor goes away; the process then exits once the
 * task in hand is answered. Emits `'message'` (message, fds) for control
 * messages of the supervisor's own types (WorkerPool's `send()`): the fds
 * are the listener's to close. Messages that come before the first
 * `'message'` listener wait for it.
 */
export class WorkerConnection extends EventEmitter {
  /** FOLK_MAX_FRAME: the largest payload per frame. */
  readonly maxFrame: number;
  /** FOLK_RUNTIME. */
  readonly runtime: string;
  readonly #task: net.Socket;
  readonly #control: FdSocket;
  readonly #handler: TaskHandler;
  readonly #onFds: ServeOptions['onFds'];
  #items: Item[] = [];
  #busy = false;
  #stopping = false;
  #exiting = false;
  #exitCode = 0;
  /** Control messages that came before any 'message' listener: [message, fds]. */
  #unheard: [ControlMessage, number[]][] = [];

  /** @internal */
  constructor(token: typeof CONSTRUCT, handler: TaskHandler, options: ServeOptions) {
    // By hand it would take over fds 3 and 4 (or exit the process, 78) unasked.
    if (token !== CONSTRUCT) throw illegalConstructor('a WorkerConnection comes from serve()');
    super();
    const taskFd = socketFd(envFd('FOLK_TASK_FD'));
    const controlFd = socketFd(envFd('FOLK_CONTROL_FD'));
    if (taskFd === controlFd) configError('FOLK_TASK_FD and FOLK_CONTROL_FD name the same fd');
    this.maxFrame = maxFrameFromEnv();
    this.runtime = process.env['FOLK_RUNTIME'] ?? 'pipe';
    this.#handler = handler;
    this.#onFds = options.onFds;

    // Sockets of the wrong kind are the supervisor's mistake, like missing
    // ones: a configuration error (78), not a stack trace from a constructor.
    try {
      this.#task = new net.Socket({ fd: taskFd, readable: true, writable: true });
    } catch {
      configError(`fd ${taskFd} (FOLK_TASK_FD) is not a stream socket`);
    }
    let control: FdSocket | undefined;
    try {
      control = new FdSocket(controlFd, { maxMessageBytes: CONTROL_MAX });
    } catch {
      // not AF_UNIX seqpacket/stream, or watched already
    }
    if (control?.type !== 'seqpacket') configError(`fd ${controlFd} (FOLK_CONTROL_FD) is not a seqpacket socket`);
    this.#control = control;

    const decoder = new FrameDecoder(this.maxFrame, {
      frame: (type, id, payload, flags) => this.#push({ kind: 'frame', type, id, payload, flags }),
      oversize: (_type, id, length) => this.#push({ kind: 'oversize', id, length }),
      corrupt: (err) => {
        // The stream cannot be resynchronised (PROTOCOL.md): tell the
        // supervisor (a fatal 'workerError' there), say it on stderr, and
        // leave with a failure status once the task in hand is answered.
        process.stderr.write(`folk worker: ${err.message}\n`);
        this.reportError(err.message, true);
        this.#exitCode = EXIT_PROTOCOL;
        this.#stop();
      },
    });
    this.#task.on('data', (chunk: Buffer) => decoder.push(chunk));
    this.#task.on('end', () => this.#stop());
    this.#task.on('error', () => this.#stop());
    this.#control.on('message', ({ data, fds }) => this.#controlMessage(data, fds));
    this.on('newListener', (event) => {
      if (event === 'message' && this.#unheard.length > 0) setImmediate(() => this.#deliverUnheard());
    });
    this.#control.on('end', () => this.#stop());
    this.#control.on('error', () => this.#stop());

    this.#sendControl({
      type: 'ready',
      pid: process.pid,
      protocol: 1,
      runtime: this.runtime,
      lang: 'node',
      version: process.version,
    });
  }

  /** Send an error report to the supervisor (it becomes a 'workerError' event there). */
  reportError(message: string, fatal = false): void {
    // A control datagram is at most 64 KiB (PROTOCOL.md) and the supervisor
    // drops the control socket on a larger one. 8192 UTF-16 units stay under
    // that even if JSON escapes every one of them (6 bytes each).
    let text = describeThrown(message, false);
    if (text.length > REPORT_MAX) text = `${text.slice(0, REPORT_MAX)}... (${text.length - REPORT_MAX} characters cut)`;
    this.#sendControl({ type: 'error', message: text, fatal });
  }

  /**
   * Send a control message of your own to the supervisor (WorkerPool's and
   * WorkerHandle's `'message'` event), with `fds` attached by SCM_RIGHTS:
   * the supervisor gets its own copies, yours stay open. Resolves once it
   * is in the supervisor's socket buffer. Rejects, with nothing sent, with
   * `ERR_INVALID_ARG_TYPE` for a message that is not an object with a
   * string `type`, `ERR_INVALID_ARG_VALUE` for a type the library uses
   * itself (RESERVED_CONTROL_TYPES) or what JSON cannot encode,
   * `ERR_OUT_OF_RANGE` over 64 KiB of JSON or 253 fds, and the errors of
   * `@folk/scm-rights`'s `FdSocket.send()` for fds that are not open.
   */
  send(message: ControlMessage, fds: number[] = []): Promise<void> {
    let body: Buffer;
    try {
      if (message !== null && typeof message === 'object' && RESERVED_CONTROL_TYPES.includes(message.type)) {
        throw invalidArgValue('message.type', `must not be one of the library's own types (${RESERVED_CONTROL_TYPES.join(', ')})`, message.type);
      }
      body = encodeMessage(message);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#control.send(body, fds);
  }

  #deliverUnheard(): void {
    const unheard = this.#unheard;
    this.#unheard = [];
    for (const [message, fds] of unheard) this.#hear(message, fds);
  }

  /** A message of the supervisor's own type: to the 'message' listeners, or kept until there is one. */
  #hear(message: ControlMessage, fds: number[]): void {
    if (this.listenerCount('message') === 0) this.#unheard.push([message, fds]);
    else this.emit('message', message, fds);
  }

  #sendControl(message: object): void {
    this.#control.send(Buffer.from(JSON.stringify(message))).catch(() => this.#stop());
  }

  #controlMessage(data: Buffer, fds: number[]): void {
    let message: ControlMessage;
    try {
      // JSON of anything but an object with a string type (null, 5, {"type":true}) is no message either.
      message = decodeMessage(data);
    } catch {
      closeFds(fds);
      this.reportError(`unreadable control message: ${data.subarray(0, 200).toString('utf8')}`);
      return;
    }
    if (message.type === 'stop') {
      closeFds(fds);
      this.#stop();
    } else if (message.type === 'fds' && this.#onFds) {
      this.#onFds(fds, String(message['tag'] ?? ''), message['meta'] ?? null);
    } else if (!RESERVED_CONTROL_TYPES.includes(message.type)) {
      this.#hear(message, fds);
    } else {
      closeFds(fds); // fds nobody asked for are dropped
    }
  }

  #push(item: Item): void {
    this.#items.push(item);
    if (!this.#busy) void this.#drain();
  }

  /** Serve queued requests one at a time, in order. */
  async #drain(): Promise<void> {
    this.#busy = true;
    for (let item = this.#items.shift(); item; item = this.#items.shift()) {
      if (item.kind === 'oversize') {
        this.#error(item.id, 'FRAME_TOO_LARGE', `request of ${item.length} bytes exceeds the maximum frame size of ${this.maxFrame} bytes (FOLK_MAX_FRAME)`);
        continue;
      }
      if (item.type === FrameType.WAKE) continue; // this library reads fd 4 as messages arrive
      if (item.type !== FrameType.REQUEST) {
        this.#error(item.id, 'BAD_FRAME', `a worker accepts only REQUEST frames (type 1), got type ${item.type}`);
        continue;
      }
      const answer: Answer = { id: item.id, parts: (item.flags & FrameFlags.PARTS) !== 0, held: [], done: false };
      try {
        const returned = await this.#handler(item.payload, { id: item.id, part: (chunk) => this.#part(answer, chunk) });
        answer.done = true;
        const last = toPayload(returned, 'handler result');
        const result = answer.held.length > 0 ? Buffer.concat([...answer.held, last]) : last;
        if (result.byteLength > this.maxFrame) {
          this.#error(
            item.id,
            'FRAME_TOO_LARGE',
            `response of ${result.byteLength} bytes exceeds the maximum frame size of ${this.maxFrame} bytes (FOLK_MAX_FRAME)`,
          );
        } else {
          this.#write(FrameType.RESPONSE, item.id, result);
        }
      } catch (err) {
        answer.done = true;
        this.#error(item.id, 'HANDLER_ERROR', describeThrown(err));
      }
    }
    this.#busy = false;
    if (this.#stopping) this.#exit();
  }

  #write(type: number, id: number, payload: Uint8Array): void {
    for (const buf of encodeFrame(type, id, payload)) this.#task.write(buf);
  }

  /** TaskInfo.part(): PART frames of at most maxFrame bytes, resolved once written; or held for the end. */
  async #part(answer: Answer, chunk: string | Uint8Array): Promise<void> {
    if (answer.done) throw new Error(`task ${answer.id} is answered already: part() must come before its handler returns`);
    const bytes = toPayload(chunk, 'chunk');
    if (!answer.parts) {
      answer.held.push(Buffer.from(bytes)); // a copy: the caller may reuse its buffer
      return;
    }
    const written: Promise<void>[] = [];
    for (let at = 0; at < bytes.byteLength; at += this.maxFrame) {
      for (const buf of encodeFrame(FrameType.PART, answer.id, bytes.subarray(at, at + this.maxFrame))) {
        written.push(new Promise((resolve, reject) => this.#task.write(buf, (err) => (err ? reject(err) : resolve()))));
      }
    }
    await Promise.all(written);
  }

  #error(id: number, code: string, message: string): void {
    this.#write(FrameType.ERROR, id, encodeErrorBody(code, message, this.maxFrame));
  }

  #stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.emit('stop');
    if (!this.#busy) this.#exit();
  }

  /** Flush what was written, then leave: the handler may hold timers or servers that would keep us alive. */
  #exit(): void {
    if (this.#exiting) return;
    this.#exiting = true;
    this.#control.close();
    const code = this.#exitCode;
    if (this.#task.destroyed || !this.#task.writable) process.exit(code);
    this.#task.end(() => process.exit(code));
    // A supervisor that stopped reading must not keep us here.
    setTimeout(() => process.exit(code), 1000).unref();
  }
}

/**
 * What a handler threw (or reportError() was given), as text: `Name: message`
 * for an Error. Never throws itself: a value whose property reads or String()
 * throw (a Proxy, a null-prototype object) would otherwise escape #drain as
 * an unhandled rejection, end the worker, and leave its task unanswered.
 */
function describeThrown(value: unknown, asError = true): string {
  try {
    if (asError && value instanceof Error) return `${value.name}: ${value.message}`;
    return String(value);
  } catch {
    const type = typeof value;
    return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type} that cannot be described (reading it threw)`;
  }
}

/** Not started by a folk supervisor: say so and exit 78, as PROTOCOL.md asks. */
function configError(message: string): never {
  process.stderr.write(`folk worker: ${message}: start this script with @folk/worker-spawn\n`);
  process.exit(EXIT_CONFIG);
}

/** FOLK_MAX_FRAME: unset (or not a number) means the default; a number outside 1 .. 2^32-1 is a configuration error. */
function maxFrameFromEnv(): number {
  const value = process.env['FOLK_MAX_FRAME'];
  if (value === undefined || !/^[0-9]+$/.test(value)) return DEFAULT_MAX_FRAME;
  const max = Number(value);
  if (max < 1 || max > MAX_FRAME_LIMIT) configError(`FOLK_MAX_FRAME is not a frame size (1 to ${MAX_FRAME_LIMIT} bytes): '${value}'`);
  return max;
}

function envFd(name: string): number {
  const value = process.env[name];
  if (value === undefined || !/^[0-9]+$/.test(value)) configError(`${name} is not set`);
  return Number(value);
}

/** `fd`, if it is an open socket (net.Socket would throw on anything else). */
function socketFd(fd: number): number {
  let socket = false;
  try {
    socket = fstatSync(fd).isSocket();
  } catch {
    // EBADF: not open.
  }
  if (!socket) configError(`fd ${fd} is not an open socket`);
  return fd;
}

/**
 * Serve tasks in this worker process: call `handler` for each request, in
 * order, one at a time, and send back what it returns (a string is sent as
 * UTF-8). A thrown error becomes an ERROR frame (`HANDLER_ERROR`) and the
 * loop goes on. Sends the ready handshake; exits the process with status 0
 * when the supervisor says stop or goes away.
 */
export function serve(handler: TaskHandler, options?: ServeOptions): WorkerConnection {
  if (typeof handler !== 'function') throw invalidArgType('handler', 'of type function', handler);
  const opts = optionsObject(options);
  if (opts['onFds'] !== undefined && typeof opts['onFds'] !== 'function') {
    throw invalidArgType('options.onFds', 'of type function', opts['onFds']);
  }
  return new WorkerConnection(CONSTRUCT, handler, opts as ServeOptions);
}
