import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: '@folk/worker-spawn',
    include: ['test/**/*.test.ts'],
    // Tests count /proc/self/fd and spawn real workers; files run in their own processes.
    pool: 'forks',
    // Real php-cli workers; 10,000-task and 8 MiB runs take seconds, not milliseconds.
    testTimeout: 60_000,
  },
});
