<?php
// exit() and die() the ways scripts call them, one per ?how= (the php-fpm
// peer test sends each to both servers).
// (Declared once per worker: a worker runs this script many times.)
if (!function_exists('leave')) {
    final class Noisy
    {
        public function __destruct()
        {
            echo ' destructed';
        }
    }
    function leave(string $how): void
    {
        try {
            match ($how) {
                'die' => die('died'),
                'status' => exit(3),
                default => exit('left'),
            };
        } finally {
            echo ' finally'; // (exit() skips finally blocks)
        }
    }
}
echo 'start ';
switch ($_GET['how'] ?? '') {
    case 'nested':
        $noisy = new Noisy();
        (static function (): void {
            $inner = new Noisy();
            leave('exit');
        })();
        break;
    case 'caught':
        try {
            exit('not caught');
        } catch (\Throwable $e) {
            echo 'caught';
        }
        break;
    case 'buffered':
        ob_start();
        echo 'in a buffer';
        ob_start();
        echo ', two deep';
        die();
    case 'status':
        http_response_code(201);
        header('X-Left: yes');
        leave('status');
        break;
    case 'shutdown':
        register_shutdown_function(static function (): void {
            echo ' shutdown ran';
        });
        leave('die');
        break;
    case 'fiber':
        (new Fiber(static function (): void {
            echo 'in a fiber ';
            exit('left the fiber');
        }))->start();
        break;
}
echo ' not reached';
