<?php
// Whether PHP's cycle collector still collects: 1,000 cycles made and
// collected (a fatal error leaves it switched off for the process).
for ($i = 0; $i < 1000; $i++) {
    $a = new stdClass();
    $a->self = $a;
}
unset($a);
echo gc_collect_cycles() >= 999 ? 'collects' : 'does not collect';
