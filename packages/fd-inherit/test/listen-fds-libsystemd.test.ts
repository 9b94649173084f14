// listenFds() against libsystemd itself: every case of the table runs in a
// Python process through sd_listen_fds_with_names() (ctypes on
// libsystemd.so.0) and in a Node process through listenFds(), both started
// with the same fds at 3-5 and the same environment (placeholders such as
// {pid} stand for each process's own values), and the answers must agree:
// the count or -errno, the names, which of fds 3-5 became close-on-exec,
// and what is left of the variables.
//
// LISTEN_PIDFDID is read by libsystemd 258 and later only. With an older
// libsystemd (Debian 12 has 252) the cases where it decides are checked
// against what sd-daemon.c does since 258 instead, and the table says so.
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type SpawnOptions } from '../lib/index.js';
import { DIST, libsystemdMissing, outputOf, requireDist } from './helpers.js';

const ORACLE = fileURLToPath(new URL('./fixtures/sd-listen-oracle.py', import.meta.url));
const CASES = fileURLToPath(new URL('./fixtures/listen-fds-cases.cjs', import.meta.url));

const missing = libsystemdMissing();

const EINVAL = -22;
const ERANGE = -34;

interface Case {
  env: Record<string, string>;
  unset?: boolean;
  /** Closed in both processes just before the call. */
  close?: number;
  /**
   * LISTEN_PIDFDID decides this case in libsystemd >= 258: its answer then,
   * `r`, with no fd touched. `pidfsOnly`: only where the kernel can tell
   * (pidfs, Linux 6.9+); elsewhere libsystemd accepts the fds.
   */
  pidfdid?: { r: number; pidfsOnly?: boolean };
}

interface Result {
  r: number;
  names: string[];
  cloexec: Array<boolean | null>;
  env: Record<string, string | null>;
}

const P = (pid: string, more: Record<string, string> = {}) => ({ LISTEN_PID: pid, ...more });
const own = (more: Record<string, string>) => P('{pid}', more);

const cases: Case[] = [
  // Valid, with and without names.
  { env: own({ LISTEN_FDS: '1' }) },
  { env: own({ LISTEN_FDS: '3', LISTEN_FDNAMES: 'a:b:c' }) },
  // Empty names stay empty; a separator is never coalesced.
  { env: own({ LISTEN_FDS: '3', LISTEN_FDNAMES: 'a::b' }) },
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: '' }) },
  { env: own({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'a:' }) },
  { env: own({ LISTEN_FDS: '2', LISTEN_FDNAMES: ':a' }) },
  { env: own({ LISTEN_FDS: '3', LISTEN_FDNAMES: '::' }) },
  // A backslash takes the next character as it is; a trailing one is EINVAL. Quotes are plain.
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: 'a\\:b' }) },
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: 'a\\\\b' }) },
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: '\\x41' }) },
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: 'a\\' }) },
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: "'a b'" }) },
  // As many names as fds, or EINVAL (after the fds were made close-on-exec).
  { env: own({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'a' }) },
  { env: own({ LISTEN_FDS: '1', LISTEN_FDNAMES: 'a:b' }) },
  { env: own({ LISTEN_FDS: '3', LISTEN_FDNAMES: 'a:b:c:d' }) },
  // Missing, or meant for another process.
  { env: {} },
  { env: { LISTEN_FDS: '1' } },
  { env: own({}) },
  { env: own({ LISTEN_FDNAMES: 'a' }) },
  { env: P('{pid1}', { LISTEN_FDS: '1' }) },
  { env: P('{pid1}', { LISTEN_FDS: 'many' }) },
  // LISTEN_PID as parse_pid reads it.
  ...[
    'abc',
    '',
    ' ',
    '0',
    '-0',
    '-1',
    '-{pid}',
    '- {pid}',
    '+{pid}',
    ' {pid}',
    '\t\n\r{pid}',
    '\v{pid}',
    '\v-{pid}',
    '{pid} ',
    '{pid}x',
    '{pidHex}',
    '{pidOct}',
    '{pidBin}',
    '0x{pid}',
    '0x',
    '2147483648',
    '4294967296',
    '99999999999',
    '18446744073709551615',
    '18446744073709551616',
    '99999999999999999999x',
  ].map((pid) => ({ env: P(pid, { LISTEN_FDS: '1' }) })),
  // LISTEN_FDS as safe_atoi reads it, and 0 or fewer is EINVAL.
  ...[
    '0',
    '-0',
    '-1',
    'many',
    '',
    ' ',
    '1 ',
    ' 1',
    '\t\n\r1',
    '\v1',
    '\f2',
    '0x2',
    '0X2',
    ' 0x3',
    '02',
    '0o2',
    '0O3',
    '0b10',
    '0B11',
    '+2',
    '+0x2',
    '-0x2',
    '08',
    '0x',
    '0b',
    '0b2',
    '0o8',
    '0b0b1',
    '2147483645',
    '2147483647',
    '2147483648',
    '-2147483649',
    '99999999999999999999',
    '99999999999999999999x',
  ].map((n) => ({ env: own({ LISTEN_FDS: n }) })),
  // LISTEN_PIDFDID: matching this process (any form safe_atou64 reads), or not, or malformed.
  { env: own({ LISTEN_PIDFDID: '{pidfdid}', LISTEN_FDS: '1' }) },
  { env: own({ LISTEN_PIDFDID: '{pidfdidHex}', LISTEN_FDS: '1' }) },
  { env: own({ LISTEN_PIDFDID: ' {pidfdid}', LISTEN_FDS: '2', LISTEN_FDNAMES: 'x:y' }) },
  { env: own({ LISTEN_PIDFDID: '{pidfdid}' }) },
  { env: own({ LISTEN_PIDFDID: '{pidfdid1}', LISTEN_FDS: '1' }), pidfdid: { r: 0, pidfsOnly: true } },
  { env: own({ LISTEN_PIDFDID: '{pidfdid1}', LISTEN_FDS: 'many' }), pidfdid: { r: 0, pidfsOnly: true } },
  { env: own({ LISTEN_PIDFDID: 'xyz', LISTEN_FDS: '1' }), pidfdid: { r: EINVAL } },
  { env: own({ LISTEN_PIDFDID: '', LISTEN_FDS: '1' }), pidfdid: { r: EINVAL } },
  { env: own({ LISTEN_PIDFDID: '{pidfdid} ', LISTEN_FDS: '1' }), pidfdid: { r: EINVAL } },
  { env: own({ LISTEN_PIDFDID: '-1', LISTEN_FDS: '1' }), pidfdid: { r: ERANGE } },
  { env: own({ LISTEN_PIDFDID: '18446744073709551616', LISTEN_FDS: '1' }), pidfdid: { r: ERANGE } },
  { env: P('{pid1}', { LISTEN_PIDFDID: 'xyz', LISTEN_FDS: '1' }) },
];

// Each case with the variables left in place and removed, then one that
// needs an fd closed (last: the fd stays closed).
const table: Case[] = [
  ...cases.flatMap((c) => [
    { ...c, unset: false },
    { ...c, unset: true },
  ]),
  { env: own({ LISTEN_FDS: '3' }), close: 5, unset: false },
];
const DETECT_PIDFDID = cases.findIndex((c) => c.env['LISTEN_PIDFDID'] === 'xyz' && c.env['LISTEN_PID'] === '{pid}') * 2;

let held: number[] = [];

async function run(file: string, args: string[]): Promise<{ pidfdId: string | null; results: Result[] }> {
  const options: SpawnOptions = { fds: { 3: held[0]!, 4: held[1]!, 5: held[2]! }, stdout: 'pipe' };
  const { out, code } = await outputOf(spawn(file, args, options));
  expect(code).toBe(0);
  return JSON.parse(out) as { pidfdId: string | null; results: Result[] };
}

describe.skipIf(missing !== null)(
  `listenFds() agrees with libsystemd's sd_listen_fds_with_names${missing === null ? '' : ` (skipped: ${missing})`}`,
  () => {
    beforeAll(() => {
      held = [openSync('/dev/null', 'r'), openSync('/dev/null', 'r'), openSync('/dev/null', 'r')];
    });
    afterAll(() => {
      for (const fd of held) closeSync(fd);
    });

    it(`over ${table.length} cases: valid, malformed, other pids, names, 0x and space forms, LISTEN_PIDFDID`, async () => {
      requireDist();
      const json = JSON.stringify(table);
      const [oracle, ours] = await Promise.all([run('python3', [ORACLE, json]), run(process.execPath, [CASES, DIST, json])]);
      expect(ours.results).toHaveLength(table.length);
      expect(oracle.results).toHaveLength(table.length);
      // The same kernel: both know their pidfd's inode id, or neither does.
      expect(ours.pidfdId === null).toBe(oracle.pidfdId === null);
      const pidfs = ours.pidfdId !== null;

      // An libsystemd older than 258 ignores LISTEN_PIDFDID, even malformed.
      const oracleReadsPidfdid = oracle.results[DETECT_PIDFDID]!.r === EINVAL;
      const expected = table.map((c, i) => {
        const answer = { ...oracle.results[i]! };
        if (oracleReadsPidfdid || c.env['LISTEN_PIDFDID'] === undefined) return answer;
        // What sd-daemon.c does since 258, where the old one differs.
        if (c.pidfdid && (pidfs || !c.pidfdid.pidfsOnly)) {
          answer.r = c.pidfdid.r;
          answer.names = [];
          answer.cloexec = [false, false, false];
        }
        if (c.unset) answer.env = { ...answer.env, LISTEN_PIDFDID: null };
        return answer;
      });
      const label = (results: Result[]) => results.map((r, i) => ({ case: JSON.stringify(table[i]), ...r }));
      expect(label(ours.results)).toEqual(label(expected));
      if (!oracleReadsPidfdid) {
        console.info(
          'listen-fds-libsystemd: the installed libsystemd ignores LISTEN_PIDFDID (older than 258); ' +
            `the ${cases.filter((c) => c.env['LISTEN_PIDFDID'] !== undefined).length * 2} cases that set it were checked against sd-daemon.c since 258`,
        );
      }
    }, 60_000);
  },
);
