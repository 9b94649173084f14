// php/UploadedFiles.php on its own, in php-cli: the list of uploads it adds
// to through FFI, and the process's end with files still in it (PHP's own
// shutdown walks that list).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE, requirePhp } from './helpers.js';

describe('UploadedFiles (is_uploaded_file() for our uploads)', () => {
  let dir: string;
  beforeAll(() => {
    requirePhp();
    dir = mkdtempSync(join(tmpdir(), 'folk-uploads-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Run PHP code after hooking the list and registering one file (its path in $file); what it prints, and how it ended. */
  function run(code: string, ini: string[] = []) {
    const file = join(dir, `upload-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, 'data');
    const script = join(dir, 'script.php');
    writeFileSync(
      script,
      `<?php
require ${JSON.stringify(join(EXAMPLE, 'php', 'UploadedFiles.php'))};
$files = Folk\\AppServer\\UploadedFiles::hook();
if ($files !== null) register_shutdown_function($files->forgetAll(...)); // (as Runtime::shutdown() does)
$file = ${JSON.stringify(file)};
$files?->register([$file]);
${code}`,
    );
    const r = spawnSync('php', [...ini.flatMap((d) => ['-d', d]), script], { encoding: 'utf8' });
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, file };
  }

  it('makes is_uploaded_file() say yes to a registered file only, and move_uploaded_file() take it out of the list', () => {
    const r = run(`echo json_encode([$files !== null, is_uploaded_file($file), is_uploaded_file(__FILE__), move_uploaded_file($file, "$file.moved"), is_uploaded_file($file)]);`);
    expect(r.stdout).toBe('[true,true,false,true,false]');
    expect(existsSync(`${r.file}.moved`)).toBe(true);
  });

  it('lets the process end cleanly with a file still in the list: a fatal error (255), exit() (its status), the end of the script (0)', () => {
    const fatal = run('no_such_function();');
    expect([fatal.status, fatal.signal]).toEqual([255, null]);
    expect(fatal.stdout + fatal.stderr).toMatch(/Call to undefined function no_such_function/);
    expect([run('exit(3);').status, run('echo "done";').status]).toEqual([3, 0]);
    // The file is left where it is: removing it is the server's job (Runtime::finish()), not PHP's shutdown.
    expect(existsSync(run('').file)).toBe(true);
  });

  it('changes nothing where it cannot be sure: without FFI, or with post_max_size 0 (its only landmark in sapi_globals)', () => {
    for (const ini of [['ffi.enable=0'], ['post_max_size=0']]) {
      const r = run('echo json_encode([$files === null, is_uploaded_file($file)]);', ini);
      expect({ ini, out: r.stdout, status: r.status }).toEqual({ ini, out: '[true,false]', status: 0 });
    }
  });
});
