// A PHP worker (direct mode) killed at every step of serving a request.
// strace, attached to the worker, delivers SIGKILL as the worker enters one
// chosen system call: reading the connection (recvfrom), its scoreboard
// line (lseek, write) or the answer (write). The steps are not written down
// here: a first pass records the calls one request makes, then each is
// made the one the worker dies at. Whatever the step, the client must get
// one whole answer (its 201, or a 502), or see the connection close with
// nothing: never a second answer after the first (a status line inside the
// connection's next answer), never its request read and then forgotten
// (the connection handed to another worker that waits for a request the
// client already sent: a hang).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, alive, childrenOf, request, requirePhp, sleep, startServer, type Server } from './helpers.js';

/** strace is what these tests kill with; they never skip. */
function requireStrace(): void {
  if (spawnSync('strace', ['-V']).status !== 0) throw new Error('strace is missing: these tests need it (Debian/Ubuntu: apt-get install -y strace)');
}

const REQUEST = 'GET /plain.php HTTP/1.1\r\nHost: t\r\n\r\n';

/** The HTTP responses in `bytes`, in order: each one's status and whether it came whole (by its Content-Length). */
function responses(bytes: Buffer): { status: number; whole: boolean }[] {
  const found: { status: number; whole: boolean }[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    const head = bytes.subarray(at, end < 0 ? bytes.length : end).toString('latin1');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? 0);
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
    const whole = end >= 0 && length >= 0 && bytes.length >= end + 4 + length;
    found.push({ status, whole });
    if (!whole) break;
    at = end + 4 + length;
  }
  return found;
}

/** A keep-alive connection: send() a request, then what came back until it closed or `quiet` ms passed without a byte. */
async function connection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  let closed = false;
  let changed = () => {};
  socket.on('data', (d: Buffer) => {
    received = Buffer.concat([received, d]);
    changed();
  });
  socket.on('close', () => {
    closed = true;
    changed();
  });
  await new Promise((resolve) => socket.once('connect', resolve));
  return {
    async exchange(text: string, quiet: number): Promise<{ bytes: Buffer; closed: boolean }> {
      received = Buffer.alloc(0);
      socket.write(text);
      for (;;) {
        const before = received.length;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, quiet);
          changed = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        if (closed || received.length === before) return { bytes: received, closed };
      }
    },
    close: () => socket.destroy(),
  };
}

/** strace attached to `pid`: tracing `calls` into `log`, and with `inject`, SIGKILL on entering that call. */
async function attach(pid: number, calls: string, log: string, inject?: string) {
  const args = ['-p', String(pid), '-o', log, '-e', `trace=${calls}`];
  if (inject !== undefined) args.push('-e', `inject=${inject}:signal=KILL`);
  const strace = spawn('strace', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ended = new Promise<void>((resolve) => strace.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    strace.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/attached/.test(err)) resolve();
    });
    strace.on('exit', () => reject(new Error(`strace did not attach to ${pid}: ${err}`)));
  });
  return {
    ended,
    /** Detach (strace leaves the process running). */
    detach: async () => {
      strace.kill('SIGINT');
      await ended;
    },
  };
}

describe('a worker killed at any step of a request', () => {
  let server: Server;
  let dir: string;
  beforeAll(async () => {
    requirePhp();
    requireStrace();
    dir = mkdtempSync(join(tmpdir(), 'folk-death-'));
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--direct']);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const worker = () => childrenOf(childrenOf(server.child.pid!)[0]!)[0]!;
  /** Once the front has a worker again (after one died), and it serves. */
  async function served() {
    for (let i = 0; i < 100 && !(worker() > 0); i++) await sleep(20);
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
  }

  /** The calls a worker makes for one request on an idle keep-alive connection, up to its next select(), as "name:n" (the nth of that name). */
  async function steps(): Promise<string[]> {
    const conn = await connection(server.port);
    await conn.exchange(REQUEST, 300);
    const log = join(dir, 'steps');
    const strace = await attach(worker(), 'recvfrom,lseek,write,pselect6', log);
    const { bytes } = await conn.exchange(REQUEST, 300);
    await strace.detach();
    conn.close();
    expect(responses(bytes)).toEqual([{ status: 201, whole: true }]);
    const names = readFileSync(log, 'utf8')
      .split('\n')
      .map((line) => /^(\w+)\(/.exec(line)?.[1])
      .filter((name) => name !== undefined);
    const counts = new Map<string, number>();
    const found: string[] = [];
    for (const name of names.slice(names.indexOf('pselect6') + 1)) {
      if (name === 'pselect6') break;
      counts.set(name, (counts.get(name) ?? 0) + 1);
      found.push(`${name}:${counts.get(name)}`);
    }
    return found;
  }

  it('answers it whole, or with a 502, or closes the connection with nothing; never a hang, never two answers', async () => {
    const found = await steps();
    // (At least: the read, the scoreboard's line, the answer, the line after it.)
    expect(found.length).toBeGreaterThanOrEqual(6);
    const outcomes: string[] = [];
    for (const step of found) {
      const conn = await connection(server.port);
      expect(responses((await conn.exchange(REQUEST, 300)).bytes)).toEqual([{ status: 201, whole: true }]);
      const pid = worker();
      const [call, n] = step.split(':');
      const strace = await attach(pid, call!, '/dev/null', `${call}:when=${n}`);
      // (1.5 s: a replacement worker starts in about 100 ms, and serves a request handed on to it at once.)
      const { bytes, closed } = await conn.exchange(REQUEST, 1500);
      await strace.ended;
      expect(alive(pid), `${step}: the worker died`).toBe(false);
      const got = responses(bytes);
      const outcome = `${step}: ${got.map((r) => `${r.status}${r.whole ? '' : ' (cut)'}`).join(', ') || 'nothing'}${closed ? ', closed' : ''}`;
      outcomes.push(outcome);
      conn.close();
      await served();
    }
    const fine = (o: string) => /: (201|201, closed|502, closed|nothing, closed)$/.test(o);
    expect(outcomes.filter((o) => !fine(o))).toEqual([]);
    // Killed before it takes the request's bytes from the kernel (it peeks
    // at them first, and takes them once its scoreboard line says which
    // request it serves), a worker loses nothing: its replacement serves
    // the request.
    const taken = found.indexOf('recvfrom:2');
    expect(taken).toBeGreaterThan(0);
    expect(outcomes.slice(0, taken)).toEqual(found.slice(0, taken).map((step) => `${step}: 201`));
  });

  it('closes a connection it had read part of a request from, rather than hand it to a worker that would take the rest for a request', async () => {
    const conn = await connection(server.port);
    expect(responses((await conn.exchange(REQUEST, 300)).bytes)).toEqual([{ status: 201, whole: true }]);
    const pid = worker();
    const body = 'x'.repeat(10_000);
    // Half the body: the worker reads it, and waits in select() for the rest.
    const half = await conn.exchange(`POST /plain.php HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5000)}`, 300);
    expect(half.bytes.length).toBe(0);
    process.kill(pid, 'SIGKILL');
    await served();
    const rest = await conn.exchange(body.slice(5000), 1500);
    expect({ got: responses(rest.bytes), closed: rest.closed }).toEqual({ got: [], closed: true });
    conn.close();
  });
});
