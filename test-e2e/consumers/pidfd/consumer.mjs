// An ES module user of @folk/pidfd, installed from its tarball.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { PidFd } from '@folk/pidfd';

// A child_process child: wait() observes the exit, and 'exit' still fires with the code.
const child = spawn('sh', ['-c', 'exit 3'], { stdio: 'ignore' });
const exited = once(child, 'exit');
const p = PidFd.open(child.pid);
const info = await p.wait();
const [code] = await exited;
if (code !== 3) throw new Error(`'exit' fired with ${code}`);
if (info.pid !== child.pid || (info.code !== null && info.code !== 3)) throw new Error(`wait: ${JSON.stringify(info)}`);

// Signals go through the pidfd; after the exit they are refused with ESRCH.
const sleeper = spawn('sleep', ['1000'], { stdio: 'ignore' });
const q = PidFd.open(sleeper.pid);
if (q.tryWait() !== null) throw new Error('tryWait: running process reported as exited');
const waiting = q.wait();
q.kill('SIGKILL');
const [, signal] = await once(sleeper, 'exit');
await waiting;
if (signal !== 'SIGKILL') throw new Error(`sleeper died of ${signal}`);
try {
  q.kill();
  throw new Error('kill after exit succeeded');
} catch (err) {
  if (err.code !== 'ESRCH') throw err;
}
p.close();
q.close();
if (q.fd !== -1) throw new Error('fd not -1 after close');
console.log('ok');
