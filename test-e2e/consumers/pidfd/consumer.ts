// Typechecked only: the published types serve a TypeScript user.
import { PidFd, type ExitInfo, type PidFdAdoptOptions, type PidFdOpenOptions, type Rusage } from '@folk/pidfd';

async function use(pid: number): Promise<void> {
  const options: PidFdOpenOptions = { reap: false };
  using p = PidFd.open(pid, options);
  const fd: number = p.fd;
  p.kill('SIGTERM');
  p.kill(9);
  const info: ExitInfo = await p.wait({ signal: AbortSignal.timeout(1000) });
  const code: number | null = info.code;
  const signal: NodeJS.Signals | null = info.signal;
  const usage: Rusage | undefined = info.rusage;
  const cpu: number | undefined = usage?.userCpuMs;
  const now: ExitInfo | null = p.tryWait();
  const adopt: PidFdAdoptOptions = { pid, reap: true };
  PidFd.adopt(p.getFd(fd), adopt).unref().ref().close();
  void [code, signal, cpu, now];

  // @ts-expect-error: not a signal name
  p.kill('SIGNOPE');
  // @ts-expect-error: the constructor is private; use open() or adopt()
  new PidFd(1, 2, false);
  // @ts-expect-error: options are typed
  PidFd.open(pid, { reap: 'yes' });
}
void use;
