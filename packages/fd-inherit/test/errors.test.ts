// A program that cannot be started throws synchronously, and leaves neither a
// zombie nor an fd behind; bad arguments throw Node-style TypeError/RangeError.
import { chmodSync, closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { PidFd } from '@folk/pidfd';
import { Subprocess, spawn, stdioFromFdMap } from '../lib/index.js';
import { SURVIVED, terminateMidCall } from '@folk/test-support';
import { DIST, children, errorOf, expectNothingLeftByEachTest, fdLimit, outputOf, requireDist, withTempDir } from './helpers.js';

const INT32_MAX = 2 ** 31 - 1;

/** A typed array whose buffer was transferred away. */
function detached(): Uint8Array {
  const buffer = new ArrayBuffer(4);
  const view = new Uint8Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

expectNothingLeftByEachTest();

describe('a program that cannot start', () => {
  it('ENOENT for a missing path', () => {
    const err = errorOf(() => spawn('/nonexistent/program', ['x'], { stdout: 'pipe', stdin: 'ignore' }));
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ENOENT');
    expect(err.errno).toBe(-2);
    expect(err.syscall).toBe('spawn');
    expect(err.path).toBe('/nonexistent/program');
    expect(err.spawnargs).toEqual(['x']);
    expect(err.step).toBe('execve');
    expect(err.message).toBe("ENOENT: no such file or directory, spawn '/nonexistent/program'");
  });

  it('ENOENT for a name not on PATH, searched in the child environment', () => {
    const err = errorOf(() => spawn('no-such-program-anywhere', []));
    expect(err.code).toBe('ENOENT');
    expect(err.syscall).toBe('spawn');
    expect(err.path).toBe('no-such-program-anywhere');

    // sh exists, but not on the PATH the child is given.
    const hidden = errorOf(() => spawn('sh', ['-c', 'true'], { env: { PATH: '/nonexistent' } }));
    expect(hidden.code).toBe('ENOENT');
  });

  it('EACCES for a file without execute permission', () => {
    withTempDir((dir) => {
      const file = join(dir, 'script');
      writeFileSync(file, '#!/bin/sh\nexit 0\n', { mode: 0o644 });
      const err = errorOf(() => spawn(file, []));
      expect(err.code).toBe('EACCES');
      expect(err.syscall).toBe('spawn');
      expect(err.path).toBe(file);
      expect(err.step).toBe('execve');

      // And through PATH: found, but not executable.
      const viaPath = errorOf(() => spawn('script', [], { env: { PATH: dir } }));
      expect(viaPath.code).toBe('EACCES');
    });
  });

  it('ENOEXEC for an executable that is neither ELF nor a #! script', () => {
    withTempDir((dir) => {
      const file = join(dir, 'garbage');
      writeFileSync(file, Buffer.from([0x00, 0x01, 0x02, 0x03, 0xff, 0xfe]));
      chmodSync(file, 0o755);
      const err = errorOf(() => spawn(file, []));
      expect(err.code).toBe('ENOEXEC');
      expect(err.syscall).toBe('spawn');
      expect(err.path).toBe(file);
    });
  });

  it('E2BIG for an argument longer than the kernel takes', () => {
    const err = errorOf(() => spawn('/bin/true', ['x'.repeat(200_000)]));
    expect(err.code).toBe('E2BIG');
    expect(err.syscall).toBe('spawn');
    expect(err.step).toBe('execve');
  });

  it('ENOENT from chdir for a bad cwd, naming the directory', () => {
    const err = errorOf(() => spawn('/bin/true', [], { cwd: '/nonexistent-dir' }));
    expect(err.code).toBe('ENOENT');
    expect(err.syscall).toBe('spawn');
    expect(err.step).toBe('chdir');
    expect(err.path).toBe('/bin/true');
    expect(err.message).toContain("chdir '/nonexistent-dir'");
  });

  it('EINVAL from setrlimit for a soft limit above the hard one, naming the step', () => {
    const err = errorOf(() => spawn('/bin/true', [], { rlimits: { core: { soft: 10, hard: 5 } }, stdout: 'pipe' }));
    expect(err).toMatchObject({ code: 'EINVAL', syscall: 'spawn', step: 'setrlimit', path: '/bin/true' });
    expect(err.message).toBe("EINVAL: invalid argument, setrlimit (spawn '/bin/true')");
  });

  it('EBADF, before any child exists, for a parent fd that is not open', () => {
    const fd = openSync('/dev/null', 'r');
    closeSync(fd);
    const err = errorOf(() => spawn('/bin/true', [], { fds: { 3: fd } }));
    expect(err.code).toBe('EBADF');
    expect(err.syscall).toBe('spawn');
    expect(err.message).toContain(`fd ${fd} for child fd 3 is not open`);
  });

  it('a child fd number at or past RLIMIT_NOFILE is a RangeError naming the option, before any child exists', () => {
    // The child starts with our fd limit; no number at or above it can be placed.
    const limit = fdLimit();
    for (const target of [limit, 2_000_000_000, INT32_MAX]) {
      const err = errorOf(() => spawn('/bin/true', [], { fds: { 3: 0, [target]: 0 }, stdout: 'pipe' }));
      expect(err).toBeInstanceOf(RangeError);
      expect(err.code).toBe('ERR_OUT_OF_RANGE');
      expect(err.message).toContain('"options.fds"');
      expect(err.message).toContain(`RLIMIT_NOFILE (${limit})`);
      expect(err.message).toContain(`child fd ${target}`);
    }
    // afterEach: no child, no zombie, no fd (not even the pipe or /dev/null).
  });

  it('the limit is the one this process has now, and a listen fd past it is named', async () => {
    requireDist();
    // A Node parent started with RLIMIT_NOFILE 64 (so the list stays short).
    const script = `
      const { spawn } = require(${JSON.stringify(DIST)});
      const attempt = (options) => {
        try {
          const child = spawn('/bin/true', [], options);
          return child.wait().then((exit) => exit.code);
        } catch (e) {
          return e.name + ' ' + e.code + ' ' + e.message;
        }
      };
      (async () => console.log(JSON.stringify([
        await attempt({ fds: { 63: 0 } }),
        await attempt({ fds: { 64: 0 } }),
        await attempt({ listenFds: Array.from({ length: 62 }, () => 0) }),
      ])))();`;
    const child = spawn(process.execPath, ['-e', script], { rlimits: { nofile: 64 }, stdout: 'pipe' });
    const { out, code } = await outputOf(child);
    child.pidfd.close();
    expect(code).toBe(0);
    const [fits, past, listen] = JSON.parse(out) as [number, string, string];
    expect(fits).toBe(0);
    expect(past).toMatch(/^RangeError ERR_OUT_OF_RANGE .*"options\.fds".*RLIMIT_NOFILE \(64\).*child fd 64$/);
    expect(listen).toMatch(/^RangeError ERR_OUT_OF_RANGE .*"options\.listenFds\[61\]".*child fd 64$/);
  });
});

describe('a child that cannot be handed out', () => {
  it('is killed and reaped when the PidFd cannot be made (say, no /proc to read)', () => {
    const adopt = vi.spyOn(PidFd, 'adopt').mockImplementationOnce(() => {
      throw new Error('no /proc here');
    });
    try {
      const err = errorOf(() => spawn('/bin/sleep', ['1000'], { stdout: 'pipe' }));
      expect(err.message).toBe('no /proc here');
      expect(adopt).toHaveBeenCalledTimes(1);
      expect(children()).toEqual([]); // not running, not a zombie
      // afterEach: no fd left (not even the pipe's parent end).
    } finally {
      adopt.mockRestore();
    }
  });
});

describe('out of fds for the PidFd (its pidfd took the last one)', () => {
  it('is a spawn error (EMFILE, step fcntl), and the child is killed and reaped', async () => {
    requireDist();
    const script = `
      const fs = require('node:fs');
      const { spawn } = require(${JSON.stringify(DIST)});
      (async () => {
      let result;
      // Exactly one fd left, for clone3's pidfd to take. An fd Node itself
      // closes meanwhile would leave two, and the spawn would work: try again.
      for (let attempt = 0; attempt < 20 && result === undefined; attempt++) {
        const fill = [];
        try { for (;;) fill.push(fs.openSync('/dev/null', 'r')); } catch {}
        fs.closeSync(fill.pop());
        let spawned = null;
        try {
          spawned = spawn('/bin/sleep', ['1000']);
        } catch (e) {
          result = { name: e.name, code: e.code, syscall: e.syscall, step: e.step, path: e.path, message: e.message };
        }
        for (const fd of fill) fs.closeSync(fd);
        if (spawned) {
          spawned.kill('SIGKILL');
          await spawned.wait();
          spawned.pidfd.close();
        }
      }
      const kids = fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).filter((p) => {
        try { return fs.readFileSync('/proc/' + p + '/stat', 'latin1').split(') ')[1].split(' ')[1] === String(process.pid); } catch { return false; }
      });
      console.log(JSON.stringify({ result, kids }));
      })();`;
    const child = spawn(process.execPath, ['-e', script], { rlimits: { nofile: 64 }, stdout: 'pipe' });
    const { out, code } = await outputOf(child);
    child.pidfd.close();
    expect(code).toBe(0);
    const { result, kids } = JSON.parse(out) as { result: Record<string, string>; kids: string[] };
    expect(result).toMatchObject({ name: 'Error', code: 'EMFILE', syscall: 'spawn', step: 'fcntl', path: '/bin/sleep' });
    expect(result['message']).toBe("EMFILE: too many open files, fcntl (spawn '/bin/sleep')");
    expect(kids).toEqual([]);
  });
});

describe('out of fds for a pipe', () => {
  it("is a spawn error (EMFILE, step pipe2) naming the program, before any child exists", async () => {
    requireDist();
    const script = `
      const fs = require('node:fs');
      const { spawn } = require(${JSON.stringify(DIST)});
      const fill = [];
      try { for (;;) fill.push(fs.openSync('/dev/null', 'r')); } catch {}
      let result;
      try {
        spawn('/bin/true', [], { stdout: 'pipe' });
        result = 'spawned';
      } catch (e) {
        result = { name: e.name, code: e.code, syscall: e.syscall, step: e.step, path: e.path, message: e.message };
      }
      for (const fd of fill) fs.closeSync(fd);
      console.log(JSON.stringify(result));`;
    const child = spawn(process.execPath, ['-e', script], { rlimits: { nofile: 64 }, stdout: 'pipe' });
    const { out, code } = await outputOf(child);
    child.pidfd.close();
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({
      name: 'Error',
      code: 'EMFILE',
      syscall: 'spawn',
      step: 'pipe2',
      path: '/bin/true',
      message: "EMFILE: too many open files, pipe2 (spawn '/bin/true')",
    });
  });
});

describe('worker threads', () => {
  it('a worker terminated in the middle of calls into the binding does not take the process down', () => {
    // Here: spawns that fail, and flag reads.
    requireDist();
    const setup = `const { spawn, isInheritable, stdioFromFdMap } = require(${JSON.stringify(DIST)});`;
    const loop = `for (let i = 0; i < 5; i++) { try { spawn('/nonexistent', ['a', 'b'], { env: { A: 'x' }, fds: { 3: 0 } }); } catch {} isInheritable(0); stdioFromFdMap({ 3: 0 }); }`;
    expect(terminateMidCall(setup, loop, { trackUnmanagedFds: true })).toEqual(SURVIVED);
  }, 120_000);
});

describe('a child whose pidfd is closed early', () => {
  it('is reaped by the close when it has already exited (kill, then close)', () => {
    const child = spawn('/bin/sleep', ['1000']);
    child.kill('SIGKILL');
    using peek = PidFd.open(child.pid); // reap: false: only peeks, never reaps
    peek.waitSync();
    child.pidfd.close();
    // afterEach: no zombie, no fd.
  });
});

describe('bad arguments', () => {
  const cases: Array<[string, () => unknown, string, string]> = [
    ['file not a string', () => spawn(42 as unknown as string), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['empty file', () => spawn(''), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['NUL in file', () => spawn('/bin/tr\0ue'), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['args not an array', () => spawn('/bin/true', 'x' as unknown as string[]), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['an arg not a string', () => spawn('/bin/true', [1 as unknown as string]), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['NUL in an arg', () => spawn('/bin/true', ['a\0b']), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['options not an object', () => spawn('/bin/true', [], 5 as never), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['fds an array', () => spawn('/bin/true', [], { fds: [1] as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['fds key not a number', () => spawn('/bin/true', [], { fds: { x: 1 } as never }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['fds key negative', () => spawn('/bin/true', [], { fds: { '-1': 1 } as never }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['fds value negative', () => spawn('/bin/true', [], { fds: { 3: -1 } }), 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['fds value fractional', () => spawn('/bin/true', [], { fds: { 3: 1.5 } }), 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['fds value a string', () => spawn('/bin/true', [], { fds: { 3: '1' as never } }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['unknown stdio', () => spawn('/bin/true', [], { stdout: 'null' as never }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['stdin and fds[0]', () => spawn('/bin/true', [], { stdin: 'ignore', fds: { 0: 1 } }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['env not an object', () => spawn('/bin/true', [], { env: 'A=1' as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['NUL in env', () => spawn('/bin/true', [], { env: { A: 'x\0y' } }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['cwd a number', () => spawn('/bin/true', [], { cwd: 1 as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['unknown signal', () => spawn('/bin/true', [], { pdeathsig: 'SIGNOPE' as never }), 'TypeError', 'ERR_UNKNOWN_SIGNAL'],
    ['signal 0', () => spawn('/bin/true', [], { pdeathsig: 0 }), 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['umask too big', () => spawn('/bin/true', [], { umask: 0o1000 }), 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['unknown rlimit', () => spawn('/bin/true', [], { rlimits: { files: 1 } as never }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['negative rlimit', () => spawn('/bin/true', [], { rlimits: { nofile: -5 } }), 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['setsid not boolean', () => spawn('/bin/true', [], { setsid: 1 as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['closeOtherFds not boolean', () => spawn('/bin/true', [], { closeOtherFds: 'no' as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['uid negative', () => spawn('/bin/true', [], { uid: -1 }), 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['groups not an array', () => spawn('/bin/true', [], { groups: 1 as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['listenFds not an array', () => spawn('/bin/true', [], { listenFds: 3 as never }), 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['listen name with a colon', () => spawn('/bin/true', [], { listenFds: [{ fd: 0, name: 'a:b' }] }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
    ['listenFds over fds', () => spawn('/bin/true', [], { listenFds: [0], fds: { 3: 1 } }), 'TypeError', 'ERR_INVALID_ARG_VALUE'],
  ];

  it.each(cases)('%s', (_name, fn, type, code) => {
    const err = errorOf(fn);
    expect(err.constructor.name).toBe(type);
    expect(err.code).toBe(code);
  });

  // Array methods skip holes: a sparse array must still have every slot
  // checked, or a hole reaches the binding (args, groups) or silently shifts
  // the next listen fd to 4 while LISTEN_FDS promises 3.
  it.each([
    ['args', () => spawn('/bin/true', [, 'a'] as string[]), '"args[0]"'],
    ['groups', () => spawn('/bin/true', [], { groups: [, 0] as number[] }), '"options.groups[0]"'],
    ['listenFds', () => spawn('/bin/true', [], { listenFds: [, 0] as number[] }), '"options.listenFds[0]"'],
  ] as Array<[string, () => unknown, string]>)('a hole in %s is a bad argument, named', (_name, fn, named) => {
    const err = errorOf(fn);
    expect(err.code).toBe('ERR_INVALID_ARG_TYPE');
    expect(err.message).toContain(named);
  });

  // Found by fuzzing: values whose String() itself throws, keys that only
  // Object.prototype has, a URL that is no path, a constructor that is not API.
  it.each([
    ['an rlimit named after an Object.prototype member', () => spawn('/bin/true', [], { rlimits: { constructor: 1 } as never }), 'TypeError', 'ERR_INVALID_ARG_VALUE', '"options.rlimits"'],
    ['an own __proto__ rlimit', () => spawn('/bin/true', [], { rlimits: JSON.parse('{"__proto__": 1}') }), 'TypeError', 'ERR_INVALID_ARG_VALUE', '"options.rlimits"'],
    ['a null-prototype object as stdio', () => spawn('/bin/true', [], { stdout: Object.create(null) }), 'TypeError', 'ERR_INVALID_ARG_VALUE', '"options.stdout"'],
    ['a detached typed array as stdio', () => spawn('/bin/true', [], { stdin: detached() as never }), 'TypeError', 'ERR_INVALID_ARG_VALUE', '"options.stdin"'],
    ['a null-prototype object as a stdioFromFdMap default', () => stdioFromFdMap({}, { stderr: Object.create(null) }), 'TypeError', 'ERR_INVALID_ARG_VALUE', '"options.stderr"'],
    ['an env value String() cannot convert', () => spawn('/bin/true', [], { env: { A: Object.create(null) } }), 'TypeError', 'ERR_INVALID_ARG_TYPE', '"options.env.A"'],
    ['a cwd URL that is not file:', () => spawn('/bin/true', [], { cwd: new URL('http://example.invalid/') }), 'TypeError', 'ERR_INVALID_URL_SCHEME', '"options.cwd"'],
    ['new Subprocess()', () => new (Subprocess as unknown as new (...a: unknown[]) => unknown)(1, {}, []), 'TypeError', 'ERR_ILLEGAL_CONSTRUCTOR', 'spawn()'],
  ] as Array<[string, () => unknown, string, string, string]>)('%s is a clear error', (_name, fn, type, code, named) => {
    const err = errorOf(fn);
    expect(err.constructor.name).toBe(type);
    expect(err.code).toBe(code);
    expect(err.message).toContain(named);
  });

  it('names the argument', () => {
    expect(errorOf(() => spawn('/bin/true', [], { fds: { 3: -1 } })).message).toContain('"options.fds[3]"');
    expect(errorOf(() => spawn('/bin/true', [], { umask: 0o1000 })).message).toContain('"options.umask"');
  });
});
