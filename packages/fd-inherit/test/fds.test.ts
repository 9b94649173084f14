// Which fds a child gets, read from the child itself: the child is a shell
// whose own child, ls, lists /proc/<shell>/fd while the shell waits. dash
// opens nothing of its own for `sh -c`, so the listing is exactly the table
// the program was started with.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { setInheritable, spawn, type SpawnOptions } from '../lib/index.js';
import { DIST, fdLimit, hasCloexec, link, openFds, outputOf, readAll, requireDist, withTempDir } from './helpers.js';
import { tmpdir } from 'node:os';

/** Spawn a shell with `options` and return its fd table as it saw it: fd -> target. */
async function childTable(options: SpawnOptions): Promise<Map<number, string>> {
  const child = spawn('/bin/sh', ['-c', 'ls -l /proc/$$/fd'], { ...options, stdout: 'pipe' });
  const { out, code } = await outputOf(child);
  expect(code).toBe(0);
  const table = new Map<number, string>();
  for (const line of out.split('\n')) {
    const m = / ([0-9]+) -> (.*)$/.exec(line);
    if (m) table.set(Number(m[1]), m[2]!);
  }
  return table;
}

let dir: string;
const files: Record<string, number> = {};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fd-inherit-fds-'));
  for (const name of ['a', 'b', 'c']) {
    writeFileSync(join(dir, name), name);
    files[name] = openSync(join(dir, name), 'r'); // close-on-exec, as Node opens everything
  }
});

afterAll(() => {
  for (const fd of Object.values(files)) closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
});

const path = (name: string) => join(dir, name);

describe('the fd map', () => {
  it('gives the child exactly 0-2 plus the mapped numbers, each the object asked for', async () => {
    const { a, b } = files as { a: number; b: number };
    const table = await childTable({ fds: { 5: a, 9: b, 200: a } });
    expect([...table.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2, 5, 9, 200]);
    expect(table.get(5)).toBe(path('a'));
    expect(table.get(9)).toBe(path('b'));
    expect(table.get(200)).toBe(path('a'));
    expect(table.get(0)).toBe(link(0));
    expect(table.get(2)).toBe(link(2));
    expect(table.get(1)).toMatch(/^pipe:/);
  });

  it('clears CLOEXEC only in the child: the parent fds keep their flags', async () => {
    const { a, b } = files as { a: number; b: number };
    const stray = openSync(path('c'), 'r');
    try {
      setInheritable(stray, true);
      await childTable({ fds: { 7: a, [b]: b } });
      expect(hasCloexec(a)).toBe(true);
      expect(hasCloexec(b)).toBe(true);
      expect(hasCloexec(stray)).toBe(false);
    } finally {
      closeSync(stray);
    }
  });

  it('keeps a stray non-CLOEXEC parent fd out of the child, unless closeOtherFds is false', async () => {
    const stray = openSync(path('c'), 'r');
    const cloexec = openSync(path('b'), 'r');
    try {
      setInheritable(stray, true);
      const closed = await childTable({});
      expect([...closed.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2]);

      // The old rule, on request: whatever lacks CLOEXEC leaks; CLOEXEC fds still do not.
      const open = await childTable({ closeOtherFds: false });
      expect(open.get(stray)).toBe(path('c'));
      expect(open.has(cloexec)).toBe(false);
    } finally {
      closeSync(stray);
      closeSync(cloexec);
    }
  });

  it('clears CLOEXEC on the mapped fds only: with closeOtherFds false the child has them plus exactly what lacks CLOEXEC here', async () => {
    // The temporary copies made while placing the map are close-on-exec, so
    // none of them may survive the exec, whether they sit above the highest
    // target or (at the fd limit) below it.
    const { a, b } = files as { a: number; b: number };
    const stray = openSync(path('c'), 'r');
    try {
      setInheritable(stray, true);
      const inheritable = openFds()
        .map((entry) => Number(entry.split(' ')[0]))
        .filter((fd) => !hasCloexec(fd));
      expect(inheritable).toContain(stray);
      const top = fdLimit() - 1;
      for (const fds of [{ [a]: b, [b]: a, 40: a }, { [top]: a, [top - 1]: b }]) {
        const table = await childTable({ closeOtherFds: false, fds });
        const expected = new Set([0, 1, 2, ...inheritable, ...Object.keys(fds).map(Number)]);
        expect([...table.keys()].sort((x, y) => x - y)).toEqual([...expected].sort((x, y) => x - y));
        for (const [target, source] of Object.entries(fds)) expect(table.get(Number(target))).toBe(path(source === a ? 'a' : 'b'));
        expect(table.get(stray)).toBe(path('c'));
      }
    } finally {
      closeSync(stray);
    }
  });

  it('swaps two numbers (a cycle) and rotates three', async () => {
    const { a, b, c } = files as { a: number; b: number; c: number };
    const swapped = await childTable({ fds: { [a]: b, [b]: a } });
    expect(swapped.get(a)).toBe(path('b'));
    expect(swapped.get(b)).toBe(path('a'));

    const rotated = await childTable({ fds: { [a]: b, [b]: c, [c]: a } });
    expect(rotated.get(a)).toBe(path('b'));
    expect(rotated.get(b)).toBe(path('c'));
    expect(rotated.get(c)).toBe(path('a'));
  });

  it('uses one parent fd for several child fds, including its own number', async () => {
    const { a } = files as { a: number };
    const table = await childTable({ fds: { [a]: a, 3: a, 4: a, 0: a } });
    for (const fd of [a, 3, 4, 0]) expect(table.get(fd)).toBe(path('a'));
  });

  it('maps onto 0-2, including a swap of stdin and stderr', async () => {
    const { a, b } = files as { a: number; b: number };
    const table = await childTable({ fds: { 0: b, 2: a } });
    expect(table.get(0)).toBe(path('b'));
    expect(table.get(2)).toBe(path('a'));

    const swapped = await childTable({ fds: { 0: 2, 2: 0 } });
    expect(swapped.get(0)).toBe(link(2));
    expect(swapped.get(2)).toBe(link(0));
  });

  it('puts a source at a target whose number another source occupies', async () => {
    // Child 3 wants parent c while parent fd 3 (whatever it is) goes to child fd c.
    const { c } = files as { c: number };
    const three = link(3);
    const table = await childTable({ fds: { 3: c, [c]: 3 } });
    expect(table.get(3)).toBe(path('c'));
    expect(table.get(c)).toBe(three);
  });

  it('hands a socket from @folk/socketpair to the asked number, and data flows both ways', async () => {
    const [mine, theirs] = socketpair('stream');
    const socket = new net.Socket({ fd: mine, readable: true, writable: true });
    try {
      const child = spawn('/bin/sh', ['-c', 'ls -l /proc/$$/fd/7; echo ping >&7; read line <&7; echo "got $line"'], {
        fds: { 7: theirs },
        stdout: 'pipe',
      });
      const expected = link(theirs);
      closeSync(theirs);
      const output = readAll(child.stdout);
      socket.setEncoding('utf8');
      const [ping] = (await once(socket, 'data')) as [string];
      expect(ping).toBe('ping\n');
      socket.write('pong\n');
      const out = await output;
      expect(out).toContain(`7 -> ${expected}`);
      expect(out).toContain('got pong');
      expect((await child.wait()).code).toBe(0);
    } finally {
      socket.destroy();
    }
  });

  it('places fds at the highest numbers the fd limit allows', async () => {
    // No room above the highest target for the temporary copies: they go
    // below it instead, around the targets.
    const { a, b } = files as { a: number; b: number };
    const top = fdLimit() - 1;
    const table = await childTable({ fds: { [top]: a, [top - 1]: b, [top - 2]: a } });
    expect([...table.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2, top - 2, top - 1, top]);
    expect(table.get(top)).toBe(path('a'));
    expect(table.get(top - 1)).toBe(path('b'));
    expect(table.get(top - 2)).toBe(path('a'));

    // Room above the highest target for one copy only.
    const below = await childTable({ fds: { [top - 1]: b, [top - 2]: a, [top - 3]: b } });
    expect([...below.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2, top - 3, top - 2, top - 1]);
    expect(below.get(top - 1)).toBe(path('b'));
    expect(below.get(top - 2)).toBe(path('a'));
    expect(below.get(top - 3)).toBe(path('b'));
  });

  it('places a CLOEXEC parent fd at its own number', async () => {
    const { b } = files as { b: number };
    expect(hasCloexec(b)).toBe(true);
    const table = await childTable({ fds: { [b]: b } });
    expect(table.get(b)).toBe(path('b'));
  });
});

describe('stdio', () => {
  it("'ignore' is /dev/null, 'inherit' the parent's fd, a number that fd", async () => {
    const { a } = files as { a: number };
    const table = await childTable({ stdin: 'ignore', stderr: a });
    expect(table.get(0)).toBe('/dev/null');
    expect(table.get(2)).toBe(path('a'));
    const inherited = await childTable({ stdin: 'inherit', stderr: 'inherit' });
    expect(inherited.get(0)).toBe(link(0));
    expect(inherited.get(2)).toBe(link(2));
  });

  it("'pipe' gives streams in both directions", async () => {
    const child = spawn('/bin/sh', ['-c', 'read line; echo "out:$line"; echo "err:$line" >&2'], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    expect(child.stdin).not.toBeNull();
    child.stdin!.end('hello\n');
    const [out, err, exit] = await Promise.all([readAll(child.stdout), readAll(child.stderr), child.wait()]);
    expect(out).toBe('out:hello\n');
    expect(err).toBe('err:hello\n');
    expect(exit.code).toBe(0);
  });

  it('a stdio fd closed in the parent stays closed in the child; no pipe of ours passes for a closed fd', async () => {
    requireDist();
    // A Node parent that closed its fd 0: the lowest free number, which a
    // pipe end or /dev/null opened for the spawn would get if they were not
    // moved above 2. None of them may become the child's stdin or be taken
    // for the closed fd 0 named in fds or stdin.
    const parent = `
      const { closeSync } = require('node:fs');
      const { spawn } = require(${JSON.stringify(DIST)});
      closeSync(0);
      const failure = (options) => {
        try {
          spawn('/bin/true', [], { ...options, stdout: 'pipe' });
          return 'started';
        } catch (e) {
          return e.code + ' ' + e.message;
        }
      };
      // While fd 0 is still free.
      const mapped = failure({ fds: { 3: 0 } });
      const stdin = failure({ stdin: 0 });
      const child = spawn('/bin/sh', ['-c', 'ls -l /proc/$$/fd'], { stdout: 'pipe', stderr: 'ignore' });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stdout.on('end', () => child.wait().then((exit) => {
        console.log(JSON.stringify({ out, code: exit.code, mapped, stdin }));
      }));`;
    const { out, code } = await outputOf(spawn(process.execPath, ['-e', parent], { stdout: 'pipe' }));
    expect(code).toBe(0);
    const report = JSON.parse(out) as { out: string; code: number; mapped: string; stdin: string };
    expect(report.code).toBe(0);
    const table = new Map<number, string>();
    for (const line of report.out.split('\n')) {
      const m = / ([0-9]+) -> (.*)$/.exec(line);
      if (m) table.set(Number(m[1]), m[2]!);
    }
    expect([...table.keys()].sort()).toEqual([1, 2]);
    expect(table.get(1)).toMatch(/^pipe:/);
    expect(table.get(2)).toBe('/dev/null');
    expect(report.mapped).toBe("EBADF EBADF: bad file descriptor, spawn '/bin/true' (fd 0 for child fd 3 is not open)");
    expect(report.stdin).toBe("EBADF EBADF: bad file descriptor, spawn '/bin/true' (fd 0 for child fd 0 is not open)");
  });

  it('with 0-2 closed in the parent, none of its pipe ends or pidfds takes their numbers (Node would take them for stdio)', async () => {
    requireDist();
    // A pipe end at fd 2 is what Node's lazy process.stderr wraps: net.Socket
    // then dies with "open EEXIST", here as soon as the stdout stream ends
    // (its destroy looks at process.stderr). child_process keeps its ends at
    // 3 and above, and so must we, for the pidfd as well.
    const report = await withTempDir(async (tmp) => {
      const file = join(tmp, 'report.json');
      const parent = `
        const fs = require('node:fs');
        const { spawn } = require(${JSON.stringify(DIST)});
        const report = fs.openSync(${JSON.stringify(file)}, 'w');
        // What is at 0-2, with the target (readdirSync's own directory fd takes one of them).
        const low = () =>
          [0, 1, 2].flatMap((fd) => {
            try {
              return [fd + ' ' + fs.readlinkSync('/proc/self/fd/' + fd)];
            } catch {
              return [];
            }
          });
        const result = { low: [] };
        process.on('uncaughtException', (e) => {
          result.uncaught = String(e && e.message);
          fs.writeSync(report, JSON.stringify(result));
          process.exit(3);
        });
        // libuv reserves an fd (/dev/null) for its EMFILE handling when the
        // first stream is made: a spawn with a pipe does that here, while 0-2
        // are still open, so the reservation does not take one of them below.
        spawn('/bin/true', [], { stdout: 'pipe' });
        fs.closeSync(0);
        fs.closeSync(1);
        fs.closeSync(2);
        const child = spawn('/bin/sh', ['-c', 'cat; echo err >&2'], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
        const ignored = spawn('/bin/true', [], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' });
        result.low = low();
        result.ends = [child.stdin, child.stdout, child.stderr].map((s) => s._handle.fd);
        result.pidfds = [child.pidfd.fd, ignored.pidfd.fd];
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.stdin.end('x\\n');
        Promise.all([child.wait(), ignored.wait()]).then(([exit, other]) => {
          setImmediate(() => {
            result.child = { out, err, code: exit.code, ignoredCode: other.code };
            console.error('process.stderr works');
            result.lowAfter = low();
            fs.writeSync(report, JSON.stringify(result));
          });
        });`;
      const child = spawn(process.execPath, ['-e', parent], { stderr: 'pipe' });
      const [stderr, exit] = await Promise.all([readAll(child.stderr), child.wait()]);
      child.pidfd.close();
      const written = JSON.parse(readFileSync(file, 'utf8')) as { ends?: number[]; pidfds?: number[] };
      return { exit: exit.code, stderr, ends: [], pidfds: [], ...written };
    });
    expect(report).toMatchObject({
      exit: 0,
      stderr: '',
      low: [],
      child: { out: 'x\n', err: 'err\n', code: 0, ignoredCode: 0 },
      lowAfter: [],
    });
    expect(report).not.toHaveProperty('uncaught');
    expect(report.ends).toHaveLength(3);
    expect(report.pidfds).toHaveLength(2);
    for (const fd of [...report.ends, ...report.pidfds]) expect(fd).toBeGreaterThanOrEqual(3);
  });

  it('leaves no fd behind in the parent', async () => {
    const before = openFds();
    const child = spawn('/bin/cat', [], { stdin: 'pipe', stdout: 'pipe', stderr: 'ignore' });
    child.stdin!.end('x');
    expect(await readAll(child.stdout)).toBe('x');
    await child.wait();
    child.pidfd.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
  });
});
