<?php
// Scripts that end the output buffer PHP starts them with (php-fpm:
// output_buffering, level 1), one per ?case= (the php-fpm peer test sends
// each to both servers): what they write after it goes to the client.
switch ($_GET['case'] ?? '') {
    case 'loop-clean': // as download scripts do before sending a file
        echo 'dropped';
        while (ob_get_level() > 0) {
            ob_end_clean();
        }
        echo "bytes:\0\x01\xff level=", ob_get_level();
        break;
    case 'get-clean':
        echo 'aaa';
        $got = ob_get_clean();
        echo "got=[$got] level=", ob_get_level();
        break;
    case 'end-flush':
        echo 'kept ';
        $ended = ob_end_flush();
        echo 'ended=', var_export($ended, true), ' level=', ob_get_level();
        break;
    case 'new-buffer':
        ob_end_clean();
        ob_start(static fn (string $buffer): string => strtoupper($buffer));
        echo 'shouted, left open';
        break;
    case 'flush':
        ob_end_clean();
        echo 'one ';
        flush();
        echo 'two';
        break;
    default:
        echo 'level=', ob_get_level();
}
