// The start-up checks of PHP. Without FFI, or with an ffi.enable that
// forbids it, php-cli drops every header() call, and only FFI undoes that
// (php/CliSapi.php): scripts would run, but a redirect would go out as a 302
// without its Location. So the server refuses to start, and says why.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript, no types
import { findPhp } from '../lib/front.mjs';
import { requirePhp, sleep, spawnServer, WWW } from './helpers.js';

describe('without FFI', () => {
  it('the server refuses to start, naming FFI, the setting that forbids it and how to have it', async () => {
    requirePhp();
    const server = spawnServer(['--listen', '127.0.0.1:0', '--root', WWW, '--workers', '1', '--define', 'ffi.enable=0']);
    const exit = await Promise.race([server.exited, sleep(20_000).then(() => server.stop('SIGKILL'))]);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(server.stderr()).toMatch(/the PHP workers need PHP's FFI, .* ffi\.enable forbids: without it every header\(\) call is dropped/);
    expect(server.stdout()).not.toMatch(/app server on/);
  });
});

describe('the start-up probe of PHP', () => {
  it('reads what PHP has through a start-up warning on stdout (no php.ini: display_errors on), not "did not start"', () => {
    requirePhp();
    const empty = join(tmpdir(), `folk-empty-${process.pid}.ini`);
    writeFileSync(empty, '');
    // sockets loaded twice: "Module already loaded", printed where display_errors says.
    const found = findPhp('php', ['-c', empty, '-d', 'extension=sockets', '-d', 'display_errors=1']);
    expect(found).toMatchObject({ ok: true, sockets: true, ffi: true });
  });
});
