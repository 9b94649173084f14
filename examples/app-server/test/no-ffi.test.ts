// A PHP without FFI, or whose ffi.enable forbids it: php-cli drops every
// header() call, and only FFI undoes that (php/CliSapi.php). Scripts would
// run, but a redirect would go out as a 302 without its Location, a
// session without its cookie. So the server refuses to start, and says why.
import { describe, expect, it } from 'vitest';
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
