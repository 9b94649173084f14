#!/usr/bin/env node
// Run from a native package's directory: builds the N-API prebuild with
// prebuildify into ./prebuilds/<platform>-<arch>/ (stripped, libc-tagged).
// One --napi build serves every Node version the package supports.
//
// node-gyp normally downloads Node's headers; a machine with no network (or a
// distribution Node that ships its headers) has them beside the node binary,
// so point node-gyp at those when they are there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const env = { ...process.env };
const headers = join(dirname(process.execPath), '..', 'include', 'node');
if (!env.npm_config_nodedir && existsSync(join(headers, 'node_api.h'))) {
  env.npm_config_nodedir = join(headers, '..', '..');
}

const require = createRequire(join(process.cwd(), 'package.json'));
const prebuildify = require.resolve('prebuildify/bin.js');
env.PREBUILD_NODE_GYP ??= require.resolve('node-gyp/bin/node-gyp.js');

const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc'], {
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? 1);
