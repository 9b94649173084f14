import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { FdSocket, type FdMessage, SCM_MAX_FD, closeFds, peerCredentials, peerPidFd, recvFds, sendFds } from '../lib/index.js';
import {
  DIST,
  O_CLOEXEC,
  errorOf,
  enableSocketOptions,
  fdFlags,
  frame,
  openFds,
  openPidFds,
  python,
  runLimited,
  runOutOfFds,
  runWithFd3,
  target,
} from './helpers.js';

/** For each n: n copies of `f` sent on `a` arrive whole on `b` through recvFds({ maxFds: n }), and are closed. */
function arriveWhole(a: number, b: number, f: number, counts: number[]): void {
  for (const n of counts) {
    sendFds(a, Buffer.from(`${n}`), Array(n).fill(f));
    const m = recvFds(b, { maxFds: n });
    expect([m.data.toString(), m.fds.length]).toEqual([`${n}`, n]);
    for (const fd of m.fds) closeSync(fd);
  }
}

let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'scm-rights-'));
  file = join(dir, 'hello.txt');
  writeFileSync(file, 'hello from a file\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pair(type: 'stream' | 'seqpacket' | 'dgram'): [number, number] {
  return socketpair(type);
}

function readAll(fd: number, size = 4096, position: number | null = null): string {
  const buf = Buffer.alloc(size);
  return buf.subarray(0, readSync(fd, buf, 0, size, position)).toString();
}

describe.each(['seqpacket', 'stream'] as const)('sendFds/recvFds on %s', (type) => {
  it.each([1, 2, 253])('passes %i fds in one message, each the same open file, close-on-exec', (count) => {
    const before = openFds();
    const [a, b] = pair(type);
    const f = openSync(file, 'r');
    const fds = Array.from({ length: count }, () => f);
    expect(sendFds(a, Buffer.from('payload'), fds)).toBe(7);
    const m = recvFds(b);
    expect(m.data.toString()).toBe('payload');
    expect(m.fds).toHaveLength(count);
    expect(new Set(m.fds).size).toBe(count);
    const st = fstatSync(f);
    for (const fd of m.fds) {
      expect(fd).not.toBe(f);
      expect(fstatSync(fd).ino).toBe(st.ino);
      expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);
      closeSync(fd);
    }
    for (const fd of [a, b, f]) closeSync(fd);
    expect(openFds()).toEqual(before);
  });

  it('the received file shares the sender’s open file description (offset included)', () => {
    const [a, b] = pair(type);
    const f = openSync(file, 'r');
    readSync(f, Buffer.alloc(6), 0, 6, null); // advance the shared offset past "hello "
    sendFds(a, Buffer.from('x'), [f]);
    const [g] = recvFds(b).fds;
    expect(readAll(g!)).toBe('from a file\n');
    for (const fd of [a, b, f, g!]) closeSync(fd);
  });

  it('passes a pipe: the receiver writes into it and the sender reads', () => {
    const [a, b] = pair(type);
    const p = pipe();
    sendFds(a, Buffer.from('w'), [p.write]);
    closeSync(p.write);
    const [w2] = recvFds(b).fds;
    expect(target(w2!)).toMatch(/^pipe:\[\d+\]$/);
    writeSync(w2!, 'through the pipe');
    closeSync(w2!);
    expect(readAll(p.read)).toBe('through the pipe');
    for (const fd of [a, b, p.read]) closeSync(fd);
  });

  it('passes a socket: the receiver talks through it', () => {
    const [a, b] = pair(type);
    const [x, y] = socketpair('stream');
    sendFds(a, Buffer.from('s'), [x]);
    closeSync(x);
    const [x2] = recvFds(b).fds;
    expect(target(x2!)).toMatch(/^socket:/);
    writeSync(x2!, 'over the passed socket');
    expect(readAll(y)).toBe('over the passed socket');
    for (const fd of [a, b, x2!, y]) closeSync(fd);
  });

  it('an empty non-blocking socket throws EAGAIN; EOF is empty data and no fds', () => {
    const [a, b] = socketpair(type, { nonblock: true });
    expect(errorOf(() => recvFds(b)).code).toBe('EAGAIN');
    closeSync(a);
    expect(recvFds(b)).toEqual({ data: Buffer.alloc(0), fds: [] });
    closeSync(b);
  });

  it('a full non-blocking socket throws EAGAIN and sends no fds', () => {
    const before = openFds();
    const [a, b] = socketpair(type, { nonblock: true });
    const f = openSync(file, 'r');
    const chunk = Buffer.alloc(4096);
    let err: NodeJS.ErrnoException | undefined;
    let sent = 0;
    for (let i = 0; i < 100_000 && !err; i++) {
      try {
        sendFds(a, chunk, [f]);
        sent++;
      } catch (e) {
        err = e as NodeJS.ErrnoException;
      }
    }
    expect(err?.code).toBe('EAGAIN');
    expect(err?.syscall).toBe('sendmsg');
    expect(err?.errno).toBe(-11);
    // Drain: every fd that arrives is one the kernel accepted.
    let received = 0;
    for (;;) {
      let m;
      try {
        m = recvFds(b, { maxBytes: 4096 });
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe('EAGAIN');
        break;
      }
      received += m.fds.length;
      for (const fd of m.fds) closeSync(fd);
    }
    expect(received).toBe(sent);
    for (const fd of [a, b, f]) closeSync(fd);
    expect(openFds()).toEqual(before);
  });

  it('MSG_CTRUNC from a small maxFds closes every fd that arrived and throws ERR_FDS_TRUNCATED', () => {
    const before = openFds();
    const [a, b] = pair(type);
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('five'), [f, f, f, f, f]);
    const err = errorOf(() => recvFds(b, { maxFds: 2 }));
    expect(err.code).toBe('ERR_FDS_TRUNCATED');
    expect(err.message).toMatch(/MSG_CTRUNC/);
    expect(err.message).toMatch(/more fds than maxFds \(2\).*every fd that arrived was closed/);
    // maxFds: 0 takes none at all.
    sendFds(a, Buffer.from('one'), [f]);
    expect(errorOf(() => recvFds(b, { maxFds: 0 })).code).toBe('ERR_FDS_TRUNCATED');
    for (const fd of [a, b, f]) closeSync(fd);
    expect(openFds()).toEqual(before);
  });

  it('MSG_CTRUNC because the process ran out of fds says so rather than blaming maxFds', () => {
    const out = runOutOfFds(
      type,
      `try { recvFds(b); } catch (e) { console.log(JSON.stringify([e.code, e.message, count() - before])); }`,
    );
    const [code, message, leaked] = JSON.parse(out) as [string, string, number];
    expect(code).toBe('ERR_FDS_TRUNCATED');
    expect(message).toMatch(/ran out of fds/);
    expect(message).not.toMatch(/more fds than maxFds/);
    expect(leaked).toBe(0);
  });

  it('10,000 passes leave /proc/self/fd as it was', () => {
    const [a, b] = pair(type);
    const f = openSync(file, 'r');
    const before = openFds();
    const data = Buffer.from('n');
    for (let i = 0; i < 10_000; i++) {
      sendFds(a, data, [f]);
      const m = recvFds(b);
      if (m.fds.length !== 1 || m.data[0] !== 0x6e) throw new Error(`pass ${i} got ${JSON.stringify(m)}`);
      closeSync(m.fds[0]!);
    }
    expect(openFds()).toEqual(before);
    for (const fd of [a, b, f]) closeSync(fd);
  });
});

describe('data as any ArrayBufferView, as the README says', () => {
  it('sendFds and FdSocket.send take a typed array or DataView and send its bytes (a view into a larger buffer)', async () => {
    const [a, b] = pair('seqpacket');
    const backing = new ArrayBuffer(16);
    new Uint8Array(backing).set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    const words: Int32Array = new Int32Array(backing, 4, 2);
    const view: DataView = new DataView(backing, 10, 3);
    expect(sendFds(a, words, [])).toBe(8);
    expect([...recvFds(b).data]).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    expect(sendFds(a, view, [])).toBe(3);
    expect([...recvFds(b).data]).toEqual([10, 11, 12]);
    const s = new FdSocket(a);
    await s.send(view);
    await s.send(new Uint16Array(backing, 0, 1));
    expect([...recvFds(b).data]).toEqual([10, 11, 12]);
    expect([...recvFds(b).data]).toEqual([0, 1]);
    s.close();
    closeSync(b);
  });
});

describe('stream sockets: where fds land (what FdSocket framing relies on)', () => {
  it('a read merges fd-less writes up to the next write with fds, takes its fds and stops right after it', () => {
    const [a, b] = pair('stream');
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('AAA'), []);
    sendFds(a, Buffer.from('BBB'), []);
    sendFds(a, Buffer.from('CCC'), [f]);
    sendFds(a, Buffer.from('DDD'), []);
    sendFds(a, Buffer.from('EEE'), [f, f]);
    sendFds(a, Buffer.from('FFF'), [f]);
    const reads = [recvFds(b), recvFds(b), recvFds(b)];
    expect(reads.map((r) => [r.data.toString(), r.fds.length])).toEqual([
      ['AAABBBCCC', 1],
      ['DDDEEE', 2],
      ['FFF', 1],
    ]);
    for (const r of reads) for (const fd of r.fds) closeSync(fd);
    for (const fd of [a, b, f]) closeSync(fd);
  });

  it('a short read of the write with fds still takes them all; the rest of its bytes come fd-less', () => {
    const [a, b] = pair('stream');
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('0123456789'), [f]);
    const first = recvFds(b, { maxBytes: 4 });
    expect([first.data.toString(), first.fds.length]).toEqual(['0123', 1]);
    const rest = recvFds(b);
    expect([rest.data.toString(), rest.fds.length]).toEqual(['456789', 0]);
    for (const fd of [a, b, f, first.fds[0]!]) closeSync(fd);
  });
});

describe('message sockets', () => {
  it.each(['seqpacket', 'stream'] as const)(
    '%s with SO_PASSCRED (credentials ahead of the fds): maxFds still counts only fds',
    async (type) => {
      const before = openFds();
      // CPython sets SO_PASSCRED on the receiving end (systemd's
      // PassCredentials= does the same to the sockets it hands over).
      const made = fromPython(`
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_${type.toUpperCase()})
b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
fds = [a.fileno(), b.fileno()]`);
      const [a, b] = made.fds as [number, number];
      const f = openSync(file, 'r');
      arriveWhole(a, b, f, [1, 2, SCM_MAX_FD, 0]);
      // One more than maxFds is still refused, every fd closed.
      sendFds(a, Buffer.from('3'), [f, f, f]);
      expect(errorOf(() => recvFds(b, { maxFds: 2 })).message).toMatch(/more fds than maxFds \(2\)/);
      // FdSocket reads with room to spare already.
      const s = new FdSocket(b);
      const got = new Promise<FdMessage>((resolve) => s.once('message', resolve));
      sendFds(a, type === 'stream' ? frame('all', SCM_MAX_FD) : Buffer.from('all'), Array(SCM_MAX_FD).fill(f));
      const m = await got;
      expect([m.data.toString(), m.fds.length]).toEqual(['all', SCM_MAX_FD]);
      for (const fd of [...m.fds, a, f]) closeSync(fd);
      s.close();
      expect(openFds()).toEqual(before);
    },
  );

  it.for(['seqpacket', 'stream'] as const)(
    '%s with SO_PASSPIDFD (a pidfd with every message, Linux 6.5+): recvFds closes it, and a full SCM_RIGHTS beside it and credentials still fits',
    (type, ctx) => {
      const before = openFds();
      const [a, b] = pair(type);
      if (!enableSocketOptions(b, ['SO_PASSPIDFD'])) {
        for (const fd of [a, b]) closeSync(fd);
        ctx.skip('SO_PASSPIDFD needs Linux 6.5');
      }
      const f = openSync(file, 'r');
      // The kernel installs a pidfd of the sender for every message read,
      // fds or not; none may outlive the call.
      for (let i = 0; i < 100; i++) {
        sendFds(a, Buffer.from(`${i}`), i % 10 === 0 ? [f, f] : []);
        const m = recvFds(b);
        expect([m.data.toString(), m.fds.map(target)]).toEqual([`${i}`, i % 10 === 0 ? [file, file] : []]);
        for (const fd of m.fds) closeSync(fd);
      }
      expect(openPidFds()).toEqual([]);
      // Credentials come before the fds and the pidfd after them: with room
      // for both, 253 fds arrive whole (no MSG_CTRUNC), at every maxFds.
      expect(enableSocketOptions(b, ['SO_PASSCRED', 'SO_PASSSEC'])).toBe(true);
      arriveWhole(a, b, f, [SCM_MAX_FD, 1, 0]);
      // One more than maxFds is still refused, with the pidfd closed too.
      sendFds(a, Buffer.from('3'), [f, f, f]);
      expect(errorOf(() => recvFds(b, { maxFds: 2 })).code).toBe('ERR_FDS_TRUNCATED');
      for (const fd of [a, b, f]) closeSync(fd);
      expect(openFds()).toEqual(before);
    },
  );

  it('a message longer than maxBytes throws ERR_MESSAGE_TRUNCATED and closes its fds', () => {
    const before = openFds();
    const [a, b] = pair('seqpacket');
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('0123456789'), [f, f]);
    sendFds(a, Buffer.from('next'), []);
    const err = errorOf(() => recvFds(b, { maxBytes: 4 }));
    expect(err.code).toBe('ERR_MESSAGE_TRUNCATED');
    expect(err.message).toMatch(/MSG_TRUNC/);
    expect(recvFds(b).data.toString()).toBe('next'); // the tail was dropped, the next message is intact
    for (const fd of [a, b, f]) closeSync(fd);
    expect(openFds()).toEqual(before);
  });

  it('a datagram larger than the socket buffer is EMSGSIZE and sends nothing, fds included', () => {
    const [a, b] = socketpair('seqpacket', { nonblock: true });
    const f = openSync(file, 'r');
    expect(errorOf(() => sendFds(a, Buffer.alloc(4 * 1024 * 1024), [f]))).toMatchObject({
      code: 'EMSGSIZE',
      errno: -90,
      syscall: 'sendmsg',
    });
    expect(errorOf(() => recvFds(b)).code).toBe('EAGAIN');
    for (const fd of [a, b, f]) closeSync(fd);
  });

  it('works on datagram socketpairs too, and an empty seqpacket message can carry fds', () => {
    const [a, b] = pair('dgram');
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('d'), [f]);
    const m = recvFds(b);
    expect(m.data.toString()).toBe('d');
    closeSync(m.fds[0]!);
    const [c, d] = pair('seqpacket');
    expect(sendFds(c, Buffer.alloc(0), [f])).toBe(0);
    const e = recvFds(d);
    expect(e.data.length).toBe(0);
    expect(e.fds).toHaveLength(1);
    for (const fd of [a, b, c, d, f, e.fds[0]!]) closeSync(fd);
  });

  it('a stream socket refuses fds with no bytes (Linux would drop them silently)', () => {
    const [a, b] = pair('stream');
    const err = errorOf(() => sendFds(a, Buffer.alloc(0), [a]));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(err.message).toMatch(/"data"/);
    closeSync(a);
    closeSync(b);
  });
});

describe('each kind of fd, passed from CPython and used here', () => {
  it.each(['seqpacket', 'stream'] as const)('%s: memfd, pidfd, listening TCP socket, pipe, file', async (type) => {
    const before = openFds();
    const [ours, theirs] = pair(type);
    // The child makes one of each, sends them with socket.send_fds, then waits
    // to be told the receiver is done; its sleeping child is the pidfd's target.
    const script = `
import os, socket, subprocess, sys
s = socket.socket(fileno=3)
mem = os.memfd_create('scm-test')
os.write(mem, b'in memory')
sleeper = subprocess.Popen(['sleep', '60'])
pidfd = os.pidfd_open(sleeper.pid)
lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lst.bind(('127.0.0.1', 0)); lst.listen()
r, w = os.pipe()
os.write(w, b'piped'); os.close(w)
f = os.open(${JSON.stringify(file)}, os.O_RDONLY)
meta = '%d %d' % (sleeper.pid, lst.getsockname()[1])
socket.send_fds(s, [meta.encode()], [mem, pidfd, lst.fileno(), r, f])
for fd in (mem, pidfd, r, f): os.close(fd)
lst.close()
s.recv(1)
print(sleeper.wait())
`;
    let received: number[] = [];
    const run = await runWithFd3('python3', ['-c', script], theirs, async () => {
      const m = recvFds(ours); // blocks until python has sent: fine in a test
      received = m.fds;
      const [sleeperPid, port] = m.data.toString().split(' ').map(Number) as [number, number];
      const [mem, pidfd, lst, r, f] = m.fds as [number, number, number, number, number];
      for (const fd of m.fds) expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);

      // memfd: read from offset 0 (the writer left the offset at the end).
      expect(target(mem)).toMatch(/^\/memfd:scm-test/);
      expect(readAll(mem, 64, 0)).toBe('in memory');

      // pidfd: names the sleeper; kill it through the pidfd from another
      // process (the fd placed at fd 3 of python).
      expect(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8')).toMatch(new RegExp(`^Pid:\\s+${sleeperPid}$`, 'm'));
      await python('import signal; signal.pidfd_send_signal(3, signal.SIGKILL)', pidfd);

      // The listening TCP socket: accept a connection on it here.
      const server = net.createServer((c) => c.end('accepted here'));
      await new Promise<void>((resolve) => server.listen({ fd: lst }, resolve));
      const client = net.connect(port, '127.0.0.1');
      client.setEncoding('utf8');
      let got = '';
      client.on('data', (s: string) => (got += s));
      await once(client, 'end');
      expect(got).toBe('accepted here');
      await new Promise((resolve) => server.close(resolve)); // closes lst

      expect(readAll(r)).toBe('piped');
      expect(readAll(f)).toBe('hello from a file\n');
      for (const fd of [mem, pidfd, r, f]) closeSync(fd);
      writeSync(ours, 'k');
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe('-9'); // the sleeper died of our SIGKILL
    expect(received).toHaveLength(5);
    closeSync(ours);
    closeSync(theirs);
    expect(openFds()).toEqual(before);
  });
});

describe('each kind of fd, passed from here to CPython and used there', () => {
  it.each(['seqpacket', 'stream'] as const)('%s: memfd, pidfd, listening TCP socket, pipe, socket, file', async (type) => {
    const before = openFds();
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = once(sleeper, 'exit');
    // The kinds Node cannot make: a memfd, a pidfd for our sleeper, and a
    // listening TCP socket nothing in this process polls.
    const made = fromPython(`
mem = os.memfd_create('to-python')
os.write(mem, b'memfd from node')
lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lst.bind(('127.0.0.1', 0)); lst.listen()
info = str(lst.getsockname()[1])
fds = [mem, os.pidfd_open(${sleeper.pid}), lst.fileno()]`);
    const [mem, pidfd, lst] = made.fds as [number, number, number];
    const port = Number(made.info);
    const p = pipe();
    const [x, y] = socketpair('stream');
    const f = openSync(file, 'r');
    const [ours, theirs] = pair(type);
    expect(sendFds(ours, Buffer.from('kinds'), [mem, pidfd, lst, p.write, x, f])).toBe(5);
    // They are the receiver's now: ours go, so only its copies keep them alive.
    for (const fd of [mem, pidfd, lst, p.write, x, f]) closeSync(fd);
    let accepted = '';
    const run = await runWithFd3(
      'python3',
      [
        '-c',
        `import os, select, signal, socket
s = socket.socket(fileno=3)
msg, fds, flags, addr = socket.recv_fds(s, 100, 10)
mem, pidfd, lst, w, sock, f = fds
print(msg.decode(), len(fds))
print(os.pread(mem, 100, 0).decode())
signal.pidfd_send_signal(pidfd, signal.SIGKILL)
print('exited' if select.select([pidfd], [], [], 30)[0] else 'still running')
c, _ = socket.socket(fileno=lst).accept()
c.sendall(b'accepted in python'); c.close()
os.write(w, b'into the pipe')
socket.socket(fileno=sock).sendall(b'over the socket')
print(os.read(f, 100).decode().strip())`,
      ],
      theirs,
      async () => {
        const client = net.connect(port, '127.0.0.1');
        client.setEncoding('utf8').on('data', (s: string) => (accepted += s));
        await once(client, 'end');
        client.destroy();
      },
    );
    expect(run.stderr).toBe('');
    expect(run.stdout.split('\n')).toEqual(['kinds 6', 'memfd from node', 'exited', 'hello from a file', '']);
    expect(await exited).toEqual([null, 'SIGKILL']);
    expect(accepted).toBe('accepted in python');
    expect(readAll(p.read)).toBe('into the pipe');
    expect(readAll(y)).toBe('over the socket');
    for (const fd of [p.read, y, ours, theirs]) closeSync(fd);
    expect(openFds()).toEqual(before);
  });
});

describe('interop with CPython', () => {
  it.each(['seqpacket', 'stream'] as const)('%s: Node sends, socket.recv_fds receives and uses the fds', async (type) => {
    const [ours, theirs] = pair(type);
    const p = pipe();
    writeSync(p.write, 'pipe data');
    closeSync(p.write);
    const f = openSync(file, 'r');
    sendFds(ours, Buffer.from('from node'), [f, p.read]);
    closeSync(f);
    closeSync(p.read);
    const r = await python(
      `
import os, socket
s = socket.socket(fileno=3)
msg, fds, flags, addr = socket.recv_fds(s, 1024, 10)
print(msg.decode(), len(fds), flags)
print(os.read(fds[0], 100).decode().strip())
print(os.read(fds[1], 100).decode())
`,
      theirs,
    );
    expect(r.stdout.split('\n')).toEqual(['from node 2 0', 'hello from a file', 'pipe data', '']);
    closeSync(ours);
    closeSync(theirs);
  });

  it.each(['seqpacket', 'stream'] as const)('%s: socket.send_fds sends, recvFds receives', async (type) => {
    const [ours, theirs] = pair(type);
    await python(
      `
import os, socket
s = socket.socket(fileno=3)
f = os.open(${JSON.stringify(file)}, os.O_RDONLY)
socket.send_fds(s, [b'from python'], [f, f, f])
socket.send_fds(s, [b'second'], [])
`,
      theirs,
    );
    const m = recvFds(ours);
    expect(m.data.toString()).toBe('from python');
    expect(m.fds).toHaveLength(3);
    expect(readAll(m.fds[0]!)).toBe('hello from a file\n');
    expect(recvFds(ours).data.toString()).toBe('second');
    for (const fd of [...m.fds, ours, theirs]) closeSync(fd);
  });
});

describe('peer credentials', () => {
  it('a socketpair’s peer is this process; peerPidFd is a close-on-exec pidfd for it', () => {
    const [a, b] = pair('stream');
    expect(peerCredentials(a)).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    const pidfd = peerPidFd(b);
    expect(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8')).toMatch(new RegExp(`^Pid:\\s+${process.pid}$`, 'm'));
    expect(fdFlags(pidfd) & O_CLOEXEC).toBe(O_CLOEXEC);
    for (const fd of [a, b, pidfd]) closeSync(fd);
  });

  it('names another process that connected to our listening socket', async () => {
    const path = join(dir, 'peer.sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const child = spawn('python3', [
      '-c',
      `import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(${JSON.stringify(path)}); s.recv(1)`,
    ]);
    const [conn] = (await once(server, 'connection')) as [net.Socket];
    const fd = (conn as unknown as { _handle: { fd: number } })._handle.fd;
    const creds = peerCredentials(fd);
    expect(creds.pid).toBe(child.pid);
    const pidfd = peerPidFd(fd);
    expect(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8')).toMatch(new RegExp(`^Pid:\\s+${child.pid}$`, 'm'));
    closeSync(pidfd);
    conn.end('x');
    await once(child, 'exit');
    conn.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('a socket with no peer process is ENOTCONN, saying why, for peerCredentials and peerPidFd alike', () => {
    const before = openFds();
    // What the kernel says for these is no error: SO_PEERCRED gives pid 0 and
    // uid = gid = 2 ** 32 - 1, SO_PEERPIDFD ENODATA, and a listening AF_UNIX
    // socket names its own process. CPython makes each kind of socket.
    const made = fromPython(`
def unix(kind): return socket.socket(socket.AF_UNIX, kind)
lst = unix(socket.SOCK_STREAM); lst.bind('\\0scm-rights-test-%d' % os.getpid()); lst.listen()
dlst = unix(socket.SOCK_DGRAM); dlst.bind('\\0scm-rights-test-d%d' % os.getpid())
dcon = unix(socket.SOCK_DGRAM); dcon.connect(dlst.getsockname())
tlst = socket.socket(socket.AF_INET, socket.SOCK_STREAM); tlst.bind(('127.0.0.1', 0)); tlst.listen()
tcon = socket.create_connection(tlst.getsockname())
socks = [unix(socket.SOCK_STREAM), unix(socket.SOCK_SEQPACKET), unix(socket.SOCK_DGRAM), lst, dcon,
         socket.socket(socket.AF_INET, socket.SOCK_STREAM), tlst, tcon]
fds = [x.fileno() for x in socks]`);
    const cases: [number, RegExp][] = [
      [made.fds[0]!, /is not connected$/], // AF_UNIX stream
      [made.fds[1]!, /is not connected$/], // AF_UNIX seqpacket
      [made.fds[2]!, /datagram socket that is unconnected or was connected with connect\(2\)/],
      [made.fds[3]!, /is a listening socket/], // AF_UNIX, not yet accepting
      [made.fds[4]!, /datagram socket that is unconnected or was connected with connect\(2\)/],
      [made.fds[5]!, /is not an AF_UNIX socket \(address family 2\)/], // TCP, unconnected
      [made.fds[6]!, /is not an AF_UNIX socket \(address family 2\)/], // TCP, listening
      [made.fds[7]!, /is not an AF_UNIX socket \(address family 2\)/], // TCP, connected
    ];
    for (const [fd, why] of cases) {
      for (const [fn, option] of [
        [peerCredentials, 'SO_PEERCRED'],
        [peerPidFd, 'SO_PEERPIDFD'],
      ] as const) {
        const err = errorOf(() => fn(fd));
        expect(err).toMatchObject({ code: 'ENOTCONN', errno: -107, syscall: 'getsockopt' });
        expect(err.message).toMatch(new RegExp(`^ENOTCONN: socket has no peer process, getsockopt ${option}: fd ${fd} `));
        expect(err.message).toMatch(why);
      }
    }
    // A pipe is no socket at all.
    const p = pipe();
    expect(errorOf(() => peerCredentials(p.read))).toMatchObject({ code: 'ENOTSOCK', syscall: 'getsockopt' });
    expect(errorOf(() => peerPidFd(p.write))).toMatchObject({ code: 'ENOTSOCK', syscall: 'getsockopt' });
    for (const fd of [...made.fds, p.read, p.write]) closeSync(fd);
    expect(openFds()).toEqual(before); // no pidfd was made on the way to an error
  });

  it('a client whose connection is not accepted yet names the listening process', () => {
    const made = fromPython(`
lst = socket.socket(socket.AF_UNIX); lst.bind('\\0scm-rights-test-%d' % os.getpid()); lst.listen()
c = socket.socket(socket.AF_UNIX); c.connect(lst.getsockname())
info = str(os.getpid())
fds = [c.fileno(), lst.fileno()]`);
    const [client, listener] = made.fds as [number, number];
    expect(peerCredentials(client)).toEqual({ pid: Number(made.info), uid: process.getuid!(), gid: process.getgid!() });
    expect(errorOf(() => peerCredentials(listener)).code).toBe('ENOTCONN');
    for (const fd of made.fds) closeSync(fd);
  });

  it('a kernel before 6.5 (no SO_PEERPIDFD): ENOPROTOOPT saying which Linux it needs, and no fd made', () => {
    // This kernel has SO_PEERPIDFD, so take it away the way seccomp can: a
    // filter makes getsockopt(SOL_SOCKET, SO_PEERPIDFD) fail with
    // ENOPROTOOPT, the errno an older kernel returns for an unknown option.
    // CPython installs it (ctypes prctl) and execs Node under it.
    const seccomp = `
import ctypes, os, platform, struct, sys
arch, nr = {'x86_64': (0xc000003e, 55), 'aarch64': (0xc00000b7, 209)}[platform.machine()]
ld = lambda off: struct.pack('HBBI', 0x20, 0, 0, off)
skip_unless = lambda k, to_allow: struct.pack('HBBI', 0x15, 0, to_allow, k)
ret = lambda k: struct.pack('HBBI', 0x06, 0, 0, k)
prog = b''.join([ld(4), skip_unless(arch, 7), ld(0), skip_unless(nr, 5),
                 ld(24), skip_unless(1, 3),   # level SOL_SOCKET
                 ld(32), skip_unless(77, 1),  # optname SO_PEERPIDFD
                 ret(0x00050000 | 92), ret(0x7fff0000)])  # ERRNO(ENOPROTOOPT), ALLOW
filt = ctypes.create_string_buffer(prog)
fprog = ctypes.create_string_buffer(struct.pack('HxxxxxxP', len(prog) // 8, ctypes.addressof(filt)))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, fprog, 0, 0):  # NO_NEW_PRIVS, SECCOMP filter
    raise SystemExit('prctl: %s' % os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])`;

    const script = `const fs = require('node:fs');
      const { peerCredentials, peerPidFd } = require(${JSON.stringify(DIST)});
      const { socketpair } = require('@folk/socketpair');
      const [a] = socketpair('stream');
      const count = () => fs.readdirSync('/proc/self/fd').length;
      const before = count();
      let err = null;
      try { peerPidFd(a); } catch (e) { err = { code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }; }
      console.log(JSON.stringify([err, count() - before, peerCredentials(a).pid === process.pid]));`;
    const out = execFileSync('python3', ['-c', seccomp, process.execPath, '-e', script], {
      encoding: 'utf8',
      cwd: join(DIST, '..', '..'),
    });
    expect(JSON.parse(out)).toEqual([
      {
        code: 'ENOPROTOOPT',
        errno: -92,
        syscall: 'getsockopt',
        message: 'ENOPROTOOPT: protocol not available, getsockopt: SO_PEERPIDFD needs Linux 6.5 or later',
      },
      0,
      true, // SO_PEERCRED is untouched
    ]);
  });

  it('reports ENOTSOCK for a file', () => {
    const f = openSync(file, 'r');
    expect(errorOf(() => peerCredentials(f)).code).toBe('ENOTSOCK');
    expect(errorOf(() => peerPidFd(f)).code).toBe('ENOTSOCK');
    closeSync(f);
  });
});

describe('bad arguments', () => {
  it('a closed fd gives EBADF, a file gives ENOTSOCK, naming the syscall', () => {
    const [a, b] = pair('seqpacket');
    closeSync(b);
    const f = openSync(file, 'r');
    const closed = a; // closed below; nothing opens in between
    closeSync(a);
    const e1 = errorOf(() => sendFds(closed, Buffer.from('x'), []));
    expect(e1).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'sendmsg' });
    expect(e1.message).toBe('EBADF: bad file descriptor, sendmsg');
    expect(errorOf(() => recvFds(closed))).toMatchObject({ code: 'EBADF', syscall: 'recvmsg' });
    expect(errorOf(() => sendFds(f, Buffer.from('x'), [f]))).toMatchObject({ code: 'ENOTSOCK', syscall: 'sendmsg' });
    expect(errorOf(() => recvFds(f))).toMatchObject({ code: 'ENOTSOCK', syscall: 'recvmsg' });
    closeSync(f);
  });

  it('a DataView of a detached ArrayBuffer is a TypeError naming "data", and nothing is sent; a detached typed array is empty', () => {
    const [a, b] = socketpair('seqpacket', { nonblock: true });
    const buffer = new ArrayBuffer(8);
    const view = new DataView(buffer);
    const bytes = new Uint8Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    const err = errorOf(() => sendFds(a, view, []));
    expect(err).toBeInstanceOf(TypeError);
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(err.message).toMatch(/^The "data" argument is a view of a detached ArrayBuffer/);
    expect(errorOf(() => recvFds(b)).code).toBe('EAGAIN');
    expect(sendFds(a, bytes, [])).toBe(0); // the engine reads a detached typed array as empty
    expect(recvFds(b).data.length).toBe(0);
    closeSync(a);
    closeSync(b);
  });

  it('an fds array that changes under its getters sends exactly what was checked, read once', () => {
    const [a, b] = socketpair('seqpacket', { nonblock: true });
    const f = openSync(file, 'r');
    // A getter that gives the checked fd first and something else after.
    for (const later of ['x', 2 ** 32 + 5, -5]) {
      let reads = 0;
      const fds = [f];
      Object.defineProperty(fds, 0, { get: () => (reads++ === 0 ? f : later) });
      expect(sendFds(a, Buffer.from('q'), fds)).toBe(1);
      expect(reads).toBe(1);
      const got = recvFds(b);
      expect(got.fds).toHaveLength(1);
      expect(readAll(got.fds[0]!, 4096, 0)).toBe('hello from a file\n'); // the file, not fd 5 or anything else
      closeSync(got.fds[0]!);
    }
    // One that grows past 253 while it is read: still the 253 that were checked.
    const grows = new Array(SCM_MAX_FD).fill(f);
    Object.defineProperty(grows, 0, { get: () => (grows.push(f), f) });
    expect(sendFds(a, Buffer.from('q'), grows)).toBe(1);
    const many = recvFds(b);
    expect(many.fds).toHaveLength(SCM_MAX_FD);
    for (const fd of many.fds) closeSync(fd);
    closeSync(f);
    closeSync(a);
    closeSync(b);
  });

  it('a closed fd among the fds gives EBADF and sends nothing', () => {
    const [a, b] = socketpair('seqpacket', { nonblock: true });
    const f = openSync(file, 'r');
    closeSync(f);
    expect(errorOf(() => sendFds(a, Buffer.from('x'), [f])).code).toBe('EBADF');
    expect(errorOf(() => recvFds(b)).code).toBe('EAGAIN');
    closeSync(a);
    closeSync(b);
  });

  it('254 fds is a RangeError before any syscall', () => {
    const fds = Array.from({ length: SCM_MAX_FD + 1 }, () => 0);
    // A socket fd that is not open: had a syscall run, this would be EBADF.
    const err = errorOf(() => sendFds(2_000_000, Buffer.from('x'), fds));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.code).toBe('ERR_OUT_OF_RANGE');
    expect(err.message).toBe(
      'The value of "fds.length" is out of range. It must be <= 253 (SCM_MAX_FD, the most fds one message carries). Received 254',
    );
  });

  it.each([
    ['maxBytes', 2 ** 31],
    ['maxBytes', Number.MAX_SAFE_INTEGER],
    ['maxBytes', Infinity],
    ['maxBytes', NaN],
    ['maxBytes', 1.5],
    ['maxBytes', -1],
    ['maxFds', 254],
    ['maxFds', 2 ** 32 + 1], // 1 if it were cut to an int32
    ['maxFds', Infinity],
    ['maxFds', 0.5],
  ] as const)('recvFds options.%s = %d is a RangeError before any syscall', (name, value) => {
    // A socket fd that is not open: had recvmsg run, this would be EBADF.
    const err = errorOf(() => recvFds(2_000_000, { [name]: value }));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.code).toBe('ERR_OUT_OF_RANGE');
    expect(err.message).toContain(`"options.${name}"`);
    expect(err.message).toContain(name === 'maxBytes' ? '<= 2147483647' : '<= 253');
  });

  it('the largest maxBytes and maxFds are allowed: the message arrives whole', () => {
    const before = openFds();
    const [a, b] = pair('seqpacket');
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('largest limits'), Array(SCM_MAX_FD).fill(f));
    let m: ReturnType<typeof recvFds>;
    try {
      m = recvFds(b, { maxBytes: 2 ** 31 - 1, maxFds: SCM_MAX_FD });
    } catch (err) {
      // A machine without 2 GiB to give (strict overcommit, a small VM) says
      // so before reading (the next test forces that); then take it smaller.
      expect(err).toMatchObject({ code: 'ENOMEM', syscall: 'malloc' });
      m = recvFds(b, { maxFds: SCM_MAX_FD });
    }
    expect(m.data.toString()).toBe('largest limits');
    expect(m.fds).toHaveLength(SCM_MAX_FD);
    for (const fd of [...m.fds, a, b, f]) closeSync(fd);
    expect(openFds()).toEqual(before);
  });

  it('no memory for a huge maxBytes buffer is an ENOMEM error, not an abort, and nothing is read', () => {
    // Under a 1.5 GB address-space limit a 2 GiB buffer cannot be had.
    const out = runLimited(
      '-v 1500000',
      `const fs = require('node:fs');
       const { recvFds, sendFds } = require(${JSON.stringify(DIST)});
       const { socketpair } = require('@folk/socketpair');
       const [a, b] = socketpair('seqpacket');
       sendFds(a, Buffer.from('still queued'), [a]);
       const count = () => fs.readdirSync('/proc/self/fd').length;
       const before = count();
       try { recvFds(b, { maxBytes: 2 ** 31 - 1 }); console.log('no error'); }
       catch (e) { console.log(JSON.stringify([e.code, e.syscall, e.message, count() - before])); }
       const m = recvFds(b);
       console.log(JSON.stringify([m.data.toString(), m.fds.length]));`,
    );
    const [first, second] = out.trim().split('\n').map((l) => JSON.parse(l) as unknown[]);
    expect(first).toEqual([
      'ENOMEM',
      'malloc',
      'ENOMEM: not enough memory, malloc: no memory for a 2147483647-byte receive buffer (options.maxBytes); nothing was read',
      0,
    ]);
    expect(second).toEqual(['still queued', 1]);
  });

  it.each([
    [[1.5], 'fds[0]', RangeError],
    [[0, -1], 'fds[1]', RangeError],
    [[NaN], 'fds[0]', RangeError],
    [[2 ** 31], 'fds[0]', RangeError],
    [['3'], 'fds[0]', TypeError],
    [[null], 'fds[0]', TypeError],
    ['3', 'fds', TypeError],
    [new Int32Array(1), 'fds', TypeError],
  ])('fds %j is rejected naming %s', (fds, name, type) => {
    const [a, b] = pair('seqpacket');
    const err = errorOf(() => sendFds(a, Buffer.from('x'), fds as never));
    expect(err).toBeInstanceOf(type);
    expect(err.message).toContain(`"${name}"`);
    closeSync(a);
    closeSync(b);
  });

  it.each([
    ['socketFd', RangeError, () => sendFds(-1, Buffer.from('x'), [])],
    ['socketFd', TypeError, () => sendFds('3' as never, Buffer.from('x'), [])],
    ['socketFd', RangeError, () => recvFds(1.5)],
    ['data', TypeError, () => sendFds(0, 'text' as never, [])],
    ['data', TypeError, () => sendFds(0, [1, 2] as never, [])],
    ['options', TypeError, () => recvFds(0, null as never)],
    ['options.maxBytes', RangeError, () => recvFds(0, { maxBytes: 0 })],
    ['options.maxBytes', TypeError, () => recvFds(0, { maxBytes: '10' as never })],
    ['options.maxFds', RangeError, () => recvFds(0, { maxFds: 254 })],
    ['options.maxFds', RangeError, () => recvFds(0, { maxFds: -1 })],
    ['socketFd', RangeError, () => peerCredentials(-5)],
    ['socketFd', TypeError, () => peerPidFd(undefined as never)],
  ] as const)('rejects a bad %s (%o)', (name, type, fn) => {
    const err = errorOf(fn);
    expect(err).toBeInstanceOf(type);
    expect(err.code).toBe(type === TypeError ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE');
    expect(err.message).toContain(`"${name}"`);
  });
});

/**
 * Fds Node cannot make itself, made by CPython: `script` sets `fds` (a list
 * of fds) and `info` (a string); both come back here, the fds as our own.
 */
function fromPython(script: string): { info: string; fds: number[] } {
  const [ours, theirs] = socketpair('seqpacket');
  const r = spawnSync(
    'python3',
    ['-c', `import os, socket\ninfo = ''\n${script}\nsocket.send_fds(socket.socket(fileno=3), [info.encode()], fds)`],
    { stdio: ['ignore', 'inherit', 'inherit', theirs] },
  );
  closeSync(theirs);
  if (r.status !== 0) throw new Error('python3 fd helper failed');
  const m = recvFds(ours);
  closeSync(ours);
  return { info: m.data.toString(), fds: m.fds };
}

function pipe(): { read: number; write: number } {
  const [read, write] = fromPython('fds = list(os.pipe())').fds as [number, number];
  return { read, write };
}

describe('closeFds', () => {
  it('closes the fds a message brought, ignores one already closed, and refuses what is not a list of fds (closing nothing)', () => {
    const before = openFds();
    const [a, b] = pair('seqpacket');
    const f = openSync(file, 'r');
    sendFds(a, Buffer.from('x'), [f, f]);
    const { fds } = recvFds(b);
    closeSync(f);
    const err = errorOf(() => closeFds([fds[0]!, 'x' as never]));
    expect(err).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"fds[1]"') });
    expect(errorOf(() => closeFds([-1]))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => closeFds(3 as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('"fds"') });
    expect(fstatSync(fds[0]!).isFile()).toBe(true); // the refused call closed nothing
    closeFds(fds);
    closeFds([fds[0]!]); // EBADF now: ignored
    closeSync(a);
    closeSync(b);
    expect(openFds()).toEqual(before);
  });

  it('in a worker thread, closes received fds without the warning fs.closeSync gives there', () => {
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Worker } = require('node:worker_threads');
         new Worker(\`
           const { openSync } = require('node:fs');
           const { socketpair } = require(${JSON.stringify(require.resolve('@folk/socketpair'))});
           const { sendFds, recvFds, closeFds } = require(${JSON.stringify(DIST)});
           const [a, b] = socketpair('seqpacket');
           sendFds(a, Buffer.from('x'), [openSync('/dev/null', 'r')]);
           closeFds([...recvFds(b).fds, a, b]);
         \`, { eval: true }).on('exit', (code) => console.log('exit', code));`,
      ],
      { encoding: 'utf8' },
    );
    expect([r.stdout, r.stderr]).toEqual(['exit 0\n', '']);
  });
});
