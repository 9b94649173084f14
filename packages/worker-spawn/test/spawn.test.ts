import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { spawn } from '@folk/fd-inherit';
import { Duplex } from 'node:stream';
import {
  CONTROL_FD,
  ControlChannel,
  FrameDecoder,
  PHP_WORKER_LIBRARY,
  TASK_FD,
  WorkerError,
  readRss,
  serverFd,
  spawnWorker,
  type ReadyMessage,
  Worker,
  WorkerHandle,
} from '../lib/index.js';
import { O_NONBLOCK, errorOf, fdFlags, fixture, once, openFds, processExists, requirePhp, zombieChildren } from './helpers.js';

interface Report {
  pid: number;
  fds: Record<string, string>;
  types: Record<string, number>;
  env: Record<string, string>;
  argv: string[];
  ini: Record<string, string>;
  cwd: string;
}

async function report(worker: WorkerHandle): Promise<Report> {
  return JSON.parse((await worker.request('report')).toString()) as Report;
}

/** The two worker libraries, each running its tasks fixture (tasks.php, tasks-node.cjs). */
const LIBRARIES: Array<[string, { command?: string; script: string }]> = [
  ['PHP', { script: fixture('tasks.php') }],
  ['Node', { command: process.execPath, script: fixture('tasks-node.cjs') }],
];

/** A frame header as PROTOCOL.md lays it out, for frames written by hand. */
function header(type: number, id: number, length: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt8(1, 0);
  h.writeUInt8(type, 1);
  h.writeUInt32BE(id, 4);
  h.writeUInt32BE(length, 8);
  return h;
}

interface RawFrame {
  type: number;
  id: number;
  payload: Buffer;
}

/** Every frame the worker writes from now on, decoded beside the WorkerHandle's own reader. */
function rawFrames(worker: WorkerHandle): RawFrame[] {
  const frames: RawFrame[] = [];
  const decoder = new FrameDecoder(worker.maxFrame, {
    frame: (type, id, payload) => frames.push({ type, id, payload: Buffer.from(payload) }),
    oversize: (type, id, length) => frames.push({ type, id, payload: Buffer.from(`oversize ${length}`) }),
    corrupt: (err) => {
      throw err;
    },
  });
  worker.task.on('data', (chunk: Buffer) => decoder.push(chunk));
  return frames;
}

/**
 * Take the task socket over from the WorkerHandle, to test a worker library with
 * frames written by hand: the handle's own reader is detached (it would take
 * an answer to a request it never sent for a protocol breach and kill the
 * worker), and `next(n)` resolves with the next `n` frames the worker writes.
 */
function byHand(worker: WorkerHandle): { write: (...frames: Buffer[]) => void; next: (n: number) => Promise<RawFrame[]> } {
  worker.task.removeAllListeners('data');
  const frames = rawFrames(worker);
  return {
    write: (...parts) => worker.task.write(Buffer.concat(parts)),
    next: async (n) => {
      while (frames.length < n) await once(worker.task, 'data');
      return frames.splice(0, n);
    },
  };
}

/** Connect to 127.0.0.1:port, say "client", and resolve with everything the server says back. */
function greetingFrom(port: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const client = net.connect(port, '127.0.0.1', () => client.write('client\n'));
    let text = '';
    client.on('data', (d) => (text += d.toString()));
    client.on('end', () => resolve(text));
    client.on('error', reject);
  });
}

beforeAll(() => requirePhp());

describe('spawnWorker with php-cli', () => {
  it('gives the worker exactly the pattern: fds 0-4, sockets at 3 and 4, stdin /dev/null, FOLK_* env', async () => {
    const [tmpA, tmpB] = socketpair('stream', { cloexec: false }); // inheritable fds here must not reach the worker
    const worker = spawnWorker({ script: fixture('inspect.php'), env: { PATH: process.env['PATH'], SECRET_OF_PARENT: undefined } });
    try {
      const r = await report(worker);
      // 0-4 are what the worker inherited; php-cli itself keeps one more fd:
      // its handle on the script it runs. Nothing else.
      expect(Object.keys(r.fds).map(Number)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(r.fds['5']).toBe(fixture('inspect.php'));
      expect(r.fds['0']).toBe('/dev/null');
      expect(r.fds['1']).toMatch(/^pipe:\[\d+\]$/);
      expect(r.fds['3']).toMatch(/^socket:\[\d+\]$/);
      expect(r.fds['4']).toMatch(/^socket:\[\d+\]$/);
      expect(r.fds['3']).not.toBe(r.fds['4']);
      // stderr is ours, inherited.
      expect(r.fds['2']).toBe(readlinkSync('/proc/self/fd/2'));
      // The task socket is a stream, the control socket seqpacket, and both
      // are blocking in the worker (a plain read loop must not see EAGAIN).
      expect(r.types).toEqual({ '3': 1 /* SOCK_STREAM */, '4': 5 /* SOCK_SEQPACKET */ });
      for (const fd of [3, 4]) expect(fdFlags(fd, worker.pid) & O_NONBLOCK).toBe(0);
      expect(r.env).toEqual({
        PATH: process.env['PATH'],
        FOLK_RUNTIME: 'pipe',
        FOLK_TASK_FD: '3',
        FOLK_CONTROL_FD: '4',
        FOLK_MAX_FRAME: String(16 * 1024 * 1024),
      });
      expect(TASK_FD).toBe(3);
      expect(CONTROL_FD).toBe(4);
      expect(r.pid).toBe(worker.pid);
    } finally {
      closeSync(tmpA);
      closeSync(tmpB);
      await worker.stop();
    }
  });

  it('run as `php -r` (no script file for php to keep open), the worker has exactly fds 0-4', async () => {
    const code = readFileSync(fixture('inspect.php'), 'utf8').replace(/^<\?php\s*/, '');
    const worker = spawnWorker({ script: '-r', args: [code, PHP_WORKER_LIBRARY], env: { PATH: process.env['PATH'] } });
    try {
      const r = await report(worker);
      expect(Object.keys(r.fds).map(Number)).toEqual([0, 1, 2, 3, 4]);
      expect(r.fds['0']).toBe('/dev/null');
      expect(r.fds['1']).toMatch(/^pipe:\[\d+\]$/);
      expect(r.fds['3']).toMatch(/^socket:\[\d+\]$/);
      expect(r.fds['4']).toMatch(/^socket:\[\d+\]$/);
      expect(Object.keys(r.env).sort()).toEqual(['FOLK_CONTROL_FD', 'FOLK_MAX_FRAME', 'FOLK_RUNTIME', 'FOLK_TASK_FD', 'PATH']);
    } finally {
      await worker.stop();
    }
  });

  it('serves a worker written against Folk\\Worker, the deprecated name of Folk\\WorkerConnection', async () => {
    const code = String.raw`require $argv[1];
      if ((new ReflectionClass('Folk\Worker'))->getName() !== 'Folk\WorkerConnection') exit(9);
      Folk\Worker::fromEnv()->serve(fn (string $payload) => "old name: $payload");`;
    const worker = spawnWorker({ script: '-r', args: [code, PHP_WORKER_LIBRARY] });
    try {
      expect((await worker.request('hi')).toString()).toBe('old name: hi');
    } finally {
      expect((await worker.stop()).code).toBe(0);
    }
  });

  it('passes runtime, args, cwd and extra environment through', async () => {
    const worker = spawnWorker({ script: fixture('inspect.php'), runtime: 'custom', args: ['x'], cwd: '/tmp', env: { ...process.env, EXTRA: 'yes' } });
    try {
      const r = await report(worker);
      expect(r.env['FOLK_RUNTIME']).toBe('custom');
      expect(r.env['EXTRA']).toBe('yes');
      expect(r.argv).toEqual([fixture('inspect.php'), 'x']);
      expect(r.cwd).toBe('/tmp');
    } finally {
      await worker.stop();
    }
  });

  it("gives execArgv to the command before the script: php's own options", async () => {
    const worker = spawnWorker({ script: fixture('inspect.php'), execArgv: ['-d', 'precision=9'], args: ['x'] });
    try {
      const r = await report(worker);
      expect(r.ini).toEqual({ precision: '9' });
      expect(r.argv).toEqual([fixture('inspect.php'), 'x']);
    } finally {
      await worker.stop();
    }
  });

  it('completes the ready handshake with the worker pid', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    const emitted = once<[ReadyMessage]>(worker, 'ready');
    try {
      const ready = await worker.ready;
      expect(ready).toMatchObject({ type: 'ready', pid: worker.pid, protocol: 1, runtime: 'pipe', lang: 'php' });
      expect(ready.version).toMatch(/^8\./);
      expect((await emitted)[0]).toBe(ready);
      // The handles a supervisor works with: a pidfd for this very process, the task Duplex.
      // (By name: vitest loads its own copy of @folk/pidfd, so instanceof cannot match.)
      expect(worker.pidfd.constructor.name).toBe('PidFd');
      expect(worker.pidfd.pid).toBe(worker.pid);
      expect(readlinkSync(`/proc/self/fd/${worker.pidfd.fd}`)).toBe('anon_inode:[pidfd]');
      expect(worker.task).toBeInstanceOf(Duplex);
    } finally {
      await worker.stop();
    }
    expect(worker.pidfd.fd).toBe(-1); // closed once reaped
  });

  it('serves 10,000 tasks in order on one worker', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    try {
      const answers: Promise<Buffer>[] = [];
      for (let i = 0; i < 10_000; i++) answers.push(worker.request(`task ${i}`));
      const got = await Promise.all(answers);
      got.forEach((b, i) => {
        if (b.toString() !== `task ${i}`) throw new Error(`task ${i} answered ${b.toString()}`);
      });
      expect(got).toHaveLength(10_000);
    } finally {
      await worker.stop();
    }
  });

  it('answers kept by the caller stay as they came while later answers are read', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    try {
      const kept: Buffer[] = [];
      for (let i = 0; i < 50; i++) kept.push(await worker.request(`answer ${i} `.repeat(i + 1)));
      kept.push(...(await Promise.all(Array.from({ length: 50 }, (_, i) => worker.request(Buffer.alloc(1000 * (i + 1), i))))));
      kept.forEach((b, i) => {
        const expected = i < 50 ? Buffer.from(`answer ${i} `.repeat(i + 1)) : Buffer.alloc(1000 * (i - 49), i - 50);
        if (!b.equals(expected)) throw new Error(`answer ${i} changed after it was delivered`);
      });
    } finally {
      await worker.stop();
    }
  });

  it('a PHP worker waits for its next task longer than default_socket_timeout', async () => {
    const worker = spawnWorker({ script: fixture('idle-timeout.php') });
    try {
      await worker.ready;
      expect((await worker.request('first')).toString()).toBe('first');
      await new Promise((resolve) => setTimeout(resolve, 2500)); // idle past its 1 s timeout
      expect((await worker.request('after a long wait')).toString()).toBe('after a long wait');
      expect(worker.hasExited).toBe(false);
    } finally {
      await worker.stop();
    }
  });

  it('carries every byte value and an 8 MiB payload unchanged, both ways', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    try {
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      expect(await worker.request(all)).toEqual(all);
      expect(await worker.request(Buffer.alloc(0))).toEqual(Buffer.alloc(0));
      const big = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
      const back = await worker.request(big);
      expect(back.length).toBe(big.length);
      expect(back.equals(big)).toBe(true);
      expect((await worker.request('still here')).toString()).toBe('still here');
    } finally {
      await worker.stop();
    }
  });

  it('refuses an oversize task before sending it, and the worker goes on', async () => {
    const worker = spawnWorker({ script: fixture('echo.php'), maxFrame: 4096 });
    try {
      const err = await errorOf(worker.request(Buffer.alloc(4097)));
      expect(err).toBeInstanceOf(WorkerError);
      expect(err.code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect(err.message).toMatch(/4097 bytes exceeds the maximum frame size of 4096 bytes; nothing was sent/);
      expect((await worker.request(Buffer.alloc(4096, 1))).length).toBe(4096);
    } finally {
      await worker.stop();
    }
  });

  it.each(LIBRARIES)('the %s library refuses an oversize request frame cleanly: error answer, stream in sync, no crash', async (_lang, options) => {
    const worker = spawnWorker({ ...options, maxFrame: 4096 });
    try {
      await worker.ready;
      // Bypass request()'s own check: write a 100 KiB frame by hand, and a
      // request after it, whose answer comes after the error frame.
      const hand = byHand(worker);
      hand.write(header(1, 4242, 100_000), Buffer.alloc(100_000, 9), header(1, 4243, 10), Buffer.from('echo:after'));
      const [answer, after] = await hand.next(2);
      expect([answer!.type, answer!.id]).toEqual([3 /* ERROR */, 4242]);
      expect(JSON.parse(answer!.payload.toString())).toEqual({
        code: 'FRAME_TOO_LARGE',
        message: expect.stringContaining('100000 bytes exceeds the maximum frame size of 4096'),
      });
      expect([after!.type, after!.id, after!.payload.toString()]).toEqual([2 /* RESPONSE */, 4243, 'after']);
      expect(worker.hasExited).toBe(false);
    } finally {
      await worker.stop();
    }
  });

  it.each(LIBRARIES)('the %s library answers an oversize response with FRAME_TOO_LARGE instead of sending it', async (_lang, options) => {
    const worker = spawnWorker({ ...options, maxFrame: 4096 });
    try {
      const err = await errorOf(worker.request('big:5000'));
      expect(err.code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect(err.workerCode).toBe('FRAME_TOO_LARGE');
      expect(err.message).toMatch(/response of 5000 bytes exceeds the maximum frame size of 4096/);
      expect((await worker.request('echo:ok')).toString()).toBe('ok');
    } finally {
      await worker.stop();
    }
  });

  it.each(LIBRARIES)('the %s library cuts a handler error too long for a frame, keeping the error code readable', async (_lang, options) => {
    const worker = spawnWorker({ ...options, maxFrame: 4096 });
    try {
      const frames = rawFrames(worker);
      const err = await errorOf(worker.request('throwbig:10000'));
      expect(err.code).toBe('ERR_WORKER_TASK');
      expect(err.workerCode).toBe('HANDLER_ERROR');
      expect(err.message).toMatch(/mmmm\.\.\. \(cut to fit the maximum frame size\)$/);
      expect(frames[0]!.payload.length).toBeLessThanOrEqual(4096);
      expect((await worker.request('echo:ok')).toString()).toBe('ok');
    } finally {
      await worker.stop();
    }
  });

  it.each(LIBRARIES)('the %s library answers a frame a worker does not accept with BAD_FRAME and goes on', async (_lang, options) => {
    const worker = spawnWorker(options);
    try {
      await worker.ready;
      const hand = byHand(worker);
      // A RESPONSE sent to the worker, and a type this version does not define; then a request.
      hand.write(header(2, 7, 3), Buffer.from('abc'), header(9, 8, 0), header(1, 9, 10), Buffer.from('echo:after'));
      const frames = await hand.next(3);
      expect(frames.slice(0, 2).map((f) => [f.type, f.id, JSON.parse(f.payload.toString()).code])).toEqual([
        [3, 7, 'BAD_FRAME'],
        [3, 8, 'BAD_FRAME'],
      ]);
      expect(JSON.parse(frames[1]!.payload.toString()).message).toContain('got type 9');
      expect([frames[2]!.type, frames[2]!.id, frames[2]!.payload.toString()]).toEqual([2, 9, 'after']);
    } finally {
      await worker.stop();
    }
  });

  it.each(LIBRARIES)('a %s worker sent something that is not the protocol reports it as fatal and exits 76 (EX_PROTOCOL)', async (_lang, options) => {
    const worker = spawnWorker(options);
    await worker.ready;
    const reported = once<[string, boolean]>(worker, 'workerError');
    worker.task.write('GET / HTTP/1.1\r\n\r\n');
    const [message, fatal] = await reported;
    expect(message).toMatch(/task frame with protocol version 71/);
    expect(fatal).toBe(true);
    expect((await worker.exited).code).toBe(76);
    await worker.stop();
  });

  it('the supervisor discards an oversize response without buffering it and stays in sync', async () => {
    const worker = spawnWorker({ script: fixture('hostile.php'), maxFrame: 4096 });
    try {
      // hostile.php knows no control messages; stop() will need SIGTERM, so not for long.
      const err = await errorOf(worker.request('over'));
      expect(err.code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
      expect(err.message).toMatch(/answered with 4097 bytes, over the maximum frame size of 4096 bytes; the response was discarded/);
      expect((await worker.request('pid')).toString()).toBe(String(worker.pid));
    } finally {
      await worker.stop({ timeout: 0 });
    }
  });

  it('kills a worker that answers with something other than the protocol', async () => {
    const worker = spawnWorker({ script: fixture('garbage.php') });
    const err = await errorOf(worker.request('x'));
    expect(err.code).toBe('ERR_WORKER_PROTOCOL');
    expect(err.message).toMatch(/broke the task protocol: task frame with protocol version 72/);
    expect((await worker.exited).signal).toBe('SIGKILL');
    expect((await errorOf(worker.request('y'))).code).toBe('ERR_WORKER_PROTOCOL');
    await worker.stop();
  });

  it('turns a handler exception into a task error and keeps serving', async () => {
    const worker = spawnWorker({ script: fixture('tasks.php') });
    try {
      const err = await errorOf(worker.request('throw:no such user'));
      expect(err.code).toBe('ERR_WORKER_TASK');
      expect(err.workerCode).toBe('HANDLER_ERROR');
      expect(err.message).toContain('RuntimeException: no such user');
      expect((await worker.request('echo:fine')).toString()).toBe('fine');
    } finally {
      await worker.stop();
    }
  });

  it('rejects the pending task when the worker is killed mid-task, and reaps it', async () => {
    const worker = spawnWorker({ script: fixture('tasks.php') });
    const holding = once<[Buffer]>(worker.stdout, 'data');
    const pending = worker.request('hold:60000');
    const second = worker.request('echo:queued behind it');
    // The handler says so on stdout once it runs: the kill lands mid-task.
    expect((await holding)[0].toString()).toBe('holding\n');
    worker.kill('SIGKILL');
    const err = await errorOf(pending);
    expect(err.code).toBe('ERR_WORKER_EXITED');
    expect(err.exit).toEqual({ code: null, signal: 'SIGKILL' });
    expect(err.message).toMatch(new RegExp(`worker pid ${worker.pid} exited \\(signal SIGKILL\\) before answering`));
    expect((await errorOf(second)).code).toBe('ERR_WORKER_EXITED');
    const info = await worker.exited;
    expect(info.signal).toBe('SIGKILL');
    await worker.stop();
    expect(processExists(worker.pid)).toBe(false);
  });

  it('reports a worker that dies on its own (exit code) to pending requests', async () => {
    const worker = spawnWorker({ script: fixture('tasks.php') });
    const err = await errorOf(worker.request('exit:3'));
    expect(err.exit).toEqual({ code: 3, signal: null });
    expect((await worker.exited).code).toBe(3);
    await worker.stop();
  });

  it('passes a listening socket over the control channel and the PHP worker accepts on it', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const fd = serverFd(server);
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toMatch(/^socket:\[\d+\]$/);
    const worker = spawnWorker({ script: fixture('accept.php') });
    try {
      await worker.ready;
      await worker.control.sendFds([fd], { tag: 'listen', meta: { port } });
      // The worker holds its own copy of the listening socket now. Closing
      // ours stops Node from accepting on it too; the socket stays open
      // (and listening) through the worker's fd.
      await new Promise((resolve) => server.close(resolve));
      const greeting = await greetingFrom(port);
      expect(greeting).toBe(`hello client from php pid ${worker.pid}\n`);
      expect((await worker.request('still serving')).toString()).toBe('still serving');
    } finally {
      if (server.listening) server.close();
      await worker.stop();
    }
  });

  it('passes a listening socket to a Node worker (onFds), which accepts on it', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const worker = spawnWorker({ command: process.execPath, script: fixture('accept-node.cjs') });
    try {
      await worker.ready;
      await worker.control.sendFds([serverFd(server)], { tag: 'listen' });
      await new Promise((resolve) => server.close(resolve));
      const greeting = await greetingFrom(port);
      expect(greeting).toBe(`hello client from node pid ${worker.pid}\n`);
      expect((await worker.request('still serving')).toString()).toBe('still serving');
    } finally {
      if (server.listening) server.close();
      await worker.stop();
    }
  });

  it('fds sent while a PHP worker waits in receive() reach its onFds() handler (through the WAKE frame), a file as a stream and a socket as a Socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'folk-onfds-'));
    const file = openSync(join(dir, 'out.txt'), 'w');
    const [mine, theirs] = socketpair('stream');
    const worker = spawnWorker({ script: fixture('onfds.php') });
    try {
      await worker.ready;
      // The worker is blocked reading fd 3 now; nothing but the WAKE frame tells it to look at fd 4.
      await worker.control.sendFds([file], { tag: 'log', meta: { level: 'info' } });
      await worker.control.sendFds([theirs], { tag: 'peer' });
      const got = JSON.parse((await worker.request('got')).toString());
      expect(got).toEqual([
        { tag: 'log', meta: { level: 'info' }, kinds: ['stream'] },
        { tag: 'peer', meta: null, kinds: ['Socket'] },
      ]);
      expect((await worker.request('write:through the fd')).toString()).toBe('written');
      expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('through the fd');
    } finally {
      await worker.stop();
      closeSync(file);
      closeSync(mine);
      closeSync(theirs);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serverFd() refuses what is not a listening net.Server, with a clear error', async () => {
    expect(() => serverFd({} as never)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"server" argument must be an instance of net.Server') }),
    );
    const server = net.createServer();
    expect(() => serverFd(server)).toThrow(expect.objectContaining({ code: 'ERR_SERVER_NOT_RUNNING' }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const fd = serverFd(server);
    // A Node.js whose handle has no fd (the private field is gone or -1) gets an explanation, not undefined.
    const handle = (server as unknown as { _handle: { fd: number } })._handle;
    const unexposed = Object.create(net.Server.prototype, { listening: { value: true }, _handle: { value: { fd: -1 } } }) as net.Server;
    expect(() => serverFd(unexposed)).toThrow(expect.objectContaining({ code: 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM' }));
    expect(handle.fd).toBe(fd);
    await new Promise((resolve) => server.close(resolve));
    expect(() => serverFd(server)).toThrow(expect.objectContaining({ code: 'ERR_SERVER_NOT_RUNNING' }));
    // A Unix-socket server has one too.
    const dir = mkdtempSync(join(tmpdir(), 'folk-server-fd-'));
    const unix = net.createServer();
    try {
      await new Promise<void>((resolve) => unix.listen(join(dir, 's'), resolve));
      expect(readlinkSync(`/proc/self/fd/${serverFd(unix)}`)).toMatch(/^socket:\[\d+\]$/);
    } finally {
      await new Promise((resolve) => unix.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('control.send validates messages and sendFds needs fds', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    try {
      await expect(worker.control.send({} as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      await expect(worker.control.send({ type: 'x', pad: 'p'.repeat(70_000) })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
      await expect(worker.control.sendFds([])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      // Every bad argument rejects (none throws), and nothing reaches the worker.
      const circular: { type: string; self?: unknown } = { type: 'x' };
      circular.self = circular;
      await expect(worker.control.send(circular)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      await expect(worker.control.send({ type: 'x', n: 1n })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
      await expect(worker.control.send({ type: 'x' }, [-1])).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      await expect(worker.control.send({ type: 'x' }, 'fd' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      await expect(worker.control.sendFds(['0'] as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      await expect(worker.control.sendFds([0], 5 as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      await expect(worker.control.sendFds([0], { tag: 7 as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      // Unknown message types are ignored by the worker, which goes on serving.
      await worker.control.send({ type: 'something-new' });
      expect((await worker.request('ok')).toString()).toBe('ok');
    } finally {
      await worker.stop();
    }
  });

  it('a detached payload is refused naming it, nothing sent and nothing left pending; an oversize control message names "message"', async () => {
    const worker = spawnWorker({ command: process.execPath, script: fixture('echo-node.cjs') });
    try {
      // Each view is made first, then its buffer transferred away.
      const detached = <T>(view: (buffer: ArrayBuffer) => T): T => {
        const buffer = new ArrayBuffer(8);
        const made = view(buffer);
        structuredClone(buffer, { transfer: [buffer] });
        return made;
      };
      const payloads = [
        detached((b) => new Uint8Array(b)),
        detached((b) => new DataView(b)),
        detached((b) => b),
        detached((b) => new Float64Array(b)),
      ];
      for (const payload of payloads) {
        const err = await worker.request(payload as never).catch((e: NodeJS.ErrnoException) => e);
        expect(err).toBeInstanceOf(TypeError);
        expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"payload"') });
      }
      expect(worker.pendingRequests).toBe(0);
      expect((await worker.request('still fine')).toString()).toBe('still fine');
      const big = await worker.control.send({ type: 'x', pad: 'p'.repeat(70_000) }).catch((e: Error) => e);
      expect(big).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining('"message"') });
    } finally {
      await worker.stop();
    }
  });

  it('spawnWorker() gives a WorkerHandle, which the deprecated name Worker still names', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    try {
      expect(worker).toBeInstanceOf(WorkerHandle);
      expect(Worker).toBe(WorkerHandle);
      expect(worker).toBeInstanceOf(Worker);
    } finally {
      await worker.stop();
    }
  });

  it.each([
    ['WorkerHandle', () => new (WorkerHandle as unknown as new (...a: unknown[]) => unknown)({}, {}, 1024)],
    ['Worker', () => new (Worker as unknown as new (...a: unknown[]) => unknown)({}, {}, {}, 1024)],
    ['ControlChannel', () => new (ControlChannel as unknown as new (...a: unknown[]) => unknown)({}, () => {})],
  ])('new %s() outside spawnWorker is ERR_ILLEGAL_CONSTRUCTOR', (_name, make) => {
    expect(make).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_ILLEGAL_CONSTRUCTOR' }));
  });

  it('surfaces error reports from the worker as events', async () => {
    const worker = spawnWorker({ script: fixture('tasks.php') });
    try {
      const reported = once<[string, boolean]>(worker, 'workerError');
      expect((await worker.request('report')).toString()).toBe('reported');
      expect(await reported).toEqual(['something the supervisor should know', false]);
    } finally {
      await worker.stop();
    }
  });

  it.each([
    ['PHP', { script: fixture('tasks.php') }, 'shout:100000'],
    ['Node', { command: process.execPath, script: fixture('shout-node.cjs') }, '100000'],
  ])('a %s error report longer than a control datagram is cut short, and the control channel survives it', async (_lang, options, task) => {
    const worker = spawnWorker(options);
    const reports: string[] = [];
    worker.on('workerError', (message: string) => reports.push(message));
    expect((await worker.request(task)).toString()).toBe('reported');
    // A graceful stop needs the control socket: it is how `stop` reaches the worker.
    const exit = await worker.stop({ timeout: 3000 });
    expect([exit.code, exit.signal]).toEqual([0, null]);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatch(/^e{1000,}/);
    expect(Buffer.byteLength(reports[0]!)).toBeLessThan(65536);
  });

  it('stop() asks over control, the worker exits 0, and nothing is left: no zombie, no fd', async () => {
    const before = openFds();
    const workers = [spawnWorker({ script: fixture('echo.php') }), spawnWorker({ script: fixture('echo.php') })];
    await Promise.all(workers.map((w) => w.request('x')));
    const infos = await Promise.all(workers.map((w) => w.stop()));
    expect(infos.map((i) => [i.code, i.signal])).toEqual([
      [0, null],
      [0, null],
    ]);
    for (const w of workers) expect(processExists(w.pid)).toBe(false);
    expect(zombieChildren()).toEqual([]);
    expect(openFds()).toEqual(before);
  });

  it.each([
    ['PHP', { script: fixture('grandchild.php') }, 'php'],
    ['Node', { command: process.execPath, script: fixture('grandchild-node.cjs') }, 'node'],
  ])(
    'stop() of a %s worker whose background child still holds its stdout: resolves once the worker is gone, with its last words read and no fd left',
    async (_lang, options, lang) => {
      const before = openFds();
      const worker = spawnWorker(options);
      let out = '';
      worker.stdout.on('data', (d: Buffer) => (out += d.toString()));
      // The worker starts `sleep 600` with its own stdout, then leaves it behind.
      const orphan = Number((await worker.request('600')).toString());
      try {
        expect(processExists(orphan)).toBe(true);
        const info = await worker.stop();
        expect([info.code, info.signal]).toEqual([0, null]);
        // What the worker wrote on its way out arrived; then our end was closed
        // although the orphan (still running) holds the pipe's other end.
        expect(out).toBe(`${lang} worker ${worker.pid} exiting\n`);
        expect(worker.stdout.closed).toBe(true);
        expect(processExists(orphan)).toBe(true);
        expect(openFds()).toEqual(before);
        expect(zombieChildren()).toEqual([]);
      } finally {
        process.kill(orphan, 'SIGKILL');
      }
    },
  );

  it('request() after stop() or close() is refused with ERR_WORKER_STOPPED, nothing sent', async () => {
    const a = spawnWorker({ script: fixture('echo.php') });
    const b = spawnWorker({ script: fixture('echo.php') });
    await Promise.all([a.ready, b.ready]);
    const stopped = a.stop();
    b.close();
    for (const w of [a, b]) {
      const err = await errorOf(w.request('late'));
      expect(err).toBeInstanceOf(WorkerError);
      expect(err.code).toBe('ERR_WORKER_STOPPED');
      expect(err.message).toBe(`worker pid ${w.pid} is stopped (stop() or close() was called); nothing was sent`);
    }
    expect((await stopped).code).toBe(0);
    expect((await b.exited).signal).toBe('SIGKILL');
    expect((await errorOf(a.request('later still'))).code).toBe('ERR_WORKER_STOPPED');
    await b.stop();
  });

  it('stop() escalates to SIGTERM for a worker that is busy past the timeout', async () => {
    const worker = spawnWorker({ script: fixture('tasks.php') });
    await worker.ready;
    const pending = worker.request('sleep:60000');
    const info = await worker.stop({ timeout: 50 });
    expect(info.signal).toBe('SIGTERM');
    expect((await errorOf(pending)).code).toBe('ERR_WORKER_EXITED');
  });

  it('stop() escalates to SIGKILL for a worker that ignores stop and SIGTERM', async () => {
    const worker = spawnWorker({ command: process.execPath, script: fixture('tasks-node.cjs') });
    await worker.ready;
    const said = once<[Buffer]>(worker.stdout, 'data');
    const stuck = worker.request('stubborn');
    // The handler says so once SIGTERM is ignored; it never answers.
    expect((await said)[0].toString()).toBe('stubborn\n');
    const info = await worker.stop({ timeout: 50, killTimeout: 50 });
    expect([info.code, info.signal]).toEqual([null, 'SIGKILL']);
    expect((await errorOf(stuck)).code).toBe('ERR_WORKER_EXITED');
  });

  it('kill() sends SIGTERM by default through the pidfd, does nothing once the worker has exited, and names a bad signal', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    await worker.ready;
    expect(() => worker.kill('SIGNOPE' as never)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_SIGNAL' }));
    worker.kill();
    expect((await worker.exited).signal).toBe('SIGTERM');
    expect(() => worker.kill('SIGKILL')).not.toThrow();
    expect(worker.hasExited).toBe(true);
    await worker.stop();
  });

  it('stop() with bad options rejects and leaves the worker running', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    try {
      await expect(worker.stop({ timeout: -1 })).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      await expect(worker.stop({ killTimeout: 2 ** 31 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
      await expect(worker.stop('soon' as never)).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      expect((await worker.request('still here')).toString()).toBe('still here');
    } finally {
      expect((await worker.stop()).code).toBe(0);
    }
  });

  it('close() kills the worker at once; it is still reaped and every fd released', async () => {
    const before = openFds();
    const worker = spawnWorker({ script: fixture('tasks.php') });
    const pending = worker.request('sleep:60000');
    worker.close();
    expect((await worker.exited).signal).toBe('SIGKILL');
    expect((await errorOf(pending)).code).toBe('ERR_WORKER_EXITED');
    await worker.stop(); // resolves once stdout is closed too
    expect(processExists(worker.pid)).toBe(false);
    expect(openFds()).toEqual(before);
  });

  it('a worker that exits before saying ready rejects ready', async () => {
    const worker = spawnWorker({ script: fixture('does-not-exist.php') });
    const err = await errorOf(worker.ready);
    expect(err.code).toBe('ERR_WORKER_EXITED');
    expect((await worker.exited).code).not.toBe(0);
    await worker.stop();
  });

  it('throws the spawn error for a missing program and leaks no fd', () => {
    const before = openFds();
    expect(() => spawnWorker({ command: 'no-such-php-binary', script: 'x.php' })).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'spawn' }),
    );
    expect(openFds()).toEqual(before);
  });

  it('readRss() reads a live process\'s VmRSS in bytes, null once it is gone, and refuses what is no pid', async () => {
    const worker = spawnWorker({ script: fixture('echo.php') });
    await worker.ready;
    const status = readFileSync(`/proc/${worker.pid}/status`, 'utf8');
    const rss = readRss(worker.pid)!;
    // php-cli resident: megabytes, close to what status said a moment before.
    expect(rss % 1024).toBe(0);
    expect(rss).toBeGreaterThan(1024 * 1024);
    expect(Math.abs(rss - Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) * 1024)).toBeLessThan(16 * 1024 * 1024);
    await worker.stop();
    expect(readRss(worker.pid)).toBeNull();
    expect(() => readRss('1' as never)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => readRss(0)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => readRss(1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('validates its arguments', () => {
    expect(() => spawnWorker(undefined as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => spawnWorker({} as never)).toThrow(/options\.script/);
    expect(() => spawnWorker({ script: 'x', args: [1] as never })).toThrow(/options\.args/);
    expect(() => spawnWorker({ script: 'x', maxFrame: 10 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => spawnWorker({ script: 'x\0y' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    // Named as the caller wrote them, not as the spawn underneath sees them
    // (where the script is args[0] and the command is "file").
    expect(() => spawnWorker({ script: 'x', args: ['a', 'b\0c'] })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"options.args[1]"') }),
    );
    expect(() => spawnWorker({ script: 'x', args: [, 'a'] as string[] })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"options.args[0]"') }),
    );
    expect(() => spawnWorker({ script: 'x', command: '' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"options.command"') }),
    );
  });
});

describe('a worker started outside the pattern', () => {
  it.each([
    ['PHP', 'php', fixture('echo.php'), 'FOLK_TASK_FD and FOLK_CONTROL_FD are not set'],
    ['Node', process.execPath, fixture('echo-node.cjs'), 'FOLK_TASK_FD is not set'],
  ])('a %s worker without the FOLK_* environment exits 78 (EX_CONFIG) and says why', (_lang, command, script, why) => {
    const r = spawnSync(command, [script], { env: { PATH: process.env['PATH'] }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    expect(r.status).toBe(78);
    expect(r.stderr).toBe(`folk worker: ${why}: start this script with @folk/worker-spawn\n`);
  });

  it.each([
    ['PHP', 'php', fixture('echo.php')],
    ['Node', process.execPath, fixture('echo-node.cjs')],
  ])('a %s worker whose fd 3 is not an open socket exits 78 (EX_CONFIG) and says why', (_lang, command, script) => {
    const env = { PATH: process.env['PATH'], FOLK_TASK_FD: '3', FOLK_CONTROL_FD: '4' };
    const file = openSync('/dev/null', 'r');
    try {
      // Nothing open at 3 and 4; then a file there.
      for (const extra of [[], [file, file]]) {
        const r = spawnSync(command, [script], { env, stdio: ['ignore', 'ignore', 'pipe', ...extra], encoding: 'utf8' });
        expect(r.status).toBe(78);
        expect(r.stderr).toBe('folk worker: fd 3 is not an open socket: start this script with @folk/worker-spawn\n');
      }
    } finally {
      closeSync(file);
    }
  });

  // Sockets, but not the pattern's: each is a configuration error (78, why on
  // stderr), not a stack trace and exit 1 from a constructor deep inside.
  it.each([
    ['FOLK_MAX_FRAME over 2^32-1', { FOLK_MAX_FRAME: '99999999999' }, 'stream', 'seqpacket', 'FOLK_MAX_FRAME is not a frame size'],
    ['FOLK_MAX_FRAME 0', { FOLK_MAX_FRAME: '0' }, 'stream', 'seqpacket', 'FOLK_MAX_FRAME is not a frame size'],
    ['one fd for both', { FOLK_CONTROL_FD: '3' }, 'stream', 'seqpacket', 'FOLK_TASK_FD and FOLK_CONTROL_FD name the same fd'],
    ['a seqpacket task socket', {}, 'seqpacket', 'seqpacket', 'fd 3 (FOLK_TASK_FD) is not a stream socket'],
    ['a datagram control socket', {}, 'stream', 'dgram', 'fd 4 (FOLK_CONTROL_FD) is not a seqpacket socket'],
    ['a stream control socket', {}, 'stream', 'stream', 'fd 4 (FOLK_CONTROL_FD) is not a seqpacket socket'],
  ] as const)('a Node worker given %s exits 78 (EX_CONFIG) and says why', async (_name, extra, task, control, why) => {
    const [t, tChild] = socketpair(task);
    const [c, cChild] = socketpair(control);
    try {
      const child = spawn(process.execPath, [fixture('echo-node.cjs')], {
        fds: { 3: tChild, 4: cChild },
        env: { PATH: process.env['PATH'], FOLK_TASK_FD: '3', FOLK_CONTROL_FD: '4', ...extra },
        stdin: 'ignore',
        stdout: 'ignore',
        stderr: 'pipe',
      });
      let stderr = '';
      const closed = once(child.stderr!, 'close');
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const exit = await child.wait();
      child.pidfd.close();
      await closed;
      expect(exit.code).toBe(78);
      expect(stderr.startsWith(`folk worker: ${why}`)).toBe(true);
      expect(stderr.endsWith(': start this script with @folk/worker-spawn\n')).toBe(true);
      expect(stderr.split('\n')).toHaveLength(2); // one line, no stack trace
    } finally {
      for (const fd of [t, tChild, c, cChild]) closeSync(fd);
    }
  });
});

describe('spawnWorker with the Node worker library', () => {
  it.each([
    ['serve(42)', 'The "handler" argument must be of type function. Received type number (42)'],
    ['serve(() => "", { onFds: true })', 'The "options.onFds" property must be of type function. Received type boolean (true)'],
    ['serve(() => "", "x")', 'The "options" argument must be of type object. Received type string (\'x\')'],
  ])('%s throws a TypeError naming the argument, before touching fds 3 and 4', (call, message) => {
    // Through the package's export, as a user requires it (the package refers to itself by name).
    const code = `const { serve } = require('@folk/worker-spawn/worker');
try { ${call}; } catch (e) { console.log(JSON.stringify([e.name, e.code, e.message])); }`;
    const r = spawnSync(process.execPath, ['-e', code], { cwd: join(__dirname, '..'), env: { PATH: process.env['PATH'] }, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(['TypeError', 'ERR_INVALID_ARG_TYPE', message]);
  });

  it('gives a Node worker the sockets at 3 and 4 and the FOLK_* environment', async () => {
    const worker = spawnWorker({ command: process.execPath, script: fixture('inspect-node.cjs') });
    try {
      const r = await report(worker);
      expect(r.fds['0']).toBe('/dev/null');
      expect(r.fds['3']).toMatch(/^socket:/);
      expect(r.fds['4']).toMatch(/^socket:/);
      expect(r.env).toEqual({ FOLK_RUNTIME: 'pipe', FOLK_TASK_FD: '3', FOLK_CONTROL_FD: '4', FOLK_MAX_FRAME: String(16 * 1024 * 1024) });
      expect(await worker.ready).toMatchObject({ pid: worker.pid, lang: 'node' });
    } finally {
      await worker.stop();
    }
  });

  it('a handler that throws a value nothing can be read from, or reports one, gets an error answer; the worker goes on', async () => {
    const worker = spawnWorker({ command: process.execPath, script: fixture('tasks-node.cjs') });
    try {
      const reports: Array<[string, boolean]> = [];
      worker.on('workerError', (message: string, fatal: boolean) => reports.push([message, fatal]));
      const err = await errorOf(worker.request('throwtrap'));
      expect(err).toMatchObject({ code: 'ERR_WORKER_TASK', workerCode: 'HANDLER_ERROR' });
      expect(err.message).toContain('cannot be described');
      expect((await worker.request('report-null-proto')).toString()).toBe('reported');
      expect((await worker.request('echo:still here')).toString()).toBe('still here');
      expect(reports).toEqual([[expect.stringContaining('cannot be described'), false]]);
      expect(worker.hasExited).toBe(false);
    } finally {
      await worker.stop();
    }
  });

  it('echoes binary and large payloads and exits 0 on stop', async () => {
    const worker = spawnWorker({ command: process.execPath, script: fixture('echo-node.cjs'), maxFrame: 4096 });
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(await worker.request(all)).toEqual(all);
    expect((await errorOf(worker.request(Buffer.alloc(5000)))).code).toBe('ERR_WORKER_FRAME_TOO_LARGE');
    expect((await worker.stop()).code).toBe(0);
  });
});

describe('PHP_WORKER_LIBRARY', () => {
  const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
  const value = (env: NodeJS.ProcessEnv, cwd?: string): string => {
    const r = spawnSync(process.execPath, ['-p', `require(${JSON.stringify(dist)}).PHP_WORKER_LIBRARY`], {
      env: { ...process.env, FOLK_PHP_WORKER_LIBRARY: '', ...env },
      encoding: 'utf8',
      ...(cwd ? { cwd } : {}),
    });
    expect(r.stderr).toBe('');
    return r.stdout.trim();
  };

  it('is the package’s own php/Worker.php', () => {
    const own = fileURLToPath(new URL('../php/Worker.php', import.meta.url));
    expect(value({})).toBe(own);
    expect(PHP_WORKER_LIBRARY).toBe(own);
    expect(readFileSync(own, 'utf8')).toMatch(/namespace Folk;/);
  });

  it('is what FOLK_PHP_WORKER_LIBRARY names, made absolute (for bundles, which have no package directory)', () => {
    expect(value({ FOLK_PHP_WORKER_LIBRARY: '/srv/app/Worker.php' })).toBe('/srv/app/Worker.php');
    expect(value({ FOLK_PHP_WORKER_LIBRARY: 'lib/Worker.php' }, '/tmp')).toBe('/tmp/lib/Worker.php');
  });
});
