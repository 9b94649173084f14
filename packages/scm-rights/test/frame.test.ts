// The stream frame header is written in two places: by the binding (TrySend
// in src/scm_rights.cc, on send()'s fast path) and by lib/frame.ts (for sends
// queued behind a full socket), and read by lib/frame.ts's decoder. These
// tests pin all three to the same bytes: what FdSocket.send puts on the wire,
// read back with plain read(2)s, is what encodeFrame builds; and what
// encodeFrame builds, written with plain sendmsg(2)s, FdSocket reads back as
// the message it encodes.
import { closeSync, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { FdSocket, type FdMessage, SCM_MAX_FD, sendFds } from '../lib/index.js';
import { encodeFrame, FRAME_HEADER_BYTES } from '../lib/frame.js';
import { openFds, target } from './helpers.js';

/** Bytes no shift or misplaced header goes unnoticed in: each is its index times 31, mod 251. */
function pattern(length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31) % 251;
  return b;
}

interface Case {
  name: string;
  payload: Buffer;
  nfds: number;
}

const CASES: Case[] = [
  { name: 'no fds', payload: Buffer.from('hello, frame'), nfds: 0 },
  { name: `${SCM_MAX_FD} fds (SCM_MAX_FD)`, payload: Buffer.from('many'), nfds: SCM_MAX_FD },
  { name: 'a zero-length payload', payload: Buffer.alloc(0), nfds: 0 },
  { name: 'a zero-length payload with fds', payload: Buffer.alloc(0), nfds: 3 },
  { name: 'a large payload (4 MiB, more than the socket buffer) with fds', payload: pattern(4 * 1024 * 1024), nfds: 2 },
];

let file: number;
beforeAll(() => {
  file = openSync('/dev/null', 'r');
});
afterAll(() => closeSync(file));

/** Everything the peer end `fd` reads with plain read(2)s (a net.Socket) until `length` bytes came. */
function readRaw(fd: number, length: number): Promise<Buffer> {
  const raw = new Socket({ fd, readable: true, writable: false });
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    raw.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= length) {
        raw.destroy();
        resolve(Buffer.concat(chunks));
      }
    });
    raw.on('error', reject);
  });
}

/** Write all of `bytes` to the non-blocking socket `fd` with sendFds, the fds with the first byte, as a peer in C would. */
async function writeAll(fd: number, bytes: Buffer, fds: number[]): Promise<void> {
  let off = 0;
  let first = true;
  while (off < bytes.length) {
    try {
      off += sendFds(fd, bytes.subarray(off), first ? fds : []);
      first = false;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      await new Promise((resolve) => setImmediate(resolve)); // let the reader drain the socket
    }
  }
}

function nextMessage(s: FdSocket): Promise<FdMessage> {
  return new Promise((resolve, reject) => {
    s.once('message', resolve);
    s.once('error', reject);
  });
}

describe('what send() writes is what encodeFrame builds', () => {
  it.each(CASES)('one message with $name, written by the binding on the fast path', async ({ payload, nfds }) => {
    const before = openFds();
    const [a, b] = socketpair('stream');
    const sock = new FdSocket(a);
    const wire = encodeFrame(payload, nfds);
    const read = readRaw(b, wire.length);
    const sent = sock.send(payload, Array(nfds).fill(file));
    // Whole in the kernel at once (the header from TrySend), except the one
    // larger than the socket buffer, whose rest waits in the queue.
    expect(sock.pendingSends).toBe(payload.length > 1024 * 1024 ? 1 : 0);
    await sent;
    expect((await read).equals(wire)).toBe(true);
    sock.close();
    await new Promise((resolve) => sock.once('close', resolve));
    // A plain read takes no fds: the kernel dropped them, nothing of ours is left.
    expect(openFds()).toEqual(before);
  });

  it('every case back to back, the rest queued behind the large one (their headers from encodeFrame)', async () => {
    const before = openFds();
    const [a, b] = socketpair('stream');
    const sock = new FdSocket(a);
    const order = [...CASES].reverse(); // the large one first
    const wire = Buffer.concat(order.map((c) => encodeFrame(c.payload, c.nfds)));
    const read = readRaw(b, wire.length);
    const sends = order.map((c) => sock.send(c.payload, Array(c.nfds).fill(file)));
    expect(sock.pendingSends).toBe(order.length);
    await Promise.all(sends);
    expect((await read).equals(wire)).toBe(true);
    sock.close();
    await new Promise((resolve) => sock.once('close', resolve));
    expect(openFds()).toEqual(before);
  });
});

describe('what encodeFrame builds, FdSocket reads as the message it encodes', () => {
  it.each(CASES)('$name, written with plain sendmsg calls', async ({ payload, nfds }) => {
    const before = openFds();
    const [a, b] = socketpair('stream', { nonblock: true });
    const sock = new FdSocket(b);
    const got = nextMessage(sock);
    await writeAll(a, encodeFrame(payload, nfds), Array(nfds).fill(file));
    const m = await got;
    expect(m.data.equals(payload)).toBe(true);
    expect(m.fds).toHaveLength(nfds);
    for (const fd of m.fds) expect(target(fd)).toBe('/dev/null');
    for (const fd of m.fds) closeSync(fd);
    closeSync(a);
    sock.close();
    await new Promise((resolve) => sock.once('close', resolve));
    expect(openFds()).toEqual(before);
  });

  it('fd-less frames merged into one write, and a header split into single bytes', async () => {
    const [a, b] = socketpair('stream', { nonblock: true });
    const sock = new FdSocket(b);
    const got: FdMessage[] = [];
    sock.on('message', (m) => got.push(m));
    const small = CASES.filter((c) => c.nfds === 0);
    await writeAll(a, Buffer.concat(small.map((c) => encodeFrame(c.payload, 0))), []);
    const split = encodeFrame(Buffer.from('split'), 1);
    await writeAll(a, split.subarray(0, 1), [file]); // the fds ride on the header's first byte
    for (let i = 1; i < FRAME_HEADER_BYTES; i++) await writeAll(a, split.subarray(i, i + 1), []);
    await writeAll(a, split.subarray(FRAME_HEADER_BYTES), []);
    closeSync(a);
    await new Promise((resolve) => sock.once('close', resolve)); // end of file, then close
    expect(got.map((m) => [m.data.toString('hex'), m.fds.length])).toEqual([
      ...small.map((c) => [c.payload.toString('hex'), 0]),
      [Buffer.from('split').toString('hex'), 1],
    ]);
    expect(target(got.at(-1)!.fds[0]!)).toBe('/dev/null');
    closeSync(got.at(-1)!.fds[0]!);
  });
});
