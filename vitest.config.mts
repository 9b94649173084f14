import { defineConfig } from 'vitest/config';

// One run covers every package (each is a project named after the package)
// and the end-to-end suite, which installs the packed tarballs.
export default defineConfig({
  test: {
    projects: ['packages/*', 'internal', 'test-e2e', 'test-docs', 'examples/app-server'],
  },
});
