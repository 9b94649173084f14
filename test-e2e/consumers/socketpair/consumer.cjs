// A CommonJS user of @folk/socketpair, installed from its tarball.
const { closeSync, readSync, writeSync } = require('node:fs');
const { socketpair } = require('@folk/socketpair');

for (const type of ['stream', 'seqpacket', 'dgram']) {
  const [a, b] = socketpair(type, { cloexec: true });
  const buf = Buffer.alloc(64);
  writeSync(b, `back over ${type}`);
  const n = readSync(a, buf, 0, buf.length, null);
  closeSync(a);
  closeSync(b);
  if (buf.toString('utf8', 0, n) !== `back over ${type}`) throw new Error(`${type}: got ${buf.toString('utf8', 0, n)}`);
}
let threw = false;
try {
  socketpair('raw');
} catch (err) {
  threw = err instanceof TypeError && err.code === 'ERR_INVALID_ARG_VALUE';
}
if (!threw) throw new Error('an unknown type was not refused');
console.log('ok');
