import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: '@folk/fd-inherit',
    include: ['test/**/*.test.ts'],
    // Tests count /proc/self/fd; files run in their own processes.
    pool: 'forks',
  },
});
