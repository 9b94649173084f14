#!/bin/sh
# Starts php-cli with the options (-c FILE, -d NAME=VALUE) the app server
# gives every worker, for --prototype. A pool with a prototype starts it as
# `COMMAND prototype.php PRELOAD SCRIPT ARGS...`, which leaves no room for
# php's own options, which must come before the first file; the server
# passes them in the environment instead (FOLK_APP_PHP, the binary;
# FOLK_APP_PHP_ARGC and FOLK_APP_PHP_ARG_1..N, the options) and this puts
# them back in front, then execs php (same pid, same fds, same pdeathsig).
n=${FOLK_APP_PHP_ARGC:-0}
while [ "$n" -gt 0 ]; do
  # Only the variable's name is spelled out here; its value is not re-parsed.
  eval "set -- \"\${FOLK_APP_PHP_ARG_$n}\" \"\$@\""
  unset "FOLK_APP_PHP_ARG_$n"
  n=$((n - 1))
done
php=${FOLK_APP_PHP:-php}
unset FOLK_APP_PHP FOLK_APP_PHP_ARGC
exec "$php" "$@"
