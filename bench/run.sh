#!/usr/bin/env bash
# bench/run.sh: echo throughput, latency and server CPU per message for csock
# and four peers (libuv, libevent, hand-written epoll, hand-written io_uring),
# same machine, same run.
#
#   ROUNDS=5 DURATION=5 sh bench/run.sh        (see bench/README.md)
#
# Each measurement starts a fresh server pinned to SERVER_CPU, runs the load
# generator pinned to LOAD_CPU, then stops the server. The load generator is
# `csock bench` (LOADGEN=csock, the default: every echoed byte checked, the
# server's CPU over the measured window from --server-pid, its own from
# getrusage); LOADGEN=loadgen runs bench/loadgen.c instead, kept for
# comparison (bench/compare.py runs both against the same server). Within a round every scenario runs
# every server back to back, in an order rotated each round, so slow phases of
# a noisy machine hit all servers alike; the table reports medians over rounds.
# With LOADGEN=loadgen, loadgen uses its io_uring engine (-U) when a probe shows it works here: one
# syscall per batch instead of two or more per message leaves it a quarter to a
# third cheaper per message, so it is far less often the bottleneck. Otherwise
# it uses epoll, and the table says so in a note.
# Environment (defaults): ROUNDS (5) DURATION (5 s) WARMUP (1 s)
#   CSOCK_BIN (build/csock) CSOCK_THREADS (1)
#   SERVERS ("csock csock_uring uv_echo ev_echo epoll_echo uring_echo"; csock_uring
#   is csock on its io_uring backend, whose streams do their I/O by completion;
#   epoll_echo and uring_echo are the hand-written floors, bench/peers/)
#   CSOCK_BIN_B (unset): a second build for an A/B in the same run, as servers
#   csock_b and csock_uring_b (e.g. SERVERS="csock_uring csock_uring_b")
#   SCENARIOS ("a b c") SERVER_CPU (0) LOAD_CPU (1) OUT (bench/out)
#   LOADGEN (csock: csock bench; or loadgen: bench/loadgen.c)
#   LOADGEN_ENGINE (loadgen's: auto: io_uring if the probe passes, else epoll; or uring, epoll)
# WebSocket (bench/ws/run.sh sets these): servers ws_csock, ws_csock_uring
#   (bench/peers/ws_echo.c on csock's epoll / io_uring backend), ws_lws
#   (libwebsockets) and ws_node (node's ws) get ws:// (loadgen --ws); scenario w is
#   WS_CONNS (100) conns x WS_SIZE (64) B, WS_DEPTH (1) in flight; WS_TEXT=1
#   sends text messages instead of binary.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `make bench` uses sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CSOCK_BIN=${CSOCK_BIN:-$root/build/csock}
SERVERS=${SERVERS:-"csock csock_uring uv_echo ev_echo epoll_echo uring_echo"}
SCENARIOS=${SCENARIOS:-"a b c"}
CSOCK_THREADS=${CSOCK_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$here/out}
LOADGEN_ENGINE=${LOADGEN_ENGINE:-auto}
LOADGEN=${LOADGEN:-csock}
# csock bench sends binary WebSocket messages; text echo needs loadgen --text.
[ "${WS_TEXT:-0}" != 1 ] || LOADGEN=loadgen
bin=$here/peers/bin

# name: conns size depth, and what it shows
declare -A SCEN=([a]="100 64 1" [b]="1000 128 1" [c]="100 64 16"
    [w]="${WS_CONNS:-100} ${WS_SIZE:-64} ${WS_DEPTH:-1}")
declare -A SCEN_DESC=(
    [a]="100 conns x 64 B ping-pong: per-message overhead (syscalls, loop dispatch)"
    [b]="1000 conns x 128 B ping-pong: many ready sockets per wakeup, per-connection cost"
    [c]="100 conns x 64 B, 16 in flight: pipelining, several messages per read"
    [w]="WebSocket echo, ${WS_CONNS:-100} conns x ${WS_SIZE:-64} B $([ "${WS_TEXT:-0}" = 1 ] && echo text || echo binary) messages, ${WS_DEPTH:-1} in flight (ws_*: loadgen --ws; csock, csock_uring: plain TCP echo of the same payload, the floor)")
# loadgen's flags for the WebSocket servers (those named ws_*).
lg_ws=(--ws)
[ "${WS_TEXT:-0}" != 1 ] || lg_ws+=(--text)

tmp=$(mktemp -d)
srv_pid="" drain_pid="" lg_pid=""
notes=()

cleanup() {
    local p
    for p in $lg_pid $srv_pid $drain_pid; do kill "$p" 2>/dev/null || true; done
    for p in $lg_pid $srv_pid $drain_pid; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C too

log() { printf '%s\n' "$*" >&2; }

# start_server NAME CMD...: start CMD pinned to SERVER_CPU and read its
# "listening tcp://HOST:PORT" line (no fixed ports, no sleeps). Sets srv_pid and
# srv_port; returns 1 if the server exits or stays silent for 10 s.
start_server() {
    local name=$1 fifo=$tmp/$1.fifo line fd
    shift
    rm -f "$fifo" && mkfifo "$fifo"
    taskset -c "$SERVER_CPU" "$@" >"$fifo" 2>>"$tmp/$name.err" &
    srv_pid=$! srv_port=""
    exec {fd}<"$fifo"
    while IFS= read -r -t 10 -u "$fd" line; do
        case $line in listening\ tcp://*) srv_port=${line##*:} && break ;; esac
    done
    # Keep draining stdout so a chatty server can never block on a full pipe.
    cat <&"$fd" >>"$tmp/$name.out" &
    drain_pid=$!
    exec {fd}<&-
    if [ -z "$srv_port" ]; then
        stop_server
        return 1
    fi
}

# stop_server: SIGTERM, then SIGKILL if the server has not exited within 5 s.
# (tail --pid under timeout is a bounded wait that leaves no process behind.)
stop_server() {
    [ -n "$srv_pid" ] || return 0
    kill "$srv_pid" 2>/dev/null || true
    timeout 5 tail --pid="$srv_pid" -s 0.02 -f /dev/null 2>/dev/null ||
        kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    wait "$drain_pid" 2>/dev/null || true
    srv_pid="" drain_pid=""
}

# The command line for each server, as an array named cmd_<server>.
# shellcheck disable=SC2034  # used through the nameref in measure()
cmd_uv_echo=("$bin/uv_echo" 0)
# shellcheck disable=SC2034

cmd_ev_echo=("$bin/ev_echo" 0)
# shellcheck disable=SC2034
cmd_epoll_echo=("$bin/epoll_echo" 0)
# shellcheck disable=SC2034
cmd_uring_echo=("$bin/uring_echo" 0)
cmd_csock=()
cmd_csock_uring=()
cmd_csock_b=()
cmd_csock_uring_b=()
# shellcheck disable=SC2034
cmd_ws_csock=(env CSOCK_BACKEND=epoll "$bin/ws_echo")
# shellcheck disable=SC2034
cmd_ws_csock_uring=(env CSOCK_BACKEND=uring "$bin/ws_echo")
# shellcheck disable=SC2034
cmd_ws_lws=("$bin/lws_echo")
# shellcheck disable=SC2034
cmd_ws_node=(env NODE_PATH=/usr/share/nodejs node "$here/peers/ws_echo_node.js")

# have_peer SERVER: whether the server's program is there (build.sh skips the
# WebSocket peers whose library or runtime is missing); notes why not.
have_peer() {
    local -n c="cmd_$1"
    local prog=${c[0]}
    [ "$prog" != env ] || prog=${c[2]} # env VAR=x PROG ...
    [ "$prog" != node ] || { node -e "require('ws')" 2>/dev/null && return 0; }
    if [ "$prog" != node ] && [ -x "$prog" ]; then return 0; fi
    notes+=("$1 skipped: ${c[*]} cannot run (see bench/peers/build.sh)")
    return 1
}

# csock: prefer one loop thread (a fair fight with single-threaded peers); fall
# back to the default if the --threads flag is not accepted; skip if absent.
probe_csock() {
    if [ ! -x "$CSOCK_BIN" ]; then
        notes+=("csock skipped: $CSOCK_BIN does not exist yet (build it, or set CSOCK_BIN)")
        return
    fi
    local try
    for try in "--threads $CSOCK_THREADS" ""; do
        # shellcheck disable=SC2086  # $try is deliberately split into words
        if start_server csock "$CSOCK_BIN" serve echo tcp://127.0.0.1:0 $try; then
            stop_server
            # shellcheck disable=SC2206  # split "--threads 1" into two words
            # csock is csock on epoll, named: the default (auto) would pick
            # io_uring where allowed, which is the csock_uring row.
            cmd_csock=(env CSOCK_BACKEND=epoll "$CSOCK_BIN" serve echo tcp://127.0.0.1:0 $try)
            [ -n "$try" ] || notes+=("csock ran without --threads (flag not accepted)")
            return
        fi
    done
    notes+=("csock skipped: '$CSOCK_BIN serve echo' did not print a listening line ($(tail -n1 "$tmp/csock.err" 2>/dev/null))")
}

# loadgen's engine flag for every run (set by probe_loadgen) and its name.
lg_engine=() lg_engine_name=epoll

# probe_loadgen: one short loadgen -U run against epoll_echo (always built, the
# simplest server) decides the engine once, before any measurement. It checks
# the whole path: liburing compiled in, io_uring allowed (kernel version,
# io_uring_disabled sysctl, seccomp in containers), every echoed byte verified.
probe_loadgen() {
    [ "$LOADGEN_ENGINE" != epoll ] || return 0
    local rc=0 why
    if start_server probe "$bin/epoll_echo" 0; then
        taskset -c "$LOAD_CPU" "$bin/loadgen" -U -H 127.0.0.1 -p "$srv_port" -c 4 -s 64 -d 2 \
            -t 0.3 -w 0 >/dev/null 2>"$tmp/lg-probe.err" || rc=$?
        stop_server
        why="loadgen -U exited $rc: $(head -n1 "$tmp/lg-probe.err")"
    else
        rc=1 why="epoll_echo did not start for the probe"
    fi
    if [ "$rc" = 0 ]; then
        lg_engine=(-U) lg_engine_name=io_uring
        return
    fi
    if [ "$LOADGEN_ENGINE" = uring ]; then
        log "bench: LOADGEN_ENGINE=uring, but $why"
        exit 1
    fi
    log "bench: loadgen falls back to epoll ($why)"
    notes+=("loadgen ran on epoll, not io_uring ($why); it may be the bottleneck: check lg CPU %")
}

# run_csock_bench NAME CONNS SIZE DEPTH: csock bench against the server just
# started, its JSON turned into loadgen's key=value line (no run-queue
# share: csock bench does not read it; NA). Exit 2 (corrupt echo, as
# loadgen's) when it counted wrong bytes.
run_csock_bench() {
    local name=$1 conns=$2 size=$3 depth=$4 addr="tcp://127.0.0.1:$srv_port" rc=0
    case $name in ws_*) addr="ws://127.0.0.1:$srv_port/" ;; esac
    taskset -c "$LOAD_CPU" "$CSOCK_BIN" bench "$addr" --conns "$conns" --size "$size" --depth "$depth" \
        --duration "$DURATION" --warmup "$WARMUP" --server-pid "$srv_pid" --json "$tmp/bench.json" \
        >"$tmp/bench.out" 2>"$tmp/lg.err" || rc=$?
    python3 "$here/bench_kv.py" "$tmp/bench.json" >"$tmp/lg.out" 2>>"$tmp/lg.err" || rc=$?
    return "$rc"
}

# measure ROUND SCENARIO SERVER: one load run; appends a row to $results.
measure() {
    local round=$1 sc=$2 name=$3 conns size depth rc=0 kv
    read -r conns size depth <<<"${SCEN[$sc]}"
    local -n cmd="cmd_$name"
    local ws=()
    case $name in ws_*) ws=("${lg_ws[@]}") ;; esac
    if ! start_server "$name" "${cmd[@]}"; then
        log "  $name: did not start: $(tail -n1 "$tmp/$name.err" 2>/dev/null)"
        printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tstart-failed\n' "$round" "$sc" "$name" >>"$results"
        return
    fi
    if [ "$LOADGEN" = csock ]; then
        run_csock_bench "$name" "$conns" "$size" "$depth" &
    else
        taskset -c "$LOAD_CPU" "$bin/loadgen" "${lg_engine[@]}" "${ws[@]}" -H 127.0.0.1 -p "$srv_port" \
            -c "$conns" -s "$size" -d "$depth" -t "$DURATION" -w "$WARMUP" -P "$srv_pid" \
            >"$tmp/lg.out" 2>"$tmp/lg.err" &
    fi
    lg_pid=$!
    wait "$lg_pid" || rc=$?
    lg_pid=""
    local alive=yes
    kill -0 "$srv_pid" 2>/dev/null || alive=no
    stop_server
    kv=$(tail -n1 "$tmp/lg.out")
    local status=ok
    [ "$rc" = 0 ] || status="loadgen-exit-$rc"
    [ "$alive" = yes ] || status="server-died"
    if [ "$status" != ok ]; then
        log "  $name: $status: $(head -n3 "$tmp/lg.err" | tr '\n' ' ')"
        notes+=("round $round scenario $sc $name: $status: $(head -n1 "$tmp/lg.err")")
    fi
    # key=value -> one TSV row; a corrupt run (exit 2) has no numbers to keep.
    awk -v r="$round" -v sc="$sc" -v n="$name" -v st="$status" -v ok="$([ "$rc" = 2 ] && echo 0 || echo 1)" '
        { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END {
            f = "msgs/s p50_us p99_us srv_cpu_us_per_msg srv_cpu_pct srv_runq_pct lg_cpu_pct"
            k = split(f, keys, " ")
            printf "%s\t%s\t%s", r, sc, n
            for (i = 1; i <= k; i++) {
                x = (ok && (keys[i] in v) && v[keys[i]] != "na") ? v[keys[i]] : "NA"
                printf "\t%s", x
            }
            printf "\t%s\n", st
        }' <<<"$kv" >>"$results"
    [ -z "$kv" ] || log "  $name: $kv"
}

main() {
    command -v taskset >/dev/null || { log "bench: taskset not found (util-linux)"; exit 1; }
    case $LOADGEN_ENGINE in
    auto | uring | epoll) ;;
    *) log "bench: LOADGEN_ENGINE=$LOADGEN_ENGINE: expected auto, uring or epoll" && exit 1 ;;
    esac
    sh "$here/peers/build.sh"
    mkdir -p "$OUT"
    local stamp servers=() s
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    results=$OUT/results-$stamp.tsv
    printf 'round\tscenario\tserver\tmsgs_s\tp50_us\tp99_us\tcpu_us_msg\tsrv_cpu_pct\tsrv_runq_pct\tlg_cpu_pct\tstatus\n' >"$results"

    for s in $SERVERS; do
        if [ "$s" = csock ] || [ "$s" = csock_uring ]; then
            [ ${#cmd_csock[@]} -gt 0 ] || probe_csock
            [ ${#cmd_csock[@]} -gt 0 ] || continue
            # shellcheck disable=SC2034  # used through the nameref in measure()
            cmd_csock_uring=(env CSOCK_BACKEND=uring "${cmd_csock[@]:2}")
        fi
        if [ "$s" = csock_b ] || [ "$s" = csock_uring_b ]; then
            [ -x "${CSOCK_BIN_B:-}" ] || { notes+=("$s skipped: CSOCK_BIN_B is not set to a csock binary"); continue; }
            # shellcheck disable=SC2034  # used through the nameref in measure()
            cmd_csock_b=(env CSOCK_BACKEND=epoll "$CSOCK_BIN_B" serve echo tcp://127.0.0.1:0 --threads "$CSOCK_THREADS")
            # shellcheck disable=SC2034
            cmd_csock_uring_b=(env CSOCK_BACKEND=uring "${cmd_csock_b[@]:2}")
        fi
        case $s in ws_*) NODE_PATH=/usr/share/nodejs have_peer "$s" || continue ;; esac
        servers+=("$s")
    done
    case $LOADGEN in
    csock)
        [ -x "$CSOCK_BIN" ] || { log "bench: LOADGEN=csock needs $CSOCK_BIN (build it, or LOADGEN=loadgen)"; exit 1; }
        lg_engine_name="csock bench"
        ;;
    loadgen) probe_loadgen ;;
    *) log "bench: LOADGEN=$LOADGEN: expected csock or loadgen" && exit 1 ;;
    esac
    log "bench: servers: ${servers[*]}; scenarios: $SCENARIOS; rounds $ROUNDS x ${DURATION}s (+${WARMUP}s warm-up); load generator: $lg_engine_name"

    local round sc i n=${#servers[@]}
    for ((round = 1; round <= ROUNDS; round++)); do
        for sc in $SCENARIOS; do
            log "round $round/$ROUNDS, scenario $sc (${SCEN[$sc]// / })"
            for ((i = 0; i < n; i++)); do
                measure "$round" "$sc" "${servers[(i + round - 1) % n]}"
            done
        done
    done

    local md=$OUT/results-$stamp.md
    {
        echo "# csock echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null || echo unknown), TCP congestion control: $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)"
        echo "- git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) ($(git -C "$root" rev-parse --abbrev-ref HEAD 2>/dev/null || echo ?))"
        echo "- server on CPU $SERVER_CPU, loadgen on CPU $LOAD_CPU; $ROUNDS round(s) x ${DURATION}s after ${WARMUP}s warm-up; medians over rounds"
        if [ "$LOADGEN" = csock ]; then echo "- load generator: csock bench ($CSOCK_BIN)"
        else echo "- load generator: bench/loadgen.c, engine $lg_engine_name"; fi
        echo "- csock: ${cmd_csock[*]:-(not run)} (csock_uring: the same with CSOCK_BACKEND=uring)"
        [ -z "${CSOCK_BIN_B:-}" ] || echo "- csock_b, csock_uring_b: the same with $CSOCK_BIN_B"
        for s in "${notes[@]}"; do echo "- note: $s"; done
        echo
        for sc in $SCENARIOS; do
            echo "## ($sc) ${SCEN_DESC[$sc]}"
            echo
            awk -f "$here/table.awk" -v scen="$sc" -v order="${servers[*]}" "$results"
            echo
        done
        echo "msgs/s: messages echoed per second (higher is better). p99: latency from write to full echo."
        echo "CPU us/msg: server utime+stime over the window / messages (lower is better)."
        echo "srv CPU % near 100 means the server was the bottleneck; lg CPU % near 100 means loadgen was."
        echo "srv wait %: share of the window the server was runnable but another process had its CPU."
        echo "spread: (max - min) / median across rounds, of msgs/s and of CPU us/msg."
    } >"$md"
    cp "$md" "$OUT/latest.md"
    cat "$md"
    log "bench: wrote $md and $results"
}

main "$@"
