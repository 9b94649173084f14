import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'docs',
    include: ['*.test.ts'],
    pool: 'forks',
    // Each block is a whole Node or PHP program, some spawning workers.
    testTimeout: 60_000,
  },
});
