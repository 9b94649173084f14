<?php
// The worker dies in the middle of the request (as a segfault or the OOM killer would end it).
echo 'about to die';
posix_kill(getmypid(), SIGKILL);
