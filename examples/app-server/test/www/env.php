<?php
// $_ENV as a script finds it (php-fpm: an array, empty with the usual
// variables_order "GPCS"), every time the same worker runs this script.
echo isset($_ENV) ? gettype($_ENV) . ' ' . count($_ENV) : 'undefined';
