// Every way the child can be created (clone3 with and without
// CLONE_CLEAR_SIGHAND, clone(2) with CLONE_PIDFD, clone(2) + pidfd_open),
// every way it closes the fds it was not given, and both ways it reports a
// failure (shared memory, or the pipe used where CLONE_VM is a fork, as
// under qemu-user), is forced in turn, so the fallbacks for older kernels,
// seccomp filters and emulators are exercised on this kernel too.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { PidFd } from '@folk/pidfd';
import { spawn } from '../lib/index.js';
import { CloneMode, CloseMethod, ReportMode, native } from '../lib/native.js';
import { setInheritable } from '../lib/index.js';
import { errorOf, openFds, outputOf, zombieChildren } from './helpers.js';

const original = native.testing.getCloneMode();
const originalClose = native.testing.getCloseMethod();
afterAll(() => {
  native.testing.setCloneMode(original);
  native.testing.setCloseMethod(originalClose);
  native.testing.setReportMode(ReportMode.Unknown);
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

describe.each(Object.entries(CloneMode))('clone mode %s, with a user namespace (the handshake without CLONE_VFORK)', (_name, mode) => {
  it('writes the maps before the child goes on, reports exec and map errors, and leaves the mode as it was', async () => {
    native.testing.setCloneMode(mode);
    const before = openFds();
    const isolation = { namespaces: { user: true, pid: true, mount: true, uts: true }, hostname: 'h', uidMap: [{ inside: 7, outside: 0, count: 1 }] };
    const child = spawn('/bin/sh', ['-c', 'id -u; echo $$; hostname'], { ...isolation, stdout: 'pipe' });
    const { out, code } = await outputOf(child);
    expect([code, out]).toEqual([0, '7\n1\nh\n']);
    expect(errorOf(() => spawn('/nonexistent', [], isolation))).toMatchObject({ code: 'ENOENT', step: 'execve' });
    const overlapping = [
      { inside: 0, outside: 0, count: 2 },
      { inside: 1, outside: 5, count: 1 },
    ];
    expect(errorOf(() => spawn('/bin/true', [], { ...isolation, uidMap: overlapping }))).toMatchObject({ code: 'EINVAL', step: 'write uid_map' });
    expect(native.testing.getCloneMode()).toBe(mode);
    expect(zombieChildren()).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
  });
});

describe('failure reports', () => {
  it('go through shared memory on a real kernel, as the first spawn finds out', () => {
    native.testing.setReportMode(ReportMode.Unknown);
    expect(errorOf(() => spawn('/nonexistent', [])).code).toBe('ENOENT');
    expect(native.testing.getReportMode()).toBe(ReportMode.Memory);
  });

  describe.each(Object.entries(CloseMethod))('through the pipe (as under qemu-user), close method %s', (_name, method) => {
    it('reach the parent whatever the fd map and the closing do to the pipe number', async () => {
      native.testing.setCloseMethod(method);
      native.testing.setReportMode(ReportMode.Pipe);
      const before = openFds();
      try {
        // The pipe takes the lowest free numbers (no 'ignore' here, whose
        // /dev/null would take one first): place a file at each of them,
        // so the child's end of the pipe is a target of the fd map.
        const probe = [openSync('/dev/null', 'r'), openSync('/dev/null', 'r')];
        for (const fd of probe) closeSync(fd);
        const low = Math.min(...probe);
        const file = openSync('/etc/hostname', 'r');
        try {
          const fds = Object.fromEntries([0, 1, 2, 3].map((i) => [low + i, file]));
          const err = errorOf(() => spawn('/nonexistent', [], { fds }));
          expect(err).toMatchObject({ code: 'ENOENT', step: 'execve' });
          // Not a target: closed with the other fds unless kept for the report.
          expect(errorOf(() => spawn('/bin/true', [], { cwd: '/nonexistent' }))).toMatchObject({ code: 'ENOENT', step: 'chdir' });
          // A program that does start: EOF on the pipe, and it runs with exactly its map.
          const child = spawn('/bin/sh', ['-c', 'ls /proc/$$/fd'], { fds: { [low + 1]: file }, stdout: 'pipe' });
          const { out, code } = await outputOf(child);
          expect(code).toBe(0);
          expect(out.split('\n').filter(Boolean).map(Number).sort((x, y) => x - y)).toEqual([0, 1, 2, low + 1]);
          // And with the handshake of a user namespace.
          expect(errorOf(() => spawn('/nonexistent', [], { fds, namespaces: { user: true } }))).toMatchObject({ code: 'ENOENT' });
          expect(native.testing.getReportMode()).toBe(ReportMode.Pipe);
        } finally {
          closeSync(file);
        }
      } finally {
        native.testing.setReportMode(ReportMode.Unknown);
        native.testing.setCloseMethod(originalClose);
      }
      expect(zombieChildren()).toEqual([]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(openFds()).toEqual(before);
    });
  });
});
