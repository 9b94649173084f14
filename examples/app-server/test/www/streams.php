<?php
// Stream wrappers across requests: a require_once'd file removes phar://
// (once per worker here: it must stay removed), and ?then=break gives
// php:// back to PHP's own wrapper (the next request must still read its
// body from php://input). The answer: what this request finds.
require_once __DIR__ . '/lib/streams-once.php';
$memory = @fopen('php://memory', 'r+');
echo json_encode([
    'phar' => in_array('phar', stream_get_wrappers(), true),
    'input' => file_get_contents('php://input'),
    'memory' => $memory !== false,
]), "\n";
if (isset($_GET['then'])) {
    stream_wrapper_restore('php');
}
