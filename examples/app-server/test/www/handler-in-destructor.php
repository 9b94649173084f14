<?php
// A warning in a global object's destructor, with the script's error
// handler set: when a php-fpm request ends, the handler still sees it
// (the php-fpm peer test compares).
if (!class_exists('WarnsAtTheEnd', false)) {
    final class WarnsAtTheEnd
    {
        public function __destruct()
        {
            trigger_error('from a destructor', E_USER_WARNING);
        }
    }
}
set_error_handler(static function (int $type, string $message): bool {
    echo "[handled: $message]";
    return true;
});
$last = new WarnsAtTheEnd();
echo 'body';
