<?php
// A script that answers HEAD as frameworks do (Symfony's Response): the
// length its GET body would have, and no body.
header('Content-Length: 12345');
if ($_SERVER['REQUEST_METHOD'] !== 'HEAD') {
    echo str_repeat('x', 12345);
}
