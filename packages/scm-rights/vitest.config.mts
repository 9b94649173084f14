import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: '@folk/scm-rights',
    include: ['test/**/*.test.ts'],
    // Tests count /proc/self/fd; files run in their own processes.
    pool: 'forks',
    // 100,000-message and 10,000-pass tests move real fds through the kernel.
    testTimeout: 60_000,
  },
});
