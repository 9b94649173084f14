<?php
// Errors go to stderr (php-fpm's log, the app server's stderr): nothing is written under the document root.
return [
    'default' => 'stderr',
    'channels' => [
        'stderr' => ['driver' => 'monolog', 'handler' => Monolog\Handler\StreamHandler::class, 'with' => ['stream' => 'php://stderr']],
    ],
];
