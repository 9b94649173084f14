#!/usr/bin/env node
// An application server for ordinary PHP scripts: Node's HTTP server in
// front, long-lived php-cli workers behind it (fd 3/4, @folk/worker-spawn).
//
//   node examples/app-server/index.mjs                      # serve public/ on 127.0.0.1:8080
//   node examples/app-server/index.mjs --self-test          # start, send a few requests, print, exit 0
//   node examples/app-server/index.mjs --help               # every setting
import { Front, workerSpec } from './lib/front.mjs';
import { parseArgs, parseListen, usage } from './lib/config.mjs';
import { selfTest } from './lib/self-test.mjs';

async function main() {
  const { config, selfTest: testing, help } = parseArgs(process.argv.slice(2));
  if (help) {
    console.log(usage());
    return;
  }
  const spec = workerSpec(config);
  for (const note of spec.notes) console.error(note);
  const front = new Front(config, spec, { workers: config.workers });
  await front.ready();
  const server = await front.listen(testing ? { host: '127.0.0.1', port: 0 } : parseListen(config.listen));
  const { port } = server.address();
  const pids = () => front.pool.stats().list.map((w) => w.pid);
  console.log(`app server on http://127.0.0.1:${port}/ with ${front.pool.size} ${spec.label} workers (pids ${pids().join(', ')})`);
  if (testing) {
    try {
      await selfTest({
        port,
        label: spec.label,
        maxBody: config['max-body'],
        reload: async () => {
          const before = pids();
          await front.reload();
          return { before, after: pids() };
        },
      });
    } finally {
      await front.stop({ grace: 1000 });
    }
    console.log('self-test ok');
    return;
  }
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      console.log(`\n${signal}: stopping`);
      front.stop().then(() => process.exit(0));
    });
  }
}

main().catch((err) => {
  console.error(err.message ?? err);
  process.exit(1);
});
