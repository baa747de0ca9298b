#!/usr/bin/env bash
# bench/tls/run.sh: TLS handshakes/s and bulk MB/s for csock, `openssl s_server`
# and socat, same machine, same run, with server CPU time per operation.
#
#   ROUNDS=5 DURATION=5 bench/tls/run.sh [CSOCK_BIN]
#
# Environment (defaults): ROUNDS (5) DURATION (5 s measured) WARMUP (1 s)
#   CERT (rsa: RSA-2048; or ec: ECDSA P-256) GROUP (P-256) CONNS_HS (16)
#   SCENARIOS ("hs sink1 sink8 echo1 echo8") SERVER_CPU (0) LOAD_CPU (1) OUT (temp dir)
#
# A throw-away self-signed certificate is made in a temp dir at run time.
# Every measurement starts a fresh server pinned to SERVER_CPU, runs
# bench/tls/tlsload (built here with cc -O2 against the system libssl) pinned
# to LOAD_CPU, and stops the server; within a round each scenario runs every
# server back to back in an order rotated each round. Medians over rounds.
# Client side for every server: TLS 1.3 only, TLS_AES_128_GCM_SHA256, key
# exchange GROUP (P-256 because socat 1.7.4 pins its ECDHE curve to P-256 and
# refuses X25519-only clients), no session cache (every handshake is full).
#
# Servers per scenario (s_server handles one connection at a time and has no
# byte echo, socat -u cannot echo):
#   hs     csock serve echo | openssl s_server -rev | socat ... PIPE (fork)
#   sink*  csock serve discard | openssl s_server -quiet >/dev/null (sink1 only) | socat -u ... GOPEN:/dev/null
#   echo*  csock serve echo | socat ... PIPE
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CSOCK_BIN=${1:-${CSOCK_BIN:-$root/build/csock}}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CERT=${CERT:-rsa}
GROUP=${GROUP:-P-256}
CONNS_HS=${CONNS_HS:-16}
SCENARIOS=${SCENARIOS:-"hs sink1 sink8 echo1 echo8"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
tmp=$(mktemp -d /tmp/csock-bench-tls.XXXXXX)
OUT=${OUT:-$tmp}
srv_pid="" lg_pid=""

cleanup() {
    local p
    for p in $lg_pid $srv_pid; do kill "$p" 2>/dev/null || true; done
    for p in $lg_pid $srv_pid; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

for t in taskset openssl socat ss cc python3; do
    command -v "$t" >/dev/null || { log "bench/tls: $t not found"; exit 1; }
done
[ -x "$CSOCK_BIN" ] || { log "bench/tls: $CSOCK_BIN missing (cmake -S . -B build && cmake --build build)"; exit 1; }

lg=$tmp/tlsload
cc -O2 -Wall -o "$lg" "$here/tlsload.c" -lssl -lcrypto

crt=$tmp/cert.pem key=$tmp/key.pem
case $CERT in
rsa) newkey=(-newkey rsa:2048) ;;
ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
*) log "CERT: rsa or ec"; exit 1 ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -keyout "$key" -out "$crt" -days 1 \
    -subj /CN=127.0.0.1 2>/dev/null
mkfifo "$tmp/stdin.fifo" # s_server's stdin: open, never any data, never EOF

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# server_cmd NAME SCENARIO PORT: the server's command line into the array `cmd`.
server_cmd() {
    local name=$1 sc=$2 port=$3
    case $name/$sc in
    csock/sink*) cmd=("$CSOCK_BIN" serve discard "tls://127.0.0.1:$port" --cert "$crt" --key "$key" --threads 1) ;;
    csock/*) cmd=("$CSOCK_BIN" serve echo "tls://127.0.0.1:$port" --cert "$crt" --key "$key" --threads 1) ;;
    s_server/hs) cmd=(openssl s_server -accept "127.0.0.1:$port" -cert "$crt" -key "$key" -rev -quiet) ;;
    s_server/sink*) cmd=(openssl s_server -accept "127.0.0.1:$port" -cert "$crt" -key "$key" -quiet) ;;
    socat/sink*) cmd=(socat -u "OPENSSL-LISTEN:$port,bind=127.0.0.1,cert=$crt,key=$key,verify=0,fork,reuseaddr" GOPEN:/dev/null) ;;
    socat/*) cmd=(socat "OPENSSL-LISTEN:$port,bind=127.0.0.1,cert=$crt,key=$key,verify=0,fork,reuseaddr" PIPE) ;;
    esac
}

servers_for() {
    case $1 in
    hs | sink1) echo "csock s_server socat" ;;
    *) echo "csock socat" ;;
    esac
}

# load_args SCENARIO: tlsload's mode and connection count.
load_args() {
    case $1 in
    hs) echo "-m hs -c $CONNS_HS" ;;
    sink1) echo "-m sink -c 1" ;;
    sink8) echo "-m sink -c 8" ;;
    echo1) echo "-m echo -c 1" ;;
    echo8) echo "-m echo -c 8" ;;
    esac
}

stop_server() {
    [ -n "$srv_pid" ] || return 0
    kill "$srv_pid" 2>/dev/null || true
    timeout 5 tail --pid="$srv_pid" -s 0.02 -f /dev/null 2>/dev/null ||
        kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
}

# measure ROUND SCENARIO SERVER: one tlsload run; appends a row to $results.
measure() {
    local round=$1 sc=$2 name=$3 port rc=0 kv cmd=()
    port=$(free_port)
    server_cmd "$name" "$sc" "$port"
    taskset -c "$SERVER_CPU" "${cmd[@]}" >/dev/null 2>>"$tmp/$name.err" 0<>"$tmp/stdin.fifo" &
    srv_pid=$!
    local i
    for i in $(seq 1 200); do # wait until it listens (no probe connection)
        [ -z "$(ss -Hltn "sport = :$port")" ] || break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.02
    done
    # shellcheck disable=SC2046  # load_args is split into words on purpose
    taskset -c "$LOAD_CPU" "$lg" -p "$port" -g "$GROUP" $(load_args "$sc") -t "$DURATION" \
        -w "$WARMUP" -P "$srv_pid" >"$tmp/lg.out" 2>"$tmp/lg.err" &
    lg_pid=$!
    wait "$lg_pid" || rc=$?
    lg_pid=""
    stop_server
    kv=$(tail -n1 "$tmp/lg.out")
    [ "$rc" = 0 ] || kv="status=failed:$(head -n1 "$tmp/lg.err" | tr ' \t' '__')"
    printf '%s\t%s\t%s\t%s\n' "$round" "$sc" "$name" "$kv" >>"$results"
    log "  $(printf '%-6s %-8s' "$sc" "$name") $kv"
}

main() {
    mkdir -p "$OUT"
    results=$OUT/tls-results.tsv
    : >"$results"
    log "bench/tls: $ROUNDS round(s) x ${DURATION}s (+${WARMUP}s warm-up), cert $CERT, group $GROUP; raw: $results"
    local round sc s n i
    local -a sv
    for ((round = 1; round <= ROUNDS; round++)); do
        for sc in $SCENARIOS; do
            read -r -a sv <<<"$(servers_for "$sc")"
            n=${#sv[@]}
            log "round $round/$ROUNDS, $sc"
            for ((i = 0; i < n; i++)); do
                measure "$round" "$sc" "${sv[(i + round - 1) % n]}"
            done
        done
    done
    echo "# csock TLS benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
    echo "- $(openssl version); socat $(socat -V | sed -n 's/^socat version \([^ ]*\).*/\1/p')"
    echo "- git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- cert $CERT, group $GROUP, server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; $ROUNDS round(s) x ${DURATION}s; medians"
    echo
    python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    rnd, sc, name, kv = line.rstrip("\n").split("\t", 3)
    d = dict(x.split("=", 1) for x in kv.split() if "=" in x)
    rows.setdefault((sc, name), []).append(d)
scen = []
for sc, _ in rows:
    if sc not in scen: scen.append(sc)
def med(ds, k):
    v = [float(d[k]) for d in ds if k in d]
    return statistics.median(v) if v else None
def spread(ds, k):
    v = [float(d[k]) for d in ds if k in d]
    return (max(v) - min(v)) / statistics.median(v) * 100 if len(v) > 1 and statistics.median(v) else 0
desc = {"hs": "handshakes/s (full TLS 1.3 handshake + 2-byte echo + close)",
        "sink1": "sink, 1 connection", "sink8": "sink, 8 connections",
        "echo1": "echo, 1 connection", "echo8": "echo, 8 connections"}
for sc in scen:
    hs = sc == "hs"
    rate, cpu = ("hs_s", "srv_cpu_ms_per_hs") if hs else ("mb_s", "srv_cpu_ms_per_mb")
    unit, cunit = ("handshakes/s", "srv CPU ms/hs") if hs else ("MB/s", "srv CPU ms/MB")
    names = [n for (s, n) in rows if s == sc]
    base = rows.get((sc, "csock"))
    print(f"### {sc}: {desc.get(sc, sc)}\n")
    print(f"| server | runs | {unit} | spread | {cunit} | spread | srv CPU % | load CPU % | errors | csock / server ({unit.split('/')[0]}) | csock / server (CPU) |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for n in names:
        ds = rows[(sc, n)]
        ok = [d for d in ds if rate in d]
        r, c = med(ok, rate), med(ok, cpu)
        br, bc = (med(base, rate), med(base, cpu)) if base else (None, None)
        fmt = lambda x, f: "NA" if x is None else f % x
        ratio_r = "-" if n == "csock" else fmt(br / r if br and r else None, "%.2fx")
        ratio_c = "-" if n == "csock" else fmt(bc / c if bc and c else None, "%.2fx")
        err = sum(int(d.get("errors", 0)) for d in ok)
        fails = len(ds) - len(ok)
        print(f"| {n} | {len(ok)}{'' if not fails else f' ({fails} failed)'} | {fmt(r, '%.1f')} | {spread(ok, rate):.0f}% | "
              f"{fmt(c, '%.3f')} | {spread(ok, cpu):.0f}% | {fmt(med(ok, 'srv_cpu_pct'), '%.0f')} | "
              f"{fmt(med(ok, 'lg_cpu_pct'), '%.0f')} | {err} | {ratio_r} | {ratio_c} |")
    print()
EOF
}

main "$@"
