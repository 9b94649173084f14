// What the child is started with: environment, directory, argv[0], session,
// umask, limits, privileges, signal dispositions. Each is read back from the
// child itself (/proc/self/... or the program's own output).
import { spawnSync } from 'node:child_process';
import { realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it, onTestFinished } from 'vitest';
import { spawn, type SpawnOptions, type Subprocess } from '../lib/index.js';
import { DIST, openFds, outputOf, readableDist, requireDist, statField, withTempDir, zombieChildren } from './helpers.js';

async function run(file: string, args: string[], options: SpawnOptions = {}): Promise<string> {
  const { out, code } = await outputOf(spawn(file, args, { ...options, stdout: 'pipe' }));
  expect(code).toBe(0);
  return out;
}

/** One "Name:\tvalue" line of the child's /proc/self/status. */
async function childStatus(options: SpawnOptions, field: string): Promise<string> {
  const status = await run('/bin/cat', ['/proc/self/status'], options);
  const m = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(status);
  if (!m) throw new Error(`no ${field} in status`);
  return m[1]!.trim();
}

const isRoot = process.getuid?.() === 0;

/**
 * Runs `setup` in a new Node process, then loads the built package and
 * reports what a child sees of FOLK_FD_INHERIT_TEST and HOME when started
 * by spawn() and by child_process with the default environment, whether
 * spawn() built the list itself (`copied`) rather than leave the copy of
 * the C environment to the binding, and process.env's keys before and
 * after the package was loaded (with Node's own process.env, the C
 * environment's).
 */
function environmentSeen(setup: string): {
  ours: string;
  childProcess: string;
  copied: boolean;
  keysBeforeLoad: string[];
  keysAfterLoad: string[];
} {
  requireDist();
  const script = `
    ${setup}
    const keysBeforeLoad = Object.keys(process.env);
    const { spawn } = require(${JSON.stringify(DIST)});
    const { childEnvironment } = require(${JSON.stringify(join(DIST, '..', 'env.js'))});
    const keysAfterLoad = Object.keys(process.env);
    const { execFileSync } = require('node:child_process');
    const show = ['-c', 'echo "\${FOLK_FD_INHERIT_TEST-unset}, HOME \${HOME+set}\${HOME-unset}"'];
    const childProcess = execFileSync('/bin/sh', show, { encoding: 'utf8' });
    const copied = childEnvironment(undefined, false).envp !== null;
    const child = spawn('/bin/sh', show, { stdout: 'pipe' });
    let ours = '';
    child.stdout.on('data', (d) => (ours += d));
    child.wait().then(() => process.stdout.write(JSON.stringify({ ours, childProcess, copied, keysBeforeLoad, keysAfterLoad })));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, FOLK_FD_INHERIT_TEST: 'C environment' } });
  if (r.status !== 0) throw new Error(`node exited ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('environment, directory, argv0', () => {
  it('env is the whole environment of the child; undefined values are left out', async () => {
    const out = await run('/usr/bin/env', [], { env: { A: '1', B: 'two words', C: undefined } });
    expect(out).toBe('A=1\nB=two words\n');
  });

  it('defaults to process.env', async () => {
    process.env['FOLK_FD_INHERIT_TEST'] = 'from the parent';
    try {
      expect(await run('/bin/sh', ['-c', 'echo "$FOLK_FD_INHERIT_TEST"'])).toBe('from the parent\n');
    } finally {
      delete process.env['FOLK_FD_INHERIT_TEST'];
    }
  });

  it('follows a plain object assigned to process.env', async () => {
    const real = process.env;
    process.env = { ...real, FOLK_FD_INHERIT_TEST: 'assigned' };
    try {
      expect(await run('/bin/sh', ['-c', 'echo "$FOLK_FD_INHERIT_TEST"'])).toBe('assigned\n');
    } finally {
      process.env = real;
    }
  });

  it('follows a plain object put in process.env before the package was loaded, as child_process does', () => {
    // As a test setup does (`process.env = { ...process.env, X }`) before
    // anything requires the package.
    const seen = environmentSeen(`
      process.env = { ...process.env, FOLK_FD_INHERIT_TEST: 'plain object' };
      delete process.env.HOME;`);
    expect(seen.childProcess).toBe('plain object, HOME unset\n');
    expect(seen.ours).toBe(seen.childProcess);
    expect(seen.copied).toBe(true);
    // Finding that out left no trace in the object.
    expect(seen.keysAfterLoad).toEqual(seen.keysBeforeLoad);
  });

  it("with Node's own process.env, lets the binding copy the C environment (no list built per spawn)", () => {
    const seen = environmentSeen(`
      process.env.FOLK_FD_INHERIT_TEST = 'plain object';
      delete process.env.HOME;`);
    expect(seen.ours).toBe('plain object, HOME unset\n');
    expect(seen.ours).toBe(seen.childProcess);
    expect(seen.copied).toBe(false);
    // Nor in the C environment.
    expect(seen.keysAfterLoad).toEqual(seen.keysBeforeLoad);
  });

  it("from a worker thread, defaults to that worker's own process.env, and pipes raise no warning", async () => {
    requireDist();
    // A worker tracks the fds fs opened and warns when fs closes one it did
    // not; the child's ends of the pipes must be closed without that.
    const code = `
      const { parentPort } = require('node:worker_threads');
      const { spawn } = require(${JSON.stringify(DIST)});
      const warnings = [];
      process.on('warning', (w) => warnings.push(w.message));
      process.env.FOLK_FD_INHERIT_WORKER = 'worker only';
      const child = spawn('/bin/sh', ['-c', 'echo "$FOLK_FD_INHERIT_WORKER"'], { stdin: 'pipe', stdout: 'pipe' });
      child.stdin.end();
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stdout.on('end', () => child.wait().then(() => setImmediate(() => parentPort.postMessage({ out, warnings }))));`;
    const worker = new Worker(code, { eval: true });
    const [{ out, warnings }] = (await once(worker, 'message')) as [{ out: string; warnings: string[] }];
    expect(out).toBe('worker only\n');
    expect(warnings).toEqual([]);
    expect(process.env['FOLK_FD_INHERIT_WORKER']).toBeUndefined();
    await worker.terminate();
  });

  it('cwd (string or file URL) is where the child starts, and relative programs resolve there', async () => {
    await withTempDir(async (dir) => {
      const real = realpathSync(dir);
      expect(await run('/bin/pwd', ['-P'], { cwd: dir })).toBe(`${real}\n`);
      expect(await run('/bin/pwd', ['-P'], { cwd: pathToFileURL(dir) })).toBe(`${real}\n`);
      writeFileSync(join(dir, 'hello'), '#!/bin/sh\necho "hello from $(pwd -P)"\n', { mode: 0o755 });
      expect(await run('./hello', [], { cwd: dir })).toBe(`hello from ${real}\n`);
      // A PATH entry that is relative is relative to the child's cwd too.
      expect(await run('hello', [], { cwd: dir, env: { PATH: '.' } })).toBe(`hello from ${real}\n`);
    });
  });

  it('searches PATH for a bare name', async () => {
    expect(await run('echo', ['found'], { env: { PATH: '/nonexistent:/bin:/usr/bin' } })).toBe('found\n');
  });

  it('argv0 replaces argv[0] only', async () => {
    const out = await run('/bin/sh', ['-c', 'tr "\\000" "\\n" < /proc/$$/cmdline'], { argv0: 'custom-name' });
    expect(out.split('\n').slice(0, 2)).toEqual(['custom-name', '-c']);
    const plain = await run('/bin/sh', ['-c', 'tr "\\000" "\\n" < /proc/$$/cmdline']);
    expect(plain.split('\n')[0]).toBe('/bin/sh');
  });
});

describe('session, umask, limits, privileges', () => {
  it('setsid makes the child lead a new session and process group', async () => {
    const stat = (options: SpawnOptions) => run('/bin/sh', ['-c', 'echo $$; cat /proc/$$/stat'], options);
    const [pidLine, statLine] = (await stat({ setsid: true })).split('\n');
    const fields = statLine!.slice(statLine!.lastIndexOf(')') + 2).split(' ');
    expect(fields[2]).toBe(pidLine); // pgrp
    expect(fields[3]).toBe(pidLine); // session

    const [, plainStat] = (await stat({})).split('\n');
    const plain = plainStat!.slice(plainStat!.lastIndexOf(')') + 2).split(' ');
    expect(plain[3]).toBe(statField(process.pid, 6));
  });

  it('umask', async () => {
    expect(await childStatus({ umask: 0o027 }, 'Umask')).toBe('0027');
    expect(await childStatus({ umask: 0 }, 'Umask')).toBe('0000');
  });

  it('rlimits, both values or each', async () => {
    const limits = await run('/bin/cat', ['/proc/self/limits'], {
      rlimits: { nofile: 77, core: { soft: 0, hard: Infinity } },
    });
    expect(limits).toMatch(/^Max open files\s+77\s+77\s/m);
    expect(limits).toMatch(/^Max core file size\s+0\s+unlimited\s/m);
  });

  it('noNewPrivs', async () => {
    expect(await childStatus({ noNewPrivs: true }, 'NoNewPrivs')).toBe('1');
    expect(await childStatus({}, 'NoNewPrivs')).toBe('0');
  });

  it.skipIf(!isRoot)('uid, gid and groups (as root)', async () => {
    const options = { uid: 65534, gid: 65534, groups: [65534, 100] };
    expect((await childStatus(options, 'Uid')).split(/\s+/)).toEqual(['65534', '65534', '65534', '65534']);
    expect((await childStatus(options, 'Gid')).split(/\s+/)).toEqual(['65534', '65534', '65534', '65534']);
    expect((await childStatus(options, 'Groups')).split(/\s+/).sort()).toEqual(['100', '65534']);
  });

  it.skipIf(!isRoot)('uid or gid without groups drops the supplementary groups, as child_process does', async () => {
    // A parent (itself started by us) holding groups 0, 4 and 27 reports its
    // children's groups; it runs as nobody below, so the package must be where nobody reads it.
    const { dist, remove } = readableDist({ uid: 65534, gid: 65534 });
    onTestFinished(remove);
    const script = `
      const { spawn } = require(${JSON.stringify(dist)});
      const groupsOf = async (options) => {
        const child = spawn('/bin/grep', ['^Groups:', '/proc/self/status'], { ...options, stdout: 'pipe' });
        let out = '';
        for await (const chunk of child.stdout) out += chunk;
        if ((await child.wait()).code !== 0) throw new Error('grep failed');
        child.pidfd.close();
        return out.replace('Groups:', '').trim().split(/\\s+/).filter(Boolean).map(Number).sort((a, b) => a - b);
      };
      (async () => {
        console.log(JSON.stringify({
          none: await groupsOf({}),
          uid: await groupsOf({ uid: 65534 }),
          gid: await groupsOf({ gid: 65534 }),
          listed: await groupsOf({ uid: 65534, groups: [100] }),
        }));
      })();`;
    const out = await run(process.execPath, ['-e', script], { groups: [0, 4, 27] });
    expect(JSON.parse(out)).toEqual({ none: [0, 4, 27], uid: [], gid: [], listed: [100] });

    // Without the privilege to drop them, a parent keeps its own groups and
    // the spawn still works (setuid to its own uid is allowed).
    const unprivileged = script.replace('{ uid: 65534 }', '{ uid: 65534, gid: 65534 }');
    const own = await run(process.execPath, ['-e', unprivileged.replace(/listed: .*\n/, '\n')], {
      uid: 65534,
      gid: 65534,
      groups: [100],
    });
    expect(JSON.parse(own)).toEqual({ none: [100], uid: [100], gid: [100] });
  });

  it.skipIf(!isRoot)('an unprivileged parent asking for uid 0 gets EPERM from setuid, synchronously', async () => {
    const { dist, remove } = readableDist({ uid: 65534, gid: 65534 });
    onTestFinished(remove);
    const script = `
      const { spawn } = require(${JSON.stringify(dist)});
      try { spawn('/bin/true', [], { uid: 0 }); console.log('started'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, syscall: e.syscall, step: e.step })); }`;
    const out = await run(process.execPath, ['-e', script], { uid: 65534, gid: 65534, groups: [] });
    expect(JSON.parse(out)).toEqual({ code: 'EPERM', syscall: 'spawn', step: 'setuid' });
  });
});

describe('signals', () => {
  // (Handlers the parent installed are reset in the child before it unblocks
  // signals; execve would reset them anyway, so that is not observable from
  // the program and not asserted here.)
  it('SIGPIPE/SIGXFSZ, which Node ignores, are restored unless told not to; the mask is the parent\'s', async () => {
    const parentIgnored = BigInt(`0x${/^SigIgn:\s*(\S+)/m.exec(await run('/bin/cat', ['/proc/' + process.pid + '/status']))![1]}`);
    const SIGPIPE_BIT = 1n << 12n;
    expect(parentIgnored & SIGPIPE_BIT).toBe(SIGPIPE_BIT); // Node's doing

    expect(BigInt(`0x${await childStatus({}, 'SigIgn')}`)).toBe(parentIgnored & ~(SIGPIPE_BIT | (1n << 24n)));
    expect(BigInt(`0x${await childStatus({}, 'SigBlk')}`)).toBe(0n);

    // Without restoring, the parent's SIG_IGN survives exec as POSIX says.
    expect(BigInt(`0x${await childStatus({ restoreSignals: false }, 'SigIgn')}`)).toBe(parentIgnored);
  });

  it('a child that writes to a closed pipe dies of SIGPIPE, as it would from a shell', async () => {
    const child = spawn('/bin/sh', ['-c', 'exec yes'], { stdout: 'pipe' });
    child.stdout!.destroy();
    const exit = await child.wait();
    expect(exit.signal).toBe('SIGPIPE');
  });

  it('wait({ signal }) gives up on abort; the child is still watched and reaped', async () => {
    const child = spawn('/bin/sleep', ['1000']);
    const controller = new AbortController();
    const pending = child.wait({ signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    child.kill('SIGKILL');
    expect((await child.wait()).signal).toBe('SIGKILL');
    child.pidfd.close();
  });

  it('kill() signals the child through its pidfd', async () => {
    const child = spawn('/bin/sleep', ['1000']);
    child.kill('SIGTERM');
    const exit = await child.wait();
    expect(exit).toMatchObject({ pid: child.pid, code: null, signal: 'SIGTERM' });
    // Reaped by now: the pidfd refuses rather than signal whoever gets the pid next.
    expect(() => child.kill('SIGTERM')).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    child.pidfd.close();
  });

  it('using: a running child gets SIGTERM at the end of the scope; its pidfd closes once it is reaped', async () => {
    const before = openFds();
    let child: Subprocess;
    {
      using scoped = spawn('/bin/sleep', ['1000']);
      child = scoped;
      expect(zombieChildren()).toEqual([]);
    }
    const exit = await child.wait();
    expect(exit).toMatchObject({ pid: child.pid, code: null, signal: 'SIGTERM' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(child.pidfd.fd).toBe(-1);
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });

  it('using: a child that has already exited is not signalled; disposing twice does nothing', async () => {
    const before = openFds();
    const child = spawn('/bin/true');
    expect((await child.wait()).code).toBe(0);
    child[Symbol.dispose]();
    child[Symbol.dispose]();
    await new Promise((resolve) => setImmediate(resolve));
    expect(child.pidfd.fd).toBe(-1);
    // Its owner may also have closed the pidfd first.
    const other = spawn('/bin/true');
    await other.wait();
    other.pidfd.close();
    expect(() => other[Symbol.dispose]()).not.toThrow();
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });
});
