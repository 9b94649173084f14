// Where the PHP worker library (php/Worker.php, which loads the rest of the
// php/ folder from beside it) is, installed or bundled.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * Absolute path of the PHP worker library (`php/Worker.php`): `require` it
 * from a PHP worker script. It loads the rest of the library from its own
 * folder, and a pool's prototype runs `prototype.php` from there, so copy
 * the whole `php/` folder, never Worker.php alone. `FOLK_PHP_WORKER_LIBRARY`
 * in the environment overrides it (the Worker.php of such a copy); otherwise
 * it is the package's own file, or, in a bundle, `php/Worker.php` beside the
 * bundle when the folder is copied there.
 */
export const PHP_WORKER_LIBRARY: string = phpWorkerLibrary();

function phpWorkerLibrary(): string {
  const named = process.env.FOLK_PHP_WORKER_LIBRARY;
  if (named) return resolve(named);
  // Installed, dist/ sits beside php/. In a CommonJS bundle __dirname is the
  // bundle's directory; an ES module bundle has none, and the bundle is
  // taken to be the main script.
  const main = process.argv[1];
  const here = typeof __dirname === 'string' ? __dirname : main ? dirname(resolve(main)) : process.cwd();
  const own = join(here, '..', 'php', 'Worker.php');
  const beside = join(here, 'php', 'Worker.php');
  return !existsSync(own) && existsSync(beside) ? beside : own;
}
