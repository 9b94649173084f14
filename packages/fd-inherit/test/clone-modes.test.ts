// Every way the child can be created (clone3 with and without
// CLONE_CLEAR_SIGHAND, clone(2) with CLONE_PIDFD, clone(2) + pidfd_open) is
// forced in turn, so the fallbacks for older kernels and seccomp filters are
// exercised on this kernel too.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from '../lib/index.js';
import { CloneMode, native } from '../lib/native.js';
import { errorOf, openFds, outputOf, zombieChildren } from './helpers.js';

const original = native.getCloneMode();
afterAll(() => native.setCloneMode(original));

function sigField(status: string, field: string): bigint {
  return BigInt(`0x${new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(status)![1]}`);
}

describe.each(Object.entries(CloneMode))('clone mode %s', (_name, mode) => {
  it('places swapped fds, hands back a working pidfd, restores the signal mask and reports exec errors', async () => {
    native.setCloneMode(mode);
    const before = openFds();
    const a = openSync('/etc/hostname', 'r');
    const b = openSync('/etc/passwd', 'r');
    try {
      const child = spawn('/bin/sh', ['-c', 'readlink /proc/$$/fd/' + a + ' /proc/$$/fd/' + b + '; cat /proc/self/status; exit 7'], {
        fds: { [a]: b, [b]: a },
        stdout: 'pipe',
      });
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
      expect(native.getCloneMode()).toBe(mode);
    } finally {
      closeSync(a);
      closeSync(b);
    }
    expect(zombieChildren()).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
  });
});
