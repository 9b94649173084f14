// The supervisor's end of the task socket closed while an answer sat unread
// in it: the worker's next read fails with ECONNRESET (not end-of-file).
// That is the supervisor going away, as end-of-file is, not a fault.
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, it } from 'vitest';
import { socketpair } from '@folk/socketpair';
import { FrameType, encodeFrame } from '../lib/protocol.js';
import { fixture, once, requirePhp } from './helpers.js';

beforeAll(() => requirePhp());

describe('the PHP library, when the supervisor closes the task socket with an answer unread', () => {
  it('receive() returns null and the worker ends normally', async () => {
    const [taskParent, taskChild] = socketpair('stream');
    const [controlParent, controlChild] = socketpair('seqpacket');
    const child = spawn('php', [fixture('answer-then-say.php')], {
      stdio: ['ignore', 'pipe', 'pipe', taskChild, controlChild],
      env: { ...process.env, FOLK_RUNTIME: 'pipe', FOLK_TASK_FD: '3', FOLK_CONTROL_FD: '4' },
    });
    closeSync(taskChild);
    closeSync(controlChild);
    const exited = once<[number | null, string | null]>(child, 'exit');
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    try {
      for (const part of encodeFrame(FrameType.REQUEST, 1, Buffer.from('question'))) writeSync(taskParent, part);
      expect((await lines.next()).value).toBe('answered');
      // The answer was never read: closing now resets the connection.
      closeSync(taskParent);
      const last = (await lines.next()).value;
      const exit = await exited;
      expect({ last, exit, stderr }).toEqual({ last: 'supervisor gone', exit: [0, null], stderr: '' });
    } finally {
      child.kill('SIGKILL');
      closeSync(controlParent);
    }
  });
});
