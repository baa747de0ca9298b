# Thin wrapper over CMake. The two commands the README promises:
#   make run   - build, then serve the seed's upper-case service on TCP and UDP
#   make test  - build, then run every test (unit + integration)
PREFIX ?= /usr/local
BUILD  ?= build
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build deps run test test-asan test-tsan install bench clean fuzz

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: deps build
	@echo "csock serve upper: send a line, get it back in upper case."
	@echo "  try:  echo hello | ./$(BUILD)/csock connect tcp://127.0.0.1:7000"
	@echo "        echo hello | ./$(BUILD)/csock connect udp://127.0.0.1:7000"
	@echo "        (or nc 127.0.0.1 7000 / nc -u 127.0.0.1 7000); Ctrl-C stops the server."
	./$(BUILD)/csock serve upper tcp://127.0.0.1:7000 udp://127.0.0.1:7000

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCSOCK_SANITIZE=address,undefined"

# Thread code (cross-thread posts, the multi-loop server) under ThreadSanitizer.
test-tsan: deps
	$(MAKE) build BUILD=build-tsan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCSOCK_SANITIZE=thread"
	cd build-tsan && ctest --output-on-failure -L tsan

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

bench: deps build
	sh bench/run.sh

# The HTTP parser's libFuzzer target, from the committed seed corpus, for
# FUZZ_SECONDS (default 60).
fuzz: deps
	sh scripts/fuzz.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz
