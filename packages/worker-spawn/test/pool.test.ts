import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { WorkerError, WorkerPool, type PoolWorkerInfo, type RecycleReason, type WorkerPoolOptions } from '../lib/index.js';
import { errorOf, fixture, once, openFds, processExists, requirePhp, withPool, zombieChildren } from './helpers.js';

const pidOf = async (pool: WorkerPool): Promise<number> => Number((await pool.run('pid')).toString());

/** 'resolved', 'rejected', or 'pending' if `promise` has not settled within `ms`: a hang becomes a failure that says so. */
const settlesWithin = (promise: Promise<unknown>, ms: number): Promise<string> =>
  Promise.race([promise.then(() => 'resolved', () => 'rejected'), new Promise<string>((resolve) => setTimeout(resolve, ms, 'pending'))]);

beforeAll(() => requirePhp());

describe('WorkerPool with php-cli', () => {
  it('spreads 10,000 tasks over its workers and answers each correctly', async () => {
    await withPool({ size: 2 }, async (pool) => {
      await pool.ready();
      const answers = await Promise.all(Array.from({ length: 10_000 }, (_, i) => pool.run(`echo:${i}`)));
      answers.forEach((a, i) => {
        if (a.toString() !== String(i)) throw new Error(`task ${i} answered ${a.toString()}`);
      });
      const stats = pool.stats();
      expect(stats).toMatchObject({ size: 2, workers: 2, completed: 10_000, failed: 0, crashed: 0, spawned: 2, queued: 0 });
      expect(stats.list.every((w) => w.jobs > 0)).toBe(true);
    });
  });

  it('carries an 8 MiB binary payload through the pool', async () => {
    await withPool({}, async (pool) => {
      const big = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
      const back = await pool.run(Buffer.concat([Buffer.from('echo:'), big]));
      expect(back.equals(big)).toBe(true);
    });
  });

  it('execTimeout: kills the worker, rejects the task clearly, and the next task runs on a new worker', async () => {
    await withPool({ execTimeout: 200 }, async (pool) => {
      const first = await pidOf(pool);
      const exited = once<[PoolWorkerInfo, { signal: string | null }]>(pool, 'exit');
      const err = await errorOf(pool.run('sleep:60000'));
      expect(err).toBeInstanceOf(WorkerError);
      expect(err.code).toBe('ERR_WORKER_EXEC_TIMEOUT');
      expect(err.message).toBe(`task exceeded execTimeout (200 ms); worker pid ${first} was killed and is being replaced`);
      const [info, exit] = await exited;
      expect(info.pid).toBe(first);
      expect(exit.signal).toBe('SIGKILL');
      const second = await pidOf(pool);
      expect(second).not.toBe(first);
      expect(pool.stats()).toMatchObject({ timedOut: 1, recycled: 1, crashed: 0 });
    });
  });

  it('maxJobs: recycles a worker after N tasks', async () => {
    await withPool({ maxJobs: 3 }, async (pool) => {
      const reasons: RecycleReason[] = [];
      pool.on('recycle', (_info, reason: RecycleReason) => reasons.push(reason));
      const pids: number[] = [];
      for (let i = 0; i < 7; i++) pids.push(await pidOf(pool));
      expect(new Set(pids.slice(0, 3)).size).toBe(1);
      expect(new Set(pids.slice(3, 6)).size).toBe(1);
      expect(new Set([pids[0], pids[3], pids[6]]).size).toBe(3);
      expect(reasons).toEqual(['maxJobs', 'maxJobs']);
      expect(pool.stats().failed).toBe(0);
    });
  });

  it('a worker killed mid-task: the task is rejected as a crash, the worker replaced', async () => {
    await withPool({ backoff: { initial: 0 } }, async (pool) => {
      const victim = await pidOf(pool);
      const crash = once<[PoolWorkerInfo, { signal: string | null }, number]>(pool, 'crash');
      const holding = once<[Buffer, PoolWorkerInfo]>(pool, 'stdout');
      const task = pool.run('hold:60000');
      expect(pool.stats().busy).toBe(1);
      // The worker says so once its handler runs: the kill lands mid-task.
      const [said, from] = await holding;
      expect([said.toString(), from.pid]).toEqual(['holding\n', victim]);
      process.kill(victim, 'SIGKILL');
      const err = await errorOf(task);
      expect(err.code).toBe('ERR_WORKER_CRASHED');
      expect(err.message).toBe(`worker pid ${victim} crashed (signal SIGKILL) while running the task`);
      expect(err.exit).toEqual({ code: null, signal: 'SIGKILL' });
      const [info, exit] = await crash;
      expect([info.pid, exit.signal]).toEqual([victim, 'SIGKILL']);
      const next = await pidOf(pool);
      expect(next).not.toBe(victim);
      expect(pool.stats()).toMatchObject({ crashed: 1, completed: 2, failed: 1 });
    });
  });

  it('a worker that exits during a task (exit code) is reported with its code', async () => {
    await withPool({ backoff: { initial: 0 } }, async (pool) => {
      const err = await errorOf(pool.run('exit:7'));
      expect(err.code).toBe('ERR_WORKER_CRASHED');
      expect(err.exit).toEqual({ code: 7, signal: null });
      expect((await pool.run('echo:back')).toString()).toBe('back');
    });
  });

  it('restarts a worker that keeps crashing with exponential backoff, and queued tasks time out clearly', async () => {
    await withPool({ script: fixture('does-not-exist.php'), backoff: { initial: 20, max: 80 }, allocateTimeout: 300 }, async (pool) => {
      const delays: number[] = [];
      const fifth = new Promise<void>((resolve) =>
        pool.on('crash', (_info, _exit, delay: number) => {
          delays.push(delay);
          if (delays.length === 5) resolve();
        }),
      );
      const err = await errorOf(pool.run('echo:x'));
      expect(err.code).toBe('ERR_WORKER_ALLOCATE_TIMEOUT');
      expect(err.message).toMatch(/^no worker became free within allocateTimeout \(300 ms\)/);
      await fifth;
      expect(delays.slice(0, 5)).toEqual([20, 40, 80, 80, 80]);
    });
  });

  it('a crash loop (workers dying before ready, or idle) backs off, doubling per crash; a completed task resets it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'folk-pool-flaky-'));
    const flag = join(dir, 'broken');
    writeFileSync(flag, '');
    const env = { ...process.env, FLAKY_FLAG: flag };
    try {
      // resetAfter far longer than the test: the worker that dies idle below has not served long, however slow the machine.
      await withPool({ script: fixture('flaky.php'), env, backoff: { initial: 20, max: 1000, resetAfter: 60_000 } }, async (pool) => {
        const delays: number[] = [];
        const waiting: Array<[number, () => void]> = [];
        pool.on('crash', (_info, _exit, delay: number) => {
          delays.push(delay);
          for (const [n, resolve] of waiting) if (delays.length >= n) resolve();
        });
        /** Resolves once `n` crashes have been reported. */
        const crashes = (n: number) => new Promise<void>((resolve) => (delays.length >= n ? resolve() : waiting.push([n, resolve])));
        await crashes(3);
        rmSync(flag);
        await pool.ready();
        expect((await pool.run('echo:up')).toString()).toBe('up');
        // Broken again, and the worker that served dies idle: the streak starts over.
        writeFileSync(flag, '');
        process.kill(pool.stats().list[0]!.pid, 'SIGKILL');
        await crashes(5);
        expect(delays.slice(0, 5)).toEqual([20, 40, 80, 20, 40]);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a poison task that kills its worker costs only its own requests: healthy tasks all complete, and replacements of ready workers start at once', async () => {
    // A long backoff: had it applied to these replacements, the 'crash' events would say so.
    await withPool({ size: 2, backoff: { initial: 1000, max: 10_000 } }, async (pool) => {
      await pool.ready();
      const delays: number[] = [];
      pool.on('crash', (_info, _exit, delay: number) => delays.push(delay));
      // 20 poison tasks (exit() mid-task) among 200 healthy ones, all queued at once.
      const tasks = Array.from({ length: 220 }, (_, i) => (i % 11 === 5 ? 'exit:3' : `echo:${i}`));
      const outcomes = await Promise.all(
        tasks.map((task) =>
          pool.run(task).then(
            (answer) => answer.toString(),
            (err: WorkerError) => err.code,
          ),
        ),
      );
      tasks.forEach((task, i) => expect(outcomes[i]).toBe(task === 'exit:3' ? 'ERR_WORKER_CRASHED' : String(i)));
      expect(delays).toEqual(Array(20).fill(0));
      expect(pool.stats()).toMatchObject({ completed: 200, failed: 20, crashed: 20, spawned: 22 });
    });
  });

  it('readyTimeout: a worker that never says ready is killed, reported once, and replaced as a crash', async () => {
    await withPool({ script: fixture('silent.php'), readyTimeout: 100, backoff: { initial: 0 }, destroyTimeout: 100 }, async (pool) => {
      const reports: unknown[] = [];
      pool.on('workerError', (info: PoolWorkerInfo, message: string, fatal: boolean) => reports.push([info.pid, message, fatal]));
      const crashes: Array<[number, string | null]> = [];
      await new Promise<void>((resolve) =>
        pool.on('crash', (info: PoolWorkerInfo, exit: { signal: string | null }) => {
          if (crashes.push([info.pid, exit.signal]) === 2) resolve();
        }),
      );
      expect(crashes.map(([, signal]) => signal)).toEqual(['SIGKILL', 'SIGKILL']);
      expect(new Set(crashes.map(([pid]) => pid)).size).toBe(2);
      expect(reports).toEqual(crashes.map(([pid]) => [pid, 'worker did not say ready within readyTimeout (100 ms); killed', true]));
    });
  });

  it('destroyTimeout: stop() gives a busy worker that long to finish, then SIGTERM; its task is rejected', async () => {
    const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1, destroyTimeout: 100 });
    await pool.ready();
    const exited = once<[PoolWorkerInfo, { code: number | null; signal: string | null }]>(pool, 'exit');
    const holding = once(pool, 'stdout');
    const task = errorOf(pool.run('hold:60000'));
    await holding;
    await pool.stop();
    const err = await task;
    expect(err.code).toBe('ERR_WORKER_POOL_STOPPED');
    expect(err.exit).toEqual({ code: null, signal: 'SIGTERM' });
    expect(err.message).toMatch(/^the worker pool was stopped while the task ran; worker pid \d+ ended \(signal SIGTERM\)$/);
    expect((await exited)[1]).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(pool.stats()).toMatchObject({ crashed: 0, failed: 1 });
  });

  it('a worker that forks instead of exec-ing fails the pid check, is reported and killed', async () => {
    // `; true` keeps the shell from exec-ing php: php runs as the shell's child and says its own pid.
    await withPool(
      { command: '/bin/sh', script: '-c', args: ['php "$0"; true', fixture('tasks.php')], backoff: { initial: 1000 }, destroyTimeout: 100 },
      async (pool) => {
        const [info, message, fatal] = await once<[PoolWorkerInfo, string, boolean]>(pool, 'workerError');
        expect(message).toMatch(new RegExp(`^worker ready message says pid \\d+, but the spawned process is pid ${info.pid} \\(a wrapper that forks instead of exec'ing\\?\\)$`));
        expect(fatal).toBe(true);
        const [, exit] = await once<[PoolWorkerInfo, { signal: string | null }]>(pool, 'crash');
        expect(exit.signal).toBe('SIGKILL');
        expect(pool.stats().idle).toBe(0);
      },
    );
  });

  it('a handler error rejects only that task; the worker stays', async () => {
    await withPool({}, async (pool) => {
      const pid = await pidOf(pool);
      const err = await errorOf(pool.run('throw:bad input'));
      expect(err.code).toBe('ERR_WORKER_TASK');
      expect(err.message).toContain('RuntimeException: bad input');
      expect(await pidOf(pool)).toBe(pid);
      expect(pool.stats()).toMatchObject({ crashed: 0, spawned: 1 });
    });
  });

  it('refuses an oversize payload without disturbing the worker', async () => {
    await withPool({ maxFrame: 4096 }, async (pool) => {
      const pid = await pidOf(pool);
      expect((await errorOf(pool.run(Buffer.alloc(5000)))).code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect((await errorOf(pool.run('big:5000'))).code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect(await pidOf(pool)).toBe(pid);
    });
  });

  it('a detached payload is refused at run(), and the worker stays free for the next task', async () => {
    await withPool({}, async (pool) => {
      await pool.ready();
      const buffer = new ArrayBuffer(8);
      const view = new Uint8Array(buffer);
      structuredClone(buffer, { transfer: [buffer] });
      const err = await errorOf(pool.run(view));
      expect(err).toBeInstanceOf(TypeError);
      expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"payload"') });
      expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, failed: 0 }); // a bad argument is no failed task
      expect((await pool.run('echo:next')).toString()).toBe('next');
    });
  });

  it('a bounded queue rejects clearly when full', async () => {
    await withPool({ maxQueue: 2 }, async (pool) => {
      await pool.ready();
      const busy = pool.run('sleep:300');
      const queued = [pool.run('echo:1'), pool.run('echo:2')];
      const err = await errorOf(pool.run('echo:3'));
      expect(err.code).toBe('ERR_WORKER_QUEUE_FULL');
      expect(err.message).toBe('the task queue is full (maxQueue 2 tasks waiting for a worker)');
      expect((await busy).toString()).toBe('slept');
      expect((await Promise.all(queued)).map(String)).toEqual(['1', '2']);
    });
  });

  it('allocateTimeout: a task that waits too long for a worker is rejected', async () => {
    await withPool({ allocateTimeout: 100 }, async (pool) => {
      await pool.ready();
      const busy = pool.run('sleep:400');
      const err = await errorOf(pool.run('echo:late'));
      expect(err.code).toBe('ERR_WORKER_ALLOCATE_TIMEOUT');
      expect((await busy).toString()).toBe('slept');
      expect(pool.stats().queued).toBe(0);
    });
  });

  it('idleTtl: replaces a worker that sat idle, never one busy with a task longer than that', async () => {
    await withPool({ idleTtl: 100 }, async (pool) => {
      const recycled: Array<[number, RecycleReason]> = [];
      pool.on('recycle', (info: PoolWorkerInfo, reason: RecycleReason) => recycled.push([info.pid, reason]));
      const first = await pidOf(pool);
      // Busy three times idleTtl: the idle clock stops while a task runs.
      expect((await pool.run('sleep:300')).toString()).toBe('slept');
      expect(recycled).toEqual([]);
      const [info, reason] = await once<[PoolWorkerInfo, RecycleReason]>(pool, 'recycle');
      expect([info.pid, reason]).toEqual([first, 'idleTtl']);
      expect(await pidOf(pool)).not.toBe(first);
    });
  });

  it('maxWorkerMemory: replaces a worker whose RSS grew past the limit, after its task, and only that one', async () => {
    await withPool({ maxWorkerMemory: 64 * 1024 * 1024 }, async (pool) => {
      const recycled: Array<[number, RecycleReason]> = [];
      pool.on('recycle', (info: PoolWorkerInfo, reason: RecycleReason) => recycled.push([info.pid, reason]));
      // A worker well under the limit (php-cli idles at about 20 MiB) keeps serving...
      const small = await pidOf(pool);
      expect([await pidOf(pool), await pidOf(pool)]).toEqual([small, small]);
      expect(recycled).toEqual([]);
      // ...until a task leaves it holding 100 MiB more.
      const grown = Number((await pool.run('grow:100')).toString());
      expect(grown).toBe(small);
      expect(recycled).toEqual([[grown, 'memory']]);
      const next = await pidOf(pool);
      expect(next).not.toBe(grown);
      expect(await pidOf(pool)).toBe(next);
      expect(pool.stats()).toMatchObject({ failed: 0, recycled: 1, crashed: 0 });
    });
  });

  it('reload() under load replaces every worker with zero failed tasks', async () => {
    await withPool({ size: 2 }, async (pool) => {
      await pool.ready();
      const before = new Set(pool.stats().list.map((w) => w.pid));
      let failures = 0;
      let done = 0;
      let running = true;
      const servedBy = new Set<number>();
      // 8 clients in closed loops, some tasks slow enough to be mid-flight at the switch.
      const clients = Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; running; i++) {
          try {
            const task = i % 5 === 0 ? 'sleep:20' : 'pid';
            const out = (await pool.run(task)).toString();
            if (task === 'pid') servedBy.add(Number(out));
            done++;
          } catch {
            failures++;
          }
        }
        return c;
      });
      // Let the load settle on the old workers first.
      while (done < 200) await new Promise((resolve) => setImmediate(resolve));
      await pool.reload();
      const afterReload = done;
      while (done < afterReload + 200) await new Promise((resolve) => setImmediate(resolve));
      running = false;
      await Promise.all(clients);
      const after = pool.stats();
      expect(failures).toBe(0);
      expect(after.failed).toBe(0);
      expect(after.workers).toBe(2);
      expect(after.list.every((w) => !before.has(w.pid) && w.generation === 1)).toBe(true);
      expect(after.recycled).toBe(2);
      // Both generations served tasks.
      expect([...servedBy].some((p) => before.has(p))).toBe(true);
      expect([...servedBy].some((p) => !before.has(p))).toBe(true);
    });
  });

  it('reload() of a pool grown above size (maxSize): every old worker is replaced, not only `size` of them, and reload() resolves', async () => {
    await withPool({ size: 1, maxSize: 3 }, async (pool) => {
      await pool.ready();
      // Three tasks at once: the pool grows to three workers, idle once they are done.
      await Promise.all([1, 2, 3].map(() => pool.run('sleep:300')));
      const old = pool.stats().list.map((w) => w.pid);
      expect(old).toHaveLength(3);
      expect(await settlesWithin(pool.reload(), 10_000)).toBe('resolved');
      const after = pool.stats();
      expect(after.list.filter((w) => old.includes(w.pid))).toEqual([]);
      expect(after.list.every((w) => w.generation === 1)).toBe(true);
      expect(after).toMatchObject({ failed: 0, crashed: 0, recycled: 3 });
      // No more than it needs: `size`, as nothing waits.
      expect(after.workers).toBe(1);
      expect(old).not.toContain(await pidOf(pool));
    });
  });

  it('reload() of a grown pool under load: every old worker goes, no task fails, and reload() resolves', async () => {
    await withPool({ size: 1, maxSize: 3 }, async (pool) => {
      await pool.ready();
      let running = true;
      let failures = 0;
      // Three clients in closed loops, each pausing between its tasks: the
      // pool grows to three workers, and tasks seldom wait for one.
      const clients = Array.from({ length: 3 }, async () => {
        while (running) {
          await pool.run('pid').catch(() => failures++);
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      });
      // Three ready (one still starting would be dropped by reload() at once).
      while (pool.stats().list.filter((w) => w.state === 'idle' || w.state === 'busy').length < 3) await new Promise((resolve) => setTimeout(resolve, 10));
      const old = pool.stats().list.map((w) => w.pid);
      expect(await settlesWithin(pool.reload(), 10_000)).toBe('resolved');
      const after = pool.stats().list;
      running = false;
      await Promise.all(clients);
      expect(after.filter((w) => old.includes(w.pid))).toEqual([]);
      expect(after.every((w) => w.generation === 1)).toBe(true);
      expect(failures).toBe(0);
      expect(pool.stats()).toMatchObject({ failed: 0, crashed: 0 });
      for (let i = 0; i < 5; i++) expect(old).not.toContain(await pidOf(pool));
    });
  });

  it('reload({ drainTimeout }): a task still running that long after its worker was replaced is rejected, the worker killed, and reload() resolves', async () => {
    await withPool({}, async (pool) => {
      const first = await pidOf(pool);
      const holding = once(pool, 'stdout');
      const hung = errorOf(pool.run('hold:600000'));
      await holding;
      const exited = once<[PoolWorkerInfo, { signal: string | null }]>(pool, 'exit');
      // With execTimeout 0 nothing else would ever end that task: reload() waited for good.
      await pool.reload({ drainTimeout: 100 });
      const err = await hung;
      expect([err.code, err.message]).toEqual([
        'ERR_WORKER_DRAIN_TIMEOUT',
        `the task was still running drainTimeout (100 ms) after reload() replaced its worker; worker pid ${first} was killed`,
      ]);
      const [info, exit] = await exited;
      expect([info.pid, exit.signal]).toEqual([first, 'SIGKILL']);
      expect(await pidOf(pool)).not.toBe(first);
      expect(pool.stats()).toMatchObject({ failed: 1, recycled: 1, crashed: 0 });
    });
  }, 20_000);

  it('reload() with bad options rejects and replaces nothing', async () => {
    await withPool({}, async (pool) => {
      const first = await pidOf(pool);
      await expect(pool.reload({ drainTimeout: -1 })).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      await expect(pool.reload('soon' as never)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      expect(pool.stats()).toMatchObject({ recycled: 0, spawned: 1 });
      expect(await pidOf(pool)).toBe(first);
    });
  });

  it('stop(): running tasks finish, queued ones are rejected, no zombies and no fds remain', async () => {
    const before = openFds();
    const pool = new WorkerPool({ script: fixture('tasks.php'), size: 2 });
    await pool.ready();
    const pids = pool.stats().list.map((w) => w.pid);
    const running = [pool.run('sleep:100'), pool.run('sleep:100')];
    const queued = errorOf(pool.run('echo:never'));
    await pool.stop();
    expect((await Promise.all(running)).map(String)).toEqual(['slept', 'slept']);
    expect((await queued).code).toBe('ERR_WORKER_POOL_STOPPED');
    expect((await errorOf(pool.run('echo:after'))).code).toBe('ERR_WORKER_POOL_STOPPED');
    for (const pid of pids) expect(processExists(pid)).toBe(false);
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
    expect(pool.stats().workers).toBe(0);
  });

  it('stats() counts workers by state as they start, serve and stop', async () => {
    const pool = new WorkerPool({ script: fixture('tasks.php'), size: 2 });
    // Both are started in the constructor, neither has said ready yet.
    expect(pool.stats()).toMatchObject({ size: 2, workers: 2, starting: 2, idle: 0, busy: 0, stopping: 0, spawned: 2 });
    await pool.ready();
    expect(pool.stats()).toMatchObject({ workers: 2, starting: 0, idle: 2, busy: 0 });
    const holding = once(pool, 'stdout');
    const task = pool.run('hold:200');
    await holding;
    const during = pool.stats();
    expect(during).toMatchObject({ idle: 1, busy: 1, queued: 0 });
    expect(during.list.map((w) => w.state).sort()).toEqual(['busy', 'idle']);
    const stopped = pool.stop();
    expect(pool.stats()).toMatchObject({ workers: 2, stopping: 2, idle: 0, busy: 0 });
    await stopped;
    expect((await task).toString()).toBe('slept'); // the running task finished first
    expect(pool.stats()).toMatchObject({ workers: 0, stopping: 0, completed: 1, failed: 0, list: [] });
  });

  it('emits lifecycle events and surfaces worker error reports', async () => {
    const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1, maxJobs: 3 });
    const events: string[] = [];
    for (const e of ['spawn', 'ready', 'exit', 'recycle', 'crash']) pool.on(e, () => events.push(e));
    const reported = once<[PoolWorkerInfo, string, boolean]>(pool, 'workerError');
    await pool.ready();
    await pool.run('report');
    const [info, message, fatal] = await reported;
    expect([typeof info.pid, message, fatal]).toEqual(['number', 'something the supervisor should know', false]);
    const printed = once<[Buffer, PoolWorkerInfo]>(pool, 'stdout');
    await pool.run('print:hello from echo');
    const [chunk, from] = await printed;
    expect([chunk.toString(), from.pid]).toEqual(['hello from echo', info.pid]);
    // The third task reaches maxJobs: the worker is recycled and replaced.
    const replaced = once<[PoolWorkerInfo]>(pool, 'ready');
    await pool.run('echo:third');
    expect((await replaced)[0].pid).not.toBe(info.pid);
    await pool.stop();
    // The first 'spawn' happened in the constructor and is still seen by a listener added right after it.
    expect(events).toEqual(['spawn', 'ready', 'recycle', 'spawn', 'exit', 'ready', 'exit']);
  });

  it('runs Node workers too', async () => {
    const pool = new WorkerPool({ command: process.execPath, script: fixture('echo-node.cjs'), size: 2 });
    try {
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      expect(await pool.run(all)).toEqual(all);
      const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => pool.run(String(i))));
      expect(answers.map(String)).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
    } finally {
      await pool.stop();
    }
  });

  it('ready() after stop() settles instead of waiting forever; run() and reload() are refused', async () => {
    const pool = new WorkerPool({ script: fixture('tasks.php'), size: 1 });
    await pool.stop();
    await pool.ready();
    expect((await errorOf(pool.run('echo:x'))).code).toBe('ERR_WORKER_POOL_STOPPED');
    const err = await errorOf(pool.reload());
    expect([err.code, err.message]).toEqual(['ERR_WORKER_POOL_STOPPED', 'the worker pool is stopped; nothing to reload']);
    // One refused task; the refused reload is not counted as one.
    expect(pool.stats()).toMatchObject({ failed: 1, completed: 0, workers: 0 });
  });

  it('a task whose worker breaks the protocol is rejected with ERR_WORKER_PROTOCOL, as PROTOCOL.md says', async () => {
    await withPool({ script: fixture('garbage.php'), destroyTimeout: 100 }, async (pool) => {
      await pool.ready();
      const err = await errorOf(pool.run('anything'));
      expect(err.code).toBe('ERR_WORKER_PROTOCOL');
      expect(err.message).toMatch(/broke the task protocol: task frame with protocol version 72/);
    });
  });

  it('a worker answering with a frame of the wrong type: the task is rejected and the worker replaced, not left busy', async () => {
    await withPool({ script: fixture('hostile.php'), backoff: { initial: 0 }, destroyTimeout: 100 }, async (pool) => {
      await pool.ready();
      const first = pool.stats().list[0]!.pid;
      const exited = once<[PoolWorkerInfo]>(pool, 'exit');
      const err = await errorOf(pool.run('as:1'));
      expect(err.code).toBe('ERR_WORKER_PROTOCOL');
      expect(err.message).toBe(`worker pid ${first} sent a frame of type 1 (id 1); a worker sends only RESPONSE, ERROR and PART frames`);
      expect((await exited)[0].pid).toBe(first);
      await pool.ready();
      expect(pool.stats().list.map((w) => w.pid)).not.toContain(first);
    });
  });

  it('with no backoff, a program that can no longer be started is retried on the event loop (no stack overflow) until it is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'folk-pool-'));
    const wrapper = join(dir, 'php');
    const install = () => {
      writeFileSync(wrapper, '#!/bin/sh\nexec php "$@"\n');
      chmodSync(wrapper, 0o755);
    };
    install();
    try {
      await withPool({ command: wrapper, backoff: { initial: 0 }, allocateTimeout: 10_000 }, async (pool) => {
        const first = await pidOf(pool);
        rmSync(wrapper);
        let failures = 0;
        const failing = new Promise<void>((resolve) =>
          pool.on('spawnError', (err: NodeJS.ErrnoException) => {
            expect(err.code).toBe('ENOENT');
            if (++failures === 20) resolve();
          }),
        );
        expect((await errorOf(pool.run('exit:3'))).code).toBe('ERR_WORKER_CRASHED');
        await failing;
        install();
        const next = await pidOf(pool);
        expect(next).not.toBe(first);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a worker killed at readyTimeout gets no task, even when its ready message was already on the way', async () => {
    await withPool({ readyTimeout: 200, backoff: { initial: 0 } }, async (pool) => {
      const first = pool.stats().list[0]!.pid;
      const crashed: number[] = [];
      pool.on('crash', (info: PoolWorkerInfo) => crashed.push(info.pid));
      const task = pool.run('pid');
      // Hold the event loop past readyTimeout, so the timer and the worker's
      // ready message are both due when it turns again: the timer runs first.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      // The task waited for a replacement instead of going to the killed worker.
      const servedBy = Number((await task).toString());
      expect(servedBy).not.toBe(first);
      expect(crashed[0]).toBe(first);
      // (On a loaded machine a replacement may miss readyTimeout as well; each
      // such worker is a crash of its own, never a failed task.)
      expect(crashed).not.toContain(servedBy);
      expect(pool.stats()).toMatchObject({ crashed: crashed.length, failed: 0, completed: 1 });
    });
  });

  it('validates options and reports a missing program at construction', () => {
    expect(() => new WorkerPool(undefined as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new WorkerPool({ script: 'x', size: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new WorkerPool({ script: 'x', execTimeout: -1 })).toThrow(/options\.execTimeout/);
    expect(() => new WorkerPool({ script: 'x', backoff: { initial: 1.5 } })).toThrow(/options\.backoff\.initial/);
    const before = openFds();
    expect(() => new WorkerPool({ command: 'no-such-php-binary', script: 'x.php' })).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(openFds()).toEqual(before);
  });
});
