// A front's process, started by the supervisor with @folk/fd-inherit's
// spawn: the listening sockets arrive as systemd would hand them (LISTEN_FDS
// at 3, 4, ...), the control socket at the fd FOLK_APP_FRONT names. Control
// messages are JSON lines: reload, stop, reopen in; ready, reloaded out.
import * as net from 'node:net';
import { listenFds } from '@folk/fd-inherit';
import { onMessages, sendMessage } from './control.mjs';
import { Front } from './front.mjs';

const setup = JSON.parse(process.env.FOLK_APP_FRONT ?? 'null');
if (setup === null) {
  console.error('front-main.mjs is started by the app server (index.mjs), not by hand');
  process.exit(78);
}
delete process.env.FOLK_APP_FRONT;
const sockets = listenFds();
const log = (line) => process.stderr.write(`${line}\n`);

const control = new net.Socket({ fd: setup.controlFd, readable: true, writable: true });
const send = (message) => sendMessage(control, message);
const front = new Front(setup.config, setup.spec, { workers: setup.workers, log });
const workerPids = () => front.pool.stats().list.filter((w) => w.state !== 'stopping').map((w) => w.pid);

let stopping = null;
function stop(how) {
  stopping ??= front.stop(how).then(
    () => process.exit(0),
    (err) => {
      log(`front ${process.pid}: stopping failed: ${err.stack ?? err}`);
      process.exit(1);
    },
  );
  return stopping;
}

onMessages(control, (message) => {
  if (message.type === 'reload') {
    front.reload().then(
      () => send({ type: 'reloaded', id: message.id, workers: workerPids() }),
      (err) => {
        log(`front ${process.pid}: reload failed: ${err.message}`);
        send({ type: 'reloaded', id: message.id, workers: workerPids(), error: err.message });
      },
    );
  } else if (message.type === 'stop') stop({ grace: message.grace, delay: message.delay });
  else if (message.type === 'reopen') front.reopenLog();
});
// The supervisor is gone (or closed us): finish what is running and leave.
control.on('end', () => stop({}));
control.on('error', () => stop({}));
// Signals sent to this process itself (the supervisor uses the control
// socket); it runs in a session of its own, so a terminal's Ctrl-C never
// reaches it.
process.on('SIGTERM', () => stop({}));
process.on('SIGHUP', () => front.reload().catch(() => {}));

try {
  await front.ready();
  const servers = [];
  for (const { fd } of sockets) servers.push(await front.listen({ fd }));
  const address = servers[0]?.address() ?? null;
  send({ type: 'ready', pid: process.pid, workers: workerPids(), label: front.label, address });
} catch (err) {
  // The prototype's failure is the application's (PHP said why above): its message, not our stack.
  log(`front ${process.pid}: could not start: ${err.code === 'ERR_WORKER_PROTOTYPE' ? err.message : (err.stack ?? err)}`);
  await front.pool.stop();
  process.exit(1);
}
