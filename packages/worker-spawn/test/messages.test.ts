// Custom control messages between a pool and its workers: the pool's
// 'message' event and send(), the PHP library's send() and onMessage(),
// and its event-loop calls pollSocket() and poll().
import { closeSync, fstatSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { socketpair } from '@folk/socketpair';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { FrameType, RESERVED_CONTROL_TYPES, encodeFrame, spawnWorker, type ControlMessage, type PoolWorkerInfo, type WorkerPool } from '../lib/index.js';
import { errorOf, fixture, once, openFds, requirePhp, withPool } from './helpers.js';

const messages = fixture('messages.php');
/** A file for the worker to open and send: any will do. */
const file = messages;

beforeAll(() => requirePhp());

type Message = [PoolWorkerInfo, ControlMessage, number[]];

const pidOf = (pool: WorkerPool): number => pool.stats().list.find((w) => w.state === 'idle')!.pid;

/** Everything `socket` sends until it ends. */
function readAll(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
}

/** The next line `socket` sends. */
function nextLine(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (text.includes('\n')) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
  });
}

/**
 * Have the pool's worker run `task(i)`, which makes it say something and
 * exit at once, 20 times, noting the pool's 'exit' and 'crash' in `events`
 * (where the caller notes what the worker says): what `events` should be,
 * what `said(pid, i)` says the worker said, then its exit and crash.
 * `busy`: keep the event loop busy while the worker talks and exits, so
 * that its messages and its exit are all waiting at once when it next looks.
 */
async function sayAndExit(pool: WorkerPool, events: string[], task: (i: number) => string, said: (pid: number, i: number) => string[], busy = false) {
  pool.on('exit', (info: PoolWorkerInfo) => events.push(`${info.pid} exit`));
  pool.on('crash', (info: PoolWorkerInfo) => events.push(`${info.pid} crash`));
  const expected: string[] = [];
  for (let i = 0; i < 20; i++) {
    await pool.ready();
    const pid = pidOf(pool);
    const crashed = once(pool, 'crash');
    const failed = errorOf(pool.run(task(i)));
    const until = busy ? Date.now() + 100 : 0;
    while (Date.now() < until);
    expect((await failed).code).toBe('ERR_WORKER_CRASHED');
    await crashed;
    expected.push(...said(pid, i), `${pid} exit`, `${pid} crash`);
  }
  return expected;
}

describe.each([
  ['spawned', {}],
  ['forked from a prototype', { prototype: { preload: fixture('preload.php') } }],
])('what a pool worker (%s) says just before it exits', (_how, options) => {
  it("reaches the pool before its 'exit' and 'crash': 270 error reports, 20 times in a row", async () => {
    // 270: more than one read of the control socket takes (256 datagrams), fewer than its buffer holds.
    await withPool({ script: messages, ...options }, async (pool) => {
      const events: string[] = [];
      pool.on('workerError', (info: PoolWorkerInfo, message: string) => events.push(`${info.pid} ${message}`));
      const said = (pid: number): string[] => Array.from({ length: 270 }, (_, n) => `${pid} leaving ${n + 1}`);
      const expected = await sayAndExit(pool, events, () => 'report-exit:270', said, true);
      expect(events).toEqual(expected);
    });
  });

  it("reaches the pool before its 'exit' and 'crash': a message sent with send(), 20 times in a row", async () => {
    await withPool({ script: messages, ...options }, async (pool) => {
      const events: string[] = [];
      pool.on('message', (info: PoolWorkerInfo, message: ControlMessage) => events.push(`${info.pid} ${message.type} ${message['n']}`));
      const expected = await sayAndExit(pool, events, (i) => `say-exit:${i}`, (pid, i) => [`${pid} bye ${i}`]);
      expect(events).toEqual(expected);
    });
  });

  it("a message sent right after ready never finds the worker 'starting', nor before its 'ready': 10 workers in a row", async () => {
    // leave.php says ready, sends a message and exits at once: its ready, its
    // message and its end of file are all waiting together.
    await withPool({ script: fixture('leave.php'), backoff: { initial: 0 }, ...options }, async (pool) => {
      const events = new Map<number, string[]>();
      const note = (info: PoolWorkerInfo, what: string) => events.set(info.pid, [...(events.get(info.pid) ?? []), what]);
      pool.on('ready', (info: PoolWorkerInfo) => note(info, 'ready'));
      pool.on('message', (info: PoolWorkerInfo, message: ControlMessage) => note(info, `${message.type} (${info.state})`));
      const pids: number[] = [];
      await new Promise<void>((resolve) =>
        pool.on('crash', (info: PoolWorkerInfo) => {
          if (pids.push(info.pid) === 10) resolve();
        }),
      );
      // Ready and idle; or, when its task socket's end was read before its
      // ready, out of service already ('stopping'), never ready in the pool.
      for (const pid of pids) expect([['ready', 'leaving (idle)'], ['leaving (stopping)']]).toContainEqual(events.get(pid));
    });
  });
});

describe("a worker's send(): the pool's 'message' event", () => {
  it('carries the message, with the pid of the worker that sent it and no fds', async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const got = once<Message>(pool, 'message');
      expect((await pool.run('say:{"type":"hello","list":[1,"two",null],"text":"é/ü"}')).toString()).toBe('said');
      const [info, message, fds] = await got;
      expect(info.pid).toBe(pidOf(pool));
      expect(message).toEqual({ type: 'hello', list: [1, 'two', null], text: 'é/ü' });
      expect(fds).toEqual([]);
    });
  });

  it("with fds (a stream, an fd number, both ends of a socketpair): the listener's, open and usable; closed, none is left", async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const before = openFds();
      const { dev, ino } = statSync(file);
      for (const verb of ['say-file', 'say-int']) {
        const got = once<Message>(pool, 'message');
        await pool.run(`${verb}:${file}`);
        const [, message, fds] = await got;
        expect(message).toEqual({ type: 'file' });
        expect(fds).toHaveLength(1);
        const st = fstatSync(fds[0]!);
        expect({ dev: st.dev, ino: st.ino }).toEqual({ dev, ino });
        closeSync(fds[0]!);
      }
      const got = once<Message>(pool, 'message');
      await pool.run('say-pipe');
      const [, message, fds] = await got;
      expect(message).toEqual({ type: 'pipe' });
      expect(fds).toHaveLength(2);
      closeSync(fds[0]!); // the end the worker wrote into (it closed its own)
      const other = new net.Socket({ fd: fds[1]! });
      expect(await readAll(other)).toBe('through the pair');
      other.destroy();
      await once(other, 'close');
      expect(openFds()).toEqual(before);
    });
  });

  it("with no 'message' listener: the fds are closed, none is left", async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const before = openFds();
      for (let i = 0; i < 5; i++) {
        // The worker reports after the message, on the same socket: when the report is here, so was the message.
        const reported = once(pool, 'workerError');
        await pool.run(`say-file:${file}`);
        await reported;
      }
      expect(openFds()).toEqual(before);
    });
  });

  it('refuses (ValueError, nothing sent) a message with a reserved type, none, or too long', async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const seen: ControlMessage[] = [];
      pool.on('message', (_info: PoolWorkerInfo, message: ControlMessage) => seen.push(message));
      for (const type of RESERVED_CONTROL_TYPES) {
        expect((await pool.run(`refuse:{"type":"${type}"}`)).toString()).toBe(
          `ValueError: Folk\\WorkerConnection::send(): Argument #1 ($message) has type "${type}", which the library uses itself (reserved: ready, error, stop, fds)`,
        );
      }
      expect((await pool.run('refuse:{"kind":"x"}')).toString()).toBe(
        'ValueError: Folk\\WorkerConnection::send(): Argument #1 ($message) must have a non-empty string "type"',
      );
      expect((await pool.run(`refuse:{"type":"big","text":"${'x'.repeat(70_000)}"}`)).toString()).toMatch(
        /^ValueError: Folk\\WorkerConnection::send\(\): Argument #1 \(\$message\) must be at most 65536 bytes as JSON \(one control datagram\); this one is 7\d{4}$/,
      );
      expect((await pool.run('refuse:{"type":"fine"}')).toString()).toBe('sent');
      await pool.run('say:{"type":"after"}');
      // The answer comes on the task socket, the message on the control
      // socket: either may be read first.
      await vi.waitFor(() => expect(seen.map((m) => m.type)).toEqual(['fine', 'after']));
    });
  });
});

describe('pool.send(): a message to one worker (onMessage() in PHP)', () => {
  it('with an fd: the worker gets the message and its own copy of the fd, and writes through it; ours stays open', async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const [ours, theirs] = socketpair('stream');
      await pool.send(pidOf(pool), { type: 'conn', n: 1 }, [theirs]);
      expect(fstatSync(theirs).isSocket()).toBe(true); // still ours, still open
      closeSync(theirs);
      expect(JSON.parse((await pool.run('got')).toString())).toEqual([{ message: { type: 'conn', n: 1 }, kinds: ['Socket'] }]);
      const socket = new net.Socket({ fd: ours });
      const line = nextLine(socket);
      expect((await pool.run('write:hello from php\n')).toString()).toBe('written');
      expect(await line).toBe('hello from php\n');
      socket.destroy();
    });
  });

  it('queues messages in the worker until onMessage() is called, then delivers them in order', async () => {
    await withPool({ script: messages, args: ['late'] }, async (pool) => {
      await pool.ready();
      const pid = pidOf(pool);
      await pool.send(pid, { type: 'one' });
      await pool.send(pid, { type: 'two' });
      expect((await pool.run('got')).toString()).toBe('[]');
      expect((await pool.run('listen')).toString()).toBe('listening');
      expect(JSON.parse((await pool.run('got')).toString())).toEqual([
        { message: { type: 'one' }, kinds: [] },
        { message: { type: 'two' }, kinds: [] },
      ]);
    });
  });

  it('rejects, sending nothing: an unknown pid (ERR_WORKER_NOT_FOUND), a reserved type, a bad pid, a message too long', async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const pid = pidOf(pool);
      const missing = await errorOf(pool.send(process.pid, { type: 'x' }));
      expect(missing.code).toBe('ERR_WORKER_NOT_FOUND');
      expect(missing.pid).toBe(process.pid);
      expect(missing.message).toBe(`no live worker of this pool has pid ${process.pid}; nothing was sent`);
      for (const type of RESERVED_CONTROL_TYPES) {
        const err = await errorOf(pool.send(pid, { type }));
        expect(err).toBeInstanceOf(TypeError);
        expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
        expect(err.message).toBe(`The "message.type" property must not be one of the library's own types (ready, error, stop, fds). Received '${type}'`);
      }
      expect((await errorOf(pool.send(pid, { kind: 'x' } as unknown as ControlMessage))).code).toBe('ERR_INVALID_ARG_TYPE');
      expect((await errorOf(pool.send('1' as unknown as number, { type: 'x' }))).code).toBe('ERR_INVALID_ARG_TYPE');
      expect((await errorOf(pool.send(1.5, { type: 'x' }))).code).toBe('ERR_OUT_OF_RANGE');
      expect((await errorOf(pool.send(pid, { type: 'x', text: 'x'.repeat(70_000) }))).code).toBe('ERR_OUT_OF_RANGE');
      // None of them reached the worker.
      expect((await pool.run('got')).toString()).toBe('[]');
    });
  });

  it('rejects ERR_WORKER_NOT_FOUND for a worker of the pool that has exited', async () => {
    await withPool({ script: messages }, async (pool) => {
      await pool.ready();
      const pid = pidOf(pool);
      const exited = once(pool, 'exit');
      await errorOf(pool.run('say-exit:0'));
      await exited;
      expect((await errorOf(pool.send(pid, { type: 'x' }))).code).toBe('ERR_WORKER_NOT_FOUND');
    });
  });
});

describe('a PHP worker with its own event loop (pollSocket(), poll())', () => {
  it('serves the connections it is handed and its tasks in one socket_select(), and says a last word when stopped', async () => {
    const events: string[] = [];
    let pid = 0;
    const sockets: net.Socket[] = [];
    await withPool({ script: fixture('eventloop.php') }, async (pool) => {
      await pool.ready();
      pid = pidOf(pool);
      pool.on('message', (info: PoolWorkerInfo, message: ControlMessage) => events.push(`${info.pid} ${JSON.stringify(message)}`));
      pool.on('exit', (info: PoolWorkerInfo, exit: { code: number | null }) => events.push(`${info.pid} exit ${exit.code}`));
      expect((await pool.run('ping')).toString()).toBe('pong');
      for (let i = 0; i < 2; i++) {
        const [ours, theirs] = socketpair('stream');
        await pool.send(pid, { type: 'conn' }, [theirs]);
        closeSync(theirs);
        sockets.push(new net.Socket({ fd: ours }));
      }
      for (const [i, socket] of sockets.entries()) {
        const line = nextLine(socket);
        socket.write(`hello ${i}\n`);
        expect(await line).toBe(`HELLO ${i}\n`);
      }
      expect((await pool.run('ping')).toString()).toBe('pong');
      expect((await pool.run('count')).toString()).toBe('2');
      // receive() in the middle of the loop, then poll() again.
      expect((await pool.run('block')).toString()).toBe('blocking');
      expect((await pool.run('next')).toString()).toBe('received next');
      expect((await pool.run('ping')).toString()).toBe('pong');
    });
    for (const socket of sockets) socket.destroy();
    // withPool stopped the pool: the worker's 'bye' came before its exit.
    expect(events).toEqual([`${pid} {"type":"bye","served":2}`, `${pid} exit 0`]);
  });
});

describe("the Node worker library's send() and 'message'", () => {
  const node = { command: process.execPath, script: fixture('messages-node.cjs') };

  it('sends a message of its own to the pool, with an fd the pool then owns; ours closed, none is left', async () => {
    await withPool(node, async (pool) => {
      await pool.ready();
      const before = openFds();
      let got = once<Message>(pool, 'message');
      await pool.run('say:hello');
      let [info, message, fds] = await got;
      expect([info.pid, message, fds]).toEqual([pidOf(pool), { type: 'said', text: 'hello' }, []]);

      got = once<Message>(pool, 'message');
      await pool.run('say-fd');
      [, message, fds] = await got;
      expect(message).toEqual({ type: 'said', text: 'with an fd' });
      expect(fds).toHaveLength(1);
      const socket = new net.Socket({ fd: fds[0]! });
      expect(await readAll(socket)).toBe(`through the socketpair from node ${pidOf(pool)}\n`);
      socket.destroy();
      await once(socket, 'close');
      expect(openFds()).toEqual(before);
    });
  });

  it("refuses (rejects, nothing sent) a reserved type, no type, or over 64 KiB of JSON", async () => {
    await withPool(node, async (pool) => {
      await pool.ready();
      const answer = async (message: unknown) => (await pool.run(`send-bad:${JSON.stringify(message)}`)).toString();
      expect(await answer({ type: 'ready' })).toMatch(/^ERR_INVALID_ARG_VALUE: .*must not be one of the library's own types \(ready, error, stop, fds\)/);
      expect(await answer({ nope: 1 })).toMatch(/^ERR_INVALID_ARG_TYPE: /);
      expect(await answer({ type: 'big', text: 'x'.repeat(70_000) })).toMatch(/^ERR_OUT_OF_RANGE: .*at most 65536 bytes as JSON/);
    });
  });

  it("gets the pool's messages, with their fds, on 'message'; those sent before it listens wait for it, in order", async () => {
    await withPool(node, async (pool) => {
      await pool.ready();
      const pid = pidOf(pool);
      const heard: ControlMessage[] = [];
      pool.on('message', (_info: PoolWorkerInfo, message: ControlMessage) => heard.push(message));
      // Before the worker listens: kept.
      await pool.send(pid, { type: 'first', n: 1 });
      await pool.send(pid, { type: 'second', n: 2 });
      await sleepMs(100);
      expect(heard).toEqual([]);
      await pool.run('listen');
      await vi.waitFor(() => expect(heard).toHaveLength(2));
      // With an fd: the worker writes through its copy; ours stays open.
      const [ours, theirs] = socketpair();
      await pool.send(pid, { type: 'write' }, [theirs]);
      closeSync(theirs);
      const socket = new net.Socket({ fd: ours });
      expect(await nextLine(socket)).toBe(`from node ${pid}\n`);
      socket.destroy();
      await vi.waitFor(() => expect(heard).toHaveLength(3));
      expect(heard).toEqual([
        { type: 'heard', message: { type: 'first', n: 1 }, fds: 0 },
        { type: 'heard', message: { type: 'second', n: 2 }, fds: 0 },
        { type: 'heard', message: { type: 'write' }, fds: 1 },
      ]);
    });
  });
});

describe.each([
  ['PHP', { script: fixture('echo.php') }],
  ['Node', { command: process.execPath, script: fixture('echo-node.cjs') }],
])('%s worker library: a control message from the supervisor that is not an object with a string "type"', (_lib, options) => {
  it('is reported as unreadable (a non-fatal error report) and otherwise ignored: the worker goes on, and stops only on a real stop', async () => {
    const worker = spawnWorker(options);
    try {
      const reports: Array<[string, boolean]> = [];
      worker.on('workerError', (message: string, fatal: boolean) => reports.push([message, fatal]));
      await worker.ready;
      // Sent raw: control.send() refuses all of these. {"type":true} is no "stop".
      const bodies = ['null', '5', '"stop"', '[]', '{"type":true}', '{"type":0}', '{"type":["stop"]}', 'not json'];
      const wake = Buffer.concat(encodeFrame(FrameType.WAKE, 0, Buffer.alloc(0)));
      for (const body of bodies) {
        await worker.control.socket.send(Buffer.from(body));
        worker.task.write(wake); // the PHP library reads fd 4 on the WAKE frame that follows a message
        expect((await worker.request(body)).toString()).toBe(body);
      }
      await vi.waitFor(() => expect(reports).toHaveLength(bodies.length));
      expect(reports).toEqual(bodies.map((body) => [`unreadable control message: ${body}`, false]));
      expect((await worker.request('still here')).toString()).toBe('still here');
      expect((await worker.stop()).code).toBe(0);
    } finally {
      worker.close();
    }
  });
});

const sleepMs = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
