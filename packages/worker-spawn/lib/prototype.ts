// A prototype: one PHP process that ran the application's preload once and
// forks ready workers from itself on request (php/PrototypeServer.php says
// the messages). Here: starting it, asking it for a worker, tracking each
// worker it forked by a pidfd opened before anything can reap it, and how
// each one ended.
//
// A forked worker is not our child, so waitid cannot tell how it ended. Its
// pidfd still becomes readable when it exits; its status then comes from the
// kernel (PIDFD_INFO_EXIT, Linux 6.15, once its parent has reaped it) or
// from the prototype, which reaps it and reports status and rusage.

import * as net from 'node:net';
import { PidFd, type ExitInfo, type Rusage } from '@folk/pidfd';
import { FdSocket, closeFds } from '@folk/scm-rights';
import { socketpair } from '@folk/socketpair';
import { WorkerError, describeExit } from './errors.js';
import { signalName } from './internal/signals.js';
import { CONTROL_MAX } from './protocol.js';
import { taskSocket } from './task-channel.js';
import { startWorkerProcess, wrapWorkerProcess, type ProcessPlan, type WorkerProcess } from './worker-process.js';

/** What the prototype reported when it reaped a worker. */
interface ExitReport {
  status: number;
  rusage: Record<string, number>;
}

interface PendingFork {
  resolve: (pid: number) => void;
  reject: (err: Error) => void;
}

/**
 * FOLK_PROTOTYPE_EXIT_FROM=prototype ignores the kernel's PIDFD_INFO_EXIT,
 * as on kernels before 6.15 (for tests of that path).
 */
function kernelExitInfoWanted(): boolean {
  return process.env['FOLK_PROTOTYPE_EXIT_FROM'] !== 'prototype';
}

function rusageFrom(r: Record<string, number>): Rusage | undefined {
  if (typeof r['ru_utime.tv_sec'] !== 'number') return undefined;
  const n = (key: string): number => (typeof r[key] === 'number' ? r[key] : 0);
  return Object.freeze({
    userCpuMs: n('ru_utime.tv_sec') * 1000 + n('ru_utime.tv_usec') / 1000,
    systemCpuMs: n('ru_stime.tv_sec') * 1000 + n('ru_stime.tv_usec') / 1000,
    maxRssKb: n('ru_maxrss'),
    minorPageFaults: n('ru_minflt'),
    majorPageFaults: n('ru_majflt'),
    fsReads: n('ru_inblock'),
    fsWrites: n('ru_oublock'),
    voluntaryContextSwitches: n('ru_nvcsw'),
    involuntaryContextSwitches: n('ru_nivcsw'),
  });
}

/** A waitpid status as ExitInfo (WIFEXITED / WTERMSIG). */
function fromStatus(pid: number, status: number, rusage: Rusage | undefined): ExitInfo {
  const termsig = status & 0x7f;
  const base =
    termsig === 0
      ? { pid, code: (status >> 8) & 0xff, signal: null, signalNumber: null }
      : { pid, code: null, signal: signalName(termsig), signalNumber: termsig };
  return Object.freeze(rusage ? { ...base, rusage } : base);
}

/** A socket at end of file: the stdout of a forked worker, which writes to the prototype's. */
function endedStdout(): net.Socket {
  const [a, b] = socketpair('stream');
  closeFds([b]);
  const s = new net.Socket({ fd: a, readable: true, writable: false });
  s.resume();
  return s;
}

export class Prototype {
  readonly process: WorkerProcess;
  /** Resolves once preload has run; rejects if the prototype ends first. */
  readonly ready: Promise<void>;
  readonly #preload: string;
  #exited = false;
  #retired = false;
  #nextId = 1;
  readonly #forks = new Map<number, PendingFork>();
  readonly #reports = new Map<number, ExitReport>();
  readonly #reportWaiters = new Map<number, (r: ExitReport | null) => void>();
  #readySettle: { resolve: () => void; reject: (e: Error) => void } | null = null;
  /** Ends a preload that runs past readyTimeout. */
  #readyTimer: NodeJS.Timeout | null = null;
  /** Pids of the workers forked here that have not yet exited. */
  readonly workers = new Set<number>();

  /** `readyTimeout` (ms; 0 for none): how long the preload may take before the prototype is killed. */
  constructor(plan: ProcessPlan, preload: string, maxFrame: number, readyTimeout = 0) {
    this.#preload = preload;
    // The prototype's own pdeathsig is SIGTERM: its handler SIGKILLs every
    // worker it forked before it exits, so none outlives the supervisor.
    this.process = startWorkerProcess({ ...plan, pdeathsig: 'SIGTERM' }, { env: { FOLK_MAX_FRAME: String(maxFrame) } });
    this.process.task.destroy(); // a prototype takes no tasks
    this.ready = new Promise<void>((resolve, reject) => {
      this.#readySettle = { resolve, reject };
    });
    this.ready.catch(() => {});
    this.process.control.on('message', ({ data, fds }: { data: Buffer; fds: number[] }) => {
      closeFds(fds);
      this.#onMessage(data);
    });
    this.process.on('exit', (info: ExitInfo) => this.#onExit(info));
    if (readyTimeout > 0) this.#readyTimer = setTimeout(() => this.#preloadTimedOut(readyTimeout), readyTimeout);
  }

  /**
   * The preload has not finished within readyTimeout. A bootstrap stuck for
   * good (a database that never answers) looks like a slow one, and
   * nothing else would ever end it: the forks waiting for it would wait
   * for ever, and the pool with them. It fails them now, saying why, and
   * the prototype is killed; the pool treats that as a preload that failed.
   */
  #preloadTimedOut(ms: number): void {
    this.#readyTimer = null;
    const settle = this.#readySettle;
    if (settle === null) return;
    this.#readySettle = null;
    const message = `prototype pid ${this.pid} did not finish its preload ${JSON.stringify(this.#preload)} within readyTimeout (${ms} ms); it was killed`;
    settle.reject(new WorkerError('ERR_WORKER_PROTOTYPE', message, { pid: this.pid }));
    this.kill();
  }

  #clearReadyTimer(): void {
    if (this.#readyTimer) clearTimeout(this.#readyTimer);
    this.#readyTimer = null;
  }

  get pid(): number {
    return this.process.pid;
  }

  get hasExited(): boolean {
    return this.#exited;
  }

  /** retire() was called: its end is expected. */
  get retired(): boolean {
    return this.#retired;
  }

  /** Fork a worker; resolves with its WorkerProcess once its pidfd is held. */
  async fork(): Promise<WorkerProcess> {
    await this.ready;
    // Ours are kept; the worker's ends go to the prototype and are closed here once sent.
    const ours: number[] = [];
    const theirs: number[] = [];
    let pid: number;
    try {
      const [taskParent, taskChild] = socketpair('stream');
      ours.push(taskParent);
      theirs.push(taskChild);
      const [controlParent, controlChild] = socketpair('seqpacket');
      ours.push(controlParent);
      theirs.push(controlChild);
      const id = this.#nextId++;
      const forked = new Promise<number>((resolve, reject) => this.#forks.set(id, { resolve, reject }));
      forked.catch(() => {});
      await this.process.control.send(Buffer.from(JSON.stringify({ type: 'fork', id })), theirs);
      closeFds(theirs.splice(0));
      pid = await forked;
    } catch (err) {
      closeFds([...ours, ...theirs]);
      throw err;
    }
    const [taskParent, controlParent] = ours as [number, number];
    let pidfd: PidFd;
    try {
      // The worker cannot have been reaped: the prototype waits for 'held'.
      pidfd = PidFd.open(pid);
    } catch (err) {
      this.#send({ type: 'abandon', pid });
      closeFds([taskParent, controlParent]);
      throw err;
    }
    this.#send({ type: 'held', pid });
    const task = taskSocket(taskParent);
    const control = new FdSocket(controlParent, { maxMessageBytes: CONTROL_MAX });
    const proc = wrapWorkerProcess({ pid, pidfd, stdout: endedStdout(), wait: () => this.#exitOf(pid, pidfd) }, task, control);
    this.workers.add(pid);
    proc.once('exit', () => {
      this.workers.delete(pid);
      // A retired prototype exits once it has no worker left; tell it again
      // now, in case its last SIGCHLD came just before it went to sleep.
      if (this.#retired) this.#send({ type: 'retire' });
    });
    return proc;
  }

  /** Fork no more: the prototype exits once every worker it forked has been reaped. */
  retire(): void {
    if (this.#retired || this.#exited) return;
    this.#retired = true;
    this.#send({ type: 'retire' });
  }

  /** SIGKILL the prototype (its workers are the caller's to stop). */
  kill(): void {
    this.process.kill('SIGKILL');
  }

  async #exitOf(pid: number, pidfd: PidFd): Promise<ExitInfo> {
    // Readable once it has exited: not our child, so no status here.
    await pidfd.wait().catch(() => undefined);
    const report = await this.#reportFor(pid);
    const rusage = report ? rusageFrom(report.rusage) : undefined;
    let kernel: ExitInfo | null = null;
    if (kernelExitInfoWanted()) {
      try {
        kernel = pidfd.exitInfo();
      } catch {
        kernel = null;
      }
    }
    if (kernel) return Object.freeze(rusage ? { ...kernel, rusage } : kernel);
    if (report) return fromStatus(pid, report.status, rusage);
    // The prototype died before reaping it, and the kernel keeps no status.
    return Object.freeze({ pid, code: null, signal: null, signalNumber: null });
  }

  /** The prototype's report of reaping `pid`; null if the prototype ended without one. */
  #reportFor(pid: number): Promise<ExitReport | null> {
    const report = this.#reports.get(pid);
    if (report) {
      this.#reports.delete(pid);
      return Promise.resolve(report);
    }
    if (this.#exited) return Promise.resolve(null);
    return new Promise((resolve) => this.#reportWaiters.set(pid, resolve));
  }

  #send(message: object): void {
    this.process.control.send(Buffer.from(JSON.stringify(message))).catch(() => {});
  }

  #onMessage(data: Buffer): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (m['type']) {
      case 'ready':
        this.#clearReadyTimer();
        this.#readySettle?.resolve();
        this.#readySettle = null;
        break;
      case 'forked':
      case 'forkError': {
        const id = Number(m['id']);
        const pending = this.#forks.get(id);
        if (!pending) return;
        this.#forks.delete(id);
        if (m['type'] === 'forked') pending.resolve(Number(m['pid']));
        else pending.reject(new WorkerError('ERR_WORKER_PROTOTYPE', `prototype pid ${this.pid} could not fork a worker: ${String(m['message'])}`, { pid: this.pid }));
        break;
      }
      case 'exit': {
        const pid = Number(m['pid']);
        const report: ExitReport = { status: Number(m['status']), rusage: (m['rusage'] ?? {}) as Record<string, number> };
        const waiter = this.#reportWaiters.get(pid);
        if (waiter) {
          this.#reportWaiters.delete(pid);
          waiter(report);
        } else {
          this.#reports.set(pid, report);
        }
        break;
      }
    }
  }

  #onExit(info: ExitInfo): void {
    this.#exited = true;
    this.#clearReadyTimer();
    const err = new WorkerError(
      'ERR_WORKER_PROTOTYPE',
      this.#readySettle
        ? `prototype pid ${this.pid} ended (${describeExit(info)}) before its preload ${JSON.stringify(this.#preload)} was done`
        : `prototype pid ${this.pid} ended (${describeExit(info)})`,
      { pid: this.pid, exit: { code: info.code, signal: info.signal } },
    );
    this.#readySettle?.reject(err);
    this.#readySettle = null;
    for (const p of this.#forks.values()) p.reject(err);
    this.#forks.clear();
    for (const w of this.#reportWaiters.values()) w(null);
    this.#reportWaiters.clear();
  }
}
