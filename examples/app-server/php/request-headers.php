<?php
// getallheaders() and apache_request_headers(), which php-fpm has and
// php-cli has not: scripts read the Authorization header with them, and
// frameworks fall back to them. Without them a call was an Error
// (undefined function): a 500. RequestGlobals::headers() gives what they
// return.

declare(strict_types=1);

if (!function_exists('getallheaders')) {
    /** The request's headers by name (php-fpm's names and order); [] outside a request. */
    function getallheaders(): array
    {
        return Folk\AppServer\Runtime::current()?->requestHeaders() ?? [];
    }
}

if (!function_exists('apache_request_headers')) {
    /** getallheaders() by its other name. */
    function apache_request_headers(): array
    {
        return getallheaders();
    }
}
