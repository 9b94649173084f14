<?php
// A Laravel application (Debian's php-laravel-framework 8, from PHP's
// include path) in one front controller and config/, for the php-fpm peer
// test: requests reach it as /laravel/index.php/<route>, as they would
// under nginx's fastcgi_split_path_info.
require_once 'Illuminate/autoload.php';

use Illuminate\Http\Request;

$app = new Illuminate\Foundation\Application(__DIR__);
$app->singleton(Illuminate\Contracts\Http\Kernel::class, Illuminate\Foundation\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, Illuminate\Foundation\Exceptions\Handler::class);
$kernel = $app->make(Illuminate\Contracts\Http\Kernel::class);

$router = $app['router'];
$router->get('/hello', fn () => 'hello from laravel');
$router->match(['GET', 'POST'], '/info', fn (Request $request) => new Illuminate\Http\JsonResponse([
    'console' => app()->runningInConsole(),
    'url' => $request->fullUrl(),
    'path' => $request->path(),
    'route' => $request->route()->uri(),
    'ip' => $request->ip(),
    'method' => $request->method(),
    'input' => $request->all(),
    'json' => $request->isJson(),
    'wantsJson' => $request->wantsJson(),
    'header' => $request->header('X-Test'),
    'cookie' => $request->cookie('c'),
    'secure' => $request->secure(),
]));
$router->post('/upload', function (Request $request) {
    $file = $request->file('doc');
    $valid = $file?->isValid();
    $stored = null;
    if ($valid) {
        $dir = sys_get_temp_dir() . '/laravel-upload-' . getmypid();
        $moved = $file->move($dir, 'doc.txt');
        $stored = file_get_contents($moved->getPathname());
        unlink($moved->getPathname());
        rmdir($dir);
    }
    return ['name' => $file?->getClientOriginalName(), 'valid' => $valid, 'stored' => $stored];
});
$router->get('/redirect', fn () => redirect('/hello')->withCookie(cookie('seen', 'yes')));
$router->get('/fail', fn () => throw new RuntimeException('boom'));
$router->get('/memory', fn () => (string) memory_get_usage());

$response = $kernel->handle($request = Request::capture());
$response->send();
$kernel->terminate($request, $response);
