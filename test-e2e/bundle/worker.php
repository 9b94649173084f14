<?php
// The PHP worker of bundle/app.mjs; the library's path comes as an argument
// (the app passes PHP_WORKER_LIBRARY).
declare(strict_types=1);

require $argv[1];

Folk\Worker::fromEnv()->serve(fn (string $payload): string => 'php: ' . strtoupper($payload));
