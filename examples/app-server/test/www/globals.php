<?php
// Which of PHP's own globals a script finds (the php-fpm peer test sends it
// to both servers): php-fpm, with register_argc_argv off as Debian's
// php.ini has it, defines no $argv or $argc.
echo json_encode(['argv' => isset($argv), 'argc' => isset($argc), 'server_argv' => isset($_SERVER['argv'])]);
