<?php
// A script that leaves things behind, as frameworks do as they boot: a
// shutdown function (which writes and sets a header), an error handler, an
// exception handler, ini settings, a locale, a time zone, a seed, a umask,
// libxml's error mode, errors and entity loader, and mbstring's encodings.
// php-fpm runs the shutdown function
// before the answer ends, and the next request finds none of the rest
// (?then=state: what this request finds).
if (isset($_GET['then'])) {
    echo json_encode([
        'error handler' => set_error_handler(null) !== null,
        'exception handler' => set_exception_handler(null) !== null,
        'precision' => ini_get('precision'),
        'include_path' => get_include_path(),
        'error_reporting' => error_reporting(),
        'LC_NUMERIC' => setlocale(LC_NUMERIC, '0'),
        'time zone' => date_default_timezone_get(),
        // (The sequence mt_srand(42) starts, or a new one.)
        'seeded sequence' => (static function (): bool {
            $next = mt_rand();
            mt_srand(42);
            return $next === mt_rand();
        })(),
        'umask' => sprintf('%04o', umask()),
        'libxml internal errors' => libxml_use_internal_errors(),
        'libxml errors' => count(libxml_get_errors()),
        'libxml last error' => libxml_get_last_error() !== false,
        'libxml entity loader' => function_exists('libxml_get_external_entity_loader') && libxml_get_external_entity_loader() !== null,
        'mb internal encoding' => mb_internal_encoding(),
        'mb regex encoding' => mb_regex_encoding(),
        'mb substitute character' => mb_substitute_character(),
        'mb language' => mb_language(),
        'mb detect order' => mb_detect_order(),
        'mb http output' => mb_http_output(),
    ]);
    return;
}
register_shutdown_function(function (): void {
    header('X-Shutdown: ran');
    echo "from the shutdown function\n";
});
set_error_handler(fn () => true);
set_exception_handler(fn () => null);
ini_set('precision', '3');
set_include_path('/nowhere');
error_reporting(E_ERROR);
setlocale(LC_NUMERIC, 'C.UTF-8');
date_default_timezone_set('Asia/Tokyo');
mt_srand(42);
umask(0077);
libxml_use_internal_errors(true);
simplexml_load_string('<not xml');
libxml_set_external_entity_loader(fn () => null);
mb_internal_encoding('ISO-8859-1');
mb_regex_encoding('EUC-JP');
mb_substitute_character('none');
mb_language('Japanese');
mb_detect_order(['ASCII', 'SJIS']);
mb_http_output('ISO-8859-1');
echo "from the script\n";
