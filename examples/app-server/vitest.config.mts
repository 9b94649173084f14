import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: '@folk/example-app-server',
    include: ['test/**/*.test.ts'],
    // Each file starts real servers with real PHP workers.
    pool: 'forks',
    testTimeout: 60_000,
  },
});
