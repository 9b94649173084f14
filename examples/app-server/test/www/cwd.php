<?php
// The directory a script starts in (php-fpm: the script's own), and, with
// ?chdir=1, a script that leaves it for another (the next request of this
// script must start in its own again).
echo getcwd();
if (isset($_GET['chdir'])) {
    chdir('/tmp');
}
