// The scoreboard of direct mode (lib/direct.mjs): a directory with a file
// per PHP worker, named by its pid, in which the worker keeps one line
// (php/Scoreboard.php) saying which request it serves and which
// connections it must keep. Here: the directory, and reading a line.

import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCOREBOARD_PREFIX = 'folk-app-scoreboard-';
/** A directory scoreboardDir() made: the prefix, the front's pid, a dash, mkdtemp's letters. */
const SCOREBOARD_DIR = /^folk-app-scoreboard-([1-9]\d*)-\w+$/;

/**
 * A new directory for the scoreboard of this front's workers, in memory
 * where there is a tmpfs (/dev/shm). Named after this process, so that the
 * directories of fronts that were killed before they could remove theirs
 * (SIGKILL, a crash of the machine's Node) are found and removed here.
 */
export function scoreboardDir() {
  const parent = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  for (const name of readdirSync(parent)) {
    // Names of another form (no pid to go by) are left alone.
    const pid = Number(SCOREBOARD_DIR.exec(name)?.[1] ?? 0);
    if (pid > 0 && !alive(pid)) rmSync(join(parent, name), { recursive: true, force: true });
  }
  return mkdtempSync(join(parent, `${SCOREBOARD_PREFIX}${process.pid}-`));
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM'; // someone else's
  }
}

/**
 * A whole scoreboard line (php/Scoreboard.php): the connection id (0: none,
 * the worker is between requests), the start in ms since the epoch (13
 * digits; a "+" after them once the script has sent part of its
 * answer, a "*" once fastcgi_finish_request() has answered it and the
 * script runs on), the ids of the connections the worker holds bytes of or still
 * writes an answer to ("-": none), the method and the target ("- -"
 * between requests); spaces pad it to a fixed length.
 */
const SERVING = /^(0|[1-9]\d*) (\d{13})([+*]?) (-|\d+(?:,\d+)*) ([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) *\n?$/;

/**
 * { id, since, answering, answered, holding, request } of the request a
 * scoreboard line says a worker is serving (id 0: none, but it still
 * writes to the connections `holding`; answering: part of its answer is
 * out; answered: all of it, the script runs on), or null: idle ("0"),
 * empty, or torn. The worker
 * rewrites its line in place while the front may read it, so a read can
 * catch the new line's first bytes and the old one's last; such a line
 * reads as nothing (the next tick reads it whole), never as a wrong start
 * time or list of held connections.
 */
export function parseScoreboardLine(text) {
  const m = SERVING.exec(text);
  // "- -" is what a line between requests has, and only such a line (a
  // torn one can mix the two kinds).
  if (m === null || (m[1] === '0') !== (m[5] === '-' && m[6] === '-')) return null;
  const holding = m[4] === '-' ? [] : m[4].split(',').map(Number);
  return { id: Number(m[1]), since: Number(m[2]), answering: m[3] === '+', answered: m[3] === '*', holding, request: `${m[5]} ${m[6]}` };
}
