#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and run
# the HTTP/1 parser target for a bounded time on a copy of its seed corpus (the
# checked-in seeds stay untouched). Exits non-zero if the fuzzer finds a crash,
# a sanitizer report or a broken invariant; the input is left in
# build-fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS]        (or FUZZ_SECONDS=N; default 60)
set -eu

cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-${FUZZ_SECONDS:-60}}
BUILD=build-fuzz
TARGET=fuzz_http1_parse
SEEDS=fuzz/corpus/http1_parse

command -v clang >/dev/null || { echo "fuzz.sh: clang not found" >&2; exit 2; }

cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCSOCK_FUZZ=ON -DCSOCK_SANITIZE=address,undefined >/dev/null
cmake --build "$BUILD" --target "$TARGET" -j "$(nproc 2>/dev/null || echo 2)"

# The fuzzer writes new inputs into its first corpus directory: give it a copy.
RUN="$BUILD/corpus-run/http1_parse"
rm -rf "$RUN"
mkdir -p "$RUN" "$BUILD/artifacts"
cp "$SEEDS"/* "$RUN"/

echo "fuzz.sh: running $TARGET for ${SECONDS_TO_RUN}s"
exec "$BUILD/fuzz/$TARGET" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 \
     -dict=fuzz/http1_parse.dict -artifact_prefix="$BUILD/artifacts/" "$RUN"
