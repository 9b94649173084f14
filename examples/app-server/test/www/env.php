<?php
// $_ENV as a script finds it (php-fpm: an array, empty with the usual
// variables_order "GPCS"; here with APP_RUNNING_IN_CONSOLE for Laravel),
// every time the same worker runs this script.
echo isset($_ENV) ? json_encode($_ENV) : 'undefined';
