import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: '@folk/pidfd',
    include: ['test/**/*.test.ts'],
    // Tests count /proc/self/fd; files run in their own processes.
    pool: 'forks',
    // Some tests spawn 1,000 processes or whole Node processes; on a busy
    // 2-core machine that can take seconds. A hang still fails, just later.
    testTimeout: 60_000,
  },
});
