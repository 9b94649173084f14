<?php
// Included with require_once by streams.php: the common hardening of
// removing the phar:// wrapper, done once per worker here.
stream_wrapper_unregister('phar');
