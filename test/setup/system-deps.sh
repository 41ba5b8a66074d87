#!/bin/sh
# The system programs the test suite runs for real: checks each, installs the missing Debian packages when root with
# apt-get, otherwise stops with the command to run. `npm test` runs it first (pretest); .ci/run runs it before npm ci.
# POSIX sh, so that it runs before node_modules exists and under any Node. MUXGATE_SYSTEM_ROOT prefixes the fixed
# paths (/usr/bin/chromium, /usr/sbin/php-fpm*), so that its test can stage a machine.
set -u

root=${MUXGATE_SYSTEM_ROOT:-}
missing=''
packages=''

need() { # what is missing, its Debian package
  missing="$missing${missing:+, }$1"
  case " $packages " in *" $2 "*) ;; *) packages="$packages${packages:+ }$2" ;; esac
}

has_php_fpm() { # as test/helpers/php-fpm.ts finds it: php-fpm on PATH, else /usr/sbin/php-fpmX.Y
  command -v php-fpm >/dev/null 2>&1 && return 0
  for candidate in "$root"/usr/sbin/php-fpm*; do
    case ${candidate##*/} in php-fpm*[!0-9.]*) continue ;; esac
    [ -f "$candidate" ] && [ -x "$candidate" ] && return 0
  done
  return 1
}

check() {
  missing=''
  packages=''
  # PHP backends behind a real php-fpm; php runs examples/push-from-cron/announce.php.
  has_php_fpm || need php-fpm php-fpm
  command -v php >/dev/null 2>&1 || need php php-cli
  # A real Prometheus scrapes /metrics; promtool checks the exposition format.
  command -v prometheus >/dev/null 2>&1 || need prometheus prometheus
  command -v promtool >/dev/null 2>&1 || need promtool prometheus
  # Several nodes route through a real Redis.
  command -v redis-server >/dev/null 2>&1 || need redis-server redis-server
  command -v redis-cli >/dev/null 2>&1 || need redis-cli redis-tools
  # Playwright drives this exact binary (test/browser.test.ts).
  [ -x "$root/usr/bin/chromium" ] || need /usr/bin/chromium chromium
  # examples/push-from-cron/push.sh posts with curl; ss counts FastCGI connections.
  command -v curl >/dev/null 2>&1 || need curl curl
  command -v ss >/dev/null 2>&1 || need ss iproute2
  # The TLS tests make their certificates with openssl.
  command -v openssl >/dev/null 2>&1 || need openssl openssl
  # HTTP/2 conformance and load: nghttp and h2load against the TLS and h2c listeners.
  command -v nghttp >/dev/null 2>&1 || need nghttp nghttp2-client
  command -v h2load >/dev/null 2>&1 || need h2load nghttp2-client
}

check
[ -z "$missing" ] && exit 0

install="apt-get install -y --no-install-recommends $packages"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "muxgate tests: installing $packages with apt-get: the tests run $missing for real, and they are missing"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get -qq update && apt-get -qq install -y --no-install-recommends $packages >/dev/null; then
    wanted=$missing
    check
    [ -z "$missing" ] && exit 0
    echo "muxgate tests: apt-get installed $packages, but $missing still cannot be found (looked on PATH, and for /usr/bin/chromium and /usr/sbin/php-fpm*); wanted: $wanted" >&2
  else
    echo "muxgate tests: apt-get could not install $packages (its errors are above); run it yourself: $install" >&2
  fi
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "muxgate tests: $missing missing, and this is no Debian system (no apt-get): install the equivalents of the Debian packages $packages, then run npm test again" >&2
elif command -v sudo >/dev/null 2>&1; then
  printf 'muxgate tests: %s missing; install them, then run npm test again:\n  sudo apt-get update && sudo %s\n' "$missing" "$install" >&2
else
  printf "muxgate tests: %s missing; install them as root, then run npm test again:\n  su -c 'apt-get update && %s'\n" "$missing" "$install" >&2
fi
exit 1
