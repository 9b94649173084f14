<?php
echo 'front controller ', $_SERVER['SCRIPT_NAME'], ' for ', $_SERVER['REQUEST_URI'];
