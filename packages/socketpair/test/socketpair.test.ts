import { execFileSync } from 'node:child_process';
import { closeSync, readFileSync, readSync, writeSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { O_CLOEXEC, O_NONBLOCK, SURVIVED, errorOf, fdFlags, openFds, terminateMidCall } from '@folk/test-support';
import { socketpair, socketpairStreams, type SocketType } from '../lib/index.js';

function read(fd: number, size = 64 * 1024): Buffer {
  const buf = Buffer.alloc(size);
  const n = readSync(fd, buf, 0, size, null);
  return buf.subarray(0, n);
}

const TYPES: SocketType[] = ['stream', 'seqpacket', 'dgram'];

describe('socketpair', () => {
  it.each(TYPES)('%s moves bytes both ways', (type) => {
    const [a, b] = socketpair(type);
    try {
      expect(writeSync(a, Buffer.from('ping'))).toBe(4);
      expect(read(b).toString()).toBe('ping');
      expect(writeSync(b, Buffer.from('pong'))).toBe(4);
      expect(read(a).toString()).toBe('pong');
    } finally {
      closeSync(a);
      closeSync(b);
    }
  });

  it('defaults to a stream socket, which merges writes', () => {
    const [a, b] = socketpair();
    try {
      writeSync(a, Buffer.from('one'));
      writeSync(a, Buffer.from('two'));
      expect(read(b).toString()).toBe('onetwo');
      expect(readFileSync(`/proc/self/fdinfo/${a}`, 'utf8')).toMatch(/flags/);
    } finally {
      closeSync(a);
      closeSync(b);
    }
  });

  it.each(['seqpacket', 'dgram'] as const)('%s keeps message boundaries', (type) => {
    const [a, b] = socketpair(type);
    try {
      writeSync(a, Buffer.from('one'));
      writeSync(a, Buffer.from('two!'));
      expect(read(b).toString()).toBe('one');
      expect(read(b).toString()).toBe('two!');
      // A short read of a datagram drops its tail: the next read is the next message.
      writeSync(a, Buffer.from('abcdef'));
      writeSync(a, Buffer.from('next'));
      expect(read(b, 3).toString()).toBe('abc');
      expect(read(b).toString()).toBe('next');
    } finally {
      closeSync(a);
      closeSync(b);
    }
  });

  it('sets close-on-exec by default and clears it with cloexec: false', () => {
    const [a, b] = socketpair('stream');
    const [c, d] = socketpair('seqpacket', { cloexec: false });
    try {
      expect(fdFlags(a) & O_CLOEXEC).toBe(O_CLOEXEC);
      expect(fdFlags(b) & O_CLOEXEC).toBe(O_CLOEXEC);
      expect(fdFlags(c) & O_CLOEXEC).toBe(0);
      expect(fdFlags(d) & O_CLOEXEC).toBe(0);
    } finally {
      for (const fd of [a, b, c, d]) closeSync(fd);
    }
  });

  it('is blocking by default; nonblock: true gives EAGAIN on an empty read', () => {
    const [a, b] = socketpair('stream');
    const [c, d] = socketpair('dgram', { nonblock: true });
    try {
      expect(fdFlags(a) & O_NONBLOCK).toBe(0);
      expect(fdFlags(c) & O_NONBLOCK).toBe(O_NONBLOCK);
      expect(fdFlags(d) & O_NONBLOCK).toBe(O_NONBLOCK);
      expect(errorOf(() => read(d)).code).toBe('EAGAIN');
      writeSync(c, Buffer.from('x'));
      expect(read(d).toString()).toBe('x');
    } finally {
      for (const fd of [a, b, c, d]) closeSync(fd);
    }
  });

  it.each(['stream', 'seqpacket'] as const)('%s: closing one end gives EOF on the other', (type) => {
    const [a, b] = socketpair(type);
    writeSync(a, Buffer.from('last'));
    closeSync(a);
    try {
      expect(read(b).toString()).toBe('last');
      expect(read(b).length).toBe(0);
      expect(errorOf(() => writeSync(b, Buffer.from('x'))).code).toBe('EPIPE');
    } finally {
      closeSync(b);
    }
  });

  it('returns distinct fds closable with fs.closeSync', () => {
    const before = openFds();
    const [a, b] = socketpair();
    expect(Number.isInteger(a) && Number.isInteger(b) && a !== b).toBe(true);
    const now = openFds();
    expect(now.filter((fd) => fd.startsWith(`${a} -> socket:`) || fd.startsWith(`${b} -> socket:`))).toHaveLength(2);
    closeSync(a);
    closeSync(b);
    expect(openFds()).toEqual(before);
  });

  describe('bad arguments', () => {
    it('rejects an unknown type naming the argument', () => {
      const err = errorOf(() => socketpair('raw' as SocketType));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe('ERR_INVALID_ARG_VALUE');
      expect(err.message).toMatch(/"type".*'raw'/);
    });

    it.each([1, null, {}, Symbol('x')])('rejects a type of %s', (type) => {
      const err = errorOf(() => socketpair(type as unknown as SocketType));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe('ERR_INVALID_ARG_TYPE');
      expect(err.message).toMatch(/"type"/);
    });

    it.each([{ options: null }, { options: 5 }, { options: 'cloexec' }, { options: [] }, { options: true }])(
      'rejects options $options',
      ({ options }) => {
      const err = errorOf(() => socketpair('stream', options as never));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.message).toMatch(/"options"/);
      },
    );

    it.each([
      ['cloexec', 1],
      ['cloexec', 'yes'],
      ['nonblock', null],
      ['nonblock', 0],
    ])('rejects options.%s = %s', (key, value) => {
      const err = errorOf(() => socketpair('stream', { [key]: value } as never));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe('ERR_INVALID_ARG_TYPE');
      expect(err.message).toContain(`"options.${key}"`);
    });

    it('says what it received, in Node\'s words', () => {
      expect(errorOf(() => socketpair('stream', { cloexec: 1 } as never)).message).toBe(
        'The "options.cloexec" property must be of type boolean. Received type number (1)',
      );
      expect(errorOf(() => socketpair(5 as never)).message).toBe(
        `The "type" argument must be one of 'stream', 'seqpacket', 'dgram'. Received type number (5)`,
      );
    });

    it('leaves no fd behind when it throws', () => {
      const before = openFds();
      for (let i = 0; i < 100; i++) errorOf(() => socketpair('stream', { nonblock: 'no' } as never));
      expect(openFds()).toEqual(before);
    });
  });

  it('reports EMFILE as a Node-style error under a lowered RLIMIT_NOFILE', () => {
    // In a child: lower the limit, fill the table but for one slot (a pair
    // needs two), then ask for a pair.
    const script = `
      const fs = require('node:fs');
      const { socketpair } = require(${JSON.stringify(fileURLToPath(new URL('../dist/index.js', import.meta.url)))});
      const held = [];
      try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
      fs.closeSync(held.pop());
      try { socketpair('seqpacket'); console.log('no error'); }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, message: e.message })); }
    `;
    const out = execFileSync('sh', ['-c', 'ulimit -n 64 && exec "$0" -e "$1"', process.execPath, script], {
      encoding: 'utf8',
    });
    const err = JSON.parse(out);
    expect(err).toEqual({
      name: 'Error',
      code: 'EMFILE',
      errno: -24,
      syscall: 'socketpair',
      message: 'EMFILE: too many open files, socketpair',
    });
  });

  it('a worker thread terminated in the middle of socketpair() calls does not take the process down', () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const setup = `const fs = require('node:fs'); const { socketpair } = require(${JSON.stringify(dist)});`;
    const loop = `for (let i = 0; i < 500; i++) { const [a, b] = socketpair('seqpacket'); fs.closeSync(a); fs.closeSync(b); }`;
    expect(terminateMidCall(setup, loop)).toEqual(SURVIVED);
  }, 120_000);

  it('10,000 create/close cycles leave /proc/self/fd as it was', () => {
    const before = openFds();
    for (let i = 0; i < 10_000; i++) {
      const [a, b] = socketpair(TYPES[i % 3]);
      closeSync(a);
      closeSync(b);
    }
    expect(openFds()).toEqual(before);
  });
});

describe('socketpairStreams', () => {
  it('returns two connected net.Socket duplexes', async () => {
    const [left, right] = socketpairStreams();
    right.setEncoding('utf8');
    left.write('hello ');
    left.end('world');
    let got = '';
    right.on('data', (chunk: string) => (got += chunk));
    await once(right, 'end');
    expect(got).toBe('hello world');
    right.end();
    await Promise.all([once(left, 'close'), once(right, 'close')]);
  });

  it('each socket owns its fd: destroying closes it, nothing is closed twice', async () => {
    const before = openFds();
    const [left, right] = socketpairStreams();
    const fds = openFds().filter((fd) => !before.includes(fd));
    expect(fds).toHaveLength(2);
    for (const fd of fds) {
      expect(fd).toMatch(/^\d+ -> socket:/);
      expect(fdFlags(parseInt(fd, 10)) & O_CLOEXEC).toBe(O_CLOEXEC);
    }
    left.destroy();
    right.destroy();
    await Promise.all([once(left, 'close'), once(right, 'close')]);
    expect(openFds()).toEqual(before);
  });

  it('carries 1 MiB intact and signals EOF when the peer ends', async () => {
    const [left, right] = socketpairStreams();
    const payload = Buffer.alloc(1 << 20, 7);
    payload.write('start', 0);
    left.end(payload);
    const chunks: Buffer[] = [];
    for await (const chunk of right) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    right.destroy();
    left.destroy();
  });

  it('rejects bad options', () => {
    expect(() => socketpairStreams({ allowHalfOpen: 'yes' } as never)).toThrow(/"options.allowHalfOpen"/);
    expect(() => socketpairStreams(3 as never)).toThrow(TypeError);
  });
});
