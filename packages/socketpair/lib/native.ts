// The one seam between TypeScript and C++: the shape of src/socketpair.cc's
// exports, declared once so lib/index.ts is type-checked against it.
import { join } from 'node:path';
import nodeGypBuild from 'node-gyp-build';

export interface NativeBinding {
  /** socketpair(AF_UNIX, type | flags, 0). Throws a Node-style errno Error. */
  socketpair(type: number, cloexec: boolean, nonblock: boolean): [number, number];
  readonly SOCK_STREAM: number;
  readonly SOCK_SEQPACKET: number;
  readonly SOCK_DGRAM: number;
}

// lib/ (sources, under vitest) and dist/ (the build) both sit one level below
// the package root, where node-gyp-build looks for build/ and prebuilds/.
export const native = nodeGypBuild(join(__dirname, '..')) as NativeBinding;
