#!/bin/bash
# HTTP benchmark: csock serve http against nginx, h2o and lighttpd (Debian's
# packages) in the same run, serving the same files.
#
#   bench/http/run.sh [CSOCK_BIN]      (env: ROUNDS=5 DURATION=5
#                                       SERVERS="csock csock_uring h2o lighttpd nginx"
#                                       SCENARIOS="small 100k pipeline16")
# floor and floor_MODE (MODE: more, cork, copy, one, onefile, pipe; MODE_lt:
# level-triggered, as csock's loop is, e.g. floor_onefile_lt) are the
# hand-written floor (bench/peers/http_floor.c, built by bench/peers/build.sh)
# answering in each of its ways: what the kernel alone charges per answer.
# csock is csock on epoll (CSOCK_BACKEND=epoll: the default, auto, would pick
# io_uring where allowed) and csock_uring csock on io_uring (completion I/O);
# csock_uring_coop the latter with CSOCK_URING_DEFER=0 (COOP_TASKRUN, not
# DEFER_TASKRUN: the default before session 35);
# csock_sd and csock_uring_sd the two with --snapshot-dir ${SNAPDIR:-/var/tmp}. With
# CSOCK_BIN_B set, the servers csock_b and csock_uring_b are that other build
# of csock on epoll and io_uring (for an A/B of two builds in the same run:
# SERVERS="csock csock_b ..." or SERVERS="csock_uring csock_uring_b").
#
# Every server runs one process/thread pinned to CPU 0 (taskset -c 0), wrk
# runs on CPU 1 (taskset -c 1). Scenarios: a 12-byte file with 100
# connections; a 100 KB file with 50 connections; the 12-byte file with
# 16-deep pipelining (pipeline.lua) on 100 connections. Each round runs
# every server once per scenario, rotating the order; the table shows
# medians over the rounds. Server CPU time per request comes from
# /proc/PID/stat (utime + stime) around each wrk run.
#
# Output: raw results in $OUT/results.tsv, a Markdown table on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)

# The peers and the load come from Debian's archive: installed here when
# missing (as root), not by scripts/deps.sh, since make test needs none of them.
missing=""
for p in h2o lighttpd nginx-light wrk curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench/http: missing packages:$missing (run as root or: apt-get install$missing)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
CSOCK_BIN=${1:-${CSOCK_BIN:-$HERE/../../build/csock}}
FLOOR_BIN=$HERE/../peers/bin/http_floor # bench/peers/build.sh builds it
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
SERVERS=${SERVERS:-"csock csock_uring h2o lighttpd nginx"}
SCENARIOS=${SCENARIOS:-"small 100k pipeline16"}
TMP=$(mktemp -d /tmp/csock-bench-http.XXXXXX)
OUT=${OUT:-$TMP}
ROOT=$TMP/www
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

mkdir -p "$ROOT" "$TMP"/nginx-body
chmod 755 "$TMP" "$ROOT" # h2o started as root serves as nobody
printf 'hello world!' > "$ROOT/small.txt"                       # 12 bytes
head -c 102400 /dev/urandom > "$ROOT/100k.bin"                   # 100 KB

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$1/small.txt"; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "server died" >&2; return 1; }
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2
    return 1
}

render() { # TEMPLATE PORT -> config path
    local out=$TMP/$(basename "$1" .in)
    sed -e "s|@PORT@|$2|g" -e "s|@ROOT@|$ROOT|g" -e "s|@TMP@|$TMP|g" "$1" > "$out"
    echo "$out"
}

declare -A PORT PID
start_server() { # NAME
    local name=$1 port
    port=$(free_port)
    case $name in
    csock) taskset -c 0 env CSOCK_BACKEND=epoll "$CSOCK_BIN" serve http "$ROOT" "tcp://127.0.0.1:$port" --threads 1 \
               > "$TMP/csock.out" 2> "$TMP/csock.err" & ;;
    csock_b) taskset -c 0 env CSOCK_BACKEND=epoll "$CSOCK_BIN_B" serve http "$ROOT" "tcp://127.0.0.1:$port" --threads 1 \
               > "$TMP/csock_b.out" 2> "$TMP/csock_b.err" & ;;
    csock_uring_b) taskset -c 0 env CSOCK_BACKEND=uring "$CSOCK_BIN_B" serve http "$ROOT" \
                       "tcp://127.0.0.1:$port" --threads 1 > "$TMP/csock_uring_b.out" 2> "$TMP/csock_uring_b.err" & ;;
    csock_uring) taskset -c 0 env CSOCK_BACKEND=uring "$CSOCK_BIN" serve http "$ROOT" \
                     "tcp://127.0.0.1:$port" --threads 1 > "$TMP/csock_uring.out" 2> "$TMP/csock_uring.err" & ;;
    csock_sd|csock_uring_sd) # with --snapshot-dir (SNAPDIR, /var/tmp by default)
        local be=epoll; [ "$name" = csock_uring_sd ] && be=uring
        taskset -c 0 env CSOCK_BACKEND=$be "$CSOCK_BIN" serve http "$ROOT" "tcp://127.0.0.1:$port" --threads 1 \
            --snapshot-dir "${SNAPDIR:-/var/tmp}" > "$TMP/$name.out" 2> "$TMP/$name.err" & ;;
    csock_uring_coop) taskset -c 0 env CSOCK_BACKEND=uring CSOCK_URING_DEFER=0 "$CSOCK_BIN" serve http \
                           "$ROOT" "tcp://127.0.0.1:$port" --threads 1 > "$TMP/$name.out" 2> "$TMP/$name.err" & ;;
    nginx) taskset -c 0 nginx -c "$(render "$HERE/nginx.conf.in" "$port")" -p "$TMP" \
               > "$TMP/nginx.out" 2>&1 & ;;
    h2o) taskset -c 0 h2o -c "$(render "$HERE/h2o.conf.in" "$port")" > "$TMP/h2o.out" 2>&1 & ;;
    floor|floor_*) # the hand-written floor (bench/peers/http_floor.c), MODE after the _
        local mode=${name#floor}; mode=${mode#_}
        taskset -c 0 "$FLOOR_BIN" "$ROOT" "$port" "${mode:-plain}" > "$TMP/$name.out" 2>&1 & ;;
    lighttpd) taskset -c 0 lighttpd -D -f "$(render "$HERE/lighttpd.conf.in" "$port")" \
                  > "$TMP/lighttpd.out" 2>&1 & ;;
    esac
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid"
    PORT[$name]=$port
    PID[$name]=$pid
}

cpu_ticks() { # PID -> utime+stime of the whole process (all threads)
    awk '{print $14 + $15}' "/proc/$1/stat"
}

HZ=$(getconf CLK_TCK)

run_wrk() { # NAME SCENARIO
    local name=$1 sc=$2 port=${PORT[$1]} pid=${PID[$1]} args
    case $sc in
    small) args=(-c 100 "http://127.0.0.1:$port/small.txt") ;;
    100k) args=(-c 50 "http://127.0.0.1:$port/100k.bin") ;;
    pipeline16) args=(-c 100 -s "$HERE/pipeline.lua" "http://127.0.0.1:$port/" -- 16 /small.txt) ;;
    esac
    local t0 t1 out
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t 1 -d "${DURATION}s" "${args[@]}" 2>&1)
    t1=$(cpu_ticks "$pid")
    local rps reqs errs
    rps=$(awk '/^Requests\/sec/ {print $2}' <<< "$out")
    reqs=$(awk '/requests in/ {print $1}' <<< "$out")
    errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<< "$out")
    local us
    us=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.2f", n ? d / hz * 1e6 / n : 0}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$sc" "$rps" "$us" "$errs" >> "$OUT/results.tsv"
    printf '  %-9s %-11s %12s req/s %8s us/req %s\n' "$name" "$sc" "$rps" "$us" "$errs" >&2
}

mkdir -p "$OUT"
: > "$OUT/results.tsv"
for s in $SERVERS; do start_server "$s"; done
echo "servers: $(for s in $SERVERS; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)" >&2

# Warm-up: one short run per server and scenario (not recorded).
for s in $SERVERS; do
    taskset -c 1 wrk -t 1 -c 100 -d 1s "http://127.0.0.1:${PORT[$s]}/small.txt" > /dev/null 2>&1
done

read -r -a order <<< "$SERVERS"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for sc in $SCENARIOS; do
        for s in "${order[@]}"; do run_wrk "$s" "$sc"; done
    done
    order=("${order[@]:1}" "${order[0]}") # rotate who goes first
done

# The host, as BENCHMARKS.md names it: page-table isolation changes what a
# system call costs, and the congestion control what a 100 KB answer does in
# the kernel (bbr paces a burst with timers, cubic does not).
echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)," \
    "meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null || echo unknown)," \
    "TCP congestion control: $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)"
echo
python3 - "$OUT/results.tsv" "$SERVERS" "$SCENARIOS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
servers = sys.argv[2].split()
scen = sys.argv[3].split()
med = {}
for s in servers:
    for sc in scen:
        r = [float(x[2]) for x in rows if x[0] == s and x[1] == sc and x[2]]
        u = [float(x[3]) for x in rows if x[0] == s and x[1] == sc and x[3]]
        med[s, sc] = (statistics.median(r) if r else 0, statistics.median(u) if u else 0, len(r))
# The ratio column compares the first server named (csock unless SERVERS
# says otherwise) with each of the others.
first = servers[0]
print(f"| scenario | server | req/s (median) | {first} / server | server CPU us/req |")
print("|---|---|---:|---:|---:|")
for sc in scen:
    base = med.get((first, sc), (0,))[0]
    for s in servers:
        rps, us, n = med[s, sc]
        ratio = f"{base / rps:.2f}x" if rps and s != first else "-"
        print(f"| {sc} | {s} | {rps:,.0f} | {ratio} | {us:.2f} |")
EOF
errs=$(awk -F'\t' '$5 != "" {print}' "$OUT/results.tsv")
if [ -n "$errs" ]; then echo "runs with errors or non-2xx answers:" >&2; echo "$errs" >&2; fi
echo "raw results: $OUT/results.tsv" >&2
