// The app server beside its peer, nginx + php-fpm (Debian's, set up as the
// usual PHP site: try_files $uri $uri/ /index.php, fastcgi_split_path_info,
// fastcgi_params), serving the same test/www: the same requests to both must
// give scripts the same superglobals and php://input, and the client the
// same status, headers and body, but for what is listed as differing and why.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript, no types
import { NGINX, findFpm, startFpm, startNginx, stopFpm } from '../../../bench/php-fpm.mjs';
import { WWW, bytes, freePort, request, requirePhp, requirePhpExtensions, sleep, startServer, type Reply, type Server } from './helpers.js';

/** Debian's Symfony HttpFoundation, found on PHP's include path (/usr/share/php). */
const SYMFONY = '/usr/share/php/Symfony/Component/HttpFoundation/autoload.php';

/** Debian's Laravel framework, found on PHP's include path. */
const LARAVEL = '/usr/share/php/Illuminate/autoload.php';

/** nginx (bench/php-fpm.mjs's usual PHP site) in front of php-fpm on `socket`, root WWW; resolves once it answers. */
async function nginxInFront(dir: string, socket: string): Promise<{ port: number; process: ChildProcess }> {
  const port = await freePort();
  const nginx: ChildProcess = startNginx(dir, { port, root: WWW, socket, serverName: 'peer.test' });
  for (let i = 0; i < 200; i++) {
    if ((await request(port, 'GET', '/plain.php').catch(() => null)) !== null) return { port, process: nginx };
    await sleep(25);
  }
  nginx.kill('SIGTERM');
  throw new Error(`nginx did not come up:\n${existsSync(join(dir, 'nginx-error.log')) ? readFileSync(join(dir, 'nginx-error.log'), 'utf8') : ''}`);
}

/**
 * What a script saw (plain.php's JSON), made comparable: the temporary names
 * of uploads, and the $_SERVER entries that differ by nature (each server's
 * own port and software name, the clock) or by design (php-fpm's FastCGI
 * role) left out.
 */
function seen(reply: Reply): object {
  const json = JSON.parse(reply.body.toString()) as { server: Record<string, unknown>; files: unknown };
  const server = { ...json.server };
  for (const key of ['SERVER_PORT', 'REMOTE_PORT', 'SERVER_SOFTWARE', 'REQUEST_TIME', 'REQUEST_TIME_FLOAT', 'FCGI_ROLE']) delete server[key];
  const files = JSON.parse(JSON.stringify(json.files), (key, value) => (key === 'tmp_name' || key === 'full_path' ? undefined : value));
  return { ...json, server: Object.fromEntries(Object.entries(server).sort()), files };
}

/** The status, the headers a script decides (not Server, Date, Connection, framing), and the body. */
function answered(reply: Reply) {
  const headers = Object.fromEntries(
    Object.entries(reply.headers).filter(([name]) => !['server', 'date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'x-powered-by'].includes(name)),
  );
  return { status: reply.status, headers, body: reply.body.toString('latin1') };
}

const MULTIPART = [
  '--XyZ',
  'Content-Disposition: form-data; name="field"',
  '',
  'value',
  '--XyZ',
  'Content-Disposition: form-data; name="upload"; filename="a.txt"',
  'Content-Type: text/plain',
  '',
  'file contents',
  '--XyZ',
  'Content-Disposition: form-data; name="many[]"; filename="b.bin"',
  'Content-Type: application/octet-stream',
  '',
  '\x00\x01\x02',
  '--XyZ--',
  '',
].join('\r\n');

/** [method, path, headers, body]: what each request is about is in its path or its headers. */
const REQUESTS: [string, string, Record<string, string>, string?][] = [
  ['GET', '/plain.php?a=1&b[]=2&b[]=3&c[k]=v&e=%41%20&plus=a+b', { Cookie: 'x=1; y=%41; z[a]=b', 'X-Test': bytes('tüst') }],
  ['POST', '/plain.php', { 'Content-Type': 'application/x-www-form-urlencoded' }, 'a=1&b=%41&c[]=x&c[]=y'],
  ['POST', '/plain.php?q=1', { 'Content-Type': 'multipart/form-data; boundary=XyZ' }, MULTIPART],
  ['POST', '/plain.php', { 'Content-Type': 'application/json' }, '{"json":true}'],
  ['PUT', '/plain.php', { 'Content-Type': 'text/plain' }, 'put body'],
  ['GET', '/plain.php/extra/path?q=1', {}],
  ['GET', '/dir/../plain.php', {}],
  ['GET', '/plain%2Ephp?x=%2F', {}],
  // The absolute form of a request target, which a server must take (RFC 9112, 3.2.2).
  ['GET', 'http://peer.test/plain.php?x=1', {}],
  // (A header sent twice: see the getallheaders() test. Node's client folds 'X-A' and 'x-a' into one.)
  ['GET', '/plain.php', { 'Accept-Language': 'en', 'x-lower-case': 'b' }],
  ['GET', '/plain.php?status=404', {}],
  ['GET', '/plain.php?a[]=1&a[x]=2&=3&b&c=%zz&d[=4&e]=5&f.g=6&h%20i=7', { Cookie: 'a=1; a=2;b=3; $c=4; d.e=5', 'X-Empty': '' }],
  ['POST', '/plain.php', { 'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8' }, `big=${'x'.repeat(300_000)}&n=${encodeURIComponent('ü')}`],
];

describe('beside nginx + php-fpm', () => {
  let dir: string;
  let fpm: ChildProcess;
  let nginx: { port: number; process: ChildProcess };
  let ours: Server;
  beforeAll(async () => {
    requirePhp();
    if (findFpm() === null || !existsSync(NGINX)) throw new Error('this test needs nginx and php-fpm (Debian: apt-get install nginx php-fpm; .ci/run installs them)');
    dir = mkdtempSync(join(tmpdir(), 'folk-fpm-peer-'));
    // As root, the pool runs as root too (php-fpm then sets USER and HOME, as for any pool user).
    const user = process.getuid?.() === 0 ? ['user = root', 'group = root'] : [];
    fpm = await startFpm(dir, join(dir, 'fpm.sock'), ['pm = static', 'pm.max_children = 1', ...user]);
    nginx = await nginxInFront(dir, join(dir, 'fpm.sock'));
    ours = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--server-name', 'peer.test']);
  }, 30_000);
  afterAll(async () => {
    nginx?.process.kill('SIGQUIT');
    await Promise.all([fpm && stopFpm(fpm), ours?.stop(), nginx && new Promise((resolve) => (nginx.process.exitCode !== null ? resolve(null) : nginx.process.once('exit', resolve)))]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The same request to both: [php-fpm's reply, ours]. */
  const both = async (method: string, path: string, headers: Record<string, string | string[]>, body?: string): Promise<[Reply, Reply]> => {
    const send = (port: number) => request(port, method, path, { headers: { Host: 'peer.test', ...headers }, body: body === undefined ? undefined : Buffer.from(body, 'latin1') });
    return [await send(nginx.port), await send(ours.port)];
  };

  it.each(REQUESTS)('%s %s: the script sees the same superglobals and input, the client gets the same answer', async (method, path, headers, body) => {
    const [theirs, mine] = await both(method, path, headers, body);
    expect(seen(mine)).toEqual(seen(theirs));
    const { body: _a, ...myAnswer } = answered(mine);
    const { body: _b, ...theirAnswer } = answered(theirs);
    expect(myAnswer).toEqual(theirAnswer);
  });

  it.each(['location', 'location-301', 'status-line', 'status-header', 'no-content', 'not-modified', 'cookies', 'replace', 'type', 'accel'])('headers.php?case=%s: the same status and headers, after GET and after POST', async (name) => {
    for (const method of ['GET', 'POST']) {
      const [theirs, mine] = await both(method, `/headers.php?case=${name}`, method === 'POST' ? { 'Content-Type': 'text/plain' } : {}, method === 'POST' ? 'x' : undefined);
      expect({ method, ...answered(mine) }).toEqual({ method, ...answered(theirs) });
    }
  });

  it("answers 502 to a script's Status header that names no status, as nginx does (the error pages differ by design)", async () => {
    for (const method of ['GET', 'HEAD']) {
      const [theirs, mine] = await both(method, '/headers.php?case=status-bad', {});
      expect({ method, status: mine.status }).toEqual({ method, status: theirs.status });
    }
  });

  it('answers a script that flushes as php-fpm does: the same status, headers and body', async () => {
    for (const query of ['parts=2&size=5', 'how=ob', 'how=nested', 'then=exit']) {
      const [theirs, mine] = await both('GET', `/stream.php?${query}`, {});
      expect({ query, ...answered(mine) }).toEqual({ query, ...answered(theirs) });
    }
  });

  it('differs as the README says on a header set after a flush: too late after flush() here (in both modes), after ob_flush() there', async () => {
    for (const [how, fpmSends] of [['flush', true], ['ob', false]] as const) {
      const [theirs, mine] = await both('GET', `/stream.php?how=${how}&then=late`, {});
      expect(answered(mine).body).toBe(answered(theirs).body);
      expect({ how, fpm: theirs.headers['x-late'], ours: mine.headers['x-late'] }).toEqual({
        how,
        fpm: fpmSends ? 'too late' : undefined, // (php-fpm's output_buffering holds a short output through flush(), not through ob_flush())
        ours: undefined,
      });
    }
  });

  it("takes an upload as php-fpm does: is_uploaded_file() says yes to it (no to other files), move_uploaded_file() moves it once", async () => {
    const form = (name: string, body: string) =>
      `--XyZ\r\nContent-Disposition: form-data; name="upload"; filename="${name}"\r\nContent-Type: text/plain\r\n\r\n${body}\r\n--XyZ--\r\n`;
    const headers = { 'Content-Type': 'multipart/form-data; boundary=XyZ' };
    const [theirs, mine] = await both('POST', '/upload.php', headers, form('a.txt', 'file body'));
    expect(JSON.parse(answered(mine).body)).toEqual({ name: 'a.txt', uploaded: true, 'this script': false, moved: true, content: 'file body', 'still uploaded': false, 'moved again': false });
    expect(answered(mine)).toEqual(answered(theirs));
    // Still in the list when the script ends with a fatal error or exit():
    // the worker ends cleanly (a crash would show in a second 'crash' line), and the file is gone.
    for (const then of ['fatal', 'exit']) {
      const [theirs, mine] = await both('POST', `/upload.php?then=${then}`, headers, form('b.txt', then));
      expect({ then, ...answered(mine) }).toEqual({ then, ...answered(theirs) });
    }
  });

  it("runs a script's shutdown functions before its answer ends, and the next request finds none of its handlers, ini changes, locale, time zone, seed, umask, or libxml and mbstring state", async () => {
    requirePhpExtensions(['mbstring', 'simplexml', 'libxml'], 'Debian: apt-get install php-mbstring php-xml; .ci/run installs them');
    const [theirs, mine] = await both('GET', '/shutdown.php', {});
    expect(answered(mine)).toEqual(answered(theirs));
    expect(answered(mine)).toMatchObject({ headers: { 'x-shutdown': 'ran' }, body: 'from the script\nfrom the shutdown function\n' });
    const [theirState, myState] = await both('GET', '/shutdown.php?then=state', {});
    expect(answered(myState)).toEqual(answered(theirState));
    expect(JSON.parse(myState.body.toString())).toMatchObject({
      'error handler': false, 'exception handler': false, precision: '14', LC_NUMERIC: 'C', 'time zone': 'UTC', 'seeded sequence': false,
      umask: process.umask().toString(8).padStart(4, '0'), 'libxml internal errors': false, 'libxml errors': 0, 'libxml last error': false, 'libxml entity loader': false, 'mb internal encoding': 'UTF-8', 'mb regex encoding': 'UTF-8',
      'mb substitute character': 63, 'mb language': 'neutral', 'mb detect order': ['ASCII', 'UTF-8'],
    });
  });

  it('has a script that registers its autoloaders on every request find them once, as under php-fpm, not once more per request', async () => {
    const found: number[] = [];
    for (let i = 0; i < 6; i++) {
      const [theirs, mine] = await both('GET', '/autoload.php', {});
      expect(JSON.parse(theirs.body.toString())).toEqual({ 'autoloaders of this file': 4, loads: true });
      expect(JSON.parse(mine.body.toString())).toMatchObject({ loads: true });
      found.push(JSON.parse(mine.body.toString())['autoloaders of this file']);
    }
    // (The worker learns that they come again on the second request, which finds the first's copies beside its own.)
    expect(found).toEqual([4, 8, 4, 4, 4, 4]);
  });

  it("keeps the autoloaders a require_once'd file registered (it runs once per worker), even when another script registers the same one on every request", async () => {
    for (const script of ['once', 'each', 'once', 'once', 'each', 'each', 'once']) {
      const [theirs, mine] = await both('GET', `/autoload-${script}.php`, {});
      expect({ script, ...answered(mine) }).toEqual({ script, ...answered(theirs) });
      expect(JSON.parse(mine.body.toString())).toEqual(script === 'once' ? { once: true, each: true, kept: true, vendor: true, invokable: true } : { once: true });
    }
  });

  it('serves on beside autoloaders that hold what is awkward to compare (an array that contains itself, objects made anew), in the same worker', async () => {
    const pids = new Set<unknown>();
    for (let i = 0; i < 4; i++) {
      const [theirs, mine] = await both('GET', '/autoload-odd.php', {});
      const { 'x-pid': _a, ...myHeaders } = answered(mine).headers;
      const { 'x-pid': _b, ...theirHeaders } = answered(theirs).headers;
      expect({ ...answered(mine), headers: myHeaders }).toEqual({ ...answered(theirs), headers: theirHeaders });
      expect(JSON.parse(mine.body.toString())).toEqual({ loads: true });
      pids.add(mine.headers['x-pid']);
    }
    expect(pids.size).toBe(1);
  });

  it("keeps the stream wrappers a require_once'd file removed, and php://input whatever a request did to php://", async () => {
    for (const [query, body] of [['?then=break', 'first'], ['', 'second'], ['', 'third']] as const) {
      const [theirs, mine] = await both('POST', `/streams.php${query}`, { 'Content-Type': 'text/plain' }, body);
      expect(answered(mine)).toEqual(answered(theirs));
      expect(JSON.parse(mine.body.toString())).toEqual({ phar: false, input: body, memory: true });
    }
  });

  it('runs shutdown functions until one calls exit(), each once, as php-fpm does; the answer still goes whole', async () => {
    const logs = [join(dir, 'exit-fpm.log'), join(dir, 'exit-ours.log')];
    const get = (port: number, log: string) => request(port, 'GET', `/exit-in-shutdown.php?log=${encodeURIComponent(log)}`, { headers: { Host: 'peer.test' } });
    const [theirs, mine] = await Promise.all([get(nginx.port, logs[0]!), get(ours.port, logs[1]!)]);
    expect(answered(mine)).toEqual(answered(theirs));
    expect(answered(mine)).toMatchObject({ status: 200, body: 'answered\n' });
    for (let i = 0; i < 50 && !existsSync(logs[1]!); i++) await sleep(20);
    await sleep(100); // (the worker that exited is being replaced)
    expect(readFileSync(logs[1]!, 'utf8')).toBe(readFileSync(logs[0]!, 'utf8'));
    expect(readFileSync(logs[1]!, 'utf8')).toBe('first\nsecond (exits)\n');
    expect((await request(ours.port, 'GET', '/plain.php', { headers: { Host: 'peer.test' } })).status).toBe(201);
  });

  it("keeps PHP's sessions as php-fpm does, and no request finds another client's session", async () => {
    const sid = /PHPSESSID=([a-z0-9]+)/;
    const masked = (reply: Reply) => JSON.parse(JSON.stringify(answered(reply)).replace(new RegExp(sid.source, 'g'), 'PHPSESSID=*'));
    // A new client: session_start() sends the cookie and its cache headers.
    const [theirs, mine] = await both('GET', '/session.php', {});
    expect(masked(mine)).toEqual(masked(theirs));
    expect(JSON.parse(mine.body.toString())).toEqual({ n: 1, name: 'PHPSESSID', status: 2 });
    // Each comes back with its cookie: its own session, once more.
    const cookie = (reply: Reply) => `PHPSESSID=${sid.exec(String(reply.headers['set-cookie']))![1]}`;
    const again = await both('GET', '/session.php', {});
    const [theirAgain, myAgain] = await Promise.all([
      request(nginx.port, 'GET', '/session.php', { headers: { Host: 'peer.test', Cookie: cookie(again[0]) } }),
      request(ours.port, 'GET', '/session.php', { headers: { Host: 'peer.test', Cookie: cookie(again[1]) } }),
    ]);
    expect(masked(myAgain)).toEqual(masked(theirAgain));
    expect(JSON.parse(myAgain.body.toString()).n).toBe(2);
    // The same worker, a client without a cookie: a new session, not the last one's.
    const [, fresh] = await both('GET', '/session.php', {});
    expect(JSON.parse(fresh.body.toString()).n).toBe(1);
    expect(cookie(fresh)).not.toBe(cookie(again[1]));
  });

  describe("a page written with Symfony's HttpFoundation (Debian's php-symfony-http-foundation)", () => {
    beforeAll(() => {
      if (!existsSync(SYMFONY)) throw new Error(`this test needs ${SYMFONY} (Debian: apt-get install php-symfony-http-foundation; .ci/run installs it)`);
    });
    const upload = '--XyZ\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n';
    it.each([
      ['GET', '/symfony.php?case=request&a[]=1&b=x%20y', { Cookie: 'c=1; d=%41', 'X-Requested-With': 'XMLHttpRequest', 'Accept-Language': 'de-CH, en;q=0.5' }],
      ['POST', '/symfony.php?case=request', { 'Content-Type': 'application/x-www-form-urlencoded' }, 'p=1&q[]=2'],
      ['POST', '/symfony.php?case=request', { 'Content-Type': 'application/json' }, '{"j":[1,2]}'],
      ['GET', '/symfony.php/extra/path?case=request', {}],
      ['POST', '/symfony.php?case=upload', { 'Content-Type': 'multipart/form-data; boundary=XyZ' }, upload],
      ['GET', '/symfony.php?case=cookie', {}],
      ['GET', '/symfony.php?case=stream', {}],
      ['GET', '/symfony.php?case=finish', {}],
    ] as [string, string, Record<string, string>, string?][])('%s %s: what Request read, and the answer, are the same', async (method, path, headers, body) => {
      const [theirs, mine] = await both(method, path, headers, body);
      expect(mine.status).toBeLessThan(500);
      expect(answered(mine)).toEqual(answered(theirs));
      if (path.includes('case=upload')) expect(JSON.parse(mine.body.toString())).toEqual({ name: 'a.txt', valid: true, error: 0, moved: 'file body' });
    });
  });

  describe("a Laravel application (Debian's php-laravel-framework 8, test/www/laravel)", () => {
    beforeAll(() => {
      if (!existsSync(LARAVEL)) throw new Error(`this test needs ${LARAVEL} (Debian: apt-get install php-laravel-framework; .ci/run installs it)`);
    });
    const json = { Accept: 'application/json' };
    const upload = '--XyZ\r\nContent-Disposition: form-data; name="doc"; filename="d.txt"\r\nContent-Type: text/plain\r\n\r\ndoc body\r\n--XyZ--\r\n';
    it.each([
      ['GET', '/laravel/index.php/hello', {}],
      ['GET', '/laravel/index.php/info?x=1&y[]=2', { ...json, 'X-Test': 't', Cookie: 'c=1' }],
      ['POST', '/laravel/index.php/info', { ...json, 'Content-Type': 'application/x-www-form-urlencoded' }, 'a=1&b[]=2'],
      ['POST', '/laravel/index.php/info', { ...json, 'Content-Type': 'application/json' }, '{"j":true}'],
      ['POST', '/laravel/index.php/upload', { 'Content-Type': 'multipart/form-data; boundary=XyZ' }, upload],
      ['GET', '/laravel/index.php/redirect', {}],
      ['GET', '/laravel/index.php/fail', json],
      ['GET', '/laravel/index.php/no-such-route', json],
    ] as [string, string, Record<string, string>, string?][])('%s %s: the same answer', async (method, path, headers, body) => {
      // Twice: a worker serves many requests, and the second must find what the first did not leave behind.
      for (let i = 0; i < 2; i++) {
        const [theirs, mine] = await both(method, path, headers, body);
        expect({ i, ...answered(mine) }).toEqual({ i, ...answered(theirs) });
      }
    });

    it('keeps no request alive after it: memory in use stays flat over 30 requests to one worker', async () => {
      // (Each request used to keep the last one's application alive, through
      // the shutdown function and error handler Laravel registers as it boots.)
      const used: number[] = [];
      for (let i = 0; i < 30; i++) used.push(Number((await request(ours.port, 'GET', '/laravel/index.php/memory', { headers: { Host: 'peer.test' } })).body.toString()));
      // The highest of each ten: garbage cycles pile up for a few requests
      // (about 60 KB each) until the collector runs, so single requests a
      // few apart differ by that much; a request kept alive would add up.
      const highest = (from: number) => Math.max(...used.slice(from, from + 10));
      expect(highest(20) - highest(10)).toBeLessThan(100_000);
    });

    it('is not taken for a console command (PHP_SAPI is "cli" here), and takes uploads as valid', async () => {
      const [info, stored] = await Promise.all([
        request(ours.port, 'GET', '/laravel/index.php/info', { headers: { Host: 'peer.test', ...json } }),
        request(ours.port, 'POST', '/laravel/index.php/upload', { headers: { Host: 'peer.test', 'Content-Type': 'multipart/form-data; boundary=XyZ' }, body: Buffer.from(upload) }),
      ]);
      expect(JSON.parse(info.body.toString()).console).toBe(false);
      expect(JSON.parse(stored.body.toString())).toEqual({ name: 'd.txt', valid: true, stored: 'doc body' });
    });
  });

  it('has fastcgi_finish_request() as php-fpm has it (direct mode): the same answer, later output and headers dropped', async () => {
    const mark = join(dir, 'marker');
    writeFileSync(mark, ''); // (the script does not wait for it then)
    const [theirs, mine] = await both('GET', `/finish.php?marker=${mark}&done=${join(dir, 'done')}`, {});
    if (process.env.FOLK_APP_TEST_TASKS !== '1') expect(answered(mine)).toEqual(answered(theirs));
    else expect(answered(mine).body).toBe('answered early\nno fastcgi_finish_request\n');
  });

  it('has getallheaders() and apache_request_headers() as php-fpm has them: the same names, values and order', async () => {
    const cases: [string, Record<string, string>, string?][] = [
      ['GET', { Authorization: 'Bearer abc', 'X-Forwarded-For': '10.0.0.1', 'x-lower-case': 'v', 'X-MiXeD-cAsE': 'w', Accept: 'a', 'X-Empty': '' }],
      ['POST', { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' }, '{}'],
      ['GET', { 'X-Utf8': bytes('tüst'), 'X--Odd_Name': 'dropped', 'X--Y': 'kept as php-fpm names it' }],
    ];
    for (const [method, headers, body] of cases) {
      const [theirs, mine] = await both(method, '/request-headers.php', headers, body);
      expect(mine.body.toString('latin1')).toBe(theirs.body.toString('latin1'));
      expect(JSON.parse(mine.body.toString()).getallheaders).toMatchObject({ Host: 'peer.test' });
    }
    // A header sent twice: joined, as nginx joins it since 1.23 (1.22, Debian 12's, passes the last one on).
    const [theirs, mine] = await both('GET', '/request-headers.php', { 'X-Dup': ['a', 'b'] });
    expect(JSON.parse(mine.body.toString()).getallheaders['X-Dup']).toBe('a, b');
    expect(['b', 'a, b']).toContain(JSON.parse(theirs.body.toString()).getallheaders['X-Dup']);
  });

  it('picks the same script: a directory index, the front controller for a path with no file, PATH_INFO', async () => {
    for (const path of ['/dir/', '/dir/index.php/x/y', '/no/such/route?z=1', '/nothing.txt', '/']) {
      const [theirs, mine] = await both('GET', path, {});
      expect({ path, ...answered(mine) }).toEqual({ path, ...answered(theirs) });
    }
  });

  it("gives a script none of php-cli's own globals ($argv, $argc) that php-fpm does not", async () => {
    const [theirs, mine] = await both('GET', '/globals.php', {});
    expect(answered(mine)).toEqual(answered(theirs));
    expect(JSON.parse(mine.body.toString())).toEqual({ argv: false, argc: false, server_argv: false });
  });

  it("destroys a script's global objects when it ends as php-fpm does: last to first, the other globals and its error handler still there", async () => {
    for (const path of ['/destruct-order.php', '/handler-in-destructor.php']) {
      const [theirs, mine] = await both('GET', path, {});
      expect({ path, ...answered(mine) }).toEqual({ path, ...answered(theirs) });
    }
  });

  it('answers exit() and a fatal error as php-fpm does: what the script wrote before, and a 500 for the fatal error', async () => {
    const exits = ['nested', 'caught', 'buffered', 'status', 'shutdown', 'fiber'].map((how) => `/exit-ways.php?how=${how}`);
    for (const path of ['/exit.php', ...exits, '/exit-in-buffer.php', '/fatal.php', '/out-of-memory.php']) {
      const [theirs, mine] = await both('GET', path, {});
      expect({ path, ...answered(mine) }).toEqual({ path, ...answered(theirs) });
    }
  });

  it('calls the handler set_exception_handler() gave for an exception nothing caught, as php-fpm does, before the shutdown functions', async () => {
    for (const name of ['handled', 'handler-throws', 'handler-exits', 'replaced', 'removed', 'none']) {
      const [theirs, mine] = await both('GET', `/exception-handler.php?case=${name}`, {});
      expect({ name, ...answered(mine) }).toEqual({ name, ...answered(theirs) });
    }
  });

  it('starts every request in its script\'s directory, also after the same script changed it', async () => {
    for (const path of ['/cwd.php?chdir=1', '/cwd.php', '/dir/cwd.php?chdir=1', '/cwd.php']) {
      const [theirs, mine] = await both('GET', path, {});
      expect({ path, ...answered(mine) }).toEqual({ path, ...answered(theirs) });
    }
  });

  it("keeps none of the server's own variables in a script's globals: extract() of what a client sent cannot end the worker", async () => {
    const names = ['__folk', '__folk_worker', '__folk_source', '__folk_request', '__folk_error'];
    for (const path of [`/extract.php?${names.map((name) => `${name}=1`).join('&')}`, '/extract.php', '/globals.php']) {
      const [theirs, mine] = await both('GET', path, {});
      expect({ path, ...answered(mine) }).toEqual({ path, ...answered(theirs) });
    }
  });

  it('sends what a script writes after ending the output buffer it started with, as php-fpm does, and the next request has one again', async () => {
    for (const name of ['loop-clean', 'get-clean', 'end-flush', 'new-buffer', 'flush']) {
      for (const path of [`/ob-end.php?case=${name}`, '/ob-end.php']) {
        const [theirs, mine] = await both('GET', path, {});
        expect({ path, ...answered(mine) }).toEqual({ path, ...answered(theirs) });
      }
    }
  });

  it('says 404 where php-fpm does (a .php path with no such file), and HEAD has no body', async () => {
    const [theirs, mine] = await both('GET', '/missing.php', {});
    expect([mine.status, theirs.status]).toEqual([404, 404]);
    const [theirHead, myHead] = await both('HEAD', '/plain.php', {});
    expect(answered(myHead)).toEqual(answered(theirHead));
    // A HEAD answer keeps the Content-Length the script gave (its GET body's).
    const [theirs2, mine2] = await both('HEAD', '/head.php', {});
    expect([mine2.headers['content-length'], theirs2.headers['content-length']]).toEqual(['12345', '12345']);
    expect(answered(mine2)).toEqual(answered(theirs2));
  });
});
