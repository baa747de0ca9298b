#!/bin/bash
# Netcat proxies (issue 12): 1 GiB through csock's SOCKS5 server and through
# its HTTP CONNECT server against a direct connection on loopback, and 1,000
# concurrent clients through the SOCKS5 server (byte-exact, the server's RSS
# per tunnelled pair at rest).
#
#   flock /work/wt/bench.lock bench/proxy/run.sh [CSOCK_BIN]
#       (env: SIZE_MB=1024 ROUNDS=5 CLIENTS=1000 BACKEND=epoll|poll|uring;
#        CLIENTS=0 skips the many-client test)
#
# The bulk transfer: `csock connect [--proxy ...] < FILE` sends SIZE_MB of
# random bytes to `csock listen < /dev/null`, both on CPU 1; the proxy
# (`csock listen --proxy-type socks5|http`) runs alone on CPU 0. A timed
# round ends when the receiver exits; it counts the bytes it got (its -v
# close line) and the round fails unless that is the whole file. One more
# round per way pipes the receiver's output through sha256sum and compares
# it with the file's. Rounds rotate the three ways; the table has medians,
# with the proxy's CPU time (utime+stime from /proc/PID/stat) per GiB.
#
# The many-client test is bench/proxy/many.py (see there).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CSOCK_BIN=$(readlink -f "${1:-${CSOCK_BIN:-$HERE/../../build/csock}}")
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-1000}
export CSOCK_BACKEND=${BACKEND:-${CSOCK_BACKEND:-epoll}}
TMP=$(mktemp -d /tmp/csock-bench-proxy.XXXXXX)
PIDS=()
HZ=$(getconf CLK_TCK)

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# The port of a `listening tcp://HOST:PORT` line in FILE, once it is there.
port_of() {
    local f=$1 i
    for i in $(seq 1 500); do
        if grep -q '^listening ' "$f" 2>/dev/null; then
            grep -m1 '^listening ' "$f" | sed 's/.*://'
            return
        fi
        sleep 0.01
    done
    echo "no listening line in $f" >&2
    exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "host: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
     "meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null || echo ?)," \
     "backend: $CSOCK_BACKEND" >&2
head -c $((SIZE_MB << 20)) /dev/urandom > "$TMP/data.bin"
WANT_SHA=$(sha256sum < "$TMP/data.bin" | cut -d' ' -f1)
WANT_BYTES=$((SIZE_MB << 20))

# One transfer. $1: direct|socks5|http, $2: time|sha. Prints
# "seconds proxy_cpu_seconds" (cpu 0 for direct).
transfer() {
    local way=$1 check=$2 px_pid="" px_port="" rport t0 t1 c0=0 c1=0
    local rerr=$TMP/recv.err
    : > "$rerr"
    if [ "$check" = sha ]; then
        (taskset -c 1 "$CSOCK_BIN" listen -v 127.0.0.1 0 < /dev/null 2> "$rerr" \
            | sha256sum | cut -d' ' -f1 > "$TMP/got.sha") &
    else
        taskset -c 1 "$CSOCK_BIN" listen -v 127.0.0.1 0 < /dev/null > /dev/null 2> "$rerr" &
    fi
    local recv=$!
    rport=$(port_of "$rerr")
    local proxy_args=()
    if [ "$way" != direct ]; then
        : > "$TMP/px.err"
        taskset -c 0 "$CSOCK_BIN" listen --proxy-type "$way" 127.0.0.1 0 2> "$TMP/px.err" &
        px_pid=$!
        PIDS+=("$px_pid")
        px_port=$(port_of "$TMP/px.err")
        proxy_args=(--proxy "127.0.0.1:$px_port" --proxy-type "$way")
        c0=$(cpu_ticks "$px_pid")
    fi
    t0=$(date +%s.%N)
    taskset -c 1 "$CSOCK_BIN" connect "${proxy_args[@]}" 127.0.0.1 "$rport" < "$TMP/data.bin" > /dev/null
    wait "$recv"
    t1=$(date +%s.%N)
    if [ -n "$px_pid" ]; then
        c1=$(cpu_ticks "$px_pid")
        kill "$px_pid"
        wait "$px_pid" || true
    fi
    local got
    got=$(sed -n 's/.*closed .*(\([0-9]*\) bytes in.*/\1/p' "$rerr")
    if [ "$got" != "$WANT_BYTES" ]; then
        echo "$way: the receiver got ${got:-?} bytes of $WANT_BYTES" >&2
        exit 1
    fi
    if [ "$check" = sha ] && [ "$(cat "$TMP/got.sha")" != "$WANT_SHA" ]; then
        echo "$way: sha256 differs" >&2
        exit 1
    fi
    echo "$t0 $t1 $c0 $c1" | awk -v hz="$HZ" '{printf "%.3f %.3f\n", $2 - $1, ($4 - $3) / hz}'
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

WAYS=(direct socks5 http)
for way in "${WAYS[@]}"; do
    transfer "$way" sha > /dev/null
    echo "$way: $SIZE_MB MiB byte-exact (sha256 $WANT_SHA)" >&2
done
: > "$TMP/results.tsv"
for r in $(seq 1 "$ROUNDS"); do
    for k in 0 1 2; do
        way=${WAYS[$(((k + r) % 3))]}
        read -r secs cpu < <(transfer "$way" time)
        printf '%s\t%s\t%s\n' "$way" "$secs" "$cpu" >> "$TMP/results.tsv"
        echo "round $r $way: ${secs}s, proxy cpu ${cpu}s" >&2
    done
done

direct_s=$(awk -F'\t' '$1 == "direct" {print $2}' "$TMP/results.tsv" | median)
echo
echo "| $SIZE_MB MiB, loopback ($CSOCK_BACKEND) | median s | MiB/s | vs direct | proxy CPU s per GiB |"
echo "|---|---|---|---|---|"
for way in "${WAYS[@]}"; do
    s=$(awk -F'\t' -v w="$way" '$1 == w {print $2}' "$TMP/results.tsv" | median)
    c=$(awk -F'\t' -v w="$way" '$1 == w {print $3}' "$TMP/results.tsv" | median)
    awk -v w="$way" -v s="$s" -v c="$c" -v d="$direct_s" -v mb="$SIZE_MB" 'BEGIN {
        printf "| %s | %.2f | %.0f | %.2fx | %s |\n", w, s, mb / s, d / s,
               w == "direct" ? "-" : sprintf("%.2f", c / (mb / 1024)) }'
done

[ "$CLIENTS" -gt 0 ] || exit 0
echo
taskset -c 0 "$CSOCK_BIN" listen --proxy-type socks5 127.0.0.1 0 2> "$TMP/many-px.err" &
PIDS+=("$!")
MANY_PX=$!
MANY_PORT=$(port_of "$TMP/many-px.err")
taskset -c 1 "$CSOCK_BIN" serve echo 127.0.0.1:0 > "$TMP/echo.out" &
PIDS+=("$!")
ECHO_PORT=$(port_of "$TMP/echo.out")
taskset -c 1 python3 "$HERE/many.py" --proxy-pid "$MANY_PX" --proxy-port "$MANY_PORT" \
    --target-port "$ECHO_PORT" --clients "$CLIENTS"
