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
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

/**
 * The HTTP responses in `bytes`, in order: each one's status and whether
 * it came whole (by its Content-Length, or to its last chunk).
 */
function responses(bytes: Buffer): { status: number; whole: boolean }[] {
  const found: { status: number; whole: boolean }[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    const head = bytes.subarray(at, end < 0 ? bytes.length : end).toString('latin1');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? 0);
    const next = end < 0 ? -1 : /\r\ntransfer-encoding: *chunked/i.test(head) ? afterChunks(bytes, end + 4) : afterLength(bytes, end + 4, head);
    found.push({ status, whole: next >= 0 });
    if (next < 0) break;
    at = next;
  }
  return found;
}

/** Where a body of Content-Length bytes starting at `from` ends, or -1 if it has not come whole. */
function afterLength(bytes: Buffer, from: number, head: string): number {
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
  return length >= 0 && bytes.length >= from + length ? from + length : -1;
}

/** Where a chunked body starting at `from` ends (after its last chunk and trailer), or -1 if it has not come whole. */
function afterChunks(bytes: Buffer, from: number): number {
  let at = from;
  for (;;) {
    const eol = bytes.indexOf('\r\n', at);
    if (eol < 0) return -1;
    const size = parseInt(bytes.subarray(at, eol).toString('latin1'), 16);
    if (size === 0) return bytes.indexOf('\r\n', eol + 2) === eol + 2 ? eol + 4 : -1;
    at = eol + 2 + size + 2;
    if (bytes.length < at) return -1;
  }
}

/**
 * A keep-alive connection: exchange() sends a request, then gives what
 * came back once the connection closed, or `settle` ms passed without a
 * byte after whole answers (time for a second answer to come after the
 * first), or `wait` ms passed without one before them.
 */
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
    async exchange(text: string, { settle = 50, wait = 1500 } = {}): Promise<{ bytes: Buffer; closed: boolean }> {
      received = Buffer.alloc(0);
      socket.write(text);
      for (;;) {
        const before = received.length;
        const answered = before > 0 && responses(received).every((r) => r.whole);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, answered ? settle : wait);
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
  /** When the worker serving now was first seen to. */
  let servingSince = 0;
  /** Once the front has a worker again (after one died), and it serves. */
  async function served() {
    for (let i = 0; i < 100 && !(worker() > 0); i++) await sleep(20);
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    servingSince = Date.now();
  }
  /**
   * Wait until the worker has served for over a second: the pool takes a
   * worker that dies sooner after it started for a crash loop, and starts
   * each next replacement later (100 ms, doubling).
   */
  async function settled() {
    await sleep(Math.max(0, servingSince + 1100 - Date.now()));
  }

  /**
   * The calls a worker makes for `text` (one request) on an idle keep-alive
   * connection, up to its next select(): each as "name:n" (the nth of that
   * name) with its line in strace's log.
   */
  async function steps(text: string, status: number): Promise<{ step: string; line: string }[]> {
    const conn = await connection(server.port);
    await conn.exchange(REQUEST);
    const log = join(dir, 'steps');
    const strace = await attach(worker(), 'recvfrom,lseek,write,pselect6', log);
    const { bytes } = await conn.exchange(text, { settle: 300 }); // (and the script's rest of work)
    await strace.detach();
    conn.close();
    expect(responses(bytes)).toEqual([{ status, whole: true }]);
    const lines = readFileSync(log, 'utf8')
      .split('\n')
      .filter((line) => /^\w+\(/.test(line));
    const counts = new Map<string, number>();
    const found: { step: string; line: string }[] = [];
    for (const line of lines.slice(lines.findIndex((l) => l.startsWith('pselect6(')) + 1)) {
      const name = /^(\w+)\(/.exec(line)![1]!;
      if (name === 'pselect6') break;
      counts.set(name, (counts.get(name) ?? 0) + 1);
      found.push({ step: `${name}:${counts.get(name)}`, line });
    }
    return found;
  }

  /**
   * The worker killed at each of those steps in turn, on a connection that
   * has had one answer: what the client got for `text` each time ("step:
   * 201", "step: 502, closed", ...).
   */
  async function killAtEachStep(text: string, status: number, { cut = false } = {}) {
    const found = await steps(text, status);
    // (At least: the read, the scoreboard's line, the answer, the line after it.)
    expect(found.length).toBeGreaterThanOrEqual(6);
    const outcomes: string[] = [];
    for (const { step } of found) {
      const conn = await connection(server.port);
      expect(responses((await conn.exchange(REQUEST)).bytes)).toEqual([{ status: 201, whole: true }]);
      await settled();
      const pid = worker();
      const [call, n] = step.split(':');
      const strace = await attach(pid, call!, '/dev/null', `${call}:when=${n}`);
      // (A replacement worker starts in about 100 ms, and serves a request handed on to it at once; a
      // 502 from the front would come within milliseconds of an answer.)
      const { bytes, closed } = await conn.exchange(text, { settle: 300 });
      await strace.ended;
      expect(alive(pid), `${step}: the worker died`).toBe(false);
      const got = responses(bytes);
      outcomes.push(`${step}: ${got.map((r) => `${r.status}${r.whole ? '' : ' (cut)'}`).join(', ') || 'nothing'}${closed ? ', closed' : ''}`);
      conn.close();
      await served();
    }
    // Its answer whole, or a 502, or nothing; never a hang, never two
    // answers. (And, for an answer that goes out in parts, part of it.)
    const fine = new RegExp(`: (${status}|${status}, closed|502, closed|nothing, closed${cut ? `|${status} \\(cut\\), closed` : ''})$`);
    expect(outcomes.filter((o) => !fine.test(o))).toEqual([]);
    // Killed before it takes the request's bytes from the kernel (it peeks
    // at them first, and takes them once its scoreboard line says which
    // request it serves), a worker loses nothing: its replacement serves
    // the request.
    const taken = found.findIndex((f) => f.step === 'recvfrom:2');
    expect(taken).toBeGreaterThan(0);
    expect(outcomes.slice(0, taken)).toEqual(found.slice(0, taken).map((f) => `${f.step}: ${status}`));
    return { found, outcomes };
  }

  it('answers it whole, or with a 502, or closes the connection with nothing; never a hang, never two answers', async () => {
    await killAtEachStep(REQUEST, 201);
  });

  it('the same for an answer sent early (fastcgi_finish_request()); in the script that runs on after it, the connection is an idle one, handed on', async () => {
    const marker = join(dir, 'marker');
    writeFileSync(marker, ''); // (the script does not wait then: it writes its "done" file and ends)
    const text = `GET /finish.php?marker=${marker}&done=${join(dir, 'done')} HTTP/1.1\r\nHost: t\r\n\r\n`;
    const { found, outcomes } = await killAtEachStep(text, 200);
    // From the scoreboard line that says so ("*" after its start) on.
    const answered = found.findIndex((f) => /^write\(\d+, "\d+ \d{13}\*/.test(f.line));
    expect(answered).toBeGreaterThan(0);
    expect(outcomes.slice(answered + 1)).toEqual(found.slice(answered + 1).map((f) => `${f.step}: 200`));
  });

  it('the same for an answer that goes out in parts (flush()): once its head is out, at most cut short', async () => {
    const marker = join(dir, 'marker');
    writeFileSync(marker, '');
    const text = `GET /stream.php?marker=${marker}&parts=2&size=10 HTTP/1.1\r\nHost: t\r\n\r\n`;
    const { found, outcomes } = await killAtEachStep(text, 200, { cut: true });
    // From the first part on (the line says "+" before it), never a 502.
    const flushed = found.findIndex((f) => /^write\(\d+, "\d+ \d{13}\+/.test(f.line));
    expect(flushed).toBeGreaterThan(0);
    expect(outcomes.slice(flushed + 1).filter((o) => o.includes('502'))).toEqual([]);
    expect(outcomes.some((o) => o.endsWith('200 (cut), closed'))).toBe(true);
  });

  it('closes a connection it had read part of a request from, rather than hand it to a worker that would take the rest for a request', async () => {
    const conn = await connection(server.port);
    expect(responses((await conn.exchange(REQUEST)).bytes)).toEqual([{ status: 201, whole: true }]);
    const pid = worker();
    const body = 'x'.repeat(10_000);
    // Half the body: the worker reads it, and waits in select() for the rest.
    const half = await conn.exchange(`POST /plain.php HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5000)}`, { wait: 300 });
    expect(half.bytes.length).toBe(0);
    await settled();
    process.kill(pid, 'SIGKILL');
    await served();
    const rest = await conn.exchange(body.slice(5000));
    expect({ got: responses(rest.bytes), closed: rest.closed }).toEqual({ got: [], closed: true });
    conn.close();
  });
});
