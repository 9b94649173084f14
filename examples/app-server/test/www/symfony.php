<?php
// A page written with Symfony's HttpFoundation (Debian's
// php-symfony-http-foundation, from the include path), the layer Symfony
// and Laravel read requests and send responses with: what it makes of the
// request, and the responses it sends, must be the same under both servers.
//   ?case=request   what Request::createFromGlobals() read (JSON)
//   ?case=upload    the uploaded file "upload": isValid(), then move()
//   ?case=cookie    a redirect with a cookie
//   ?case=stream    a StreamedResponse that flushes twice
//   ?case=finish    a plain Response (send() ends with fastcgi_finish_request() where there is one)
require_once 'Symfony/Component/HttpFoundation/autoload.php';

use Symfony\Component\HttpFoundation\Cookie;
use Symfony\Component\HttpFoundation\JsonResponse;
use Symfony\Component\HttpFoundation\RedirectResponse;
use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpFoundation\StreamedResponse;

$request = Request::createFromGlobals();
switch ($request->query->get('case')) {
    case 'request':
        $response = new JsonResponse([
            'method' => $request->getMethod(),
            'uri' => $request->getUri(),
            'pathInfo' => $request->getPathInfo(),
            'baseUrl' => $request->getBaseUrl(),
            'basePath' => $request->getBasePath(),
            'scheme' => $request->getScheme(),
            'host' => $request->getHost(),
            'secure' => $request->isSecure(),
            'clientIp' => $request->getClientIp(),
            'query' => $request->query->all(),
            'post' => $request->request->all(),
            'cookies' => $request->cookies->all(),
            // (Sorted: php-fpm lists the HTTP_* variables, which Symfony reads
            // its headers from, last header first.)
            'headers' => (static function (array $headers): array {
                ksort($headers);
                return $headers;
            })(array_diff_key($request->headers->all(), ['host' => 1])),
            'content' => $request->getContent(),
            'json' => $request->getContentType() === 'json' ? $request->toArray() : null,
            'ajax' => $request->isXmlHttpRequest(),
            'languages' => $request->getLanguages(),
        ]);
        break;
    case 'upload':
        $file = $request->files->get('upload');
        $valid = $file !== null && $file->isValid();
        $moved = null;
        if ($valid) {
            $dir = sys_get_temp_dir() . '/symfony-upload-' . getmypid();
            $target = $file->move($dir, 'kept.txt');
            $moved = file_get_contents($target->getPathname());
            unlink($target->getPathname());
            rmdir($dir);
        }
        $response = new JsonResponse(['name' => $file?->getClientOriginalName(), 'valid' => $valid, 'error' => $file?->getError(), 'moved' => $moved]);
        break;
    case 'cookie':
        $response = new RedirectResponse('/symfony.php?case=request');
        $response->headers->setCookie(Cookie::create('session', 'abc', 0, '/', null, false, true, false, Cookie::SAMESITE_LAX));
        break;
    case 'stream':
        $response = new StreamedResponse(function (): void {
            echo "first\n";
            flush();
            echo "second\n";
            flush();
        }, 200, ['Content-Type' => 'text/plain']);
        break;
    case 'finish':
        $response = new Response("sent, then the kernel terminates\n", 201, ['Content-Type' => 'text/plain']);
        break;
    default:
        $response = new JsonResponse(['error' => 'no such case'], 500);
}
$response->prepare($request);
$response->send();
