// Typechecked only: the published types serve a TypeScript user.
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { socketpair, socketpairStreams, type SocketPairOptions, type SocketType } from '@folk/socketpair';

const type: SocketType = 'seqpacket';
const options: SocketPairOptions = { cloexec: true, nonblock: false };
const [a, b]: [number, number] = socketpair(type, options);
closeSync(a);
closeSync(b);
const sockets: [Socket, Socket] = socketpairStreams({ allowHalfOpen: true });
for (const s of sockets) s.destroy();

// @ts-expect-error: not a socket type
socketpair('raw');
// @ts-expect-error: options are typed
socketpair('stream', { cloexec: 'yes' });
