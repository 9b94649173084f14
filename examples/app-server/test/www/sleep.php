<?php
usleep(1000 * (int) ($_GET['ms'] ?? 100));
echo "slept\n";
