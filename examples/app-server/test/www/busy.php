<?php
// Spends ?ms= milliseconds of CPU (test/http.test.ts: max_execution_time is per request).
$until = microtime(true) + (int) ($_GET['ms'] ?? 100) / 1000;
while (microtime(true) < $until) {
}
echo "done\n";
