// An ES module user of @folk/socketpair, installed from its tarball.
import { closeSync, readSync, writeSync } from 'node:fs';
import { socketpair, socketpairStreams } from '@folk/socketpair';

function roundTrip(type) {
  const [a, b] = socketpair(type);
  const buf = Buffer.alloc(64);
  writeSync(a, `hello over ${type}`);
  const n = readSync(b, buf, 0, buf.length, null);
  closeSync(a);
  closeSync(b);
  if (buf.toString('utf8', 0, n) !== `hello over ${type}`) throw new Error(`${type}: got ${buf.toString('utf8', 0, n)}`);
}

for (const type of ['stream', 'seqpacket', 'dgram']) roundTrip(type);

const [left, right] = socketpairStreams();
left.end('streamed');
let got = '';
for await (const chunk of right) got += chunk;
right.destroy();
if (got !== 'streamed') throw new Error(`socketpairStreams: got ${got}`);
console.log('ok');
