<?php
// getallheaders() and its other name apache_request_headers(), which
// php-fpm has (php-cli has neither): the request's headers by name, in the
// order they came, Content-Type and Content-Length first.
echo json_encode([
    'getallheaders' => function_exists('getallheaders') ? getallheaders() : null,
    'apache_request_headers' => function_exists('apache_request_headers') ? apache_request_headers() : null,
]);
