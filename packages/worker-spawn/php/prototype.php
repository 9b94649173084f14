<?php
// The prototype process of a WorkerPool with `prototype`, started as
//
//     php prototype.php PRELOAD SCRIPT [ARGS...]
//
// It runs PRELOAD once, then forks workers on request (Folk\PrototypeServer);
// each forked worker runs SCRIPT with $argv = [SCRIPT, ARGS...], and
// Folk\WorkerConnection::fromEnv() there connects to the sockets the fork
// request carried. This file's top level is the global scope of both, so
// PRELOAD's classes, functions, constants and global variables are all there
// in the worker. (Not strict_types: the preload and script choose their own.)

require_once __DIR__ . '/PrototypeServer.php';

$__folkPrototype = Folk\PrototypeServer::fromEnv();
$__folkPreload = (string) ($argv[1] ?? '');
$__folkScript = (string) ($argv[2] ?? '');
$argv = array_slice($argv, 2);
$argc = count($argv);
$_SERVER['argv'] = $argv;
$_SERVER['argc'] = $argc;

require $__folkPreload;

$__folkSockets = $__folkPrototype->serve();
if ($__folkSockets === null) {
    exit(0);
}
// From here on: a forked worker.
unset($__folkPrototype);
Folk\WorkerConnection::adoptForked($__folkSockets[0], $__folkSockets[1]);
unset($__folkSockets, $__folkPreload);
$_SERVER['SCRIPT_FILENAME'] = $__folkScript;
require $__folkScript;
