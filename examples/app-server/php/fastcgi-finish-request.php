<?php
// fastcgi_finish_request(), which php-fpm has and php-cli has not, for the
// workers that serve connections themselves (direct mode; runtime.php
// loads this file then): Symfony's and Laravel's Response::send() call it
// when it exists, to answer before their terminate listeners run.
// Runtime::finishEarly() does the work.

declare(strict_types=1);

if (!function_exists('fastcgi_finish_request')) {
    /** Send the answer now, whole; the script runs on, and what it writes from now on is dropped. False if there is nothing to answer. */
    function fastcgi_finish_request(): bool
    {
        return Folk\AppServer\Runtime::current()?->finishEarly() ?? false;
    }
}
