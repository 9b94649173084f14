<?php
// The demo application: an ordinary PHP front controller, the same file
// php-fpm runs in bench/app-server. Routes: GET / (hello), GET /finish
// (hello, ended as Symfony's and Laravel's Response::send() ends every
// response: with fastcgi_finish_request() where it exists), GET /redirect
// (a Location header, then exit(), as scripts everywhere redirect), GET
// /json (the request as JSON), GET /data (a 5 KB JSON document), POST /echo
// (the body back), GET /slow?ms=N, GET /error (an uncaught exception: 500).
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);

switch ($_SERVER['REQUEST_METHOD'] . ' ' . $path) {
    case 'GET /':
        header('Content-Type: text/plain; charset=utf-8');
        echo 'Hello from PHP ', PHP_VERSION, ', worker pid ', getmypid(), "\n";
        break;
    case 'GET /finish':
        header('Content-Type: text/plain; charset=utf-8');
        echo 'Hello from PHP ', PHP_VERSION, ', worker pid ', getmypid(), "\n";
        if (function_exists('fastcgi_finish_request')) {
            fastcgi_finish_request();
        }
        break;
    case 'GET /redirect':
        // What scripts everywhere do: a header, then exit() (under php-fpm it ends the request, not the child).
        header('Location: /');
        exit;
    case 'GET /json':
        header('Content-Type: application/json');
        echo json_encode([
            'php' => PHP_VERSION,
            'pid' => getmypid(),
            'method' => $_SERVER['REQUEST_METHOD'],
            'uri' => $_SERVER['REQUEST_URI'],
            'query' => $_GET,
            'user_agent' => $_SERVER['HTTP_USER_AGENT'] ?? null,
        ], JSON_PRETTY_PRINT), "\n";
        break;
    case 'GET /data':
        // About 5 KB of JSON: 54 records, built on every request.
        $items = [];
        for ($i = 1; $i <= 54; $i++) {
            $items[] = ['id' => $i, 'name' => "item $i", 'price' => $i * 1.25, 'tags' => ['red', 'green', 'blue'], 'stock' => ($i * 7) % 13, 'active' => $i % 3 !== 0];
        }
        header('Content-Type: application/json');
        echo json_encode(['count' => count($items), 'items' => $items]);
        break;
    case 'POST /echo':
        header('Content-Type: ' . ($_SERVER['CONTENT_TYPE'] ?: 'application/octet-stream'));
        echo file_get_contents('php://input');
        break;
    case 'GET /slow':
        usleep(1000 * min(10000, (int) ($_GET['ms'] ?? 100)));
        header('Content-Type: text/plain; charset=utf-8');
        echo "slept\n";
        break;
    case 'GET /error':
        throw new RuntimeException('this route always fails');
    default:
        http_response_code(404);
        header('Content-Type: text/plain; charset=utf-8');
        echo "no route for {$_SERVER['REQUEST_METHOD']} $path\n";
}
