<?php
return [
    'name' => 'peer test',
    'env' => 'production',
    'debug' => false,
    'url' => 'http://peer.test',
    'timezone' => 'UTC',
    'locale' => 'en',
    'key' => 'base64:' . base64_encode(str_repeat('k', 32)),
    'cipher' => 'AES-256-CBC',
    'providers' => [Illuminate\Cookie\CookieServiceProvider::class],
];
