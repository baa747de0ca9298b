#!/bin/bash
# One bulk transfer, csock connect -> csock listen on loopback: MiB/s.
#   bench/bulk.sh [MiB]            (default 512; CSOCK_BIN: the binary)
#   LB=uring CB=epoll bench/bulk.sh  the listener's and the client's backend
# The file is read from /tmp (made once from /dev/zero); the listener
# writes to /dev/null. Run it several times: one transfer is noisy.
set -eu
B=${CSOCK_BIN:-build/csock}
mib=${1:-512}
f=/tmp/csock-bulk-$mib.bin
[ -f "$f" ] || head -c $((mib << 20)) /dev/zero > "$f"
err=$(mktemp)
trap 'rm -f "$err"' EXIT
CSOCK_BACKEND=${LB:-${CSOCK_BACKEND:-auto}} "$B" listen -v 127.0.0.1 0 > /dev/null 2> "$err" < /dev/null &
lp=$!
port=
for _ in $(seq 200); do
    port=$(grep -oE '^listening [a-z]+://[^ ]*:[0-9]+' "$err" | grep -oE '[0-9]+$' | head -1 || true)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "bulk.sh: the listener did not start: $(cat "$err")" >&2; kill $lp; exit 1; }
t0=$(date +%s.%N)
CSOCK_BACKEND=${CB:-${CSOCK_BACKEND:-auto}} "$B" connect 127.0.0.1 "$port" < "$f"
wait $lp
t1=$(date +%s.%N)
echo "$mib MiB in $(echo "$t1 - $t0" | bc -l | cut -c1-6) s: $(echo "$mib / ($t1 - $t0)" | bc -l | cut -c1-7) MiB/s (listen: ${LB:-${CSOCK_BACKEND:-auto}}, connect: ${CB:-${CSOCK_BACKEND:-auto}})"
