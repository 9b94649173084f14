// Typechecked only: the published types serve a TypeScript user.
import { closeSync } from 'node:fs';
import {
  FdSocket,
  SCM_MAX_FD,
  peerCredentials,
  peerPidFd,
  recvFds,
  sendFds,
  type FdMessage,
  type FdSocketOptions,
  type SendOptions,
  type PeerCredentials,
  type RecvFdsOptions,
} from '@folk/scm-rights';

declare const fd: number;
const sent: number = sendFds(fd, new Uint8Array([1, 2]), [0, 1]);
// Any ArrayBufferView is data, as at runtime.
const sentView: number = sendFds(fd, new DataView(new ArrayBuffer(4)), []) + sendFds(fd, new Int32Array(1), []);
void sentView;
const options: RecvFdsOptions = { maxBytes: 1024, maxFds: SCM_MAX_FD };
const { data, fds }: { data: Buffer; fds: number[] } = recvFds(fd, options);
const creds: PeerCredentials = peerCredentials(fd);
const pidfd: number = peerPidFd(fd);
void [sent, data, fds, creds, pidfd];

const socketOptions: FdSocketOptions = { maxMessageBytes: 1 << 20, allowHalfOpen: false, highWaterMark: 64 };
const sock = new FdSocket(fd, socketOptions);
const type: 'stream' | 'seqpacket' = sock.type;
void type;
sock.on('message', (m: FdMessage) => m.fds.forEach((x) => closeSync(x)));
sock.on('error', (err: Error) => void err);
const done: Promise<void> = sock.send(Buffer.from('x'), [1], { signal: AbortSignal.timeout(1000) });
const doneView: Promise<void> = sock.send(new Float64Array(1));
void doneView;
void done;
async function drain(s: FdSocket): Promise<number> {
  let n = 0;
  for await (const m of s) n += m.fds.length;
  return n;
}
void drain;
sock.unref().ref().pause().resume();
sock[Symbol.dispose]();

// @ts-expect-error: fds are numbers
sendFds(fd, Buffer.from('x'), ['3']);
// @ts-expect-error: options are typed
recvFds(fd, { maxBytes: '10' });
const sendOptions: SendOptions = {};
void sendOptions;
// @ts-expect-error: FdSocket options are typed
new FdSocket(fd, { allowHalfOpen: 'yes' });
