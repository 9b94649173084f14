#!/usr/bin/env bash
# Debian's arm64 php-cli, unpacked into a folder and run under qemu, so that
# the app server's PHP side (its FFI hooks into php-cli read struct layouts
# and call exported functions) is tested on arm64 as well as x86_64.
#
#   bash scripts/arm64-php.sh [DIR]     (default: .tools/arm64-php; needs root for apt-get update)
#
# The packages are downloaded and unpacked, never installed: the arm64 php
# would replace the machine's own. DIR/bin/php runs it through
# qemu-aarch64-static, whose -L makes absolute paths (php.ini, conf.d,
# extension_dir) resolve inside DIR/root first. The root vitest.config.mts
# runs part of the app server's tests with DIR/bin first on PATH when it is
# there. About 20 MB to download, 100 MB unpacked.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-.tools/arm64-php}")
# The same PHP version as the machine's own php (Debian 12: 8.2; Ubuntu 24.04: 8.3).
v=$(php -r 'echo PHP_MAJOR_VERSION, ".", PHP_MINOR_VERSION;' 2>/dev/null) || { echo "arm64-php: no php on PATH to take the version from (apt-get install php-cli)" >&2; exit 1; }
wanted=()
for part in cli common opcache readline mbstring xml intl; do wanted+=("php$v-$part"); done

if [ -x "$dir/bin/php" ] && [ "$("$dir/bin/php" -r 'echo php_uname("m");' 2>/dev/null)" = aarch64 ]; then
  echo "arm64 php: $dir/bin/php (already there)"
  exit 0
fi
command -v qemu-aarch64-static >/dev/null || { echo "arm64-php: qemu-aarch64-static is missing (apt-get install qemu-user-static)" >&2; exit 1; }
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq

# Every library the packages need, down the dependency tree; dpkg's own tools
# and the like are not needed to run php.
mapfile -t packages < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances --no-pre-depends "${wanted[@]/%/:arm64}" |
  grep -E '^[a-z0-9][^ ]*:arm64$' | grep -vE '^(dpkg|install-info|psmisc|tar|debconf[^:]*):' | sort -u)

rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root" "$dir/bin"
(cd "$dir/debs" && apt-get download -qq -o APT::Sandbox::User=root "${packages[@]}")
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
rm -rf "$dir/debs"

# What the packages' maintainer scripts would have done: php.ini, and each
# extension's ini linked into conf.d under the priority it asks for.
etc="$dir/root/etc/php/$v"
mkdir -p "$etc/cli/conf.d" "$etc/mods-available"
cp "$dir/root/usr/lib/php/$v/php.ini-production.cli" "$etc/cli/php.ini"
for ini in "$dir"/root/usr/share/php"$v"-*/*/*.ini; do
  name=$(basename "$ini" .ini)
  priority=$(sed -n 's/^; *priority=//p' "$ini")
  cp "$ini" "$etc/mods-available/"
  ln -sf "../../mods-available/$name.ini" "$etc/cli/conf.d/${priority:-20}-$name.ini"
done

printf '#!/bin/sh\nexec qemu-aarch64-static -L "%s" "%s" "$@"\n' "$dir/root" "$dir/root/usr/bin/php$v" > "$dir/bin/php"
chmod +x "$dir/bin/php"
machine=$("$dir/bin/php" -r 'echo php_uname("m"), " PHP ", PHP_VERSION, ", ", implode(" ", array_intersect(["FFI", "sockets", "Zend OPcache", "mbstring"], get_loaded_extensions(false) + get_loaded_extensions(true)));')
case "$machine" in
  aarch64*FFI*sockets*) echo "arm64 php: $dir/bin/php ($machine)" ;;
  *) echo "arm64-php: $dir/bin/php says '$machine', not an aarch64 PHP with FFI and sockets" >&2; exit 1 ;;
esac
