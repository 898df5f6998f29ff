# The front door. CMake is the real build; these targets install what is missing, build,
# and run. See README.md.
BUILD_DIR  ?= build
ASAN_DIR   ?= build-asan
FUZZ_DIR   ?= build-fuzz
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
# Tests run side by side (tests/CMakeLists.txt says why any number is safe): most of them wait
# on timers rather than compute, so three per core keeps the cores busy without starving
# the ones that do compute (their PROCESSORS count against this number). TEST_JOBS=1 runs
# them one at a time.
TEST_JOBS  ?= $(shell echo $$(( $$(nproc) * 3 )))

.PHONY: all deps build test test-sanitize demo bench bench-sizing fuzz format format-check clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD_DIR) -j$(JOBS)

# The fast suite for the edit-compile-test loop: the unit tests, then the integration tests
# on the embedded broker (tests labelled kafka need Apache Kafka, and those labelled registry
# a Schema Registry: both JVMs fetched with Maven on first use; they stay in make test).
.PHONY: check
check: build
	cd $(BUILD_DIR) && ctest -L unit --output-on-failure --timeout 300 -j$(TEST_JOBS)
	cd $(BUILD_DIR) && ctest -L integration -LE "kafka|registry" --output-on-failure --timeout 900 -j$(TEST_JOBS)

# Every ctest test (unit, integration, faults), then each fuzz target for a short smoke run.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900 -j$(TEST_JOBS)
	FUZZ_BUILD_DIR=$(FUZZ_DIR) scripts/fuzz.sh smoke

# The whole suite again under AddressSanitizer and UndefinedBehaviorSanitizer, except the
# real-Kafka tests (label kafka): `make test` runs those once, which is enough.
test-sanitize: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DKENG_SANITIZE=address,undefined
	cmake --build $(ASAN_DIR) -j$(JOBS)
	cd $(ASAN_DIR) && ctest --output-on-failure --timeout 1200 -LE kafka -j$(TEST_JOBS)

# The demo runs on the province as it is governed today: the two-tier registry of 1 July 2025
# (no district level). REGISTRY=FILE runs it on your own board registry, REGISTRY= on the
# built-in 2024 one (keng-demo --registry FILE).
REGISTRY ?= registry/nghe-an-2025-07-01.csv
LINEAGE ?= $(if $(filter registry/nghe-an-2025-07-01.csv,$(REGISTRY)),registry/nghe-an-2024-to-2025.lineage.csv)
demo: build
	$(BUILD_DIR)/bin/keng-demo $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(LINEAGE),--lineage $(LINEAGE))

bench: build
	scripts/bench.sh $(BUILD_DIR)

# The figures of the sizing table in docs/OPERATIONS.md (SIZING_EVENTS: a year today).
bench-sizing: build
	scripts/bench_sizing.sh $(BUILD_DIR)

# Each libFuzzer target for FUZZ_SECONDS (default 60), built with clang and sanitizers.
fuzz: deps
	FUZZ_BUILD_DIR=$(FUZZ_DIR) scripts/fuzz.sh run

format: deps
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check: deps
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
