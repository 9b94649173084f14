// Typechecked only: the published types serve a TypeScript user.
import type { Server, Socket } from 'node:net';
import {
  CONTROL_FD,
  TASK_FD,
  WorkerError,
  WorkerPool,
  serverFd,
  spawnWorker,
  type ExitInfo,
  type PoolStats,
  type ReadyMessage,
  type RecycleReason,
  type Worker,
  type WorkerPoolOptions,
} from '@folk/worker-spawn';
import { serve, type TaskHandler } from '@folk/worker-spawn/worker';

const fds: [3, 4] = [TASK_FD as 3, CONTROL_FD as 4];
void fds;

async function main(): Promise<void> {
  const worker: Worker = spawnWorker({ script: 'worker.php', runtime: 'pipe', env: { PATH: '/usr/bin' }, maxFrame: 1 << 20 });
  const ready: ReadyMessage = await worker.ready;
  const pid: number = ready.pid;
  const task: Socket = worker.task;
  const answer: Buffer = await worker.request(Buffer.from('x'));
  await worker.control.sendFds([0], { tag: 'listen', meta: { port: 80 } });
  const exit: ExitInfo = await worker.stop({ timeout: 1000, killTimeout: 500 });
  void [pid, task, answer, exit];

  const options: WorkerPoolOptions = { script: 'worker.php', size: 2, maxJobs: 100, execTimeout: 1000, idleTtl: 60_000, maxWorkerMemory: 128 << 20 };
  const pool = new WorkerPool(options);
  pool.on('recycle', (_info, reason: RecycleReason) => void reason);
  const out: Buffer = await pool.run('payload');
  const stats: PoolStats = pool.stats();
  await pool.reload();
  await pool.stop();
  void [out, stats];

  try {
    await pool.run('x');
  } catch (err) {
    if (err instanceof WorkerError) {
      const code: string = err.code;
      void code;
    }
  }
}
void main;

const listeningFd = (server: Server): number => serverFd(server);
void listeningFd;

const handler: TaskHandler = (payload) => payload.toString().toUpperCase();
void serve;
void handler;

// @ts-expect-error: script is required
spawnWorker({ command: 'php' });
// @ts-expect-error: run takes bytes or a string
new WorkerPool({ script: 'w.php' }).run(42);
