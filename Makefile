# The two commands of the README: `make demo` and `make test`.
BUILD_DIR ?= build
ASAN_DIR ?= $(BUILD_DIR)-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifneq ($(CI),)
CMAKE_FLAGS += -DPGWARD_WERROR=ON
endif

.PHONY: all deps configure build build-asan test test-release test-asan unit integration demo clean format

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer: every
# pgward the integration tests start is sanitized too, and a leak or UB fails
# its exit code.
build-asan: deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DPGWARD_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_DIR) -j $(JOBS)

test-release: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure

test-asan: build-asan
	ctest --test-dir $(ASAN_DIR) --output-on-failure

test: test-release test-asan

unit: build
	$(BUILD_DIR)/tests/pgward_unit_tests

integration: build
	$(BUILD_DIR)/tests/pgward_integration_tests

demo: build
	scripts/demo.sh $(BUILD_DIR)/pgward

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
