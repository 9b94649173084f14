// The public functions of the four native packages called with fuzzed
// arguments (harness/fuzz-arguments.mjs, a process per seed): no crash, no
// throw of anything but an Error with a message, no fd left open by a call
// that threw. The built packages of this checkout, not the tarballs.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const HARNESS = join(__dirname, 'harness', 'fuzz-arguments.mjs');

interface Report {
  calls: Record<string, number>;
  succeeded: Record<string, number>;
  problems: string[];
}

function fuzz(seed: number, rounds: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; report: Report | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HARNESS, String(seed), String(rounds)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      resolve({ code, signal, report: line.startsWith('{') ? (JSON.parse(line) as Report) : null, stderr });
    });
  });
}

describe('fuzzed arguments', () => {
  it('socketpair, pidfd, fd-inherit and scm-rights refuse them with Errors, leak nothing and never crash (3 seeds, 150 rounds each)', async () => {
    const runs = await Promise.all([1, 2, 3].map((seed) => fuzz(20261205 + seed, 150)));
    for (const run of runs) {
      expect({ code: run.code, signal: run.signal, stderr: run.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
      expect(run.report!.problems).toEqual([]);
    }
    // What was covered: every function, and the well-formed calls among the random ones worked.
    const total = (key: 'calls' | 'succeeded', name: string) => runs.reduce((n, r) => n + (r.report![key][name] ?? 0), 0);
    const functions = Object.keys(runs[0]!.report!.calls);
    expect(functions).toHaveLength(21);
    // (FdSocket.send only when the random arguments made an FdSocket.)
    for (const name of functions) expect({ name, calls: total('calls', name) }).toEqual({ name, calls: name === 'FdSocket.send' ? total('succeeded', 'new FdSocket') : 450 });
    for (const name of ['socketpair', 'socketpairStreams', 'PidFd.open', 'PidFd.kill', 'PidFd.getFd', 'spawn', 'listenFds', 'sendFds', 'recvFds', 'peerCredentials', 'new FdSocket', 'setInheritable', 'closeFds']) {
      expect({ name, succeeded: total('succeeded', name) > 0 }).toEqual({ name, succeeded: true });
    }
  }, 120_000);
});
