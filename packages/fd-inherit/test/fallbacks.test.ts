// Every way the child can be created (clone3 with and without
// CLONE_CLEAR_SIGHAND, clone(2) with CLONE_PIDFD, clone(2) + pidfd_open),
// and every way it closes the fds it was not given, is forced in turn, so
// the fallbacks for older kernels and seccomp filters are exercised on this
// kernel too.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { PidFd } from '@folk/pidfd';
import { spawn } from '../lib/index.js';
import { CloneMode, CloseMethod, native } from '../lib/native.js';
import { setInheritable } from '../lib/index.js';
import { errorOf, openFds, outputOf, zombieChildren } from './helpers.js';

const original = native.testing.getCloneMode();
const originalClose = native.testing.getCloseMethod();
afterAll(() => {
  native.testing.setCloneMode(original);
  native.testing.setCloseMethod(originalClose);
});

function sigField(status: string, field: string): bigint {
  return BigInt(`0x${new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(status)![1]}`);
}

describe.each(Object.entries(CloneMode))('clone mode %s', (_name, mode) => {
  it('places swapped fds, hands back a working pidfd, restores the signal mask and reports exec errors', async () => {
    native.testing.setCloneMode(mode);
    const before = openFds();
    const a = openSync('/etc/hostname', 'r');
    const b = openSync('/etc/passwd', 'r');
    try {
      const child = spawn('/bin/sh', ['-c', 'readlink /proc/$$/fd/' + a + ' /proc/$$/fd/' + b + '; cat /proc/self/status; exit 7'], {
        fds: { [a]: b, [b]: a },
        stdout: 'pipe',
      });
      expect(child.pidfd).toBeInstanceOf(PidFd);
      expect(readFileSync(`/proc/self/fdinfo/${child.pidfd.fd}`, 'utf8')).toMatch(new RegExp(`^Pid:\\s*${child.pid}$`, 'm'));
      const { out, code } = await outputOf(child);
      child.pidfd.close();
      expect(code).toBe(7);
      const [first, second] = out.split('\n');
      expect([first, second]).toEqual(['/etc/passwd', '/etc/hostname']);
      expect(sigField(out, 'SigBlk')).toBe(0n);

      const err = errorOf(() => spawn('/nonexistent', [], { stdout: 'pipe' }));
      expect(err.code).toBe('ENOENT');
      expect(err.syscall).toBe('spawn');
      expect(native.testing.getCloneMode()).toBe(mode);
    } finally {
      closeSync(a);
      closeSync(b);
    }
    expect(zombieChildren()).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
  });
});

describe.each(Object.entries(CloseMethod))('close method %s', (_name, method) => {
  it('leaves exactly 0-2 and the mapped fds, around gaps, whatever the parent has open', async () => {
    native.testing.setCloseMethod(method);
    const stray = openSync('/etc/hostname', 'r');
    const a = openSync('/etc/passwd', 'r');
    try {
      setInheritable(stray, true); // would leak without closing
      const child = spawn('/bin/sh', ['-c', 'ls /proc/$$/fd'], { fds: { 3: a, 7: a, 9: stray }, stdout: 'pipe' });
      const { out, code } = await outputOf(child);
      child.pidfd.close();
      expect(code).toBe(0);
      expect(out.split('\n').filter(Boolean).map(Number).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 7, 9]);

      const none = spawn('/bin/sh', ['-c', 'ls /proc/$$/fd'], { stdout: 'pipe' });
      const plain = await outputOf(none);
      none.pidfd.close();
      expect(plain.out.split('\n').filter(Boolean).map(Number).sort((x, y) => x - y)).toEqual([0, 1, 2]);
      expect(native.testing.getCloseMethod()).toBe(method);
    } finally {
      closeSync(stray);
      closeSync(a);
    }
  });
});
