<?php
// Response headers and statuses set the ways PHP scripts set them, one way
// per ?case= (the php-fpm peer test sends each to both servers).
switch ($_GET['case'] ?? '') {
    case 'location':
        header('Location: /elsewhere');
        break;
    case 'location-301':
        header('Location: /moved', true, 301);
        break;
    case 'status-line':
        header('HTTP/1.1 418 I\'m a Teapot');
        break;
    case 'status-header':
        header('Status: 404 Not Found');
        break;
    case 'status-bad': // (php-fpm passes it on; nginx answers 502)
        header('Status: abc');
        break;
    case 'no-content':
        http_response_code(204);
        break;
    case 'not-modified':
        http_response_code(304);
        break;
    case 'cookies':
        setcookie('plain', 'a b', ['path' => '/p', 'httponly' => true]);
        setcookie('raw', 'c', ['samesite' => 'Strict', 'secure' => true, 'expires' => 1893456000]);
        break;
    case 'replace':
        header('X-One: a');
        header('X-One: b');
        header('X-Two: a');
        header('X-Two: b', false);
        header_remove('X-Gone');
        header('X-Gone: x');
        header_remove('X-Gone');
        break;
    case 'type':
        header('Content-Type: text/csv; charset=latin1');
        break;
    case 'accel':
        // nginx's own controls, set by scripts written for it (server-sent events): nginx never passes them on.
        header('X-Accel-Buffering: no');
        header('X-Accel-Charset: utf-8');
        header('X-Accel-Limit-Rate: 1000000');
        header('X-Accel-Expires: 0');
        header('X-Kept: yes');
        break;
}
echo 'case ', $_GET['case'] ?? '', "\n";
