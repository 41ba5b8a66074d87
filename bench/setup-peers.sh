#!/bin/sh
# Installs the peers the benchmark compares muxgate with (Nchan, Pushpin, nginx in front of php-fpm), wrk, and gcc
# (the bench builds its subscribers, bench/subscriber.c and bench/subscriber-h2.c with libnghttp2 and OpenSSL, on first
# use), openssl (the tls scenario's handshakes), from Debian's packages.
set -eu
PACKAGES="nginx libnginx-mod-nchan pushpin wrk php-fpm gcc libc6-dev libnghttp2-dev libssl-dev openssl"
missing=""
for package in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
if [ -z "$missing" ]; then
  echo "bench:setup: all of $PACKAGES are installed"
  exit 0
fi
echo "bench:setup: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The peers are started by the bench on loopback ports of its own; the packages' services stay stopped.
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
