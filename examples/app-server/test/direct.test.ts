// --direct: the front accepts and hands each connection to a PHP worker,
// which reads and answers it itself. What that changes, and must not break:
// a connection outlives its worker (a crash, a reload, exit() in a script),
// the request a dying worker was serving still gets an answer (502, 504
// past --exec-timeout), pipelined requests are answered in order, and the
// front holds no descriptor after its connections close.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import * as http from 'node:http';
import * as net from 'node:net';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, childrenOf, keepAliveClient as connection, request, requirePhp, sleep, spawnServer, startServer, type Server } from './helpers.js';

/** The names in the temporary directory that PHP's temporary files (php*) and ours (folk-*) take. */
const temporaryFiles = () => new Set(readdirSync(tmpdir()).filter((f) => f.startsWith('php') || f.startsWith('folk-')));

const pidOf = (body: Buffer) => Number(/"pid":(\d+)/.exec(body.toString())?.[1] ?? JSON.parse(body.toString()).server?.pid);

describe('--direct', () => {
  let server: Server;
  beforeAll(async () => {
    requirePhp();
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '2', '--exec-timeout', '1500', '--direct']);
  });
  afterAll(() => server?.stop());

  const front = () => childrenOf(server.child.pid!)[0]!;
  const workers = () => childrenOf(front()).filter((pid) => pid > 0);

  it('serves a connection from one PHP worker, keep-alive, and answers pipelined requests in order', async () => {
    const c = connection(server.port);
    try {
      const first = await c.get('/forked.php');
      const second = await c.get('/forked.php');
      expect(first.status).toBe(200);
      expect(second.body.toString()).toBe(first.body.toString()); // the same worker (forked.php prints its pid)
      expect(c.sockets()).toBe(1);
    } finally {
      c.close();
    }
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, '127.0.0.1');
      let text = '';
      socket.on('data', (d) => (text += d.toString('latin1')));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write('GET /plain.php?status=201 HTTP/1.1\r\nHost: x\r\n\r\nGET /plain.php?status=202 HTTP/1.1\r\nHost: x\r\n\r\nGET /plain.php?status=203 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    });
    expect([...raw.matchAll(/HTTP\/1\.1 (\d{3}) [A-Z]/g)].map((m) => m[1])).toEqual(['201', '202', '203']);
  });

  /** Four keep-alive connections, and a worker that holds at least two of them (two workers: one must). */
  async function shared() {
    const conns = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = connection(server.port);
        return { c, pid: pidOf((await c.get('/forked.php')).body) };
      }),
    );
    const counts = new Map<number, number>();
    for (const { pid } of conns) counts.set(pid, (counts.get(pid) ?? 0) + 1);
    const pid = [...counts].find(([, n]) => n >= 2)![0];
    const [victim, ...rest] = conns.filter((x) => x.pid === pid);
    return { victim: victim!.c, others: rest.map((x) => x.c), all: conns.map((x) => x.c), pid };
  }

  /** Each connection still works, on the same TCP connection, served by a worker other than `pid`. */
  async function carryOn(conns: ReturnType<typeof connection>[], pid: number) {
    for (const c of conns) {
      const r = await c.get('/forked.php');
      expect(r.status).toBe(200);
      expect(pidOf(r.body)).not.toBe(pid);
      expect(c.sockets()).toBe(1);
    }
  }

  it('a worker killed mid-request: that request gets a generic 502, the other connections it held go on with another worker', async () => {
    const { victim, others, all, pid } = await shared();
    try {
      const crash = await victim.get('/crash.php'); // crash.php SIGKILLs its worker
      expect(crash.status).toBe(502);
      expect(crash.body.toString()).toBe('502 Bad Gateway\n');
      await server.waitFor(new RegExp(`502 GET /crash\\.php: ERR_WORKER_CRASHED: worker ${pid} ended \\(SIGKILL\\) while serving this request`), { stream: 'stderr' });
      // Its other connections were not closed: the same TCP connection, another worker.
      await carryOn(others, pid);
    } finally {
      for (const c of all) c.close();
    }
  });

  it('a slow request holds up only its own connection: the other connections of its worker move to another', async () => {
    const { victim, others, all, pid } = await shared();
    try {
      const slow = victim.get('/sleep.php?ms=1200');
      await sleep(50); // the slow request has begun
      const started = Date.now();
      await carryOn(others, pid); // answered by another worker, on the same TCP connections
      expect(Date.now() - started).toBeLessThan(800);
      expect((await slow).status).toBe(200);
    } finally {
      for (const c of all) c.close();
    }
  });

  it('a request past --exec-timeout: its worker is killed and the client gets a generic 504', async () => {
    const started = Date.now();
    const r = await request(server.port, 'GET', '/sleep.php?ms=20000');
    expect(r.status).toBe(504);
    expect(r.body.toString()).toBe('504 Gateway Timeout\n');
    expect(Date.now() - started).toBeLessThan(5000);
    await server.waitFor(/has run one request for over --exec-timeout 1500 ms: killed/, { stream: 'stderr' });
  });

  it('exit() in a script answers its request, and the worker serves on: the same connection, the same worker, its other connections too', async () => {
    const { victim, others, all, pid } = await shared();
    try {
      const exited = await victim.get('/exit.php');
      expect(exited.status).toBe(302);
      expect(exited.body.toString()).toBe('going');
      expect(exited.headers.connection).toBe('keep-alive');
      for (const c of [victim, ...others]) {
        expect(pidOf((await c.get('/forked.php')).body)).toBe(pid);
        expect(c.sockets()).toBe(1);
      }
    } finally {
      for (const c of all) c.close();
    }
  });

  it('a fatal error PHP cannot return from (out of memory) gets its 500, and the worker hands its connections back: they go on with another worker', async () => {
    const { victim, others, all, pid } = await shared();
    try {
      const fatal = await victim.get('/out-of-memory.php');
      expect(fatal.status).toBe(500);
      // Its connection stays open too, given back with the others.
      expect(fatal.headers.connection).toBe('keep-alive');
      await carryOn([victim, ...others], pid);
    } finally {
      for (const c of all) c.close();
    }
  });

  it('a worker that ends after a fatal error is replaced at once, however often it happens', async () => {
    // Not as a crash loop, whose replacements wait 100 ms, then 200, 400, ...
    const logged = server.stderr().length;
    const started = Date.now();
    for (let i = 0; i < 10; i++) expect((await request(server.port, 'GET', '/out-of-memory.php')).status).toBe(500);
    expect(Date.now() - started).toBeLessThan(4000);
    const log = server.stderr().slice(logged);
    expect(log).not.toMatch(/replacing it in \d+ ms/); // the pool's word for a crash loop
    expect(log).not.toMatch(/SIGSEGV/);
  });

  it('a route that kills its worker each time: every request to it gets its 502 at once, and the other routes go on', async () => {
    // php-fpm replaces such a child at once; a crash loop's backoff (100 ms,
    // then 200, 400, ... up to 10 s) would leave no worker for anyone.
    const logged = server.stderr().length;
    const started = Date.now();
    for (let i = 0; i < 8; i++) {
      expect((await request(server.port, 'GET', '/crash.php')).status).toBe(502);
      expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201); // plain.php's own status
    }
    expect(Date.now() - started).toBeLessThan(3000);
    const log = server.stderr().slice(logged);
    expect(log.match(/exited \(SIGKILL\); replacing it$/gm)).toHaveLength(8);
    expect(log).not.toMatch(/replacing it in \d+ ms/);
  });

  it('the replacement of a worker that died gets its share of the open keep-alive connections, not only new ones', async () => {
    // Its connections go to the survivor at once; keep-alive clients (a
    // proxy's pool, wrk) open no new ones, so without spreading them again
    // the survivor would serve them all and the replacement nothing.
    const clients = Array.from({ length: 8 }, () => connection(server.port));
    try {
      for (const c of clients) expect((await c.get('/forked.php')).status).toBe(200);
      const before = workers();
      expect((await request(server.port, 'GET', '/crash.php')).status).toBe(502);
      await server.waitFor(/exited \(SIGKILL\); replacing it$/m, { stream: 'stderr' });
      let now = workers();
      for (let i = 0; i < 100 && (now.length < 2 || now.every((pid) => before.includes(pid))); i++) {
        await sleep(20);
        now = workers();
      }
      const [replacement] = now.filter((pid) => !before.includes(pid));
      expect(replacement).toBeGreaterThan(0);
      await sleep(300); // a few of the front's rounds
      const served = new Map<number, number>();
      for (const c of clients) {
        const pid = pidOf((await c.get('/forked.php')).body);
        served.set(pid, (served.get(pid) ?? 0) + 1);
      }
      expect(served.get(replacement!) ?? 0).toBeGreaterThanOrEqual(3);
      expect([...served.values()].every((n) => n <= 5)).toBe(true);
      expect(clients.map((c) => c.sockets())).toEqual(Array(8).fill(1)); // moved, not closed
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('SIGHUP under load moves the open connections to the new workers: no failed request, no connection closed', async () => {
    const clients = Array.from({ length: 6 }, () => connection(server.port));
    const statuses: number[] = [];
    let running = true;
    const loops = clients.map(async (c) => {
      while (running) statuses.push((await c.get('/plain.php')).status);
    });
    try {
      await sleep(300);
      const old = workers();
      server.child.kill('SIGHUP');
      await server.waitFor(/reloaded: workers ([\d, ]+)\n/);
      await sleep(300);
      running = false;
      await Promise.all(loops);
      expect(new Set(statuses)).toEqual(new Set([201]));
      expect(statuses.length).toBeGreaterThan(50);
      expect(workers().filter((pid) => old.includes(pid))).toEqual([]);
      // Each client used one TCP connection throughout: the reload closed none.
      expect(clients.map((c) => c.sockets())).toEqual(Array(6).fill(1));
    } finally {
      running = false;
      for (const c of clients) c.close();
    }
  });

  it('the front holds no descriptor of a connection once the client closed it', async () => {
    const fds = () => readdirSync(`/proc/${front()}/fd`).length;
    await sleep(200);
    const baseline = fds();
    const clients = Array.from({ length: 20 }, () => connection(server.port));
    await Promise.all(clients.map((c) => c.get('/forked.php')));
    expect(fds()).toBeGreaterThanOrEqual(baseline + 20);
    for (const c of clients) c.close();
    let now = fds();
    for (let i = 0; i < 50 && now > baseline; i++) {
      await sleep(100);
      now = fds();
    }
    expect(now).toBe(baseline);
  });

  it('is refused with the Node workers (they read tasks, not connections), before anything starts', async () => {
    const refused = spawnServer(['--listen', '127.0.0.1:0', '--direct', '--node']);
    expect(await refused.exited).toEqual({ code: 1, signal: null });
    expect(refused.stderr()).toMatch(/--direct is for PHP workers: the Node workers \(--node\) read tasks, not connections/);
  });
});

describe('the mode a server runs in (direct = auto, the default)', () => {
  beforeAll(() => requirePhp());
  const cores = availableParallelism();
  const started = (server: Server) => /with \d+ fronts? and (\d+) (PHP|Node) workers( serving the connections)? \(/.exec(server.stdout())!;

  it('serves the connections from the PHP workers, one per CPU, by default', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW]);
    try {
      const [, workers, label, direct] = started(server);
      expect([Number(workers), label, direct]).toEqual([cores, 'PHP', ' serving the connections']);
      expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    } finally {
      await server.stop();
    }
  });

  it('passes requests through the front with --direct off, twice as many workers as CPUs unless told', async () => {
    const cases: [string[], number][] = [[['--direct', 'off'], 2 * cores], [['--direct', 'off', '--workers', '3'], 3], [['--node', '--workers', 'auto'], 2 * cores]];
    for (const [args, count] of cases) {
      const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', ...args]);
      try {
        const [, workers, label, direct] = started(server);
        expect([Number(workers), label, direct]).toEqual([count, args.includes('--node') ? 'Node' : 'PHP', undefined]);
        expect((await request(server.port, 'GET', '/')).status).toBe(200);
      } finally {
        await server.stop();
      }
    }
  });

  it('refuses a value that is not on, off or auto, naming the setting', async () => {
    for (const [args, message] of [
      [['--direct=sometimes'], /--direct: direct needs on, auto or off, got "sometimes"/],
      [['--workers', 'many'], /--workers: workers needs a whole number of at least 1 or auto, got "many"/],
    ] as const) {
      const refused = spawnServer(['--listen', '127.0.0.1:0', ...args]);
      expect(await refused.exited).toEqual({ code: 1, signal: null });
      expect(refused.stderr()).toMatch(message);
    }
  });
});

describe('a scoreboard line as the front reads it', () => {
  // A worker rewrites its line in place (one write() over the old one) while
  // the front may read it: a read can catch the new line's first bytes
  // followed by the old line's last. Such a line must read as nothing known,
  // never as a request with a wrong start time (which would look past
  // --exec-timeout and get a healthy worker killed) or a wrong list of held
  // connections, and never throw (it once took the front down).
  const line = (text: string) => text.padEnd(511) + '\n';
  let parse: (text: string) => unknown;
  beforeAll(async () => {
    // @ts-expect-error: plain JavaScript, no types
    ({ parseScoreboardLine: parse } = await import('../lib/scoreboard.mjs'));
  });

  it('reads a whole line: the connection, since when, whether part of the answer is out or all of it (the script runs on), the connections held, the request', () => {
    expect(parse(line('5 1764930000123 3,4 GET /data?x=1'))).toEqual({ id: 5, since: 1764930000123, answering: false, answered: false, holding: [3, 4], request: 'GET /data?x=1' });
    expect(parse(line('17 1764930000123 - POST /echo'))).toEqual({ id: 17, since: 1764930000123, answering: false, answered: false, holding: [], request: 'POST /echo' });
    expect(parse(line('17 1764930000123+ - GET /feed'))).toEqual({ id: 17, since: 1764930000123, answering: true, answered: false, holding: [], request: 'GET /feed' });
    expect(parse(line('17 1764930000123* 4 GET /feed'))).toEqual({ id: 17, since: 1764930000123, answering: false, answered: true, holding: [4], request: 'GET /feed' });
    expect(parse(line('17 1764930000123++ - GET /feed'))).toBeNull();
    expect(parse(line('17 1764930000123+* - GET /feed'))).toBeNull();
  });

  it('reads an idle worker still writing answers to slow clients: id 0 and the connections it writes to', () => {
    expect(parse(line('0 1764930000123 7,9 - -'))).toEqual({ id: 0, since: 1764930000123, answering: false, answered: false, holding: [7, 9], request: '- -' });
  });

  it('reads an idle worker, a missing file and every torn line as null', () => {
    const serving = '5 1764930000123 3,4 GET /data';
    const idle = line('0');
    expect(parse(idle)).toBeNull();
    expect(parse('')).toBeNull();
    for (let cut = 1; cut < serving.length; cut++) {
      // The serving line written over the idle one, caught at `cut` bytes...
      const torn = parse(serving.slice(0, cut) + idle.slice(cut));
      if (torn !== null) expect(torn).toMatchObject({ id: 5, since: 1764930000123, holding: [3, 4] }); // only the request's text may be short
      // ...and the idle line written over the serving one.
      expect(parse('0' + line(serving).slice(1))).toBeNull();
      expect(parse(idle.slice(0, cut) + line(serving).slice(cut))).toBeNull();
      // A serving line written over one of a worker still writing answers:
      // never the old list of connections with the new request.
      const writing = line('0 1764930000001 7,9 - -');
      const mixed = parse(serving.slice(0, cut) + writing.slice(cut));
      if (mixed !== null) expect(mixed).toMatchObject({ id: 5, since: 1764930000123, holding: [3, 4] });
    }
  });
});

describe('settings of the other mode', () => {
  beforeAll(() => requirePhp());

  it('says that --queue-timeout and --max-queue do nothing in direct mode, and nothing with --direct off', async () => {
    const direct = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--queue-timeout', '100', '--max-queue', '5']);
    const tasks = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--queue-timeout', '100', '--direct', 'off']);
    try {
      await direct.waitFor(/--queue-timeout does nothing in direct mode .* it applies with --direct off/, { stream: 'stderr' });
      await direct.waitFor(/--max-queue does nothing in direct mode/, { stream: 'stderr' });
      expect(tasks.stderr()).not.toMatch(/does nothing/);
    } finally {
      await Promise.all([direct.stop(), tasks.stop()]);
    }
  });
});

describe('many connections to a worker', () => {
  beforeAll(() => requirePhp());

  /** Opens `n` connections at once, one GET / on each, and keeps them open (idle keep-alive); resolves with how many were answered. */
  async function openMany(port: number, n: number, opened: net.Socket[]): Promise<number> {
    const answered = await Promise.all(
      Array.from({ length: n }, () => new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        opened.push(socket);
        let data = '';
        socket.on('data', (d) => {
          data += d.toString('latin1');
          if (/\r\n\r\n/.test(data)) resolve(data.startsWith('HTTP/1.1 200 '));
        });
        socket.on('error', () => resolve(false));
        socket.on('close', () => resolve(false));
        socket.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
      })),
    );
    return answered.filter(Boolean).length;
  }

  it('answers 1,100 connections opened at once with one worker (PHP select() watches no descriptor past 1023), closing idle ones to make room', async () => {
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--worker-connections', '300', '--backlog', '2048']);
    const opened: net.Socket[] = [];
    try {
      const worker = childrenOf(childrenOf(server.child.pid!)[0]!)[0]!;
      expect(await openMany(server.port, 1100, opened)).toBe(1100);
      // The worker held no more than its 300 (plus its own few descriptors).
      expect(readdirSync(`/proc/${worker}/fd`).length).toBeLessThan(300 + 20);
      expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201); // and it still serves
    } finally {
      for (const socket of opened) socket.destroy();
      await server.stop();
    }
  }, 60_000);

  it('makes room once a worker that was asked while every connection was mid-request has idle ones', async () => {
    // When the front asked, both connections had sent half a request, so the
    // worker had none to close; the third waited for the 75 s keep-alive timeout.
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--worker-connections', '2']);
    const opened: net.Socket[] = [];
    try {
      const halves = [0, 1].map(() => {
        const socket = net.connect(server.port, '127.0.0.1');
        opened.push(socket);
        socket.write('GET / HTTP/1.1\r\nHost: t\r\n');
        return new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString('latin1'))));
      });
      await sleep(300); // the worker holds both
      const third = openMany(server.port, 1, opened);
      await sleep(300); // the front has asked for room, and got none
      for (const socket of opened.slice(0, 2)) socket.write('\r\n');
      expect((await Promise.all(halves)).map((a) => a.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
      const started = Date.now();
      expect(await third).toBe(1);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      for (const socket of opened) socket.destroy();
      await server.stop();
    }
  }, 20_000);

  it('refuses more connections per worker than select() can watch', async () => {
    const refused = spawnServer(['--listen', '127.0.0.1:0', '--worker-connections', '1001']);
    expect(await refused.exited).toEqual({ code: 1, signal: null });
    expect(refused.stderr()).toMatch(/worker-connections needs a whole number from 1 to 1000/);
  });
});

describe('a client that reads its answer slowly', () => {
  let server: Server;
  beforeAll(async () => {
    requirePhp();
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--max-response', '64M']);
  });
  afterAll(() => server?.stop());
  const worker = () => childrenOf(childrenOf(server.child.pid!)[0]!)[0]!;

  /** A connection that asks for `bytes` of answer and reads none of it until told. */
  function stalled(bytes: number) {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.pause();
    socket.write(`GET /big.php?bytes=${bytes} HTTP/1.1\r\nHost: t\r\n\r\n`);
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => {});
    return {
      socket,
      closed,
      /** Read everything: resolves with the body's length once the answer is whole. */
      readAll: () =>
        new Promise<number>((resolve) => {
          const chunks: Buffer[] = [];
          socket.on('data', (d: Buffer) => {
            chunks.push(d);
            const all = Buffer.concat(chunks);
            const end = all.indexOf('\r\n\r\n');
            if (end > 0 && all.length - end - 4 >= bytes) resolve(all.length - end - 4);
          });
          socket.resume();
        }),
    };
  }

  it('holds up no other connection of its worker, and still gets every byte', async () => {
    const slow = stalled(20_000_000);
    await sleep(300); // the worker has written what the socket takes, and keeps the rest
    const started = Date.now();
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    expect(Date.now() - started).toBeLessThan(2000); // (it waited for the slow client, about a minute, before)
    expect(await slow.readAll()).toBe(20_000_000);
    slow.socket.destroy();
  });

  it('gets the rest of an answer sent early (fastcgi_finish_request()) while the script runs on: the front writes it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'folk-direct-'));
    const [mark, done] = [join(dir, 'mark'), join(dir, 'done')];
    const before = temporaryFiles();
    try {
      const socket = net.connect(server.port, '127.0.0.1');
      socket.pause();
      socket.write(`GET /finish.php?bytes=20000000&marker=${mark}&done=${done} HTTP/1.1\r\nHost: t\r\n\r\n`);
      await sleep(300); // the worker has written what the sockets take, and the script works on
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.resume();
      const body = `answered early\n${'x'.repeat(20_000_000)}`;
      const whole = () => {
        const got = Buffer.concat(chunks);
        const end = got.indexOf('\r\n\r\n');
        return end > 0 && got.length - end - 4 >= body.length;
      };
      for (let i = 0; i < 400 && !whole(); i++) await sleep(10);
      const got = Buffer.concat(chunks).toString('latin1');
      expect(got.slice(got.indexOf('\r\n\r\n') + 4)).toBe(body);
      // Only now: the script is still running (it waits 5 s for the marker).
      writeFileSync(mark, '');
      for (let i = 0; i < 200 && !existsSync(done); i++) await sleep(25);
      expect(JSON.parse(readFileSync(done, 'utf8'))).toMatchObject({ first: true, sawMarker: true });
      // The connection goes on: the front gave it back to a worker once the rest was out.
      chunks.length = 0;
      socket.write('GET /plain.php HTTP/1.1\r\nHost: t\r\n\r\n');
      for (let i = 0; i < 200 && !Buffer.concat(chunks).includes('\r\n\r\n'); i++) await sleep(10);
      expect(Buffer.concat(chunks).toString('latin1')).toMatch(/^HTTP\/1\.1 201 /);
      socket.destroy();
      // The file that carried the rest is closed on both sides (and was never left in the temporary directory).
      const open = (pid: number) =>
        readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
          try {
            return [readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'utf8' })];
          } catch {
            return []; // closed meanwhile
          }
        });
      expect([...open(childrenOf(server.child.pid!)[0]!), ...open(worker())].filter((f) => f.includes('folk-rest-'))).toEqual([]);
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith('folk-rest-'))).toEqual([]);
      // Nor the one that held the answer while the client was slow: no file of ours is left, whatever ends the worker.
      expect([...temporaryFiles()].filter((f) => !before.has(f) && f !== basename(dir))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is closed, not handed to another worker, when its worker dies before the answer is written; the file that held the answer goes with the worker', async () => {
    const before = temporaryFiles();
    const slow = stalled(20_000_000);
    await sleep(300);
    process.kill(worker(), 'SIGKILL');
    await sleep(300);
    // It reads what was sent, then the connection ends (it waited for ever on a connection another worker took, before).
    const chunks: Buffer[] = [];
    slow.socket.on('data', (d: Buffer) => chunks.push(d));
    slow.socket.resume();
    await slow.closed;
    const got = Buffer.concat(chunks);
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(20_000_000);
    // One answer, cut short: no 502 written after part of a 200 (the front
    // answers a request whose worker died only when nothing was sent yet).
    expect(got.toString('latin1').match(/HTTP\/1\.1 /g)).toEqual(['HTTP/1.1 ']);
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
    expect([...temporaryFiles()].filter((f) => !before.has(f))).toEqual([]);
  });
});

describe('the scoreboard directory', () => {
  beforeAll(() => requirePhp());

  it("removes those of fronts that died without removing theirs, and keeps a live front's", async () => {
    const dead = spawnSync('true').pid!; // a pid that has ended
    const stale = `/dev/shm/folk-app-scoreboard-${dead}-test`;
    const live = `/dev/shm/folk-app-scoreboard-${process.pid}-test`;
    const unnamed = `/dev/shm/folk-app-scoreboard-${dead}test`; // not prefix-PID-letters: left alone (parseInt found a pid in it)
    for (const dir of [stale, live, unnamed]) mkdirSync(dir, { recursive: true });
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1']);
    try {
      expect([existsSync(stale), existsSync(live), existsSync(unnamed)]).toEqual([false, true, true]);
      // Its own is named after its front, and goes when it stops.
      const front = childrenOf(server.child.pid!)[0]!;
      expect(readdirSync('/dev/shm').filter((d) => d.startsWith(`folk-app-scoreboard-${front}-`))).toHaveLength(1);
      await server.stop();
      expect(readdirSync('/dev/shm').filter((d) => d.startsWith(`folk-app-scoreboard-${front}-`))).toHaveLength(0);
    } finally {
      for (const dir of [live, unnamed]) rmSync(dir, { recursive: true, force: true });
      await server.stop(); // (again, if an expectation failed before the first)
    }
  });
});

describe('a worker that dies with requests waiting', () => {
  let server: Server;
  let dir: string;
  beforeAll(async () => {
    requirePhp();
    dir = mkdtempSync(join(tmpdir(), 'folk-direct-'));
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1']);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const worker = () => childrenOf(childrenOf(server.child.pid!)[0]!)[0]!;

  /** GET a page that flushes (stream.php): `started` once its first bytes come, `ended` with the status or the error. */
  function streamed(agent: http.Agent, path: string) {
    let started!: () => void;
    const first = new Promise<void>((resolve) => (started = resolve));
    const ended = new Promise<number | string>((resolve) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path, agent }, (res) => {
          res.once('data', () => started());
          res.on('data', () => {});
          res.on('end', () => resolve(res.statusCode!));
          res.on('error', (err) => resolve(err.message));
        })
        .on('error', (err) => resolve(err.message));
    });
    return { first, ended };
  }

  it('after fastcgi_finish_request(), killed in the script that runs on, leaves that connection and the request waiting on it to its replacement', async () => {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const answers = async (count: number) => {
      for (let i = 0; i < 300 && (got.match(/^HTTP\/1\.1 /gm) ?? []).length < count; i++) await sleep(10);
      return got.match(/^HTTP\/1\.1 \d+/gm) ?? [];
    };
    try {
      // (No marker: the script works on for 5 s.)
      socket.write(`GET /finish.php?marker=${join(dir, 'never')}&done=${join(dir, 'done')} HTTP/1.1\r\nHost: t\r\n\r\n`);
      expect(await answers(1)).toEqual(['HTTP/1.1 200']);
      socket.write('GET /plain.php HTTP/1.1\r\nHost: t\r\n\r\n');
      await sleep(200); // it waits in the kernel: the only worker is busy
      process.kill(worker(), 'SIGKILL');
      expect(await answers(2)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 201']);
    } finally {
      socket.destroy();
    }
  });

  it('leaves the requests it had not begun to its replacement, even those that came in the same turn as its last', async () => {
    // Five keep-alive connections, taken by the one worker in this order
    // (the slow one first: it is read first when all are readable at once).
    const [slowAgent, busyAgent, ...others] = Array.from({ length: 5 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const agents = [slowAgent!, busyAgent!, ...others];
    const go = join(dir, 'go');
    try {
      for (const agent of agents) expect((await request(server.port, 'GET', '/plain.php', { agent })).status).toBe(201);
      // The worker is busy (it flushed, and waits for "go") when the slow
      // request and three others arrive; when it is done, one select()
      // finds all four.
      const busy = streamed(busyAgent!, `/stream.php?marker=${go}&wait=20000`);
      await busy.first;
      const slow = streamed(slowAgent!, `/stream.php?marker=${join(dir, 'never')}&wait=20000`);
      const waiting = others.map((agent) => request(server.port, 'GET', '/plain.php', { agent }).then((r) => r.status, (err: Error) => err.message));
      await sleep(200);
      writeFileSync(go, '');
      expect(await busy.ended).toBe(200);
      await slow.first; // it serves the slow request now
      process.kill(worker(), 'SIGKILL');
      expect(await slow.ended).not.toBe(200); // cut short
      // Not read when it died: the front hands them on with their requests (they were closed, before).
      expect(await Promise.all(waiting)).toEqual([201, 201, 201]);
    } finally {
      for (const agent of agents) agent.destroy();
    }
  });
});
