<?php
// Request data as PHP itself decodes it for $_COOKIE, $_POST and $_FILES
// (RequestGlobals.php fills the superglobals with it).

declare(strict_types=1);

namespace Folk\AppServer;

final class FormData
{
    /** $_COOKIE as PHP builds it: pairs split at ';', values URL-decoded, the first of a name wins. */
    public static function cookies(string $header): array
    {
        $cookies = [];
        foreach (\explode(';', $header) as $pair) {
            $pair = \ltrim($pair, " \t");
            if ($pair === '') {
                continue;
            }
            [$name, $value] = \explode('=', $pair, 2) + [1 => ''];
            if (\str_contains($name, '[')) {
                $parsed = [];
                \parse_str(\rawurlencode($name) . '=' . \rawurlencode(\urldecode($value)), $parsed);
                $cookies += $parsed;
            } elseif ($name !== '' && !\array_key_exists($name = \strtr($name, ' .', '__'), $cookies)) {
                $cookies[$name] = \urldecode($value);
            }
        }
        return $cookies;
    }

    /**
     * A multipart/form-data body as PHP lays it out in $_POST and $_FILES,
     * each file's content in a temporary file (the caller removes them
     * after the request).
     *
     * @return array{array, array, list<string>} [$_POST, $_FILES, the temporary files]
     */
    public static function multipart(string $body, string $boundary): array
    {
        $uploads = [];
        $fields = [];
        $files = [];
        foreach (\explode("--$boundary", $body) as $part) {
            if (!\str_starts_with($part, "\r\n")) {
                continue; // the preamble, and "--" after the last boundary
            }
            $split = \strpos($part, "\r\n\r\n");
            if ($split === false) {
                continue;
            }
            $headers = \substr($part, 2, $split - 2);
            $content = (string) \substr($part, $split + 4, -2);
            if (!\preg_match('/^content-disposition:\s*form-data\s*;(.*)$/mi', $headers, $d)
                || !\preg_match('/\bname="([^"]*)"/i', $d[1], $n)) {
                continue;
            }
            $name = $n[1];
            if (!\preg_match('/\bfilename="([^"]*)"/i', $d[1], $f)) {
                $fields[] = \rawurlencode($name) . '=' . \rawurlencode($content);
                continue;
            }
            $type = \preg_match('/^content-type:\s*(.+?)\s*$/mi', $headers, $t) ? $t[1] : '';
            $tmp = '';
            $error = \UPLOAD_ERR_NO_FILE;
            if ($f[1] !== '') {
                $tmp = (string) \tempnam(\sys_get_temp_dir(), 'php');
                $error = \file_put_contents($tmp, $content) === false ? \UPLOAD_ERR_CANT_WRITE : \UPLOAD_ERR_OK;
                $uploads[] = $tmp;
            }
            // $_FILES['a']['name']['b'] for a field named a[b], as PHP lays it out.
            $open = \strpos($name, '[');
            $base = $open === false ? $name : \substr($name, 0, $open);
            $rest = $open === false ? '' : \substr($name, $open);
            $info = ['name' => \basename($f[1]), 'full_path' => $f[1], 'type' => $type, 'tmp_name' => $tmp,
                'error' => $error, 'size' => $error === \UPLOAD_ERR_OK ? \strlen($content) : 0];
            foreach ($info as $key => $value) {
                $files[] = \rawurlencode("{$base}[{$key}]{$rest}") . '=' . \rawurlencode((string) $value);
            }
        }
        $post = $byField = [];
        \parse_str(\implode('&', $fields), $post);
        \parse_str(\implode('&', $files), $byField);
        return [$post, self::numbers($byField), $uploads];
    }

    /** $_FILES with error and size as numbers, as PHP gives them, also under name[] ($_FILES['a']['size'][0]). */
    private static function numbers(array $files): array
    {
        foreach ($files as &$file) {
            foreach (['error', 'size'] as $key) {
                if (\is_array($file[$key] ?? null)) {
                    \array_walk_recursive($file[$key], function (&$value): void {
                        $value = (int) $value;
                    });
                } elseif (isset($file[$key])) {
                    $file[$key] = (int) $file[$key];
                }
            }
        }
        unset($file);
        return $files;
    }
}
