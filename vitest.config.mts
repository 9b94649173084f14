import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Debian's arm64 php-cli under qemu (scripts/arm64-php.sh makes it; .ci/run
// does): the app server's FFI hooks into php-cli, tried on arm64 too.
const ARM64_PHP = join(import.meta.dirname, '.tools', 'arm64-php', 'bin');
const arm64Php = existsSync(join(ARM64_PHP, 'php'))
  ? [
      {
        extends: './examples/app-server/vitest.config.mts',
        root: './examples/app-server',
        test: {
          name: '@folk/example-app-server on arm64 PHP',
          // The tests of what goes through FFI (header(), flush(), exit(),
          // uploads, sessions, shutdown functions, ini and locale, a worker's
          // end), and the prototype's fork; extends joins lists, so the rest
          // are left out.
          exclude: ['test/self-test.test.ts', 'test/direct.test.ts', 'test/http-php.test.ts', 'test/http-differential.test.ts', 'test/worker-death.test.ts', 'test/ops.test.ts', 'test/systemd.test.ts'],
          env: { PATH: `${ARM64_PHP}:${process.env.PATH}` },
          testTimeout: 120_000,
        },
      },
    ]
  : [];

// One run covers every package (each is a project named after the package),
// the shared internal sources, the end-to-end suite, which installs the packed
// tarballs, and the README code blocks.
export default defineConfig({
  test: {
    projects: [
      'packages/*',
      'internal',
      'test-e2e',
      'test-docs',
      'examples/app-server',
      // The app server's HTTP, operations, systemd and prototype tests once
      // more with --direct off: requests pass through the front, as tasks to
      // the PHP workers (by default the workers serve the connections).
      {
        extends: './examples/app-server/vitest.config.mts',
        root: './examples/app-server',
        test: {
          name: '@folk/example-app-server --direct off',
          // (extends joins lists: these leave out what is about one mode.)
          exclude: ['test/self-test.test.ts', 'test/direct.test.ts', 'test/http-php.test.ts', 'test/http-differential.test.ts', 'test/stream.test.ts', 'test/worker-death.test.ts', 'test/uploaded-files.test.ts', 'test/session-id.test.ts', 'test/worker-exit.test.ts', 'test/no-ffi.test.ts'],
          env: { FOLK_APP_TEST_TASKS: '1' },
        },
      },
      ...arm64Php,
    ],
  },
});
