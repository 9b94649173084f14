<?php
// What PHP made of a request's input (test/php-fpm-peer-input.test.ts): the
// superglobals but $_SERVER, what PHP itself adds to $_SERVER from the
// Authorization header, each upload with its content in place of its
// temporary name, and the warning PHP gave about the input, if any (a
// limit passed).
$last = error_get_last();
// (A closure: a function declared here would be declared again by the worker's next request.)
$content = function (array|string $tmp) use (&$content): array|string|null {
    return is_array($tmp) ? array_map($content, $tmp) : ($tmp === '' ? null : (string) file_get_contents($tmp));
};
$files = [];
foreach ($_FILES as $name => $file) {
    $file['content'] = $content($file['tmp_name']);
    unset($file['tmp_name']);
    $files[$name] = $file;
}
header('Content-Type: application/json');
echo json_encode([
    'auth' => array_intersect_key($_SERVER, array_flip(['PHP_AUTH_USER', 'PHP_AUTH_PW', 'PHP_AUTH_DIGEST', 'AUTH_TYPE', 'REMOTE_USER'])),
    // (What PHP adds comes after what the web server sent: PHP_SELF is the last of that here and under php-fpm.)
    'server after PHP_SELF' => array_slice(array_keys($_SERVER), array_search('PHP_SELF', array_keys($_SERVER), true) + 1),
    'get' => $_GET,
    'post' => $_POST,
    'cookie' => $_COOKIE,
    'request' => $_REQUEST,
    'files' => $files,
    'input' => file_get_contents('php://input'),
    'warning' => $last === null ? null : ['type' => $last['type'], 'message' => $last['message'], 'file' => $last['file'], 'line' => $last['line']],
], JSON_INVALID_UTF8_SUBSTITUTE);
