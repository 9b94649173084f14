<?php
header('Location: /elsewhere');
echo 'going';
exit;
