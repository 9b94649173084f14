<?php
// An exception nothing catches, with the handler set_exception_handler()
// gave (or none), one per ?case= (the php-fpm peer test sends each to both
// servers). PHP calls the handler, then the shutdown functions.
register_shutdown_function(static function (): void {
    echo ' | shutdown, status ', http_response_code();
});
echo 'start';
switch ($_GET['case'] ?? '') {
    case 'handled':
        set_exception_handler(static function (Throwable $e): void {
            http_response_code(503);
            header('Content-Type: application/json');
            echo ' | ', json_encode(['error' => $e->getMessage()]);
        });
        break;
    case 'handler-throws':
        set_exception_handler(static function (Throwable $e): void {
            echo ' | handler saw ', $e->getMessage();
            throw new LogicException('from the handler');
        });
        break;
    case 'handler-exits':
        set_exception_handler(static function (Throwable $e): void {
            http_response_code(502);
            exit(' | handler left');
        });
        break;
    case 'replaced':
        set_exception_handler(static fn () => print(' | first handler'));
        set_exception_handler(static fn () => print(' | second handler'));
        break;
    case 'removed':
        set_exception_handler(static fn () => print(' | removed handler'));
        restore_exception_handler();
        break;
}
throw new RuntimeException('db down');
