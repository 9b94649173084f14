import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'e2e',
    include: ['*.test.ts'],
    pool: 'forks',
    // Installs from tarballs: seconds each, not milliseconds.
    testTimeout: 180_000,
    hookTimeout: 300_000,
  },
});
