// readRss: how much memory a worker holds, for the pool's maxWorkerMemory.

import { readFileSync } from 'node:fs';
import { invalidArgType, outOfRange } from './args.js';

/**
 * Resident set size of a process in bytes (VmRSS from /proc/<pid>/status),
 * or null when the process is gone.
 *
 * @throws TypeError/RangeError unless `pid` is a positive integer.
 */
export function readRss(pid: number): number | null {
  if (typeof pid !== 'number') throw invalidArgType('pid', 'of type number', pid);
  if (!Number.isInteger(pid) || pid < 1) throw outOfRange('pid', 'a positive integer', pid);
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : null;
}
