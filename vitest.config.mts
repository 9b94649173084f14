import { defineConfig } from 'vitest/config';

// One run covers every package (each is a project named after the package),
// the shared internal sources, the end-to-end suite, which installs the packed
// tarballs, and the README code blocks.
export default defineConfig({
  test: {
    projects: ['packages/*', 'internal', 'test-e2e', 'test-docs', 'examples/app-server'],
  },
});
