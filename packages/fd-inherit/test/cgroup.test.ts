// options.cgroup: the child is created in a cgroup v2 directory
// (CLONE_INTO_CGROUP with clone3; on the clone(2) paths the child moves
// itself before anything else runs), so the program is in it from its
// first instruction. This machine mounts cgroup2 at /sys/fs/cgroup/unified
// beside v1 controllers; each test makes a cgroup of its own there.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { spawn } from '../lib/index.js';
import { CloneMode, native } from '../lib/native.js';
import { DIST, children, errorOf, expectNothingLeftByEachTest, outputOf, requireDist } from './helpers.js';

const UNIFIED = '/sys/fs/cgroup/unified';
const FIXTURE = fileURLToPath(new URL('./fixtures/isolated-spawn.cjs', import.meta.url));
const original = native.testing.getCloneMode();

afterAll(() => {
  native.testing.setCloneMode(original);
});

expectNothingLeftByEachTest();

/** A new cgroup under the cgroup2 mount, removed when the test ends (its processes are reaped by then). */
function cgroup(name: string): string {
  const dir = `${UNIFIED}/folk-fd-inherit-${process.pid}-${name}`;
  mkdirSync(dir);
  onTestFinished(() => {
    for (const sub of ['d', 't']) if (existsSync(`${dir}/${sub}`)) rmdirSync(`${dir}/${sub}`);
    rmdirSync(dir);
  });
  return dir;
}

/** The child's own cgroup v2 path, as /proc/self/cgroup shows it to the program itself. */
async function cgroupOfProgram(options: object): Promise<string> {
  const { out, code } = await outputOf(spawn('/bin/cat', ['/proc/self/cgroup'], { stdout: 'pipe', ...options }));
  expect(code).toBe(0);
  return /^0::(.*)$/m.exec(out)![1]!;
}

const itHasCgroup2 = existsSync(`${UNIFIED}/cgroup.procs`) ? it : it.skip;

describe('cgroup', () => {
  itHasCgroup2.each(Object.entries(CloneMode))('places the program from its first instruction (clone mode %s)', async (_name, mode) => {
    native.testing.setCloneMode(mode);
    const dir = cgroup(`mode${mode}`);
    // cat reads its own /proc/self/cgroup: the exec'd program, nothing before it.
    expect(await cgroupOfProgram({ cgroup: dir })).toBe(dir.slice(UNIFIED.length));
    // And while it runs, its pid is in cgroup.procs, which holds nothing else.
    const sleeper = spawn('/bin/sleep', ['1000'], { cgroup: dir });
    try {
      expect(readFileSync(`${dir}/cgroup.procs`, 'utf8')).toBe(`${sleeper.pid}\n`);
    } finally {
      sleeper.kill('SIGKILL');
      await sleeper.wait();
    }
    // This process stays where it was.
    expect(readFileSync('/proc/self/cgroup', 'utf8')).not.toContain(dir.slice(UNIFIED.length));
    expect(native.testing.getCloneMode()).toBe(mode);
  });

  itHasCgroup2.each(Object.entries(CloneMode))('with a new cgroup namespace too, the cgroup is the root of what the child sees (clone mode %s)', async (_name, mode) => {
    native.testing.setCloneMode(mode);
    const dir = cgroup(`ns${mode}`);
    expect(await cgroupOfProgram({ cgroup: dir, namespaces: { cgroup: true } })).toBe('/');
    expect(await cgroupOfProgram({ cgroup: dir, namespaces: { user: true, pid: true, cgroup: true }, uidMap: [{ inside: 0, outside: 0, count: 1 }] })).toBe('/');
  });

  it('a cgroup v1 directory or another file system: EINVAL saying what it is and where cgroup v2 is', () => {
    const v1 = '/sys/fs/cgroup/pids';
    if (existsSync(v1)) {
      const err = errorOf(() => spawn('/bin/true', [], { cgroup: v1 }));
      expect(err).toMatchObject({ code: 'EINVAL', step: 'cgroup', syscall: 'spawn' });
      expect(err.message).toBe(
        `EINVAL: invalid argument, cgroup '${v1}' (spawn '/bin/true'): not a cgroup v2 directory (it is in a cgroup v1 hierarchy; cgroup v2 is mounted at ${UNIFIED})`,
      );
    }
    const tmp = errorOf(() => spawn('/bin/true', [], { cgroup: '/tmp' }));
    expect(tmp).toMatchObject({ code: 'EINVAL', step: 'cgroup' });
    expect(tmp.message).toContain('not a cgroup v2 directory (it is not in a cgroup file system');
    expect(errorOf(() => spawn('/bin/true', [], { cgroup: '/nonexistent/cgroup' }))).toMatchObject({ code: 'ENOENT', step: 'cgroup' });
    expect(children()).toEqual([]);
  });

  it('says so where no cgroup v2 hierarchy is mounted (one unmounted in a mount namespace of its own)', () => {
    requireDist();
    const r = spawnSync(
      'unshare',
      ['--mount', 'sh', '-c', `umount ${UNIFIED} 2>/dev/null; exec "$@"`, 'sh', process.execPath, FIXTURE, DIST, JSON.stringify({ cgroup: '/sys/fs/cgroup' }), 'true'],
      { encoding: 'utf8' },
    );
    const { error } = JSON.parse(r.stdout);
    expect(error).toMatchObject({ code: 'EINVAL', step: 'cgroup' });
    expect(error.message).toContain('not a cgroup v2 directory (it is not in a cgroup file system; no cgroup v2 hierarchy is mounted)');
  });

  itHasCgroup2.each([
    ['clone3 (CLONE_INTO_CGROUP)', CloneMode.Clone3ClearSighand],
    ["clone(2) (the child's own write)", CloneMode.ClonePidfd],
  ])('a cgroup the kernel will not put a process in is a clean error: %s', (_name, mode) => {
    native.testing.setCloneMode(mode);
    // A domain cgroup beside a threaded one is 'domain invalid': it takes no process.
    const dir = cgroup(`invalid${mode}`);
    mkdirSync(`${dir}/t`);
    writeFileSync(`${dir}/t/cgroup.type`, 'threaded');
    mkdirSync(`${dir}/d`);
    expect(readFileSync(`${dir}/d/cgroup.type`, 'utf8')).toBe('domain invalid\n');
    const err = errorOf(() => spawn('/bin/true', [], { cgroup: `${dir}/d` }));
    expect(err).toMatchObject({ code: 'ENOTSUP', step: mode === CloneMode.ClonePidfd ? 'cgroup' : 'clone' });
    expect(err.message).toContain("it cannot hold a process in its state (cgroup.type 'domain invalid')");
    expect(children()).toEqual([]);
  });
});
