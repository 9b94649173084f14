import { type ChildProcess, spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { PidFd } from '@folk/pidfd';
import { fixture, requirePhp } from './helpers.js';

/** Start fixtures/supervisor.mjs, read the worker pids it prints, and return both. */
async function startSupervisor(mode: 'pdeathsig' | 'eof' | 'isolated', lang: 'php' | 'node' = 'php') {
  const child = spawn(process.execPath, [fixture('supervisor.mjs'), mode, lang], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pids = await new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as number[]);
    });
    child.on('exit', (code, signal) => reject(new Error(`supervisor exited early (${code ?? signal})`)));
  });
  return { child, pids };
}

/**
 * SIGKILL the supervisor and wait until every worker has exited. Handles are
 * opened while the workers run: their exits are seen even though they are not
 * our children (their parent is the supervisor).
 */
async function expectWorkersEndWith(supervisor: ChildProcess, pids: number[]): Promise<void> {
  const handles = pids.map((pid) => PidFd.open(pid));
  try {
    supervisor.kill('SIGKILL');
    const exits = await Promise.all(handles.map((h) => h.wait()));
    expect(exits.map((e) => e.pid).sort()).toEqual([...pids].sort());
  } finally {
    for (const h of handles) h.close();
  }
}

beforeAll(() => requirePhp());

describe('when the supervisor dies', () => {
  it('SIGKILL of the supervisor: every worker exits, the busy one included (PR_SET_PDEATHSIG)', async () => {
    const { child, pids } = await startSupervisor('pdeathsig');
    expect(pids).toHaveLength(2);
    await expectWorkersEndWith(child, pids);
  });

  it('SIGKILL of the supervisor: isolated workers, each the init of its own pid namespace, exit too (SIGKILL from outside reaches an init)', async () => {
    const { child, pids } = await startSupervisor('isolated');
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(readlinkSync(`/proc/${pid}/ns/pid`)).not.toBe(readlinkSync('/proc/self/ns/pid'));
    await expectWorkersEndWith(child, pids);
  });

  it('without pdeathsig, idle workers still exit on their own at EOF of their task and control sockets', async () => {
    const { child, pids } = await startSupervisor('eof');
    await expectWorkersEndWith(child, pids);
  });

  it('without pdeathsig, Node workers (the ./worker library) exit at EOF of their sockets too', async () => {
    const { child, pids } = await startSupervisor('eof', 'node');
    await expectWorkersEndWith(child, pids);
  });
});
