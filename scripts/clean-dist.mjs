#!/usr/bin/env node
// Run from a package directory before `tsc` (its build script does): removes
// dist/, since tsc never removes what an earlier build wrote, and a module
// renamed or removed from lib/ would otherwise ship on in the tarball
// (test-e2e/release.test.ts checks that none does).
import { rmSync } from 'node:fs';
import { join } from 'node:path';

rmSync(join(process.cwd(), 'dist'), { recursive: true, force: true });
