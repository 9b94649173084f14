import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: '@folk/internal',
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // The tests load the native packages' dist/ in child processes.
    testTimeout: 30_000,
  },
});
