#!/bin/sh
# Builds the benchmark peers (uv_echo, ev_echo, epoll_echo, uring_echo, http_floor; the WebSocket
# echo servers ws_echo on csock and lws_echo on libwebsockets) and the load
# generator into bench/peers/bin/. Installs libuv1-dev / libevent-dev / liburing-dev with
# apt-get first if pkg-config cannot find them (needs root).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
CC=${CC:-cc}
# -O2 for every program, so no peer gets a compiler advantage over another.
CFLAGS=${CFLAGS:-"-O2 -std=c11 -Wall -Wextra"}

missing=""
pkg-config --exists libuv 2>/dev/null || missing="$missing libuv1-dev"
pkg-config --exists libevent 2>/dev/null || missing="$missing libevent-dev"
pkg-config --exists liburing 2>/dev/null || missing="$missing liburing-dev"
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench: missing packages:$missing (run as root or: apt-get install$missing)" >&2
        exit 1
    fi
    echo "bench: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends pkg-config $missing >/dev/null
fi

mkdir -p "$here/bin"
# shellcheck disable=SC2086  # CFLAGS and pkg-config output are word lists
$CC $CFLAGS -o "$here/bin/epoll_echo" "$here/epoll_echo.c"
# The io_uring floor (liburing: multishot recv into provided buffers, send).
# shellcheck disable=SC2086,SC2046  # CFLAGS and pkg-config output are word lists
$CC $CFLAGS $(pkg-config --cflags liburing) -o "$here/bin/uring_echo" "$here/uring_echo.c" \
    $(pkg-config --libs liburing)
# The static-file HTTP floor for bench/http/run.sh (epoll, sendfile).
$CC $CFLAGS -o "$here/bin/http_floor" "$here/http_floor.c"
$CC $CFLAGS $(pkg-config --cflags libuv) -o "$here/bin/uv_echo" "$here/uv_echo.c" \
    $(pkg-config --libs libuv)
$CC $CFLAGS $(pkg-config --cflags libevent) -o "$here/bin/ev_echo" "$here/ev_echo.c" \
    $(pkg-config --libs libevent)
# loadgen's io_uring engine (-U) needs liburing; csock itself requires it too.
$CC $CFLAGS -pthread -DHAVE_LIBURING $(pkg-config --cflags liburing) -o "$here/bin/loadgen" \
    "$bench/loadgen.c" $(pkg-config --libs liburing)
# WebSocket peers. ws_echo is csock's, on the public API, linked against the
# library in CSOCK_BUILD (default build/: `make build` first); lws_echo needs
# libwebsockets-dev. Either is skipped with a note when its library is missing
# (run.sh then skips that server, saying so).
root=$(dirname "$bench")
CSOCK_BUILD=${CSOCK_BUILD:-$root/build}
if [ -e "$CSOCK_BUILD/libcsock.so" ]; then
    # shellcheck disable=SC2086  # CFLAGS is a word list
    $CC $CFLAGS -I"$root/include" -o "$here/bin/ws_echo" "$here/ws_echo.c" \
        -L"$CSOCK_BUILD" -lcsock -Wl,-rpath,"$CSOCK_BUILD"
else
    echo "bench: ws_echo skipped: no $CSOCK_BUILD/libcsock.so (make build)" >&2
fi
if pkg-config --exists libwebsockets 2>/dev/null; then
    # shellcheck disable=SC2086,SC2046  # CFLAGS and pkg-config output are word lists
    $CC $CFLAGS $(pkg-config --cflags libwebsockets) -o "$here/bin/lws_echo" "$here/lws_echo.c" \
        $(pkg-config --libs libwebsockets)
else
    echo "bench: lws_echo skipped: libwebsockets-dev is not installed" >&2
fi
