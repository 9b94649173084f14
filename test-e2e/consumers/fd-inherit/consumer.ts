// Typechecked only: the published types serve a TypeScript user.
import type { Socket } from 'node:net';
import {
  isInheritable,
  listenFds,
  setInheritable,
  spawn,
  stdioFromFdMap,
  type ExitInfo,
  type ListenFd,
  type PidFd,
  type SpawnOptions,
  type Subprocess,
} from '@folk/fd-inherit';

const options: SpawnOptions = {
  fds: { 3: 10, 4: 11 },
  stdin: 'ignore',
  stdout: 'pipe',
  stderr: 2,
  env: { PATH: '/usr/bin:/bin' },
  cwd: new URL('file:///tmp/'),
  argv0: 'worker',
  setsid: true,
  pdeathsig: 'SIGTERM',
  closeOtherFds: true,
  umask: 0o022,
  rlimits: { nofile: 1024, core: { soft: 0, hard: Infinity } },
  noNewPrivs: true,
  restoreSignals: true,
  listenFds: [12, { fd: 13, name: 'http' }],
};
const child: Subprocess = spawn('/usr/bin/env', [], options);
const pid: number = child.pid;
const handle: PidFd = child.pidfd;
const out: Socket | null = child.stdout;
const exited: Promise<ExitInfo> = child.wait();
child.kill('SIGTERM');
const same: Subprocess = child.unref().ref();
void same;
void [pid, handle, out, exited];

const inheritable: boolean = isInheritable(0);
setInheritable(3, !inheritable);
const passed: ListenFd[] = listenFds({ unsetEnvironment: false });
const stdio: Array<number | 'inherit' | 'ignore' | 'pipe'> = stdioFromFdMap({ 3: 4 }, { stdout: 'pipe' });
void [passed, stdio];

// @ts-expect-error: stdio takes these words or an fd number
spawn('/bin/true', [], { stdin: 'null' });
// @ts-expect-error: args are strings
spawn('/bin/true', [1]);
