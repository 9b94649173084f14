// HTTP as php-fpm behind nginx gives it: header bytes unchanged, $_SERVER
// and the other superglobals, the body limit on the body alone, responses
// with their own limit, and errors that tell the client nothing internal.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WWW, bytes, listenBacklog, phpHas, rawExchange, request, requirePhp, sleep, startServer, tree, type Server } from './helpers.js';

const MiB = 1024 * 1024;

describe('an ordinary PHP script', () => {
  let server: Server;
  beforeAll(async () => {
    requirePhp();
    // One worker, so consecutive requests reach the same PHP process.
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--max-response', '24M', '--backlog', '1000', '--exec-timeout', '1500']);
  });
  afterAll(() => server?.stop());

  it('gets the bytes of a UTF-8 request header unchanged, and its response header reaches the client unchanged', async () => {
    const r = await request(server.port, 'GET', '/plain.php', { headers: { 'X-Test': bytes('tüst') } });
    const json = JSON.parse(r.body.toString());
    expect(json.x_test_hex).toBe(Buffer.from('tüst').toString('hex')); // 74c3bc7374, not the double-encoded c383c2bc
    expect(json.server.HTTP_X_TEST).toBe('tüst');
    expect(Buffer.from(r.headers['x-header-seen'] as string, 'latin1').toString('utf8')).toBe('tüst');
  });

  it("sees $_SERVER, $_GET, $_POST, $_COOKIE, $_REQUEST and php://input as php-fpm gives them, and sets status and headers", async () => {
    const body = 'p=1&q[]=2&q[]=3&name=a+b';
    const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const r = await request(server.port, 'POST', '/plain.php/extra/path?x=1&y[k]=v&status=202', {
        agent,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: 'c=1; d=%41', 'X-Two': ['a', 'b'], Host: 'example.test:8080' },
        body,
      });
      expect(r.status).toBe(202);
      expect(r.rawHeaders.filter((_, i) => i % 2 === 0 && r.rawHeaders[i]!.toLowerCase() === 'set-cookie').length).toBe(2);
      expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2']);
      expect(r.headers['content-type']).toBe('application/json');
      const json = JSON.parse(r.body.toString());
      const s = json.server;
      expect(s).toMatchObject({
        REQUEST_METHOD: 'POST',
        REQUEST_URI: '/plain.php/extra/path?x=1&y[k]=v&status=202',
        QUERY_STRING: 'x=1&y[k]=v&status=202',
        CONTENT_TYPE: 'application/x-www-form-urlencoded',
        CONTENT_LENGTH: String(body.length),
        SERVER_PROTOCOL: 'HTTP/1.1',
        REQUEST_SCHEME: 'http',
        GATEWAY_INTERFACE: 'CGI/1.1',
        SERVER_NAME: 'example.test',
        SERVER_ADDR: '127.0.0.1',
        SERVER_PORT: String(server.port),
        REMOTE_ADDR: '127.0.0.1',
        HTTP_HOST: 'example.test:8080',
        HTTP_COOKIE: 'c=1; d=%41',
        HTTP_X_TWO: 'a, b',
        SCRIPT_NAME: '/plain.php',
        SCRIPT_FILENAME: `${WWW}/plain.php`,
        PATH_INFO: '/extra/path',
        PHP_SELF: '/plain.php/extra/path',
        DOCUMENT_ROOT: WWW,
        REDIRECT_STATUS: '200',
      });
      expect(Number(s.REMOTE_PORT)).toBeGreaterThan(0);
      expect(s.HTTPS).toBeUndefined();
      expect(typeof s.REQUEST_TIME).toBe('number');
      expect(json.get).toEqual({ x: '1', y: { k: 'v' }, status: '202' });
      expect(json.post).toEqual({ p: '1', q: ['2', '3'], name: 'a b' });
      expect(json.cookie).toEqual({ c: '1', d: 'A' });
      expect(json.request).toEqual({ ...json.get, ...json.post });
      expect(Buffer.from(json.input, 'base64').toString()).toBe(body);
      expect(json.cwd).toBe(WWW); // a script runs in its own directory
      expect(json.leftover).toBe(false);

      // The same worker again: nothing of the last request is left.
      const again = JSON.parse((await request(server.port, 'GET', '/plain.php', { agent })).body.toString());
      expect(again.server.REQUEST_METHOD).toBe('GET');
      expect(again.leftover).toBe(false); // the global the script set last time is gone
      expect(again.get).toEqual([]); // PHP's json_encode of an empty array
      expect(again.post).toEqual([]);
      expect(again.cookie).toEqual([]);
      expect(again.input).toBe('');
      expect(again.server.CONTENT_LENGTH).toBe('');
      expect(again.server.PATH_INFO).toBe('');
    } finally {
      agent.destroy();
    }
  });

  it('finds $_ENV on every request, though PHP makes it only when a script first names it; with APP_RUNNING_IN_CONSOLE "false" for Laravel', async () => {
    // (Made after the worker started, the first time a file using it was
    // compiled; the same file, cached by opcache, is not compiled again.
    // php-fpm's $_ENV is empty; Laravel would take PHP_SAPI "cli" for a console.)
    for (let i = 0; i < 3; i++) expect((await request(server.port, 'GET', '/env.php')).body.toString()).toBe('{"APP_RUNNING_IN_CONSOLE":"false"}');
  });

  it('gets a chunked body with CONTENT_LENGTH set, and multipart fields and files', async () => {
    const chunked = await rawExchange(
      server.port,
      'POST /plain.php HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
    );
    const json = JSON.parse(chunked.subarray(chunked.indexOf('\r\n\r\n') + 4).toString());
    expect(Buffer.from(json.input, 'base64').toString()).toBe('hello world');
    expect(json.server.CONTENT_LENGTH).toBe('11');

    const boundary = 'XyZ';
    const form = [
      `--${boundary}\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue 1\r\n`,
      `--${boundary}\r\nContent-Disposition: form-data; name="list[]"\r\n\r\nv2\r\n`,
      `--${boundary}\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n`,
      `--${boundary}--\r\n`,
    ].join('');
    const r = await request(server.port, 'POST', '/plain.php', { headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` }, body: form });
    const m = JSON.parse(r.body.toString());
    expect(m.post).toEqual({ field: 'value 1', list: ['v2'] });
    expect(m.files.upload).toMatchObject({ name: 'a.txt', type: 'text/plain', error: 0, size: 9 });
  });

  it('applies --max-body to the body alone: 1 MiB - 100 bytes and exactly 1 MiB pass, 1 MiB + 1 is 413 (with or without Content-Length)', async () => {
    expect((await request(server.port, 'POST', '/plain.php', { body: Buffer.alloc(MiB - 100, 'a') })).status).toBe(201);
    expect((await request(server.port, 'POST', '/plain.php', { body: Buffer.alloc(MiB, 'a') })).status).toBe(201);
    const over = await request(server.port, 'POST', '/plain.php', { body: Buffer.alloc(MiB + 1, 'a') });
    expect(over.status).toBe(413);
    expect(over.body.toString()).toBe('413 Payload Too Large\n');
    // Chunked, so only counting the bytes can tell.
    const chunk = Buffer.alloc(256 * 1024, 'a');
    const raw = await rawExchange(
      server.port,
      Buffer.concat([
        Buffer.from('POST /plain.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'),
        ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])),
        Buffer.from('0\r\n\r\n'),
      ]),
    );
    expect(raw.toString('latin1', 0, 30)).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('sends a 20 MB response whole, and a response over --max-response is a generic 502 with the detail in the log', async () => {
    const big = await request(server.port, 'GET', '/big.php?bytes=20000000');
    expect(big.status).toBe(200);
    expect(big.body.length).toBe(20_000_000);
    const tooBig = await request(server.port, 'GET', '/big.php?bytes=26000000');
    expect(tooBig.status).toBe(502);
    expect(tooBig.body.toString()).toBe('502 Bad Gateway\n');
    await server.waitFor(/502 GET \/big\.php\?bytes=26000000: .*--max-response/, { stream: 'stderr' });
  });

  it('tells the client only "502 Bad Gateway" when a worker dies, and "504 Gateway Timeout" past --exec-timeout', async () => {
    const crash = await request(server.port, 'GET', '/crash.php');
    expect(crash.status).toBe(502);
    expect(crash.body.toString()).toBe('502 Bad Gateway\n');
    await server.waitFor(/502 GET \/crash\.php: ERR_WORKER_CRASHED/, { stream: 'stderr' });
    const slow = await request(server.port, 'GET', '/sleep.php?ms=5000');
    expect(slow.status).toBe(504);
    expect(slow.body.toString()).toBe('504 Gateway Timeout\n');
    // And the server goes on.
    expect((await request(server.port, 'GET', '/plain.php')).status).toBe(201);
  });

  it('sends what a script produced before exit() (and its headers), and a 500 for a fatal error, as php-fpm does', async () => {
    const exit = await request(server.port, 'GET', '/exit.php');
    expect(exit.status).toBe(302);
    expect(exit.headers.location).toBe('/elsewhere');
    expect(exit.body.toString()).toBe('going');
    // exit() ends the script, not its worker, as php-fpm's children serve on.
    const processes = tree(server.child.pid!);
    const many = await Promise.all(Array.from({ length: 6 }, () => request(server.port, 'GET', '/exit.php')));
    expect(many.map((r) => r.status)).toEqual(Array(6).fill(302));
    expect(tree(server.child.pid!)).toEqual(processes);
    const fatal = await request(server.port, 'GET', '/fatal.php');
    expect(fatal.status).toBe(500);
    expect(fatal.body.toString()).toBe('before ');
    await server.waitFor(/PHP Fatal error: {2}Uncaught Error: Call to undefined function undefined_function\(\)/, { stream: 'stderr' });
  });

  it("sends what a global object's destructor writes with its own answer, as php-fpm does, never with the next request's", async () => {
    // (One worker: each request after the first runs where the last one's globals were.)
    for (let i = 0; i < 3; i++) {
      expect((await request(server.port, 'GET', '/destructor.php')).body.toString()).toBe('body (destructed)');
      const next = await request(server.port, 'GET', '/dir/');
      expect(next.body.toString()).toBe(`dir index /dir/index.php  ${WWW}/dir`);
    }
  });

  it('starts each request without the last error of the one before (error_get_last()), as php-fpm does', async () => {
    // (One worker: the second request runs where the first one's warning was.)
    expect((await request(server.port, 'GET', '/last-error.php?warn=1')).body.toString()).toBe('"Undefined array key \\"missing\\""');
    expect((await request(server.port, 'GET', '/last-error.php')).body.toString()).toBe('null');
  });

  it.skipIf(!phpHas('memory_reset_peak_usage'))('starts each request with its own peak memory (memory_get_peak_usage()), as php-fpm does (PHP 8.2+)', async () => {
    // (One worker: the second request runs where the first one's 40 MB were.)
    expect(Number((await request(server.port, 'GET', '/peak-memory.php?mb=40')).body.toString())).toBeGreaterThanOrEqual(40);
    expect(Number((await request(server.port, 'GET', '/peak-memory.php')).body.toString())).toBeLessThan(20);
  });

  it("undoes a request's putenv() when it ends, as PHP does, so the next request has the worker's environment", async () => {
    // (One worker: the second request runs where the first one's putenv() was.)
    expect((await request(server.port, 'GET', '/putenv.php?set=one')).body.toString()).toBe('"one"');
    expect((await request(server.port, 'GET', '/putenv.php')).body.toString()).toBe('false');
  });

  it('ends a request whose shutdown function has a fatal error with a 500, and serves the next one from a sound worker', async () => {
    // PHP jumps out of such an error (it does not unwind); the worker went
    // on serving with its cycle collector switched off for good.
    expect((await request(server.port, 'GET', '/gc-works.php')).body.toString()).toBe('collects');
    const fatal = await request(server.port, 'GET', '/shutdown-fatal.php');
    expect(fatal.status).toBe(500);
    await server.waitFor(/PHP Fatal error: {2}the shutdown function gave up/, { stream: 'stderr' });
    expect((await request(server.port, 'GET', '/gc-works.php')).body.toString()).toBe('collects');
  });

  it('answers a script whose output callback, run as the request ends, calls exit(); the worker serves on', async () => {
    const processes = tree(server.child.pid!);
    const r = await request(server.port, 'GET', '/exit-in-buffer.php');
    expect({ status: r.status, body: r.body.toString() }).toEqual({ status: 200, body: '' }); // (as php-fpm: output inside a handler goes nowhere)
    expect(tree(server.child.pid!)).toEqual(processes);
    expect((await request(server.port, 'GET', '/dir/')).body.toString()).toBe(`dir index /dir/index.php  ${WWW}/dir`);
  });

  it('picks scripts as nginx does: a .php file, a directory index, else the front controller', async () => {
    expect((await request(server.port, 'GET', '/dir/')).body.toString()).toBe(`dir index /dir/index.php  ${WWW}/dir`);
    expect((await request(server.port, 'GET', '/no/such/page?a=1')).body.toString()).toBe('front controller /index.php for /no/such/page?a=1');
    expect((await request(server.port, 'GET', '/../../etc/passwd')).body.toString()).toMatch(/^File not found|^front controller/);
  });

  it('listens with the backlog it was given', () => {
    expect(listenBacklog(server.port)).toBe(1000);
  });
});

describe('opcache', () => {
  it.skipIf(!phpHas('opcache'))('caches a script written just before the workers started, or after, and serves an edited one anew: php-cli\'s one request time never moves', async () => {
    // opcache.file_update_protection (2 s by default) skips caching a file
    // whose mtime is within 2 s of the request's start; a worker's one
    // request started with the worker, so such a file, a deploy's, was
    // compiled anew on every request for the worker's life (half the
    // req/s of GET / in bench/app-server, whose document root is written
    // just before the server starts).
    requirePhp();
    const dir = mkdtempSync(join(tmpdir(), 'app-server-opcache-'));
    try {
      const cached = (name: string) => `<?php echo json_encode(opcache_is_script_cached(__DIR__ . '/${name}'));`;
      writeFileSync(join(dir, 'before.php'), '<?php echo "before";');
      writeFileSync(join(dir, 'check-before.php'), cached('before.php'));
      const server = await startServer(['--listen', '127.0.0.1:0', '--root', dir, '--fronts', '1', '--workers', '1']);
      try {
        writeFileSync(join(dir, 'after.php'), '<?php echo "after";');
        writeFileSync(join(dir, 'check-after.php'), cached('after.php'));
        for (const name of ['before', 'after']) {
          for (let i = 0; i < 3; i++) expect((await request(server.port, 'GET', `/${name}.php`)).body.toString()).toBe(name);
          expect({ name, cached: (await request(server.port, 'GET', `/check-${name}.php`)).body.toString() }).toEqual({ name, cached: 'true' });
        }
        // And an edited script is served anew, as php-fpm serves it once
        // revalidate_freq has passed (opcache would never look again: its
        // clock is the worker's one request time).
        await sleep(1100); // (a new mtime, in whole seconds)
        writeFileSync(join(dir, 'before.php'), '<?php echo "edited";');
        expect((await request(server.port, 'GET', '/before.php')).body.toString()).toBe('edited');
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('max_execution_time', () => {
  it('counts each request from its start, as under php-fpm, not the worker from its own', async () => {
    // php-cli sets PHP's timer once, when its one request starts: a worker
    // given max_execution_time=1 failed whichever request took its CPU
    // time past one second in all.
    requirePhp();
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--define', 'max_execution_time=1']);
    try {
      for (let i = 0; i < 5; i++) expect((await request(server.port, 'GET', '/busy.php?ms=300')).status).toBe(200);
      const slow = await request(server.port, 'GET', '/busy.php?ms=1500');
      expect(slow.status).toBe(500);
      await server.waitFor(/PHP Fatal error: {2}Maximum execution time of 1 second exceeded/, { stream: 'stderr' });
      expect((await request(server.port, 'GET', '/busy.php?ms=300')).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});

describe('settings', () => {
  it('reads a config file of "key = value" lines, flags winning over it, and writes a combined access log', async () => {
    requirePhp();
    const dir = mkdtempSync(join(tmpdir(), 'app-server-config-'));
    try {
      const log = join(dir, 'access.log');
      const config = join(dir, 'app.conf');
      writeFileSync(
        config,
        ['; php-fpm style comments', '# and shell style', `root = ${WWW}`, 'workers = 3', 'fronts = 1', 'max_body = 1K', 'max-jobs = 5', `access-log = ${log}`, 'define = max_input_vars=7', 'https = on', ''].join('\n'),
      );
      const server = await startServer(['--config', config, '--listen', '127.0.0.1:0', '--workers', '2']);
      try {
        expect(server.stdout()).toMatch(/with 1 front and 2 PHP workers/); // the flag's 2, not the file's 3
        expect((await request(server.port, 'POST', '/plain.php', { body: Buffer.alloc(1024) })).status).toBe(201);
        expect((await request(server.port, 'POST', '/plain.php', { body: Buffer.alloc(1025) })).status).toBe(413);
        // define: an ini setting on the workers' command line (parse_str keeps 7 variables).
        const many = Array.from({ length: 20 }, (_, i) => `v${i}=1`).join('&');
        const json = JSON.parse((await request(server.port, 'GET', `/plain.php?${many}`)).body.toString());
        expect(Object.keys(json.get)).toHaveLength(7);
        expect(json.server).toMatchObject({ HTTPS: 'on', REQUEST_SCHEME: 'https' }); // https = on: behind a TLS proxy
        await request(server.port, 'GET', '/plain.php?x="y"', { headers: { Referer: 'http://ref/', 'User-Agent': bytes('tüst "agent"') } });
      } finally {
        expect(await server.stop()).toEqual({ code: 0, signal: null });
      }
      const lines = readFileSync(log, 'latin1').trimEnd().split('\n');
      expect(lines).toHaveLength(4);
      expect(lines[1]).toMatch(/^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "POST \/plain\.php HTTP\/1\.1" 413 22 "-" "-"$/);
      expect(lines[3]).toMatch(/"GET \/plain\.php\?x=\\x22y\\x22 HTTP\/1\.1" 201 \d+ "http:\/\/ref\/" "t\\xC3\\xBCst \\x22agent\\x22"$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('defaults', () => {
  it('listens with a backlog of 511, as nginx does', async () => {
    requirePhp();
    const server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1']);
    try {
      expect(listenBacklog(server.port)).toBe(511);
    } finally {
      await server.stop();
    }
  });
});

describe('timeouts on a connection, as nginx has them', () => {
  let server: Server;
  beforeAll(async () => {
    requirePhp();
    server = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--keepalive-timeout', '800', '--header-timeout', '800']);
  });
  afterAll(() => server?.stop());

  /** A raw connection: resolves with the ms from `since` to its close, and what came on it. */
  function open(): { socket: net.Socket; closed: Promise<{ after: number; data: string }>; since: () => void } {
    const socket = net.connect(server.port, '127.0.0.1');
    let start = Date.now();
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('error', () => {}); // a reset counts as closed too
    const closed = new Promise<{ after: number; data: string }>((resolve) => socket.on('close', () => resolve({ after: Date.now() - start, data })));
    return { socket, closed, since: () => (start = Date.now()) };
  }

  it('closes a keep-alive connection left idle past --keepalive-timeout (keepalive_timeout), not before', async () => {
    const c = open();
    c.socket.write('GET /plain.php HTTP/1.1\r\nHost: t\r\n\r\n');
    await new Promise((resolve) => c.socket.once('data', resolve));
    c.since();
    const { after, data } = await c.closed;
    expect(data).toMatch(/^HTTP\/1\.1 201 /);
    expect(after).toBeGreaterThanOrEqual(700);
    expect(after).toBeLessThan(3000);
  });

  it('gives a body that keeps coming all the time it takes (the timeout is between reads, as client_body_timeout)', async () => {
    const c = open();
    await new Promise((resolve) => c.socket.once('connect', resolve));
    c.socket.write('POST /plain.php HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n');
    // Ten bytes, one every 200 ms: 2 s in all, more than twice --header-timeout.
    for (let i = 0; i < 10; i++) {
      await sleep(200);
      c.socket.write('x');
    }
    await Promise.race([new Promise((resolve) => c.socket.once('data', resolve)), c.closed]);
    await sleep(50);
    c.socket.end();
    const { data } = await c.closed;
    expect(data).toMatch(/^HTTP\/1\.1 201 /);
    expect(data).toContain(`"input":"${Buffer.from('xxxxxxxxxx').toString('base64')}"`);
  });

  it('closes a connection whose body stops coming for --header-timeout (client_body_timeout), whatever its age', async () => {
    const c = open();
    await new Promise((resolve) => c.socket.once('connect', resolve));
    c.socket.write('POST /plain.php HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nxyz');
    c.since();
    const { after, data } = await c.closed;
    expect(after).toBeGreaterThanOrEqual(700);
    expect(after).toBeLessThan(3000); // (with --direct off it waited for Node's requestTimeout, 300 s)
    expect(data).not.toMatch(/^HTTP\/1\.1 2/); // no script ran for it
  });

  it('closes a connection whose request head does not come whole within --header-timeout (a slowloris)', async () => {
    const c = open();
    await new Promise((resolve) => c.socket.once('connect', resolve));
    c.since();
    c.socket.write('GET /plain.php HTTP/1.1\r\nHost: t\r\n');
    // A header line every 200 ms keeps the connection busy but never ends the head.
    const drip = setInterval(() => c.socket.writable && c.socket.write('X-Drip: 1\r\n'), 200);
    try {
      const { after, data } = await c.closed;
      expect(after).toBeGreaterThanOrEqual(700);
      expect(after).toBeLessThan(3000);
      expect(data).not.toMatch(/^HTTP\/1\.1 2/); // no script ran for it
    } finally {
      clearInterval(drip);
    }
  });
});
