// php/RequestReader.php and php/Http.php, the HTTP/1.1 a PHP worker speaks on a connection of its own:
// every case is a real php-cli run (test/php/http-harness.php, many cases per
// run). Byte strings go to PHP and back as latin1 strings, one char a byte.
import { execFileSync } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript, no types
import { cgiVariables, encodeTask } from '../lib/cgi.mjs';
import { requirePhp } from './helpers.js';

const HARNESS = join(__dirname, 'php', 'http-harness.php');

interface Req {
  method: string;
  target: string;
  protocol: string;
  headers: [string, string][];
  body: string;
  keepAlive: boolean;
  chunked: boolean;
  contentLength: number;
  feed: number;
}
interface ReadResult {
  requests: Req[];
  error: { status: number; message: string; feed: number } | null;
  continues: number[];
  idle: boolean;
  buffered: string;
  after?: Req | { status: number } | null;
}
interface ReadCase {
  chunks: string[];
  maxBody?: number;
  maxHead?: number;
  after?: string;
}
interface HeadCase {
  status: number;
  lines: string[];
  /** null: not known (a streamed body) */
  bodyLength?: number | null;
  chunked?: boolean;
  keepAlive?: boolean;
  bodyless?: boolean;
}

function php(cases: object[]): unknown[] {
  requirePhp();
  const out = execFileSync('php', [HARNESS], { input: JSON.stringify(cases), maxBuffer: 512 * 1024 * 1024, encoding: 'utf8' });
  return JSON.parse(out);
}

/** Each case read by a RequestReader, its chunks fed one by one. */
function read(cases: ReadCase[]): ReadResult[] {
  return php(cases.map((c) => ({ type: 'read', ...c }))) as ReadResult[];
}

/** The status each raw request (fed whole) is refused with, or 0 when it is read. */
function statuses(raws: string[]): number[] {
  return read(raws.map((raw) => ({ chunks: [raw] }))).map((r) => r.error?.status ?? (r.requests.length === 1 ? 0 : -1));
}

function heads(cases: HeadCase[]): ({ head: string } | { invalid: string })[] {
  return php(cases.map((c) => ({ type: 'head', bodyLength: 0, keepAlive: true, bodyless: false, ...c }))) as ({ head: string } | { invalid: string })[];
}

const get = (target = '/', more = '') => `GET ${target} HTTP/1.1\r\nHost: x\r\n${more}\r\n`;
const post = (headers: string, body: string) => `POST /p HTTP/1.1\r\nHost: x\r\n${headers}\r\n${body}`;
const chunked = (body: string) => post('Transfer-Encoding: chunked\r\n', body);
const strip = (r: ReadResult) => ({ ...r, requests: r.requests.map(({ feed: _, ...req }) => req) });

describe('RequestReader', () => {
  it('reads the request line, the headers as sent (values trimmed of spaces and tabs, UTF-8 bytes unchanged) and the body', () => {
    const [r] = read([{ chunks: [`POST /a/b?c=1&d HTTP/1.1\r\nHost: example.test:8080\r\nX-Test:  t\xc3\xbcst \t\r\nX-Empty:\r\nX-Tab: a\tb\r\nx-lower: v\r\nContent-Length: 5\r\n\r\nhello`] }]);
    expect(r!.error).toBeNull();
    expect(r!.requests).toEqual([
      {
        method: 'POST',
        target: '/a/b?c=1&d',
        protocol: 'HTTP/1.1',
        headers: [['Host', 'example.test:8080'], ['X-Test', 't\xc3\xbcst'], ['X-Empty', ''], ['X-Tab', 'a\tb'], ['x-lower', 'v'], ['Content-Length', '5']],
        body: 'hello',
        keepAlive: true,
        chunked: false,
        contentLength: 5,
        feed: 0,
      },
    ]);
    expect(r!.idle).toBe(true);
  });

  it('gives pipelined requests one by one, the same whatever the byte boundaries: every split point, and one byte at a time', () => {
    const stream = [
      '\r\n', // empty lines before a request line are skipped
      get('/one', 'Accept: */*\r\nCookie: a=1\r\n'),
      post('Content-Length: 11\r\nContent-Type: text/plain\r\n', 'hello\r\n\r\nyo'),
      chunked('5;name=value\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: dropped\r\n\r\n'),
      'GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
      post('Transfer-Encoding: chunked\r\n', '0\r\n\r\n'),
      get('/last', 'Connection: close\r\n'),
    ].join('');
    const cases: ReadCase[] = [{ chunks: [stream] }];
    for (let i = 1; i < stream.length; i++) cases.push({ chunks: [stream.slice(0, i), stream.slice(i)] });
    cases.push({ chunks: [...stream] });
    const results = read(cases);
    const whole = strip(results[0]!);
    expect(whole.error).toBeNull();
    expect(whole.requests.map((r) => [r.method, r.target, r.protocol, r.body, r.keepAlive, r.chunked, r.contentLength])).toEqual([
      ['GET', '/one', 'HTTP/1.1', '', true, false, -1],
      ['POST', '/p', 'HTTP/1.1', 'hello\r\n\r\nyo', true, false, 11],
      ['POST', '/p', 'HTTP/1.1', 'hello world0123456789', true, true, -1],
      ['GET', '/ten', 'HTTP/1.0', '', true, false, -1],
      ['POST', '/p', 'HTTP/1.1', '', true, true, -1],
      ['GET', '/last', 'HTTP/1.1', '', false, false, -1],
    ]);
    expect(whole.requests[2]!.headers).toEqual([['Host', 'x'], ['Transfer-Encoding', 'chunked']]); // the trailer is dropped
    for (let i = 1; i < results.length; i++) expect({ i, ...strip(results[i]!) }).toEqual({ i, ...whole });
    // Each request comes out as soon as its last byte is fed, not later.
    const bytewise = results[results.length - 1]!;
    expect(bytewise.requests[0]!.feed).toBe(stream.indexOf('POST') - 1);
    expect(bytewise.requests[1]!.feed).toBe(stream.indexOf('yo') + 1);
  });

  it('keeps a connection alive as HTTP/1.1 and HTTP/1.0 say, and gives nothing after a request that closes it', () => {
    const [a, b, c, d, e, f] = read([
      { chunks: [get()] },
      { chunks: [get('/', 'Connection: close\r\n')] },
      { chunks: [get('/', 'Connection: upgrade, Close\r\n')] },
      { chunks: ['GET / HTTP/1.0\r\n\r\n'] },
      { chunks: ['GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n'] },
      { chunks: [get('/', 'Connection: close\r\n') + get('/next')], after: get('/more') },
    ]);
    expect([a, b, c, d, e].map((r) => r!.requests[0]!.keepAlive)).toEqual([true, false, false, false, true]);
    expect(f!.requests.map((r) => r.target)).toEqual(['/']);
    expect(f!.after).toBeNull();
    expect(f!.idle).toBe(false);
  });

  it('requires CRLF line ends, as Node 20\'s llhttp does: a bare LF anywhere in the head is 400', () => {
    expect(
      statuses([
        'GET / HTTP/1.1\nHost: x\n\n',
        'GET / HTTP/1.1\r\nHost: x\n\r\n',
        'GET / HTTP/1.1\r\nHost: x\r\n\n',
        'GET / HTTP/1.1\nHost: x\r\n\r\n',
        'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n',
      ]),
    ).toEqual([400, 400, 400, 400, 400]);
    // Before the request line, lone LFs and CRs are skipped as empty lines are (llhttp, nginx).
    expect(statuses(['\nGET / HTTP/1.1\r\nHost: x\r\n\r\n', '\r\r\n\rGET / HTTP/1.1\r\nHost: x\r\n\r\n'])).toEqual([0, 0]);
    // As soon as the bare LF (or a bare CR) comes, not when the head runs into its limit.
    const [lf, cr] = read([{ chunks: [...'GET / HTTP/1.1\nHost: x\n\n'] }, { chunks: [...'GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n'] }]);
    expect(lf!.error).toMatchObject({ status: 400, feed: 14 });
    expect(cr!.error).toMatchObject({ status: 400, feed: 24 });
  });

  it('refuses malformed header lines with 400: obs-fold, a space before the colon, bare CR, NUL and other control bytes, no name', () => {
    const h = (line: string) => get('/', `${line}\r\n`);
    expect(
      statuses([
        h('X-A: a\r\n b'), // obs-fold, with a space
        h('X-A: a\r\n\tb'), // and a tab
        h('X-A : a'),
        h('X-A\t: a'),
        h('X-A: a\rb'),
        h('X-A: a\0b'),
        h('X-A: a\x01b'),
        h('X-A: a\x1fb'),
        h('X-A: a\x7fb'),
        h('X-A'),
        h(': a'),
        h('X(A): a'),
        h('X\xc3\xbc: a'),
        h('X-A: ok'), // the one good line
      ]),
    ).toEqual([400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 0]);
  });

  it('reads the request line as METHOD SP target SP HTTP/1.x: 400 when malformed, 505 for another version', () => {
    const line = (l: string) => `${l}\r\nHost: x\r\n\r\n`;
    expect(
      statuses([
        line('GET / HTTP/1.1'),
        line('get / HTTP/1.1'), // any token is a method
        line('M-SEARCH * HTTP/1.1'),
        line('GET http://a/b?c HTTP/1.1'),
        line('GET  / HTTP/1.1'),
        line('GET / HTTP/1.1 '),
        line(' GET / HTTP/1.1'),
        line('GET / http/1.1'),
        line('GET /'),
        line('GET / HTTP/1'),
        line('GET / HTTP/1.10'),
        line('G(T / HTTP/1.1'),
        line('GET /a\x01b HTTP/1.1'),
        line('GET /a\tb HTTP/1.1'),
        line('GET /a\xc3\xbcb HTTP/1.1'), // llhttp refuses bytes over 0x7E in the target
        line('GET /a\x7fb HTTP/1.1'),
        line('GET / HTTP/1.2'),
        line('GET / HTTP/2.0'),
        line('GET / HTTP/0.9'),
        // The target as llhttp takes it: a path, "*" or "scheme://" (these were taken before the differential test).
        line('GET u HTTP/1.1'),
        line('GET ;/u HTTP/1.1'),
        line('GET http:/u HTTP/1.1'),
      ]),
    ).toEqual([0, 0, 0, 0, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 505, 505, 505, 400, 400, 400]);
  });

  it('needs one Host in an HTTP/1.1 request (400 without, 400 for two), none in HTTP/1.0', () => {
    expect(statuses(['GET / HTTP/1.1\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n', 'GET / HTTP/1.0\r\n\r\n', 'GET / HTTP/1.1\r\nHost:\r\n\r\n'])).toEqual([400, 400, 0, 0]);
  });

  it('takes Content-Length as digits only, once, and never beside Transfer-Encoding (request smuggling)', () => {
    const cl = (v: string, body = 'a') => post(`Content-Length: ${v}\r\n`, body);
    expect(
      statuses([
        cl('1'),
        cl('001'),
        cl('1 '), // trailing OWS is not part of the value
        cl('1\t'), // but a tab there is refused, as llhttp refuses it
        cl('+1'),
        cl('-1'),
        cl('0x1'),
        cl('1, 1'),
        cl('1 1'),
        cl(''),
        cl('1e0'),
        cl('\xef\xbc\x91'), // a fullwidth 1
        cl('99999999999999999999'),
        post('Content-Length: 1\r\nContent-Length: 2\r\n', 'ab'),
        post('Content-Length: 1\r\ncontent-length: 1\r\n', 'a'), // the same value twice: refused too (llhttp, nginx)
        post('Content-Length: 3\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'),
        post('Transfer-Encoding: chunked\r\nContent-Length: 3\r\n', '0\r\n\r\n'),
      ]),
    ).toEqual([0, 0, 0, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400]);
  });

  it('takes Transfer-Encoding "chunked" alone (any case), once, in HTTP/1.1; any other coding is 501 as nginx answers', () => {
    const te = (v: string) => post(`Transfer-Encoding: ${v}\r\n`, '1\r\na\r\n0\r\n\r\n');
    expect(
      statuses([
        te('chunked'),
        te('CHUNKED'),
        te('gzip'),
        te('gzip, chunked'),
        te('chunked, gzip'),
        te('identity'),
        te(''),
        post('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'),
        'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n',
      ]),
    ).toEqual([0, 0, 501, 501, 501, 501, 501, 400, 400]);
  });

  it('de-chunks a body: hex sizes with leading zeros, extensions ignored, trailers dropped; malformed chunks are 400', () => {
    const [good] = read([{ chunks: [chunked('00a;x=1;y="a b"\r\n0123456789\r\nF\r\nabcdefghijklmno\r\n000\r\nA: 1\r\nB: 2\r\n\r\n')] }]);
    expect(good!.requests[0]!.body).toBe('0123456789abcdefghijklmno');
    expect(good!.requests[0]!.headers).toEqual([['Host', 'x'], ['Transfer-Encoding', 'chunked']]);
    expect(
      statuses([
        chunked('\r\na\r\n0\r\n\r\n'),
        chunked(' 1\r\na\r\n0\r\n\r\n'),
        chunked('1 \r\na\r\n0\r\n\r\n'),
        chunked('1 ;x\r\na\r\n0\r\n\r\n'),
        chunked('0x1\r\na\r\n0\r\n\r\n'),
        chunked('-1\r\na\r\n0\r\n\r\n'),
        chunked('g\r\na\r\n0\r\n\r\n'),
        chunked('1000000000000000\r\na\r\n0\r\n\r\n'),
        chunked('1;x\x01\r\na\r\n0\r\n\r\n'),
        chunked('1\na\r\n0\r\n\r\n'),
        chunked('1\r\naX\r\n0\r\n\r\n'),
        chunked('1\r\na\n0\r\n\r\n'),
        chunked('2\r\na\r\n0\r\n\r\n'),
        chunked('1\r\na\r\n0\r\nBad Trailer: x\r\n\r\n'),
        chunked('1\r\na\r\n0\r\nT: \0\r\n\r\n'),
        // Extensions as llhttp takes them, and no framing in the trailer (taken before the differential test).
        chunked('1\r\na\r\n0;\r\n\r\n'),
        chunked('1;x=\r\na\r\n0\r\n\r\n'),
        chunked('1;x="a\r\na\r\n0\r\n\r\n'),
        chunked('1\r\na\r\n0\r\nContent-Length: 1\r\n\r\n'),
        chunked('1\r\na\r\n0\r\ntransfer-encoding: chunked\r\n\r\n'),
      ]),
    ).toEqual(Array(20).fill(400));
  });

  it('refuses a head over maxHead with 431, as soon as it is over', () => {
    const maxHead = 100;
    const exact = `GET /${'a'.repeat(maxHead - 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'.length)} HTTP/1.1\r\nHost: x\r\n\r\n`;
    expect(exact.length).toBe(maxHead);
    const over = exact.replace('GET /', 'GET /b');
    const [a, b, c, d, e] = read([
      { chunks: [exact], maxHead },
      { chunks: [over], maxHead },
      { chunks: [over.slice(0, maxHead - 1), over.slice(maxHead - 1, maxHead), 'rest'], maxHead }, // no blank line yet at 100 bytes
      { chunks: [over.slice(0, maxHead - 1)], maxHead },
      { chunks: [...'GET / HTTP/1.1\r\nHost: x\r\nX: ' + 'y'.repeat(200)], maxHead },
    ]);
    expect(a!.requests).toHaveLength(1);
    expect(b!.error?.status).toBe(431);
    expect(c!.error).toMatchObject({ status: 431, feed: 1 });
    expect(d!.error).toBeNull();
    expect(e!.error).toMatchObject({ status: 431, feed: maxHead - 1 });
  });

  it('refuses a body over maxBody with 413 as soon as it is known: by Content-Length before the body comes, by chunk sizes as they add up', () => {
    const maxBody = 1000;
    const chunk = (n: number) => `${n.toString(16)}\r\n${'c'.repeat(n)}\r\n`;
    const [atLimit, over, chunkedAtLimit, chunkedOver] = read([
      { chunks: [post(`Content-Length: ${maxBody}\r\n`, ''), 'b'.repeat(maxBody)], maxBody },
      { chunks: [post(`Content-Length: ${maxBody + 1}\r\n`, '')], maxBody },
      { chunks: [chunked(''), chunk(600), chunk(400), '0\r\n\r\n'], maxBody },
      { chunks: [chunked(''), chunk(600), '191\r\n', 'c'.repeat(401)], maxBody },
    ]);
    expect(atLimit!.requests[0]!.body).toHaveLength(maxBody);
    expect(over!.error).toMatchObject({ status: 413, feed: 0 }); // the head alone was fed
    expect(chunkedAtLimit!.requests[0]!.body).toHaveLength(maxBody);
    expect(chunkedOver!.error).toMatchObject({ status: 413, feed: 2 }); // the size line, before its data
  });

  it('is done after an HttpError: the next request is not read, the same error comes again', () => {
    const [r] = read([{ chunks: ['GET / HTTP/1.1\r\nHost : x\r\n\r\n'], after: get() }]);
    expect(r!.error?.status).toBe(400);
    expect(r!.after).toEqual({ status: 400 });
  });

  it('wants a 100 Continue once, when an HTTP/1.1 head with "Expect: 100-continue" is read and its body has not begun', () => {
    const expect100 = (headers: string) => post(`Expect: 100-Continue\r\n${headers}`, '');
    const [cl, te, early, http10, bodyless, plain] = read([
      { chunks: [expect100('Content-Length: 3\r\n'), '', 'ab', 'c'] },
      { chunks: [expect100('Transfer-Encoding: chunked\r\n'), '1\r\na\r\n0\r\n\r\n'] },
      { chunks: [`${expect100('Content-Length: 3\r\n')}a`, 'bc'] },
      { chunks: ['POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n', 'abc'] },
      { chunks: [expect100('Content-Length: 0\r\n')] },
      { chunks: [post('Content-Length: 3\r\n', ''), 'abc'] },
    ]);
    expect(cl!.continues).toEqual([0]); // not again at the empty feed 1
    expect(cl!.requests[0]).toMatchObject({ body: 'abc', feed: 3 });
    expect(te!.continues).toEqual([0]);
    expect(te!.requests[0]!.body).toBe('a');
    expect([early, http10, bodyless, plain].map((r) => r!.continues)).toEqual([[], [], [], []]);
  });

  it('holds no more memory after 2,000 requests of 4 KB on one keep-alive connection, each taken with one next() as a server does', () => {
    const raw = `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n${'a'.repeat(4096)}`;
    const [result] = php([{ type: 'keepalive', raw, times: 2000 }]) as [{ growth: number; idle: boolean }];
    expect(result.idle).toBe(true);
    expect(result.growth).toBeLessThan(64 * 1024); // 8 MB if the consumed bytes are kept
  });

  it('says when it is idle, and gives the bytes of a request not yet whole (from its first byte) to hand the connection on', () => {
    const head = post('Content-Length: 5\r\n', '');
    const [fresh, partHead, partBody, between] = read([
      { chunks: [] },
      { chunks: ['GET / HT'] },
      { chunks: [get('/a'), `${head}he`] },
      { chunks: [get('/a') + get('/b')] },
    ]);
    expect(fresh!.idle).toBe(true);
    expect([partHead!.idle, partHead!.buffered]).toEqual([false, 'GET / HT']);
    expect([partBody!.requests.length, partBody!.idle, partBody!.buffered]).toEqual([1, false, `${head}he`]);
    expect([between!.requests.length, between!.idle, between!.buffered]).toEqual([2, true, '']);
  });
});

describe('responseHead', () => {
  const DATE = /^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/;
  const lines = (r: { head: string } | { invalid: string }) => {
    if (!('head' in r)) throw new Error(`invalid: ${r.invalid}`);
    expect(r.head.endsWith('\r\n\r\n')).toBe(true);
    return r.head.slice(0, -4).split('\r\n');
  };

  it('writes the status line, a Date, the script\'s headers as given, Content-Length and Connection', () => {
    const [a, b] = heads([
      { status: 200, lines: ['Content-Type: text/html; charset=UTF-8', 'Set-Cookie: a=1', 'Set-Cookie: b=2', 'X-Utf8: t\xc3\xbcst'], bodyLength: 1234 },
      { status: 404, lines: [], bodyLength: 0, keepAlive: false },
    ]);
    const la = lines(a!);
    expect(la[0]).toBe('HTTP/1.1 200 OK');
    expect(la[1]).toMatch(DATE);
    expect(new Date(la[1]!.slice(6)).toUTCString()).toBe(la[1]!.slice(6)); // a real date, in IMF-fixdate
    expect(la.slice(2)).toEqual(['Content-Type: text/html; charset=UTF-8', 'Set-Cookie: a=1', 'Set-Cookie: b=2', 'X-Utf8: t\xc3\xbcst', 'Content-Length: 1234', 'Connection: keep-alive']);
    const lb = lines(b!);
    expect([lb[0], ...lb.slice(2)]).toEqual(['HTTP/1.1 404 Not Found', 'Content-Length: 0', 'Connection: close']);
  });

  it('gives the usual reason phrases, a generic one for an unknown status, and refuses a status that is not 3 digits', () => {
    const rs = heads([200, 201, 204, 301, 302, 304, 400, 413, 431, 500, 502, 503, 504, 505, 299, 599, 799, 99, 1000].map((status) => ({ status, lines: [] })));
    expect(rs.map((r) => ('head' in r ? r.head.split('\r\n')[0] : 'invalid'))).toEqual([
      'HTTP/1.1 200 OK',
      'HTTP/1.1 201 Created',
      'HTTP/1.1 204 No Content',
      'HTTP/1.1 301 Moved Permanently',
      'HTTP/1.1 302 Found',
      'HTTP/1.1 304 Not Modified',
      'HTTP/1.1 400 Bad Request',
      'HTTP/1.1 413 Payload Too Large',
      'HTTP/1.1 431 Request Header Fields Too Large',
      'HTTP/1.1 500 Internal Server Error',
      'HTTP/1.1 502 Bad Gateway',
      'HTTP/1.1 503 Service Unavailable',
      'HTTP/1.1 504 Gateway Timeout',
      'HTTP/1.1 505 HTTP Version Not Supported',
      'HTTP/1.1 299 Success',
      'HTTP/1.1 599 Server Error',
      'HTTP/1.1 799 Unknown',
      'invalid',
      'invalid',
    ]);
  });

  it('owns the framing: the body length wins over a script\'s Content-Length, none for 1xx/204/304, hop-by-hop headers dropped; HEAD keeps the script\'s length', () => {
    const theirs = ['content-length: 99', 'Transfer-Encoding: chunked', 'Connection: keep-alive, Upgrade', 'Keep-Alive: timeout=1', 'Upgrade: h2c', 'TE: trailers', 'Trailer: X', 'Proxy-Connection: close', 'X-Kept: 1'];
    const rs = heads([
      { status: 200, lines: theirs, bodyLength: 5 },
      { status: 204, lines: theirs, bodyLength: 0 },
      { status: 304, lines: theirs, bodyLength: 0 },
      { status: 101, lines: theirs, bodyLength: 0 },
      { status: 200, lines: theirs, bodyLength: 0, bodyless: true },
      { status: 200, lines: ['X-Kept: 1'], bodyLength: 7, bodyless: true },
    ]);
    const tail = rs.map((r) => lines(r).slice(2));
    expect(tail).toEqual([
      ['X-Kept: 1', 'Content-Length: 5', 'Connection: keep-alive'],
      ['X-Kept: 1', 'Connection: keep-alive'],
      ['X-Kept: 1', 'Connection: keep-alive'],
      ['X-Kept: 1', 'Connection: keep-alive'],
      ['X-Kept: 1', 'Content-Length: 99', 'Connection: keep-alive'],
      ['X-Kept: 1', 'Content-Length: 7', 'Connection: keep-alive'],
    ]);
  });

  it('frames a body of unknown length (a script that flushed): chunks for HTTP/1.1, else the close ends it; a script\'s framing dropped', () => {
    const theirs = ['Content-Length: 99', 'Transfer-Encoding: gzip', 'X-Kept: 1'];
    const rs = heads([
      { status: 200, lines: theirs, bodyLength: null, chunked: true },
      { status: 200, lines: theirs, bodyLength: null, chunked: true, keepAlive: false },
      { status: 200, lines: theirs, bodyLength: null, chunked: false, keepAlive: false },
      { status: 204, lines: theirs, bodyLength: null, chunked: true },
    ]);
    expect(rs.map((r) => lines(r).slice(2))).toEqual([
      ['X-Kept: 1', 'Transfer-Encoding: chunked', 'Connection: keep-alive'],
      ['X-Kept: 1', 'Transfer-Encoding: chunked', 'Connection: close'],
      ['X-Kept: 1', 'Connection: close'],
      ['X-Kept: 1', 'Connection: keep-alive'],
    ]);
  });

  it('keeps a Date the script set, instead of adding its own', () => {
    const [r] = heads([{ status: 200, lines: ['Date: Thu, 01 Jan 1970 00:00:00 GMT'] }]);
    expect(lines(r!).filter((l) => l.startsWith('Date:'))).toEqual(['Date: Thu, 01 Jan 1970 00:00:00 GMT']);
  });

  it('refuses a header line with CR, LF, NUL or another control byte, or without a valid "name:" (the caller answers 502)', () => {
    const bad = ['X-A: a\r\nX-B: b', 'X-A: a\nb', 'X-A: a\rb', 'X-A: a\0b', 'X-A: a\x01b', 'X-A', ': a', 'X A: a', 'X-A : a', '', 'X\xc3\xbc: a'];
    const rs = heads(bad.map((line) => ({ status: 200, lines: ['X-Good: 1', line] })));
    expect(rs.map((r) => 'invalid' in r)).toEqual(bad.map(() => true));
    expect(heads([{ status: 200, lines: ['X-A:', 'X-B:\tb', 'X-C: t\xc3\xbcst'] }]).map((r) => 'head' in r)).toEqual([true]);
  });
});

describe('cgiVariables', () => {
  it('gives the variables lib/cgi.mjs gives for the same bytes, byte for byte (through a real Node HTTP server)', async () => {
    const raws = [
      ['GET /plain.php/extra?x=1&y[k]=v&e=%41 HTTP/1.1',
        'Host: example.test:8080',
        'User-Agent: t\xc3\xbcst "agent"',
        'Cookie: a=1',
        'X-Two: a',
        'cookie: b=2; c=3',
        'x-two: b',
        'X-TWO: c',
        'X_Real_IP: 6.6.6.6',
        'X-Real-IP: 1.2.3.4',
        'Proxy: http://evil/',
        'proxy: http://evil/',
        'X-Empty:',
        'Accept:  */* ',
        '',
        '',
      ].join('\r\n'),
      post('Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n', 'a=1&b=2'),
      post('Content-Type: text/plain\r\nContent-Type: text/html\r\nContent-Length: 0\r\n', ''),
      chunked('5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'),
      chunked('0\r\n\r\n'),
      get('/?', 'X-A: 1\r\n'),
      get('/no-query'),
      'GET /old HTTP/1.0\r\n\r\n',
      'GET /v6 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n',
      'GET /v6 HTTP/1.1\r\nHost: [::1\r\n\r\n',
      'GET /v6 HTTP/1.1\r\nHost: :8080\r\n\r\n',
      'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET http://other.test/a?b=c HTTP/1.1\r\nHost: x\r\n\r\n',
      'DELETE /item?id=%C3%BC HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab',
    ];
    const settingsList = [
      { https: false, serverName: '' },
      { https: true, serverName: 'srv.example' },
      { https: true, serverName: '' },
    ];
    const fromNode: { vars: string; connection: object; settings: object }[] = [];
    let settings = settingsList[0]!;
    const server = http.createServer((req, res) => {
      const { head, contentLength } = cgiVariables(req, settings);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const size = chunks.reduce((n, c) => n + c.length, 0);
        const task: Buffer = encodeTask(head, chunks, size, contentLength >= 0);
        const nl = task.indexOf('\n');
        const length = Number(task.toString('latin1', 0, nl));
        const s = req.socket;
        fromNode.push({
          vars: task.toString('latin1', nl + 1, nl + 1 + length),
          connection: { remoteAddr: s.remoteAddress, remotePort: s.remotePort, serverAddr: s.localAddress, serverPort: s.localPort },
          settings,
        });
        res.end();
      });
    });
    // On "::" when there is IPv6, so IPv4 clients are "::ffff:127.0.0.1", which cgi.mjs shortens.
    await new Promise<void>((resolve) => {
      server.once('error', () => server.listen(0, '127.0.0.1', resolve));
      server.listen(0, '::', resolve);
    });
    const port = (server.address() as net.AddressInfo).port;
    const exchange = (raw: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.write(Buffer.from(raw, 'latin1')));
        let answer = '';
        socket.on('data', (d) => {
          answer += d.toString('latin1');
          if (answer.includes('\r\n\r\n')) socket.destroy();
        });
        socket.on('close', () => resolve(answer));
        socket.on('error', reject);
      });
    try {
      for (const s of settingsList) {
        settings = s;
        for (const raw of raws) expect((await exchange(raw)).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
      }
    } finally {
      server.close();
    }
    expect(fromNode).toHaveLength(raws.length * settingsList.length);
    const fromPhp = php(fromNode.map((n, i) => ({ type: 'cgi', raw: raws[i % raws.length], connection: n.connection, settings: n.settings })));
    for (let i = 0; i < fromNode.length; i++) expect({ i, vars: fromPhp[i] }).toEqual({ i, vars: fromNode[i]!.vars });
    // What the comparison covered.
    const first = new Map<string, string>();
    const parts = fromNode[0]!.vars.split('\0');
    for (let i = 0; i < parts.length; i += 2) first.set(parts[i]!, parts[i + 1]!);
    expect(Object.fromEntries(first)).toMatchObject({
      HTTP_COOKIE: 'a=1; b=2; c=3',
      HTTP_X_TWO: 'a, b, c',
      HTTP_USER_AGENT: 't\xc3\xbcst "agent"',
      HTTP_X_REAL_IP: '1.2.3.4',
      QUERY_STRING: 'x=1&y[k]=v&e=%41',
      SERVER_NAME: 'example.test',
      REMOTE_ADDR: '127.0.0.1',
      CONTENT_LENGTH: '',
    });
    expect(first.has('HTTP_PROXY')).toBe(false);
  });
});
