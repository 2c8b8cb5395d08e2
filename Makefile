# source-lua: a Lua-scriptable Airbyte source connector runtime.
# Project flags live apart from CFLAGS so that `make CFLAGS=-O0` keeps the warnings and includes.

PKGS       := lua5.4 libcurl
# libcurl is dlopen()ed on first use (runtime/curl_lazy.c), so it is compiled against, not linked.
PYTHON     := /usr/bin/python3

CC         ?= cc
CFLAGS     ?= -O2 -g
PROJECT_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -MMD -MP \
                  $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Lua is linked in too (liblua5.4-dev ships the archive): the dynamic loader then has one library
# fewer to map and relocate before main(), ~0.5 ms of a sync's CPU (docs/PERFORMANCE.md).
# Scripts cannot load C modules (no require), so no symbol needs exporting for them.
LUA_A      := $(firstword $(wildcard /usr/lib/*/liblua5.4.a))
LDLIBS_ALL := $(or $(LUA_A),$(shell pkg-config --libs lua5.4 2>/dev/null)) -ldl -lm

BUILD      := build
ifeq ($(SANITIZE),1)
  BUILD    := build/sanitize
  PROJECT_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS  += -fsanitize=address,undefined
endif

SRCS       := $(wildcard runtime/*.c)
OBJS       := $(patsubst runtime/%.c,$(BUILD)/obj/%.o,$(SRCS))
LIB_OBJS   := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
BIN        := $(BUILD)/source-lua
UNIT_SRCS  := $(wildcard tests/unit/*.c)
UNIT_BIN   := $(BUILD)/unit-tests

IMAGE_NAME  = $(shell sed -n 's/^ *dockerRepository: *//p' metadata.yaml)
VERSION     = $(shell sed -n 's/^ *dockerImageTag: *//p' metadata.yaml)

.PHONY: all deps demo test test-valgrind golden format format-check clean image image-test bench script-case lint test-property
all: $(BIN)

$(BUILD)/obj/%.o: runtime/%.c | $(BUILD)/obj
	$(CC) $(PROJECT_CFLAGS) $(CFLAGS) -c $< -o $@

# test-read's formatter (runtime/trace.lua), compiled in as a C array: the binary needs no file
# beside it.
$(BUILD)/gen/trace_lua.h: runtime/trace.lua
	@mkdir -p $(@D)
	{ echo 'static const char TRACE_LUA[] = {'; od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; } > $@
$(BUILD)/obj/trace.o: $(BUILD)/gen/trace_lua.h
$(BUILD)/obj/trace.o: PROJECT_CFLAGS += -I$(BUILD)/gen

$(BIN): $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(UNIT_BIN): $(UNIT_SRCS) $(LIB_OBJS)
	$(CC) $(PROJECT_CFLAGS) $(CFLAGS) -Iruntime $(LDFLAGS) -o $@ $(UNIT_SRCS) $(LIB_OBJS) $(LDLIBS_ALL)

$(BUILD)/emit-bench: tests/bench/emit_bench.c $(LIB_OBJS)
	$(CC) $(PROJECT_CFLAGS) $(CFLAGS) -Iruntime $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS_ALL)

# The fuzz targets, each linked with tests/fuzz/replay_main.c instead of libFuzzer: `make test`
# replays their corpora with the objects of the build under test. Fuzzing is tests/fuzz/fuzz.mk.
FUZZ_REPLAY_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz-replay/%,$(wildcard tests/fuzz/fuzz_*.c))

# Absolute sources, so that __FILE__ lets fuzz_config find scripts/ from any directory.
$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c tests/fuzz/fuzz_common.h $(wildcard runtime/*.h) $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(PROJECT_CFLAGS) $(CFLAGS) -Iruntime $(LDFLAGS) -o $@ $(abspath $<) tests/fuzz/replay_main.c $(LIB_OBJS) $(LDLIBS_ALL)

# Answers time zone queries on stdin, for tests/tz's comparison with Python's zoneinfo.
$(BUILD)/tz-probe: tests/tz/tz_probe.c $(LIB_OBJS)
	$(CC) $(PROJECT_CFLAGS) $(CFLAGS) -Iruntime $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS_ALL)

$(BUILD)/obj:
	mkdir -p $@

# Installs what a fresh Debian 12 machine lacks; a no-op when everything is there.
DEB_PKGS := build-essential pkg-config liblua5.4-dev libcurl4-openssl-dev \
            python3 python3-pytest python3-pytest-xdist python3-jsonschema python3-yaml python3-requests curl libfaketime time \
            clang libclang-rt-14-dev clang-format-14 tzdata lua-check
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: deps
	$(MAKE) --no-print-directory all
	$(PYTHON) tests/demo.py --binary $(BIN)

# tests/fuzz replays the fuzz corpora once; fuzzing itself is `make fuzz` (5 min a target) or
# `make fuzz-smoke` (10 s a target).
TEST_SUITES := tests/style tests/server tests/bench tests/tz tests/golden tests/scripts tests/e2e tests/property tests/acceptance tests/fuzz
# The build inside `make test` uses every core unless the caller chose -j.
TEST_JOBS   = $(if $(findstring j,$(firstword $(filter-out --%,$(MAKEFLAGS)))),,-j$(shell nproc))

test: deps
	$(MAKE) --no-print-directory $(TEST_JOBS) all $(UNIT_BIN) $(BUILD)/tz-probe $(FUZZ_REPLAY_BINS)
	$(PYTHON) tests/run_all.py --binary $(BIN) --unit $(UNIT_BIN) $(addprefix --suite ,$(TEST_SUITES))

# luacheck over the scripts (or LINT=path/to/my.lua), with the sandbox's globals (.luacheckrc);
# tests/style runs it too.
lint: deps
	luacheck --no-color $(or $(LINT),scripts/)

# Adds a script's test case (tests/scripts/NAME): a recorded read and what it must give.
#   make script-case NAME=my_stream SCRIPT=scripts/my_stream.lua CONFIG=secrets/my_stream.json [STATE=...]
script-case: all
	$(PYTHON) tests/scripts/script_case.py --binary $(BIN) $(NAME) --script $(SCRIPT) --config $(CONFIG) \
		$(if $(STATE),--state $(STATE)) $(if $(STREAMS),--streams $(STREAMS))

# Rewrites the golden transcripts (tests/golden/cases/*/transcript.txt) from this build; review
# what changed with `git diff tests/golden` before committing it.
golden: deps
	$(MAKE) --no-print-directory all
	$(PYTHON) tests/golden/golden.py --binary $(BIN) --update

# The house style (.clang-format) over every C file; tests/style checks it in `make test`. The
# version is pinned: another clang-format may lay the same code out differently.
CLANG_FORMAT := clang-format-14
FORMAT_SRCS   = $(wildcard runtime/*.[ch]) $(shell find tests -name '*.[ch]')
format: deps
	$(CLANG_FORMAT) -i $(FORMAT_SRCS)

format-check: deps
	$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_SRCS)

# The property tests drawn far more often than `make test` draws them (minutes, not seconds).
test-property: all
	PROPERTY_SEEDS=4 PROPERTY_RANDOM=300 PROPERTY_FIRST_SEED=1000 RECORDS_PROPERTY_SEEDS=500 \
		$(PYTHON) -m pytest -q -p no:cacheprovider -n $(shell nproc) tests/property tests/e2e/test_records.py \
		-k "random or matrix or runs_of_equal"

# The end-to-end tests with every connector run under valgrind (leaks and memory errors fail them),
# a pytest worker a core: valgrind keeps the cores busy, and a second worker only slows each run.
VALGRIND := valgrind --leak-check=full --errors-for-leak-kinds=definite,possible --error-exitcode=99 -q
test-valgrind: deps
	@command -v valgrind >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq valgrind; }
	$(MAKE) --no-print-directory all $(UNIT_BIN)
	SOURCE_LUA_WRAPPER="$(VALGRIND)" $(PYTHON) tests/run_all.py --binary $(BIN) --suite tests/e2e -- -n $$(nproc) --dist loadgroup
	valgrind --leak-check=full --error-exitcode=99 -q $(UNIT_BIN) >/dev/null

# The Airbyte image, built with buildah (no Docker engine needed), and the acceptance suite run
# through it the way the platform starts a connector.
image: deps
	@command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || \
		{ SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq buildah mmdebstrap; }
	tests/image/build_image.sh $(IMAGE_NAME):dev $(VERSION)

image-test: image
	$(PYTHON) tests/run_all.py --suite tests/acceptance --suite tests/image \
		-- --connector "$(CURDIR)/tests/image/connector_in_image.sh"

# Figures, not pass/fail: spec start-up, a 40-ticker x 10-year sync against pre-rendered pages,
# the same transfers with curl (the floor), and the emission rate on one core.
bench: deps
	$(MAKE) --no-print-directory all $(BUILD)/emit-bench
	$(PYTHON) tests/bench/bench.py --binary $(BIN) --emit-bench $(BUILD)/emit-bench

# Optional so that the image build, which copies only the Makefile and runtime/, still works.
-include tests/fuzz/fuzz.mk

clean:
	rm -rf build

-include $(OBJS:.o=.d)
