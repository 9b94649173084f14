// A socketpair of each type, bytes moved both ways, and what the kernel says
// about the fds (from /proc/self/fdinfo), printed so a newcomer sees it work.
import { closeSync, readFileSync, readSync, readlinkSync, writeSync } from 'node:fs';
import { socketpair, socketpairStreams } from '@folk/socketpair';

const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;

function describeFd(fd) {
  const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))[1], 8);
  const marks = [flags & O_CLOEXEC ? 'cloexec' : 'inheritable', flags & O_NONBLOCK ? 'nonblocking' : 'blocking'];
  return `fd ${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)} (${marks.join(', ')})`;
}

function receive(fd) {
  const buf = Buffer.alloc(256);
  return buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, null));
}

console.log('@folk/socketpair: connected AF_UNIX pairs as plain fds\n');
for (const type of ['stream', 'seqpacket', 'dgram']) {
  const [a, b] = socketpair(type);
  console.log(`${type}:`);
  console.log(`  ${describeFd(a)}`);
  console.log(`  ${describeFd(b)}`);
  writeSync(a, 'first');
  writeSync(a, 'second');
  const got = receive(b);
  console.log(`  a wrote "first" then "second"; b's first read: "${got}"` +
    (type === 'stream' ? '  (a stream has no message boundaries)' : `  (one message; next read: "${receive(b)}")`));
  writeSync(b, 'reply');
  console.log(`  b wrote "reply"; a read: "${receive(a)}"`);
  closeSync(a);
  closeSync(b);
}

const [c, d] = socketpair('stream', { cloexec: false, nonblock: true });
console.log('\nstream with { cloexec: false, nonblock: true }:');
console.log(`  ${describeFd(c)}`);
try {
  receive(d);
} catch (err) {
  console.log(`  reading an empty nonblocking end: ${err.code}`);
}
closeSync(c);
closeSync(d);

const [left, right] = socketpairStreams();
left.end('hello through net.Socket');
let text = '';
for await (const chunk of right) text += chunk;
right.destroy();
console.log(`\nsocketpairStreams(): right received "${text}", then EOF`);
