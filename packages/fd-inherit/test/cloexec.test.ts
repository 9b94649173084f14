// FD_CLOEXEC helpers, and the fd map as a child_process stdio array.
import * as childProcess from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const INT32_MAX = 2 ** 31 - 1;
import { describe, expect, it } from 'vitest';
import { isInheritable, setInheritable, spawn, stdioFromFdMap } from '../lib/index.js';
import { DIST, errorOf, hasCloexec, outputOf, readAll, requireDist, withTempDir } from './helpers.js';

describe('isInheritable / setInheritable', () => {
  it('reads and flips FD_CLOEXEC', () => {
    const fd = openSync('/dev/null', 'r');
    try {
      expect(isInheritable(fd)).toBe(false); // Node opens everything close-on-exec
      expect(hasCloexec(fd)).toBe(true);
      setInheritable(fd, true);
      expect(isInheritable(fd)).toBe(true);
      expect(hasCloexec(fd)).toBe(false);
      setInheritable(fd, true); // idempotent
      expect(hasCloexec(fd)).toBe(false);
      setInheritable(fd, false);
      expect(isInheritable(fd)).toBe(false);
      expect(hasCloexec(fd)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('0-2 are close-on-exec too: Node sets FD_CLOEXEC on them at startup; children still get them (placed with dup2)', async () => {
    requireDist();
    // Prints isInheritable(0-2), then which of 0-2 a child of spawn() and one
    // of child_process have open (a close-on-exec fd would be gone after exec).
    const children = `for fd in 0 1 2; do [ -e /proc/self/fd/$fd ] && printf $fd; done; echo`;
    const script = `
      const { isInheritable, spawn } = require(${JSON.stringify(DIST)});
      const { execFileSync } = require('node:child_process');
      const { writeSync } = require('node:fs');
      writeSync(1, JSON.stringify([0, 1, 2].map(isInheritable)) + '\\n');
      writeSync(1, execFileSync('/bin/sh', ['-c', ${JSON.stringify(children)}], { stdio: ['inherit', 'pipe', 'inherit'] }));
      spawn('/bin/sh', ['-c', ${JSON.stringify(children)}]).wait();`;
    const expected = ['[false,false,false]', '012', '012', ''];
    // stdin /dev/null, stdout a socket (child_process's 'pipe'), stderr a file.
    await withTempDir(async (dir) => {
      const file = openSync(join(dir, 'stderr'), 'w');
      try {
        const r = childProcess.spawnSync(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', file], encoding: 'utf8' });
        expect(r.status).toBe(0);
        expect(r.stdout.split('\n')).toEqual(expected);
      } finally {
        closeSync(file);
      }
    });
    // Pipes (pipe2, as spawn() makes them) at 0-2.
    const child = spawn(process.execPath, ['-e', script], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
    child.stdin!.end();
    child.stderr!.resume();
    const { out, code } = await outputOf(child);
    expect(code).toBe(0);
    expect(out.split('\n')).toEqual(expected);
  });

  it('EBADF for an fd that is not open; TypeError/RangeError for bad arguments', () => {
    const fd = openSync('/dev/null', 'r');
    closeSync(fd);
    const err = errorOf(() => isInheritable(fd));
    expect(err).toMatchObject({ code: 'EBADF', syscall: 'fcntl', errno: -9 });
    expect(err.message).toContain(`fd ${fd}`);
    expect(errorOf(() => setInheritable(fd, true))).toMatchObject({ code: 'EBADF' });
    expect(errorOf(() => isInheritable(-1))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => isInheritable('3' as never))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    expect(errorOf(() => setInheritable(0, 'yes' as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('a fd made inheritable reaches a child_process child; a close-on-exec one does not', async () => {
    const open = openSync('/etc/hostname', 'r');
    const closed = openSync('/etc/passwd', 'r');
    try {
      setInheritable(open, true);
      const child = childProcess.spawn('/bin/sh', ['-c', `ls /proc/$$/fd`], { stdio: ['ignore', 'pipe', 'inherit'] });
      const fds = (await readAll(child.stdout)).split('\n').filter(Boolean).map(Number);
      expect(fds).toContain(open);
      expect(fds).not.toContain(closed);
    } finally {
      closeSync(open);
      closeSync(closed);
    }
  });
});

describe('stdioFromFdMap', () => {
  it('builds the array child_process wants', () => {
    expect(stdioFromFdMap({ 3: 10, 5: 11 })).toEqual(['inherit', 'inherit', 'inherit', 10, 'ignore', 11]);
    expect(stdioFromFdMap({ 1: 7 }, { stdin: 'ignore', stderr: 'pipe' })).toEqual(['ignore', 7, 'pipe']);
    expect(stdioFromFdMap({})).toEqual(['inherit', 'inherit', 'inherit']);
  });

  it('works with child_process.spawn: the fds arrive at the numbers asked', async () => {
    const a = openSync('/etc/hostname', 'r');
    const b = openSync('/etc/passwd', 'r');
    try {
      const stdio = stdioFromFdMap({ 1: 1, 4: a, 6: b }, { stdin: 'ignore' });
      stdio[1] = 'pipe';
      const child = childProcess.spawn('/bin/sh', ['-c', 'readlink /proc/$$/fd/4 /proc/$$/fd/6; [ -e /proc/$$/fd/5 ] || echo no5'], {
        stdio: stdio as childProcess.StdioOptions,
      });
      expect((await readAll(child.stdout)).split('\n')).toEqual(['/etc/hostname', '/etc/passwd', 'no5', '']);
    } finally {
      closeSync(a);
      closeSync(b);
    }
  });

  it('rejects bad maps and defaults', () => {
    expect(errorOf(() => stdioFromFdMap({ x: 1 } as never))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(errorOf(() => stdioFromFdMap({ 3: -2 }))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => stdioFromFdMap({}, { stdin: 5 as never }))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  });

  it('refuses a child fd number no process can have, instead of building an array that long', () => {
    // fs.nr_open is the kernel's ceiling for any fd number; past it the array
    // would only exhaust the heap (INT32_MAX entries: a fatal OOM).
    const nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8'));
    const err = errorOf(() => stdioFromFdMap({ [INT32_MAX]: 3 }));
    expect(err).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    expect(err.message).toContain('"fds"');
    expect(errorOf(() => stdioFromFdMap({ [nrOpen]: 3 }))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(stdioFromFdMap({ 4096: 3 })).toHaveLength(4097);
  });
});
