#!/usr/bin/env node
// An application server for ordinary PHP scripts: HTTP fronts on every core
// sharing one listening socket, each with long-lived php-cli workers behind
// it (fd 3/4, @folk/worker-spawn). Signals and systemd as php-fpm users
// expect; see README.md.
//
//   node examples/app-server/index.mjs                      # serve public/ on 127.0.0.1:8080
//   node examples/app-server/index.mjs --self-test          # start, send a few requests, print, exit 0
//   node examples/app-server/index.mjs --help               # every setting
import { statSync } from 'node:fs';
import { frontCount, parseArgs, settle, unused, usage } from './lib/config.mjs';
import { workerSpec } from './lib/front.mjs';
import { selfTest } from './lib/self-test.mjs';
import { Supervisor } from './lib/supervisor.mjs';

function where(address) {
  if (address === null) return 'the socket systemd passed';
  if (typeof address === 'string') return `http+unix://${address}`;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}/`;
}

async function main() {
  const { config: given, selfTest: testing, help } = parseArgs(process.argv.slice(2));
  if (help) {
    console.log(usage());
    return;
  }
  if (!statSync(given.root, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`root ${given.root} is not a directory`);
  if (given.preload && !statSync(given.preload, { throwIfNoEntry: false })?.isFile()) throw new Error(`preload ${given.preload} is not a file`);
  const spec = workerSpec(given);
  const config = settle(given, spec); // 'auto' settings decided
  for (const note of [...spec.notes, ...unused(config)]) console.error(note);
  const supervisor = new Supervisor(config, spec);
  process.on('uncaughtException', (err) => {
    console.error(err);
    supervisor.kill();
    process.exit(1);
  });
  // Signals are handled from the start; what they ask for waits until the
  // server is up (a reload asked for while starting happens after).
  const starting = supervisor.start(testing ? { host: '127.0.0.1', port: 0 } : undefined);
  if (!testing) handleSignals(supervisor, config, starting);
  try {
    await starting;
  } catch (err) {
    supervisor.kill();
    throw err;
  }
  const fronts = supervisor.fronts;
  console.log(
    `app server on ${where(supervisor.address)} with ${fronts.length} front${fronts.length === 1 ? '' : 's'} and ` +
      `${supervisor.workerPids.length} ${spec.label} workers${spec.direct ? ' serving the connections' : ''} (pid ${process.pid}; fronts ${fronts.map((f) => f.pid).join(', ')}; ` +
      `workers ${supervisor.workerPids.join(', ')}${supervisor.activated ? '; socket from systemd' : ''})`,
  );
  if (frontCount(config) < config.fronts) console.error(`${config.fronts} fronts asked for but only ${config.workers} workers: running ${frontCount(config)} fronts`);
  if (testing) {
    try {
      await selfTest({
        port: supervisor.address.port,
        label: spec.label,
        maxBody: config['max-body'],
        reload: async () => {
          const before = supervisor.workerPids;
          await supervisor.reload();
          return { before, after: supervisor.workerPids };
        },
      });
    } finally {
      await supervisor.stop({ grace: 1000, delay: 0 });
    }
    console.log('self-test ok');
  }
}

/** php-fpm's and nginx's signals, plus what systemd and Kubernetes send. */
function handleSignals(supervisor, config, starting) {
  const started = starting.catch(() => {});
  let stopping = false;
  const stop = (signal) => {
    if (stopping) {
      if (signal === 'SIGINT') {
        console.log('\nSIGINT again: exiting now');
        supervisor.kill();
        process.exit(130);
      }
      return;
    }
    stopping = true;
    console.log(`${signal}: stopping (requests in flight have ${config.grace} ms)`);
    started.then(() => supervisor.stop()).then(() => process.exit(0));
  };
  for (const signal of ['SIGTERM', 'SIGQUIT', 'SIGINT']) process.on(signal, () => stop(signal));
  for (const signal of ['SIGHUP', 'SIGUSR2']) {
    process.on(signal, () => {
      console.log(`${signal}: reloading the workers`);
      started
        .then(() => supervisor.reload())
        .then(() => console.log(`reloaded: workers ${supervisor.workerPids.join(', ')}`));
    });
  }
  process.on('SIGUSR1', () => started.then(() => supervisor.reopenLogs()));
}

main().catch((err) => {
  console.error(err.message ?? err);
  process.exit(1);
});
