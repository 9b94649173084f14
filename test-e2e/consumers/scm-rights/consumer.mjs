// An ES module user of @folk/scm-rights, installed alone from its tarball.
// With no socketpair package at hand, the sockets come from a UNIX-domain
// net server; passing each connection's fd over itself gives us fds of our
// own for FdSocket.
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdSocket, SCM_MAX_FD, peerCredentials, recvFds, sendFds } from '@folk/scm-rights';

const dir = mkdtempSync(join(tmpdir(), 'scm-consumer-'));
const file = join(dir, 'note.txt');
writeFileSync(file, 'passed by fd');

const server = net.createServer({ pauseOnConnect: true }); // Node must not read these
server.listen(join(dir, 's.sock'));
await once(server, 'listening');
const client = net.connect(join(dir, 's.sock')).pause();
const [conn] = await Promise.all([once(server, 'connection').then(([c]) => c), once(client, 'connect')]);
const cfd = client._handle.fd;
const sfd = conn._handle.fd;

// The synchronous calls.
const f = openSync(file, 'r');
if (sendFds(cfd, Buffer.from('one'), [f, f]) !== 3) throw new Error('sendFds: wrong byte count');
const got = recvFds(sfd);
if (got.data.toString() !== 'one' || got.fds.length !== 2) throw new Error(`recvFds: got ${JSON.stringify(got)}`);
if (readFileSync(got.fds[0], 'utf8') !== 'passed by fd') throw new Error('the received fd reads something else');
const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${got.fds[1]}`, 'utf8'))[1], 8);
if ((flags & 0o2000000) === 0) {
  throw new Error('a received fd is not close-on-exec');
}
for (const fd of got.fds) closeSync(fd);
if (peerCredentials(sfd).pid !== process.pid) throw new Error('peerCredentials: wrong pid');
if (SCM_MAX_FD !== 253) throw new Error('SCM_MAX_FD');
try {
  sendFds(cfd, Buffer.from('x'), Array(254).fill(f));
  throw new Error('254 fds were accepted');
} catch (err) {
  if (err.code !== 'ERR_OUT_OF_RANGE') throw err;
}

// Our own fds for both ends, then FdSocket over the stream (framed).
sendFds(cfd, Buffer.from('both'), [cfd, sfd]);
const [mine, theirs] = recvFds(sfd).fds;
client.destroy();
conn.destroy();
server.close();
const a = new FdSocket(mine);
const b = new FdSocket(theirs);
if (a.type !== 'stream') throw new Error(`type ${a.type}`);
await a.send(Buffer.from('first'), [f]);
await a.send(Buffer.alloc(100_000, 7));
a.close();
closeSync(f);
const messages = [];
for await (const m of b) messages.push(m);
if (messages.length !== 2 || messages[0].data.toString() !== 'first' || messages[1].data.length !== 100_000) {
  throw new Error('FdSocket: wrong messages');
}
const buf = Buffer.alloc(64);
const n = readSync(messages[0].fds[0], buf, 0, 64, 0);
if (buf.toString('utf8', 0, n) !== 'passed by fd') throw new Error('FdSocket: the fd reads something else');
closeSync(messages[0].fds[0]);
if (!b.closed) throw new Error('the socket did not close after the end');
rmSync(dir, { recursive: true, force: true });
console.log('ok');
