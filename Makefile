# The README's commands: `make demo`, `make test` (the everyday suite) and
# `make check` (the full gate, what CI runs: .ci/run).
BUILD_DIR ?= build
ASAN_DIR ?= $(BUILD_DIR)-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifneq ($(CI),)
CMAKE_FLAGS += -DPGWARD_WERROR=ON
endif
PREFIX ?= /usr/local

FUZZ_DIR ?= $(BUILD_DIR)-fuzz
RELEASE_DIR ?= $(BUILD_DIR)-release
PACKAGE_DIR ?= $(BUILD_DIR)-package
FUZZ_SECONDS ?= 300

.PHONY: all deps configure build demo-offsite build-asan build-fuzz build-release fuzz fuzz-smoke test check check-rest test-release test-deploy test-hostile test-asan test-package campaigns-short torture walks coverage bench test-matrix test-client17 unit integration demo package install clean format

all: build

deps:
	@scripts/install-deps.sh

# One optimized build with the standard library's assertions, for the demo,
# the everyday tests and the full gate's optimized runs. The demo profile has
# no GoogleTest: that build has no tests until `make test` installs it.
configure-%:
	@PGWARD_DEPS_PROFILE=$* scripts/install-deps.sh
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_ASSERTIONS=ON $(CMAKE_FLAGS) >/dev/null

configure: configure-full

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Only what the demo runs: the demo profile, the pgward target (a second run
# builds nothing and starts the demo at once).
demo:
	@PGWARD_DEPS_PROFILE=demo scripts/install-deps.sh
	@test -f $(BUILD_DIR)/CMakeCache.txt || \
	  cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_ASSERTIONS=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS) --target pgward
	scripts/demo.sh $(BUILD_DIR)/pgward

# The offsite copy (docs/offsite.md) on a throwaway PostgreSQL and a
# throwaway S3 server (Ceph RGW on loopback): its own target, so `make demo`
# keeps its time.
demo-offsite:
	@PGWARD_DEPS_PROFILE=offsite scripts/install-deps.sh
	@test -f $(BUILD_DIR)/CMakeCache.txt || \
	  cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_ASSERTIONS=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS) --target pgward
	scripts/demo-offsite.sh $(BUILD_DIR)/pgward

# The everyday suite (tests/run-tests.sh): unit, fault-unit, integration, the
# hostile-environment run and the short campaigns, side by side.
test: configure-test
	cmake --build $(BUILD_DIR) -j $(JOBS)
	tests/run-tests.sh $(BUILD_DIR)

# The full gate: the everyday suite, then the suites instrumented (the coverage
# gate, with the fault walks' stride) and sanitized, the fuzz smoke, the
# client-17 suites, the deployment check and the package test.
# .ci/run runs its two halves: `make test`, then `make check-rest`.
check: test check-rest

check-rest: deps coverage test-asan fuzz-smoke test-client17 test-deploy test-package

# A Debian package (CPack, dependencies from dpkg-shlibdeps), built by the
# same script as the Dockerfile's build stage.
package:
	@PGWARD_DEPS_PROFILE=build scripts/install-deps.sh
	scripts/build-package.sh $(PACKAGE_DIR)

test-package: package
	tests/package/test_package.sh $(PACKAGE_DIR)

# From the Release build (no test binaries, no assertions), as the package.
install:
	@PGWARD_DEPS_PROFILE=build scripts/install-deps.sh
	cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release -DPGWARD_BUILD_TESTS=OFF \
	  -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(RELEASE_DIR) -j $(JOBS) --target pgward manpage
	DESTDIR="$(DESTDIR)" cmake --install $(RELEASE_DIR)

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer: every
# pgward the integration tests start is sanitized too, and a leak or UB fails
# its exit code.
build-asan: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DPGWARD_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_DIR) -j $(JOBS)

test-release: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

test-asan: build-asan
	ctest --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS)

# The archive reader under libFuzzer (clang), seeded with small real archives
# and the shared fixtures; `make fuzz` runs FUZZ_SECONDS, `make test` a short run.
build-fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGWARD_FUZZ=ON -DPGWARD_BUILD_TESTS=OFF >/dev/null
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_archive fuzz_age

fuzz: build-fuzz
	mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/fuzz_archive -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=1024 -timeout=10 \
	  $(FUZZ_DIR)/corpus tests/fuzz/corpus $(wildcard ../shared/fixtures/archives)
	mkdir -p $(FUZZ_DIR)/corpus-age
	$(FUZZ_DIR)/fuzz_age -max_total_time=$(FUZZ_SECONDS) -max_len=300000 -rss_limit_mb=1024 -timeout=10 \
	  $(FUZZ_DIR)/corpus-age tests/fuzz/corpus-age

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=30

# The reliability campaigns (tests/campaigns/campaigns.sh): a short run in
# `make test`, the full one (200 crashes, 1,000 corruptions, 1,000 cycles) in
# `make torture`.
campaigns-short: build
	tests/campaigns/campaigns.sh $(BUILD_DIR)/pgward short

torture: build walks
	tests/campaigns/campaigns.sh $(BUILD_DIR)/pgward full

# The fault walks (tests/integration/test_fault_walks.cpp, tests/shims/faultfs.c)
# over every call: a kill and each errno, once and persistently, at each one.
# `make test` walks every third call with one errno per call. A full walk is
# long by design: no per-test timeout (PGWARD_TEST_TIMEOUT_SECONDS=0).
walks: build
	PGWARD_WALK=full PGWARD_TEST_TIMEOUT_SECONDS=0 $(BUILD_DIR)/tests/pgward_integration_tests --gtest_filter='FaultWalkTest.*'

# Line and branch coverage of src/ by the unit and integration suites (gcovr),
# per file, and the gate of docs/reliability.md (scripts/coverage-gate.py).
COVERAGE_DIR ?= $(BUILD_DIR)-coverage
coverage: deps
	cmake -S . -B $(COVERAGE_DIR) -DCMAKE_BUILD_TYPE=Debug -DPGWARD_COVERAGE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(COVERAGE_DIR) -j $(JOBS)
	find $(COVERAGE_DIR) -name '*.gcda' -delete
	ctest --test-dir $(COVERAGE_DIR) --output-on-failure -j $(JOBS) -E deploy
	gcovr -r . --object-directory $(COVERAGE_DIR) --filter 'src/' --exclude-throw-branches --gcov-ignore-parse-errors \
	  --exclude-unreachable-branches --json-summary $(COVERAGE_DIR)/coverage.json --txt -
	scripts/coverage-gate.py $(COVERAGE_DIR)/coverage.json

# Speed against the tools an operator would use instead, on the Release build.
build-release: deps
	cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release -DPGWARD_BUILD_TESTS=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build $(RELEASE_DIR) -j $(JOBS) --target pgward bench_tools

bench: build-release
	bench/bench.sh $(RELEASE_DIR)
	bench/shapes.sh $(RELEASE_DIR)
	bench/offsite.sh $(RELEASE_DIR)
	bench/encryption.sh $(RELEASE_DIR)
	bench/pitr.sh $(RELEASE_DIR)

# The integration suite once more in an operator's shell set to wrong values
# (PG*, a service file, ~/.pgpass, German locale, a far time zone):
# tests/hostile/run.sh.
test-hostile: build
	tests/hostile/run.sh $(BUILD_DIR)

test-deploy: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -R deploy

# The client-dependent tests again with pg_dump/pg_restore 17 (zstd, lz4,
# format 1.16): tests/matrix/client17.sh.
test-client17: build
	tests/matrix/client17.sh $(BUILD_DIR)

# Servers 13-18 x clients 15, 17, 18 (tests/matrix/matrix.sh): downloads the
# other majors once into the cache of scripts/pg-clients.sh, runs the
# integration suite in every cell and writes the table into docs/compatibility.md.
# Not part of `make test`.
test-matrix: build
	tests/matrix/matrix.sh $(BUILD_DIR) docs/compatibility.md

unit: build
	$(BUILD_DIR)/tests/pgward_unit_tests

integration: build
	$(BUILD_DIR)/tests/pgward_integration_tests

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR) $(RELEASE_DIR) $(PACKAGE_DIR) $(COVERAGE_DIR)
