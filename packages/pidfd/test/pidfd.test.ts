import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, writeSync } from 'node:fs';
import { getEventListeners, once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { release } from 'node:os';
import { PidFd, type ExitInfo } from '../lib/index.js';
import { native } from '../lib/native.js';
import { O_CLOEXEC, canTraceSiblings, epollWatched, errorOf, fdFlags, fixture, holdExit, openFds, procState, spawnUnreaped } from './helpers.js';

/** Open a reaping PidFd on a fresh child that nobody else reaps. */
function own(command: string, args: string[] = []): PidFd {
  return PidFd.open(spawnUnreaped(command, args), { reap: true });
}

/** A `sleep` that is not our child: a grandchild, whose parent shell reaps it. */
async function grandchild(): Promise<{ pid: number; done: Promise<unknown> }> {
  const sh = spawn('sh', ['-c', 'sleep 1000 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const [line] = (await once(sh.stdout!, 'data')) as [Buffer];
  return { pid: Number(line.toString().trim()), done: once(sh, 'exit') };
}

describe('wait on our own child (reap: true)', () => {
  it('reports /bin/true as code 0 and /bin/false as code 1, with rusage', async () => {
    using t = own('true');
    using f = own('false');
    const [a, b] = await Promise.all([t.wait(), f.wait()]);
    expect(a).toMatchObject({ pid: t.pid, code: 0, signal: null, signalNumber: null });
    expect(b).toMatchObject({ pid: f.pid, code: 1, signal: null, signalNumber: null });
    expect(a.rusage!.maxRssKb).toBeGreaterThan(0);
    expect(a.rusage!.userCpuMs).toBeGreaterThanOrEqual(0);
    expect(Object.keys(a.rusage!).sort()).toEqual(
      [
        'fsReads',
        'fsWrites',
        'involuntaryContextSwitches',
        'majorPageFaults',
        'maxRssKb',
        'minorPageFaults',
        'systemCpuMs',
        'userCpuMs',
        'voluntaryContextSwitches',
      ].sort(),
    );
  });

  it("reports `kill -9 $$` as SIGKILL, and reaps: no zombie is left", async () => {
    using p = own('sh', ['-c', 'kill -9 $$']);
    const info = await p.wait();
    expect(info).toMatchObject({ code: null, signal: 'SIGKILL', signalNumber: 9 });
    expect(procState(p.pid)).toBeNull();
  });

  it('close() reaps a child that has already exited, so dropping the handle early leaves no zombie', () => {
    const p = own('sleep', ['1000']);
    p.kill('SIGKILL');
    using peek = PidFd.open(p.pid); // reap: false, so waiting on it only peeks
    peek.waitSync();
    expect(procState(p.pid)).toBe('Z');
    p.close();
    expect(procState(p.pid)).toBeNull();
  });

  it('close() gives waits pending on an exited process its exit, reaped, not EBADF', async () => {
    const p = own('sleep', ['1000']);
    const pending = p.wait();
    p.kill('SIGKILL');
    native.readable(p.fd, -1); // exited; the loop has not run, so the wait is still pending
    p.close();
    expect(await pending).toMatchObject({ pid: p.pid, code: null, signal: 'SIGKILL' });
    expect(procState(p.pid)).toBeNull();
  });

  it('reports a signal that has no name by its number', async () => {
    using p = own('sleep', ['1000']);
    p.kill(40); // SIGRTMIN+6: real-time signals kill by default and have no Node name
    expect(await p.wait()).toMatchObject({ code: null, signal: null, signalNumber: 40 });
  });

  it('waiting twice gives the same answer; waitSync and tryWait agree', async () => {
    using p = own('sh', ['-c', 'exit 3']);
    const first = await p.wait();
    expect(first.code).toBe(3);
    expect(await p.wait()).toBe(first);
    expect(p.waitSync()).toBe(first);
    expect(p.tryWait()).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('concurrent waits on one PidFd share one answer', async () => {
    using p = own('sh', ['-c', 'exit 5']);
    const all = await Promise.all([p.wait(), p.wait(), p.wait()]);
    expect(all[0]!.code).toBe(5);
    expect(all[1]).toBe(all[0]);
    expect(all[2]).toBe(all[0]);
  });

  it('a second handle whose status was reaped by the first rejects with ECHILD, every time', async () => {
    const pid = spawnUnreaped('sh', ['-c', 'exit 4']);
    using first = PidFd.open(pid, { reap: true });
    using second = PidFd.open(pid, { reap: true });
    using observer = PidFd.open(pid);
    expect((await first.wait()).code).toBe(4);
    const err = (await second.wait().catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err).toMatchObject({ code: 'ECHILD', syscall: 'waitid', errno: -10 });
    expect(err.message).toMatch(/already collected elsewhere/);
    expect(await second.wait().catch((e: unknown) => e)).toBe(err);
    expect(errorOf(() => second.waitSync())).toBe(err);
    // Without reap, a lost status is reported as an exit with nothing known.
    expect(await observer.wait()).toEqual({ pid, code: null, signal: null, signalNumber: null });
  });

  it('reap: true on a process that is not our child rejects with ECHILD after it exits', async () => {
    const g = await grandchild();
    using p = PidFd.open(g.pid, { reap: true });
    expect(p.tryWait()).toBeNull();
    const waiting = p.wait();
    p.kill('SIGKILL');
    const err = (await waiting.catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err).toMatchObject({ code: 'ECHILD', syscall: 'waitid' });
    expect(err.message).toMatch(/not a child of this process/);
    await g.done;
  });

  it('waitSync blocks until exit and reaps; tryWait is null while running', () => {
    using p = own('sh', ['-c', 'exit 9']);
    using q = own('sleep', ['1000']);
    expect(q.tryWait()).toBeNull();
    expect(p.waitSync()).toMatchObject({ code: 9 });
    expect(procState(p.pid)).toBeNull();
    q.kill('SIGKILL');
    expect(q.waitSync()).toMatchObject({ signal: 'SIGKILL' });
  });
});

describe('wait without reap', () => {
  it('peeks an unreaped child of ours (WNOWAIT): the status is reported and the zombie stays for its reaper', async () => {
    const pid = spawnUnreaped('sh', ['-c', 'exit 6']);
    using peek = PidFd.open(pid);
    expect(await peek.wait()).toMatchObject({ pid, code: 6, signal: null });
    expect(procState(pid)).toBe('Z');
    using reaper = PidFd.open(pid, { reap: true });
    expect(await reaper.wait()).toMatchObject({ code: 6 });
    expect(procState(pid)).toBeNull();
  });

  it("leaves a child_process child's 'exit' event firing with the right code", async () => {
    const children = Array.from({ length: 20 }, (_, i) => spawn('sh', ['-c', `exit ${i + 1}`], { stdio: 'ignore' }));
    const results = await Promise.all(
      children.map(async (child, i) => {
        using p = PidFd.open(child.pid!);
        const exited = once(child, 'exit');
        const info = await p.wait();
        const [code, signal] = await exited;
        return { i, info, code, signal };
      }),
    );
    for (const { i, info, code, signal } of results) {
      expect(code).toBe(i + 1);
      expect(signal).toBeNull();
      // libuv may have reaped before the peek; then the status is unknown, never wrong.
      if (info.code !== null) expect(info.code).toBe(i + 1);
      else expect(info).toEqual({ pid: children[i]!.pid, code: null, signal: null, signalNumber: null });
    }
  });

  it("reports an unknown status once libuv has reaped a child_process child first", async () => {
    const child = spawn('sh', ['-c', 'exit 8'], { stdio: 'ignore' });
    using p = PidFd.open(child.pid!);
    const [code] = await once(child, 'exit'); // libuv has reaped it by now
    expect(code).toBe(8);
    const unknown = { pid: child.pid, code: null, signal: null, signalNumber: null };
    expect(p.tryWait()).toEqual(unknown);
    expect(await p.wait()).toBe(p.tryWait());
  });

  it('close() settles pending waits with an exit already known (tryWait) or just seen, leaving the zombie alone', async () => {
    const pid = spawnUnreaped('sh', ['-c', 'exit 5']);
    using reaper = PidFd.open(pid, { reap: true });
    const seen = PidFd.open(pid);
    const known = PidFd.open(pid);
    const waits = [seen.wait(), known.wait()];
    native.readable(seen.fd, -1);
    const info = known.tryWait()!;
    expect(info).toMatchObject({ pid, code: 5 });
    seen.close();
    known.close();
    expect(await waits[0]).toMatchObject({ pid, code: 5, signal: null });
    expect(await waits[1]).toBe(info);
    expect(procState(pid)).toBe('Z'); // peeked only; the reaper's to collect
    expect((await reaper.wait()).code).toBe(5);
  });

  it('reports that a process which is not our child exited', async () => {
    const g = await grandchild();
    using p = PidFd.open(g.pid);
    const waiting = p.wait();
    p.kill('SIGKILL');
    const info = await waiting;
    expect(info).toEqual({ pid: g.pid, code: null, signal: null, signalNumber: null });
    expect(p.tryWait()).toBe(info);
    expect(p.waitSync()).toBe(info);
    await g.done;
  });
});

describe('exitInfo(): how a process that is not our child ended (PIDFD_INFO_EXIT)', () => {
  const exitInfoKernel = (() => {
    const [major, minor] = release().split('.').map(Number) as [number, number];
    return major > 6 || (major === 6 && minor >= 15);
  })();

  it.skipIf(!exitInfoKernel)('null while it runs and while its parent has not reaped it; then its signal, never rusage', async () => {
    const g = await grandchild();
    using p = PidFd.open(g.pid);
    expect(p.exitInfo()).toBeNull();
    p.kill('SIGTERM');
    await p.wait();
    await g.done; // the shell reaped it, then exited
    expect(p.exitInfo()).toEqual({ pid: g.pid, code: null, signal: 'SIGTERM', signalNumber: 15 });
  });

  it.skipIf(!exitInfoKernel)('its exit code, as its parent saw it', async () => {
    // The subshell waits for a line on the shell's stdin (as fd 3: a background job's stdin is /dev/null), then exits 7.
    const sh = spawn('sh', ['-c', 'exec 3<&0; (read x <&3; exit 7) & echo $!; wait $!'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const [line] = (await once(sh.stdout!, 'data')) as [Buffer];
    const pid = Number(line.toString().trim());
    using p = PidFd.open(pid);
    const done = once(sh, 'exit');
    sh.stdin!.end('go\n');
    await done;
    expect(p.exitInfo()).toEqual({ pid, code: 7, signal: null, signalNumber: null });
  });

  it('throws EBADF once closed', () => {
    const p = PidFd.open(process.pid);
    p.close();
    expect(errorOf(() => p.exitInfo())).toMatchObject({ code: 'EBADF' });
  });
});

describe.skipIf(!canTraceSiblings())('a child whose exit a tracer holds (strace -f, gdb)', () => {
  // The kernel shows a traced zombie to its tracer first: until the tracer
  // lets go, the pidfd is readable but waitid has nothing for the parent.
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  };

  it('wait() stays pending without polling the readable pidfd, then reaps with the real status once the tracer lets go', async () => {
    using p = own('sleep', ['1000']);
    await using tracer = await holdExit(p.pid);
    let settled = false;
    const waiting = p.wait().finally(() => (settled = true));
    p.kill('SIGKILL');
    while (procState(p.pid) !== 'Z') await turns(1);
    await turns(5);
    expect(native.readable(p.fd, 0)).toBe(true); // exited...
    expect(p.tryWait()).toBeNull(); // ...but not ours to collect yet
    expect(settled).toBe(false);
    // Left the pidfd's poll for SIGCHLD: otherwise each loop turn would wake for it.
    expect(epollWatched().pids.has(p.pid)).toBe(false);
    await tracer.release();
    expect(await waiting).toMatchObject({ pid: p.pid, code: null, signal: 'SIGKILL', signalNumber: 9 });
    expect((await waiting).rusage).toBeDefined();
    expect(procState(p.pid)).toBeNull();
  });

  it('waitSync() sleeps until the tracer lets go, then reaps with the real status', async () => {
    using p = own('sleep', ['1000']);
    await using tracer = await holdExit(p.pid, 0.3);
    // SIGKILL: any other signal would stop a traced process for its tracer, not end it.
    p.kill('SIGKILL');
    while (procState(p.pid) !== 'Z'); // exited
    expect(p.tryWait()).toBeNull(); // and held
    tracer.letGo(); // in 0.3 s, by when waitSync is blocked
    expect(p.waitSync()).toMatchObject({ pid: p.pid, code: null, signal: 'SIGKILL' });
    expect(procState(p.pid)).toBeNull();
  });

  it('waitSync() sleeps until then also after a wait() made the pidfd non-blocking', async () => {
    using p = own('sleep', ['1000']);
    const ac = new AbortController();
    const aborted = p.wait({ signal: ac.signal }).catch((e: unknown) => e);
    await turns(2); // the poll handle (and libuv's O_NONBLOCK) is on the pidfd now
    ac.abort();
    await aborted;
    await using tracer = await holdExit(p.pid, 0.3);
    p.kill('SIGKILL');
    while (procState(p.pid) !== 'Z');
    expect(p.tryWait()).toBeNull();
    tracer.letGo();
    expect(p.waitSync()).toMatchObject({ signal: 'SIGKILL' });
    expect(procState(p.pid)).toBeNull();
  });

  it('a peek (no reap) waits for the tracer too, and reports the status, leaving the zombie', async () => {
    const pid = spawnUnreaped('sleep', ['1000']);
    using peek = PidFd.open(pid);
    using reaper = PidFd.open(pid, { reap: true });
    await using tracer = await holdExit(pid);
    const waiting = peek.wait();
    reaper.kill('SIGKILL');
    while (procState(pid) !== 'Z') await turns(1);
    await turns(5);
    expect(peek.tryWait()).toBeNull();
    expect(epollWatched().pids.has(pid)).toBe(false);
    await tracer.release();
    expect(await waiting).toMatchObject({ pid, code: null, signal: 'SIGKILL' });
    expect(procState(pid)).toBe('Z');
    expect((await reaper.wait()).signal).toBe('SIGKILL');
  });
});

describe('two waits racing', () => {
  it('the process that exits wins; the one that never exits stays pending until killed', async () => {
    using forever = own('sleep', ['1000']);
    using quick = own('sh', ['-c', 'exit 2']);
    const slow = forever.wait();
    let slowSettled = false;
    void slow.then(() => (slowSettled = true));
    const winner = await Promise.race([slow.then((i) => ['forever', i] as const), quick.wait().then((i) => ['quick', i] as const)]);
    expect(winner[0]).toBe('quick');
    expect(winner[1].code).toBe(2);
    expect(forever.tryWait()).toBeNull();
    expect(slowSettled).toBe(false);
    forever.kill();
    expect(await slow).toMatchObject({ signal: 'SIGTERM', signalNumber: 15 });
  });
});

describe('kill', () => {
  it('sends signals by name and by number; signal 0 probes', async () => {
    using a = own('sleep', ['1000']);
    using b = own('sleep', ['1000']);
    a.kill(0);
    a.kill('SIGINT');
    b.kill(9);
    expect(await a.wait()).toMatchObject({ signal: 'SIGINT', signalNumber: 2 });
    expect(await b.wait()).toMatchObject({ signal: 'SIGKILL' });
  });

  it('defaults to SIGTERM', async () => {
    using p = own('sleep', ['1000']);
    p.kill();
    expect(await p.wait()).toMatchObject({ signal: 'SIGTERM' });
  });

  it('gives ESRCH after exit: reaped, a zombie not yet reaped, or observed through readiness only', async () => {
    using reaped = own('true');
    await reaped.wait();
    expect(errorOf(() => reaped.kill())).toMatchObject({ code: 'ESRCH', errno: -3, syscall: 'pidfd_send_signal' });

    const zombiePid = spawnUnreaped('true');
    using zombie = PidFd.open(zombiePid);
    using reaper = PidFd.open(zombiePid, { reap: true });
    // Not waited on through `zombie` yet: kill() must notice the exit itself.
    reaper.waitSync();
    expect(errorOf(() => zombie.kill('SIGKILL'))).toMatchObject({ code: 'ESRCH' });

    const z2 = spawnUnreaped('true');
    using unreaped = PidFd.open(z2, { reap: true });
    while (procState(z2) !== 'Z') await new Promise((r) => setImmediate(r));
    // The kernel would accept a signal for the zombie; we report what it means.
    expect(errorOf(() => unreaped.kill())).toMatchObject({ code: 'ESRCH' });
    expect((await unreaped.wait()).code).toBe(0);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'cannot hit the process that reuses the pid (pid reuse forced with ns_last_pid)',
    async () => {
      const { writeFileSync } = await import('node:fs');
      let reused = false;
      // Another process on the machine may take the pid first; try a few times.
      for (let attempt = 0; attempt < 20 && !reused; attempt++) {
        const pid = spawnUnreaped('true');
        using old = PidFd.open(pid, { reap: true });
        await old.wait();
        writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
        const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
        const exited = once(child, 'exit');
        try {
          if (child.pid !== pid) continue;
          reused = true;
          expect(errorOf(() => old.kill('SIGKILL'))).toMatchObject({ code: 'ESRCH' });
          using current = PidFd.open(pid);
          expect(current.tryWait()).toBeNull();
          expect(procState(pid)).not.toBeNull();
          expect(procState(pid)).not.toBe('Z');
        } finally {
          child.kill('SIGKILL');
          await exited;
        }
      }
      expect(reused).toBe(true);
    },
  );
});

describe('AbortSignal', () => {
  it('cancels one wait without touching the others and leaves no listener behind', async () => {
    using p = own('sleep', ['1000']);
    const ac = new AbortController();
    const cancelled = p.wait({ signal: ac.signal });
    const kept = p.wait();
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    ac.abort(new Error('bored'));
    const err = (await cancelled.catch((e: unknown) => e)) as Error & { code: string };
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    expect((err.cause as Error).message).toBe('bored');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    p.kill();
    expect(await kept).toMatchObject({ signal: 'SIGTERM' });
  });

  it('rejects at once for an already aborted signal', async () => {
    using p = own('sleep', ['1000']);
    const err = await p.wait({ signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortError' });
    expect(p.tryWait()).toBeNull();
    p.kill('SIGKILL');
    await p.wait();
  });

  it('removes the listener when the wait resolves normally', async () => {
    using p = own('true');
    const ac = new AbortController();
    await p.wait({ signal: ac.signal });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('1,000 aborted waits leave /proc/self/fd as it was', async () => {
    const before = openFds();
    const sleeper = spawnUnreaped('sleep', ['1000']);
    for (let i = 0; i < 1000; i++) {
      const p = PidFd.open(sleeper);
      const ac = new AbortController();
      const w = p.wait({ signal: ac.signal });
      ac.abort();
      await expect(w).rejects.toMatchObject({ name: 'AbortError' });
      p.close();
    }
    using reaper = PidFd.open(sleeper, { reap: true });
    reaper.kill('SIGKILL');
    await reaper.wait();
    reaper.close();
    expect(openFds()).toEqual(before);
  });
});

describe('fds', () => {
  it('the pidfd is close-on-exec and a child_process child does not inherit it', async () => {
    using p = own('sleep', ['1000']);
    expect(fdFlags(p.fd) & O_CLOEXEC).toBe(O_CLOEXEC);
    const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
    // sleep's dynamic loader opens and closes libraries as it starts, so an fd
    // listed a moment ago may be gone: skip those (a pidfd would not vanish).
    const targets = readdirSync(`/proc/${child.pid}/fd`).flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/${child.pid}/fd/${fd}`)];
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
    });
    expect(targets.filter((t) => t.includes('pidfd'))).toEqual([]);
    child.kill();
    await once(child, 'exit');
    p.kill();
  });

  it('1,000 open/close cycles leave /proc/self/fd as it was', () => {
    const before = openFds();
    for (let i = 0; i < 1000; i++) PidFd.open(process.pid).close();
    expect(openFds()).toEqual(before);
  });

  it('1,000 open/wait/close cycles leave /proc/self/fd as it was; close rejects the pending wait with EBADF', async () => {
    const before = openFds();
    for (let i = 0; i < 1000; i++) {
      const p = PidFd.open(process.pid);
      const w = p.wait();
      p.close();
      await expect(w).rejects.toMatchObject({ code: 'EBADF', syscall: 'waitid' });
    }
    expect(openFds()).toEqual(before);
  });

  it('close is idempotent, fd becomes -1, later calls throw EBADF; Symbol.dispose closes', async () => {
    const p = PidFd.open(process.pid);
    const fd = p.fd;
    p[Symbol.dispose]();
    expect(p.fd).toBe(-1);
    expect(openFds().some((l) => l.startsWith(`${fd} `))).toBe(false);
    p.close();
    expect(errorOf(() => p.kill())).toMatchObject({ code: 'EBADF', syscall: 'pidfd_send_signal' });
    expect(errorOf(() => p.tryWait())).toMatchObject({ code: 'EBADF' });
    expect(errorOf(() => p.waitSync())).toMatchObject({ code: 'EBADF' });
    expect(errorOf(() => p.getFd(0))).toMatchObject({ code: 'EBADF' });
    await expect(p.wait()).rejects.toMatchObject({ code: 'EBADF' });
    expect(p.unref().ref()).toBe(p); // nothing left to change, nothing thrown
    expect(p.pid).toBe(process.pid);
  });

  it('adopt takes over a pidfd, reading the pid from fdinfo, and closes it', async () => {
    using self = PidFd.open(process.pid);
    using p = own('sleep', ['1000']);
    // A second fd for the same pidfd, via pidfd_getfd on ourselves.
    const dup = self.getFd(p.fd);
    const adopted = PidFd.adopt(dup, { reap: false });
    expect(adopted.pid).toBe(p.pid);
    expect(adopted.fd).toBe(dup);
    expect(adopted.tryWait()).toBeNull();
    p.kill('SIGKILL');
    expect(await adopted.wait()).toMatchObject({ signal: 'SIGKILL' });
    expect((await p.wait()).signal).toBe('SIGKILL');
    adopted.close();
    expect(openFds().some((l) => l.startsWith(`${dup} `))).toBe(false);
  });

  it('adopt with reap and a given pid, as a spawn hands a child over', async () => {
    using self = PidFd.open(process.pid);
    const pid = spawnUnreaped('sh', ['-c', 'exit 12']);
    const tmp = PidFd.open(pid);
    const fd = self.getFd(tmp.fd);
    tmp.close();
    using p = PidFd.adopt(fd, { pid, reap: true });
    expect(await p.wait()).toMatchObject({ pid, code: 12 });
    expect(procState(pid)).toBeNull();
  });

  it('the same fd adopted twice (against the README): both wait, each on its own duplicate, and the number is closed once', async () => {
    using p = own('sleep', ['1000']);
    const twin = PidFd.adopt(p.fd, { pid: p.pid });
    const first = p.wait();
    await new Promise((r) => setImmediate(r));
    const second = twin.wait();
    p.kill('SIGKILL');
    expect(await first).toMatchObject({ signal: 'SIGKILL' });
    // The twin only peeks: it sees the status if it asks before p reaps, else nothing.
    const peeked = await second;
    expect(peeked).toMatchObject({ pid: p.pid, code: null });
    expect([null, 'SIGKILL']).toContain(peeked.signal);
    const fd = p.fd;
    twin.close();
    expect(openFds().some((l) => l.startsWith(`${fd} `))).toBe(false); // closed by whichever closes first...
    const stranger = openSync('/dev/null', 'r');
    try {
      expect(stranger).toBe(fd);
      p.close(); // ...and the other leaves the number's next owner alone
      expect(fdFlags(stranger)).toBeGreaterThanOrEqual(0);
    } finally {
      closeSync(stranger);
    }
  });

  it('adopt refuses a non-pidfd, a closed fd and a wrong pid, leaving the fd to the caller', () => {
    const file = openSync('/dev/null', 'r');
    try {
      expect(errorOf(() => PidFd.adopt(file))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      expect(fdFlags(file)).toBeGreaterThanOrEqual(0); // still open, still ours
    } finally {
      closeSync(file);
    }
    expect(errorOf(() => PidFd.adopt(file))).toMatchObject({ code: 'EBADF' });
    using self = PidFd.open(process.pid);
    const fd = self.getFd(self.fd);
    try {
      const err = errorOf(() => PidFd.adopt(fd, { pid: process.pid + 1 }));
      expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
      expect(err.message).toMatch(/options\.pid/);
      expect(fdFlags(fd)).toBeGreaterThanOrEqual(0);
    } finally {
      closeSync(fd);
    }
  });

  const [kernelMajor, kernelMinor] = release().split('.').map(Number) as [number, number];
  const threadPidfds = kernelMajor > 6 || (kernelMajor === 6 && kernelMinor >= 9);
  it.skipIf(!threadPidfds)('adopt refuses a thread pidfd (PIDFD_THREAD, Linux 6.9), leaving it to the caller: a PidFd is for a process', async () => {
    // Python opens one for a thread of ours that is not the leader; we take a copy with getFd().
    const tid = readdirSync('/proc/self/task').map(Number).find((t) => t !== process.pid)!;
    const script = 'import os, sys, time; print(os.pidfd_open(int(sys.argv[1]), 0o200), flush=True); time.sleep(100)';
    const py = spawn('python3', ['-c', script, String(tid)], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(py.stdout!, 'data')) as [Buffer];
      using holder = PidFd.open(py.pid!);
      const fd = holder.getFd(Number(line.toString().trim()));
      try {
        for (const options of [undefined, { pid: tid }]) {
          const err = errorOf(() => PidFd.adopt(fd, options));
          expect(err).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
          expect(err.message).toMatch(/thread/);
        }
        expect(fdFlags(fd)).toBeGreaterThanOrEqual(0); // still open: the caller's
      } finally {
        closeSync(fd);
      }
    } finally {
      py.kill('SIGKILL');
    }
  });

  it('adopt of a pidfd whose process was already reaped needs options.pid, else ESRCH and the fd stays the caller’s', async () => {
    using self = PidFd.open(process.pid);
    const pid = spawnUnreaped('sh', ['-c', 'exit 7']);
    using reaper = PidFd.open(pid, { reap: true });
    const fd = self.getFd(reaper.fd);
    expect((await reaper.wait()).code).toBe(7);
    let late: PidFd;
    try {
      const err = errorOf(() => PidFd.adopt(fd));
      expect(err).toMatchObject({ code: 'ESRCH', errno: -3, syscall: 'adopt' });
      expect(err.message).toMatch(/already reaped and no options\.pid was given/);
      expect(fdFlags(fd)).toBeGreaterThanOrEqual(0);
      late = PidFd.adopt(fd, { pid });
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    using adopted = late;
    expect(adopted.pid).toBe(pid);
    expect(adopted.tryWait()).toEqual({ pid, code: null, signal: null, signalNumber: null });
  });
});

describe('an fd closed by hand, against the README’s advice', () => {
  // pidfs (Linux 6.9+) gives each process its own inode; before, all pidfds share one.
  const pidfs = (() => {
    using a = PidFd.open(process.pid);
    using b = PidFd.open(process.ppid);
    return fstatSync(a.fd).ino !== fstatSync(b.fd).ino;
  })();

  it('a wait survives its fd closed by hand: no abort in libuv, and kill() and wait() still reach the process', () => {
    // In a process of its own: libuv aborts the process whose watched fd is closed under it.
    const run = spawnSync(process.execPath, [fixture('closed-by-hand.mjs')], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: run.status, signal: run.signal, stderr: run.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(JSON.parse(run.stdout)).toEqual({
      sameTick: true,
      restarted: ['ABORT_ERR', true],
      reused: { sameNumber: true, pid: true, strangerOpen: true },
    });
  });

  it('close() leaves the number alone once the kernel has given it to another file', () => {
    const p = PidFd.open(process.pid);
    const fd = p.fd;
    closeSync(fd);
    const stranger = openSync('/dev/null', 'r');
    try {
      expect(stranger).toBe(fd); // the lowest free number
      p.close();
      expect(p.fd).toBe(-1);
      expect(fdFlags(stranger)).toBeGreaterThanOrEqual(0); // still open
    } finally {
      closeSync(stranger);
    }
  });

  it("close() leaves the number alone once it is another PidFd's for the same process (the same inode on pidfs)", () => {
    const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
    try {
      const p = PidFd.open(child.pid!);
      const fd = p.fd;
      closeSync(fd);
      using q = PidFd.open(child.pid!);
      expect(q.fd).toBe(fd); // the lowest free number
      p.close();
      expect(fdFlags(fd)).toBeGreaterThanOrEqual(0); // q's number is still open
      expect(native.pidfdPid(q.fd)).toBe(child.pid);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it.skipIf(!pidfs)(
    "close() with reap: true reaps its own process, through its own duplicate, and neither reaps nor closes another process's pidfd that took the number",
    async () => {
      const a = spawnUnreaped('sh', ['-c', 'exit 1']);
      const b = spawnUnreaped('sh', ['-c', 'exit 2']);
      const p = PidFd.open(a, { reap: true });
      const fd = p.fd;
      closeSync(fd);
      using q = PidFd.open(b, { reap: true });
      expect(q.fd).toBe(fd);
      using peek = PidFd.open(b);
      peek.waitSync(); // b has exited and is reapable through the number p was given
      using peekA = PidFd.open(a);
      peekA.waitSync(); // and so has a
      p.close();
      expect(procState(a)).toBeNull(); // reaped by p: it was p's process
      expect(procState(b)).toBe('Z'); // b is q's to reap
      expect(fdFlags(fd)).toBeGreaterThanOrEqual(0);
      expect(await q.wait()).toMatchObject({ pid: b, code: 2 });
    },
  );
});

describe('the pid of a pidfd without /proc (PIDFD_GET_INFO, 6.13)', () => {
  const fdinfoPid = (fd: number): number => Number(/^Pid:\s*(-?\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))![1]);
  const [major, minor] = release().split('.').map(Number) as [number, number];
  const hasGetInfo = major > 6 || (major === 6 && minor >= 13);

  it('agrees with fdinfo while the process runs and while it is a zombie; defers to fdinfo once reaped', async () => {
    const pid = spawnUnreaped('sleep', ['1000']);
    using p = PidFd.open(pid, { reap: true });
    expect(fdinfoPid(p.fd)).toBe(pid);
    expect(native.pidfdPid(p.fd)).toBe(hasGetInfo ? pid : -1);
    p.kill('SIGKILL');
    native.readable(p.fd, -1); // exited; nobody but us reaps it, so a zombie now
    expect(procState(pid)).toBe('Z');
    expect(native.pidfdPid(p.fd)).toBe(hasGetInfo ? pid : -1);
    await p.wait();
    expect(fdinfoPid(p.fd)).toBe(-1);
    expect(native.pidfdPid(p.fd)).toBe(-1);
  });

  it('says -1, never throws, for fds that are not pidfds or not open', () => {
    const file = openSync('/dev/null', 'r');
    try {
      expect(native.pidfdPid(file)).toBe(-1);
      expect(native.pidfdPid(0)).toBe(-1);
    } finally {
      closeSync(file);
    }
    expect(native.pidfdPid(file)).toBe(-1);
    expect(native.pidfdPid(-1)).toBe(-1);
  });
});

describe('getFd', () => {
  it("duplicates a child's fd into this process, close-on-exec", async () => {
    const child = spawn('sleep', ['1000'], { stdio: ['ignore', 'pipe', 'ignore'] });
    using p = PidFd.open(child.pid!);
    const fd = p.getFd(1); // the child's stdout: the write end of our pipe
    try {
      expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);
      writeSync(fd, 'through the borrowed fd');
      const [data] = (await once(child.stdout!, 'data')) as [Buffer];
      expect(data.toString()).toBe('through the borrowed fd');
    } finally {
      closeSync(fd);
    }
    const err = errorOf(() => p.getFd(99));
    expect(err).toMatchObject({ code: 'EBADF', syscall: 'pidfd_getfd' });
    expect(err.message).toMatch(/fd 99 of pid/);
    child.kill();
    await once(child, 'exit');
  });

  it('gives ESRCH once the process has exited', async () => {
    using p = own('true');
    await p.wait();
    expect(errorOf(() => p.getFd(0))).toMatchObject({ code: 'ESRCH', syscall: 'pidfd_getfd' });
  });

  it('reads what another process wrote, through its fd', () => {
    using self = PidFd.open(process.pid);
    const fd = self.getFd(openSync('/proc/self/comm', 'r'));
    const buf = Buffer.alloc(64);
    expect(buf.subarray(0, readSync(fd, buf)).toString()).toMatch(/\S/);
    closeSync(fd);
  });
});

describe('bad arguments', () => {
  it.each([
    [-1, RangeError, 'ERR_OUT_OF_RANGE'],
    [0, RangeError, 'ERR_OUT_OF_RANGE'],
    [1.5, RangeError, 'ERR_OUT_OF_RANGE'],
    [2 ** 31, RangeError, 'ERR_OUT_OF_RANGE'],
    [2 ** 53, RangeError, 'ERR_OUT_OF_RANGE'],
    [NaN, RangeError, 'ERR_OUT_OF_RANGE'],
    [Infinity, RangeError, 'ERR_OUT_OF_RANGE'],
    ['1', TypeError, 'ERR_INVALID_ARG_TYPE'],
    [1n, TypeError, 'ERR_INVALID_ARG_TYPE'],
    [undefined, TypeError, 'ERR_INVALID_ARG_TYPE'],
    [null, TypeError, 'ERR_INVALID_ARG_TYPE'],
    [{}, TypeError, 'ERR_INVALID_ARG_TYPE'],
  ])('open(%s) throws %s naming "pid"', (pid, type, code) => {
    const err = errorOf(() => PidFd.open(pid as number));
    expect(err).toBeInstanceOf(type);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(/"pid"/);
  });

  it('says what it received, in Node\'s words', () => {
    expect(errorOf(() => PidFd.open('1' as never)).message).toBe(`The "pid" argument must be of type number. Received type string ('1')`);
    expect(errorOf(() => PidFd.open(0)).message).toBe('The value of "pid" is out of range. It must be an integer >= 1 && <= 2147483647. Received 0');
    expect(errorOf(() => PidFd.open(process.pid, { reap: 1 } as never)).message).toBe(
      'The "options.reap" property must be of type boolean. Received type number (1)',
    );
  });

  it('new PidFd() from plain JavaScript throws and takes no fd: only open() and adopt() construct', () => {
    const Ctor = PidFd as unknown as new (...args: unknown[]) => PidFd;
    const file = openSync('/dev/null', 'r');
    try {
      // As if the (TypeScript-private) constructor's parameters were passed, or a pid.
      for (const args of [[file, process.pid, false], [file], [process.pid], []]) {
        const err = errorOf(() => new Ctor(...args));
        expect(err).toBeInstanceOf(TypeError);
        expect(err).toMatchObject({ code: 'ERR_ILLEGAL_CONSTRUCTOR', message: expect.stringMatching(/PidFd\.open/) });
      }
      expect(fstatSync(file).isCharacterDevice()).toBe(true); // not taken, not closed
    } finally {
      closeSync(file);
    }
  });

  it('a well-formed pid that cannot exist is ESRCH from the kernel, naming the pid', () => {
    const err = errorOf(() => PidFd.open(2 ** 31 - 1));
    expect(err).toMatchObject({ code: 'ESRCH', errno: -3, syscall: 'pidfd_open' });
    expect(err.message).toBe('ESRCH: no such process, pidfd_open (pid 2147483647)');
  });

  it('a thread id (not a process) is refused by the kernel', async () => {
    const { Worker } = await import('node:worker_threads');
    const { readdirSync: ls } = await import('node:fs');
    const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
    await once(w, 'online');
    const tid = Number(ls('/proc/self/task').find((t) => Number(t) !== process.pid));
    const err = errorOf(() => PidFd.open(tid));
    expect(err.syscall).toBe('pidfd_open');
    // EINVAL until Linux 6.14 or so; newer kernels say ENOENT.
    expect(['EINVAL', 'ENOENT']).toContain(err.code);
    await w.terminate();
  });

  it('rejects bad options', async () => {
    expect(errorOf(() => PidFd.open(process.pid, { reap: 1 as unknown as boolean }))).toMatchObject({
      code: 'ERR_INVALID_ARG_TYPE',
      message: expect.stringMatching(/"options\.reap"/),
    });
    expect(errorOf(() => PidFd.open(process.pid, 'x' as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(errorOf(() => PidFd.adopt(-1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/"fd"/) });
    expect(errorOf(() => PidFd.adopt(0, { pid: -3 }))).toMatchObject({
      code: 'ERR_OUT_OF_RANGE',
      message: expect.stringMatching(/"options\.pid"/),
    });
    using p = PidFd.open(process.pid);
    await expect(p.wait({ signal: 'x' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(p.wait(null as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(errorOf(() => p.getFd(-1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/"targetFd"/) });
    expect(errorOf(() => p.getFd('0' as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('rejects unknown signal names and out-of-range numbers before signalling anything', async () => {
    using p = own('sleep', ['1000']);
    expect(errorOf(() => p.kill('SIGFOO' as NodeJS.Signals))).toMatchObject({
      name: 'TypeError',
      code: 'ERR_UNKNOWN_SIGNAL',
      message: 'Unknown signal: SIGFOO',
    });
    expect(errorOf(() => p.kill('sigterm' as NodeJS.Signals))).toMatchObject({ code: 'ERR_UNKNOWN_SIGNAL' });
    expect(errorOf(() => p.kill('toString' as NodeJS.Signals))).toMatchObject({ code: 'ERR_UNKNOWN_SIGNAL' });
    expect(errorOf(() => p.kill(65))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => p.kill(-1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => p.kill(1.5))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => p.kill({} as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(p.tryWait()).toBeNull();
    p.kill('SIGKILL');
    const info: ExitInfo = await p.wait();
    expect(info.signal).toBe('SIGKILL');
  });
});
