// A PHP worker ends cleanly: retired, after a fatal error, or stopped with
// the server. php-cli calls its SAPI's flush() once more as the process
// ends, after FFI's callbacks are gone; while flush() was still our
// callback (php/CliSapi.php), every worker ended by SIGSEGV there.
import { describe, expect, it } from 'vitest';
import { request, requirePhp, startServer, WWW } from './helpers.js';

const common = ['--listen', '127.0.0.1:0', '--root', WWW, '--fronts', '1', '--workers', '1'];

describe('a worker that ends', () => {
  it.each([
    ['retired after --max-jobs (--direct off)', [...common, '--direct', 'off', '--max-jobs', '2']],
    ['after exit() and a fatal error, and at the stop (--direct)', [...common, '--direct', 'on']],
  ])('%s ends by no signal', async (_how, args) => {
    requirePhp();
    const server = await startServer(args);
    try {
      const statuses = [];
      for (const path of ['/plain.php', '/exit.php', '/out-of-memory.php', '/plain.php', '/plain.php']) statuses.push((await request(server.port, 'GET', path)).status);
      expect(statuses).toEqual([201, 302, 500, 201, 201]);
    } finally {
      expect(await server.stop()).toEqual({ code: 0, signal: null });
    }
    expect(server.stderr()).toMatch(/PHP Fatal error: {2}Allowed memory size/);
    expect(server.stderr()).not.toMatch(/ended by SIG|exited \(SIG/);
  });
});
