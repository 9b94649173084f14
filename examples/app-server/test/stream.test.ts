// A script that flushes (flush(), ob_flush()), in direct mode and with
// --direct off: the client gets what it wrote so far while it runs, in
// chunks, as through nginx and php-fpm; the limits, a worker that dies and
// late headers still behave.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, keepAliveClient, rawExchange, request, requirePhp, sleep, startServer, type Server } from './helpers.js';

interface Streamed {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The body's first bytes came before the script ended (the test then made the marker file it waits for). */
  marked: boolean;
}

/** GET `path` with ?marker=FILE appended: FILE is created as soon as the first bytes of the body arrive. */
function getStreamed(port: number, path: string, marker: string, options: { pauseAfter?: number; agent?: http.Agent } = {}): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const url = `${path}${path.includes('?') ? '&' : '?'}marker=${encodeURIComponent(marker)}`;
    const req = http.get({ host: '127.0.0.1', port, path: url, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      let length = 0;
      let paused = false;
      res.on('data', (c: Buffer) => {
        if (chunks.length === 0) writeFileSync(marker, '');
        chunks.push(c);
        length += c.length;
        // A client that stops reading for a while: the worker must wait for it, not lose bytes.
        if (options.pauseAfter !== undefined && !paused && length > options.pauseAfter) {
          paused = true;
          res.pause();
          setTimeout(() => res.resume(), 500);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), marked: existsSync(marker) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

describe.each([
  ['in direct mode', 'on'],
  ['with --direct off (the answer in pieces through the front)', 'off'],
] as const)('a script that flushes, %s', (_mode, direct) => {
  let server: Server;
  let dir: string;
  let n = 0;
  const marker = () => join(dir, `marker-${++n}`);
  beforeAll(async () => {
    requirePhp();
    dir = mkdtempSync(join(tmpdir(), 'folk-stream-'));
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '2', '--direct', direct,
      '--max-response', '1M', '--exec-timeout', '4000', '--access-log', join(dir, 'access.log')]);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const how of ['flush', 'ob']) {
    it(`${how === 'ob' ? 'ob_flush()' : 'flush()'} sends what the script wrote so far while it runs, in chunks; the access log counts the body`, async () => {
      const reply = await getStreamed(server.port, `/stream.php?how=${how}&wait=10000`, marker());
      expect(reply.status).toBe(200);
      expect(reply.body.toString()).toBe('first part\nsaw marker\nlast part\n');
      expect(reply.headers['transfer-encoding']).toBe('chunked');
      expect(reply.headers['content-length']).toBeUndefined();
      expect(reply.headers['x-stream']).toBe('yes');
      expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
      // The worker writes the line after the answer: the client may read it first.
      const line = new RegExp(`"GET /stream\\.php\\?how=${how}&[^"]*" 200 ${reply.body.length} `);
      for (let i = 0; i < 100 && !line.test(readFileSync(join(dir, 'access.log'), 'utf8')); i++) await sleep(50);
      expect(readFileSync(join(dir, 'access.log'), 'utf8')).toMatch(line);
    });
  }

  it("flush() inside the script's own ob_start() sends nothing yet, as under php-fpm", async () => {
    const reply = await getStreamed(server.port, '/stream.php?how=nested&wait=300', marker());
    expect(reply.body.toString()).toBe('first part\nno marker\nlast part\n');
    expect(reply.headers['content-length']).toBe(String(reply.body.length));
  });

  it('keeps the connection open for the next request after a streamed answer', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set();
    agent.on('free', (socket) => sockets.add(socket));
    try {
      const first = await getStreamed(server.port, '/stream.php?parts=3&size=100000', marker(), { agent });
      expect(first.body.toString()).toBe(`first part\nsaw marker\n${'a'.repeat(100_000)}${'b'.repeat(100_000)}${'c'.repeat(100_000)}last part\n`);
      const second = await request(server.port, 'GET', '/plain.php', { agent });
      expect(second.status).toBe(201); // (plain.php's own status)
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('to an HTTP/1.0 client: no chunks, the body ends when the connection closes', async () => {
    const raw = (await rawExchange(server.port, 'GET /stream.php?parts=2&size=5 HTTP/1.0\r\n\r\n')).toString('latin1');
    const [head, body] = [raw.slice(0, raw.indexOf('\r\n\r\n')), raw.slice(raw.indexOf('\r\n\r\n') + 4)];
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head).toMatch(/\r\nConnection: close(\r\n|$)/); // (not chunked, so it cannot stay open)
    expect(head).not.toMatch(/Transfer-Encoding|Content-Length/i);
    expect(body).toBe('first part\naaaaabbbbblast part\n');
  });

  it('to a HEAD request: the head alone', async () => {
    const raw = (await rawExchange(server.port, 'HEAD /stream.php?parts=2&size=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toString('latin1');
    expect(raw).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(raw.endsWith('\r\n\r\n')).toBe(true);
    expect(raw).not.toMatch(/first part/);
  });

  it('streams 40 MB past --max-response (1M) in parts, whole and in order, to a client that stops reading for a while', async () => {
    const parts = 640;
    const size = 65536;
    const reply = await getStreamed(server.port, `/stream.php?parts=${parts}&size=${size}`, marker(), { pauseAfter: 4 << 20 });
    const start = 'first part\nsaw marker\n'.length;
    expect(reply.body.length).toBe(start + parts * size + 'last part\n'.length);
    for (const i of [0, 1, 25, 26, 300, parts - 1]) {
      const part = reply.body.subarray(start + i * size, start + (i + 1) * size);
      expect(part.equals(Buffer.alloc(size, 97 + (i % 26))), `part ${i}`).toBe(true);
    }
  });

  it('output over --max-response after the last flush cuts the answer short (a status is too late)', async () => {
    const raw = (await rawExchange(server.port, 'GET /big.php?flush=1&bytes=2000000 HTTP/1.1\r\nHost: x\r\n\r\n')).toString('latin1');
    expect(raw).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(raw).not.toMatch(/\r\n0\r\n\r\n$/);
    expect(raw).not.toMatch(/502/);
    await server.waitFor(/GET \/big\.php\?flush=1&bytes=2000000: output (of 2000000 bytes )?after the last flush is over --max-response/, { stream: 'stderr' });
  });

  for (const [how, query, log] of [
    ['killed', 'then=kill&wait=0', /GET \/stream\.php\?then=kill[^:]*: .*worker (pid )?\d+ .*SIGKILL.* after sending part of the answer: connection closed/],
    ['past --exec-timeout', 'wait=60000', /GET \/stream\.php\?wait=60000[^:]*: .*(worker \d+ ended \(SIGKILL\)|ERR_WORKER_EXEC_TIMEOUT).* after sending part of the answer: connection closed/],
  ] as const) {
    it(`a worker ${how} after it flushed: the client sees the answer cut short, never a status line inside it`, async () => {
      const raw = (await rawExchange(server.port, `GET /stream.php?${query}&marker=${join(dir, 'never')} HTTP/1.1\r\nHost: x\r\n\r\n`)).toString('latin1');
      expect(raw).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nb\r\nfirst part\n\r\n/);
      expect(raw).not.toMatch(/HTTP\/1\.1 50\d/);
      expect(raw).not.toMatch(/\r\n0\r\n\r\n$/);
      await server.waitFor(log, { stream: 'stderr' });
      expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201); // (plain.php's own status)
    });
  }

  it('a header set after the flush is not sent, and the log says so', async () => {
    const reply = await getStreamed(server.port, '/stream.php?then=late', marker());
    expect(reply.body.toString()).toBe('first part\nsaw marker\nlast part\n');
    expect(reply.headers['x-late']).toBeUndefined();
    await server.waitFor(/GET \/stream\.php\?then=late[^:]*: a status or headers set after the script flushed were not sent/, { stream: 'stderr' });
  });

  it("the README's server-sent events reach the client one by one", async () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    const code = /### A script that flushes[^]*?```php\n([^]*?)```/.exec(readme)![1]!;
    const root = join(dir, 'readme-root');
    mkdirSync(root);
    writeFileSync(join(root, 'events.php'), code);
    const other = await startServer(['--listen', '127.0.0.1:0', '--root', root, '--fronts', '1', '--workers', '1', '--direct', direct]);
    try {
      const events: { at: number; text: string }[] = [];
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: other.port, path: '/events.php' }, (res) => {
          expect(res.headers['content-type']).toMatch(/^text\/event-stream/); // (PHP adds its charset, under php-fpm too)
          res.on('data', (c: Buffer) => events.push({ at: Date.now(), text: c.toString() }));
          res.on('end', resolve);
          res.on('error', reject);
        }).on('error', reject);
      });
      expect(events.map((e) => e.text).join('')).toBe('data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\n');
      // The script sleeps a second after each event: whole at the end, they would come together.
      expect(events.at(-1)!.at - events[0]!.at).toBeGreaterThan(1500);
    } finally {
      await other.stop();
    }
  });

  it('exit() after a flush ends the answer whole', async () => {
    const reply = await getStreamed(server.port, '/stream.php?then=exit', marker());
    expect(reply.body.toString()).toBe("first part\nsaw marker\nexit's own words\n");
  });

  if (direct === 'off') return; // (fastcgi_finish_request() and client aborts are direct mode's: see below)

  /** GET an endless event stream (events.php), read its first event, then go away; the script's log file. */
  async function leaveStream(query: string): Promise<string> {
    const log = join(dir, `events-${++n}.log`);
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: server.port, path: `/events.php?log=${encodeURIComponent(log)}${query}` }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    });
    return log;
  }
  /** The script's log so far ('' before its first line: the client can see a tick before the script logs it). */
  const logOf = (log: string) => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  const ticks = (log: string) => (logOf(log).match(/^tick/gm) ?? []).length;

  it('a client that goes away from an endless stream ends its script at the next flush, as PHP ends it; its worker is replaced', async () => {
    const log = await leaveStream('');
    for (let i = 0; i < 100 && !/shutdown/.test(logOf(log)); i++) await sleep(50);
    // The shutdown function ran, and saw the abort; no tick came after it.
    expect(logOf(log)).toMatch(/^(tick \d+\n)+shutdown 1\n$/);
    const ran = ticks(log);
    expect(ran).toBeLessThan(10);
    await sleep(400);
    expect(ticks(log)).toBe(ran);
    await server.waitFor(/GET \/events\.php\?log=[^:]*: the client went away during a streamed answer: the script was ended/, { stream: 'stderr' });
    for (let i = 0; i < 4; i++) expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
  });

  it('a script that asked ignore_user_abort() runs on when its client goes away (until --exec-timeout here)', async () => {
    const logged = server.stderr().length;
    const log = await leaveStream('&ignore=1');
    await sleep(300);
    const before = ticks(log);
    await sleep(600);
    expect(ticks(log)).toBeGreaterThan(before + 2);
    // Killed at --exec-timeout (4 s), before the next test needs both workers.
    for (let i = 0; i < 200 && !/has run one request for over --exec-timeout/.test(server.stderr().slice(logged)); i++) await sleep(50);
    expect(server.stderr().slice(logged)).toMatch(/has run one request for over --exec-timeout/);
    expect(server.stderr().slice(logged)).not.toMatch(/client went away during a streamed answer/);
  }, 15_000);

  it('fastcgi_finish_request() answers whole at once, and the script runs on, its later output dropped', async () => {
    const [mark, done] = [marker(), join(dir, `done-${n}`)];
    const reply = await request(server.port, 'GET', `/finish.php?marker=${mark}&done=${done}`);
    writeFileSync(mark, ''); // only now: the script, still running, sees it
    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe('answered early\n');
    expect(reply.headers['content-length']).toBe('15');
    expect(reply.headers['x-early']).toBe('yes');
    expect(reply.headers['x-late']).toBeUndefined();
    for (let i = 0; i < 200 && !existsSync(done); i++) await sleep(25);
    expect(JSON.parse(readFileSync(done, 'utf8'))).toEqual({ first: true, second: false, sawMarker: true });
  });

  it('fastcgi_finish_request() keeps the connection: its next request is served by another worker while the script runs on', async () => {
    const [mark, done] = [marker(), join(dir, `done-${n}`)];
    const client = keepAliveClient(server.port);
    try {
      const first = await client.get(`/finish.php?marker=${mark}&done=${done}`);
      expect(first.headers.connection).toBe('keep-alive');
      expect(client.sockets()).toBe(1); // kept for the next request
      const started = Date.now();
      expect((await client.get('/plain.php')).status).toBe(201);
      expect(Date.now() - started).toBeLessThan(1000); // (the script waits up to 5 s for the marker)
      expect(existsSync(done)).toBe(false); // still running
      expect(client.sockets()).toBe(1); // on the same connection
      writeFileSync(mark, '');
      for (let i = 0; i < 200 && !existsSync(done); i++) await sleep(25);
      expect(JSON.parse(readFileSync(done, 'utf8'))).toEqual({ first: true, second: false, sawMarker: true });
    } finally {
      client.close();
    }
  });

});

describe('fastcgi_finish_request(), with --direct off', () => {
  let server: Server;
  beforeAll(async () => {
    requirePhp();
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--direct', 'off']);
  });
  afterAll(() => server?.stop());

  it('does not exist (function_exists() says so, and scripts do without)', async () => {
    const reply = await request(server.port, 'GET', '/finish.php');
    expect(reply.body.toString()).toBe('answered early\nno fastcgi_finish_request\n');
  });
});
