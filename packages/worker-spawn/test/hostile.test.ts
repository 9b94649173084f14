// Workers that break the task protocol in ways that used to leave a task
// unsettled for ever and a worker (or a pool slot) lost for good, with the
// pool's default execTimeout of 0. Each test's timeout is only a guard that
// turns such a hang into a failure; what they assert is the outcome.
import { beforeAll, describe, expect, it } from 'vitest';
import { WorkerError, WorkerPool, spawnWorker, type PoolWorkerInfo, type RecycleReason, type WorkerExitInfo } from '../lib/index.js';
import { errorOf, fixture, once, requirePhp, withPool } from './helpers.js';

/** Long enough for any of these on a loaded machine; a hang would be for ever. */
const GUARD = 20_000;

/** A pool of one hostile.php worker (which ignores `stop`: SIGTERM after 100 ms), ready, stopped after `body`. */
function withHostilePool(body: (pool: WorkerPool) => Promise<void>): Promise<void> {
  return withPool({ script: fixture('hostile.php'), destroyTimeout: 100 }, async (pool) => {
    await pool.ready();
    await body(pool);
  });
}

const pidOf = async (pool: WorkerPool): Promise<number> => Number((await pool.run('pid')).toString());

/** What the supervisor says of a worker that writes text where frames belong (after "worker pid N "). */
const NOT_FRAMES = 'broke the task protocol: task frame with protocol version 104; expected 1 (the peer does not speak this protocol)';

/** What hostile.php does on each task, and what the supervisor says about it (after "worker pid N "). */
const BREACHES: Array<[string, string, (id: number) => string]> = [
  ['closes its task socket in the middle of a task and stays alive', 'eof', () => 'closed its task socket (fd 3) without exiting; it was killed'],
  ['answers with an id that is not pending', 'wrong-id', (id) => `answered request ${id + 1000}, which is not the one waiting for an answer (${id})`],
  ['sends a PART frame for a request not flagged PARTS', 'as:5', (id) => `sent a PART frame for request ${id}, which takes no parts now (it was not sent flagged PARTS)`],
  ['sends a PART frame with an id that is not pending', 'stray:5', (id) => `sent a PART frame for request 0, which takes no parts now (request ${id} is)`],
  ['sends a PART frame over the maximum frame size', 'part-over', (id) => `sent a PART frame (id ${id}) over the maximum frame size of 16777216 bytes`],
  ...[
    [1, 'REQUEST'],
    [4, 'WAKE'],
    [9, 'an undefined type'],
  ].map(([type, name]): [string, string, () => string] => [
    `sends a ${name} frame with an id that is not pending`,
    `stray:${type}`,
    () => `sent a frame of type ${type} (id 0); a worker sends only RESPONSE, ERROR and PART frames`,
  ]),
];

beforeAll(() => requirePhp());

describe('a WorkerHandle whose process breaks the task protocol', () => {
  it('answers, then closes its task socket and stays alive: it is killed, and the next request is rejected instead of never settling', async () => {
    const worker = spawnWorker({ script: fixture('hostile.php') });
    try {
      expect((await worker.request('eof-after')).toString()).toBe(String(worker.pid));
      // Written before or after the EOF is read here: either way it cannot be answered.
      const err = await errorOf(worker.request('pid'));
      expect(err).toBeInstanceOf(WorkerError);
      expect([err.code, err.message]).toEqual([
        'ERR_WORKER_PROTOCOL',
        `worker pid ${worker.pid} closed its task socket (fd 3) without exiting; it was killed`,
      ]);
      expect(await worker.exited).toMatchObject({ signal: 'SIGKILL', reason: err });
    } finally {
      await worker.stop({ timeout: 0 });
    }
  }, GUARD);

  it.each(BREACHES)('%s: the request is rejected and the worker killed', async (_what, task, message) => {
    const worker = spawnWorker({ script: fixture('hostile.php') });
    try {
      const err = await errorOf(worker.request(task));
      expect([err.code, err.message]).toEqual(['ERR_WORKER_PROTOCOL', `worker pid ${worker.pid} ${message(1)}`]);
      expect(await worker.exited).toMatchObject({ signal: 'SIGKILL', reason: err });
    } finally {
      await worker.stop({ timeout: 0 });
    }
  }, GUARD);

  it("writes newline-delimited text on fd 3 before saying ready: it is killed, and `ready`, a pending request and the 'exit' info all carry the protocol error, not the SIGKILL", async () => {
    const worker = spawnWorker({ script: fixture('lines.php') });
    try {
      const exit = once<[WorkerExitInfo]>(worker, 'exit');
      const pending = errorOf(worker.request('hello?'));
      const err = await errorOf(worker.ready);
      expect(err).toBeInstanceOf(WorkerError);
      expect([err.code, err.message]).toEqual(['ERR_WORKER_PROTOCOL', `worker pid ${worker.pid} ${NOT_FRAMES}`]);
      expect(await pending).toBe(err);
      const [info] = await exit;
      expect(info).toMatchObject({ pid: worker.pid, code: null, signal: 'SIGKILL', reason: err });
      expect(await worker.exited).toBe(info);
      expect(await worker.stop()).toBe(info);
    } finally {
      await worker.stop({ timeout: 0 });
    }
  }, GUARD);

  it("exits by itself after closing its task socket: the exit info has no reason, and its own status", async () => {
    const worker = spawnWorker({ script: fixture('tasks.php') });
    const err = await errorOf(worker.request('exit:3'));
    expect(err.code).toBe('ERR_WORKER_EXITED');
    const info = await worker.exited;
    expect(info.code).toBe(3);
    expect(info).not.toHaveProperty('reason');
  }, GUARD);
});

describe('a worker that sends a control datagram over 64 KiB (the most PROTOCOL.md allows)', () => {
  const OVER = 'sent a control datagram over 65536 bytes, the most one control message may be (PROTOCOL.md)';

  it('WorkerHandle: it is killed for breaking the protocol; its pending request, control.send() and its exit say why', async () => {
    const worker = spawnWorker({ script: fixture('hostile.php') });
    try {
      await worker.ready;
      const broken = once<[WorkerError]>(worker, 'broken');
      const err = await errorOf(worker.request('bigcontrol:70000'));
      expect(err).toBeInstanceOf(WorkerError);
      expect([err.code, err.message]).toEqual(['ERR_WORKER_PROTOCOL', `worker pid ${worker.pid} ${OVER}`]);
      expect((await broken)[0]).toBe(err);
      // Before its exit has been seen: refused with the reason, not sent into a closed socket.
      expect(await errorOf(worker.control.send({ type: 'hello' }))).toBe(err);
      expect(await worker.exited).toMatchObject({ signal: 'SIGKILL', reason: err });
    } finally {
      await worker.stop({ timeout: 0 });
    }
  }, GUARD);

  it('WorkerPool: its task is rejected, send() refuses, and it is replaced, its crash giving the reason', async () => {
    await withHostilePool(async (pool) => {
      const first = await pidOf(pool);
      const crashed = once<[PoolWorkerInfo, WorkerExitInfo]>(pool, 'crash');
      const err = await errorOf(pool.run('bigcontrol:70000'));
      expect([err.code, err.message]).toEqual(['ERR_WORKER_PROTOCOL', `worker pid ${first} ${OVER}`]);
      expect(await errorOf(pool.send(first, { type: 'hello' }))).toBe(err);
      const [info, exit] = await crashed;
      expect([info.pid, exit.signal, exit.reason]).toEqual([first, 'SIGKILL', err]);
      expect(await pidOf(pool)).not.toBe(first);
      expect((await errorOf(pool.send(first, { type: 'hello' }))).code).toBe('ERR_WORKER_NOT_FOUND');
    });
  }, GUARD);
});

describe('a WorkerPool (execTimeout 0) whose worker breaks the task protocol', () => {
  it("writes newline-delimited text on fd 3 before saying ready: the pool's 'workerError' and 'crash' carry the protocol error", async () => {
    await withPool({ script: fixture('lines.php'), backoff: { initial: 60_000 } }, async (pool) => {
      // (Its hello on fd 4, which is no JSON, is reported too, as not fatal.)
      const reported = new Promise<[PoolWorkerInfo, string]>((resolve) =>
        pool.on('workerError', (info: PoolWorkerInfo, message: string, fatal: boolean) => fatal && resolve([info, message])),
      );
      const crashed = once<[PoolWorkerInfo, WorkerExitInfo, number]>(pool, 'crash');
      const [info, message] = await reported;
      expect(message).toBe(`worker pid ${info.pid} ${NOT_FRAMES}`);
      const [crashInfo, exit] = await crashed;
      expect(crashInfo.pid).toBe(info.pid);
      expect(exit).toMatchObject({ signal: 'SIGKILL', reason: { code: 'ERR_WORKER_PROTOCOL', message: `worker pid ${info.pid} ${NOT_FRAMES}` } });
    });
  }, GUARD);

  it('answers, then closes its task socket and stays alive: the worker is killed and replaced, the next task answered', async () => {
    await withHostilePool(async (pool) => {
      const exited = once<[PoolWorkerInfo, { signal: string | null }]>(pool, 'exit');
      const first = Number((await pool.run('eof-after')).toString());
      const [info, exit] = await exited;
      expect([info.pid, exit.signal]).toEqual([first, 'SIGKILL']);
      expect(await pidOf(pool)).not.toBe(first);
      expect(pool.stats()).toMatchObject({ completed: 2, failed: 0, crashed: 1 });
    });
  }, GUARD);

  it('takes a task written just before its EOF arrives: that task is rejected, not left pending, and the slot comes back', async () => {
    await withHostilePool(async (pool) => {
      const first = Number((await pool.run('eof-after')).toString());
      const next = await pool.run('pid').then(
        (answer) => Number(answer.toString()),
        (err: WorkerError) => err.code,
      );
      // Either it was written to the worker before its EOF was read here (and
      // is lost with it), or the worker was out of service by then and
      // another one answered.
      if (typeof next === 'number') expect(next).not.toBe(first);
      else expect(next).toBe('ERR_WORKER_PROTOCOL');
      expect(await pidOf(pool)).not.toBe(first);
    });
  }, GUARD);

  it.each(BREACHES)('%s: the task is rejected, the worker replaced', async (_what, task, message) => {
    await withHostilePool(async (pool) => {
      const first = await pidOf(pool);
      const err = await errorOf(pool.run(task));
      expect([err.code, err.message]).toEqual(['ERR_WORKER_PROTOCOL', `worker pid ${first} ${message(2)}`]);
      expect(await pidOf(pool)).not.toBe(first);
    });
  }, GUARD);

  it('announces a 4 GiB answer and sends nothing: the task is rejected at once, and the next task goes to a new worker instead of into the skip', async () => {
    await withHostilePool(async (pool) => {
      const first = await pidOf(pool);
      const recycled = once<[PoolWorkerInfo, RecycleReason]>(pool, 'recycle');
      const err = await errorOf(pool.run('huge'));
      expect([err.code, err.message]).toEqual([
        'ERR_WORKER_FRAME_TOO_LARGE',
        `worker pid ${first} answered with 4294967295 bytes, over the maximum frame size of 16777216 bytes; the response was discarded`,
      ]);
      const [info, reason] = await recycled;
      expect([info.pid, reason]).toEqual([first, 'oversize']);
      expect(await pidOf(pool)).not.toBe(first);
    });
  }, GUARD);

  it('gets an over-size answer whose bytes have all arrived: the task is rejected and the worker, in step again, keeps serving', async () => {
    await withPool({ script: fixture('hostile.php'), maxFrame: 4096, destroyTimeout: 100 }, async (pool) => {
      const first = await pidOf(pool);
      // 4097 bytes after the header, written at once: read in the same turn
      // of the loop as the header, so the skip is over when the pool looks.
      expect((await errorOf(pool.run('over'))).code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect(await pidOf(pool)).toBe(first);
      expect(pool.stats()).toMatchObject({ recycled: 0, crashed: 0 });
    });
  }, GUARD);
});
