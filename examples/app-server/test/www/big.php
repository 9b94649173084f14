<?php
// Echoes ?bytes=N bytes of 'x' (with ?flush=1, after "start" and a flush).
header('Content-Type: text/plain');
if (isset($_GET['flush'])) {
    echo "start\n";
    flush();
}
$n = (int) ($_GET['bytes'] ?? 0);
for ($sent = 0; $sent < $n; $sent += 65536) {
    echo str_repeat('x', min(65536, $n - $sent));
}
