// spawnWorker and Worker: one worker process with its task socket at fd 3 and
// its control socket at fd 4, composed from the four folk packages.

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { socketpair } from '@folk/socketpair';
import { spawn, type Subprocess } from '@folk/fd-inherit';
import type { ExitInfo, PidFd } from '@folk/pidfd';
import { FdSocket, closeFds } from '@folk/scm-rights';
import {
  WorkerError,
  describeExit,
  intOption,
  invalidArgType,
  optionsObject,
  outOfRange,
  stringOption,
  stringValue,
  toPayload,
} from './errors.js';
import {
  CONTROL_MAX,
  DEFAULT_MAX_FRAME,
  FrameDecoder,
  FrameType,
  MAX_FRAME_LIMIT,
  MIN_MAX_FRAME,
  decodeErrorBody,
  encodeFrame,
} from './protocol.js';

// Only this module constructs Workers and ControlChannels: the classes are
// exported for instanceof and types, and one made by hand around objects
// that are not a spawned worker's fails in unhelpful ways half-built.
const CONSTRUCT: unique symbol = Symbol('worker-spawn');

function illegalConstructor(name: string, from: string): TypeError {
  const err = new TypeError(`Illegal constructor: a ${name} comes from ${from}`);
  (err as NodeJS.ErrnoException).code = 'ERR_ILLEGAL_CONSTRUCTOR';
  return err;
}

/** The child's fd for the task socket. */
export const TASK_FD = 3;
/** The child's fd for the control socket. */
export const CONTROL_FD = 4;

export interface SpawnWorkerOptions {
  /** The program to run. Default `'php'` (looked up in the child's PATH). */
  command?: string;
  /** The worker script, passed as the first argument. */
  script: string;
  /** More arguments after the script. */
  args?: string[];
  /** FOLK_RUNTIME in the worker's environment. Default `'pipe'`. */
  runtime?: string;
  /**
   * The worker's environment, to which FOLK_RUNTIME, FOLK_TASK_FD,
   * FOLK_CONTROL_FD and FOLK_MAX_FRAME are added. Default `process.env`.
   */
  env?: Record<string, string | undefined>;
  /** Working directory of the worker. */
  cwd?: string;
  /** Largest payload of one task frame in either direction, in bytes. Default 16 MiB. */
  maxFrame?: number;
  /**
   * Signal the worker gets if the supervisor dies (PR_SET_PDEATHSIG), so a
   * worker stuck inside a handler goes too. Default `'SIGKILL'`; `null` for none.
   */
  pdeathsig?: NodeJS.Signals | null;
}

export interface StopOptions {
  /** Milliseconds to wait after the control `stop` before SIGTERM. Default 5000. */
  timeout?: number;
  /** Milliseconds to wait after SIGTERM before SIGKILL. Default 1000. */
  killTimeout?: number;
}

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
 * The supervisor's end of the control socket (a SOCK_SEQPACKET pair, one
 * JSON message per datagram). Sends messages, with fds when asked, and
 * emits what the worker sends:
 * - `'message'` (message, fds): every message. Fds a worker sends along
 *   belong to this event's listeners (close each once); with none here they
 *   go to the Worker's `'message'` listeners, and with none there either
 *   they are closed before anything is emitted (see Worker#receive).
 * - `'close'`.
 */
export class ControlChannel extends EventEmitter {
  /** The underlying message socket (from @folk/scm-rights). */
  readonly socket: FdSocket;
  readonly #wake: () => void;

  /** @internal */
  constructor(token: typeof CONSTRUCT, socket: FdSocket, wake: () => void, receive: (message: ControlMessage, fds: number[]) => void) {
    if (token !== CONSTRUCT) throw illegalConstructor('ControlChannel', "a Worker's `control`");
    super();
    this.socket = socket;
    this.#wake = wake;
    socket.on('message', ({ data, fds }) => {
      let message: ControlMessage;
      try {
        const parsed: unknown = JSON.parse(data.toString('utf8'));
        if (parsed === null || typeof parsed !== 'object' || typeof (parsed as ControlMessage).type !== 'string') {
          throw new Error('not an object with a string "type"');
        }
        message = parsed as ControlMessage;
      } catch (err) {
        message = { type: 'error', message: `unreadable control message from the worker: ${(err as Error).message}`, fatal: false };
      }
      receive(message, fds);
    });
    // The worker going away shows up as the pidfd exit; socket errors (EPIPE,
    // ECONNRESET) are that same event seen from here.
    socket.on('error', () => {});
    socket.on('close', () => this.emit('close'));
  }

  /**
   * Send one control message, with fds attached if given (the worker gets its
   * own copies). Bad arguments (no string `type`, JSON.stringify failing,
   * over 64 KiB of JSON, fds that are not fd numbers) reject, and nothing is sent.
   */
  send(message: ControlMessage, fds: number[] = []): Promise<void> {
    let sent: Promise<void>;
    try {
      if (message === null || typeof message !== 'object' || typeof message.type !== 'string') {
        throw invalidArgType('message', 'an object with a string "type"', message);
      }
      let json: string;
      try {
        json = JSON.stringify(message);
      } catch (err) {
        const e = new TypeError(`The "message" argument cannot be sent as JSON: ${(err as Error).message}`);
        (e as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
        throw e;
      }
      const body = Buffer.from(json);
      if (body.length > CONTROL_MAX) {
        const err = new RangeError(
          `The "message" argument must be at most ${CONTROL_MAX} bytes as JSON (one control datagram); this one is ${body.length}`,
        );
        (err as NodeJS.ErrnoException).code = 'ERR_OUT_OF_RANGE';
        throw err;
      }
      // FdSocket.send throws (rather than rejects) for fds that are not fd numbers.
      sent = this.socket.send(body, fds);
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
      tag = stringOption(opts, 'tag', '') as string;
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

/**
 * How long a worker whose task socket ended (EOF, or EPIPE on a write) may
 * take to exit by itself before it is killed. Most such workers are exiting
 * already; some close fd 3 on their way out (the Node library half-closes it
 * to flush its last answer), and their own exit status says more than ours.
 */
const TASK_EOF_GRACE_MS = 1000;

/** The doorbell that follows every control message on the task socket. */
const WAKE_FRAME: Buffer = encodeFrame(FrameType.WAKE, 0, Buffer.alloc(0))[0]!;

/**
 * After the worker has exited, stdout is closed once this many turns of the
 * event loop in a row have brought no new bytes (see Worker#releaseStdout)...
 */
const STDOUT_QUIET_TURNS = 2;
/** ...or after this many turns in all, if a process the worker left behind keeps writing. */
const STDOUT_MAX_TURNS = 64;

interface Pending {
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
}

/**
 * A running worker. Created by `spawnWorker`.
 *
 * Events: `'ready'` (ReadyMessage), `'message'` (ControlMessage, fds) for
 * control messages other than ready, `'workerError'` (message, fatal) for
 * the worker's error reports, `'broken'` (WorkerError `ERR_WORKER_PROTOCOL`)
 * once when the worker can take no more requests because it broke the task
 * protocol or its task socket ended (it is being killed), `'exit'` (ExitInfo).
 */
export class Worker extends EventEmitter {
  /** Process id. */
  readonly pid: number;
  /** A race-free handle to the process (from @folk/pidfd); closed when the worker has exited and been reaped. */
  readonly pidfd: PidFd;
  /** The supervisor's end of the task socket (fd 3 in the worker): a Duplex carrying frames. */
  readonly task: net.Socket;
  /** The supervisor's end of the control socket (fd 4 in the worker). */
  readonly control: ControlChannel;
  /** The worker's stdout. Read it (or `resume()` it) so the worker never blocks on a full pipe. */
  readonly stdout: net.Socket;
  /** Resolves with how the worker ended, once it has (it is reaped then). Never rejects. */
  readonly exited: Promise<ExitInfo>;
  /** Resolves with the worker's ready message; rejects if it exits first or says another pid. */
  readonly ready: Promise<ReadyMessage>;
  /** Largest payload per frame, both ways (FOLK_MAX_FRAME). */
  readonly maxFrame: number;

  /**
   * Requests written and not yet answered, oldest first (the order answers
   * must come in); null for one abandon()ed, whose answer is dropped.
   */
  #pending = new Map<number, Pending | null>();
  #nextId = 1;
  #exit: ExitInfo | null = null;
  #stopping: Promise<ExitInfo> | null = null;
  /** stop() or close() was called: new requests are refused. */
  #stopRequested = false;
  /** Why the worker can take no more requests (it broke the protocol, or its task socket ended); it is being killed. */
  #broken: WorkerError | null = null;
  /** #broken is the task socket's end: requests still pending wait for the exit to learn whether we killed it. */
  #taskLost = false;
  /** Kills a worker whose task socket ended, if it has not exited within TASK_EOF_GRACE_MS. */
  #graceTimer: NodeJS.Timeout | null = null;
  #killedForTask = false;
  /** Set at the exit when the worker died because it broke the protocol: what its requests were rejected with. */
  #protocolExit: WorkerError | null = null;
  #readyReject: ((err: Error) => void) | null = null;
  #onReady: (ready: ReadyMessage) => void;
  #decoder: FrameDecoder;

  /** @internal */
  constructor(token: typeof CONSTRUCT, sub: Subprocess, task: net.Socket, control: FdSocket, maxFrame: number) {
    if (token !== CONSTRUCT) throw illegalConstructor('Worker', 'spawnWorker()');
    super();
    this.pid = sub.pid;
    this.pidfd = sub.pidfd;
    this.task = task;
    this.maxFrame = maxFrame;
    this.stdout = sub.stdout!;
    this.control = new ControlChannel(
      CONSTRUCT,
      control,
      () => {
        if (!task.destroyed && task.writable) task.write(WAKE_FRAME);
      },
      (message, fds) => this.#receive(message, fds),
    );

    let readyResolve!: (m: ReadyMessage) => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise<ReadyMessage>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    this.ready.catch(() => {}); // observed through 'exit' if nobody awaits it
    this.#readyReject = readyReject;

    this.#onReady = (ready) => {
      if (ready.pid !== this.pid) {
        readyReject(
          new WorkerError(
            'ERR_WORKER_PID_MISMATCH',
            `worker ready message says pid ${ready.pid}, but the spawned process is pid ${this.pid} (a wrapper that forks instead of exec'ing?)`,
            { pid: this.pid },
          ),
        );
        return;
      }
      this.#readyReject = null;
      readyResolve(ready);
      this.emit('ready', ready);
    };

    const decoder = new FrameDecoder(maxFrame, {
      frame: (type, id, payload) => this.#settle(type, id, payload),
      oversize: (type, id, length) => {
        // Rejected now, not once `length` bytes have gone by: a worker that
        // announced more than it sends would hold the task for ever. The
        // decoder goes on discarding; see inSync.
        if (!this.#isAnswer(type, id)) return;
        this.#answer(id)?.reject(
          new WorkerError(
            'ERR_WORKER_FRAME_TOO_LARGE',
            `worker pid ${this.pid} answered with ${length} bytes, over the maximum frame size of ${maxFrame} bytes; the response was discarded`,
            { pid: this.pid },
          ),
        );
      },
      corrupt: (err) => this.#breach(`broke the task protocol: ${err.message}`),
    });
    this.#decoder = decoder;
    task.on('data', (chunk: Buffer) => decoder.push(chunk));
    // The task socket lives as long as the worker (PROTOCOL.md, "Lifetime"):
    // EOF or an error on it while the worker runs, unasked, ends the worker.
    task.on('end', () => this.#loseTask('closed its task socket (fd 3)'));
    task.on('error', (err: NodeJS.ErrnoException) =>
      // EPIPE and ECONNRESET are how a write or read meets a peer that closed its end.
      this.#loseTask(err.code === 'EPIPE' || err.code === 'ECONNRESET' ? 'closed its task socket (fd 3)' : `broke its task socket (fd 3: ${err.message})`),
    );

    this.exited = sub.wait().then(
      (info) => this.#onExit(info),
      // ECHILD cannot happen for our own child reaped only here; still, never reject.
      () => this.#onExit({ pid: this.pid, code: null, signal: null, signalNumber: null }),
    );
  }

  /**
   * One control message from the worker. Its fds get exactly one owner
   * (README, "ControlChannel"): the `'message'` listeners of `control` if it
   * has any, else this Worker's `'message'` listeners (for a message other
   * than ready), else nobody, and then they are closed here before anything
   * is emitted, so no listener ever sees a number that was closed under it.
   */
  #receive(message: ControlMessage, fds: number[]): void {
    const toControl = this.control.listenerCount('message') > 0;
    const toWorker = !toControl && message.type !== 'ready' && this.listenerCount('message') > 0;
    if (!toControl && !toWorker && fds.length > 0) closeFds(fds);
    if (message.type === 'ready') this.#onReady(message as ReadyMessage);
    else if (message.type === 'error') this.emit('workerError', String(message['message']), message['fatal'] === true);
    if (toControl) this.control.emit('message', message, fds);
    if (message.type !== 'ready' && this.listenerCount('message') > 0) this.emit('message', message, toWorker ? fds : []);
  }

  #onExit(info: ExitInfo): ExitInfo {
    this.#exit = info;
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    // A worker that broke the protocol, or whose task socket ended and that
    // we then killed, gets that reason; one that was exiting anyway (the
    // usual way to see EOF) keeps its own status.
    const killedForIt = this.#broken !== null && (!this.#taskLost || (this.#killedForTask && info.signal === 'SIGKILL'));
    const err = killedForIt
      ? (this.#protocolExit = this.#broken!)
      : new WorkerError('ERR_WORKER_EXITED', `worker pid ${this.pid} exited (${describeExit(info)}) before answering`, {
          pid: this.pid,
          exit: { code: info.code, signal: info.signal },
        });
    this.#failAll(err);
    this.#readyReject?.(
      new WorkerError('ERR_WORKER_EXITED', `worker pid ${this.pid} exited (${describeExit(info)}) before saying ready`, {
        pid: this.pid,
        exit: { code: info.code, signal: info.signal },
      }),
    );
    this.#readyReject = null;
    this.task.destroy();
    this.control.close();
    this.pidfd.close();
    this.#releaseStdout();
    this.emit('exit', info);
    return info;
  }

  /**
   * The worker has exited; close our end of its stdout once what it wrote has
   * been read. EOF alone is not enough to wait for: a process the worker
   * started (a background job, a detached child) may have inherited the write
   * end and hold it for as long as it lives. Everything the worker itself
   * wrote is in the pipe already (its exit closed its end after the last
   * write), so: keep reading while bytes arrive, and close at the first
   * STDOUT_QUIET_TURNS turns of the event loop in a row that bring none, or
   * after STDOUT_MAX_TURNS turns. A leftover process that writes later gets
   * EPIPE (or SIGPIPE), as it would in a shell pipeline whose reader is gone.
   */
  #releaseStdout(): void {
    const out = this.stdout;
    // If nobody reads it, drain it anyway, so EOF can be seen.
    if (out.listenerCount('data') === 0 && out.listenerCount('readable') === 0) out.resume();
    let seen = out.bytesRead;
    let quiet = 0;
    let turns = 0;
    const check = (): void => {
      if (out.destroyed || out.readableEnded) return; // EOF: the socket closes itself
      if (out.bytesRead !== seen) {
        seen = out.bytesRead;
        quiet = 0;
      } else {
        quiet++;
      }
      if (quiet >= STDOUT_QUIET_TURNS || ++turns >= STDOUT_MAX_TURNS) out.destroy();
      else setImmediate(check);
    };
    setImmediate(check);
  }

  /** True once the worker has exited. */
  get hasExited(): boolean {
    return this.#exit !== null;
  }

  /** Why the worker ended, when it was killed for breaking the protocol (set before 'exit' is emitted). @internal */
  get protocolExit(): WorkerError | null {
    return this.#protocolExit;
  }

  /** Requests written and not yet answered. */
  get pendingRequests(): number {
    let n = 0;
    for (const p of this.#pending.values()) if (p !== null) n++;
    return n;
  }

  /**
   * False while the decoder discards the payload of an oversize answer: the
   * next frame cannot be read before all its bytes have come, and a worker
   * that announced more than it sends never gets back in step. The pool
   * replaces such a worker rather than hand it the next task. @internal
   */
  get inSync(): boolean {
    return !this.#decoder.skipping;
  }

  /**
   * Send one task and resolve with the worker's response. Requests may be
   * pipelined; a worker answers them in order.
   *
   * Rejects with `ERR_WORKER_FRAME_TOO_LARGE` (nothing sent) for a payload
   * over `maxFrame`, `ERR_WORKER_TASK` when the worker answers with an error,
   * `ERR_WORKER_EXITED` when it exits first, `ERR_WORKER_STOPPED` (nothing
   * sent) once `stop()` or `close()` has been called.
   */
  request(payload: string | Uint8Array): Promise<Buffer> {
    let bytes: Uint8Array;
    try {
      bytes = toPayload(payload);
    } catch (err) {
      return Promise.reject(err);
    }
    if (bytes.byteLength > this.maxFrame) {
      return Promise.reject(
        new WorkerError(
          'ERR_WORKER_FRAME_TOO_LARGE',
          `task payload of ${bytes.byteLength} bytes exceeds the maximum frame size of ${this.maxFrame} bytes; nothing was sent`,
          { pid: this.pid },
        ),
      );
    }
    if (this.#broken !== null && !this.#taskLost) return Promise.reject(this.#broken);
    if (this.#stopRequested) {
      return Promise.reject(
        new WorkerError('ERR_WORKER_STOPPED', `worker pid ${this.pid} is stopped (stop() or close() was called); nothing was sent`, {
          pid: this.pid,
        }),
      );
    }
    if (this.#exit !== null) {
      const exit = { code: this.#exit.code, signal: this.#exit.signal };
      return Promise.reject(new WorkerError('ERR_WORKER_EXITED', `worker pid ${this.pid} has exited (${describeExit(exit)})`, { pid: this.pid, exit }));
    }
    const id = this.#nextId;
    let frame: Buffer[];
    try {
      frame = encodeFrame(FrameType.REQUEST, id, bytes);
    } catch (err) {
      return Promise.reject(err); // nothing pending, nothing sent
    }
    this.#nextId = this.#nextId >= 0xffff_ffff ? 1 : this.#nextId + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Its task socket has ended and it is being killed: nothing can be
      // written or answered, and the exit says how it ended (see #onExit).
      if (this.#taskLost) return;
      for (const buf of frame) this.task.write(buf);
    });
  }

  /**
   * Whether a frame of `type` can be an answer; if not, the worker broke the
   * protocol (PROTOCOL.md: WAKE and REQUEST go only to a worker, and no
   * other type is defined), whatever its id, and is killed.
   */
  #isAnswer(type: number, id: number): boolean {
    if (type === FrameType.RESPONSE || type === FrameType.ERROR) return true;
    this.#breach(`sent a frame of type ${type} (id ${id}); a worker sends only RESPONSE and ERROR frames`);
    return false;
  }

  /**
   * The request an answer for `id` settles: the oldest one written, since
   * a worker answers in order. An id that is anything else (one never sent,
   * one answered already, one out of turn) breaks the protocol: undefined,
   * and the worker is killed. Null for an abandon()ed request: drop the answer.
   */
  #answer(id: number): Pending | null | undefined {
    const oldest = this.#pending.keys().next();
    if (oldest.done || oldest.value !== id) {
      this.#breach(`answered request ${id}, which is not the one waiting for an answer${oldest.done ? ' (none is)' : ` (${oldest.value})`}`);
      return undefined;
    }
    const p = this.#pending.get(id)!;
    this.#pending.delete(id);
    return p;
  }

  #settle(type: number, id: number, payload: Buffer): void {
    if (!this.#isAnswer(type, id)) return;
    const p = this.#answer(id);
    if (!p) return;
    if (type === FrameType.RESPONSE) {
      p.resolve(payload);
    } else {
      const body = decodeErrorBody(payload);
      const code = body.code === 'FRAME_TOO_LARGE' ? 'ERR_WORKER_FRAME_TOO_LARGE' : 'ERR_WORKER_TASK';
      p.reject(new WorkerError(code, `worker pid ${this.pid} failed the task (${body.code}): ${body.message}`, { pid: this.pid, workerCode: body.code }));
    }
  }

  /** The worker broke the protocol: fail every request with the reason, stop reading, kill it. */
  #breach(what: string): void {
    if (this.#broken) return;
    this.#broken = new WorkerError('ERR_WORKER_PROTOCOL', `worker pid ${this.pid} ${what}`, { pid: this.pid });
    this.#failAll(this.#broken);
    this.#killNow();
    this.task.destroy();
    this.emit('broken', this.#broken);
  }

  /**
   * SIGKILL. For a protocol breach it comes before the task socket is
   * closed: a worker that saw EOF first might exit on its own in between,
   * and report a status that hides why it ended. Once the signal is sent it
   * runs no more code.
   */
  #killNow(): void {
    try {
      this.kill('SIGKILL');
    } catch {
      // Gone already.
    }
  }

  /**
   * EOF or an error on the task socket of a worker that was not asked to
   * stop: nothing more can be asked of it or answered by it. Usually it is
   * exiting; one still running TASK_EOF_GRACE_MS later is killed. Pending
   * requests (and any made meanwhile) are settled by the exit (#onExit),
   * with its own status, or with this reason if we killed it.
   */
  #loseTask(what: string): void {
    if (this.#exit !== null || this.#broken !== null || this.#stopRequested) return;
    this.#broken = new WorkerError('ERR_WORKER_PROTOCOL', `worker pid ${this.pid} ${what} without exiting; it was killed`, { pid: this.pid });
    this.#taskLost = true;
    this.task.destroy();
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = null;
      this.#killedForTask = true;
      this.#killNow();
    }, TASK_EOF_GRACE_MS);
    this.emit('broken', this.#broken);
  }

  /** Forget the requests written so far (their answers, if they come, are dropped). Used by the pool's execTimeout. @internal */
  abandon(): void {
    for (const id of this.#pending.keys()) this.#pending.set(id, null);
  }

  #failAll(err: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p?.reject(err);
  }

  /** Send a signal (default SIGTERM) through the pidfd. Does nothing once the worker has exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    if (this.#exit !== null) return;
    try {
      this.pidfd.kill(signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /**
   * Stop gracefully: send `stop` on the control socket (the worker finishes
   * its current task and exits), SIGTERM after `timeout` ms, SIGKILL
   * `killTimeout` ms after that. From the call on, request() refuses
   * new tasks (`ERR_WORKER_STOPPED`). Resolves with how it ended,
   * once it is reaped and every fd of the worker here is closed: stdout too,
   * as soon as what the worker wrote has been read, even if a process it
   * started still holds the other end. Rejects (TypeError/RangeError, and
   * does nothing) for bad options; both timeouts are 0 .. 2^31-1 ms.
   */
  stop(options?: StopOptions): Promise<ExitInfo> {
    if (this.#stopping) return this.#stopping;
    let timeout: number;
    let killTimeout: number;
    try {
      const opts = optionsObject(options);
      timeout = intOption(opts, 'timeout', 5000, 0, 2 ** 31 - 1);
      killTimeout = intOption(opts, 'killTimeout', 1000, 0, 2 ** 31 - 1);
    } catch (err) {
      // Like request(): a promise API reports bad arguments by rejecting; nothing was done.
      return Promise.reject(err);
    }
    this.#stopRequested = true;
    this.#stopping = (async () => {
      if (this.#exit === null) {
        this.control.send({ type: 'stop' }).catch(() => {});
        if (!(await this.#exitWithin(timeout))) {
          this.kill('SIGTERM');
          if (!(await this.#exitWithin(killTimeout))) this.kill('SIGKILL');
        }
      }
      const info = await this.exited;
      if (!this.stdout.closed) await new Promise<void>((resolve) => this.stdout.once('close', () => resolve()));
      return info;
    })();
    return this.#stopping;
  }

  #exitWithin(ms: number): Promise<boolean> {
    if (this.#exit !== null) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.exited.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * SIGKILL the worker (if it still runs) and close the task and control
   * sockets now. The process is reaped, and its pidfd and stdout closed, on
   * the event loop as it goes (await `exited` to know when). Idempotent.
   */
  close(): void {
    this.#stopRequested = true;
    this.kill('SIGKILL');
    this.task.destroy();
    this.control.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** `using`-style async disposal: SIGKILL now, resolve once reaped and every fd is closed. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill('SIGKILL');
    await this.stop({ timeout: 0 });
  }
}

/**
 * Start one worker: a socketpair for tasks (stream) and one for control
 * (seqpacket); the child ends go to fds 3 and 4 of the worker and nowhere
 * else; stdin is /dev/null, stdout a pipe, stderr inherited; FOLK_RUNTIME,
 * FOLK_TASK_FD=3, FOLK_CONTROL_FD=4 and FOLK_MAX_FRAME in its environment.
 *
 * @throws TypeError/RangeError for bad options; the spawn error of
 * @folk/fd-inherit (ENOENT, EACCES, ...) when the program cannot start. No
 * fd is left open then.
 */
export function spawnWorker(options: SpawnWorkerOptions): Worker {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType('options', 'of type object', options);
  }
  const opts = options as unknown as Record<string, unknown>;
  const command = stringOption(opts, 'command', 'php') as string;
  if (command === '') {
    const err = new TypeError(`The "options.command" argument must not be empty. Received ''`);
    (err as NodeJS.ErrnoException).code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
  const script = stringOption(opts, 'script', undefined);
  if (script === undefined) throw invalidArgType('options.script', 'of type string', undefined);
  const argsValue = opts['args'] === undefined ? [] : opts['args'];
  if (!Array.isArray(argsValue)) throw invalidArgType('options.args', 'an array of strings', argsValue);
  // Checked here, each by index (holes too), so an error names options.args[i]
  // rather than the spawn's args[i + 1] (the script is its args[0]).
  const args: string[] = [];
  for (let i = 0; i < argsValue.length; i++) args.push(stringValue(argsValue[i], `options.args[${i}]`));
  const runtime = stringOption(opts, 'runtime', 'pipe') as string;
  const cwd = stringOption(opts, 'cwd', undefined);
  const maxFrame = intOption(opts, 'maxFrame', DEFAULT_MAX_FRAME, MIN_MAX_FRAME, MAX_FRAME_LIMIT);
  const baseEnv = opts['env'] === undefined ? process.env : optionsObject(opts['env'], 'options.env');
  const pdeathsig = opts['pdeathsig'] === undefined ? 'SIGKILL' : opts['pdeathsig'];
  if (pdeathsig !== null && typeof pdeathsig !== 'string') {
    throw invalidArgType('options.pdeathsig', 'a signal name or null', pdeathsig);
  }
  const env: Record<string, string | undefined> = {
    ...(baseEnv as Record<string, string | undefined>),
    FOLK_RUNTIME: runtime,
    FOLK_TASK_FD: String(TASK_FD),
    FOLK_CONTROL_FD: String(CONTROL_FD),
    FOLK_MAX_FRAME: String(maxFrame),
  };

  // Every fd here is CLOEXEC; the child ends reach the worker only through
  // the fd map, and are closed here right after the spawn.
  const opened: number[] = [];
  let sub: Subprocess;
  try {
    const [taskParent, taskChild] = socketpair('stream');
    opened.push(taskParent, taskChild);
    const [controlParent, controlChild] = socketpair('seqpacket');
    opened.push(controlParent, controlChild);
    sub = spawn(command, [script, ...(args as string[])], {
      fds: { [TASK_FD]: taskChild, [CONTROL_FD]: controlChild },
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'inherit',
      env,
      ...(cwd === undefined ? {} : { cwd }),
      ...(pdeathsig === null ? {} : { pdeathsig: pdeathsig as NodeJS.Signals }),
    });
  } catch (err) {
    closeFds(opened);
    throw err;
  }
  const [taskParent, taskChild, controlParent, controlChild] = opened as [number, number, number, number];
  closeFds([taskChild, controlChild]);
  let task: net.Socket | undefined;
  let control: FdSocket;
  try {
    task = new net.Socket({ fd: taskParent, readable: true, writable: true });
    control = new FdSocket(controlParent, { maxMessageBytes: CONTROL_MAX });
  } catch (err) {
    if (task) task.destroy();
    else closeFds([taskParent]);
    closeFds([controlParent]);
    sub.kill('SIGKILL');
    sub.wait().catch(() => {});
    throw err;
  }
  return new Worker(CONSTRUCT, sub, task, control, maxFrame);
}

/**
 * Resident set size of a process in bytes (VmRSS from /proc/<pid>/status),
 * or null when the process is gone.
 *
 * @throws TypeError/RangeError unless `pid` is a positive integer.
 */
export function readRss(pid: number): number | null {
  if (typeof pid !== 'number') throw invalidArgType('pid', 'of type number', pid);
  if (!Number.isInteger(pid) || pid < 1) throw outOfRange('pid', 'a positive integer', pid);
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : null;
}
