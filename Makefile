# Convenience front-end over CMake. `make help` lists the targets.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := build
MAKEFLAGS    += --no-print-directory

CMAKE        ?= cmake
JOBS         ?= 2
PREFIX       ?= /usr/local
CMAKE_FLAGS  ?=
# Extra arguments for the Criterion runner, e.g. TEST_ARGS='--filter "timer/*"'
TEST_ARGS    ?=
# libFuzzer time per target (make fuzz), calls of the long soak and of the
# HTTP-fault soak through the curl adapter (make soak).
FUZZ_SECONDS ?= 60
SOAK_CALLS   ?= 10000000
CURL_SOAK_CALLS ?= 200000

BUILD_DIR    := build
ASAN_DIR     := build-asan
VALGRIND_DIR := build-valgrind

SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Each fuzz target replaying its corpus under memcheck (make valgrind).
VALGRIND_REPLAY := valgrind -q --error-exitcode=99 --leak-check=full \
                   --errors-for-leak-kinds=definite,indirect

say = @printf '\n==> %s\n' "$(1)"

.PHONY: all help deps build test asan valgrind fuzz soak bench demo install clean

all: build

help:
	@echo 'make deps      install missing Debian packages (scripts/deps.sh)'
	@echo 'make build     configure + build $(BUILD_DIR)/ (-Werror)'
	@echo 'make test      build, then run the Criterion suite'
	@echo 'make asan      ASan+UBSan Debug build in $(ASAN_DIR)/, run the suite'
	@echo 'make valgrind  Debug build in $(VALGRIND_DIR)/, run the suite under valgrind'
	@echo 'make fuzz      libFuzzer+ASan+UBSan build in build-fuzz/, FUZZ_SECONDS per target'
	@echo 'make soak      build, then the soak test with SOAK_CALLS calls and the curl one with CURL_SOAK_CALLS'
	@echo 'make bench     build, then run scripts/bench.sh'
	@echo 'make demo      build, then run $(BUILD_DIR)/examples/demo'
	@echo 'make install   build, then install to PREFIX (default /usr/local)'
	@echo 'make clean     remove all build trees'
	@echo 'Variables: JOBS=$(JOBS) PREFIX=$(PREFIX) CMAKE_FLAGS=... TEST_ARGS=... (env: VALGRIND_FLAGS=...)'

deps:
	@bash scripts/deps.sh

build: deps
	$(call say,configure $(BUILD_DIR))
	$(CMAKE) -S . -B $(BUILD_DIR) -DFY_WERROR=ON -DFY_BUILD_FUZZERS=ON \
	  $(CMAKE_FLAGS)
	$(call say,build $(BUILD_DIR))
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS)

test: build
	$(call say,test: Criterion suite)
	JOBS=$(JOBS) bash scripts/run-tests.sh plain $(BUILD_DIR) $(TEST_ARGS)
	$(call say,test: fuzz corpus replay)
	bash scripts/fuzz.sh replay $(BUILD_DIR)

asan: deps
	$(call say,configure $(ASAN_DIR) (ASan + UBSan, Debug))
	$(CMAKE) -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug \
	  -DFY_ASAN=ON -DFY_UBSAN=ON -DFY_BUILD_FUZZERS=ON \
	  -DFY_BUILD_EXAMPLES=OFF -DFY_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	$(call say,build $(ASAN_DIR))
	$(CMAKE) --build $(ASAN_DIR) -j$(JOBS)
	$(call say,asan: Criterion suite under ASan + UBSan)
	$(SAN_ENV) JOBS=$(JOBS) bash scripts/run-tests.sh asan $(ASAN_DIR) $(TEST_ARGS)
	$(call say,asan: fuzz corpus replay under ASan + UBSan)
	$(SAN_ENV) bash scripts/fuzz.sh replay $(ASAN_DIR)

valgrind: deps
	$(call say,configure $(VALGRIND_DIR) (Debug, no sanitizers))
	$(CMAKE) -S . -B $(VALGRIND_DIR) -DCMAKE_BUILD_TYPE=Debug \
	  -DFY_ASAN=OFF -DFY_UBSAN=OFF -DFY_NO_POOL=ON -DFY_BUILD_FUZZERS=ON \
	  -DFY_BUILD_EXAMPLES=OFF -DFY_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	$(call say,build $(VALGRIND_DIR))
	$(CMAKE) --build $(VALGRIND_DIR) -j$(JOBS)
	$(call say,valgrind: Criterion suite under memcheck)
	bash scripts/run-tests.sh valgrind $(VALGRIND_DIR) $(TEST_ARGS)
	$(call say,valgrind: fuzz corpus replay under memcheck)
	FUZZ_REPLAY_WRAPPER='$(VALGRIND_REPLAY)' \
	  bash scripts/fuzz.sh replay $(VALGRIND_DIR)

fuzz: deps
	$(call say,fuzz: $(FUZZ_SECONDS)s per target)
	FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) bash scripts/fuzz.sh run

soak: build
	$(call say,soak: $(SOAK_CALLS) calls)
	FY_SOAK_CALLS=$(SOAK_CALLS) $(BUILD_DIR)/tests/fortify_tests --filter 'soak/*'
	$(call say,soak: $(CURL_SOAK_CALLS) HTTP calls with faults through the curl adapter)
	FY_CURL_SOAK_CALLS=$(CURL_SOAK_CALLS) $(BUILD_DIR)/tests/fortify_tests \
	  --filter 'curl_faults/soak*'

bench: build
	$(call say,bench)
	bash scripts/bench.sh $(BUILD_DIR)

demo: build
	$(call say,demo)
	$(BUILD_DIR)/examples/demo

install: build
	$(call say,install to $(PREFIX))
	$(CMAKE) --install $(BUILD_DIR) --prefix "$(PREFIX)"

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(VALGRIND_DIR) build-*/
