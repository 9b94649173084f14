// Workers forked from a PHP prototype (WorkerPool's `prototype` option),
// with the real php-cli.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PidFd, type ExitInfo } from '@folk/pidfd';
import { WorkerPool, type PoolWorkerInfo, type WorkerPoolOptions } from '../lib/index.js';
import { Prototype } from '../lib/prototype.js';
import { serverFd } from '../lib/server-fd.js';
import { workerFromProcess } from '../lib/worker-handle.js';
import { processPlan } from '../lib/worker-process.js';
import { PHP_WORKER_LIBRARY } from '../lib/php-library.js';
import { errorOf, fixture, once, openFds, processExists, requirePhp } from './helpers.js';

let dir: string;
beforeAll(() => {
  requirePhp();
  dir = mkdtempSync(join(tmpdir(), 'folk-prototype-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const parentOf = (pid: number): number => Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/** A prototype pool (tasks.php behind preload.php unless `options` say otherwise), stopped after `body` whatever happens. */
async function withPrototypePool(options: Partial<WorkerPoolOptions>, body: (pool: WorkerPool) => Promise<void>): Promise<void> {
  const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1, prototype: { preload: fixture('preload.php') }, ...options });
  try {
    await body(pool);
  } finally {
    await pool.stop();
  }
}

describe('a prototype pool', () => {
  it('runs the preload once; every forked worker sees its class and its array, and is a child of the prototype', async () => {
    const log = join(dir, 'preload-runs');
    process.env['PRELOAD_LOG'] = log;
    try {
      await withPrototypePool({ script: fixture('preloaded.php'), size: 3 }, async (pool) => {
        await pool.ready();
        const prototype = pool.prototypePid!;
        const answers = await Promise.all([1, 2, 3, 4, 5, 6].map(() => pool.run('seen')));
        const seen = answers.map((a) => JSON.parse(a.toString()) as { pid: number; class: string; table: number });
        for (const s of seen) expect(s).toMatchObject({ class: 'preloaded', table: 100000 });
        const pids = pool.stats().list.map((w) => w.pid);
        expect(new Set(pids).size).toBe(3);
        for (const pid of pids) expect(parentOf(pid)).toBe(prototype);
        // Preloaded once, by the prototype.
        expect(readFileSync(log, 'utf8')).toBe(`${prototype}\n`);
      });
    } finally {
      delete process.env['PRELOAD_LOG'];
    }
  });

  it('serves tasks as exec\'d workers do: answers, handler errors, a worker that exits mid-task (its code reported)', async () => {
    await withPrototypePool({}, async (pool) => {
      expect((await pool.run('echo:hi')).toString()).toBe('hi');
      expect((await errorOf(pool.run('throw:bad'))).code).toBe('ERR_WORKER_TASK');
      const exit = once<[PoolWorkerInfo, ExitInfo]>(pool, 'exit');
      const err = await errorOf(pool.run('exit:3'));
      expect(err.code).toBe('ERR_WORKER_CRASHED');
      expect(err.exit).toEqual({ code: 3, signal: null });
      const [, info] = await exit;
      expect(info).toMatchObject({ code: 3, signal: null, signalNumber: null });
      // rusage from the prototype, which reaped it.
      expect(info.rusage?.maxRssKb).toBeGreaterThan(0);
      expect((await pool.run('echo:again')).toString()).toBe('again');
    });
  });

  it("gives execArgv (php's own options) to the prototype, so its forked workers have them", async () => {
    await withPrototypePool({ execArgv: ['-d', 'precision=9'] }, async (pool) => {
      expect((await pool.run('ini:precision')).toString()).toBe('9');
    });
  });

  it('SIGKILL of a worker: reported as SIGKILL, replaced by a new fork; no process and no fd of it is left', async () => {
    const before = openFds();
    let killed = 0;
    await withPrototypePool({}, async (pool) => {
      await pool.ready();
      killed = pool.stats().list[0]!.pid;
      const crash = once<[PoolWorkerInfo, ExitInfo]>(pool, 'crash');
      process.kill(killed, 'SIGKILL');
      const [, info] = await crash;
      expect(info).toMatchObject({ pid: killed, code: null, signal: 'SIGKILL', signalNumber: 9 });
      expect((await pool.run('pid')).toString()).not.toBe(String(killed));
    });
    expect(processExists(killed)).toBe(false);
    expect(openFds()).toEqual(before);
  });

  it('a worker that exits the moment it is forked is still tracked: its pidfd opens (the prototype keeps it unreaped until then) and its code is reported', async () => {
    await withPrototypePool({ script: fixture('exit7.php'), backoff: { initial: 0 } }, async (pool) => {
      const exits: ExitInfo[] = [];
      const spawnErrors: Error[] = [];
      pool.on('spawnError', (err: Error) => spawnErrors.push(err));
      await new Promise<void>((resolve) =>
        pool.on('exit', (_info: PoolWorkerInfo, info: ExitInfo) => {
          if (exits.push(info) === 5) resolve();
        }),
      );
      for (const info of exits) expect(info).toMatchObject({ code: 7, signal: null });
      expect(spawnErrors).toEqual([]);
    });
  });

  it('without PIDFD_INFO_EXIT (forced), the status still comes, from the prototype', async () => {
    process.env['FOLK_PROTOTYPE_EXIT_FROM'] = 'prototype';
    try {
      await withPrototypePool({}, async (pool) => {
        await pool.ready();
        const pid = pool.stats().list[0]!.pid;
        const crash = once<[PoolWorkerInfo, ExitInfo]>(pool, 'crash');
        process.kill(pid, 'SIGKILL');
        expect((await crash)[1]).toMatchObject({ pid, code: null, signal: 'SIGKILL', signalNumber: 9 });
        const exit = once<[PoolWorkerInfo, ExitInfo]>(pool, 'exit');
        await errorOf(pool.run('exit:5'));
        expect((await exit)[1]).toMatchObject({ code: 5, signal: null });
      });
    } finally {
      delete process.env['FOLK_PROTOTYPE_EXIT_FROM'];
    }
  });

  it('stop() while a crashed worker\'s replacement is being forked resolves with every fd closed (exit from the kernel or from the prototype)', async () => {
    // Forked after stop() began, such a worker was closed, but its pidfd and
    // sockets went only once its exit was known, which could be after
    // stop() resolved (CI saw them in a later test's count once).
    for (const exitFrom of ['kernel', 'prototype']) {
      if (exitFrom === 'prototype') process.env['FOLK_PROTOTYPE_EXIT_FROM'] = 'prototype';
      try {
        for (let delay = 0; delay < 5; delay++) {
          const before = openFds();
          await withPrototypePool({ size: 2, backoff: { initial: 0 } }, async (pool) => {
            await pool.ready();
            const crash = once<[PoolWorkerInfo, ExitInfo]>(pool, 'crash');
            process.kill(pool.stats().list[0]!.pid, 'SIGKILL');
            await crash; // its replacement is forked from the next turn
            await new Promise((resolve) => setTimeout(resolve, delay));
          });
          expect(openFds()).toEqual(before);
        }
      } finally {
        delete process.env['FOLK_PROTOTYPE_EXIT_FROM'];
      }
    }
  });

  it('SIGKILL of the prototype: its workers are stopped and replaced from a new prototype; nothing of the old is left', async () => {
    const before = openFds();
    const gone: number[] = [];
    await withPrototypePool({ size: 2, backoff: { initial: 0 } }, async (pool) => {
      await pool.ready();
      const old = pool.prototypePid!;
      const workers = pool.stats().list.map((w) => w.pid);
      gone.push(old, ...workers);
      const handles = [old, ...workers].map((pid) => PidFd.open(pid));
      const recycled: string[] = [];
      pool.on('recycle', (_info: PoolWorkerInfo, reason: string) => recycled.push(reason));
      process.kill(old, 'SIGKILL');
      await Promise.all(handles.map((h) => h.wait()));
      for (const h of handles) h.close();
      expect(recycled).toEqual(['prototype', 'prototype']);
      await pool.ready();
      const answers = await Promise.all([pool.run('pid'), pool.run('pid')]);
      for (const a of answers) expect(workers).not.toContain(Number(a.toString()));
      expect(pool.prototypePid).not.toBe(old);
      expect(parentOf(Number(answers[0]!.toString()))).toBe(pool.prototypePid);
    });
    // The prototype (our child) is reaped. Its workers, orphaned when it died,
    // have exited; reaping them is now init's job (here a PID 1 that does it
    // late), so a zombie whose parent is init is all that may remain of them.
    expect(processExists(gone[0]!)).toBe(false);
    for (const pid of gone.slice(1)) {
      const status = processExists(pid) ? readFileSync(`/proc/${pid}/status`, 'utf8') : null;
      if (status !== null) expect([/^State:\s+Z/m.test(status), /^PPid:\s+1$/m.test(status)]).toEqual([true, true]);
    }
    expect(openFds()).toEqual(before);
  });

  it.each(['throw', 'exit'])('a preload that fails (%s) is a clear pool error, retried with the crash backoff', async (how) => {
    process.env['PRELOAD_FAIL'] = how;
    try {
      const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1, prototype: { preload: fixture('preload.php') }, backoff: { initial: 50 } });
      const errors: Error[] = [];
      const two = new Promise<void>((resolve) =>
        pool.on('spawnError', (err: Error) => {
          errors.push(err);
          if (errors.length === 2) resolve();
        }),
      );
      await two;
      await pool.stop();
      for (const err of errors) {
        expect(err).toMatchObject({ code: 'ERR_WORKER_PROTOTYPE' });
        expect(err.message).toMatch(/^prototype pid \d+ ended \(exit code (255|3)\) before its preload ".*preload\.php" was done$/);
      }
      expect(pool.stats().spawned).toBe(0);
    } finally {
      delete process.env['PRELOAD_FAIL'];
    }
  });

  it('a preload that hangs is killed at readyTimeout: a clear pool error, retried with the crash backoff', async () => {
    process.env['PRELOAD_FAIL'] = 'hang';
    try {
      const pool = new WorkerPool({
        script: fixture('tasks.php'),
        size: 1,
        readyTimeout: 300,
        destroyTimeout: 100,
        prototype: { preload: fixture('preload.php') },
        backoff: { initial: 50 },
      });
      const errors: Array<[Error, number]> = [];
      const two = new Promise<void>((resolve) =>
        pool.on('spawnError', (err: Error) => {
          errors.push([err, Date.now()]);
          if (errors.length === 2) resolve();
        }),
      );
      const started = Date.now();
      await two;
      await pool.stop();
      const pids: number[] = [];
      for (const [err] of errors) {
        expect(err).toMatchObject({ code: 'ERR_WORKER_PROTOTYPE' });
        expect(err.message).toMatch(/^prototype pid \d+ did not finish its preload ".*preload\.php" within readyTimeout \(300 ms\); it was killed$/);
        pids.push(Number(/^prototype pid (\d+)/.exec(err.message)![1]));
      }
      // Two prototypes, each given readyTimeout, the second after the backoff; neither is left.
      expect(new Set(pids).size).toBe(2);
      expect(errors[0]![1] - started).toBeGreaterThanOrEqual(290);
      expect(errors[1]![1] - errors[0]![1]).toBeGreaterThanOrEqual(300 + 50 - 10);
      for (const pid of pids) expect(processExists(pid)).toBe(false);
      expect(pool.stats().spawned).toBe(0);
    } finally {
      delete process.env['PRELOAD_FAIL'];
    }
  }, 20_000);

  it('reload() under load: a new prototype, then new workers; no task fails', async () => {
    await withPrototypePool({ size: 2 }, async (pool) => {
      await pool.ready();
      const old = pool.prototypePid!;
      using oldHandle = PidFd.open(old);
      const recycled: string[] = [];
      pool.on('recycle', (_info: PoolWorkerInfo, reason: string) => recycled.push(reason));
      const tasks = Array.from({ length: 40 }, (_, i) => pool.run(i % 4 === 0 ? 'sleep:20' : `echo:${i}`));
      await pool.reload();
      const results = await Promise.allSettled(tasks);
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      expect(pool.prototypePid).not.toBe(old);
      // The old prototype exits once its workers are reaped; that is no crash.
      await oldHandle.wait();
      expect(recycled).not.toContain('prototype');
      const pid = Number((await pool.run('pid')).toString());
      expect(parentOf(pid)).toBe(pool.prototypePid);
      expect(pool.stats().failed).toBe(0);
    });
  });
});

describe('a forked worker, one at a time (Prototype)', () => {
  it('says ready with its pid, takes a listening socket over control and accepts on it', async () => {
    const plan = processPlan({ script: fixture('accept.php') }, true);
    const proto = new Prototype({ ...plan, argv: [join(PHP_WORKER_LIBRARY, '..', 'prototype.php'), fixture('preload.php'), ...plan.argv] }, fixture('preload.php'), 1 << 20);
    const server = net.createServer();
    try {
      const worker = workerFromProcess(await proto.fork(), 1 << 20);
      const ready = await worker.ready;
      expect(ready.pid).toBe(worker.pid);
      expect(parentOf(worker.pid)).toBe(proto.pid);
      // The sockets it serves on are the ones sent, not the prototype's fds 3 and 4 (closed with FFI).
      expect(() => readlinkSync(`/proc/${worker.pid}/fd/4`)).toThrow();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as net.AddressInfo;
      await worker.control.sendFds([serverFd(server)], { tag: 'listen', meta: { port } });
      await new Promise((resolve) => server.close(resolve));
      const greeting = await new Promise<string>((resolve, reject) => {
        const client = net.connect(port, '127.0.0.1', () => client.write('client\n'));
        let text = '';
        client.on('data', (d) => (text += d.toString()));
        client.on('end', () => resolve(text));
        client.on('error', reject);
      });
      expect(greeting).toBe(`hello client from php pid ${worker.pid}\n`);
      expect((await worker.request('still')).toString()).toBe('still');
      expect((await worker.stop()).code).toBe(0);
    } finally {
      if (server.listening) server.close();
      proto.retire();
      await proto.process.exited;
    }
  });
});

describe('when the supervisor of a prototype pool dies', () => {
  it('SIGKILL of the supervisor: the prototype and every worker exit, the busy one included', async () => {
    const child = spawn(process.execPath, [fixture('prototype-supervisor.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pids = await new Promise<{ prototype: number; workers: number[] }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { prototype: number; workers: number[] });
      });
      child.on('exit', (code, signal) => reject(new Error(`supervisor exited early (${code ?? signal})`)));
    });
    expect(pids.workers).toHaveLength(2);
    const handles = [pids.prototype, ...pids.workers].map((pid) => PidFd.open(pid));
    try {
      child.kill('SIGKILL');
      const exits = await Promise.all(handles.map((h) => h.wait()));
      expect(exits.map((e) => e.pid)).toEqual([pids.prototype, ...pids.workers]);
    } finally {
      for (const h of handles) h.close();
    }
  });
});

describe.each([
  ['exec\'d workers', {}],
  ['a prototype', { prototype: { preload: fixture('preload.php') } }],
])('maxSize, with %s', (_name, extra: Partial<WorkerPoolOptions>) => {
  it('grows by one worker per waiting task up to maxSize, and shrinks back to size after idleTtl', async () => {
    const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1, maxSize: 3, idleTtl: 50, ...extra });
    try {
      // Four tasks at once: one for the first worker, one more worker per waiting task, three at most.
      const answers = await Promise.all([1, 2, 3, 4].map(() => pool.run('sleep:50')));
      expect(answers.map(String)).toEqual(['slept', 'slept', 'slept', 'slept']);
      expect(pool.stats().spawned).toBe(3);
      // Idle past idleTtl: the two above size stop and are not replaced. (The
      // one within size is replaced when idle that long, as in a fixed pool;
      // its replacement may still be on its way, not yet listed.)
      const live = await new Promise<number>((resolve) => {
        let recycled = 0;
        pool.on('recycle', () => {
          if (++recycled === 2) resolve(pool.stats().list.filter((w) => w.state !== 'stopping').length);
        });
      });
      expect(live).toBeLessThanOrEqual(1);
    } finally {
      await pool.stop();
    }
  });

  it('rejects a maxSize below size', () => {
    expect(() => new WorkerPool({ script: fixture('tasks.php'), size: 2, maxSize: 1, ...extra })).toThrow(
      expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: 'The value of "options.maxSize" is out of range. It must be an integer >= options.size (2) && <= 1024. Received 1' }),
    );
  });
});
