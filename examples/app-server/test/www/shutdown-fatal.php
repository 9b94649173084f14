<?php
// A shutdown function that ends in a fatal error PHP does not unwind
// (E_USER_ERROR): under php-fpm the request ends there with a 500, and the
// next request starts clean (test/http.test.ts).
register_shutdown_function(static function (): void {
    trigger_error('the shutdown function gave up', E_USER_ERROR);
});
echo 'answered';
