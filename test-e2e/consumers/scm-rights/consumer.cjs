// A CommonJS user of @folk/scm-rights, installed alone from its tarball:
// event-style FdSocket, a queued send, and errors that look like Node's.
const { once } = require('node:events');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { FdSocket, recvFds, sendFds } = require('@folk/scm-rights');

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scm-consumer-cjs-'));
  const sock = path.join(dir, 'c.sock');
  const server = net.createServer({ pauseOnConnect: true }).listen(sock);
  await once(server, 'listening');
  const client = net.connect(sock).pause();
  const [[conn]] = await Promise.all([once(server, 'connection'), once(client, 'connect')]);
  // Pass both ends over the connection itself: fds of our own to wrap.
  sendFds(client._handle.fd, Buffer.from('ends'), [client._handle.fd, conn._handle.fd]);
  const { fds } = recvFds(conn._handle.fd);
  client.destroy();
  conn.destroy();
  server.close();

  const a = new FdSocket(fds[0]);
  const b = new FdSocket(fds[1]);
  let err;
  try {
    sendFds(-1, Buffer.from('x'), []);
  } catch (e) {
    err = e;
  }
  if (!(err instanceof RangeError) || !/"socketFd"/.test(err.message)) throw new Error('bad socketFd accepted');

  // Fill the socket without reading, so sends queue; then read them all.
  const devnull = fs.openSync('/dev/null', 'r');
  const sends = [];
  for (let i = 0; i < 64; i++) sends.push(a.send(Buffer.alloc(16 * 1024, i), [devnull]));
  fs.closeSync(devnull); // queued sends hold their own copies
  if (a.pendingSends === 0) throw new Error('expected queued sends');
  let count = 0;
  b.on('message', ({ data, fds: got }) => {
    if (data[0] !== count % 256 || got.length !== 1) throw new Error(`message ${count} wrong`);
    fs.closeSync(got[0]);
    count++;
  });
  await Promise.all(sends);
  a.close();
  await once(b, 'close');
  if (count !== 64) throw new Error(`got ${count} messages`);
  await a.send(Buffer.from('late')).then(
    () => {
      throw new Error('send on a closed socket resolved');
    },
    (e) => {
      if (e.code !== 'ERR_SOCKET_CLOSED') throw e;
    },
  );
  fs.rmSync(dir, { recursive: true, force: true });
  console.log('ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
