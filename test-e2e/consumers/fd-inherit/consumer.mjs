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

  // A program that cannot start throws, synchronously. Not under qemu-user
  // (FOLK_E2E_QEMU, the arm64 run): qemu runs the vfork-style clone as a
  // fork, so the child's report of the failed exec stays in its own copy of
  // memory; the spawn returns and the child exits 127 (the README says so).
  if (process.env.FOLK_E2E_QEMU) {
    const lost = spawn(join(dir, 'missing'), []);
    const exit = await lost.wait();
    lost.pidfd.close();
    if (exit.code !== 127) throw new Error(`under qemu a missing program exited with ${exit.code ?? exit.signal}`);
  } else {
    try {
      spawn(join(dir, 'missing'), []);
      throw new Error('spawned a missing program');
    } catch (err) {
      if (err.code !== 'ENOENT' || err.syscall !== 'spawn') throw err;
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log('ok');
