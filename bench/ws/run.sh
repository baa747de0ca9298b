#!/usr/bin/env bash
# bench/ws/run.sh: the WebSocket numbers of BENCHMARKS.md in one command.
#
#   bash bench/ws/run.sh            (ROUNDS=7 DURATION=5 by default)
#
# 1. Echo: csock's WebSocket echo (bench/peers/ws_echo.c) on epoll and on
#    io_uring, libwebsockets (lws_echo.c), node's ws (ws_echo_node.js), and
#    csock's plain TCP echo at the same payload size (the floor), through
#    bench/run.sh's scenario w: server on SERVER_CPU, loadgen on LOAD_CPU,
#    fresh server per measurement, order rotated per round, medians.
#    Then the issue's targets from that run's TSV (targets.py).
# 2. Memory: 10,000 idle WebSocket connections to ws_echo on each backend
#    (tests/integration/test_ws_scale.py in report mode), bytes per connection
#    from the allocator's in-use count and from RSS.
# Environment: everything bench/run.sh takes (ROUNDS, DURATION, WARMUP,
# SERVER_CPU, LOAD_CPU, OUT, LOADGEN_ENGINE, WS_CONNS, WS_SIZE, WS_DEPTH,
# WS_TEXT), SERVERS (default below), MEMORY=0 to skip part 2.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
export ROUNDS=${ROUNDS:-7} DURATION=${DURATION:-5}
export SERVERS=${SERVERS:-"ws_csock ws_csock_uring ws_lws ws_node csock csock_uring"}
export SCENARIOS=w OUT=${OUT:-$root/bench/out}
echo "# load at start: $(cat /proc/loadavg)"
bash "$root/bench/run.sh"
echo "# load at end of the echo runs: $(cat /proc/loadavg)"
echo
echo "## Against the issue's targets (server CPU per message; paired: median of per-round ratios)"
echo
# shellcheck disable=SC2012  # the newest results file: names are run.sh's own stamps
/usr/bin/python3 "$here/targets.py" "$(ls -t "$OUT"/results-*.tsv | head -n1)"
if [ "${MEMORY:-1}" = 1 ]; then
    echo
    echo "## 10,000 idle WebSocket connections (server memory per connection)"
    echo
    for backend in epoll uring; do
        CSOCK_WS_ECHO="$root/bench/peers/bin/ws_echo" CSOCK_BACKEND=$backend \
            /usr/bin/python3 "$root/tests/integration/test_ws_scale.py" --report
    done
fi
