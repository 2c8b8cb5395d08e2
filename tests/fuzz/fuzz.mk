# fuzz.mk: libFuzzer targets for the runtime's parsers (state, catalog, config, dates, JSON,
# declared records).
# Works alone (make -f tests/fuzz/fuzz.mk fuzz-smoke) and included from the top-level Makefile;
# every name here starts with FUZZ_ or fuzz- so that nothing clashes with it. The runtime is
# compiled again with clang and the fuzzer's instrumentation into build/fuzz/.
#
#   fuzz-build          all targets, build/fuzz/fuzz_<name>
#   fuzz-smoke          each target replays its corpus and regressions, then fuzzes for 10 s
#   fuzz                each target fuzzes for 300 s; new inputs kept in build/fuzz/corpus/<name>
#   fuzz-smoke-<name>, fuzz-run-<name>     one target (names: $(FUZZ_NAMES))
# Crashes land in build/fuzz/artifacts/; keep the ones that matter in tests/fuzz/regressions/<name>/.

FUZZ_MK        := $(lastword $(MAKEFILE_LIST))
FUZZ_STANDALONE := $(filter 1,$(words $(MAKEFILE_LIST)))
FUZZ_SAVED_GOAL := $(.DEFAULT_GOAL)
FUZZ_SRCDIR    := $(abspath $(dir $(FUZZ_MK)))
FUZZ_ROOT      := $(abspath $(FUZZ_SRCDIR)/../..)
FUZZ_BUILD     := $(FUZZ_ROOT)/build/fuzz

FUZZ_CC        ?= clang
FUZZ_PKGS      := lua5.4 libcurl
FUZZ_CFLAGS    ?= -g -O1
FUZZ_SANITIZE  := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_PROJECT_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -MMD -MP -fsanitize=fuzzer-no-link $(FUZZ_SANITIZE) \
                       $(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null)
FUZZ_LDFLAGS   := -fsanitize=fuzzer $(FUZZ_SANITIZE)
FUZZ_LDLIBS    := $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null) -lm

FUZZ_NAMES     := state catalog config date json records
FUZZ_BINS      := $(foreach n,$(FUZZ_NAMES),$(FUZZ_BUILD)/fuzz_$(n))
FUZZ_RT_SRCS   := $(filter-out %/main.c,$(wildcard $(FUZZ_ROOT)/runtime/*.c))
FUZZ_RT_OBJS   := $(patsubst $(FUZZ_ROOT)/runtime/%.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_RT_SRCS))
FUZZ_HARNESS_OBJS := $(foreach n,$(FUZZ_NAMES),$(FUZZ_BUILD)/harness/fuzz_$(n).o)

# libFuzzer options for every run; the time and the corpus directory are added per goal.
FUZZ_SMOKE_TIME ?= 10
FUZZ_TIME      ?= 300
FUZZ_OPTS      ?= -max_len=65536 -rss_limit_mb=2048 -timeout=25 -print_final_stats=1

.PHONY: fuzz-build fuzz-smoke fuzz fuzz-clean \
        $(foreach n,$(FUZZ_NAMES),fuzz-smoke-$(n) fuzz-run-$(n) fuzz-replay-$(n))

fuzz-build: $(FUZZ_BINS)

fuzz-smoke: $(foreach n,$(FUZZ_NAMES),fuzz-smoke-$(n))

fuzz: $(foreach n,$(FUZZ_NAMES),fuzz-run-$(n))

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

$(FUZZ_RT_OBJS): $(FUZZ_BUILD)/obj/%.o: $(FUZZ_ROOT)/runtime/%.c | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_PROJECT_CFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

# Absolute sources, so that __FILE__ lets fuzz_config find scripts/ from any directory.
$(FUZZ_HARNESS_OBJS): $(FUZZ_BUILD)/harness/%.o: $(FUZZ_SRCDIR)/%.c | $(FUZZ_BUILD)/harness
	$(FUZZ_CC) $(FUZZ_PROJECT_CFLAGS) $(FUZZ_CFLAGS) -Wall -Wextra -I$(FUZZ_ROOT)/runtime -c $< -o $@

$(FUZZ_BINS): $(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/harness/fuzz_%.o $(FUZZ_RT_OBJS)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_LDLIBS)

$(FUZZ_BUILD)/obj $(FUZZ_BUILD)/harness:
	mkdir -p $@

# Per target: replay (every corpus and regression file once), smoke (replay, then a short run
# on a fresh copy of the corpus), run (a long run whose finds are kept in build/fuzz/corpus).
# Regressions are read, never written: libFuzzer adds new inputs only to its first directory.
define FUZZ_TARGET_RULES
FUZZ_CORPUS_$(1) := $(FUZZ_SRCDIR)/corpus/fuzz_$(1)
FUZZ_REGRESS_$(1) := $$(wildcard $(FUZZ_SRCDIR)/regressions/fuzz_$(1))
# An optional libFuzzer dictionary, tests/fuzz/fuzz_<name>.dict.
FUZZ_DICT_$(1) := $$(patsubst %,-dict=%,$$(wildcard $(FUZZ_SRCDIR)/fuzz_$(1).dict))

fuzz-replay-$(1): $(FUZZ_BUILD)/fuzz_$(1)
	@mkdir -p $(FUZZ_BUILD)/artifacts/$(1)
	@files=$$$$(find $$(FUZZ_CORPUS_$(1)) $$(FUZZ_REGRESS_$(1)) -type f ! -name '.*' ! -name '*.md' | sort); \
	echo "fuzz_$(1): replaying $$$$(echo "$$$$files" | wc -l) inputs"; \
	$(FUZZ_BUILD)/fuzz_$(1) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ $$$$files

fuzz-smoke-$(1): fuzz-replay-$(1)
	rm -rf $(FUZZ_BUILD)/smoke/$(1)
	mkdir -p $(FUZZ_BUILD)/smoke/$(1) $(FUZZ_BUILD)/artifacts/$(1)
	cp -R $$(FUZZ_CORPUS_$(1))/. $(FUZZ_BUILD)/smoke/$(1)/
	$(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(FUZZ_SMOKE_TIME) $(FUZZ_OPTS) $$(FUZZ_DICT_$(1)) \
		-artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ $(FUZZ_BUILD)/smoke/$(1) $$(FUZZ_REGRESS_$(1))

fuzz-run-$(1): $(FUZZ_BUILD)/fuzz_$(1)
	mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/artifacts/$(1)
	$(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(FUZZ_TIME) $(FUZZ_OPTS) $$(FUZZ_DICT_$(1)) \
		-artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ $(FUZZ_BUILD)/corpus/$(1) $$(FUZZ_CORPUS_$(1)) $$(FUZZ_REGRESS_$(1))
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_TARGET_RULES,$(n))))

-include $(FUZZ_RT_OBJS:.o=.d) $(FUZZ_HARNESS_OBJS:.o=.d)

# Included, the including Makefile keeps its default goal; alone, `make -f fuzz.mk` builds.
ifneq ($(FUZZ_STANDALONE),)
.DEFAULT_GOAL := fuzz-build
else
.DEFAULT_GOAL := $(FUZZ_SAVED_GOAL)
endif
