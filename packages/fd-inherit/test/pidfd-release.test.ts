// Who owns a child's pidfd: the Subprocess, which closes it once the child
// is reaped, unless the caller took it by reading `subprocess.pidfd` while
// the child was still there.
import { describe, expect, it } from 'vitest';
import { spawn } from '../lib/index.js';
import { errorOf, openFds, zombieChildren } from './helpers.js';

const pidfds = () => openFds().filter((entry) => entry.endsWith('anon_inode:[pidfd]'));

describe('the pidfd of a child nobody took', () => {
  it('10,000 `await spawn(...).wait()` with no close leave /proc/self/fd as it was, without a garbage collection', async () => {
    // Nothing may be left for the collector to find: this process cannot ask for one.
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    const before = openFds();
    let failures = 0;
    for (let i = 0; i < 10_000; i++) {
      const exit = await spawn('/bin/true').wait();
      if (exit.code !== 0) failures++;
      // Closed by the time wait() answers, not merely at the end.
      if (i % 1000 === 0) expect(openFds()).toEqual(before);
    }
    expect(failures).toBe(0);
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  }, 300_000);

  it('is closed once the child is reaped, even if nobody waits', async () => {
    const before = pidfds();
    const child = spawn('/bin/sh', ['-c', 'exit 3']);
    // (Not by number: one the collector closes meanwhile would not be ours.)
    const ours = () => pidfds().filter((entry) => !before.includes(entry));
    expect(ours()).toHaveLength(2); // the pidfd and the PidFd's private duplicate
    while (ours().length > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(zombieChildren()).toEqual([]);
    // The exit is kept: every wait still has it.
    expect((await child.wait()).code).toBe(3);
  });

  it('after release: the same exit for every wait, kill() refuses with ESRCH, pid stays, nothing throws on dispose', async () => {
    const child = spawn('/bin/sh', ['-c', 'exit 7']);
    const pid = child.pid;
    const pending = child.wait({ signal: new AbortController().signal }); // settled with the others
    const exit = await child.wait();
    expect(exit).toMatchObject({ pid, code: 7, signal: null });
    expect(await pending).toBe(exit);
    expect(child.pid).toBe(pid);
    expect(child.pidfd.fd).toBe(-1);

    expect(await child.wait()).toBe(exit);
    expect(await child.wait({ signal: new AbortController().signal })).toBe(exit);
    await expect(child.wait({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(child.wait({ signal: 'no' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });

    // Never a signal to whoever has the pid now: refused without a system call.
    expect(errorOf(() => child.kill())).toMatchObject({
      code: 'ESRCH',
      errno: -3,
      syscall: 'pidfd_send_signal',
      message: `ESRCH: no such process, pidfd_send_signal (process ${pid} has exited)`,
    });
    expect(errorOf(() => child.kill(0))).toMatchObject({ code: 'ESRCH' });
    // Bad arguments are still named first.
    expect(errorOf(() => child.kill('SIGNOPE' as never))).toMatchObject({ code: 'ERR_UNKNOWN_SIGNAL' });
    expect(errorOf(() => child.kill(65))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });

    expect(child.ref()).toBe(child);
    expect(child.unref()).toBe(child);
    expect(() => child[Symbol.dispose]()).not.toThrow();
  });
});

describe('a pidfd the caller took', () => {
  it('reading subprocess.pidfd before the exit makes it the caller\'s: still open after reap, closed by the caller', async () => {
    const before = openFds();
    const child = spawn('/bin/sh', ['-c', 'exit 4']);
    const pidfd = child.pidfd;
    const exit = await child.wait();
    await new Promise((resolve) => setImmediate(resolve));
    expect(pidfd.fd).toBeGreaterThanOrEqual(3);
    expect(pidfds()).toContain(`${pidfd.fd} -> anon_inode:[pidfd]`);
    expect(pidfd.tryWait()).toBe(exit);
    expect(child.pidfd).toBe(pidfd);
    expect(errorOf(() => child.kill())).toMatchObject({ code: 'ESRCH' });
    pidfd.close();
    expect(openFds()).toEqual(before);
  });

  it('reading it after the exit gives the closed PidFd and takes nothing', async () => {
    const before = openFds();
    const child = spawn('/bin/true');
    await child.wait();
    expect(child.pidfd.fd).toBe(-1);
    expect(() => child.pidfd.close()).not.toThrow(); // what callers did before: harmless
    expect(openFds()).toEqual(before);
  });

  it('`using` still closes a taken pidfd once the child is reaped', async () => {
    const before = openFds();
    let pidfd;
    {
      using child = spawn('/bin/sleep', ['1000']);
      pidfd = child.pidfd;
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
    while (pidfd.fd !== -1) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });
});
