<?php
// Echoes ?bytes=N bytes of 'x'.
header('Content-Type: text/plain');
$n = (int) ($_GET['bytes'] ?? 0);
for ($sent = 0; $sent < $n; $sent += 65536) {
    echo str_repeat('x', min(65536, $n - $sent));
}
