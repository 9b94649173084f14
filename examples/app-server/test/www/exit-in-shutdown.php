<?php
// Shutdown functions, the second of which calls exit(): under php-fpm the
// first two run once, after the script, and the third never does (exit()
// ends the shutdown functions after it). Each appends to the file ?log names.
register_shutdown_function(function (): void {
    file_put_contents($_GET['log'], "first\n", FILE_APPEND);
});
register_shutdown_function(function (): void {
    file_put_contents($_GET['log'], "second (exits)\n", FILE_APPEND);
    exit();
});
register_shutdown_function(function (): void {
    file_put_contents($_GET['log'], "third\n", FILE_APPEND);
});
echo "answered\n";
