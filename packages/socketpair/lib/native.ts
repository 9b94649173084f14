// The one seam between TypeScript and C++: the shape of src/socketpair.cc's
// exports, declared once so lib/index.ts is type-checked against it.
import { loadNative } from './internal/native-loader.js';

export interface NativeBinding {
  /** socketpair(AF_UNIX, type | flags, 0). Throws a Node-style errno Error. */
  socketpair(type: number, cloexec: boolean, nonblock: boolean): [number, number];
  readonly SOCK_STREAM: number;
  readonly SOCK_SEQPACKET: number;
  readonly SOCK_DGRAM: number;
}

export const native = loadNative({
  name: '@folk/socketpair',
  target: 'socketpair',
  requirePrebuild(key) {
    // A literal path per binary, inside `try`: see NativePackage.requirePrebuild.
    try {
      if (key === 'linux-x64-glibc') return require('../prebuilds/linux-x64/@folk+socketpair.glibc.node');
      if (key === 'linux-x64-musl') return require('../prebuilds/linux-x64/@folk+socketpair.musl.node');
      if (key === 'linux-arm64-glibc') return require('../prebuilds/linux-arm64/@folk+socketpair.glibc.node');
      if (key === 'linux-arm64-musl') return require('../prebuilds/linux-arm64/@folk+socketpair.musl.node');
    } finally {
      // Errors go to loadNative.
    }
    return undefined;
  },
}) as NativeBinding;
