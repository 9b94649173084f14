// spawnWorkerProcess and WorkerProcess: the FD 3/4 plumbing and nothing
// else. Two socketpairs, the child's ends at fds 3 (task, stream) and 4
// (control, seqpacket), the FOLK_* environment, stdin /dev/null, stdout a
// pipe, stderr inherited, PR_SET_PDEATHSIG; the supervisor keeps its own
// ends, raw. What goes over them is the caller's business: spawnWorker
// (worker-handle.ts) speaks PROTOCOL.md over them, a custom supervisor may
// speak anything.

import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { socketpair } from '@folk/socketpair';
import { spawn, type IsolationOptions, type Subprocess } from '@folk/fd-inherit';
import type { ExitInfo, PidFd } from '@folk/pidfd';
import { FdSocket, closeFds } from '@folk/scm-rights';
import { illegalConstructor, invalidArgType, invalidArgValue, optionsObject, validateCString } from './internal/args.js';
import { releaseFdSocket, releaseSocket } from './release.js';

/** The child's fd for the task socket. */
export const TASK_FD = 3;
/** The child's fd for the control socket. */
export const CONTROL_FD = 4;

export interface WorkerProcessOptions {
  /** The program to run. Default `'php'` (looked up in the child's PATH). */
  command?: string;
  /**
   * Arguments for `command` itself, before the script: php's own options
   * (`['-c', 'php.ini', '-d', 'opcache.enable_cli=1']`), as `execArgv` is
   * for `child_process.fork`. A prototype (WorkerPool's `prototype`) gets
   * them too, before its own script.
   */
  execArgv?: string[];
  /** The worker script, passed as the first argument (none if not given). */
  script?: string;
  /** More arguments after the script. */
  args?: string[];
  /** FOLK_RUNTIME in the worker's environment. Default `'pipe'`. */
  runtime?: string;
  /**
   * The worker's environment, to which FOLK_RUNTIME, FOLK_TASK_FD and
   * FOLK_CONTROL_FD are added. Default `process.env`.
   */
  env?: Record<string, string | undefined>;
  /** Working directory of the worker. */
  cwd?: string;
  /**
   * Signal the worker gets if the supervisor dies (PR_SET_PDEATHSIG), so a
   * worker stuck inside a handler goes too. Default `'SIGKILL'`; `null` for none.
   */
  pdeathsig?: NodeJS.Signals | null;
  /**
   * New namespaces, user maps, mounts and cgroup for the worker, passed to
   * `@folk/fd-inherit`'s spawn as they are (see its README, "Isolation").
   * Fds 3 and 4 work in any of them: a worker with a new net namespace has
   * no network, and still accepts on a listening socket sent to it.
   */
  isolation?: IsolationOptions;
}

/** What to start, checked. @internal */
export interface ProcessPlan {
  command: string;
  /** options.execArgv, checked: the command's own options, before the script. */
  execArgv: string[];
  /** The script and options.args. */
  argv: string[];
  env: Record<string, string | undefined>;
  cwd: string | undefined;
  pdeathsig: NodeJS.Signals | null;
  isolation: IsolationOptions | undefined;
}

const CONSTRUCT: unique symbol = Symbol('WorkerProcess');

/** What a WorkerProcess is made of besides its sockets: a Subprocess of @folk/fd-inherit, or a worker a prototype forked. @internal */
export interface ProcessSource {
  readonly pid: number;
  readonly pidfd: PidFd;
  readonly stdout: net.Socket | null;
  /** How the process ended; the pidfd is the WorkerProcess's to close after. Never rejects. */
  wait(): Promise<ExitInfo>;
}

function ignore(): void {}

/**
 * One worker process and the supervisor's raw ends of its fds 3 and 4.
 * Created by `spawnWorkerProcess`.
 *
 * Once the process has exited and been reaped it holds no fd here, whether
 * or not close() is called: the pidfd is closed at once, and the task and
 * control sockets and stdout as soon as their readers have had what the
 * worker wrote before it went (at once where nobody reads them); `exited`
 * resolves when all of that is done.
 *
 * Events: `'exit'` (ExitInfo) when the process has been reaped, before its
 * sockets are let go.
 */
export class WorkerProcess extends EventEmitter {
  /** Process id. */
  readonly pid: number;
  /** A race-free handle to the process (from @folk/pidfd); closed once it has been reaped. */
  readonly pidfd: PidFd;
  /**
   * The supervisor's end of the task socket (fd 3 in the worker, AF_UNIX
   * SOCK_STREAM). No reader is attached: read and write it as you like.
   */
  readonly task: net.Socket;
  /** The supervisor's end of the control socket (fd 4 in the worker, AF_UNIX SOCK_SEQPACKET), from @folk/scm-rights. */
  readonly control: FdSocket;
  /** The worker's stdout. Read it (or `resume()` it) so the worker never blocks on a full pipe. */
  readonly stdout: net.Socket;
  /** Resolves with how the worker ended, once it is reaped and every fd of it here is closed. Never rejects. */
  readonly exited: Promise<ExitInfo>;
  #exit: ExitInfo | null = null;

  /** @internal */
  constructor(token: typeof CONSTRUCT, sub: ProcessSource, task: net.Socket, control: FdSocket) {
    if (token !== CONSTRUCT) throw illegalConstructor('a WorkerProcess comes from spawnWorkerProcess()');
    super();
    this.pid = sub.pid;
    // Taken from the Subprocess (reading it does that): it is ours to close once reaped.
    this.pidfd = sub.pidfd;
    this.task = task;
    this.control = control;
    this.stdout = sub.stdout!;
    // EPIPE and ECONNRESET on these are the worker going away, which
    // `exited` reports; they must not throw for want of a listener.
    task.on('error', ignore);
    control.on('error', ignore);
    const pid = this.pid;
    this.exited = sub.wait().then(
      (info) => this.#onExit(info),
      // ECHILD cannot happen for our own child reaped only here; still, never reject.
      () => this.#onExit({ pid, code: null, signal: null, signalNumber: null }),
    );
  }

  /** True once the worker has exited (and been reaped). */
  get hasExited(): boolean {
    return this.#exit !== null;
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
   * SIGKILL the worker (if it still runs) and close the task and control
   * sockets now. The process is reaped, and its pidfd and stdout closed, on
   * the event loop as it goes (await `exited` to know when). Idempotent.
   */
  close(): void {
    this.kill('SIGKILL');
    this.task.destroy();
    this.control.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** `await using`: close(), then resolve once the worker is reaped and every fd of it is closed. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.exited;
  }

  async #onExit(info: ExitInfo): Promise<ExitInfo> {
    this.#exit = info;
    this.pidfd.close();
    try {
      this.emit('exit', info);
    } catch (err) {
      // As from any emitter: an uncaught exception, not a rejected `exited`.
      process.nextTick(() => {
        throw err;
      });
    }
    await Promise.all([releaseSocket(this.task), releaseFdSocket(this.control), releaseSocket(this.stdout)]);
    return info;
  }
}

/** A WorkerProcess over a process and sockets made elsewhere (a prototype's fork). @internal */
export function wrapWorkerProcess(source: ProcessSource, task: net.Socket, control: FdSocket): WorkerProcess {
  return new WorkerProcess(CONSTRUCT, source, task, control);
}

/** `opts[key]` as a string the kernel can take, `fallback` when undefined. */
function stringOption<T extends string | undefined>(opts: Record<string, unknown>, key: string, fallback: T): string | T {
  const value = opts[key];
  return value === undefined ? fallback : validateCString(value, `options.${key}`);
}

/** Check the options of spawnWorkerProcess (and spawnWorker): what to start. @internal */
export function processPlan(options: unknown, requireScript: boolean): ProcessPlan {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType('options', 'of type object', options);
  }
  const opts = options as Record<string, unknown>;
  const command = stringOption(opts, 'command', 'php');
  if (command === '') throw invalidArgValue('options.command', 'must not be empty', '');
  const script = stringOption(opts, 'script', undefined);
  if (script === undefined && requireScript) throw invalidArgType('options.script', 'of type string', undefined);
  const execArgv = stringArray(opts, 'execArgv');
  const argv = [...(script === undefined ? [] : [script]), ...stringArray(opts, 'args')];
  const runtime = stringOption(opts, 'runtime', 'pipe');
  const cwd = stringOption(opts, 'cwd', undefined);
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
  };
  return { command, execArgv, argv, env, cwd, pdeathsig: pdeathsig as NodeJS.Signals | null, isolation: parseIsolation(opts['isolation']) };
}

/**
 * options[name], an array of strings or undefined (none). Checked here, each
 * by index (holes too), so an error names options.args[i] rather than the
 * spawn's args[i + 1].
 */
function stringArray(opts: Record<string, unknown>, name: string): string[] {
  const value = opts[name] === undefined ? [] : opts[name];
  if (!Array.isArray(value)) throw invalidArgType(`options.${name}`, 'an array of strings', value);
  const strings: string[] = [];
  for (let i = 0; i < value.length; i++) strings.push(validateCString(value[i], `options.${name}[${i}]`));
  return strings;
}

/** What options.isolation may hold: fd-inherit's IsolationOptions, no more (the type check keeps the two lists one). */
const ISOLATION_KEYS = Object.keys({
  namespaces: true,
  uidMap: true,
  gidMap: true,
  setgroups: true,
  hostname: true,
  root: true,
  mountProc: true,
  mountPropagation: true,
  cgroup: true,
} satisfies Record<keyof IsolationOptions, true>);
const ISOLATION_NAME = new RegExp(`\\boptions\\.(${ISOLATION_KEYS.join('|')})\\b`, 'g');

function parseIsolation(value: unknown): IsolationOptions | undefined {
  if (value === undefined) return undefined;
  const isolation = optionsObject(value, 'options.isolation');
  for (const key of Object.keys(isolation)) {
    if (!ISOLATION_KEYS.includes(key)) throw invalidArgValue('options.isolation', `has an unknown option '${key}' (known: ${ISOLATION_KEYS.join(', ')})`);
  }
  return isolation as IsolationOptions;
}

/** fd-inherit checks the isolation options and names them options.<key>: here they are options.isolation.<key>. */
function isolationError(err: unknown, isolation: IsolationOptions | undefined): unknown {
  const e = err as Error & { code?: unknown };
  if (isolation === undefined || !(e instanceof TypeError || e instanceof RangeError) || typeof e.code !== 'string') return err;
  e.message = e.message.replace(ISOLATION_NAME, 'options.isolation.$1');
  return err;
}

/** What a protocol layer adds to the plumbing. @internal */
export interface ProtocolNeeds {
  /** Set over the worker's environment (FOLK_MAX_FRAME). */
  env?: Record<string, string>;
  /** The control socket's largest datagram; FdSocket's default if not given. */
  maxControlMessage?: number;
  /** Makes the net.Socket over the supervisor's end of the task socket; a plain one if not given. */
  taskSocket?: (fd: number) => net.Socket;
}

/** Start the worker `plan` describes, with what a protocol layer asks for. @internal */
export function startWorkerProcess(plan: ProcessPlan, needs: ProtocolNeeds = {}): WorkerProcess {
  // Every fd here is CLOEXEC; the child ends reach the worker only through
  // the fd map, and are closed here right after the spawn.
  const opened: number[] = [];
  let sub: Subprocess;
  try {
    const [taskParent, taskChild] = socketpair('stream');
    opened.push(taskParent, taskChild);
    const [controlParent, controlChild] = socketpair('seqpacket');
    opened.push(controlParent, controlChild);
    sub = spawn(plan.command, [...plan.execArgv, ...plan.argv], {
      fds: { [TASK_FD]: taskChild, [CONTROL_FD]: controlChild },
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'inherit',
      env: { ...plan.env, ...needs.env },
      ...(plan.cwd === undefined ? {} : { cwd: plan.cwd }),
      ...(plan.pdeathsig === null ? {} : { pdeathsig: plan.pdeathsig }),
      ...plan.isolation,
    });
  } catch (err) {
    closeFds(opened);
    throw isolationError(err, plan.isolation);
  }
  const [taskParent, taskChild, controlParent, controlChild] = opened as [number, number, number, number];
  closeFds([taskChild, controlChild]);
  let task: net.Socket | undefined;
  let control: FdSocket;
  try {
    task = needs.taskSocket ? needs.taskSocket(taskParent) : new net.Socket({ fd: taskParent, readable: true, writable: true });
    control = new FdSocket(controlParent, needs.maxControlMessage === undefined ? {} : { maxMessageBytes: needs.maxControlMessage });
  } catch (err) {
    if (task) task.destroy();
    else closeFds([taskParent]);
    closeFds([controlParent]);
    // Reaped on the event loop, its pidfd closed then (taken here, so by us).
    const pidfd = sub.pidfd;
    sub.kill('SIGKILL');
    const release = (): void => pidfd.close();
    sub.wait().then(release, release);
    throw err;
  }
  return new WorkerProcess(CONSTRUCT, sub, task, control);
}

/**
 * Start one worker process in the FD 3/4 pattern, and nothing more: a
 * socketpair for tasks (stream) and one for control (seqpacket), whose child
 * ends go to fds 3 and 4 of the worker and nowhere else; stdin is /dev/null,
 * stdout a pipe, stderr inherited; FOLK_RUNTIME, FOLK_TASK_FD=3 and
 * FOLK_CONTROL_FD=4 in its environment; PR_SET_PDEATHSIG. The sockets are
 * handed back raw, no reader attached: speak what you like over them.
 * For this package's task protocol, use spawnWorker.
 *
 * @throws TypeError/RangeError for bad options; the spawn error of
 * @folk/fd-inherit (ENOENT, EACCES, ...) when the program cannot start. No
 * fd is left open then.
 */
export function spawnWorkerProcess(options: WorkerProcessOptions): WorkerProcess {
  return startWorkerProcess(processPlan(options, false));
}
