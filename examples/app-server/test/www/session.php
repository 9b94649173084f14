<?php
// PHP's own sessions: a counter kept in $_SESSION, found again through the
// session cookie (test/php-fpm-peer.test.ts).
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo json_encode(['n' => $_SESSION['n'], 'name' => session_name(), 'status' => session_status()]);
