// Many children at once, ours and child_process's, each reporting its own
// exit status; thousands in a row leaving nothing behind.
import * as childProcess from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { spawn } from '../lib/index.js';
import { DIST, openFds, requireDist, statField, zombieChildren } from './helpers.js';

interface Outcome {
  code: number | null;
  signal: string | null;
}

/** Child i exits with i % 200, except every seventh, which kills itself with SIGTERM/SIGKILL. */
function script(i: number): string {
  if (i % 7 === 3) return `kill -${i % 2 ? 'TERM' : 'KILL'} $$`;
  return `exit ${i % 200}`;
}

function expected(i: number): Outcome {
  if (i % 7 === 3) return { code: null, signal: i % 2 ? 'SIGTERM' : 'SIGKILL' };
  return { code: i % 200, signal: null };
}

async function ours(i: number): Promise<Outcome> {
  const child = spawn('/bin/sh', ['-c', script(i)], { stdin: 'ignore' });
  const exit = await child.wait();
  child.pidfd.close();
  return { code: exit.code, signal: exit.signal };
}

async function theirs(i: number): Promise<Outcome> {
  const child = childProcess.spawn('/bin/sh', ['-c', script(i)], { stdio: 'ignore' });
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  return { code, signal };
}

describe('under load', () => {
  it('200 concurrent spawns mixed with child_process spawns all report the right exit status', async () => {
    const runs: Array<Promise<[number, Outcome]>> = [];
    for (let i = 0; i < 400; i++) {
      const start = i % 2 === 0 ? ours : theirs;
      runs.push(start(i).then((outcome) => [i, outcome]));
    }
    const results = await Promise.all(runs);
    for (const [i, outcome] of results) expect({ i, ...outcome }).toEqual({ i, ...expected(i) });
    expect(zombieChildren()).toEqual([]);
  });

  it('5,000 spawns leave no zombies and /proc/self/fd as it was', async () => {
    const before = openFds();
    const batch = 50;
    let failures = 0;
    for (let start = 0; start < 5000; start += batch) {
      const exits = await Promise.all(
        Array.from({ length: batch }, async () => {
          const child = spawn('/bin/true', [], { stdin: 'ignore', stdout: 'ignore' });
          const exit = await child.wait();
          child.pidfd.close();
          return exit.code;
        }),
      );
      failures += exits.filter((code) => code !== 0).length;
    }
    expect(failures).toBe(0);
    expect(zombieChildren()).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
  }, 120_000);

  it('children nobody waits for are reaped anyway, and a late wait() still has their status', async () => {
    const children = Array.from({ length: 20 }, (_, i) => spawn('/bin/sh', ['-c', `exit ${i}`]));
    const pids = new Set(children.map((c) => c.pid));
    // Nobody calls wait(); look until none of them is left unreaped. If they
    // were never reaped, this would spin until the test times out.
    const alive = () =>
      children.some((c) => {
        try {
          return statField(c.pid, 4) === String(process.pid) && pids.has(c.pid);
        } catch {
          return false; // gone: reaped
        }
      });
    while (alive()) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(zombieChildren()).toEqual([]);
    const codes = await Promise.all(children.map((c) => c.wait().then((e) => e.code)));
    expect(codes).toEqual(children.map((_, i) => i));
    for (const c of children) c.pidfd.close();
  });

  it('a running child keeps Node alive unless unref() is called', async () => {
    requireDist();
    const run = (unref: boolean) => `
      const { spawn } = require(${JSON.stringify(DIST)});
      const child = spawn('/bin/sleep', ['30'], { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' });
      const pidfd = child.pidfd; // taken, so it is still open to ask at exit
      ${unref ? 'child.unref();' : 'setTimeout(() => child.kill("SIGKILL"), 50);'}
      process.on('exit', () => console.log(child.pid + ' ' + (pidfd.tryWait() === null ? 'running' : 'done')));`;
    const detached = childProcess.spawnSync(process.execPath, ['-e', run(true)], { encoding: 'utf8' });
    const [pid, state] = detached.stdout.trim().split(' ');
    expect(state).toBe('running'); // Node exited while the child still ran
    process.kill(Number(pid), 'SIGKILL');

    const held = childProcess.spawnSync(process.execPath, ['-e', run(false)], { encoding: 'utf8' });
    expect(held.stdout.trim().split(' ')[1]).toBe('done'); // Node waited for it
  });
});
