// The README's main job (npm run demo): the self-test must pass with php-cli
// (PHP workers) and without it (it says how to install php and runs the
// Node workers instead).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INDEX, requirePhp } from './helpers.js';

function selfTest(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [INDEX, '--self-test'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The self-test ran on `label` workers, every check passed (a reload under load included), exit 0. */
function expectServed(r: { code: number | null; stdout: string; stderr: string }, label: string): void {
  expect(r.stdout).toMatch(new RegExp(`^app server on http://127\\.0\\.0\\.1:\\d+/ with \\d+ fronts? and \\d+ ${label} workers`, 'm'));
  expect(r.stdout).toMatch(/50 concurrent requests with a reload in the middle -> 50 x 200, 0 failed/);
  expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('self-test ok');
  // The log has the details the clients were not shown: the 413's reason
  // (the PHP workers read the Content-Length; the front counts up to the limit).
  expect(r.stderr).toMatch(label === 'PHP' ? /413 POST \/echo: request body of 1048577 bytes is over --max-body 1048576/ : /413 POST \/echo: request body of 1048577\+ bytes is over --max-body 1048576/);
  expect(r.code).toBe(0);
}

describe('examples/app-server --self-test', () => {
  // A PATH on which there is no php (nor anything else): the example starts
  // its Node workers with process.execPath, so it needs none.
  const empty = mkdtempSync(join(tmpdir(), 'folk-no-php-'));
  beforeAll(() => requirePhp());
  afterAll(() => rmSync(empty, { recursive: true, force: true }));

  it('serves its routes from PHP workers, through a reload, when php-cli is installed', async () => {
    const r = await selfTest(process.env);
    expectServed(r, 'PHP');
    expect(r.stdout).toContain('Hello from PHP 8.');
    expect(r.stderr).toContain('PHP Fatal error:  Uncaught RuntimeException: this route always fails');
  });

  it('without php on PATH, says how to install php-cli and serves the same routes from Node workers', async () => {
    const r = await selfTest({ ...process.env, PATH: empty });
    expect(r.stderr).toMatch(/^php was not found on PATH\. To run the PHP workers, install php-cli:\n {2}Debian\/Ubuntu: sudo apt-get install -y php-cli\n/);
    expect(r.stderr).toContain('Falling back to the Node worker (same protocol, same routes).');
    expectServed(r, 'Node');
    expect(r.stdout).toContain('Hello from Node v');
  });
});
