<?php
echo 'dir index ', $_SERVER['SCRIPT_NAME'], ' ', $_SERVER['PATH_INFO'], ' ', getcwd();
