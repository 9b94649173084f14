<?php
// What a script sees in a worker forked from a prototype (prototype.test.ts),
// or in an exec'd one: the preload's names, the process, the ini settings.
usleep((int) ($_GET['ms'] ?? 0) * 1000);
header('Content-Type: application/json');
echo json_encode([
    'pid' => getmypid(),
    'ppid' => posix_getppid(),
    'preloadPid' => $preloadPid ?? null,
    'version' => defined('PRELOAD_VERSION') ? PRELOAD_VERSION : null,
    'class' => class_exists('Preloaded', false) ? Preloaded::hello() : null,
    'table' => count($preloadTable ?? []),
    'globals' => array_keys($GLOBALS),
    'leftover' => isset($leftover),
    'opcache' => function_exists('opcache_get_status') && (opcache_get_status(false)['opcache_enabled'] ?? false),
    'cached' => isset($_GET['cached']) && opcache_is_script_cached((string) realpath(__DIR__ . '/' . $_GET['cached'])),
    'ini' => ['memory_limit' => ini_get('memory_limit'), 'display_errors' => ini_get('display_errors'), 'precision' => ini_get('precision')],
]);
$leftover = true;
