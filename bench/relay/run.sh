#!/usr/bin/env bash
# bench/relay/run.sh: csock proxy against HAProxy (TCP mode, with and
# without splice) and socat: throughput on one connection and on 100, the
# connection rate, the proxy's CPU per MB and per connection, and memory
# per idle relayed pair. See relay_bench.py for the scenarios.
#
#   bash bench/relay/run.sh [CSOCK_BIN]   (env: ROUNDS=5 DURATION=5
#                                          PROXIES="csock csock_epoll csock_nosplice haproxy haproxy_splice socat"
#                                          IDLE_PAIRS=9000 PROXY_CPU=0 LOAD_CPU=1)
# Takes /work/wt/bench.lock (or $BENCH_LOCK) so that two benchmarks never
# share the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
export CSOCK=${1:-${CSOCK:-$root/build/csock}}
lock=${BENCH_LOCK:-/work/wt/bench.lock}
echo "# host: $(uname -r)," \
     "meltdown (PTI): $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null || echo ?)," \
     "$(nproc) CPUs, $(haproxy -v 2>/dev/null | head -n1 | cut -d' ' -f1-3), $(socat -V 2>/dev/null | sed -n 2p | cut -d' ' -f1-3)"
echo "# csock: $("$CSOCK" --version 2>&1 | head -n1)"
echo "# load at start: $(cat /proc/loadavg)"
# -o: the lock's descriptor is not inherited by the benchmark's processes,
# so one left running by an interrupted run cannot hold the lock forever.
flock -o "$lock" /usr/bin/python3 "$here/relay_bench.py"
echo "# load at end: $(cat /proc/loadavg)"
