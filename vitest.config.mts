import { defineConfig } from 'vitest/config';

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
      // The app server's HTTP, operations and systemd tests once more, with
      // --direct: the PHP workers read and answer the connections themselves.
      {
        extends: './examples/app-server/vitest.config.mts',
        root: './examples/app-server',
        test: {
          name: '@folk/example-app-server --direct',
          // (extends joins lists: these leave out what has no --direct form.)
          exclude: ['test/self-test.test.ts', 'test/direct.test.ts', 'test/http-php.test.ts'],
          env: { FOLK_APP_TEST_DIRECT: '1' },
        },
      },
    ],
  },
});
