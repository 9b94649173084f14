// What PHP itself makes of a request's input, beside its peer: nginx +
// php-fpm (as in php-fpm-peer.test.ts) and this server serve test/www, and
// test/www/input.php says what it was given: PHP_AUTH_USER, PHP_AUTH_PW and
// PHP_AUTH_DIGEST from the Authorization header, $_COOKIE, $_REQUEST, $_POST
// and $_FILES from a multipart body, and PHP's limits on all of them, with
// the warning PHP gives. The same requests to both must give the script the
// same, warning included.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript, no types
import { NGINX, findFpm, startFpm, startNginx, stopFpm } from '../../../bench/php-fpm.mjs';
import { WWW, freePort, request, requirePhp, sleep, startServer, type Reply, type Server } from './helpers.js';

type Headers = Record<string, string>;

/**
 * nginx + php-fpm and this server side by side on test/www, both with the ini
 * settings `ini` (php-fpm -d, --define here); send() makes the same request
 * to both and resolves to [php-fpm's reply, ours].
 */
function peers(ini: string[]) {
  let dir: string;
  let fpm: ChildProcess;
  let nginx: ChildProcess;
  let nginxPort: number;
  let ours: Server;
  beforeAll(async () => {
    requirePhp();
    if (findFpm() === null || !existsSync(NGINX)) throw new Error('this test needs nginx and php-fpm (Debian: apt-get install nginx php-fpm; .ci/run installs them)');
    dir = mkdtempSync(join(tmpdir(), 'folk-fpm-input-'));
    const user = process.getuid?.() === 0 ? ['user = root', 'group = root'] : [];
    fpm = await startFpm(dir, join(dir, 'fpm.sock'), ['pm = static', 'pm.max_children = 1', ...user], ini);
    nginxPort = await freePort();
    nginx = startNginx(dir, { port: nginxPort, root: WWW, socket: join(dir, 'fpm.sock'), serverName: 'peer.test' });
    let up = false;
    for (let i = 0; i < 200 && !up; i++) {
      up = (await request(nginxPort, 'GET', '/input.php').catch(() => null)) !== null;
      if (!up) await sleep(25);
    }
    if (!up) throw new Error(`nginx did not come up:\n${existsSync(join(dir, 'nginx-error.log')) ? readFileSync(join(dir, 'nginx-error.log'), 'utf8') : ''}`);
    ours = await startServer(['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1', '--server-name', 'peer.test', ...ini.flatMap((d) => ['--define', d])]);
  }, 30_000);
  afterAll(async () => {
    nginx?.kill('SIGQUIT');
    await Promise.all([fpm && stopFpm(fpm), ours?.stop(), nginx && new Promise((resolve) => (nginx.exitCode !== null ? resolve(null) : nginx.once('exit', resolve)))]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    send: async (method: string, path: string, headers: Headers, body?: string): Promise<[Reply, Reply]> => {
      const one = (port: number) => request(port, method, path, { headers: { Host: 'peer.test', ...headers }, body: body === undefined ? undefined : Buffer.from(body, 'latin1') });
      return [await one(nginxPort), await one(ours.port)];
    },
  };
}

/** What input.php saw, with the status. */
function seen(reply: Reply): unknown {
  const text = reply.body.toString('latin1');
  try {
    return { status: reply.status, ...JSON.parse(reply.body.toString()) };
  } catch {
    return { status: reply.status, body: text };
  }
}

/** A multipart/form-data body of `parts` (each its header lines and content) with boundary XyZ, closed unless `end` says otherwise. */
function multipart(parts: [string[], string][], end = '--XyZ--\r\n'): string {
  return parts.map(([headers, content]) => `--XyZ\r\n${headers.join('\r\n')}\r\n\r\n${content}\r\n`).join('') + end;
}
const FORM = { 'Content-Type': 'multipart/form-data; boundary=XyZ' };
const URLENCODED = { 'Content-Type': 'application/x-www-form-urlencoded' };
const field = (name: string, value: string): [string[], string] => [[`Content-Disposition: form-data; name="${name}"`], value];
const file = (name: string, filename: string, content: string, type: string | null = 'text/plain'): [string[], string] => [
  [`Content-Disposition: form-data; name="${name}"; filename="${filename}"`, ...(type === null ? [] : [`Content-Type: ${type}`])],
  content,
];

describe("beside nginx + php-fpm, with Debian's php.ini: what PHP makes of a request's input", () => {
  const { send } = peers([]);
  const same = async (method: string, path: string, headers: Headers, body?: string) => {
    const [theirs, mine] = await send(method, path, headers, body);
    expect(seen(mine)).toEqual(seen(theirs));
    return JSON.parse(mine.body.toString());
  };

  it.each([
    ['Basic dXNlcjpwYXNz', { PHP_AUTH_USER: 'user', PHP_AUTH_PW: 'pass' }], // user:pass
    ['basic dXNlcjpwYXNz', { PHP_AUTH_USER: 'user', PHP_AUTH_PW: 'pass' }], // the scheme in any case
    ['BASIC   dXNlcjpwYXNz', { PHP_AUTH_USER: 'user', PHP_AUTH_PW: 'pass' }],
    ['Basic dTpwOnE=', { PHP_AUTH_USER: 'u', PHP_AUTH_PW: 'p:q' }], // split at the first ':'
    ['Basic dXNlcjo=', { PHP_AUTH_USER: 'user' }], // user: (no PHP_AUTH_PW for an empty password)
    ['Basic OnBhc3M=', { PHP_AUTH_USER: '', PHP_AUTH_PW: 'pass' }], // :pass
    ['Basic dXNlcg==', {}], // user, no ':'
    ['Basic !!!', {}], // nothing base64 in it
    ['Basic dXNl cjpw YXNz!!', { PHP_AUTH_USER: 'user', PHP_AUTH_PW: 'pass' }], // PHP's base64 decoding skips what is not base64 (nginx's does not)
    ['Basic =dXNlcjpwYXNz', { PHP_AUTH_USER: 'user', PHP_AUTH_PW: 'pass' }],
    ['Basic dXNlcjpwYXN6w6k=', { PHP_AUTH_USER: 'user', PHP_AUTH_PW: 'pasz\u00e9' }], // UTF-8 bytes
    ['Basic dQB4OnA=', {}], // u NUL x:p: PHP reads up to the NUL, and finds no ':'
    ['Basic', {}],
    ['Basicx dXNlcjpwYXNz', {}],
    ['Digest username="u", realm="r", nonce="n", uri="/", response="x"', { PHP_AUTH_DIGEST: 'username="u", realm="r", nonce="n", uri="/", response="x"' }],
    ['digest x', { PHP_AUTH_DIGEST: 'x' }],
    ['Digest', {}],
    ['Bearer abc.def', {}],
  ] as [string, Record<string, string>][])('Authorization: %s: PHP_AUTH_USER, PHP_AUTH_PW and PHP_AUTH_DIGEST in $_SERVER (and nginx\'s REMOTE_USER) as under php-fpm; never AUTH_TYPE', async (authorization, expected) => {
    const mine = await same('GET', '/input.php', { Authorization: authorization });
    const { REMOTE_USER: _, ...auth } = mine.auth;
    expect(auth).toEqual(expected);
  });

  it.each([
    // Values are raw-URL-decoded: '+' stays '+' (a base64 token survives), %xx is decoded.
    ['token=ab+c/d==; e=%41+%42%zz'],
    // A name given twice: the first wins; name[] and name[key] build arrays, as in a query.
    ['d[]=1; d[]=2; a=1; a=2; g[k]=1; g[k]=2'],
    ['e[]=1; e=2; f=1; f[]=2; h[x]=1; h=2'],
    // Names are not URL-decoded; spaces and dots become '_', the first of a mangled name wins too.
    ['u%20v=1; p[a%20b]=1; a.b=1; a b=2;   lead=1;\tlead2=1; =x; bare; k=v=w; 5=n; 05=m'],
    // Odd brackets, as PHP mangles them.
    ['x[=1; y[a=1; z[a]b=1; w[a][b=1; v[ ]=1; v[ a]=2; [n]=1; q[]]=2'],
    // Only a cookie sent with the __Host-/__Secure- prefix may have it.
    ['__Host-q=1; ._Host-q=2; .[Host-s=1; __Secure-t[x]=1; m[__Host-x]=1; ..Secure-u=1'],
    ['PHPSESSID=abc123; theme=dark'],
  ])('Cookie: %s: $_COOKIE as PHP decodes it', async (cookie) => {
    await same('GET', '/input.php?q=1', { Cookie: cookie });
  });

  it('takes the first max_input_vars (1000) cookies, as PHP does, with its warning', async () => {
    // (Short: nginx takes a header line of up to 8 KB.)
    const cookie = Array.from({ length: 1003 }, (_, i) => `${i.toString(36)}=1`).join(';');
    const mine = await same('GET', '/input.php', { Cookie: cookie });
    expect(Object.keys(mine.cookie)).toHaveLength(1000);
    expect(mine.warning.message).toContain('Input variables exceeded 1000');
  });

  it.each([
    ['a query', '/input.php?b=1&' + 'a'.padEnd(1 + 65 * 3, '[x]') + '=1&c=2', {}],
    ['a cookie', '/input.php', { Cookie: 'b=1; ' + 'a'.padEnd(1 + 65 * 3, '[x]') + '=1; c=2' }],
  ] as [string, string, Headers][])('%s nested deeper than max_input_nesting_level (64): left out, with PHP\'s warning', async (_, path, headers) => {
    const mine = await same('GET', path, headers);
    expect(mine.warning?.message).toMatch(/Input variable nesting level exceeded 64/);
  });

  it.each([
    // Keys kept as they are (numeric ones not renumbered), nested arrays merged, the later ($_POST) winning.
    ['POST', '/input.php?5=get&k=get&arr[x]=g&n[]=a&s=g', URLENCODED, '7=post&k=post&arr[y]=p&n[]=b&s[]=p'],
    ['POST', '/input.php?arr[x]=g&s[]=g&0=a&1=b', URLENCODED, 'arr=p&s=p&1=c'],
    ['POST', '/input.php?a[b][c]=1&a[b][d]=2', URLENCODED, 'a[b][c]=3&a[e]=4'],
    ['POST', '/input.php', URLENCODED, '3=x&2=y'],
    ['GET', '/input.php?10=a&2=b&x[5]=c', {}],
  ] as [string, string, Headers, string?][])('%s %s: $_REQUEST is $_GET and $_POST merged as PHP merges them (request_order "GP"; cookies not in it)', async (method, path, headers, body) => {
    await same(method, path, { ...headers, Cookie: 'k=cookie; c=1' }, body);
  });

  it.each([
    ["a filename with a Windows path: its last part, as PHP keeps it (after the last '\\' or '/')", multipart([file('f', 'C:\\dir\\a.txt', 'win'), file('g', '/x/y\\b.txt', 'mixed'), file('h', 'c:\\\\dir\\\\c.txt', 'escaped'), file('i', 'dir/', 'slash')])],
    ['an unquoted name, single quotes, an escaped quote, a lower-case header, another disposition', multipart([
      [['Content-Disposition: form-data; name=b'], 'unquoted'],
      [["Content-Disposition: form-data; name='s q'"], 'single'],
      [['content-disposition: attachment; NAME="c\\"d"'], 'escaped'],
      [['Content-Disposition: form-data;name=e;filename=e.txt', 'content-type: text/plain; charset=UTF-8'], 'file'],
    ])],
    ['an empty file input: type "", UPLOAD_ERR_NO_FILE', multipart([file('empty', '', '', 'application/octet-stream'), field('after', 'x')])],
    ['an empty file, a file without Content-Type, a Content-Type with a trailing space', multipart([file('zero', 'z.txt', ''), file('untyped', 'u.bin', 'u', null), file('spaced', 's.txt', 's', 'text/plain ')])],
    ['no closing boundary, the body ending with the last value: that value whole, as PHP reads it', multipart([field('a', 'v'), field('last', 'no closing boundary')], '').slice(0, -2)],
    ['no closing boundary, a line end after the last value', multipart([field('a', 'v'), field('last', 'no closing boundary')], '')],
    ['no closing boundary after a file: UPLOAD_ERR_PARTIAL', multipart([field('a', 'v'), file('f', 't.txt', 'cut short')], '')],
    ['a body cut inside the closing boundary', multipart([field('a', 'v')], '--X')],
    ['a value ending in CR, and no line end after it', '--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r'],
    ['LF line ends, a preamble and an epilogue', 'preamble\n--XyZ\nContent-Disposition: form-data; name="a"\n\nlf only\n--XyZ\nContent-Disposition: form-data; name="f"; filename="b.txt"\n\nbody\n--XyZ--\nepilogue'],
    ['a line that starts like the boundary inside a value', '--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nline1\r\n--XyZx\r\nline2\r\n--XyZ\r\nContent-Disposition: form-data; name="b"\r\n\r\nb\r\n--XyZ--\r\n'],
    ['a file without a name (PHP numbers it), a part without Content-Disposition', multipart([file('', 'n.txt', 'anonymous'), [['Content-Type: text/plain'], 'skipped'], field('z', 'z')]).replace(' name="";', '')],
    ['a part with neither name nor filename: PHP stops there, with a warning', multipart([field('a', 'v'), [['Content-Disposition: form-data'], 'w'], field('z', 'after')])],
    ['arrays of files; a file with a name PHP refuses, and every file after it', multipart([file('f[a][b]', '1', '1'), file('g[]', '2', '2'), file('g[]', '3', '3'), file('h[a]b', '4', '4'), file('i', '5', '5'), field('t', 'text still')])],
    ['a field named as a file before it, and a file named twice', multipart([file('u', 'u.txt', 'file'), field('u', 'text'), field('v[tmp_name]', 'text2'), file('w', '1.txt', 'one'), file('w', '2.txt', 'two')])],
  ])('multipart: %s', async (_, body) => {
    await same('POST', '/input.php?q=1', FORM, body);
  });

  it.each([
    ['multipart/form-data'],
    ['multipart/form-data; boundary="XyZ"; charset=UTF-8'],
    ['Multipart/Form-Data ; BOUNDARY=XyZ'],
    ['multipart/form-data; boundary=XyZ, x=y'],
    ['multipart/form-datax; boundary=XyZ'],
  ])('multipart with Content-Type %s: the boundary as PHP finds it (a warning and php://input when none)', async (type) => {
    await same('POST', '/input.php', { 'Content-Type': type }, multipart([field('a', 'v')]));
  });
});

describe('beside nginx + php-fpm, with lower limits and request_order "PCG" in both ini', () => {
  const { send } = peers(['post_max_size=2K', 'upload_max_filesize=100', 'max_file_uploads=2', 'max_input_vars=5', 'request_order=PCG']);
  const same = async (method: string, path: string, headers: Headers, body?: string) => {
    const [theirs, mine] = await send(method, path, headers, body);
    expect(seen(mine)).toEqual(seen(theirs));
    return JSON.parse(mine.body.toString());
  };
  const big = 'x'.repeat(3000);

  it('a file over upload_max_filesize: UPLOAD_ERR_INI_SIZE (1), no file, the rest kept', async () => {
    const mine = await same('POST', '/input.php', FORM, multipart([file('big', 'b.txt', 'y'.repeat(101)), file('small', 's.txt', 'y'.repeat(100)), field('a', 'v')]));
    expect(mine.files.big.error).toBe(1);
    expect(mine.files.small.error).toBe(0);
  });

  it("a file over the form's MAX_FILE_SIZE: UPLOAD_ERR_FORM_SIZE (2), for the files after the field", async () => {
    const mine = await same('POST', '/input.php', FORM, multipart([file('before', 'a.txt', 'y'.repeat(20)), field('MAX_FILE_SIZE', '10'), file('after', 'b.txt', 'y'.repeat(11))]));
    expect([mine.files.before.error, mine.files.after.error]).toEqual([0, 2]);
  });

  it('more files than max_file_uploads: the first ones, and a warning', async () => {
    const mine = await same('POST', '/input.php', FORM, multipart([file('a', '1', '1'), file('b', '', ''), file('c', '2', '2'), file('d', '3', '3'), field('t', 'kept')]));
    expect(Object.keys(mine.files)).toEqual(['a', 'b', 'c']);
  });

  it.each([
    ['multipart', FORM, multipart([field('a', big)])],
    ['urlencoded', URLENCODED, `a=${big}`],
    ['JSON', { 'Content-Type': 'application/json' }, `"${big}"`],
    ['no Content-Type', {}, big],
  ] as [string, Headers, string][])('a POST body over post_max_size (%s): no $_POST, no $_FILES, a warning; php://input still has it', async (_, headers, body) => {
    const mine = await same('POST', '/input.php?g=1', { ...headers, Cookie: 'c=1' }, body);
    expect(mine.warning?.message).toMatch(/POST Content-Length of \d+ bytes exceeds the limit of 2048 bytes/);
  });

  it('a PUT body over post_max_size: no warning', async () => {
    await same('PUT', '/input.php', { 'Content-Type': 'application/json' }, `"${big}"`);
  });

  it.each([
    ['GET', '/input.php?a=1&b=2&c=3&d=4&e=5&f=6&g=7', {}],
    ['POST', '/input.php', URLENCODED, 'a=1&b=2&c=3&d=4&e=5&f=6&g=7'],
    ['POST', '/input.php', URLENCODED, 'a=1&&b=2&c=3&d[]=4&d[]=5&d[]=6'],
    ['POST', '/input.php', FORM, multipart([field('a', '1'), field('b', '2'), field('c', '3'), field('d', '4'), field('e', '5'), field('f', '6'), file('g', 'g.txt', 'g')])],
    ['GET', '/input.php', { Cookie: 'a=1; b=2; c=3; d=4; e=5; f=6; g=7' }],
    ['POST', '/input.php?a=1&b=2&c=3&d=4&e=5&f=6', { ...URLENCODED, Cookie: 'a=1; b=2; c=3; d=4; e=5; f=6' }, 'a=1&b=2&c=3&d=4&e=5&f=6'],
  ] as [string, string, Headers, string?][])('%s %s over max_input_vars: what PHP keeps, with its warning', async (method, path, headers, body) => {
    const mine = await same(method, path, headers, body);
    expect(mine.warning?.message).toMatch(/Input variables exceeded 5/);
  });

  it('more parts than max_multipart_body_parts (-1: max_input_vars + max_file_uploads = 7): the parts before, and a warning', async () => {
    const mine = await same('POST', '/input.php', FORM, multipart(Array.from({ length: 9 }, (_, i) => field(`f${i}`, `${i}`))));
    expect(mine.warning?.message).toMatch(/Multipart body parts limit exceeded 7/);
  });

  it('$_REQUEST follows the ini\'s request_order ("PCG": $_POST, then $_COOKIE, then $_GET over them)', async () => {
    const mine = await same('POST', '/input.php?k=get&g=1&arr[x]=g', { ...URLENCODED, Cookie: 'k=cookie; c=1' }, 'k=post&p=1&arr[y]=p');
    expect(mine.request).toEqual({ k: 'get', p: '1', arr: { y: 'p', x: 'g' }, c: '1', g: '1' });
  });
});
