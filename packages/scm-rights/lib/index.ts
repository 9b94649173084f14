// @folk/scm-rights: pass open fds between processes over AF_UNIX sockets.
//
// The public face; each part lives in its own module:
//   sync.ts       sendFds, recvFds, peerCredentials, peerPidFd (one syscall each)
//   fd-socket.ts  FdSocket, the event-loop socket that carries fds with messages
//   options.ts    what FdSocket accepts, checked
//   receiver.ts   its receiving side: read batches into messages, then end or error
//   frame.ts      the stream frame header, and the decoder of stream reads
//   outbox.ts     its sending side: the fast path, the queue, backpressure
//   checks.ts, errors.ts, native.ts (the binding's shape), internal/ (shared)
export { SCM_MAX_FD, closeFds, peerCredentials, peerPidFd, recvFds, sendFds } from './sync.js';
export type { FdMessage, PeerCredentials, RecvFdsOptions } from './sync.js';
export { FdSocket } from './fd-socket.js';
export type { FdSocketOptions, SendOptions } from './options.js';
export { FRAME_HEADER_BYTES } from './frame.js';
