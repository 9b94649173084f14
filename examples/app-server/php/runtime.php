<?php
// The PHP side of the app server: one long-lived php-cli process that runs
// ordinary PHP scripts, one HTTP request at a time, as php-fpm runs them
// (Runtime.php).
//
//   php runtime.php /path/to/Worker.php      (the server starts it; see ../lib/front.mjs)
//
// Configuration comes from the environment the server sets:
// FOLK_APP_ROOT (the document root), FOLK_APP_INDEX (the front controller,
// a path under the root, '' for none) and, with --direct, FOLK_APP_DIRECT
// (JSON settings of ConnectionSource: this worker serves HTTP connections
// itself rather than tasks from the front).
//
// What differs from php-fpm, because the process lives on: globals the script
// creates are removed after each request, but static variables, defined
// functions and classes stay (a script that declares a function at its top
// level can run only once per worker: put declarations in require_once'd
// files). exit() ends the script, not the worker (ScriptExit.php); fatal
// errors still send the response, then end the worker, which the server
// replaces. What PHP itself does when a request ends is
// done between requests (RequestEnd.php, SessionId.php). php-cli drops
// header() calls; CliSapi.php turns that off through FFI
// (sapi_module.header_handler), so FFI must be enabled (the default for the
// CLI).

declare(strict_types=1);

require_once $argv[1] ?? __DIR__ . '/../../../packages/worker-spawn/php/Worker.php';
require_once __DIR__ . '/PhpStream.php';
require_once __DIR__ . '/ScriptPath.php';
require_once __DIR__ . '/FormData.php';
require_once __DIR__ . '/UploadedFiles.php';
require_once __DIR__ . '/SessionId.php';
require_once __DIR__ . '/RequestEnd.php';
require_once __DIR__ . '/RequestGlobals.php';
require_once __DIR__ . '/Autoloaders.php';
require_once __DIR__ . '/Leftovers.php';
require_once __DIR__ . '/CliSapi.php';
require_once __DIR__ . '/ScriptExit.php';
require_once __DIR__ . '/Runtime.php';
require_once __DIR__ . '/TaskSource.php';
require_once __DIR__ . '/request-headers.php';

use Folk\AppServer\Runtime;
use Folk\AppServer\ScriptExit;
use Folk\AppServer\ScriptExited;

// The loop runs in the global scope, so a script's top-level variables
// are globals, as under php-fpm ("global $db" in its functions finds them).
// So it keeps no variable of its own there: a script could overwrite it
// (extract($_GET) with a name a client chose) or find it in $GLOBALS. It
// asks Runtime::current() each time instead.
// Forked by a prototype (--prototype), the prototype's own variable is
// not the application's: scripts see the same globals either way.
unset($__folkScript);
// php-fpm defines no $argv or $argc (register_argc_argv is off in its
// php.ini); a script that takes them for a sign of the command line must
// not find the worker's own.
unset($argv, $argc);
(static function (): void {
    $worker = Folk\Worker::fromEnv();
    $runtime = new Runtime($worker);
    if (getenv('FOLK_APP_DIRECT')) {
        require_once __DIR__ . '/Http.php';
        require_once __DIR__ . '/AccessLog.php';
        require_once __DIR__ . '/Scoreboard.php';
        require_once __DIR__ . '/Connection.php';
        require_once __DIR__ . '/StreamedAnswer.php';
        require_once __DIR__ . '/Connections.php';
        require_once __DIR__ . '/Answers.php';
        require_once __DIR__ . '/fastcgi-finish-request.php';
        require_once __DIR__ . '/ConnectionSource.php';
        $runtime->serveFrom(new Folk\AppServer\ConnectionSource($worker, json_decode(getenv('FOLK_APP_DIRECT'), true)));
    } else {
        $runtime->serveFrom(new Folk\AppServer\TaskSource($worker));
    }
})();
Runtime::current()->leftovers->keepGlobals();
while (Runtime::current()->next()) {
    try {
        include Runtime::current()->script;
    } catch (ScriptExited) {
        // exit() or die(): the script ends here, as under php-fpm, and the worker serves on.
        ScriptExit::endIfFatal();
    } catch (\Throwable $__folk_error) {
        Runtime::current()->scriptThrew($__folk_error);
        unset($__folk_error);
    }
    Runtime::current()->scriptEnded();
}
// (An exit(N) a script called, and this loop caught, would otherwise be the worker's exit status.)
exit(0);
