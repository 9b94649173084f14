// spawnWorker and WorkerHandle: one worker speaking PROTOCOL.md, on the raw
// FD 3/4 plumbing of worker-process.ts: the ready handshake, requests and
// their answers (task-channel.ts), control messages (control-channel.ts),
// and how the worker is stopped and what its end is reported as.

import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import type { ExitInfo, PidFd } from '@folk/pidfd';
import { closeFds } from '@folk/scm-rights';
import { illegalConstructor, optionalInteger, optionsObject } from './internal/args.js';
import { CONSTRUCT_CONTROL, ControlChannel, type ControlMessage, type ReadyMessage } from './control-channel.js';
import { WorkerError, describeExit } from './errors.js';
import { CONTROL_MAX, DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT, MIN_MAX_FRAME, taskPayload } from './protocol.js';
import { TaskChannel, requestOptions, taskSocket, type Pending, type RequestOptions } from './task-channel.js';
import { processPlan, startWorkerProcess, type WorkerProcess, type WorkerProcessOptions } from './worker-process.js';

export interface SpawnWorkerOptions extends WorkerProcessOptions {
  /** The worker script, passed as the first argument. */
  script: string;
  /** Largest payload of one task frame in either direction, in bytes; FOLK_MAX_FRAME in the worker's environment. Default 16 MiB. */
  maxFrame?: number;
}

export interface StopOptions {
  /** Milliseconds to wait after the control `stop` before SIGTERM. Default 5000. */
  timeout?: number;
  /** Milliseconds to wait after SIGTERM before SIGKILL. Default 1000. */
  killTimeout?: number;
}

/** How a worker ended, as its WorkerHandle reports it (`'exit'`, `exited`, `stop()`). */
export interface WorkerExitInfo extends ExitInfo {
  /**
   * Set when the worker was killed for breaking the protocol: the
   * `ERR_WORKER_PROTOCOL` error saying how, which its `ready` (if the
   * worker had not said ready) and its pending requests were rejected with.
   */
  readonly reason?: WorkerError;
}

// Only spawnWorker constructs WorkerHandles: the class is exported for
// instanceof and types, and one made by hand around objects that are not a
// spawned worker's fails in unhelpful ways half-built.
const CONSTRUCT: unique symbol = Symbol('WorkerHandle');

/**
 * How long a worker whose task socket ended (EOF, or EPIPE on a write) may
 * take to exit by itself before it is killed. Most such workers are exiting
 * already; some close fd 3 on their way out (the Node library half-closes it
 * to flush its last answer), and their own exit status says more than ours.
 */
const TASK_EOF_GRACE_MS = 1000;

function exitedError(pid: number, info: ExitInfo, before: string): WorkerError {
  const exit = { code: info.code, signal: info.signal };
  return new WorkerError('ERR_WORKER_EXITED', `worker pid ${pid} exited (${describeExit(exit)}) ${before}`, { pid, exit });
}

/**
 * The supervisor's handle on one running worker that speaks the task
 * protocol (PROTOCOL.md). Created by `spawnWorker`.
 *
 * Events: `'ready'` (ReadyMessage), `'message'` (ControlMessage, fds) for
 * control messages other than ready, `'workerError'` (message, fatal) for
 * the worker's error reports, `'broken'` (WorkerError `ERR_WORKER_PROTOCOL`)
 * once when the worker can take no more requests because it broke the
 * protocol (on its task socket, or with a control datagram over 64 KiB) or
 * its task socket ended (it is being killed), `'exit'`
 * (WorkerExitInfo) once it has been reaped.
 */
export class WorkerHandle extends EventEmitter {
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
  /**
   * Resolves with how the worker ended, once it is reaped and every fd of it
   * here is closed (stdout as soon as what the worker wrote has been read,
   * even if a process it started still holds the other end). Never rejects.
   */
  readonly exited: Promise<WorkerExitInfo>;
  /** Resolves with the worker's ready message; rejects if it exits or breaks the protocol first, or says another pid. */
  readonly ready: Promise<ReadyMessage>;
  /** Largest payload per frame, both ways (FOLK_MAX_FRAME). */
  readonly maxFrame: number;

  readonly #process: WorkerProcess;
  readonly #tasks: TaskChannel;
  #exit: WorkerExitInfo | null = null;
  #stopping: Promise<WorkerExitInfo> | null = null;
  /** stop() or close() was called: new requests are refused. */
  #stopRequested = false;
  /** Why the worker can take no more requests (it broke the protocol, or its task socket ended); it is being killed. */
  #broken: WorkerError | null = null;
  /** #broken is the task socket's end: requests still pending wait for the exit to learn whether we killed it. */
  #taskLost = false;
  /** Kills a worker whose task socket ended, if it has not exited within TASK_EOF_GRACE_MS. */
  #graceTimer: NodeJS.Timeout | null = null;
  #killedForTask = false;
  /** Settles `ready`, until it is settled. */
  #readySettle: { resolve: (m: ReadyMessage) => void; reject: (e: Error) => void } | null = null;

  /** The pid the worker's ready message must give: its own, or 1 as the first process of a new pid namespace. */
  readonly #readyPid: number;

  /** @internal */
  constructor(token: typeof CONSTRUCT, proc: WorkerProcess, maxFrame: number, newPidNamespace = false) {
    if (token !== CONSTRUCT) throw illegalConstructor('a WorkerHandle comes from spawnWorker()');
    super();
    this.#process = proc;
    this.pid = proc.pid;
    this.#readyPid = newPidNamespace ? 1 : proc.pid;
    this.pidfd = proc.pidfd;
    this.task = proc.task;
    this.stdout = proc.stdout;
    this.maxFrame = maxFrame;
    this.#tasks = new TaskChannel(proc.task, proc.pid, maxFrame, {
      breach: (what) => this.#breach(what),
      lost: (what) => this.#loseTask(what),
    });
    this.control = new ControlChannel(CONSTRUCT_CONTROL, proc.control, {
      wake: () => this.#tasks.wake(),
      receive: (message, fds) => this.#receive(message, fds),
      breach: (what) => this.#breach(what),
      // A worker whose task socket merely ended is most likely exiting: what is sent to it still may be read.
      refusal: () => (this.#broken !== null && !this.#taskLost ? this.#broken : null),
    });
    this.ready = new Promise<ReadyMessage>((resolve, reject) => {
      this.#readySettle = { resolve, reject };
    });
    this.ready.catch(() => {}); // observed through 'exit' if nobody awaits it
    // The exit is seen through the pidfd, what the worker said through the
    // control socket, each when the event loop gets to it: messages sent
    // just before the exit may still be waiting in the socket when the
    // pidfd says it ended. Its 'exit' waits for them, that is until the
    // control socket closes: at its end of file (at once when the worker
    // held the last copy of its end), or when WorkerProcess gives up waiting
    // for more (release.ts: a process the worker started may hold a copy).
    proc.on('exit', (info: ExitInfo) => {
      const control = proc.control;
      if (control.closed) this.#onExit(info);
      else control.once('close', () => this.#onExit(info));
    });
    this.exited = proc.exited.then(() => this.#exit!);
  }

  /** True once the worker has exited. */
  get hasExited(): boolean {
    return this.#exit !== null;
  }

  /** Requests written and not yet answered. */
  get pendingRequests(): number {
    return this.#tasks.pendingRequests;
  }

  /**
   * False while the decoder discards the payload of an oversize answer: the
   * next frame cannot be read before all its bytes have come, and a worker
   * that announced more than it sends never gets back in step. The pool
   * replaces such a worker rather than hand it the next task. @internal
   */
  get inSync(): boolean {
    return this.#tasks.inSync;
  }

  /**
   * Send one task and resolve with the worker's response. Requests may be
   * pipelined; a worker answers them in order. `options.onPart` takes the
   * answer in pieces as the worker sends them (see RequestOptions); the
   * request then resolves with the last piece.
   *
   * Rejects with `ERR_WORKER_FRAME_TOO_LARGE` (nothing sent) for a payload
   * over `maxFrame`, `ERR_WORKER_TASK` when the worker answers with an error,
   * `ERR_WORKER_EXITED` when it exits first, `ERR_WORKER_PROTOCOL` when it
   * breaks the protocol, `ERR_WORKER_STOPPED` (nothing sent) once `stop()`
   * or `close()` has been called.
   */
  request(payload: string | Uint8Array, options?: RequestOptions): Promise<Buffer> {
    let bytes: Uint8Array;
    let onPart: RequestOptions['onPart'];
    try {
      bytes = taskPayload(payload, this.maxFrame, this.pid);
      onPart = requestOptions(options).onPart;
    } catch (err) {
      return Promise.reject(err);
    }
    const refused = this.#refusal();
    if (refused) return Promise.reject(refused);
    return this.#tasks.request(bytes, onPart);
  }

  /**
   * request() for the pool: `bytes` already checked against maxFrame, the
   * answer (or the refusal) given to `pending`, with no promise between;
   * with `parts`, the pieces of the answer before its end to `pending.part`.
   * @internal
   */
  send(bytes: Uint8Array, pending: Pending, parts = false): void {
    const refused = this.#refusal();
    if (refused) pending.reject(refused);
    else this.#tasks.send(bytes, pending, parts);
  }

  /**
   * Why a request cannot be sent now, or null. One made after the task
   * socket ended (the worker is being killed) is not refused: it is not
   * written, and the exit says how the worker ended (see #onExit).
   */
  #refusal(): WorkerError | null {
    if (this.#broken !== null && !this.#taskLost) return this.#broken;
    if (this.#stopRequested) {
      const message = `worker pid ${this.pid} is stopped (stop() or close() was called); nothing was sent`;
      return new WorkerError('ERR_WORKER_STOPPED', message, { pid: this.pid });
    }
    if (this.#exit !== null) {
      const exit = { code: this.#exit.code, signal: this.#exit.signal };
      return new WorkerError('ERR_WORKER_EXITED', `worker pid ${this.pid} has exited (${describeExit(exit)})`, { pid: this.pid, exit });
    }
    return null;
  }

  /** Forget the requests written so far (their answers, if they come, are dropped). Used by the pool's execTimeout. @internal */
  abandon(): void {
    this.#tasks.abandon();
  }

  /** Send a signal (default SIGTERM) through the pidfd. Does nothing once the worker has exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    this.#process.kill(signal);
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
  stop(options?: StopOptions): Promise<WorkerExitInfo> {
    if (this.#stopping) return this.#stopping;
    let timeout: number;
    let killTimeout: number;
    try {
      const opts = optionsObject(options);
      timeout = optionalInteger(opts, 'timeout', 5000, 0, 2 ** 31 - 1);
      killTimeout = optionalInteger(opts, 'killTimeout', 1000, 0, 2 ** 31 - 1);
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
      return this.exited;
    })();
    return this.#stopping;
  }

  /**
   * SIGKILL the worker (if it still runs) and close the task and control
   * sockets now. The process is reaped, and its pidfd and stdout closed, on
   * the event loop as it goes (await `exited` to know when). Idempotent.
   */
  close(): void {
    this.#stopRequested = true;
    this.#process.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** `using`-style async disposal: SIGKILL now, resolve once reaped and every fd is closed. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill('SIGKILL');
    await this.stop({ timeout: 0 });
  }

  #exitWithin(ms: number): Promise<boolean> {
    if (this.#process.hasExited) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.#process.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * One control message from the worker. Its fds get exactly one owner
   * (README, "ControlChannel"): the `'message'` listeners of `control` if it
   * has any, else this handle's `'message'` listeners (for a message other
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

  #onReady(ready: ReadyMessage): void {
    const settle = this.#readySettle;
    if (settle === null) return;
    this.#readySettle = null;
    if (ready.pid !== this.#readyPid) {
      const inside = this.#readyPid === this.pid ? '' : `, ${this.#readyPid} in its pid namespace`;
      const message = `worker ready message says pid ${ready.pid}, but the spawned process is pid ${this.pid}${inside} (a wrapper that forks instead of exec'ing?)`;
      settle.reject(new WorkerError('ERR_WORKER_PID_MISMATCH', message, { pid: this.pid }));
      return;
    }
    settle.resolve(ready);
    this.emit('ready', ready);
  }

  #rejectReady(err: Error): void {
    this.#readySettle?.reject(err);
    this.#readySettle = null;
  }

  /** The worker broke the protocol (task channel or control channel): fail `ready` and every request with the reason, stop reading, kill it. */
  #breach(what: string): void {
    if (this.#broken) return;
    this.#broken = new WorkerError('ERR_WORKER_PROTOCOL', `worker pid ${this.pid} ${what}`, { pid: this.pid });
    this.#tasks.failAll(this.#broken);
    this.#rejectReady(this.#broken);
    // SIGKILL before the task socket is closed: a worker that saw EOF first
    // might exit on its own in between, and report a status that hides why
    // it ended. Once the signal is sent it runs no more code.
    this.kill('SIGKILL');
    this.#tasks.destroy();
    this.emit('broken', this.#broken);
  }

  /**
   * EOF or an error on the task socket of a worker that was not asked to
   * stop: nothing more can be asked of it or answered by it. Usually it is
   * exiting; one still running TASK_EOF_GRACE_MS later is killed. Pending
   * requests (and any made meanwhile), and `ready`, are settled by the exit
   * (#onExit), with its own status, or with this reason if we killed it.
   */
  #loseTask(what: string): void {
    if (this.#process.hasExited || this.#broken !== null || this.#stopRequested) return;
    this.#broken = new WorkerError('ERR_WORKER_PROTOCOL', `worker pid ${this.pid} ${what} without exiting; it was killed`, { pid: this.pid });
    this.#taskLost = true;
    this.#tasks.destroy();
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = null;
      this.#killedForTask = true;
      this.kill('SIGKILL');
    }, TASK_EOF_GRACE_MS);
    this.emit('broken', this.#broken);
  }

  /** Reaped: settle what is left with the reason it ended, close the sockets (WorkerProcess closes the rest). */
  #onExit(info: ExitInfo): void {
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    // A worker that broke the protocol, or whose task socket ended and that
    // we then killed, gets that reason; one that was exiting anyway (the
    // usual way to see EOF) keeps its own status.
    const reason = this.#broken !== null && (!this.#taskLost || (this.#killedForTask && info.signal === 'SIGKILL')) ? this.#broken : null;
    this.#exit = reason ? Object.freeze({ ...info, reason }) : info;
    this.#tasks.failAll(reason ?? exitedError(this.pid, info, 'before answering'));
    this.#rejectReady(reason ?? exitedError(this.pid, info, 'before saying ready'));
    this.#tasks.destroy();
    this.control.close();
    this.emit('exit', this.#exit);
  }
}

/**
 * Start one worker that speaks the task protocol (PROTOCOL.md), on the
 * plumbing of spawnWorkerProcess: its task socket at fd 3, its control
 * socket at fd 4, FOLK_RUNTIME, FOLK_TASK_FD=3, FOLK_CONTROL_FD=4 and
 * FOLK_MAX_FRAME in its environment.
 *
 * @throws TypeError/RangeError for bad options; the spawn error of
 * @folk/fd-inherit (ENOENT, EACCES, ...) when the program cannot start. No
 * fd is left open then.
 */
export function spawnWorker(options: SpawnWorkerOptions): WorkerHandle {
  const plan = processPlan(options, true);
  const maxFrame = optionalInteger(options as unknown as Record<string, unknown>, 'maxFrame', DEFAULT_MAX_FRAME, MIN_MAX_FRAME, MAX_FRAME_LIMIT);
  const proc = startWorkerProcess(plan, { env: { FOLK_MAX_FRAME: String(maxFrame) }, maxControlMessage: CONTROL_MAX, taskSocket });
  return new WorkerHandle(CONSTRUCT, proc, maxFrame, plan.isolation?.namespaces?.pid === true);
}

/** A WorkerHandle over a WorkerProcess made elsewhere (a worker a prototype forked). @internal */
export function workerFromProcess(proc: WorkerProcess, maxFrame: number): WorkerHandle {
  return new WorkerHandle(CONSTRUCT, proc, maxFrame);
}
