<?php
// Globals whose destructors use other globals: when a php-fpm request ends,
// PHP destroys the objects among the globals last to first, the other
// globals still there meanwhile (the php-fpm peer test compares).
if (!class_exists('Said', false)) {
    final class Said
    {
        public function __construct(private string $name)
        {
        }

        public function __destruct()
        {
            $others = array_filter(['db', 'logger', 'label'], fn ($n) => isset($GLOBALS[$n]) && $n !== $this->name);
            echo "[{$this->name} sees " . implode(',', $others) . ']';
        }
    }
}
$db = new Said('db');
$label = 'a string';
$logger = new Said('logger');
echo 'body';
