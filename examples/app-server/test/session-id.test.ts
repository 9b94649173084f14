// php/SessionId.php on its own, in php-cli: three requests' worth of
// session_start() in one process, with FFI and without.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE, requirePhp } from './helpers.js';

describe('SessionId (one session id per request in a process that serves many)', () => {
  let dir: string;
  beforeAll(() => {
    requirePhp();
    dir = mkdtempSync(join(tmpdir(), 'folk-session-id-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['through FFI (PS(id) released and set to null, as at the end of a request)', [], true],
    ['without FFI (the id taken from each request\'s cookie)', ['ffi.enable=0'], false],
  ] as const)('%s: a request without a cookie gets a new session, one with a cookie its own', (_how, ini, ffi) => {
    const script = join(dir, 'three.php');
    writeFileSync(
      script,
      `<?php
ob_start(); // (php-cli has sent its "headers" once anything is output)
require ${JSON.stringify(join(EXAMPLE, 'php', 'SessionId.php'))};
ini_set('session.save_path', ${JSON.stringify(dir)});
$ids = Folk\\AppServer\\SessionId::make();
function request(Folk\\AppServer\\SessionId $ids, array $cookie): array {
    $_COOKIE = $cookie;
    $ids->begin();
    session_start();
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    $seen = [session_id(), $_SESSION['n']];
    session_write_close();
    $ids->forget();
    return $seen;
}
[$a, $first] = request($ids, []);
[$b, $second] = request($ids, []);
[$c, $third] = request($ids, ['PHPSESSID' => $a]);
$out = json_encode(['ffi' => (new ReflectionProperty($ids, 'ffi'))->getValue($ids) !== null, 'new' => $a !== $b, 'n' => [$first, $second, $third], 'resumed' => $c === $a]);
ob_end_clean();
echo $out;
`,
    );
    const r = spawnSync('php', [...ini.flatMap((d) => ['-d', d]), script], { encoding: 'utf8' });
    expect({ status: r.status, out: r.stdout, err: r.stderr }).toEqual({ status: 0, out: JSON.stringify({ ffi, new: true, n: [1, 1, 2], resumed: true }), err: '' });
  });
});
