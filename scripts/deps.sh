#!/bin/sh
# Installs what csock's build, tests and benchmarks need from Debian's archive,
# only when something is missing (so `make test` is quick on a ready machine).
set -e
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev libssl-dev libcmocka-dev
python3 python3-websockets openssl curl ncat netcat-openbsd socat procps util-linux iproute2
libuv1-dev libevent-dev liburing-dev wrk groff-base zlib1g-dev nodejs node-ws chromium libwebsockets-dev
microsocks dante-server tinyproxy haproxy nginx-light systemd"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "csock: missing packages:$missing (run scripts/deps.sh as root)" >&2
  exit 1
fi
echo "csock: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
