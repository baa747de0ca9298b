#!/usr/bin/env bash
# bench/tls/run.sh: TLS handshakes/s and echo MB/s for csock and socat,
# loaded by csock bench, same machine, same run, with server CPU time per operation.
#
#   ROUNDS=5 DURATION=5 bench/tls/run.sh [CSOCK_BIN]
#
# Environment (defaults): ROUNDS (5) DURATION (5 s measured) WARMUP (1 s)
#   CERT (rsa: RSA-2048; or ec: ECDSA P-256) GROUP (P-256) CONNS_HS (16)
#   SCENARIOS ("hs echo1 echo8") SERVER_CPU (0) LOAD_CPU (1) OUT (temp dir)
#
# A throw-away self-signed certificate is made in a temp dir at run time.
# Every measurement starts a fresh server pinned to SERVER_CPU, runs
# `csock bench` (tls://, every echoed byte checked) pinned to LOAD_CPU, and
# stops the server; within a round each scenario runs every server back to
# back in an order rotated each round. Medians over rounds. The client
# offers the key exchange group GROUP only (--tls-groups; P-256 because
# socat 1.7.4 pins its ECDHE curve to P-256, and another first choice would
# cost socat a HelloRetryRequest) and csock's TLS 1.3 suites, of which every
# server picks TLS_AES_128_GCM_SHA256; the client keeps no sessions (every
# handshake is full). Server CPU: /proc/PID/stat over the window, with the
# server's children's (socat forks one a connection): csock bench --server-pid.
#
# Servers per scenario:
#   hs     csock serve echo | socat ... PIPE (fork)
#   echo*  csock serve echo | socat ... PIPE (fork)
# openssl s_server has no byte echo (-rev answers each line reversed, which
# csock bench, checking every byte, counts as wrong) and serves one
# connection at a time: it is in none. The sink scenarios of the tool this
# script used before are gone too: csock bench measures answers, and a sink
# gives none (BENCHMARKS.md, "TLS", keeps their last numbers).
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
SCENARIOS=${SCENARIOS:-"hs echo1 echo8"}
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

for t in taskset openssl socat ss python3; do
    command -v "$t" >/dev/null || { log "bench/tls: $t not found"; exit 1; }
done
[ -x "$CSOCK_BIN" ] || { log "bench/tls: $CSOCK_BIN missing (cmake -S . -B build && cmake --build build)"; exit 1; }

crt=$tmp/cert.pem key=$tmp/key.pem
case $CERT in
rsa) newkey=(-newkey rsa:2048) ;;
ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
*) log "CERT: rsa or ec"; exit 1 ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -keyout "$key" -out "$crt" -days 1 \
    -subj /CN=127.0.0.1 2>/dev/null

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# server_cmd NAME PORT: the server's command line into the array `cmd`.
server_cmd() {
    local name=$1 port=$2
    case $name in
    csock) cmd=("$CSOCK_BIN" serve echo "tls://127.0.0.1:$port" --cert "$crt" --key "$key" --threads 1) ;;
    socat) cmd=(socat "OPENSSL-LISTEN:$port,bind=127.0.0.1,cert=$crt,key=$key,verify=0,fork,reuseaddr" PIPE) ;;
    esac
}

servers_for() {
    echo "csock socat"
}

# load_args SCENARIO: csock bench's load. hs: a new connection for every
# 2-byte echo (full handshake, the echo, close); echo*: 64 KiB messages,
# 4 in flight on each connection (256 KiB).
load_args() {
    case $1 in
    hs) echo "--connect --conns $CONNS_HS --size 2" ;;
    echo1) echo "--conns 1 --size 65536 --depth 4" ;;
    echo8) echo "--conns 8 --size 65536 --depth 4" ;;
    *) log "bench/tls: unknown scenario $1 (hs, echo1, echo8)"; exit 1 ;;
    esac
}

# kv JSON: csock bench's --json as the key=value line the table reads.
kv() {
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
w, c = d["duration_s"], d["cpu"]
srv = c["server_s"] if c["server_s"] is not None else -1
out = ["window_s=%.2f" % w, "errors=%d" % sum(d["errors"].values())]
if d["connect"]:
    out.append("hs_s=%.1f" % d["throughput"])
    if d["messages"] and srv >= 0:
        out.append("srv_cpu_ms_per_hs=%.4f" % (srv * 1e3 / d["messages"]))
else:
    mb = d["bytes"] / 1e6
    out.append("mb_s=%.1f" % (mb / w))
    if mb and srv >= 0:
        out.append("srv_cpu_ms_per_mb=%.4f" % (srv * 1e3 / mb))
out.append("srv_cpu_pct=%.0f lg_cpu_pct=%.0f" % (srv / w * 100, c["load_s"] / w * 100))
print(" ".join(out))' "$1"
}

stop_server() {
    [ -n "$srv_pid" ] || return 0
    kill "$srv_pid" 2>/dev/null || true
    timeout 5 tail --pid="$srv_pid" -s 0.02 -f /dev/null 2>/dev/null ||
        kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=""
}

# measure ROUND SCENARIO SERVER: one csock bench run; appends a row to $results.
measure() {
    local round=$1 sc=$2 name=$3 port rc=0 line cmd=()
    port=$(free_port)
    server_cmd "$name" "$port"
    taskset -c "$SERVER_CPU" "${cmd[@]}" >/dev/null 2>>"$tmp/$name.err" </dev/null &
    srv_pid=$!
    local i
    for i in $(seq 1 200); do # wait until it listens (no probe connection)
        [ -z "$(ss -Hltn "sport = :$port")" ] || break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.02
    done
    # shellcheck disable=SC2046  # load_args is split into words on purpose
    taskset -c "$LOAD_CPU" "$CSOCK_BIN" bench "tls://127.0.0.1:$port" --insecure --tls-groups "$GROUP" \
        $(load_args "$sc") --duration "$DURATION" --warmup "$WARMUP" --server-pid "$srv_pid" \
        --json "$tmp/lg.json" >"$tmp/lg.out" 2>"$tmp/lg.err" &
    lg_pid=$!
    wait "$lg_pid" || rc=$?
    lg_pid=""
    stop_server
    # Status 1 with a JSON: errors, counted in the row.
    if [ -s "$tmp/lg.json" ] && line=$(kv "$tmp/lg.json"); then :; else
        line="status=failed:$(head -n1 "$tmp/lg.err" | tr ' \t' '__')"
    fi
    [ "$rc" = 0 ] || [ "$rc" = 1 ] || line="status=failed:exit_$rc"
    rm -f "$tmp/lg.json"
    printf '%s\t%s\t%s\t%s\n' "$round" "$sc" "$name" "$line" >>"$results"
    log "  $(printf '%-6s %-8s' "$sc" "$name") $line"
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
    echo "- $(openssl version); socat $(socat -V | sed -n 's/^socat version \([^ ]*\).*/\1/p'); load: csock bench"
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
