#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and
# run each for a bounded time on a copy of its seed corpus (the checked-in
# seeds stay untouched). Exits non-zero if any target finds a crash, a
# sanitizer report, a leak or a broken invariant; the input is left in
# build-fuzz/artifacts/<target>-crash-*, and the line to reproduce it is
# printed. Ends with each target's executions.
#
#   scripts/fuzz.sh [SECONDS]       per target (or FUZZ_SECONDS=N; default 60)
#   FUZZ_TARGETS="frame stream"     only these (default: every fuzz/fuzz_*.c)
set -eu

cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-${FUZZ_SECONDS:-60}}
BUILD=build-fuzz
TARGETS=${FUZZ_TARGETS:-$(ls fuzz/fuzz_*.c | sed 's|fuzz/fuzz_||; s|\.c$||')}

command -v clang >/dev/null || { echo "fuzz.sh: clang not found" >&2; exit 2; }

cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCSOCK_FUZZ=ON -DCSOCK_SANITIZE=address,undefined >/dev/null
for t in $TARGETS; do
    cmake --build "$BUILD" --target "fuzz_$t" -j "$(nproc 2>/dev/null || echo 2)"
done

mkdir -p "$BUILD/artifacts"
summary=""
failed=0
for t in $TARGETS; do
    # The fuzzer writes new inputs into its first corpus directory: give it a copy.
    run="$BUILD/corpus-run/$t"
    rm -rf "$run"
    mkdir -p "$run"
    cp fuzz/corpus/"$t"/* "$run"/
    dict=""
    [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
    log="$BUILD/fuzz_$t.log"
    echo "fuzz.sh: running fuzz_$t for ${SECONDS_TO_RUN}s"
    # shellcheck disable=SC2086
    if "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 -timeout=25 $dict \
           -artifact_prefix="$BUILD/artifacts/$t-" "$run" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed=1
        { grep -E "check failed|ERROR|SUMMARY|#[0-9]+ 0x.* in " "$log" || tail -5 "$log"; } |
            head -20 >&2
        echo "fuzz.sh: fuzz_$t failed; reproduce: $BUILD/fuzz/fuzz_$t" \
             "$(ls -t "$BUILD/artifacts/$t-"* 2>/dev/null | head -1)  (log: $log)" >&2
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    summary="$summary$(printf '  %-16s %-7s %12s execs in %ss' "$t" "$status" "${execs:-?}" "$SECONDS_TO_RUN")
"
done
printf 'fuzz.sh: summary\n%s' "$summary"
exit "$failed"
