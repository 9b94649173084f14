// spawnWorkerProcess: the FD 3/4 plumbing alone, with no protocol on it.
import { closeSync, readFileSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { FdSocket } from '@folk/scm-rights';
import { CONTROL_FD, TASK_FD, WorkerProcess, spawnWorkerProcess } from '../lib/index.js';
import { fixture, once, openFds, processExists, requirePhp, zombieChildren } from './helpers.js';

beforeAll(() => requirePhp());

/** The child's fds as `fd -> target`, from /proc/PID/fd. */
function childFds(pid: number): Record<string, string> {
  return Object.fromEntries(openFds(pid).map((entry) => entry.split(' -> ') as [string, string]));
}

/** The socket type (1 stream, 5 seqpacket) of `socket:[inode]`, from /proc/net/unix. */
function unixSocketType(target: string): number | undefined {
  const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[6] === inode) return parseInt(f[4]!, 16);
  }
  return undefined;
}

/** The child's environment, from /proc/PID/environ. */
function childEnv(pid: number): Record<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** Resolves with the next line `lines` reads. */
function nextLine(lines: AsyncIterator<string>): Promise<string> {
  return lines.next().then((r) => (r.done ? '(end of file)' : r.value));
}

describe('spawnWorkerProcess', () => {
  it('runs a PHP worker that speaks newline-delimited text on fd 3, not the folk protocol: 1,000 round trips', async () => {
    const before = openFds();
    const proc = spawnWorkerProcess({ script: fixture('lines.php') });
    expect(proc).toBeInstanceOf(WorkerProcess);
    // No reader was attached: the task socket is the caller's to read.
    expect(proc.task.listenerCount('data')).toBe(0);
    const lines = createInterface({ input: proc.task })[Symbol.asyncIterator]();
    expect(await nextLine(lines)).toBe(`hello from ${proc.pid}`);
    for (let i = 0; i < 1000; i++) {
      proc.task.write(`line ${i} of ${proc.pid}\n`);
      expect(await nextLine(lines)).toBe(`LINE ${i} OF ${proc.pid}`);
    }
    // The datagram it sent on fd 4 waited, unread, until someone listened.
    const [hello] = await once<[{ data: Buffer; fds: number[] }]>(proc.control, 'message');
    expect([hello.data.toString(), hello.fds]).toEqual([`hello from ${proc.pid}`, []]);
    proc.task.end(); // its end of file: the worker's loop ends, and so does it
    expect(await proc.exited).toMatchObject({ pid: proc.pid, code: 0, signal: null });
    expect(processExists(proc.pid)).toBe(false);
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });

  it('puts the task socket (stream) at fd 3 and the control socket (seqpacket) at fd 4, stdin /dev/null, stdout a pipe, stderr ours, and nothing else', async () => {
    const [tmpA, tmpB] = socketpair('stream', { cloexec: false }); // inheritable fds here must not reach the worker
    const proc = spawnWorkerProcess({ command: '/bin/sleep', args: ['600'] });
    try {
      const fds = childFds(proc.pid);
      expect(Object.keys(fds).map(Number)).toEqual([0, 1, 2, TASK_FD, CONTROL_FD]);
      expect(fds['0']).toBe('/dev/null');
      expect(fds['1']).toMatch(/^pipe:\[\d+\]$/);
      expect(openFds().filter((entry) => entry.endsWith(` -> ${fds['1']}`))).toHaveLength(1); // our end: proc.stdout
      expect(fds['2']).toBe(readlinkSync('/proc/self/fd/2'));
      expect([unixSocketType(fds['3']!), unixSocketType(fds['4']!)]).toEqual([1, 5]);
      expect(proc.control).toBeInstanceOf(FdSocket);
      expect(proc.control.type).toBe('seqpacket');
    } finally {
      closeSync(tmpA);
      closeSync(tmpB);
      proc.close();
      expect((await proc.exited).signal).toBe('SIGKILL');
    }
  });

  it('sets FOLK_RUNTIME, FOLK_TASK_FD and FOLK_CONTROL_FD over the environment given, and no FOLK_MAX_FRAME (no protocol asked for one)', async () => {
    const proc = spawnWorkerProcess({ command: '/bin/sleep', args: ['600'], runtime: 'lines', env: { PATH: '/bin', KEPT: 'yes', DROPPED: undefined } });
    try {
      expect(childEnv(proc.pid)).toEqual({ PATH: '/bin', KEPT: 'yes', FOLK_RUNTIME: 'lines', FOLK_TASK_FD: '3', FOLK_CONTROL_FD: '4' });
      const plain = spawnWorkerProcess({ command: '/bin/sleep', args: ['600'], cwd: '/tmp' });
      try {
        expect(childEnv(plain.pid)).toMatchObject({ PATH: process.env['PATH'], FOLK_RUNTIME: 'pipe' });
        expect(childEnv(plain.pid)).not.toHaveProperty('FOLK_MAX_FRAME');
        expect(readlinkSync(`/proc/${plain.pid}/cwd`)).toBe('/tmp');
      } finally {
        plain.close();
        await plain.exited;
      }
    } finally {
      proc.close();
      await proc.exited;
    }
  });

  it('kill() signals through the pidfd and does nothing once the worker has exited; close() kills it; neither leaves an fd', async () => {
    const before = openFds();
    const proc = spawnWorkerProcess({ command: '/bin/sleep', args: ['600'] });
    expect(() => proc.kill('SIGNOPE' as never)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_SIGNAL' }));
    const exit = once<[{ signal: string }]>(proc, 'exit');
    proc.kill();
    expect((await exit)[0].signal).toBe('SIGTERM');
    expect((await proc.exited).signal).toBe('SIGTERM');
    expect(proc.hasExited).toBe(true);
    expect(() => proc.kill('SIGKILL')).not.toThrow();
    expect(() => proc.close()).not.toThrow();

    const closed = spawnWorkerProcess({ command: '/bin/sleep', args: ['600'] });
    closed.close();
    expect((await closed.exited).signal).toBe('SIGKILL');
    expect(openFds()).toEqual(before);
    expect(zombieChildren()).toEqual([]);
  });

  it('300 workers that exit by themselves, nobody reading their sockets or calling close(): once `exited` settles, every fd of theirs is closed', async () => {
    // Nothing may be left for the collector to find: this process cannot ask for one.
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    const before = openFds();
    for (let round = 0; round < 30; round++) {
      const procs = Array.from({ length: 10 }, () =>
        // It writes on fd 3, fd 4 and stdout, and leaves it all unread.
        spawnWorkerProcess({ command: '/bin/sh', args: ['-c', 'echo task >&3; echo out; printf control >&4; exit 7'] }),
      );
      const exits = await Promise.all(procs.map((p) => p.exited));
      expect(exits.map((e) => e.code)).toEqual(Array(10).fill(7));
      expect(openFds()).toEqual(before);
    }
    expect(zombieChildren()).toEqual([]);
  }, 120_000);

  it('refuses bad options naming them, and a program that cannot start leaves no fd', () => {
    const before = openFds();
    for (const [options, code, name] of [
      [undefined, 'ERR_INVALID_ARG_TYPE', '"options"'],
      [null, 'ERR_INVALID_ARG_TYPE', '"options"'],
      [{ command: 5 }, 'ERR_INVALID_ARG_TYPE', '"options.command"'],
      [{ command: '' }, 'ERR_INVALID_ARG_VALUE', '"options.command"'],
      [{ script: 'x\0y' }, 'ERR_INVALID_ARG_VALUE', '"options.script"'],
      [{ args: 'x' }, 'ERR_INVALID_ARG_TYPE', '"options.args"'],
      [{ args: ['a', 2] }, 'ERR_INVALID_ARG_TYPE', '"options.args[1]"'],
      [{ execArgv: '-n' }, 'ERR_INVALID_ARG_TYPE', '"options.execArgv"'],
      [{ execArgv: ['-n', null] }, 'ERR_INVALID_ARG_TYPE', '"options.execArgv[1]"'],
      [{ env: 'x' }, 'ERR_INVALID_ARG_TYPE', '"options.env"'],
      [{ runtime: 1 }, 'ERR_INVALID_ARG_TYPE', '"options.runtime"'],
      [{ cwd: 1 }, 'ERR_INVALID_ARG_TYPE', '"options.cwd"'],
      [{ pdeathsig: 9 }, 'ERR_INVALID_ARG_TYPE', '"options.pdeathsig"'],
    ] as const) {
      expect(() => spawnWorkerProcess(options as never), JSON.stringify(options)).toThrow(
        expect.objectContaining({ name: 'TypeError', code, message: expect.stringContaining(name) }),
      );
    }
    expect(() => spawnWorkerProcess({ command: 'no-such-program-here' })).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'spawn' }));
    expect(() => spawnWorkerProcess({ command: '/bin/true', pdeathsig: 'SIGNOPE' as never })).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_SIGNAL' }));
    expect(() => new (WorkerProcess as unknown as new (...a: unknown[]) => unknown)({}, {}, {}, {})).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_ILLEGAL_CONSTRUCTOR' }),
    );
    expect(openFds()).toEqual(before);
  });
});
