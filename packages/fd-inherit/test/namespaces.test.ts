// options.namespaces and what comes with them (user maps, hostname, mount
// propagation, root, /proc), seen from inside the child: what differs from
// this process is what was asked for, and nothing else. This process is
// root; the unprivileged cases run a Node process as nobody.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { spawn, type SpawnOptions } from '../lib/index.js';
import { native } from '../lib/native.js';
import { parseSpawn } from '../lib/options.js';
import { nativePlan } from '../lib/plan.js';
import { DIST, children, errorOf, expectNothingLeftByEachTest, outputOf, readableDist, requireDist, withTempDir } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/isolated-spawn.cjs', import.meta.url));

/** /proc/self/ns link names by namespace name. */
const LINKS = { cgroup: 'cgroup', ipc: 'ipc', mount: 'mnt', net: 'net', pid: 'pid', user: 'user', uts: 'uts' } as const;
type Kind = keyof typeof LINKS;
const KINDS = Object.keys(LINKS) as Kind[];

/** Prints "kind link" for each namespace, as the child's own processes see them. */
const PRINT_NAMESPACES = KINDS.map((k) => `echo ${k} $(readlink /proc/self/ns/${LINKS[k]})`).join('; ');

function parseNamespaces(out: string): Record<Kind, string> {
  return Object.fromEntries(out.trim().split('\n').map((line) => line.split(' '))) as Record<Kind, string>;
}

const ours = (): Record<Kind, string> => Object.fromEntries(KINDS.map((k) => [k, readlinkSync(`/proc/self/ns/${LINKS[k]}`)])) as Record<Kind, string>;

async function sh(script: string, options: SpawnOptions): Promise<{ out: string; code: number | null }> {
  return outputOf(spawn('/bin/sh', ['-c', script], { stdout: 'pipe', stdin: 'ignore', ...options }));
}

/** `file args` started with `options`: what it printed (it must exit 0). */
async function printedBy(file: string, args: string[], options: SpawnOptions): Promise<string> {
  const { out, code } = await outputOf(spawn(file, args, { stdout: 'pipe', stdin: 'ignore', ...options }));
  expect(code).toBe(0);
  return out;
}

const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** Runs the fixture in its own Node process, `prefix` in front (setpriv, unshare), and returns its JSON line. */
function fixture(prefix: string[], options: object, script: string): { code?: number; out?: string; error?: Record<string, string> } {
  requireDist();
  let [dist, file] = [DIST, FIXTURE];
  if (prefix === NOBODY) {
    const readable = readableDist({ uid: 65534, gid: 65534 }, ['test/fixtures/isolated-spawn.cjs']);
    onTestFinished(readable.remove);
    [dist, file] = [readable.dist, join(readable.root, 'test/fixtures/isolated-spawn.cjs')];
  }
  const r = spawnSync(prefix[0]!, [...prefix.slice(1), process.execPath, file, dist, JSON.stringify(options), script], {
    encoding: 'utf8',
    cwd: '/',
  });
  if (r.status !== 0) throw new Error(`fixture exited ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

expectNothingLeftByEachTest();

describe('namespaces', () => {
  it.each(KINDS)('a new %s namespace, and only that one', async (kind) => {
    const { out, code } = await sh(PRINT_NAMESPACES, { namespaces: { [kind]: true } });
    expect(code).toBe(0);
    const inside = parseNamespaces(out);
    const mine = ours();
    for (const k of KINDS) {
      if (k === kind) expect(inside[k], k).not.toBe(mine[k]);
      else expect(inside[k], k).toBe(mine[k]);
    }
  });

  it('all of them at once, none without', async () => {
    const all = Object.fromEntries(KINDS.map((k) => [k, true]));
    const inside = parseNamespaces((await sh(PRINT_NAMESPACES, { namespaces: all })).out);
    const mine = ours();
    for (const k of KINDS) expect(inside[k], k).not.toBe(mine[k]);
    expect(parseNamespaces((await sh(PRINT_NAMESPACES, { namespaces: {} })).out)).toEqual(mine);
    expect(parseNamespaces((await sh(PRINT_NAMESPACES, {})).out)).toEqual(mine);
  });

  it('is pid 1 of a new pid namespace, and with a new mount namespace sees only its own processes in /proc', async () => {
    const { out } = await sh('echo $$; ls /proc | grep "^[0-9]" | sort -n | tr "\\n" " "', { namespaces: { pid: true, mount: true } });
    const [pid, procs] = out.split('\n');
    expect(pid).toBe('1');
    // sh, ls, grep, sort, tr: all of them pids of the new namespace, nothing of ours.
    const listed = procs!.trim().split(' ').map(Number);
    expect(listed[0]).toBe(1);
    expect(listed.length).toBeLessThanOrEqual(5);
    expect(listed.every((p) => p < 10)).toBe(true);
    // This process's /proc is as it was.
    expect(existsSync(`/proc/${process.pid}`)).toBe(true);
  });

  it('sets the hostname only inside a new UTS namespace', async () => {
    const outside = hostname();
    const { out } = await sh('hostname', { namespaces: { uts: true }, hostname: 'folk-inside' });
    expect(out).toBe('folk-inside\n');
    expect(hostname()).toBe(outside);
    expect(readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()).toBe(outside);
  });

  it('a new net namespace has only lo, and it is down', async () => {
    const { out } = await sh('tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; ip -o link | grep -o "^[0-9]*: [^:]*: <[^>]*>"', {
      namespaces: { net: true },
    });
    expect(out).toBe('lo\n1: lo: <LOOPBACK>\n');
    const ours = readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).filter(Boolean);
    expect(ours.length).toBeGreaterThan(1); // this process sees more than lo
  });
});

describe('user namespaces', () => {
  it('writes the uid and gid maps before the child goes on: id and /proc/self/uid_map inside, unchanged outside', async () => {
    const ourMap = readFileSync('/proc/self/uid_map', 'utf8');
    const { out, code } = await sh('id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups', {
      namespaces: { user: true },
      uidMap: [{ inside: 1000, outside: 0, count: 1 }],
      gidMap: [{ inside: 2000, outside: 0, count: 1 }],
    });
    expect(code).toBe(0);
    const lines = out.split('\n').map((l) => l.trim().split(/\s+/).join(' '));
    expect(lines.slice(0, 5)).toEqual(['1000', '2000', '1000 0 1', '2000 0 1', 'deny']);
    expect(readFileSync('/proc/self/uid_map', 'utf8')).toBe(ourMap);
    // Without a user namespace the child has ours.
    expect((await sh('cat /proc/self/uid_map', { namespaces: { net: true } })).out).toBe(ourMap);
  });

  it("without maps every id is the overflow id; setgroups: 'allow' leaves setgroups allowed", async () => {
    const { out } = await sh('id -u; cat /proc/self/setgroups', { namespaces: { user: true }, setgroups: 'allow' });
    expect(out).toBe('65534\nallow\n');
  });

  it('root maps ranges: with uid 0 inside mapped to 100000, the child runs as 100000 outside', async () => {
    const range = [{ inside: 0, outside: 100000, count: 65536 }];
    const child = spawn('/bin/sh', ['-c', 'id -u; id -g; read line'], {
      namespaces: { user: true },
      uidMap: range,
      gidMap: range,
      uid: 0,
      gid: 0,
      stdin: 'pipe',
      stdout: 'pipe',
    });
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    child.stdin!.end('\n');
    const { out, code } = await outputOf(child);
    expect(code).toBe(0);
    expect(out).toBe('0\n0\n');
    // The shell had changed its ids (setuid inside) before execve, so /proc/PID/status shows them already.
    expect(status).toMatch(/^Uid:\s+100000\s+100000\s+100000\s+100000$/m);
    expect(status).toMatch(/^Gid:\s+100000\s+100000\s+100000\s+100000$/m);
  });

  it('a map the kernel refuses is a clean error naming the step and the namespace: no child, no fd left', () => {
    const overlapping = [
      { inside: 0, outside: 0, count: 10 },
      { inside: 5, outside: 100, count: 10 },
    ];
    const err = errorOf(() => spawn('/bin/true', [], { namespaces: { user: true, pid: true }, uidMap: overlapping, stdout: 'pipe' }));
    expect(err).toMatchObject({ code: 'EINVAL', errno: -22, syscall: 'spawn', step: 'write uid_map', namespace: 'user', path: '/bin/true' });
    expect(err.message).toMatch(/^EINVAL: invalid argument, write uid_map of the new user namespace \(spawn '\/bin\/true'\): the kernel refused the map/);
    expect(children()).toEqual([]);
    // The same for the gid map.
    const gid = errorOf(() => spawn('/bin/true', [], { namespaces: { user: true }, gidMap: overlapping }));
    expect(gid).toMatchObject({ code: 'EINVAL', step: 'write gid_map', namespace: 'user' });
    expect(children()).toEqual([]);
  });

  it('a map a 4 KiB-page kernel would refuse is a RangeError before anything happens: 4096 bytes or more, more than 340 lines', async () => {
    const mapped = (options: SpawnOptions) => printedBy('/bin/sh', ['-c', 'wc -l < /proc/self/uid_map; wc -l < /proc/self/gid_map'], { namespaces: { user: true }, ...options });
    // "1000000000 2000000000 1\n" is 24 bytes: 170 of them and a last line of 15 bytes ("1234 567890 12\n") make 4095.
    const lines = Array.from({ length: 170 }, (_, i) => ({ inside: 1_000_000_000 + i * 10, outside: 2_000_000_000 + i * 10, count: 1 }));
    const under = [...lines, { inside: 1234, outside: 567_890, count: 12 }];
    const over = [...lines, { inside: 1234, outside: 567_890, count: 123 }];
    expect(await mapped({ uidMap: under, gidMap: under })).toBe('171\n171\n');
    for (const key of ['uidMap', 'gidMap'] as const) {
      const err = errorOf(() => spawn('/bin/true', [], { namespaces: { user: true }, [key]: over }));
      expect(err).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      expect(err.message).toBe(
        `The value of "options.${key}" is out of range. It must be less than 4096 bytes written out as "inside outside count" lines ` +
          '(the kernel takes a map in one write of less than a page). Received 4096',
      );
    }
    // 340 short lines are taken; 341 are not, however short.
    const identity = (n: number) => Array.from({ length: n }, (_, i) => ({ inside: i, outside: i, count: 1 }));
    expect(await mapped({ uidMap: identity(340) })).toMatch(/^340\n/);
    const err = errorOf(() => spawn('/bin/true', [], { namespaces: { user: true }, uidMap: identity(341) }));
    expect(err).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    expect(err.message).toBe('The value of "options.uidMap" is out of range. It must be at most 340 entries long (the kernel\'s limit). Received 341');
    expect(children()).toEqual([]);
  });

  it('an exec error in a user namespace is reported like any other', () => {
    const err = errorOf(() => spawn('/nonexistent/x', [], { namespaces: { user: true, mount: true }, uidMap: [{ inside: 0, outside: 0, count: 1 }] }));
    expect(err).toMatchObject({ code: 'ENOENT', step: 'execve', message: "ENOENT: no such file or directory, spawn '/nonexistent/x'" });
    expect(children()).toEqual([]);
  });

  it('ENOSPC when a namespace limit is reached, naming the namespaces (limit lowered inside a user namespace of its own)', () => {
    const result = fixture(
      ['unshare', '--user', '--map-root-user', 'sh', '-c', 'echo 0 > /proc/sys/user/max_net_namespaces && exec "$@"', 'sh'],
      { namespaces: { net: true, uts: true } },
      'true',
    );
    expect(result.error).toMatchObject({ code: 'ENOSPC', step: 'clone' });
    expect(result.error!['message']).toBe(
      "ENOSPC: no space left on device, clone (spawn '/bin/sh' in new net, uts namespaces): a limit on the number of namespaces was reached (/proc/sys/user/max_*_namespaces), or user namespaces nest more than 32 deep",
    );
  });
});

describe('unprivileged (a Node process running as nobody)', () => {
  const nobody = NOBODY;

  it('starts a child in a new user namespace mapped to its own uid, with new pid and mount namespaces inside (unshare --user --map-root-user --pid --mount)', () => {
    const own = [{ inside: 0, outside: '$UID', count: 1 }];
    const ownGid = [{ inside: 0, outside: '$GID', count: 1 }];
    const result = fixture(nobody, { namespaces: { user: true, pid: true, mount: true }, uidMap: own, gidMap: ownGid }, `id -u; id -g; echo $$; cat /proc/self/uid_map; ${PRINT_NAMESPACES}`);
    expect(result.code).toBe(0);
    const [uid, gid, pid, map, ...rest] = result.out!.split('\n');
    expect([uid, gid, pid, map!.trim().split(/\s+/).join(' ')]).toEqual(['0', '0', '1', '0 65534 1']);
    const inside = parseNamespaces(rest.join('\n'));
    const mine = ours();
    for (const k of KINDS) {
      if (k === 'user' || k === 'pid' || k === 'mount') expect(inside[k], k).not.toBe(mine[k]);
      else expect(inside[k], k).toBe(mine[k]);
    }
  });

  it('cannot map ids other than its own: EPERM from the uid map, or the gid map without setgroups deny', () => {
    const root = fixture(nobody, { namespaces: { user: true }, uidMap: [{ inside: 0, outside: 0, count: 1 }] }, 'true');
    expect(root.error).toMatchObject({ code: 'EPERM', step: 'write uid_map', namespace: 'user' });
    const allow = fixture(nobody, { namespaces: { user: true }, setgroups: 'allow', gidMap: [{ inside: 0, outside: '$GID', count: 1 }] }, 'true');
    expect(allow.error).toMatchObject({ code: 'EPERM', step: 'write gid_map', namespace: 'user' });
    expect(allow.error!['message']).toContain("needs setgroups: 'deny'");
  });

  it('cannot make other namespaces without a user namespace: EPERM from clone', () => {
    const result = fixture(nobody, { namespaces: { pid: true } }, 'true');
    expect(result.error).toMatchObject({ code: 'EPERM', step: 'clone' });
    expect(result.error!['message']).toContain('with namespaces.user they need none');
  });
});

describe('mount namespaces', () => {
  it("mounts the child makes stay in it: 'private' and 'slave' propagation, where the parent's mount is shared", () =>
    withTempDir(async (dir) => {
      // A shared mount of our own, so that without the propagation change a
      // mount made inside would appear here (unshare(1) shows it does).
      execFileSync('mount', ['--bind', dir, dir]);
      try {
        execFileSync('mount', ['--make-shared', dir]);
        const inner = join(dir, 'inner');
        const mountInside = `mount -t tmpfs tmpfs ${dir} && touch ${inner} && grep -c " ${dir} " /proc/self/mountinfo`;
        // The control: with propagation left as it is, the mount leaks out.
        spawnSync('unshare', ['--mount', '--propagation', 'unchanged', 'sh', '-c', mountInside]);
        expect(readFileSync('/proc/self/mountinfo', 'utf8')).toContain(` ${dir} `);
        const leaked = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(` ${dir} `)).length;
        expect(leaked).toBe(2);
        execFileSync('umount', [dir]);

        for (const mountPropagation of ['private', 'slave'] as const) {
          const { out, code } = await sh(mountInside, { namespaces: { mount: true }, mountPropagation });
          expect(code, mountPropagation).toBe(0);
          expect(out).toBe('2\n'); // the bind mount and the tmpfs, inside
          expect(existsSync(inner), mountPropagation).toBe(false);
          expect(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(` ${dir} `))).toHaveLength(1);
        }
      } finally {
        spawnSync('umount', ['-R', dir]);
      }
    }));

  it('root: pivots into a prepared directory with its own /proc; cwd is a path inside it; the old root is gone', () =>
    withTempDir(async (root) => {
      // A root with a shell, cat and their libraries, copied as ldd lists them.
      for (const program of ['/bin/sh', '/bin/cat']) {
        const real = join(dirname(program), readlinkSafe(program));
        for (const file of [real, ...libraries(real)]) copyInto(root, file);
        copyInto(root, real, program);
      }
      mkdirSync(join(root, 'proc'));
      mkdirSync(join(root, 'work'));
      writeFileSync(join(root, 'marker'), 'inside the root\n');
      const { out, code } = await sh('cat /marker; pwd; echo $$; while read id parent dev root point rest; do echo $point; done < /proc/self/mountinfo; cat /etc/hostname 2>&1 || echo no-etc', {
        namespaces: { user: true, pid: true, mount: true },
        uidMap: [{ inside: 0, outside: 0, count: 1 }],
        root,
        cwd: '/work',
      });
      expect(code).toBe(0);
      expect(out.split('\n')).toEqual(['inside the root', '/work', '1', '/', '/proc', expect.stringContaining('No such file'), 'no-etc', '']);
    }));

  it('root: a program name is looked up in PATH inside the new root, symlinks followed there, never on this side', () =>
    withTempDir((root) =>
      withTempDir(async (host) => {
        // In the root: a shell at /opt/tools/hello, reached also through
        // symlinks that mean something else here: absolute ones (as Alpine's
        // /bin/sh -> /bin/busybox), one climbing above the root, a
        // directory one. None of these paths exists on this side.
        const real = join('/bin', readlinkSafe('/bin/sh'));
        for (const file of libraries(real)) copyInto(root, file);
        copyInto(root, real, '/opt/tools/hello');
        mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
        symlinkSync('/opt/tools/hello', join(root, 'usr/local/bin/hello'));
        mkdirSync(join(root, 'up'));
        symlinkSync('../../../../../../opt/tools/hello', join(root, 'up/hello'));
        symlinkSync('/opt/tools', join(root, 'tools-link'));
        for (const path of ['/opt/tools/hello', '/tools-link', '/up/hello']) expect(existsSync(path), path).toBe(false);
        // Here: a `hello` of our own, earlier in PATH; the root has no such directory.
        writeFileSync(join(host, 'hello'), '#!/bin/sh\necho from this side\n', { mode: 0o755 });

        const run = (PATH: string, cwd?: string) =>
          printedBy('hello', ['-c', 'echo from the root'], { namespaces: { mount: true }, root, env: { PATH }, ...(cwd ? { cwd } : {}) });
        expect(await run('/opt/tools')).toBe('from the root\n');
        expect(await run(`${host}:/opt/tools`)).toBe('from the root\n');
        expect(await run('/usr/local/bin')).toBe('from the root\n');
        expect(await run('/up')).toBe('from the root\n');
        expect(await run('/tools-link')).toBe('from the root\n');
        // A relative entry is relative to cwd, a path inside the root.
        expect(await run('tools', '/opt')).toBe('from the root\n');
        // Found only here: not found, as execvp in the root would say.
        expect(errorOf(() => spawn('hello', [], { namespaces: { mount: true }, root, env: { PATH: host } }))).toMatchObject({
          code: 'ENOENT',
          step: 'execve',
          message: "ENOENT: no such file or directory, spawn 'hello'",
        });
        expect(children()).toEqual([]);
      }),
    ));

  it('without a new mount namespace, mount steps are refused by the binding too (they would change ours)', () => {
    const plan = nativePlan(parseSpawn('/bin/true', [], { env: {} }), '/bin/true', []);
    const isolation = { cloneFlags: 0, uidMap: null, gidMap: null, denySetgroups: false, hostname: null, propagation: null, root: null, mountProc: false, cgroup: null };
    expect(() => native.spawn({ ...plan, isolation: { ...isolation, propagation: 'private' } })).toThrow('mounts need CLONE_NEWNS');
    expect(() => native.spawn({ ...plan, isolation: { ...isolation, mountProc: true } })).toThrow('mounts need CLONE_NEWNS');
    expect(() => native.spawn({ ...plan, isolation: { ...isolation, root: '/' } })).toThrow('mounts need CLONE_NEWNS');
    expect(() => native.spawn({ ...plan, isolation: { ...isolation, hostname: 'x' } })).toThrow('hostname needs CLONE_NEWUTS');
    expect(() => native.spawn({ ...plan, isolation: { ...isolation, uidMap: '0 0 1\n' } })).toThrow('maps need CLONE_NEWUSER');
    expect(() => native.spawn({ ...plan, isolation: { ...isolation, cloneFlags: 0x100 } })).toThrow('CLONE_NEW* flags only');
    expect(children()).toEqual([]);
  });

  it('a failed mount step names it: a root without a proc directory', () =>
    withTempDir((root) => {
      const err = errorOf(() => spawn('/bin/true', [], { namespaces: { pid: true, mount: true }, root }));
      expect(err).toMatchObject({ code: 'ENOENT', step: 'mount /proc', namespace: 'mount' });
      expect(err.message).toBe(`ENOENT: no such file or directory, mount a new /proc at '${root}/proc' (spawn '/bin/true'): the root has no proc directory`);
      expect(children()).toEqual([]);
    }));
});

function readlinkSafe(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return path.split('/').pop()!;
  }
}

/** The shared libraries `program` loads, from ldd. */
function libraries(program: string): string[] {
  return [...execFileSync('ldd', [program], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
}

function copyInto(root: string, file: string, as = file): void {
  mkdirSync(join(root, dirname(as)), { recursive: true });
  copyFileSync(file, join(root, as));
  execFileSync('chmod', ['755', join(root, as)]);
}
