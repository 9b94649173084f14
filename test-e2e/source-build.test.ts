// The commands the loader's error gives for a platform with no prebuilt
// binary, run as written in a project that installed a tarball: they build
// the package's src/ and the package then loads that build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { installAlone, packAll } from './harness/pack.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

it('the unsupported-platform error gives commands that build the package from src/, and it then loads that build', () => {
  const tarballs = mkdtempSync(join(tmpdir(), 'folk-tarballs-'));
  dirs.push(tarballs);
  const packed = packAll(tarballs);
  const { project } = installAlone(packed, packed.get('@folk/socketpair')!, 'npm', 'blocked', process.env);
  dirs.push(project);

  // The error, on an architecture the package has no binary for.
  const fake = spawnSync(
    process.execPath,
    ['-e', "Object.defineProperty(process, 'arch', { value: 'riscv64' }); try { require('@folk/socketpair') } catch (e) { console.log(e.message) }"],
    { cwd: project, encoding: 'utf8' },
  );
  const steps = fake.stdout.split('\n').filter((l) => /^ {2}(npm|npx) /.test(l)).map((l) => l.trim());
  expect(steps).toEqual([
    'npm install --no-save node-addon-api@^8 node-gyp@^12',
    `npx node-gyp rebuild --directory ${JSON.stringify(join(project, 'node_modules', '@folk', 'socketpair', 'src'))}`,
  ]);

  // Run them. node-gyp would download Node's headers; this machine has them beside node.
  const env: NodeJS.ProcessEnv = { ...process.env };
  const headers = join(dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
  if (!env.npm_config_nodedir && existsSync(headers)) env.npm_config_nodedir = join(dirname(process.execPath), '..');
  for (const step of steps) {
    const r = spawnSync('sh', ['-c', step], { cwd: project, env, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, `${step}\n${r.stdout}\n${r.stderr}`).toBe(0);
  }
  const built = join(project, 'node_modules', '@folk', 'socketpair', 'src', 'build', 'Release', 'socketpair.node');
  expect(existsSync(built)).toBe(true);

  // The package now loads the source build, not its prebuilt binary.
  writeFileSync(
    join(project, 'check.cjs'),
    `const { socketpair } = require('@folk/socketpair');
     const [a, b] = socketpair('stream');
     const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
     console.log(maps.includes(${JSON.stringify(built)}), maps.includes('/prebuilds/'), a >= 0 && b >= 0);`,
  );
  const r = spawnSync(process.execPath, ['check.cjs'], { cwd: project, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('true false true');
});
