import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { SURVIVED, terminateMidCall } from '@folk/test-support';
import { FRAME_HEADER_BYTES, FdSocket, type FdMessage, SCM_MAX_FD, recvFds, sendFds } from '../lib/index.js';
import {
  DIST,
  O_CLOEXEC,
  enableSocketOptions,
  errorOf,
  fdFlags,
  frame,
  openFds,
  openPidFds,
  python,
  runOutOfFds,
  runWithFd3,
  target,
} from './helpers.js';

/**
 * Messages numbered from `from` (the data is the number), each with `fds`,
 * sent on the non-blocking `fd` until the socket is full: the next number.
 */
function sendUntilFull(fd: number, fds: number[], from: number): number {
  for (let n = from; ; n++) {
    try {
      sendFds(fd, Buffer.from(String(n)), fds);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('EAGAIN');
      return n;
    }
  }
}

/**
 * The numbers of the messages sendUntilFull() sent, as a loop takes them
 * (`first`, the pending pull, then the rest once `peer` is closed), each
 * message's fds closed.
 */
async function numbersToTheEnd(first: Promise<IteratorResult<FdMessage>>, it: AsyncIterator<FdMessage>, peer: number): Promise<number[]> {
  const seen: number[] = [];
  const take = (m: FdMessage) => {
    seen.push(Number(m.data.toString()));
    for (const fd of m.fds) closeSync(fd);
  };
  take((await first).value as FdMessage);
  closeSync(peer);
  for (let r = await it.next(); !r.done; r = await it.next()) take(r.value);
  return seen;
}

/** A few turns of the event loop, for reads to happen. */
async function turns(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

const PKG = fileURLToPath(new URL('..', import.meta.url));
let dir: string;
const files: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'scm-fdsocket-'));
  for (let i = 0; i < 4; i++) {
    const f = join(dir, `file${i}`);
    writeFileSync(f, `file number ${i}`);
    files.push(f);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Kind = 'seqpacket' | 'stream';
const KINDS: Kind[] = ['seqpacket', 'stream'];

function sockets(type: Kind): [FdSocket, FdSocket] {
  const [a, b] = socketpair(type);
  return [new FdSocket(a), new FdSocket(b)];
}

function readText(fd: number): string {
  const buf = Buffer.alloc(256);
  return buf.subarray(0, readSync(fd, buf, 0, 256, 0)).toString();
}

/** Collect n messages (or until end/close) through 'message' events. */
function collect(s: FdSocket, n: number): Promise<FdMessage[]> {
  const got: FdMessage[] = [];
  return new Promise((resolve, reject) => {
    const done = () => {
      s.off('message', onMessage);
      resolve(got);
    };
    const onMessage = (m: FdMessage) => {
      got.push(m);
      if (got.length === n) done();
    };
    s.on('message', onMessage);
    s.once('end', done);
    s.once('error', reject);
  });
}

describe.each(KINDS)('FdSocket on %s', (type) => {
  it('sends data with fds; the other side gets them as a message, close-on-exec', async () => {
    const before = openFds();
    const [a, b] = sockets(type);
    expect(a.type).toBe(type);
    const f = openSync(files[1]!, 'r');
    const got = collect(b, 2);
    await a.send(Buffer.from('first'), [f, f]);
    await a.send(Buffer.from('second'));
    const [m1, m2] = await got;
    expect(m1!.data.toString()).toBe('first');
    expect(m1!.fds).toHaveLength(2);
    for (const fd of m1!.fds) {
      expect(readText(fd)).toBe('file number 1');
      expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);
      closeSync(fd);
    }
    expect(m2).toEqual({ data: Buffer.from('second'), fds: [] });
    closeSync(f);
    a.close();
    b.close();
    await once(b, 'close');
    expect(openFds()).toEqual(before);
  });

  it('for await yields messages in order and ends at the peer’s end of file', async () => {
    const [a, b] = sockets(type);
    const f = openSync(files[2]!, 'r');
    for (let i = 0; i < 5; i++) await a.send(Buffer.from(`m${i}`), i % 2 ? [f] : []);
    a.close();
    const seen: string[] = [];
    for await (const m of b) {
      seen.push(`${m.data.toString()}:${m.fds.length}`);
      for (const fd of m.fds) closeSync(fd);
    }
    expect(seen).toEqual(['m0:0', 'm1:1', 'm2:0', 'm3:1', 'm4:0']);
    expect(b.closed).toBe(true); // ended, and allowHalfOpen is false
    closeSync(f);
  });

  it('next() called again before the last one settled: each call gets its own message, in order', async () => {
    const [a, b] = sockets(type);
    const it = b[Symbol.asyncIterator]();
    const first = [it.next(), it.next(), it.next()];
    for (const m of ['one', 'two', 'three']) await a.send(Buffer.from(m));
    expect((await Promise.all(first)).map((r) => r.value?.data.toString())).toEqual(['one', 'two', 'three']);
    // Waiting at the end of file: every pending call finishes the loop.
    const last = [it.next(), it.next()];
    a.close();
    expect(await Promise.all(last)).toEqual([
      { value: undefined, done: true },
      { value: undefined, done: true },
    ]);
    // Waiting when the socket fails: the first call gets the error, the rest are done.
    const [c, d] = socketpair(type);
    const s = new FdSocket(d, { maxMessageBytes: 4 });
    const it2 = s[Symbol.asyncIterator]();
    const pending = [it2.next(), it2.next()];
    sendFds(c, frame('too long', 0), []);
    closeSync(c);
    const results = await Promise.allSettled(pending);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { code: 'ERR_MESSAGE_TOO_LARGE' } });
    expect(results[1]).toEqual({ status: 'fulfilled', value: { value: undefined, done: true } });
  });

  it('a loop over a socket that already ended or failed finishes at once instead of claiming another is running', async () => {
    const [a, b] = sockets(type);
    await a.send(Buffer.from('only'));
    a.close();
    const seen: string[] = [];
    for await (const m of b) seen.push(m.data.toString());
    for await (const m of b) seen.push(`again: ${m.data.toString()}`);
    expect(seen).toEqual(['only']);
    // Failed: the error goes to the loop that was running; a later loop is just done.
    const [c, d] = socketpair(type);
    const s = new FdSocket(d, { maxMessageBytes: 4 });
    sendFds(c, frame('too long', 0), []);
    closeSync(c);
    await expect(
      (async () => {
        for await (const _ of s) void _;
      })(),
    ).rejects.toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE' });
    for await (const m of s) seen.push(`after error: ${m.data.toString()}`);
    expect(seen).toEqual(['only']);
  });

  it('an empty message with and without fds', async () => {
    const [a, b] = sockets(type);
    const f = openSync(files[0]!, 'r');
    const got = collect(b, 3);
    await a.send(Buffer.alloc(0), [f]);
    await a.send(new Uint8Array(0));
    await a.send(Buffer.from('after'));
    const ms = await got;
    expect(ms.map((m) => [m.data.length, m.fds.length])).toEqual([[0, 1], [0, 0], [5, 0]]);
    closeSync(ms[0]!.fds[0]!);
    closeSync(f);
    a.close();
    b.close();
  });

  it('100,000 messages arrive in order, each with the right fd', async () => {
    const [a, b] = sockets(type);
    const sent = files.map((p) => openSync(p, 'r'));
    const targets = sent.map(target);
    const N = 100_000;
    let next = 0;
    let bad = '';
    const finished = new Promise<void>((resolve) => {
      b.on('message', (m) => {
        const i = m.data.readUInt32LE(0);
        if (i !== next || m.fds.length !== 1 || target(m.fds[0]!) !== targets[i % 4]) {
          bad ||= `message ${next}: got index ${i} with ${m.fds.length} fds`;
        }
        for (const fd of m.fds) closeSync(fd);
        if (++next === N) resolve();
      });
    });
    const data = Buffer.alloc(4);
    for (let i = 0; i < N; i++) {
      data.writeUInt32LE(i, 0);
      await a.send(data, [sent[i % 4]!]);
    }
    await finished;
    expect(bad).toBe('');
    a.close();
    b.close();
    for (const fd of sent) closeSync(fd);
  });

  it('10,000 passes leave /proc/self/fd as it was', async () => {
    const f = openSync(files[3]!, 'r');
    const before = openFds();
    const [a, b] = sockets(type);
    let n = 0;
    const done = new Promise<void>((resolve) =>
      b.on('message', (m) => {
        for (const fd of m.fds) closeSync(fd);
        if (++n === 10_000) resolve();
      }),
    );
    const one = Buffer.from('.');
    for (let i = 0; i < 10_000; i++) await a.send(one, [f]);
    await done;
    a.close();
    b.close();
    await once(b, 'close');
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('on a socket with SO_PASSPIDFD (a pidfd with every message, Linux 6.5+): each message brings only its own fds, and no pidfd is left open', async (ctx) => {
    const before = openFds();
    const [x, y] = socketpair(type);
    if (!enableSocketOptions(y, ['SO_PASSCRED', 'SO_PASSPIDFD'])) {
      for (const fd of [x, y]) closeSync(fd);
      ctx.skip('SO_PASSPIDFD needs Linux 6.5');
    }
    const [a, b] = [new FdSocket(x), new FdSocket(y)];
    const f = openSync(files[1]!, 'r');
    const fdCount = (i: number) => (i % 10 === 0 ? SCM_MAX_FD : i % 3);
    const got = collect(b, 100);
    for (let i = 0; i < 100; i++) await a.send(Buffer.from(`${i}`), Array(fdCount(i)).fill(f));
    const ms = await got;
    expect(ms.map((m) => m.fds.length)).toEqual([...Array(100).keys()].map(fdCount));
    expect(new Set(ms.flatMap((m) => m.fds.map(target)))).toEqual(new Set([files[1]]));
    for (const m of ms) for (const fd of m.fds) closeSync(fd);
    expect(openPidFds()).toEqual([]);
    a.close();
    b.close();
    await once(b, 'close');
    closeSync(f);
    expect(openFds()).toEqual(before);
  });

  it('backpressure: sends queue behind a full socket and all resolve in order', async () => {
    const [a, b] = sockets(type);
    const f = openSync(files[0]!, 'r');
    const big = Buffer.alloc(32 * 1024, 1);
    const promises: Promise<void>[] = [];
    const order: number[] = [];
    for (let i = 0; i < 200; i++) {
      big.writeUInt32LE(i, 0); // send() copies what it queues: reusing the buffer is fine
      promises.push(a.send(big, [f]).then(() => void order.push(i)));
    }
    expect(a.pendingSends).toBeGreaterThan(0);
    const got = await Promise.all([collect(b, 200), Promise.all(promises)]).then(([ms]) => ms);
    expect(order).toEqual([...Array(200).keys()]);
    expect(got.map((m) => m.data.readUInt32LE(0))).toEqual([...Array(200).keys()]);
    expect(got.every((m) => m.data.length === big.length && m.fds.length === 1)).toBe(true);
    for (const m of got) closeSync(m.fds[0]!);
    expect(a.pendingSends).toBe(0);
    a.close();
    b.close();
    closeSync(f);
  });

  it('fds are captured at send(): the caller may close theirs while the send is queued', async () => {
    const [a, b] = sockets(type);
    const filler = Buffer.alloc(64 * 1024);
    const pending: Promise<void>[] = [];
    while (a.pendingSends === 0) pending.push(a.send(filler));
    const f = openSync(files[2]!, 'r');
    pending.push(a.send(Buffer.from('late'), [f]));
    closeSync(f); // before the send is written
    const ms = await collect(b, pending.length);
    await Promise.all(pending);
    const last = ms[ms.length - 1]!;
    expect(last.data.toString()).toBe('late');
    expect(readText(last.fds[0]!)).toBe('file number 2');
    closeSync(last.fds[0]!);
    a.close();
    b.close();
  });

  it('close() with sends pending rejects them with ERR_SOCKET_CLOSED and closes their fds', async () => {
    const before = openFds();
    const [a, b] = sockets(type);
    const f = openSync(files[0]!, 'r');
    const pending: Promise<void>[] = [];
    while (a.pendingSends < 3) pending.push(a.send(Buffer.alloc(64 * 1024), [f]));
    const results = Promise.allSettled(pending);
    a.close();
    const settled = await results;
    const rejected = settled.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(rejected.length).toBe(3);
    for (const r of rejected) {
      expect(r.reason.code).toBe('ERR_SOCKET_CLOSED');
      expect(r.reason.message).toMatch(/closed before the message was sent/);
    }
    await expect(a.send(Buffer.from('x'))).rejects.toMatchObject({ code: 'ERR_SOCKET_CLOSED' });
    a.close(); // idempotent
    b.close();
    closeSync(f);
    expect(openFds()).toEqual(before);
  });

  it('an AbortSignal cancels a queued send: it rejects, its fd copies close, nothing of it arrives', async () => {
    const f = openSync(files[0]!, 'r');
    const before = openFds();
    const [a, b] = sockets(type);
    const pending: Promise<void>[] = [];
    while (a.pendingSends === 0) pending.push(a.send(Buffer.alloc(32 * 1024)));
    const ac = new AbortController();
    const cancelled = a.send(Buffer.from('cancelled'), [f, f], { signal: ac.signal });
    pending.push(a.send(Buffer.from('kept'), [f]));
    ac.abort(new Error('changed my mind'));
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: { message: 'changed my mind' } });
    await expect(a.send(Buffer.from('x'), [], { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(errorOf(() => a.send(Buffer.from('x'), [], { signal: 'soon' as never })).message).toContain('"options.signal"');
    const got = await collect(b, pending.length);
    await Promise.all(pending);
    const last = got[got.length - 1]!;
    expect(last.data.toString()).toBe('kept');
    expect(got.some((m) => m.data.toString() === 'cancelled')).toBe(false);
    closeSync(last.fds[0]!);
    a.close();
    b.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('fds received but never consumed are closed with the socket', async () => {
    const f = openSync(files[1]!, 'r');
    const before = openFds();
    const [x, y] = socketpair(type);
    for (let i = 0; i < 20; i++) sendFds(x, type === 'stream' ? frame(`m${i}`, 3) : Buffer.from(`m${i}`), [f, f, f]);
    const b = new FdSocket(y);
    for await (const m of b) {
      for (const fd of m.fds) closeSync(fd);
      break; // closes the socket with 19 messages read ahead
    }
    expect(b.closed).toBe(true);
    closeSync(x);
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('a listener that closes the socket mid-batch gets nothing more; the rest of the batch’s fds are closed', async () => {
    const f = openSync(files[1]!, 'r');
    const before = openFds();
    const [x, y] = socketpair(type);
    for (let i = 0; i < 10; i++) sendFds(x, type === 'stream' ? frame(`m${i}`, 1) : Buffer.from(`m${i}`), [f]);
    closeSync(x); // end of file right behind the messages
    const s = new FdSocket(y);
    const events: string[] = [];
    s.on('end', () => events.push('end'));
    s.on('close', () => events.push('close'));
    s.on('message', (m) => {
      events.push(m.data.toString());
      closeSync(m.fds[0]!);
      if (events.length === 3) s.close();
    });
    await new Promise((resolve) => s.once('close', resolve));
    expect(events).toEqual(['m0', 'm1', 'm2', 'close']);
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('a listener that throws: the error is uncaught, the other messages still arrive', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const { FdSocket, sendFds } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         const [a, b] = socketpair(${JSON.stringify(type)});
         const f = fs.openSync('/dev/null', 'r');
         const frame = (i) => { const h = Buffer.alloc(9); h.writeUInt32LE(1, 0); h.writeUInt32LE(1, 4); h[8] = i; return h; };
         for (let i = 0; i < 5; i++) sendFds(a, ${JSON.stringify(type)} === 'stream' ? frame(i) : Buffer.from([i]), [f]);
         const s = new FdSocket(b);
         const seen = [];
         process.on('uncaughtException', (e) => seen.push(e.message));
         s.on('message', (m) => {
           fs.closeSync(m.fds[0]);
           seen.push(m.data[m.data.length - 1]);
           if (seen.length === 2) throw new Error('boom');
           if (seen.length === 6) { console.log(JSON.stringify(seen)); s.close(); fs.closeSync(a); }
         });`,
      ],
      { encoding: 'utf8', cwd: PKG },
    );
    expect(JSON.parse(out)).toEqual([0, 1, 'boom', 2, 3, 4]);
  });

  it('an \'end\' listener that throws: the error is uncaught, and the socket still closes and ends the loop', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const { FdSocket, sendFds } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         const [a, b] = socketpair(${JSON.stringify(type)});
         sendFds(a, ${JSON.stringify(type)} === 'stream' ? Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 7]) : Buffer.from([7]), []);
         const s = new FdSocket(b);
         const seen = [];
         process.on('uncaughtException', (e) => seen.push(e.message));
         s.on('end', () => { throw new Error('end boom'); });
         s.on('close', () => seen.push('close'));
         (async () => {
           // The peer leaves while the loop waits for its next message.
           for await (const m of s) { seen.push(m.data[m.data.length - 1]); fs.closeSync(a); }
           seen.push('loop done');
         })();
         process.on('exit', () => console.log(JSON.stringify([...seen, s.closed])));`,
      ],
      { encoding: 'utf8', cwd: PKG },
    );
    const seen = JSON.parse(out) as unknown[];
    expect(seen[0]).toBe(7);
    expect(seen.slice(1).sort()).toEqual(['close', 'end boom', 'loop done', true]);
  });

  it('a peer that leaves with our messages unread: queued sends reject, reading ends or reports ECONNRESET', async () => {
    const before = openFds();
    const [x, y] = socketpair(type);
    const a = new FdSocket(x);
    const pending: Promise<void>[] = [];
    while (a.pendingSends < 2) pending.push(a.send(Buffer.alloc(64 * 1024)));
    const settled = Promise.allSettled(pending);
    closeSync(y); // never read
    const reasons = (await settled).flatMap((r) => (r.status === 'rejected' ? [r.reason.code] : []));
    expect(reasons.length).toBeGreaterThanOrEqual(2);
    for (const code of reasons) expect(['EPIPE', 'ECONNRESET']).toContain(code);
    // The kernel reports the reset once, to whichever call comes first: a
    // send got it already, or the next read does.
    const outcome = new Promise<string>((resolve) => {
      a.on('end', () => resolve('end'));
      a.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code} ${err.syscall} ${err.errno}`));
    });
    a.on('message', () => {});
    const got = await outcome;
    if (reasons.includes('ECONNRESET')) expect(got).toBe('end');
    else expect(got).toBe('ECONNRESET recvmsg -104');
    await new Promise((resolve) => setImmediate(resolve));
    expect(a.closed).toBe(true);
    expect(openFds()).toEqual(before);
  });

  it('once() takes one message; the next listener gets the next, even after removeAllListeners()', async () => {
    const [a, b] = sockets(type);
    for (const m of ['one', 'two', 'three']) await a.send(Buffer.from(m));
    const [first] = (await once(b, 'message')) as [FdMessage];
    expect(first.data.toString()).toBe('one');
    b.removeAllListeners();
    const [second] = (await once(b, 'message')) as [FdMessage];
    expect(second.data.toString()).toBe('two');
    const third = await new Promise<FdMessage>((resolve) => b.prependOnceListener('message', resolve));
    expect(third.data.toString()).toBe('three');
    a.close();
    b.close();
  });

  it('pause() stops delivery; resume() continues in order', async () => {
    const [a, b] = sockets(type);
    const seen: string[] = [];
    b.on('message', (m) => {
      seen.push(m.data.toString());
      if (seen.length === 2) b.pause();
    });
    for (const s of ['a', 'b', 'c', 'd']) await a.send(Buffer.from(s));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['a', 'b']);
    const rest = collect(b, 2);
    b.resume();
    await rest;
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    a.close();
    b.close();
  });

  it('its fd closed by hand (against the README) neither aborts the process in libuv nor stops the socket; close() leaves the number to its next owner', () => {
    // In a process of its own: libuv aborts a process whose polled fd is closed under it.
    const run = spawnSync(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const { FdSocket, sendFds, recvFds } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         const type = ${JSON.stringify(type)};
         const wire = (i) => type === 'stream' ? Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, i]) : Buffer.from([i]);
         const [a, b] = socketpair(type);
         const s = new FdSocket(b);
         const seen = [];
         s.on('message', (m) => {
           seen.push(m.data[m.data.length - 1]);
           if (seen.length === 1) { s.pause(); setImmediate(() => s.resume()); } // the poll goes back to epoll
           if (seen.length === 2) {
             // A send queued behind nothing still goes out after the number is reused.
             s.send(Buffer.from('back')).then(() => {
               const got = recvFds(a);
               const stranger = fs.openSync('/dev/null', 'r');
               s.close();
               let strangerOpen = true;
               try { fs.closeSync(stranger); } catch { strangerOpen = false; }
               console.log(JSON.stringify({ seen, back: got.data.toString().slice(-4), reused: stranger === b, strangerOpen }));
               fs.closeSync(a);
             });
           }
         });
         fs.closeSync(b); // same tick as the first poll start
         sendFds(a, wire(1), []);
         setTimeout(() => sendFds(a, wire(2), []), 20);`,
      ],
      { encoding: 'utf8', cwd: PKG, timeout: 30_000 },
    );
    expect({ status: run.status, signal: run.signal, stderr: run.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(JSON.parse(run.stdout)).toEqual({ seen: [1, 2], back: 'back', reused: true, strangerOpen: true });
  });

  it('Symbol.dispose closes the fd; close() is idempotent and emits close once', async () => {
    const before = openFds();
    let closes = 0;
    const s = new FdSocket(socketpair(type)[0]);
    s.on('close', () => closes++);
    s[Symbol.dispose]();
    s.close();
    await new Promise((r) => setImmediate(r));
    expect(closes).toBe(1);
    // The peer end of that pair is still open in this process: find and close it.
    const leftover = openFds().filter((l) => !before.includes(l));
    expect(leftover).toHaveLength(1);
    closeSync(parseInt(leftover[0]!, 10));
    expect(openFds()).toEqual(before);
  });
});

describe('FdSocket on seqpacket, a peer that leaves', () => {
  it('a peer that sends and leaves with our messages unread: what it sent arrives first, then ECONNRESET', async () => {
    // The kernel reports the reset before the queued messages (on a stream
    // socket it comes after the bytes): they must still arrive.
    const before = openFds();
    const [x, y] = socketpair('seqpacket');
    const a = new FdSocket(x);
    await a.send(Buffer.from('never read'));
    sendFds(y, Buffer.from('one'), []);
    sendFds(y, Buffer.from('two'), []);
    closeSync(y);
    const got: string[] = [];
    a.on('message', (m: FdMessage) => got.push(m.data.toString()));
    const [err] = (await once(a, 'error')) as [NodeJS.ErrnoException];
    expect(got).toEqual(['one', 'two']);
    expect(err.code).toBe('ECONNRESET');
    await new Promise((resolve) => setImmediate(resolve));
    expect(a.closed).toBe(true);
    expect(openFds()).toEqual(before);
  });
});

describe('stream framing', () => {
  /** Write raw bytes with sendFds, as a peer in another language would. */
  function raw(): { fd: number; s: FdSocket } {
    const [x, y] = socketpair('stream');
    return { fd: x, s: new FdSocket(y) };
  }

  it('keeps fds with their message however the bytes are split', async () => {
    const before = openFds();
    const { fd, s } = raw();
    const fs = files.map((p) => openSync(p, 'r'));
    const f1 = frame('one, no fds', 0);
    const f2 = frame('two, with two', 2);
    const f3 = frame('three', 0);
    const f4 = frame('four', 0);
    const f5 = frame('five, with one', 1);
    const f6 = frame('', 1);
    // Frame 1 a byte at a time (its header split across eight writes).
    for (const byte of f1) sendFds(fd, Buffer.from([byte]), []);
    // Frame 2's fds ride on its first 3 bytes; the rest follows together
    // with all of frames 3 and 4 (no fds), which the kernel may merge.
    sendFds(fd, f2.subarray(0, 3), [fs[0]!, fs[1]!]);
    sendFds(fd, Buffer.concat([f2.subarray(3), f3, f4]), []);
    // Frame 5 in one write, frame 6 (empty payload) with its fd.
    sendFds(fd, f5, [fs[2]!]);
    sendFds(fd, f6, [fs[3]!]);
    const got = await collect(s, 6);
    expect(got.map((m) => m.data.toString())).toEqual(['one, no fds', 'two, with two', 'three', 'four', 'five, with one', '']);
    expect(got.map((m) => m.fds.map(readText))).toEqual([
      [],
      ['file number 0', 'file number 1'],
      [],
      [],
      ['file number 2'],
      ['file number 3'],
    ]);
    for (const m of got) for (const x of m.fds) closeSync(x);
    for (const x of [...fs, fd]) closeSync(x);
    s.close();
    expect(openFds()).toEqual(before);
  });

  it('a 4 MiB message with fds, which the kernel splits into many segments', async () => {
    const [a, b] = sockets('stream');
    const f = openSync(files[3]!, 'r');
    const big = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    const got = collect(b, 3);
    const sends = [a.send(Buffer.from('before'), [f]), a.send(big, [f, f]), a.send(Buffer.from('after'), [f])];
    const [m1, m2, m3] = await got;
    await Promise.all(sends);
    expect(m1!.data.toString()).toBe('before');
    expect(m2!.data.equals(big)).toBe(true);
    expect(m2!.fds.map(readText)).toEqual(['file number 3', 'file number 3']);
    expect(m3!.data.toString()).toBe('after');
    for (const m of [m1!, m2!, m3!]) for (const x of m.fds) closeSync(x);
    a.close();
    b.close();
    closeSync(f);
  });

  it('random payloads, fd counts and write splits all reassemble', async () => {
    const before = openFds();
    const { fd, s } = raw();
    const fs = files.map((p) => openSync(p, 'r'));
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const N = 2000;
    const expected: [string, string[]][] = [];
    // The writes below block when the socket buffer is full, and only this
    // process reads it: write in rounds, waiting for each to be read.
    const ms: FdMessage[] = [];
    let want = 0;
    let caughtUp: () => void = () => {};
    let failed: (err: Error) => void = () => {};
    s.on('message', (m) => {
      ms.push(m);
      if (ms.length === want) caughtUp();
    });
    s.on('error', (err) => failed(err));
    let pendingBytes: Buffer[] = []; // fd-less bytes not yet written
    const flush = () => {
      let buf = Buffer.concat(pendingBytes);
      pendingBytes = [];
      while (buf.length > 0) {
        const cut = 1 + rand(buf.length);
        sendFds(fd, buf.subarray(0, cut), []);
        buf = buf.subarray(cut);
      }
    };
    for (let i = 0; i < N; i++) {
      const payload = `${i}:${'x'.repeat(rand(300))}`;
      const nfds = rand(3) === 0 ? 1 + rand(3) : 0;
      const mine = Array.from({ length: nfds }, () => fs[rand(4)]!);
      expected.push([payload, mine.map(readText)]);
      const fr = frame(payload, nfds);
      if (nfds === 0) {
        pendingBytes.push(fr);
        if (rand(4) === 0) flush();
      } else {
        // A writer's one rule: fds go on a write that starts their frame and
        // holds nothing of a later frame.
        flush();
        const cut = 1 + rand(fr.length);
        sendFds(fd, fr.subarray(0, cut), mine);
        pendingBytes.push(fr.subarray(cut));
      }
      if (i % 10 === 9) {
        flush();
        want = i + 1;
        if (ms.length < want) {
          await new Promise<void>((resolve, reject) => {
            caughtUp = resolve;
            failed = reject;
          });
        }
      }
    }
    expect(ms.map((m) => [m.data.toString(), m.fds.map(readText)])).toEqual(expected);
    for (const m of ms) for (const x of m.fds) closeSync(x);
    for (const x of [...fs, fd]) closeSync(x);
    s.close();
    expect(openFds()).toEqual(before);
  });

  it.each([
    ['fds in the middle of a frame', [[frame('abc', 0).subarray(0, 9), 0], [frame('abc', 0).subarray(9), 2]], 'ERR_INVALID_FRAME'],
    ['a frame announcing fds that never came', [[frame('abc', 2), 0]], 'ERR_INVALID_FRAME'],
    ['a frame with more fds than announced', [[frame('abc', 1), 3]], 'ERR_INVALID_FRAME'],
    ['a header announcing 254 fds', [[frame('abc', 254), 1]], 'ERR_INVALID_FRAME'],
  ] as const)('%s fails the socket, closing every fd', async (_name, writes, code) => {
    const f = openSync(files[0]!, 'r');
    const before = openFds();
    const { fd, s } = raw();
    sendFds(fd, frame('good', 1), [f]);
    for (const [bytes, nfds] of writes) sendFds(fd, bytes, Array(nfds).fill(f));
    const got: FdMessage[] = [];
    s.on('message', (m) => got.push(m));
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe(code);
    expect(err.message).toMatch(/FdSocket stream framing/);
    // What came before the bad frame was delivered.
    expect(got.map((m) => m.data.toString())).toEqual(['good']);
    closeSync(got[0]!.fds[0]!);
    expect(s.closed).toBe(true);
    closeSync(fd);
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it.each([
    ['a header over maxMessageBytes', frame('x'.repeat(17), 0), 0, 'ERR_MESSAGE_TOO_LARGE'],
    ['a header announcing 254 fds', frame('abc', 254), 1, 'ERR_INVALID_FRAME'],
  ] as const)('messages read in the same recvmsg as %s are still delivered first', async (_name, bad, nfds, code) => {
    const f = openSync(files[0]!, 'r');
    const before = openFds();
    const [x, y] = socketpair('stream');
    // Queued before the socket reads: fd-less writes merge into one read
    // with the next write, up to and including the one that carries fds.
    sendFds(x, Buffer.concat([frame('one', 0), frame('two', 0)]), []);
    sendFds(x, bad, Array(nfds).fill(f));
    const s = new FdSocket(y, { maxMessageBytes: 16 });
    const got: FdMessage[] = [];
    s.on('message', (m) => got.push(m));
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe(code);
    expect(got.map((m) => [m.data.toString(), m.fds.length])).toEqual([
      ['one', 0],
      ['two', 0],
    ]);
    closeSync(x);
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('for await yields what came before a broken frame, then throws', async () => {
    const f = openSync(files[0]!, 'r');
    const { fd, s } = raw();
    sendFds(fd, frame('good', 1), [f]);
    sendFds(fd, frame('bad', 2), [f]);
    const seen: string[] = [];
    let caught: NodeJS.ErrnoException | undefined;
    try {
      for await (const m of s) {
        seen.push(m.data.toString());
        for (const x of m.fds) closeSync(x);
      }
    } catch (err) {
      caught = err as NodeJS.ErrnoException;
    }
    expect(seen).toEqual(['good']);
    expect(caught?.code).toBe('ERR_INVALID_FRAME');
    expect(s.closed).toBe(true);
    closeSync(fd);
    closeSync(f);
  });

  it('a header announcing more than maxMessageBytes fails with ERR_MESSAGE_TOO_LARGE', async () => {
    const [x, y] = socketpair('stream');
    const s = new FdSocket(y, { maxMessageBytes: 16 });
    sendFds(x, frame('x'.repeat(17), 0), []);
    s.on('message', () => {});
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ERR_MESSAGE_TOO_LARGE');
    closeSync(x);
  });

  it('a peer that dies mid-message: earlier messages arrive, then ERR_INCOMPLETE_MESSAGE; its fds are closed', async () => {
    const before = openFds();
    const [ours, theirs] = socketpair('stream');
    const s = new FdSocket(ours);
    const got: FdMessage[] = [];
    s.on('message', (m) => got.push(m));
    const errored = once(s, 'error');
    const closed = new Promise((resolve) => s.once('close', resolve)); // once() would reject on 'error'
    // CPython writes one whole frame, then the first 10 of 100 payload
    // bytes of the next (with an fd), and kills itself.
    const head = frame('whole', 0).toString('hex');
    const partial = frame('y'.repeat(100), 1).subarray(0, FRAME_HEADER_BYTES + 10).toString('hex');
    const r = await runWithFd3(
      'python3',
      [
        '-c',
        `import os, signal, socket
s = socket.socket(fileno=3)
f = os.open(${JSON.stringify(files[1])}, os.O_RDONLY)
s.sendall(bytes.fromhex('${head}'))
socket.send_fds(s, [bytes.fromhex('${partial}')], [f])
os.kill(os.getpid(), signal.SIGKILL)`,
      ],
      theirs,
    );
    closeSync(theirs);
    expect(r.signal).toBe('SIGKILL');
    const [err] = (await errored) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ERR_INCOMPLETE_MESSAGE');
    expect(err.message).toMatch(/10 of 100 bytes/);
    expect(got.map((m) => m.data.toString())).toEqual(['whole']);
    await closed;
    expect(openFds()).toEqual(before);
  });
});

describe('seqpacket specifics', () => {
  it('a datagram longer than maxMessageBytes fails with ERR_MESSAGE_TOO_LARGE, closing its fds', async () => {
    const f = openSync(files[0]!, 'r');
    const before = openFds();
    const [x, y] = socketpair('seqpacket');
    const s = new FdSocket(y, { maxMessageBytes: 8 });
    sendFds(x, Buffer.from('fits'), []);
    sendFds(x, Buffer.from('does not fit'), [f, f]);
    const got: FdMessage[] = [];
    s.on('message', (m) => got.push(m));
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ERR_MESSAGE_TOO_LARGE');
    expect(got.map((m) => m.data.toString())).toEqual(['fits']);
    closeSync(x);
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('a datagram larger than the socket buffer rejects with EMSGSIZE, at once or from the queue; the sends around it go through', async () => {
    const f = openSync(files[0]!, 'r');
    const before = openFds();
    const [a, b] = sockets('seqpacket');
    const huge = Buffer.alloc(4 * 1024 * 1024);
    await expect(a.send(huge, [f])).rejects.toMatchObject({ code: 'EMSGSIZE', syscall: 'sendmsg' });
    // Queued behind a full socket, so it fails in the writable callback.
    const fillers: Promise<void>[] = [];
    while (a.pendingSends === 0) fillers.push(a.send(Buffer.alloc(32 * 1024)));
    const queued = a.send(huge, [f, f]); // holds two dups until it fails
    const after = a.send(Buffer.from('after'), [f]);
    const got = collect(b, fillers.length + 1);
    await expect(queued).rejects.toMatchObject({ code: 'EMSGSIZE', syscall: 'sendmsg' });
    await Promise.all([...fillers, after]);
    const ms = await got;
    expect(ms.slice(0, -1).every((m) => m.data.length === 32 * 1024 && m.fds.length === 0)).toBe(true);
    expect(ms[ms.length - 1]!.data.toString()).toBe('after');
    for (const m of ms) for (const fd of m.fds) closeSync(fd);
    a.close();
    b.close();
    await once(b, 'close');
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('highWaterMark bounds the read-ahead of a loop that stops pulling: the peer then meets a full socket, and nothing is lost', async () => {
    const f = openSync(files[0]!, 'r');
    const before = openFds();
    const [x, y] = socketpair('seqpacket', { nonblock: true });
    const s = new FdSocket(x, { highWaterMark: 2 });
    const it = s[Symbol.asyncIterator]();
    const first = it.next(); // reading starts; nothing pulls after this one
    let sent = 0;
    const fill = () => (sent = sendUntilFull(y, [f], sent));
    // The first batch read drains what is queued, past the mark; then reading
    // stops. A reading socket would drain the refilled queue on the later
    // turns of the loop; this one stays full.
    fill();
    await turns();
    fill();
    await turns();
    expect(errorOf(() => sendFds(y, Buffer.from('more'), [])).code).toBe('EAGAIN');
    expect(await numbersToTheEnd(first, it, y)).toEqual([...Array(sent).keys()]);
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('fdHighWaterMark bounds the fds read ahead of a loop that stops pulling: the peer then meets a full socket, and nothing is lost', async () => {
    const f = openSync(files[0]!, 'r');
    const [x, y] = socketpair('seqpacket', { nonblock: true });
    const s = new FdSocket(x, { fdHighWaterMark: 10 });
    const before = openFds();
    const it = s[Symbol.asyncIterator]();
    const first = it.next(); // reading starts; nothing pulls after this one
    let sent = 0;
    const fill = () => (sent = sendUntilFull(y, [f, f, f, f], sent));
    fill();
    await turns();
    fill();
    await turns();
    expect(errorOf(() => sendFds(y, Buffer.from('more'), [f])).code).toBe('EAGAIN');
    // The first message's 4 fds are the loop's; read ahead: reading stops
    // once 10 are held, and a read may take it over by one message's fds.
    const readAhead = openFds().length - before.length - 4;
    expect(readAhead).toBeGreaterThanOrEqual(10);
    expect(readAhead).toBeLessThanOrEqual(10 - 1 + 4);
    expect(await numbersToTheEnd(first, it, y)).toEqual([...Array(sent).keys()]);
    closeSync(f);
  });

  it('a peer killed right after sending ends the socket after its last message, fds included', async () => {
    const before = openFds();
    const [ours, theirs] = socketpair('seqpacket');
    const s = new FdSocket(ours);
    const got = collect(s, 99);
    const ended = once(s, 'end');
    const closed = once(s, 'close');
    // Its datagrams (one carrying an fd) are still queued when it dies.
    const r = await runWithFd3(
      'python3',
      [
        '-c',
        `import os, signal, socket
s = socket.socket(fileno=3)
f = os.open(${JSON.stringify(files[2])}, os.O_RDONLY)
s.send(b'first')
socket.send_fds(s, [b'last words'], [f])
os.kill(os.getpid(), signal.SIGKILL)`,
      ],
      theirs,
    );
    closeSync(theirs);
    expect(r.signal).toBe('SIGKILL');
    await ended;
    const ms = await got;
    expect(ms.map((m) => [m.data.toString(), m.fds.map(readText)])).toEqual([
      ['first', []],
      ['last words', ['file number 2']],
    ]);
    for (const m of ms) for (const fd of m.fds) closeSync(fd);
    await closed;
    expect(openFds()).toEqual(before);
  });

  it('an empty message queued before the peer closed is a message, not end of file: what follows it arrives', async () => {
    const f = openSync(files[1]!, 'r');
    const before = openFds();
    const [x, y] = socketpair('seqpacket');
    sendFds(x, Buffer.alloc(0), []);
    sendFds(x, Buffer.from('after the empty one'), [f]);
    sendFds(x, Buffer.alloc(0), [f]);
    closeSync(x); // all three are queued when the peer is already gone
    const s = new FdSocket(y);
    const ended = once(s, 'end');
    const got = collect(s, 99);
    await ended;
    const ms = await got;
    expect(ms.map((m) => [m.data.toString(), m.fds.map(readText)])).toEqual([
      ['', []],
      ['after the empty one', ['file number 1']],
      ['', ['file number 1']],
    ]);
    for (const m of ms) for (const fd of m.fds) closeSync(fd);
    // No bytes at all behind the empty message, only fds.
    const [v, w] = socketpair('seqpacket');
    sendFds(v, Buffer.alloc(0), []);
    sendFds(v, Buffer.alloc(0), [f, f]);
    closeSync(v);
    const t = new FdSocket(w);
    const tEnded = once(t, 'end');
    const tGot = collect(t, 99);
    await tEnded;
    const tms = await tGot;
    expect(tms.map((m) => [m.data.length, m.fds.map(readText)])).toEqual([
      [0, []],
      [0, ['file number 1', 'file number 1']],
    ]);
    for (const m of tms) for (const fd of m.fds) closeSync(fd);
    await new Promise((resolve) => setImmediate(resolve));
    expect(openFds()).toEqual(before);
    closeSync(f);
  });

  it('interop: CPython send_fds datagrams arrive as messages; our messages reach recv_fds', async () => {
    const [ours, theirs] = socketpair('seqpacket');
    const s = new FdSocket(ours);
    const f = openSync(files[2]!, 'r');
    const got = collect(s, 3);
    await s.send(Buffer.from('to python'), [f, f]);
    const r = await python(
      `import os, socket
s = socket.socket(fileno=3)
msg, fds, flags, addr = socket.recv_fds(s, 100, 10)
print(msg.decode(), len(fds), os.pread(fds[0], 100, 0).decode())
for i in range(3):
    socket.send_fds(s, [b'from python %d' % i], fds[:i])`,
      theirs,
    );
    expect(r.stdout).toBe('to python 2 file number 2\n');
    const ms = await got;
    expect(ms.map((m) => [m.data.toString(), m.fds.map(readText)])).toEqual([
      ['from python 0', []],
      ['from python 1', ['file number 2']],
      ['from python 2', ['file number 2', 'file number 2']],
    ]);
    for (const m of ms) for (const x of m.fds) closeSync(x);
    closeSync(f);
    closeSync(theirs);
    s.close();
  });
});

describe('read-ahead with default options', () => {
  it.each(KINDS)(
    '%s: a peer sending 253-fd messages to a slow for-await loop is held back by the socket buffer, not by our fd table; every message arrives',
    async (type) => {
      const [ours, theirs] = socketpair(type);
      // A receiver under RLIMIT_NOFILE 1024 (where Node cannot raise it)
      // taking one message per 5 ms; how many fds it holds at most.
      const receiver = runWithFd3(
        'sh',
        [
          '-c',
          'ulimit -n 1024 && exec "$0" -e "$1"',
          process.execPath,
          `const fs = require('node:fs');
           const { FdSocket, closeFds } = require(${JSON.stringify(DIST)});
           const count = () => fs.readdirSync('/proc/self/fd').length;
           const s = new FdSocket(3);
           const base = count();
           let n = 0, most = 0;
           const wrong = [];
           (async () => {
             try {
               for await (const m of s) {
                 most = Math.max(most, count() - base);
                 if (m.data.toString() !== String(n) || m.fds.length !== 253) wrong.push(n);
                 n++;
                 closeFds(m.fds);
                 await new Promise((r) => setTimeout(r, 5));
               }
               console.log(JSON.stringify({ n, most, wrong }));
             } catch (e) {
               console.log(JSON.stringify({ n, most, error: e.code }));
             }
           })();`,
        ],
        ours,
      );
      // The peer, CPython, sends 40 messages of 253 fds (10,120) as fast as
      // the socket takes them.
      const sender = runWithFd3(
        'python3',
        [
          '-c',
          `import os, socket, struct
s = socket.socket(fileno=3)
f = os.open('/dev/null', os.O_RDONLY)
for i in range(40):
    body = b'%d' % i
    head = struct.pack('<II', len(body), 253) if s.type == socket.SOCK_STREAM else b''
    socket.send_fds(s, [head + body], [f] * 253)`,
        ],
        theirs,
      );
      closeSync(ours);
      closeSync(theirs);
      const [r, p] = await Promise.all([receiver, sender]);
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout) as { n: number; most: number; wrong?: number[]; error?: string };
      expect(out).toMatchObject({ n: 40, wrong: [] });
      // At most the default fdHighWaterMark (256), one message over it, and
      // the message in the loop's hands.
      expect(out.most).toBeLessThanOrEqual(256 - 1 + 253);
      expect(p.code).toBe(0);
    },
  );
});

describe('half-open', () => {
  it.each(KINDS)('%s: with allowHalfOpen the socket still sends after the peer shut down its side', async (type) => {
    const [ours, theirs] = socketpair(type);
    const s = new FdSocket(ours, { allowHalfOpen: true });
    const f = openSync(files[3]!, 'r');
    s.on('message', (m) => expect(m.data.toString()).toBe('question'));
    s.on('end', () => {
      expect(s.closed).toBe(false);
      void s.send(Buffer.from('answer'), [f]).then(() => s.close());
    });
    // The peer asks, shuts down its writing side, and reads the answer raw.
    const head = type === 'stream' ? frame('question', 0).toString('hex') : Buffer.from('question').toString('hex');
    const r = await python(
      `import os, socket
s = socket.socket(fileno=3)
s.sendall(bytes.fromhex('${head}'))
s.shutdown(socket.SHUT_WR)
msg, fds, flags, addr = socket.recv_fds(s, 100, 4)
print(msg[-6:].decode(), os.pread(fds[0], 100, 0).decode())`,
      theirs,
    );
    expect(r.stdout).toBe('answer file number 3\n');
    closeSync(theirs);
    closeSync(f);
    if (!s.closed) await new Promise((resolve) => s.once('close', resolve));
  });
});

describe('across processes', () => {
  it.each(KINDS)('%s: a Node child sends 100,000 messages with fds; all arrive in order', async (type) => {
    const [ours, theirs] = socketpair(type);
    const s = new FdSocket(ours);
    const N = 100_000;
    let next = 0;
    let bad = '';
    s.on('message', (m) => {
      const i = m.data.readUInt32LE(0);
      if (i !== next++ || m.fds.length !== 1 || target(m.fds[0]!) !== files[i % 4]) bad ||= `message ${next - 1}: ${i}`;
      closeSync(m.fds[0]!);
    });
    const ended = once(s, 'end');
    const script = `
      const fs = require('node:fs');
      const { FdSocket } = require(${JSON.stringify(DIST)});
      const files = ${JSON.stringify(files)}.map((p) => fs.openSync(p, 'r'));
      const s = new FdSocket(3);
      (async () => {
        const data = Buffer.alloc(4);
        for (let i = 0; i < ${N}; i++) { data.writeUInt32LE(i, 0); await s.send(data, [files[i % 4]]); }
        s.close();
      })();`;
    const r = await runWithFd3(process.execPath, ['-e', script], theirs);
    closeSync(theirs);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await ended;
    expect(bad).toBe('');
    expect(next).toBe(N);
  });

  it('unref() lets a process exit while its socket still waits', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const { FdSocket } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         const [a, b] = socketpair('seqpacket');
         const s = new FdSocket(a);
         s.on('message', () => {});
         s.unref();
         process.on('exit', () => console.log('exited'));`,
      ],
      { encoding: 'utf8', cwd: PKG },
    );
    expect(out).toBe('exited\n');
  });

  it('with 0-2 closed, no private duplicate takes their numbers (Node would take them for its stdio)', () => {
    // Node's lazy process.stderr wraps whatever is at fd 2: a stream socket
    // there, which an FdSocket's poll already watches, makes it throw 'open
    // EEXIST'. child_process keeps its fds at 3 and above, and so must we.
    const report = join(dir, 'low-fds.json');
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const { FdSocket } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         const out = fs.openSync(${JSON.stringify(report)}, 'w');
         const result = {};
         process.on('uncaughtException', (e) => {
           result.uncaught = String(e && e.message);
           fs.writeSync(out, JSON.stringify(result));
           process.exit(3);
         });
         const open = () => [0, 1, 2].filter((fd) => { try { fs.fstatSync(fd); return true; } catch { return false; } });
         const pairs = [socketpair('stream'), socketpair('stream')];
         fs.closeSync(0);
         fs.closeSync(1);
         fs.closeSync(2);
         const sockets = pairs.flatMap(([x, y]) => [new FdSocket(x), new FdSocket(y)]);
         result.low = open();
         // What each socket receives before its peer's 'end', which is sent
         // after the console.error below.
         const got = sockets.map(() => []);
         let ended = 0;
         sockets.forEach((s, i) =>
           s.on('message', (m) => {
             if (m.data.toString() !== 'end') return got[i].push(m.data.toString());
             if (++ended < sockets.length) return;
             result.got = got;
             result.lowAfter = open();
             for (const s of sockets) s.close();
             fs.writeSync(out, JSON.stringify(result));
           }),
         );
         sockets[0].send(Buffer.from('hi')).then(() => {
           console.error('process.stderr works');
           for (const s of sockets) s.send(Buffer.from('end'));
         });`,
      ],
      { encoding: 'utf8', cwd: PKG },
    );
    expect({ status: r.status, stderr: r.stderr, ...JSON.parse(readFileSync(report, 'utf8')) }).toEqual({
      status: 0,
      stderr: '',
      low: [],
      got: [[], ['hi'], [], []],
      lowAfter: [],
    });
  });

  it('a ref’d socket keeps the process alive until its message comes', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const { FdSocket, sendFds } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         const { fork } = require('node:child_process');
         const [a, b] = socketpair('seqpacket');
         const s = new FdSocket(a);
         s.on('message', (m) => { console.log('got', m.data.toString()); s.close(); });
         // Another process sends, later: only the poll handle keeps us alive till then.
         require('node:child_process').spawn('python3', ['-c', 'import socket,time; time.sleep(0.2); socket.socket(fileno=3).send(b"late")'], { stdio: ['ignore', 'inherit', 'inherit', b] }).unref();
         require('node:fs').closeSync(b);`,
      ],
      { encoding: 'utf8', cwd: PKG },
    );
    expect(out).toBe('got late\n');
  });

  it('readiness needs no threadpool thread: messages flow while the only one is parked in a blocking open()', () => {
    const fifo = join(dir, 'parked.fifo');
    execFileSync('mkfifo', [fifo]);
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const { FdSocket } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         // open(2) of a FIFO blocks until a writer comes: the pool's one thread is stuck.
         fs.open(${JSON.stringify(fifo)}, 'r', (err, fd) => { if (!err) fs.closeSync(fd); });
         let statDone = false;
         fs.stat('/', () => (statDone = true)); // queued behind it
         const [a, b] = socketpair('seqpacket');
         const s = new FdSocket(a);
         const t = new FdSocket(b);
         const f = fs.openSync('/dev/null', 'r');
         let n = 0;
         s.on('message', (m) => {
           n += m.fds.length;
           m.fds.forEach((x) => fs.closeSync(x));
           if (n === 1000) {
             console.log(JSON.stringify([n, statDone]));
             s.close();
             t.close();
             fs.closeSync(fs.openSync(${JSON.stringify(fifo)}, 'w')); // let the pool go
           }
         });
         (async () => { for (let i = 0; i < 1000; i++) await t.send(Buffer.from('x'), [f]); })();`,
      ],
      { encoding: 'utf8', cwd: PKG, env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, timeout: 30_000 },
    );
    // All 1,000 arrived while the stat queued behind the parked thread never ran.
    expect(JSON.parse(out)).toEqual([1000, false]);
  });

  it.each([
    [
      'FdSocket sends and receives',
      "const { FdSocket } = require(DIST); const { socketpair } = require('@folk/socketpair'); const [a, b] = socketpair('seqpacket', { nonblock: true }); const s = new FdSocket(b); const t = new FdSocket(a); s.on('message', () => {}); s.on('error', () => {}); t.on('error', () => {});",
      // The fds queued sends and unread messages hold are the poller's to
      // close at teardown; were any left behind, 80 rounds of 200 would
      // exhaust the fd table (EMFILE in the 50th worker or so).
      'for (let i = 0; i < 200; i++) t.send(Buffer.alloc(100), [0]).catch(() => {});',
    ],
    [
      'sendFds and recvFds',
      "const { sendFds, recvFds } = require(DIST); const { socketpair } = require('@folk/socketpair'); const fs = require('node:fs'); const [a, b] = socketpair('seqpacket', { nonblock: true });",
      'for (let i = 0; i < 300; i++) { try { sendFds(a, Buffer.alloc(10), [0, 1]); for (const f of recvFds(b).fds) fs.closeSync(f); } catch {} }',
    ],
  ])('worker threads: a worker terminated in the middle of %s does not take the process down', (_name, setup, loop) => {
    expect(terminateMidCall(`const DIST = ${JSON.stringify(DIST)}; ${setup}`, loop, { cwd: PKG })).toEqual(SURVIVED);
  }, 120_000);

  it('worker threads: a worker that ends, exits in a listener or is terminated with an FdSocket open takes its fds along, and the process lives', () => {
    // In a child process, so a crash shows as a signal. Only the workers
    // load the addon: Node unloads it when each worker's environment goes.
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Worker } = require('node:worker_threads');
         const { once } = require('node:events');
         const fs = require('node:fs');
         const count = () => fs.readdirSync('/proc/self/fd').length;
         const body = (how) => \`
           const fs = require('node:fs');
           const { parentPort } = require('node:worker_threads');
           const { FdSocket } = require(${JSON.stringify(DIST)});
           const { socketpair } = require('@folk/socketpair');
           const [a, b] = socketpair('seqpacket');
           const s = new FdSocket(a);
           const t = new FdSocket(b);
           const f = fs.openSync('/dev/null', 'r');
           s.on('message', (m) => {
             const ok = m.data.toString() === 'hi' && m.fds.length === 1;
             m.fds.forEach((x) => fs.closeSync(x));
             fs.closeSync(f);
             parentPort.postMessage(ok);
             if ('\${how}' === 'ends') { s.unref(); t.unref(); } // both still open
             if ('\${how}' === 'exits') process.exit(0);
           });
           t.send(Buffer.from('hi'), [f]);\`;
         (async () => {
           await once(new Worker('', { eval: true }), 'exit'); // what any worker leaves behind
           const results = [];
           for (const how of ['ends', 'exits', 'terminated', 'ends', 'exits', 'terminated']) {
             const before = count();
             // trackUnmanagedFds: false, or Node warns as this worker closes
             // fds that fs did not open (the received one), as the README says.
             const w = new Worker(body(how), { eval: true, trackUnmanagedFds: false });
             const exited = once(w, 'exit');
             const [ok] = await once(w, 'message');
             if (how === 'terminated') await w.terminate();
             await exited;
             results.push([how, ok, count() - before]);
           }
           console.log(JSON.stringify(results));
         })();`,
      ],
      { encoding: 'utf8', cwd: PKG, timeout: 60_000 },
    );
    expect(r.stderr).toBe('');
    expect([r.status, r.signal]).toEqual([0, null]);
    expect(JSON.parse(r.stdout)).toEqual([
      ['ends', true, 0],
      ['exits', true, 0],
      ['terminated', true, 0],
      ['ends', true, 0],
      ['exits', true, 0],
      ['terminated', true, 0],
    ]);
  });

  it('worker threads: fds an FdSocket holds when its worker ends (read ahead, queued sends, a frame in progress) are closed with it, however the worker ends', () => {
    // Held fds are the native poller's to close at teardown: no JavaScript
    // runs then. The worker first reports how many it holds beyond its
    // sockets' own, so the test cannot pass with nothing at stake.
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Worker } = require('node:worker_threads');
         const { once } = require('node:events');
         const fs = require('node:fs');
         const openFds = () => fs.readdirSync('/proc/self/fd').map((n) => { try { return n + ' -> ' + fs.readlinkSync('/proc/self/fd/' + n); } catch { return null; } }).filter(Boolean);
         const body = (how) => \`
           const fs = require('node:fs');
           const { parentPort } = require('node:worker_threads');
           const { FdSocket, sendFds } = require(${JSON.stringify(DIST)});
           const { socketpair } = require('@folk/socketpair');
           const count = () => fs.readdirSync('/proc/self/fd').length;
           const base = count();
           const f = fs.openSync('/dev/null', 'r');
           // Five messages of two fds, read in one batch; only the first is taken.
           const [a1, b1] = socketpair('seqpacket');
           const t1 = new FdSocket(b1);
           for (let i = 0; i < 5; i++) t1.send(Buffer.from('ahead'), [f, f]);
           const s1 = new FdSocket(a1);
           // Sends queued behind a full buffer, each with its own dup of f.
           const [a2, b2] = socketpair('seqpacket');
           const s2 = new FdSocket(a2);
           const t2 = new FdSocket(b2);
           while (t2.pendingSends < 3) t2.send(Buffer.alloc(64 * 1024), [f]).catch(() => {});
           // A stream frame announcing 100 bytes and one fd, 10 of them sent.
           const [a3, b3] = socketpair('stream');
           const head = Buffer.alloc(8);
           head.writeUInt32LE(100, 0);
           head.writeUInt32LE(1, 4);
           sendFds(b3, Buffer.concat([head, Buffer.alloc(10)]), [f]);
           const t3 = new FdSocket(b3);
           const s3 = new FdSocket(a3);
           s3.on('message', () => parentPort.postMessage('the partial frame was delivered'));
           fs.closeSync(f);
           s1.once('message', (m) => {
             m.fds.forEach((x) => fs.closeSync(x));
             setTimeout(() => {
               // Six sockets of two fds each, and what they hold.
               parentPort.postMessage(count() - base - 12);
               if ('\${how}' === 'ends') for (const s of [s1, t1, s2, t2, s3, t3]) s.unref();
               if ('\${how}' === 'exits') process.exit(0);
             }, 50);
           });\`;
         (async () => {
           await once(new Worker('', { eval: true }), 'exit'); // what any worker leaves behind
           const results = [];
           for (const how of ['ends', 'exits', 'terminated', 'ends', 'exits', 'terminated']) {
             const before = openFds();
             const w = new Worker(body(how), { eval: true, trackUnmanagedFds: false });
             const exited = once(w, 'exit');
             const [held] = await once(w, 'message');
             if (how === 'terminated') await w.terminate();
             await exited;
             const after = openFds();
             results.push([how, held, after.filter((x) => !before.includes(x)), before.filter((x) => !after.includes(x))]);
           }
           console.log(JSON.stringify(results));
         })();`,
      ],
      { encoding: 'utf8', cwd: PKG, timeout: 60_000 },
    );
    expect(r.stderr).toBe('');
    expect([r.status, r.signal]).toEqual([0, null]);
    const results = JSON.parse(r.stdout) as [string, number, string[], string[]][];
    expect(results.map(([how]) => how)).toEqual(['ends', 'exits', 'terminated', 'ends', 'exits', 'terminated']);
    for (const [how, held, opened, closed] of results) {
      // 4 messages x 2 fds read ahead, at least 3 queued dups, 1 in the frame.
      expect(held, how).toBeGreaterThanOrEqual(8 + 3 + 1);
      expect({ how, opened, closed }).toEqual({ how, opened: [], closed: [] });
    }
  });

  it('worker threads: the fds the package closes itself (read ahead, dups of queued sends) draw no warning from Node', () => {
    // A worker tracks the fds fs opened and warns when fs closes any other;
    // the package closes its own with close(2). Run with the default tracking.
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Worker } = require('node:worker_threads');
         const w = new Worker(\`
           const fs = require('node:fs');
           const { parentPort } = require('node:worker_threads');
           const { FdSocket, sendFds } = require(${JSON.stringify(DIST)});
           const { socketpair } = require('@folk/socketpair');
           const count = () => fs.readdirSync('/proc/self/fd').length;
           (async () => {
             const f = fs.openSync('/dev/null', 'r');
             const before = count();
             const [a, b] = socketpair('seqpacket');
             sendFds(b, Buffer.from('first, no fds'), []);
             for (let i = 0; i < 5; i++) sendFds(b, Buffer.from('read ahead'), [f, f]);
             const s = new FdSocket(a);
             const seen = [];
             for await (const m of s) { seen.push(m.data.toString(), m.fds.length); break; } // closes the other 10
             const [c, d] = socketpair('seqpacket');
             const t = new FdSocket(c);
             const queued = [];
             while (t.pendingSends < 3) queued.push(t.send(Buffer.alloc(64 * 1024), [f]).catch((e) => e.code));
             t.close(); // the queued sends' dups go with it
             seen.push(...(await Promise.all(queued)).filter((x) => x !== undefined));
             new FdSocket(b).close(); // not fs.closeSync: fs did not open these
             new FdSocket(d).close();
             fs.closeSync(f);
             parentPort.postMessage([seen, count() - before + 1]);
           })();\`, { eval: true });
         w.on('message', (m) => console.log(JSON.stringify(m)));`,
      ],
      { encoding: 'utf8', cwd: PKG, timeout: 60_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [seen, delta] = JSON.parse(r.stdout) as [unknown[], number];
    expect(seen.slice(0, 2)).toEqual(['first, no fds', 0]);
    expect(seen.slice(2)).toEqual(Array(seen.length - 2).fill('ERR_SOCKET_CLOSED'));
    expect(seen.length - 2).toBeGreaterThanOrEqual(3);
    expect(delta).toBe(0); // f closed, both sockets closed, nothing else left
  });

  it('MSG_CTRUNC when the receiver runs out of fds fails the socket and closes what arrived', () => {
    const out = runOutOfFds(
      'seqpacket',
      `const s = new FdSocket(b);
       s.on('message', () => console.log('unexpected message'));
       s.on('error', (e) => { s.on('close', () => console.log(e.code, count() - before)); });`,
    );
    // The socket's own fd is closed too: one fewer than before.
    expect(out).toBe('ERR_FDS_TRUNCATED -1\n');
  });
});

describe('bad arguments', () => {
  it('rejects a file, a datagram socket and a closed fd, leaving the fd with the caller', () => {
    const f = openSync(files[0]!, 'r');
    expect(errorOf(() => new FdSocket(f))).toMatchObject({ code: 'ENOTSOCK' });
    const [d1, d2] = socketpair('dgram');
    const err = errorOf(() => new FdSocket(d1));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(err.message).toMatch(/SOCK_SEQPACKET or SOCK_STREAM/);
    for (const fd of [f, d1, d2]) closeSync(fd); // still open: the constructor took nothing
    expect(errorOf(() => new FdSocket(f))).toMatchObject({ code: 'EBADF' });
    expect(errorOf(() => new FdSocket(-1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => new FdSocket('3' as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('rejects bad options and bad send arguments naming them', async () => {
    const [a, b] = socketpair('seqpacket');
    expect(errorOf(() => new FdSocket(a, { maxMessageBytes: 0 })).message).toContain('"options.maxMessageBytes"');
    expect(errorOf(() => new FdSocket(a, { allowHalfOpen: 1 as never })).message).toContain('"options.allowHalfOpen"');
    expect(errorOf(() => new FdSocket(a, { highWaterMark: 1.5 })).message).toContain('"options.highWaterMark"');
    expect(errorOf(() => new FdSocket(a, { fdHighWaterMark: 0 })).message).toContain('"options.fdHighWaterMark"');
    expect(errorOf(() => new FdSocket(a, { fdHighWaterMark: 2.5 })).message).toContain('"options.fdHighWaterMark"');
    const s = new FdSocket(a);
    expect(errorOf(() => s.send('text' as never)).message).toContain('"data"');
    expect(errorOf(() => s.send(Buffer.from('x'), Array(254).fill(0))).code).toBe('ERR_OUT_OF_RANGE');
    expect(errorOf(() => s.send(Buffer.from('x'), [0.5])).message).toContain('"fds[0]"');
    await expect(s.send(Buffer.from('x'), [b + 1000])).rejects.toMatchObject({ code: 'EBADF', syscall: 'sendmsg' });
    s.close();
    closeSync(b);
  });

  it('a listening socket is refused (it carries no messages), and the fd stays yours', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(dir, 'listen.sock'), resolve));
    // A copy of the server's fd that no handle of this loop watches.
    const [a, b] = socketpair('seqpacket');
    sendFds(a, Buffer.from('x'), [(server as unknown as { _handle: { fd: number } })._handle.fd]);
    const { fds: [listening] } = recvFds(b);
    server.close();
    const err = errorOf(() => new FdSocket(listening!));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(err.message).toContain('listening');
    expect(fdFlags(listening!)).toBeGreaterThanOrEqual(0);
    for (const fd of [listening!, a, b]) closeSync(fd);
  });

  it('send() with an fds array that changes under its getters sends what was checked, read once', async () => {
    const [a, b] = socketpair('seqpacket');
    const s = new FdSocket(a);
    const peer = new FdSocket(b);
    const got = collect(peer, 2);
    const f = openSync(files[0]!, 'r');
    for (const later of ['x', 2 ** 32 + 5]) {
      let reads = 0;
      const fds = [f];
      Object.defineProperty(fds, 0, { get: () => (reads++ === 0 ? f : later) });
      await s.send(Buffer.from('q'), fds);
      expect(reads).toBe(1);
    }
    for (const m of await got) {
      expect(m.fds).toHaveLength(1);
      expect(readText(m.fds[0]!)).toBe('file number 0');
      closeSync(m.fds[0]!);
    }
    closeSync(f);
    s.close();
    peer.close();
  });

  it('send() of a DataView of a detached ArrayBuffer throws a TypeError naming "data"', () => {
    const [a, b] = socketpair('stream');
    const s = new FdSocket(a);
    const buffer = new ArrayBuffer(8);
    const view = new DataView(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    const err = errorOf(() => s.send(view));
    expect(err).toBeInstanceOf(TypeError);
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(err.message).toContain('"data"');
    s.close();
    closeSync(b);
  });

  it('an fd already owned by an open FdSocket is refused (two would abort the process in libuv)', async () => {
    const [a, b] = socketpair('seqpacket');
    const first = new FdSocket(a);
    const err = errorOf(() => new FdSocket(a));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(err.message).toContain(`fd ${a} is already owned by an open FdSocket`);
    // The first is untouched and still works.
    const got = collect(first, 1);
    sendFds(b, Buffer.from('still here'), []);
    expect((await got).map((m) => m.data.toString())).toEqual(['still here']);
    first.close();
    // Once closed, the number is free for whatever gets it next.
    const [c, d] = socketpair('seqpacket');
    expect([c, d]).toContain(a); // the lowest free numbers
    new FdSocket(a).close();
    for (const fd of [b, c, d]) if (fd !== a) closeSync(fd);
  });

  it('an fd another handle of this event loop already watches is refused with a message that says so', async () => {
    const before = openFds();
    const [x, y] = socketpair('stream');
    const reader = new Socket({ fd: x, readable: true, writable: true });
    reader.on('data', () => {}); // libuv now polls x
    const err = errorOf(() => new FdSocket(x));
    expect(err).toMatchObject({ code: 'EEXIST', syscall: 'uv_poll_init' });
    expect(err.message).toContain(`fd ${x} is already watched by another handle on this event loop`);
    reader.destroy();
    await once(reader, 'close');
    closeSync(y);
    expect(openFds()).toEqual(before);
  });

  it("the number of another open FdSocket's private duplicate is refused, of this thread or another (closing it would make libuv abort the process); free again once that FdSocket is closed", () => {
    // In a child process, so an abort shows as a signal. The private
    // duplicate is found as the fd an FdSocket opens besides its own; it is
    // wrapped while its owner does not poll (a poll would make libuv refuse
    // the number itself), and the owner starts reading afterwards.
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Worker, isMainThread, parentPort } = require('node:worker_threads');
         const { once } = require('node:events');
         const fs = require('node:fs');
         const { FdSocket, sendFds } = require(${JSON.stringify(DIST)});
         const { socketpair } = require('@folk/socketpair');
         // Less readdir's own fd, gone once read.
         const fds = () => new Set(fs.readdirSync('/proc/self/fd').filter((n) => fs.existsSync('/proc/self/fd/' + n)).map(Number));
         const openFds = () => fs.readdirSync('/proc/self/fd').map((n) => { try { return n + ' -> ' + fs.readlinkSync('/proc/self/fd/' + n); } catch { return null; } }).filter(Boolean).sort();
         function wrapWithPrivate(fd) {
           const before = fds();
           const s = new FdSocket(fd);
           const added = [...fds()].filter((n) => !before.has(n) && n !== fd);
           if (added.length !== 1) throw new Error('expected one private fd, found ' + added);
           return [s, added[0]];
         }
         function attempt(fd) {
           try {
             new FdSocket(fd).close(); // closes fd
             return 'wrapped';
           } catch (err) {
             return { name: err.name, code: err.code, message: err.message };
           }
         }
         async function reads(s, peer) {
           const got = once(s, 'message');
           sendFds(peer, Buffer.from('still here'), []);
           return (await got)[0].data.toString();
         }
         (async () => {
           const report = {};
           await once(new Worker('', { eval: true }), 'exit'); // what any worker leaves behind
           const before = openFds();
           const [a, b] = socketpair('seqpacket');
           const [s, io] = wrapWithPrivate(a);
           report.sameThread = attempt(io);
           report.sameThreadFd = io;
           report.read = await reads(s, b);
           s.close();
           fs.closeSync(b);

           const w = new Worker(
             \`const { parentPort } = require('node:worker_threads');
              const { once } = require('node:events');
              const fs = require('node:fs');
              const { FdSocket, sendFds } = require(\${JSON.stringify(${JSON.stringify(DIST)})});
              const { socketpair } = require('@folk/socketpair');
              const before = new Set(fs.readdirSync('/proc/self/fd').map(Number));
              const [a, b] = socketpair('seqpacket');
              const s = new FdSocket(a);
              const io = fs.readdirSync('/proc/self/fd').filter((n) => fs.existsSync('/proc/self/fd/' + n)).map(Number).filter((n) => !before.has(n) && n !== a && n !== b);
              parentPort.postMessage(io);
              parentPort.once('message', async () => {
                const got = once(s, 'message');
                sendFds(b, Buffer.from('still here'), []);
                const [m] = await got;
                s.close();
                fs.closeSync(b);
                parentPort.postMessage(m.data.toString());
                parentPort.close();
              });\`,
             // Or Node warns as the worker closes b, which fs did not open.
             { eval: true, trackUnmanagedFds: false },
           );
           const exited = once(w, 'exit');
           const [[workerIo, ...more]] = await once(w, 'message');
           if (more.length) throw new Error('expected one private fd in the worker');
           report.otherThread = attempt(workerIo);
           report.otherThreadFd = workerIo;
           w.postMessage('go');
           [report.workerRead] = await once(w, 'message');
           await exited;

           // Closed, the number is free for a socket of the caller's.
           const pairs = [];
           while (pairs.length < 4 && !pairs.flat().includes(io)) pairs.push(socketpair('seqpacket'));
           if (pairs.flat().includes(io)) {
             const t = new FdSocket(io);
             report.reusedWrapped = t.fd === io;
             t.close();
           }
           for (const fd of pairs.flat()) if (fd !== io) fs.closeSync(fd);
           report.leaked = openFds().filter((l) => !before.includes(l));
           console.log(JSON.stringify(report));
         })();`,
      ],
      { encoding: 'utf8', cwd: PKG, timeout: 60_000 },
    );
    expect(r.stderr).toBe('');
    expect([r.status, r.signal]).toEqual([0, null]);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    for (const [key, fd] of [['sameThread', out['sameThreadFd']], ['otherThread', out['otherThreadFd']]] as const) {
      expect(out[key]).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
      expect((out[key] as { message: string }).message).toContain(
        `The "fd" argument is invalid: fd ${fd} is the private duplicate an open FdSocket works through`,
      );
    }
    expect(out).toMatchObject({ read: 'still here', workerRead: 'still here', reusedWrapped: true, leaked: [] });
  });

  it('a second concurrent iterator is refused', () => {
    const [a, b] = socketpair('seqpacket');
    const s = new FdSocket(a);
    s[Symbol.asyncIterator]();
    expect(errorOf(() => s[Symbol.asyncIterator]()).code).toBe('ERR_INVALID_STATE');
    s.close();
    closeSync(b);
  });
});
