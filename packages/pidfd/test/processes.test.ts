// Behaviour that needs a Node process of its own: event-loop liveness,
// UV_THREADPOOL_SIZE, environment teardown, garbage collection, credentials,
// and kernels without the syscalls. The fixtures load the built package
// (dist/), as a user would.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SURVIVED, readableBy, terminateMidCall } from '@folk/test-support';
import { PidFd } from '../lib/index.js';
import { canTraceSiblings, fixture, runNode, spawnUnreaped } from './helpers.js';

/** A sleeper that only our PidFd reaps, and the function that ends it. */
function sleeper(): { pid: number; end(): Promise<unknown> } {
  const pid = spawnUnreaped('sleep', ['1000']);
  const reaper = PidFd.open(pid, { reap: true });
  return {
    pid,
    async end() {
      if (reaper.tryWait() === null) reaper.kill('SIGKILL');
      const info = await reaper.wait();
      reaper.close();
      return info;
    },
  };
}

const json = (stdout: string): Record<string, unknown> => JSON.parse(stdout.trim().split('\n').pop()!);

describe('the event loop', () => {
  it('1,000 concurrent waits with UV_THREADPOOL_SIZE=1 leave the threadpool free for fs.promises.readFile; each pidfd is in epoll, no thread or timer serves them', async () => {
    const run = await runNode('many-waits.mjs', ['1000'], { env: { ...process.env, UV_THREADPOOL_SIZE: '1' } });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(json(run.stdout)).toEqual({
      threadpool: '1',
      processes: 1000,
      reads: expect.arrayContaining([expect.any(Number)]),
      resolvedWhenReadDone: 0,
      runningWhenReadDone: 1000,
      inEpoll: 1000,
      threadsAdded: 0,
      timers: 0,
      allExited: true,
      sharedSameAnswer: true,
      shCode: 0,
    });
    expect((json(run.stdout).reads as number[]).every((n) => n > 0)).toBe(true);
  });

  it('a pending wait keeps Node alive until the process exits (ref is the default)', async () => {
    for (const mode of ['ref', 'reref']) {
      const s = sleeper();
      let killed = false;
      const run = await runNode('keepalive.mjs', [mode, String(s.pid)], {
        onStdout: (out) => {
          // Only once the wait is pending: Node has had every chance to exit.
          if (!killed && out.includes('waiting\n')) {
            killed = true;
            void s.end();
          }
        },
      });
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^waiting\nexited \{"pid":\d+,"code":null,"signal":null,"signalNumber":null\}\nnode-exit\n$/);
    }
  });

  it('unref() lets Node exit with a wait pending, called before the wait or while it is pending', async () => {
    for (const mode of ['unref', 'unref-pending']) {
      const s = sleeper();
      try {
        const run = await runNode('keepalive.mjs', [mode, String(s.pid)]);
        expect(run.code).toBe(0);
        expect(run.stdout).toBe('waiting\nnode-exit\n');
        using check = PidFd.open(s.pid);
        expect(check.tryWait()).toBeNull(); // the process it waited on is still running
      } finally {
        await s.end();
      }
    }
  });

  it.skipIf(!canTraceSiblings())('a wait whose exit a tracer holds keeps Node alive until it resolves, unless unref()', async () => {
    const held = await runNode('held.mjs', ['ref']);
    expect(held.stderr).toBe('');
    expect(held.stdout).toBe('exited SIGKILL\nnode-exit\n');
    const unref = await runNode('held.mjs', ['unref']);
    expect(unref.stderr).toBe('');
    expect(unref.stdout).toBe('node-exit\n');
  });

  it('process.exit() with a pending wait exits cleanly', async () => {
    const s = sleeper();
    try {
      const run = await runNode('keepalive.mjs', ['exit', String(s.pid)]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toBe('waiting\nnode-exit\n');
    } finally {
      await s.end();
    }
  });

  it('an aborted wait no longer keeps Node alive', async () => {
    const s = sleeper();
    try {
      const run = await runNode('keepalive.mjs', ['abort', String(s.pid)]);
      expect(run.code).toBe(0);
      expect(run.stdout).toBe('waiting\nrejected AbortError\nnode-exit\n');
    } finally {
      await s.end();
    }
  });
});

describe('lifetimes', () => {
  it('worker teardown with pending, unref’d or forgotten handles, or from inside a wait callback, neither crashes nor leaks fds', async () => {
    const s = sleeper();
    try {
      const run = await runNode('teardown.mjs', [String(s.pid)]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(json(run.stdout)).toEqual({
        exits: ['exit-in-callback:10-open:0', 'forget:10-open:0', 'terminate-unwaited:10-open:1', 'terminate:10-open:1', 'unref:10-open:0'],
        leaked: [],
      });
    } finally {
      await s.end();
    }
  });

  it('a worker thread terminated in the middle of calls into the binding does not take the process down', () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const setup = `const { PidFd } = require(${JSON.stringify(dist)}); const fs = require('node:fs');`;
    const loop = `for (let i = 0; i < 300; i++) { const p = PidFd.open(process.pid); try { p.kill(0); p.tryWait(); fs.closeSync(p.getFd(0)); } catch {} p.close(); }`;
    expect(terminateMidCall(setup, loop)).toEqual(SURVIVED);
  }, 120_000);

  // Loaded only in the workers, Node unloads the addon when the last of them
  // ends, while the children handed on at teardown still run.
  it.each(['end', 'exit', 'terminate', 'unwaited'])(
    "reap: true children still running when the worker threads that alone loaded pidfd end (%s) are reaped once they exit: no crash, no zombie, no fd left",
    async (mode) => {
      const run = await runNode('worker-reap.mjs', [mode]);
      expect(run.stderr).toBe('');
      expect({ code: run.code, signal: run.signal }).toEqual({ code: 0, signal: null });
      expect(json(run.stdout)).toEqual({ [mode]: [null], leaked: [] });
    },
  );

  it('the same with pidfd loaded on the main thread too (every ending in one process)', async () => {
    const run = await runNode('worker-reap.mjs', ['end,exit,terminate,unwaited', 'main-too']);
    expect(run.stderr).toBe('');
    expect({ code: run.code, signal: run.signal }).toEqual({ code: 0, signal: null });
    expect(json(run.stdout)).toEqual({ end: [null], exit: [null], terminate: [null], unwaited: [null], leaked: [] });
  });

  it("adopt() refuses the number of another open PidFd's private duplicate, of this thread or another (closing it would make libuv abort the process), and takes the number once it is free", async () => {
    const run = await runNode('private-dup.mjs');
    expect(run.stderr).toBe('');
    expect({ code: run.code, signal: run.signal }).toEqual({ code: 0, signal: null });
    const out = json(run.stdout) as Record<string, { message: string } | number | string | boolean | string[]>;
    for (const [key, fd] of [['sameThread', out['sameThreadFd']], ['otherThread', out['otherThreadFd']]] as const) {
      expect(out[key]).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      expect((out[key] as { message: string }).message).toContain(
        `The "fd" argument is invalid: fd ${fd} is the private duplicate an open PidFd works through`,
      );
    }
    expect(out).toMatchObject({ waited: 'SIGKILL', workerSaid: 'alive', reusedAdopted: true, leaked: [] });
  });

  it('the process exits normally while the threads handed such children still wait', async () => {
    const run = await runNode('worker-reap.mjs', ['process-exit']);
    expect(run.stderr).toBe('');
    expect({ code: run.code, signal: run.signal }).toEqual({ code: 0, signal: null });
    // Still running (sleeping, or under load still on their way into sleep), not zombies, not gone.
    const { running } = json(run.stdout) as { running: (string | null)[] };
    expect(running.length).toBeGreaterThan(0);
    expect(running.filter((s) => s !== 'S' && s !== 'R' && s !== 'D')).toEqual([]);
  });

  it('a PidFd collected without close() has its fd closed (not a number closed by hand and reused), is never reaped by the collector, and is kept while a wait is pending', async () => {
    const run = await runNode('gc.mjs', [], { nodeArgs: ['--expose-gc'] });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(json(run.stdout)).toEqual({
      // Two fds for each of 200 PidFds (the pidfd and the handle's private
      // duplicate), and the duplicate of each of the 50 whose pidfd was closed by hand.
      leftBeforeGc: 450,
      leftAfterGc: 0,
      strangers: 50,
      strangersKept: 50,
      reapFdClosed: true,
      reapLeftZombie: true,
      reaped: true,
      pendingWaitResolved: true,
    });
  });
});

describe('permissions and kernels', () => {
  it.skipIf(process.getuid?.() !== 0)('another user gets EPERM from getFd (the message says why) and from kill', async () => {
    const nobody = { uid: 65534, gid: 65534 };
    // The fixture and the package where nobody can read them (a checkout under a 0700 directory is not).
    const { roots, remove } = readableBy(nobody, { '@folk/pidfd': fileURLToPath(new URL('..', import.meta.url)) }, { '@folk/pidfd': ['test/fixtures/getfd.mjs'] });
    const run = await runNode(join(roots['@folk/pidfd']!, 'test/fixtures/getfd.mjs'), [String(process.pid)], nobody).finally(remove);
    expect(run.stderr).toBe('');
    const out = json(run.stdout) as Record<string, { code: string; syscall: string; message: string }>;
    expect(out['getFd']).toMatchObject({ code: 'EPERM', syscall: 'pidfd_getfd' });
    expect(out['getFd']!.message).toMatch(/^EPERM: operation not permitted, pidfd_getfd \(fd 0 of pid \d+\): .*ptrace/);
    expect(out['kill']).toMatchObject({ code: 'EPERM', syscall: 'pidfd_send_signal' });
  });

  it('out of fds (RLIMIT_NOFILE), open() and getFd() give EMFILE naming the call, and nothing leaks', () => {
    const out = execFileSync('sh', ['-c', 'ulimit -n 64 && exec "$0" "$1"', process.execPath, fixture('emfile.mjs')], {
      encoding: 'utf8',
    });
    const report = json(out) as Record<string, { code: string; message: string } | number | string[]>;
    expect(report['open']).toMatchObject({ code: 'EMFILE', errno: -24 });
    expect((report['open'] as { message: string }).message).toMatch(
      /^EMFILE: too many open files, (pidfd_open \(pid \d+\)|fcntl \(pid \d+: duplicating the pidfd for the handle\))$/,
    );
    expect(report['opened']).toBeGreaterThan(0);
    expect(report['getFd']).toMatchObject({ code: 'EMFILE', errno: -24, syscall: 'pidfd_getfd' });
    // One fd left: pidfd_open takes it, the duplicate finds none, and the pidfd is closed again.
    expect(report['openOneLeft']).toMatchObject({ code: 'EMFILE', errno: -24, syscall: 'fcntl' });
    expect((report['openOneLeft'] as { message: string }).message).toMatch(
      /^EMFILE: too many open files, fcntl \(pid \d+: duplicating the pidfd for the handle\)$/,
    );
    expect(report['slotFree']).toBe(true);
    expect(report['leaked']).toEqual([]);
    expect(report['lost']).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare'))(
    'adopt of a pidfd for a process outside our pid namespace asks for options.pid',
    () => {
      using self = PidFd.open(process.pid);
      const out = execFileSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, fixture('adopt-ns.mjs')], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit', self.fd],
      });
      expect(json(out)).toEqual({
        pidHere: 1,
        withoutPid: {
          name: 'TypeError',
          code: 'ERR_INVALID_ARG_VALUE',
          message: 'The "fd" argument refers to a process outside this pid namespace; pass options.pid. Received 3',
        },
        withPid: { pid: 4242, running: true },
      });
    },
  );

  const cc = ['/usr/bin/cc', '/usr/local/bin/cc'].find((p) => existsSync(p));
  it.skipIf(!cc)('ENOSYS (and 5.3’s EINVAL for waitid P_PIDFD) name the call and the kernel it needs', async () => {
    const exe = join(mkdtempSync(join(tmpdir(), 'pidfd-enosys-')), 'enosys');
    execFileSync(cc!, ['-O2', '-o', exe, fixture('enosys.c')]);
    const under = async (which: string) => {
      const out = execFileSync(exe, [which, '--', process.execPath, fixture('enosys.mjs'), which], { encoding: 'utf8' });
      return json(out);
    };
    const open = await under('open');
    expect(open['open']).toMatchObject({ code: 'ENOSYS', syscall: 'pidfd_open' });
    expect((open['open'] as { message: string }).message).toMatch(
      /^ENOSYS: function not implemented, pidfd_open \(pid \d+\): pidfd_open needs Linux 5\.3 or later$/,
    );
    const others = (await under('others')) as Record<string, { code: string; syscall: string; message: string }>;
    expect(others['kill']).toMatchObject({ code: 'ENOSYS', syscall: 'pidfd_send_signal' });
    expect(others['kill']!.message).toMatch(/pidfd_send_signal needs Linux 5\.1 or later$/);
    expect(others['getFd']).toMatchObject({ code: 'ENOSYS', syscall: 'pidfd_getfd' });
    expect(others['getFd']!.message).toMatch(/pidfd_getfd needs Linux 5\.6 or later$/);
    expect(others['tryWait']).toMatchObject({ code: 'ENOSYS', syscall: 'waitid' });
    expect(others['tryWait']!.message).toMatch(/waitid needs Linux 5\.4 \(P_PIDFD\) or later$/);
    expect(others['wait']).toEqual(others['tryWait']);
  });

  it.skipIf(!cc)(
    "close() never closes another PidFd's private duplicate that took its number closed by hand, with kcmp(2) and without (Docker's seccomp refuses it)",
    () => {
      const exe = join(mkdtempSync(join(tmpdir(), 'pidfd-enosys-')), 'enosys');
      execFileSync(cc!, ['-O2', '-o', exe, fixture('enosys.c')]);
      const expected = { setUp: true, takerFdIsQs: false, mine: 'SIGKILL', stranger: 'running' };
      expect(json(execFileSync(process.execPath, [fixture('private-taken.mjs')], { encoding: 'utf8' }))).toEqual(expected);
      const run = ['kcmp', '--', process.execPath, fixture('private-taken.mjs')];
      expect(json(execFileSync(exe, run, { encoding: 'utf8' }))).toEqual(expected);
    },
  );
});
