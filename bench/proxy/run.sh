#!/bin/bash
# Netcat proxies (issue 12): 1 GiB through csock's SOCKS5 server and through
# its HTTP CONNECT server against a direct connection on loopback (and,
# when installed, through microsocks, dante and tinyproxy), and 1,000
# concurrent clients through the SOCKS5 server (byte-exact, the server's RSS
# per tunnelled pair at rest).
#
#   flock /work/wt/bench.lock bench/proxy/run.sh [CSOCK_BIN]
#       (env: SIZE_MB=1024 ROUNDS=5 CLIENTS=1000 BACKEND=epoll|poll|uring
#        LAYOUT=pinned|free;
#        CLIENTS=0 skips the many-client test; PEERS="microsocks dante
#        tinyproxy" by default, those installed; PEERS="" for csock only)
#
# The bulk transfer: `csock connect [--proxy ...] < FILE` sends SIZE_MB of
# random bytes to `csock listen --no-shutdown < /dev/null` (which keeps its
# sending side open: microsocks and dante end a tunnel at either side's
# EOF), both on CPU 1; the proxy
# (`csock listen --proxy-type socks5|http`, or a peer) runs alone on CPU 0. A timed
# round ends when the receiver exits; it counts the bytes it got (its -v
# close line) and the round fails unless that is the whole file. One more
# round per way pipes the receiver's output through sha256sum and compares
# it with the file's. Rounds rotate the three ways; the table has medians,
# with the proxy's CPU time (utime+stime from /proc/PID/stat) per GiB.
#
# LAYOUT=free pins nothing: the scheduler spreads the two ends and the proxy
# over every CPU, for the direct run too. On a 2-CPU host the pinned layout
# gives the proxied run two cores but its two ends one, and the third party
# waking the receiver costs that core thousands of preemptions per GiB
# (see BENCHMARKS.md); the free layout gives each way the whole machine.
#
# The many-client test is bench/proxy/many.py (see there).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CSOCK_BIN=$(readlink -f "${1:-${CSOCK_BIN:-$HERE/../../build/csock}}")
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-1000}
export CSOCK_BACKEND=${BACKEND:-${CSOCK_BACKEND:-epoll}}
LAYOUT=${LAYOUT:-pinned}
case $LAYOUT in
pinned) PIN0=(taskset -c 0) PIN1=(taskset -c 1) ;;
free) PIN0=() PIN1=() ;;
*) echo "LAYOUT: pinned or free, not '$LAYOUT'" >&2; exit 2 ;;
esac
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

# A free loopback port, for peers that cannot print the one they got.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until something listens on 127.0.0.1:$1.
wait_port() {
    local i
    for i in $(seq 1 500); do
        ss -Hltn "sport = :$1" | grep -q . && return
        sleep 0.01
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# Start peer $1 on CPU 0; sets px_pid, px_port and px_type (the client's --proxy-type).
start_peer() {
    px_port=$(free_port)
    case $1 in
    microsocks)
        "${PIN0[@]}" microsocks -i 127.0.0.1 -p "$px_port" > /dev/null 2>&1 &
        px_type=socks5 ;;
    dante)
        local users=""
        [ "$(id -u)" = 0 ] && users=$'user.privileged: root\nuser.unprivileged: nobody\n'
        printf 'logoutput: /dev/null\ninternal: 127.0.0.1 port = %d\nexternal: 127.0.0.1\nsocksmethod: none\nclientmethod: none\n%sclient pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n}\nsocks pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n command: connect\n}\n' \
            "$px_port" "$users" > "$TMP/danted.conf"
        "${PIN0[@]}" /usr/sbin/danted -f "$TMP/danted.conf" -N 1 > /dev/null 2>&1 &
        px_type=socks5 ;;
    tinyproxy)
        # No ConnectPort line: CONNECT to every port (tinyproxy.conf(5)).
        printf 'Port %d\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nMaxClients 50\n' "$px_port" \
            > "$TMP/tinyproxy.conf"
        "${PIN0[@]}" tinyproxy -d -c "$TMP/tinyproxy.conf" > /dev/null 2>&1 &
        px_type=http ;;
    esac
    px_pid=$!
    PIDS+=("$px_pid")
    wait_port "$px_port"
}

# The CPU ticks of $1 and its threads' and children's (dante forks workers).
tree_ticks() {
    local p t=0
    for p in $1 $(pgrep -P "$1" 2>/dev/null); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo $t
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "host: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
     "meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null || echo ?)," \
     "backend: $CSOCK_BACKEND, layout: $LAYOUT" >&2
head -c $((SIZE_MB << 20)) /dev/urandom > "$TMP/data.bin"
WANT_SHA=$(sha256sum < "$TMP/data.bin" | cut -d' ' -f1)
WANT_BYTES=$((SIZE_MB << 20))

# One transfer. $1: direct|socks5|http|a peer, $2: time|sha. Prints
# "seconds proxy_cpu_seconds" (cpu 0 for direct).
transfer() {
    local way=$1 check=$2 px_pid="" px_port="" px_type="" rport t0 t1 c0=0 c1=0
    local rerr=$TMP/recv.err
    : > "$rerr"
    if [ "$check" = sha ]; then
        ("${PIN1[@]}" "$CSOCK_BIN" listen --no-shutdown -v 127.0.0.1 0 < /dev/null 2> "$rerr" \
            | sha256sum | cut -d' ' -f1 > "$TMP/got.sha") &
    else
        "${PIN1[@]}" "$CSOCK_BIN" listen --no-shutdown -v 127.0.0.1 0 < /dev/null > /dev/null 2> "$rerr" &
    fi
    local recv=$!
    rport=$(port_of "$rerr")
    local proxy_args=()
    if [ "$way" = socks5 ] || [ "$way" = http ]; then
        : > "$TMP/px.err"
        "${PIN0[@]}" "$CSOCK_BIN" listen --proxy-type "$way" 127.0.0.1 0 2> "$TMP/px.err" &
        px_pid=$!
        PIDS+=("$px_pid")
        px_port=$(port_of "$TMP/px.err")
        px_type=$way
    elif [ "$way" != direct ]; then
        start_peer "$way"
    fi
    if [ -n "$px_pid" ]; then
        proxy_args=(--proxy "127.0.0.1:$px_port" --proxy-type "$px_type")
        c0=$(tree_ticks "$px_pid")
    fi
    t0=$(date +%s.%N)
    "${PIN1[@]}" "$CSOCK_BIN" connect "${proxy_args[@]}" 127.0.0.1 "$rport" < "$TMP/data.bin" > /dev/null
    wait "$recv"
    t1=$(date +%s.%N)
    if [ -n "$px_pid" ]; then
        c1=$(tree_ticks "$px_pid")
        local kids
        kids=$(pgrep -P "$px_pid" || true)
        kill "$px_pid" $kids 2>/dev/null || true
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
for peer in ${PEERS-microsocks dante tinyproxy}; do
    case $peer in
    dante) [ -x /usr/sbin/danted ] && WAYS+=(dante) || echo "dante: /usr/sbin/danted not installed, skipped" >&2 ;;
    *) command -v "$peer" > /dev/null && WAYS+=("$peer") || echo "$peer: not installed, skipped" >&2 ;;
    esac
done
NWAYS=${#WAYS[@]}
for way in "${WAYS[@]}"; do
    transfer "$way" sha > /dev/null
    echo "$way: $SIZE_MB MiB byte-exact (sha256 $WANT_SHA)" >&2
done
: > "$TMP/results.tsv"
for r in $(seq 1 "$ROUNDS"); do
    for k in $(seq 0 $((NWAYS - 1))); do
        way=${WAYS[$(((k + r) % NWAYS))]}
        read -r secs cpu < <(transfer "$way" time)
        printf '%s\t%s\t%s\n' "$way" "$secs" "$cpu" >> "$TMP/results.tsv"
        echo "round $r $way: ${secs}s, proxy cpu ${cpu}s" >&2
    done
done

direct_s=$(awk -F'\t' '$1 == "direct" {print $2}' "$TMP/results.tsv" | median)
echo
echo "| $SIZE_MB MiB, loopback ($CSOCK_BACKEND, $LAYOUT) | median s | MiB/s | vs direct | proxy CPU s per GiB |"
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
