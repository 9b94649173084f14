// An ES module user of @folk/fd-inherit, installed from its tarball.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isInheritable, spawn } from '@folk/fd-inherit';

const dir = mkdtempSync(join(tmpdir(), 'fd-inherit-consumer-'));
try {
  writeFileSync(join(dir, 'data'), 'placed at fd 5');
  const data = openSync(join(dir, 'data'), 'r');
  if (isInheritable(data)) throw new Error('Node opened an inheritable fd?');

  // The file arrives at fd 5 (and nothing else beyond 0-2 exists there: ls
  // lists the shell's table while the shell waits for it).
  const child = spawn('/bin/sh', ['-c', 'cat <&5; ls /proc/$$/fd'], { fds: { 5: data }, stdout: 'pipe' });
  closeSync(data);
  let out = '';
  for await (const chunk of child.stdout) out += chunk;
  const exit = await child.wait();
  child.pidfd.close();
  if (exit.code !== 0) throw new Error(`child exited with ${exit.code ?? exit.signal}`);
  if (out !== 'placed at fd 5' + '0\n1\n2\n5\n') throw new Error(`child said ${JSON.stringify(out)}`);

  // A program that cannot start throws, synchronously. Under qemu-user too
  // (the arm64 run), where the vfork-style clone is a fork and the child
  // reports through a pipe instead of our memory.
  try {
    spawn(join(dir, 'missing'), []);
    throw new Error('spawned a missing program');
  } catch (err) {
    if (err.code !== 'ENOENT' || err.syscall !== 'spawn' || err.step !== 'execve') throw err;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log('ok');
