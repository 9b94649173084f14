<?php
// An ordinary script, as php-fpm runs it: superglobals in, header(),
// http_response_code() and echo out.
$input = file_get_contents('php://input');
header('Content-Type: application/json');
header('X-Header-Seen: ' . ($_SERVER['HTTP_X_TEST'] ?? ''));
header('Set-Cookie: a=1', false);
header('Set-Cookie: b=2', false);
http_response_code(isset($_GET['status']) ? (int) $_GET['status'] : 201);
echo json_encode([
    'server' => $_SERVER,
    'get' => $_GET,
    'post' => $_POST,
    'cookie' => $_COOKIE,
    'files' => $_FILES,
    'request' => $_REQUEST,
    'input' => base64_encode($input),
    'x_test_hex' => bin2hex($_SERVER['HTTP_X_TEST'] ?? ''),
    'cwd' => getcwd(),
    'leftover' => isset($leftover),
], JSON_INVALID_UTF8_SUBSTITUTE);
$leftover = true;
