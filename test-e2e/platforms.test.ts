// Every prebuild a tarball carries, proved on its platform from this x64
// machine: the arm64 glibc binaries in the registry's real arm64 Node under
// qemu, the musl binaries with musl's own dynamic loader (no musl Node is on
// the registries we reach), and the x64 consumers in each Node major the
// packages support. Each tarball is installed alone (npm, install scripts
// ignored, no compiler on PATH) once, and every run below uses that install.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Packed, installAlone, noCompilerPath, packAll, repoRoot } from './harness/pack.js';
import { arm64NodeCommand, elfExports, elfNeeds, muslLoad, qemuArm64, registryNode } from './harness/platforms.js';

// The oldest Node the packages support, and the newest release of each later
// major on the registry when this was written. The README states this range.
const X64_NODES = ['20.19.0', '22.23.5', '24.22.3', '26.12.1'];
const ARM64_NODE = '20.19.0';

const consumersDir = join(repoRoot, 'test-e2e', 'consumers');
const consumers = readdirSync(consumersDir).filter((d) => existsSync(join(consumersDir, d, 'consumer.mjs')));
const TARGETS = [
  ['x64', 'glibc'],
  ['arm64', 'glibc'],
  ['x64', 'musl'],
  ['arm64', 'musl'],
] as const;

let tarballs: string;
let packed: Map<string, Packed>;
let env: NodeJS.ProcessEnv;
/** The project each consumer directory's package is installed in. */
const projects = new Map<string, string>();
const scratch: string[] = [];

beforeAll(() => {
  tarballs = mkdtempSync(join(tmpdir(), 'folk-tarballs-'));
  scratch.push(tarballs);
  packed = packAll(tarballs);
  const noCompiler = noCompilerPath();
  scratch.push(dirname(noCompiler.log));
  env = { ...process.env, PATH: noCompiler.path };
  for (const key of ['CC', 'CXX', 'LINK', 'npm_config_python', 'PYTHON']) delete env[key];
  for (const pkg of packed.values()) {
    const { project } = installAlone(packed, pkg, 'npm', 'ignored', env);
    scratch.push(project);
    for (const file of ['consumer.mjs', 'consumer.cjs']) copyFileSync(join(consumersDir, pkg.dir, file), join(project, file));
    projects.set(pkg.dir, project);
  }
});

afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

const natives = () => [...packed.values()].filter((p) => p.files.includes('src/binding.gyp'));
const binaryName = (p: Packed, arch: string, libc: string) => `prebuilds/linux-${arch}/${p.name.replace('/', '+')}.${libc}.node`;

/** The binaries of one target, extracted from the tarballs. */
function extract(arch: string, libc: string): { pkg: Packed; file: string }[] {
  const out = mkdtempSync(join(tmpdir(), 'folk-prebuild-'));
  scratch.push(out);
  return natives().map((pkg) => {
    const name = binaryName(pkg, arch, libc);
    const r = spawnSync('tar', ['-xzf', pkg.tarball, '-C', out, `package/${name}`], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    return { pkg, file: join(out, 'package', name) };
  });
}

function runIn(dir: string, cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, { cwd: projects.get(dir), env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 150_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

it('every native tarball holds the four prebuilds lib/native.ts loads', () => {
  expect(natives().length).toBe(4);
  for (const p of natives()) {
    const have = p.files.filter((f) => f.startsWith('prebuilds/')).sort();
    expect(have).toEqual(TARGETS.map(([arch, libc]) => binaryName(p, arch, libc)).sort());
  }
});

it('each binary is built for the architecture its directory names', () => {
  for (const [arch, libc] of TARGETS) {
    for (const { pkg, file } of extract(arch, libc)) {
      const header = spawnSync('readelf', ['-h', file], { encoding: 'utf8' }).stdout;
      const machine = /Machine:\s+(.+)/.exec(header)?.[1]?.trim();
      expect({ file: binaryName(pkg, arch, libc), machine }).toEqual({
        file: binaryName(pkg, arch, libc),
        machine: arch === 'x64' ? 'Advanced Micro Devices X86-64' : 'AArch64',
      });
    }
  }
});

it("each binary exports only Node's two entry points: none of its C++ (node-addon-api, the standard library) can bind to another's", () => {
  // Weak template symbols left in the dynamic table (Napi::, std::) would be
  // a second copy for the dynamic linker to pick between, should a loader
  // ever map two addons into one namespace.
  for (const [arch, libc] of TARGETS) {
    for (const { pkg, file } of extract(arch, libc)) {
      expect({ file: binaryName(pkg, arch, libc), exports: elfExports(file) }).toEqual({
        file: binaryName(pkg, arch, libc),
        exports: ['napi_register_module_v1', 'node_api_module_get_api_version_v1'],
      });
    }
  }
});

describe.each(['x64', 'arm64'] as const)('linux-%s musl binaries', (arch) => {
  it('NEED nothing but musl libc.so and carry no glibc symbol versions', () => {
    for (const { pkg, file } of extract(arch, 'musl')) {
      const { needed, versions } = elfNeeds(file);
      expect({ pkg: pkg.name, needed, versions }).toEqual({ pkg: pkg.name, needed: ['libc.so'], versions: [] });
    }
  });

  it("load under musl's own dynamic loader with only Node-API and libuv symbols left for node", () => {
    for (const { pkg, file } of extract(arch, 'musl')) {
      const { unresolved, errors, output } = muslLoad(file, arch);
      // It did load the file and its libc, and reached the relocations.
      expect(output).toMatch(/libc\.so => \/lib\/ld-musl-/);
      expect(unresolved).toContain('napi_create_function');
      const foreign = unresolved.filter((s) => !/^(napi_|node_api_|uv_)/.test(s));
      expect({ pkg: pkg.name, foreign, errors }).toEqual({ pkg: pkg.name, foreign: [], errors: [] });
    }
  });
});

describe(`linux-arm64 glibc: the registry's arm64 Node ${ARM64_NODE} under qemu`, () => {
  let node: string;
  let nodeCommand: string;

  beforeAll(() => {
    node = registryNode('arm64', ARM64_NODE);
    const dir = mkdtempSync(join(tmpdir(), 'folk-node-arm64-'));
    scratch.push(dir);
    nodeCommand = arm64NodeCommand(node, dir);
  });

  it('is an arm64 Node and maps the arm64 glibc binary of each package', () => {
    // In the worker-spawn project, which has the other four as its
    // dependencies. qemu shows the program its own view of /proc/self/maps:
    // which .node files this arm64 process mapped.
    const probe = `
      const from = { paths: [require('path').dirname(require.resolve('@folk/worker-spawn/package.json'))] };
      for (const p of ${JSON.stringify(natives().map((p) => p.name))}) require(require.resolve(p, from));
      const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
      console.log(JSON.stringify({ version: process.version, arch: process.arch,
        loaded: [...new Set(maps.match(/\\S+\\.node$/gm))].map((f) => f.split('/node_modules/')[1]).sort() }));`;
    const [qemu, args] = qemuArm64(node, '-e', probe);
    const got = JSON.parse(runIn('worker-spawn', qemu, args));
    expect(got).toEqual({
      version: `v${ARM64_NODE}`,
      arch: 'arm64',
      loaded: natives()
        .map((p) => `${p.name}/${binaryName(p, 'arm64', 'glibc')}`)
        .sort(),
    });
  });

  // One ES module consumer per package: a socketpair, a pidfd wait, a spawn
  // with an fd map, fds passed over SCM_RIGHTS, worker-spawn tasks on arm64
  // Node workers (and a PHP one: the host's php, started by the arm64 Node).
  it.each(consumers)('%s consumer runs', (dir) => {
    const [qemu, args] = qemuArm64(node, 'consumer.mjs');
    const out = runIn(dir, qemu, args, { FOLK_E2E_NODE: nodeCommand });
    expect(out.trim().split('\n').pop()).toBe('ok');
  });
});

describe.each(X64_NODES)('linux-x64 glibc: Node %s', (version) => {
  let node: string;

  beforeAll(() => {
    node = registryNode('x64', version);
  });

  it('is that Node', () => {
    expect(runIn('socketpair', node, ['-p', 'process.version + " " + process.arch']).trim()).toBe(`v${version} x64`);
  });

  it.each(consumers)('%s consumers run via import and require', (dir) => {
    for (const file of ['consumer.mjs', 'consumer.cjs']) {
      expect(runIn(dir, node, [file]).trim().split('\n').pop()).toBe('ok');
    }
  });
});
