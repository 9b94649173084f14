<?php
// Which script serves a request path, as nginx's usual PHP setup picks it
// (Runtime.php runs it).

declare(strict_types=1);

namespace Folk\AppServer;

final class ScriptPath
{
    /** $root: the document root (a real path); $index: the front controller, a path under it ("/index.php"), or null for none. */
    public function __construct(private string $root, private ?string $index)
    {
    }

    /**
     * The script for a request path, as nginx's usual PHP setup picks it
     * (try_files $uri $uri/ /index.php, fastcgi_split_path_info): a path
     * naming a .php file is that file, with the rest of the path as
     * PATH_INFO, or a 404 if there is no such file; a directory's
     * index.php; else the front controller. Null: 404.
     *
     * @return array{string, string}|null [SCRIPT_NAME, PATH_INFO]
     */
    public function resolve(string $uri): ?array
    {
        $q = \strpos($uri, '?');
        $path = self::normalize(\rawurldecode($q === false ? $uri : \substr($uri, 0, $q)));
        if ($path === null) {
            return null;
        }
        // nginx's location ~ [^/]\.php(/|$) with fastcgi_split_path_info
        // ^(.+?\.php)(/.*)$ (and "if (!-f ...) return 404"): that script, with
        // the rest as PATH_INFO, or a 404, never the front controller.
        if (\preg_match('~[^/]\.php(?:/|$)~', $path) === 1) {
            [$script, $info] = \preg_match('~^(.+?\.php)(/.*)$~', $path, $m) === 1 ? [$m[1], $m[2]] : [$path, ''];
            return \is_file($this->root . $script) ? [$script, $info] : null;
        }
        if (\str_ends_with($path, '/') && \is_file($this->root . $path . 'index.php')) {
            return [$path . 'index.php', ''];
        }
        if ($this->index !== null && \is_file($this->root . $this->index)) {
            return [$this->index, ''];
        }
        return null;
    }

    /** A decoded path without . and .. segments or repeated slashes; null if it is not one (NUL, or above the root). */
    private static function normalize(string $path): ?string
    {
        if ($path === '' || $path[0] !== '/' || \str_contains($path, "\0")) {
            return null;
        }
        if (!\str_contains($path, '/.') && !\str_contains($path, '//')) {
            return $path;
        }
        $out = [];
        foreach (\explode('/', $path) as $segment) {
            if ($segment === '' || $segment === '.') {
                continue;
            }
            if ($segment === '..') {
                if ($out === []) {
                    return null;
                }
                \array_pop($out);
                continue;
            }
            $out[] = $segment;
        }
        $trail = \str_ends_with($path, '/') || \str_ends_with($path, '/.') || \str_ends_with($path, '/..');
        return '/' . \implode('/', $out) . ($trail && $out !== [] ? '/' : '');
    }
}
