// spawn()'s arguments read into a request, and the request into the plan the
// binding carries out, checked as plain values: nothing is spawned here and
// no fd is opened.
import { constants } from 'node:os';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveFile } from '../lib/env.js';
import { DEV_NULL, native } from '../lib/native.js';
import { childFdOption, parseSpawn } from '../lib/options.js';
import { nativePlan } from '../lib/plan.js';
import type { StdioSetup } from '../lib/stdio.js';
import { errorOf, withTempDir } from './helpers.js';

const { SIGPIPE, SIGTERM, SIGXFSZ } = constants.signals;

describe('parseSpawn', () => {
  it('fills in every default', () => {
    expect(parseSpawn('true', [], { env: {} })).toEqual({
      file: 'true',
      args: [],
      argv0: 'true',
      envp: [],
      listenPidIndex: -1,
      listenPidfdidIndex: -1,
      path: '/usr/local/bin:/usr/bin:/bin',
      cwd: null,
      fds: new Map(),
      stdio: [undefined, undefined, undefined],
      listenCount: 0,
      pdeathsig: 0,
      umask: -1,
      rlimits: [],
      groups: null,
      uid: -1,
      gid: -1,
      closeOtherFds: true,
      setsid: false,
      noNewPrivs: false,
      restoreSignals: true,
      isolation: null,
    });
  });

  it("leaves this process's own environment to the binding (main thread), and lists any other", () => {
    expect(parseSpawn('/bin/true', [], {}).envp).toBeNull();
    expect(parseSpawn('/bin/true', [], {}).path).toBe(process.env['PATH']);
    const { envp, path } = parseSpawn('/bin/true', [], { env: { A: '1', B: undefined, C: 5 as never, PATH: '/opt/bin' } });
    expect(envp).toEqual(['A=1', 'C=5', 'PATH=/opt/bin']);
    expect(path).toBe('/opt/bin');
  });

  it('reads every option into numbers the binding takes', () => {
    // Taken as they are.
    const asIs = { groups: [4, 5], uid: 1000, gid: 100, closeOtherFds: false, setsid: true, noNewPrivs: true, restoreSignals: false };
    const request = parseSpawn('/bin/sh', ['-c', 'x'], {
      argv0: 'sh',
      cwd: new URL('file:///tmp'),
      fds: { 5: 1, 3: 0 },
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 2,
      pdeathsig: 'SIGTERM',
      umask: 0o22,
      rlimits: { nofile: 1024, core: { soft: 0, hard: Infinity }, cpu: undefined },
      ...asIs,
    });
    expect(request).toMatchObject({
      file: '/bin/sh',
      args: ['-c', 'x'],
      argv0: 'sh',
      cwd: '/tmp',
      stdio: ['ignore', 'pipe', 2],
      pdeathsig: SIGTERM,
      umask: 0o22,
      rlimits: [native.RLIMITS['nofile'], 1024, 1024, native.RLIMITS['core'], 0, -1],
      ...asIs,
    });
    // Integer keys come out in ascending order, as Object.entries gives them.
    expect([...request.fds]).toEqual([
      [3, 0],
      [5, 1],
    ]);
  });

  it('puts listen fds at 3, 4, ... after options.fds, and replaces stale LISTEN_* variables', () => {
    const env = { A: '1', LISTEN_PID: '1', LISTEN_PIDFDID: '2', LISTEN_FDS: '9', LISTEN_FDNAMES: 'x', Z: '2' };
    const request = parseSpawn('/bin/true', [], { env, fds: { 7: 0 }, listenFds: [1, { fd: 2, name: 'web' }, { fd: 0, name: '' }] });
    expect([...request.fds]).toEqual([
      [7, 0],
      [3, 1],
      [4, 2],
      [5, 0],
    ]);
    expect(request.listenCount).toBe(3);
    expect(request.envp).toEqual(['A=1', 'Z=2', 'LISTEN_FDS=3', 'LISTEN_FDNAMES=unknown:web:', 'LISTEN_PID=', 'LISTEN_PIDFDID=']);
    // The child fills in these two; LISTEN_PIDFDID must be last, so it can drop it.
    expect(request.envp![request.listenPidIndex]).toBe('LISTEN_PID=');
    expect(request.listenPidfdidIndex).toBe(request.envp!.length - 1);
    expect(env.LISTEN_PID).toBe('1'); // the caller's object is left as it was

    // No fds: no variables at all, the stale ones removed all the same.
    const none = parseSpawn('/bin/true', [], { env, listenFds: [] });
    expect(none.envp).toEqual(['A=1', 'Z=2']);
    expect([none.listenPidIndex, none.listenPidfdidIndex, none.listenCount]).toEqual([-1, -1, 0]);
    // listenFds on the main thread's own environment: listed, so it can be edited.
    expect(parseSpawn('/bin/true', [], { listenFds: [0] }).envp).toContain('LISTEN_FDS=1');
  });

  it('refuses overlaps between stdio, fds and listenFds', () => {
    expect(errorOf(() => parseSpawn('/bin/true', [], { stdout: 'pipe', fds: { 1: 1 } }))).toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
      message: expect.stringContaining('"options.stdout" property conflicts with options.fds[1]'),
    });
    expect(errorOf(() => parseSpawn('/bin/true', [], { fds: { 4: 0 }, listenFds: [0, 1] }))).toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
      message: expect.stringContaining('puts fd 4 where options.fds has one'),
    });
  });

  it('reports the first bad argument in the order spawn reads them', () => {
    const bad = { env: 1, cwd: 1, argv0: 1, fds: 1, stdin: 'x', listenFds: 1, pdeathsig: 'x', umask: -1, rlimits: 1, groups: 1, uid: -1, gid: -1, setsid: 1 };
    const order = ['options.env', 'options.cwd', 'options.argv0', 'options.fds', 'options.stdin', 'options.listenFds', 'options.pdeathsig', 'options.umask', 'options.rlimits', 'options.groups', 'options.uid', 'options.gid', 'options.setsid'];
    const options: Record<string, unknown> = { ...bad };
    for (const name of order) {
      const err = errorOf(() => parseSpawn('/bin/true', [], options));
      expect(err.message).toContain(name === 'options.pdeathsig' ? 'Unknown signal' : `"${name}"`);
      delete options[name.slice('options.'.length)];
    }
    expect(() => parseSpawn('/bin/true', [], options)).not.toThrow();
  });

  it('names the option that placed a child fd', () => {
    const request = parseSpawn('/bin/true', [], { stdin: 'pipe', fds: { 1: 1, 9: 0 }, listenFds: [0, 0] });
    expect([0, 1, 2, 3, 4, 5, 9].map((fd) => childFdOption(request, fd))).toEqual([
      'options.stdin',
      'options.fds',
      'options.fds',
      'options.listenFds[0]',
      'options.listenFds[1]',
      'options.fds',
      'options.fds',
    ]);
  });
});

describe('nativePlan', () => {
  const setups: StdioSetup[] = [
    { target: 0, source: DEV_NULL },
    { target: 1, source: 41, parentEnd: { fd: 42, childReads: false } },
    { target: 2, source: 2, optional: true },
  ];

  it('lists stdio first, then the fd map, with argv[0] in front of the args', () => {
    const request = parseSpawn('sh', ['-c', 'x'], { env: { A: '1' }, argv0: 'shell', fds: { 4: 3, 3: 4 }, cwd: '/tmp' });
    expect(nativePlan(request, '/bin/sh', setups)).toEqual({
      file: '/bin/sh',
      argv: ['shell', '-c', 'x'],
      envp: ['A=1'],
      listenPidIndex: -1,
      listenPidfdidIndex: -1,
      cwd: '/tmp',
      targets: [0, 1, 2, 3, 4],
      sources: [DEV_NULL, 41, 2, 4, 3],
      optional: [false, false, true, false, false],
      closeOtherFds: true,
      setsid: false,
      pdeathsig: 0,
      umask: -1,
      rlimits: [],
      noNewPrivs: false,
      uid: -1,
      gid: -1,
      groups: null,
      dropGroups: false,
      defaultSignals: [SIGPIPE, SIGXFSZ],
      isolation: null,
    });
  });

  it("drops the supplementary groups for another uid or gid unless groups are given; restoreSignals: false restores none", () => {
    const plan = (options: object) => nativePlan(parseSpawn('/bin/true', [], { env: {}, ...options }), '/bin/true', []);
    expect(plan({ uid: 1000 }).dropGroups).toBe(true);
    expect(plan({ gid: 1000 }).dropGroups).toBe(true);
    expect(plan({ uid: 1000, groups: [] }).dropGroups).toBe(false);
    expect(plan({ restoreSignals: false }).defaultSignals).toEqual([]);
  });
});

describe('isolation options', () => {
  const plan = (options: object) => nativePlan(parseSpawn('/bin/true', [], { env: {}, ...options }), '/bin/true', []).isolation;
  const { NAMESPACES } = native;

  it('asks for nothing unless an isolation option is given; namespaces: {} is an (empty) isolation', () => {
    expect(plan({})).toBeNull();
    expect(plan({ namespaces: undefined, cgroup: undefined })).toBeNull();
    expect(plan({ namespaces: {} })).toEqual({
      cloneFlags: 0,
      uidMap: null,
      gidMap: null,
      denySetgroups: false,
      hostname: null,
      propagation: null,
      root: null,
      mountProc: false,
      cgroup: null,
    });
  });

  it('turns namespaces into clone flags, maps into the lines /proc takes, and fills in the defaults', () => {
    const all = { user: true, pid: true, mount: true, net: true, uts: true, ipc: true, cgroup: true };
    expect(plan({ namespaces: all, uidMap: [{ inside: 0, outside: 1000, count: 1 }, { inside: 1, outside: 100000, count: 65536 }] })).toEqual({
      cloneFlags: Object.values(NAMESPACES).reduce((a, b) => a | b, 0),
      uidMap: '0 1000 1\n1 100000 65536\n',
      gidMap: null,
      // setgroups 'deny' by default, so an unprivileged parent can write a gid map.
      denySetgroups: true,
      hostname: null,
      propagation: 'private',
      root: null,
      // A new pid and mount namespace get their own /proc.
      mountProc: true,
      cgroup: null,
    });
    expect(plan({ namespaces: { user: true, net: false }, setgroups: 'allow' })).toMatchObject({ cloneFlags: NAMESPACES['user'], denySetgroups: false });
    expect(plan({ namespaces: { mount: true } })).toMatchObject({ cloneFlags: NAMESPACES['mount'], mountProc: false, propagation: 'private' });
    expect(plan({ namespaces: { pid: true, mount: true }, mountProc: false, mountPropagation: 'slave', root: '/srv/root' })).toMatchObject({
      mountProc: false,
      propagation: 'slave',
      root: '/srv/root',
    });
    expect(plan({ namespaces: { uts: true }, hostname: 'box' })).toMatchObject({ cloneFlags: NAMESPACES['uts'], hostname: 'box' });
    expect(plan({ cgroup: '/sys/fs/cgroup/unified/x' })).toMatchObject({ cloneFlags: 0, cgroup: '/sys/fs/cgroup/unified/x' });
  });

  it('refuses what a namespace not asked for would need, unknown names and bad maps, naming the option', () => {
    const bad = (options: object) => errorOf(() => parseSpawn('/bin/true', [], options));
    expect(bad({ namespaces: { time: true } })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining("unknown namespace 'time'") });
    expect(bad({ namespaces: { pid: 1 } })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.namespaces.pid"') });
    expect(bad({ namespaces: [] })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    for (const [option, value, ns] of [
      ['uidMap', [], 'user'],
      ['gidMap', [], 'user'],
      ['setgroups', 'deny', 'user'],
      ['hostname', 'x', 'uts'],
      ['root', '/x', 'mount'],
      ['mountPropagation', 'slave', 'mount'],
      ['mountProc', true, 'mount'],
    ] as const) {
      expect(bad({ namespaces: { net: true }, [option]: value })).toMatchObject({
        code: 'ERR_INVALID_ARG_VALUE',
        message: expect.stringContaining(`"options.${option}" property needs options.namespaces.${ns}`),
      });
    }
    const user = { namespaces: { user: true } };
    expect(bad({ ...user, uidMap: {} })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.uidMap"') });
    expect(bad({ ...user, uidMap: [null] })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.uidMap[0]"') });
    expect(bad({ ...user, gidMap: [{ inside: 0, outside: -1, count: 1 }] })).toMatchObject({
      code: 'ERR_OUT_OF_RANGE',
      message: expect.stringContaining('"options.gidMap[0].outside"'),
    });
    expect(bad({ ...user, uidMap: [{ inside: 0, outside: 0, count: 0 }] })).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(bad({ ...user, uidMap: [{ inside: 2 ** 32 - 2, outside: 0, count: 2 }] })).toMatchObject({
      code: 'ERR_OUT_OF_RANGE',
      message: expect.stringContaining('"options.uidMap[0].count"'),
    });
    expect(bad({ ...user, setgroups: 'yes' })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(bad({ namespaces: { uts: true }, hostname: 'h'.repeat(65) })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('64 bytes') });
    expect(bad({ namespaces: { mount: true }, mountPropagation: 'shared' })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(bad({ cgroup: 5 })).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.cgroup"') });
  });
});

describe('resolveFile (the PATH search)', () => {
  it("finds an executable file in PATH order, relative entries against the child's cwd; EACCES only when that was all there was", () => {
    withTempDir((dir) => {
      for (const sub of ['a', 'b', 'c']) mkdirSync(join(dir, sub));
      writeFileSync(join(dir, 'a', 'prog'), '', { mode: 0o644 }); // not executable
      mkdirSync(join(dir, 'b', 'prog')); // a directory
      writeFileSync(join(dir, 'c', 'prog'), '#!/bin/sh\n', { mode: 0o755 });
      expect(resolveFile('prog', `${dir}/a:${dir}/b:${dir}/c`, null)).toBe(`${dir}/c/prog`);
      expect(resolveFile('prog', 'a:c', dir)).toBe(`${dir}/c/prog`);
      expect(resolveFile('prog', `${dir}/b`, null)).toEqual({ code: 'ENOENT' });
      expect(resolveFile('./prog', `${dir}/c`, null)).toBe('./prog'); // a path is not searched
      expect(resolveFile('prog', `${dir}/a:${dir}/b`, null)).toEqual({ code: 'EACCES' });
    });
  });

  it('with a root, returns the path inside it; a symlink loop there is not found rather than followed forever', () => {
    withTempDir((root) => {
      mkdirSync(join(root, 'c'));
      writeFileSync(join(root, 'c', 'prog'), '#!/bin/sh\n', { mode: 0o755 });
      symlinkSync('/loop/prog', join(root, 'loop'));
      expect(resolveFile('prog', '/loop:/c', null, root)).toBe('/c/prog');
      expect(resolveFile('prog', 'c', null, root)).toBe('/c/prog'); // cwd is the root's /
      expect(resolveFile('prog', '.', 'c', root)).toBe('/c/prog'); // a relative cwd is relative to it
      expect(resolveFile('prog', '/loop', null, root)).toEqual({ code: 'ENOENT' });
    });
  });
});
