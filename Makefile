# strata - one entry point for building and checking.
#
#   make              build build/stratafs (and build/strata, build/strata-hook when
#                     driver/ and oci-hooks/ hold sources)
#   make deps         install the Debian packages the build and the tests need
#   make check        deps, build, unit tests, format check, bats suites (tests/run.sh), then
#                     the unit tests and ASAN_SUITES again on the ASan+UBSan build
#   make demo         deps, build, then scripts/demo.sh (a 3-layer overlay, step by step)
#   make format       clang-format -i every C source and header
#   make format-check fail if clang-format would change anything
#   make install      copy the programs to $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local)
#   make fuzz         build the libFuzzer targets (clang) and run each for FUZZ_TIME seconds
#                     (default 60) on tests/fuzz/corpus/NAME: the strata spec parser (spec),
#                     stratafs's option parser (params), random layer trees mounted in-process
#                     and walked (layer; root); extra flags in tests/fuzz/NAME.flags
#   make asan         build stratafs, strata and the unit tests with ASan+UBSan into
#                     $(BUILD)/asan (make check runs the unit tests and ASAN_SUITES on it)
#   make tools        test helpers in $(BUILD)/tools (tests/tools/*.c: the fsx checker)
#   make bench        time stratafs against kernel overlayfs and fuse-overlayfs (root; not
#                     part of check; BENCH_QUICK=1, BENCH_N=..., see tests/bench/README.md)
#   make clean
#
# -Werror is on when CI is set (CI=true, as .ci/run does) or WERROR=1.

SHELL := /bin/bash
.DEFAULT_GOAL := all
MAKEFLAGS += --no-print-directory

BUILD      ?= build
OBJ        := $(BUILD)/obj
CC         ?= cc
PKG_CONFIG ?= pkg-config
CLANG_FORMAT ?= clang-format

# pkg-config is run lazily, at most once per make process: `make check` installs
# missing -dev packages first, so nothing may ask pkg-config at parse time.
# (VAR = $(eval VAR := value)$(VAR) evaluates on first use, then caches.)
lazy = $(eval $(1) := $$(shell $(2)))$($(1))

CORE_PKGS   := fuse3 $(if $(wildcard core/sandbox.c),libcap libseccomp)
DRIVER_PKGS := json-c libcap libseccomp
HOOK_PKGS   := json-c

CORE_PC_CFLAGS   = $(call lazy,CORE_PC_CFLAGS,$(PKG_CONFIG) --cflags $(CORE_PKGS))
CORE_PC_LIBS     = $(call lazy,CORE_PC_LIBS,$(PKG_CONFIG) --libs $(CORE_PKGS))
DRIVER_PC_CFLAGS = $(call lazy,DRIVER_PC_CFLAGS,$(PKG_CONFIG) --cflags $(DRIVER_PKGS))
DRIVER_PC_LIBS   = $(call lazy,DRIVER_PC_LIBS,$(PKG_CONFIG) --libs $(DRIVER_PKGS))
HOOK_PC_CFLAGS   = $(call lazy,HOOK_PC_CFLAGS,$(PKG_CONFIG) --cflags $(HOOK_PKGS))
HOOK_PC_LIBS     = $(call lazy,HOOK_PC_LIBS,$(PKG_CONFIG) --libs $(HOOK_PKGS))
# FUSE passthrough needs libfuse >= 3.16 (Debian 12 ships 3.14).
FUSE_FEATURES    = $(call lazy,FUSE_FEATURES,$(PKG_CONFIG) --atleast-version=3.16 fuse3 && echo -DHAVE_FUSE_PASSTHROUGH=1)

WERROR ?=
ifneq ($(filter-out 0 false no,$(CI)),)
WERROR_FLAG := -Werror
else ifeq ($(WERROR),1)
WERROR_FLAG := -Werror
endif

CFLAGS   ?= -O2 -g
CPPFLAGS ?=
LDFLAGS  ?=
BASE_CFLAGS := -std=gnu11 -Wall -Wextra $(WERROR_FLAG) -D_GNU_SOURCE -MMD -MP
ALL_CFLAGS   = $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS)

# ---- sources ---------------------------------------------------------------
CORE_SRCS   := $(wildcard core/*.c)
CORE_OBJS   := $(patsubst %.c,$(OBJ)/%.o,$(CORE_SRCS))
# Everything but main() goes into the unit tests (core/main.c alone holds main()).
CORE_LIB_OBJS := $(filter-out $(OBJ)/core/main.o,$(CORE_OBJS))

DRIVER_SRCS := $(wildcard driver/*.c)
DRIVER_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(DRIVER_SRCS))
# core files the driver shares (DESIGN.md: sandbox.c is shared with the driver).
DRIVER_CORE_SHARED ?= sandbox
DRIVER_CORE_OBJS := $(filter $(patsubst %,$(OBJ)/core/%.o,$(DRIVER_CORE_SHARED)),$(CORE_OBJS))

HOOK_SRCS   := $(wildcard oci-hooks/*.c)
HOOK_OBJS   := $(patsubst %.c,$(OBJ)/%.o,$(HOOK_SRCS))

UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_OBJS   := $(patsubst %.c,$(OBJ)/%.o,$(UNIT_SRCS))
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
# Unit tests of driver modules (test_X.c for driver/X.c): linked with the driver's objects
# (all but driver/main.o) instead of the core's.
DRIVER_LIB_OBJS := $(filter-out $(OBJ)/driver/main.o,$(DRIVER_OBJS))
DRIVER_UNIT_BINS := $(filter $(patsubst driver/%.c,$(BUILD)/tests/test_%,$(DRIVER_SRCS)),$(UNIT_BINS))

# libFuzzer targets (tests/fuzz/fuzz_X.c), built with clang outside the normal build.
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_FLAGS ?= -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

PROGRAMS := $(BUILD)/stratafs
ifneq ($(DRIVER_SRCS),)
PROGRAMS += $(BUILD)/strata
endif
ifneq ($(HOOK_SRCS),)
PROGRAMS += $(BUILD)/strata-hook
endif

FORMAT_FILES = $(shell find core driver oci-hooks tests -name '*.[ch]' 2>/dev/null | LC_ALL=C sort)

# ---- targets ---------------------------------------------------------------
.PHONY: all deps unit check demo format format-check install clean fuzz fuzz-build

all: $(PROGRAMS)

unit: $(UNIT_BINS)

deps:
	@scripts/deps.sh

# deps must run before anything asks pkg-config, hence the sub-makes.
check:
	@$(MAKE) deps
	@$(MAKE) all unit tools
	@$(MAKE) asan
	@CHECK_FORMAT=1 STRATA_ASAN=1 tests/run.sh

demo:
	@$(MAKE) deps
	@$(MAKE) all
	@scripts/demo.sh

format:
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

# Names each file clang-format would change, with the diff (first 40 lines of each).
format-check:
	@bad=0; for f in $(FORMAT_FILES); do \
		if ! $(CLANG_FORMAT) --dry-run --Werror "$$f" >/dev/null 2>&1; then \
			bad=$$((bad + 1)); echo "format-check: $$f needs formatting:"; \
			$(CLANG_FORMAT) "$$f" | diff -u "$$f" - | head -n 40; \
		fi; \
	done; \
	if [ $$bad -ne 0 ]; then echo "format-check: $$bad file(s) need 'make format'"; exit 1; fi; \
	echo "format-check: ok ($(words $(FORMAT_FILES)) files)"

fuzz-build: $(FUZZ_BINS)

# Runs each target for FUZZ_TIME seconds from its seed corpus (copied, so runs never
# grow the tracked one); a crash leaves its input in $(BUILD)/fuzz/ and fails.
fuzz: fuzz-build
	@for b in $(FUZZ_BINS); do \
		n=$${b##*/fuzz_}; work=$(BUILD)/fuzz/corpus-$$n; mkdir -p $$work; \
		cp -n tests/fuzz/corpus/$$n/* $$work/ 2>/dev/null || true; \
		echo "fuzz: $$b for $(FUZZ_TIME) s"; \
		$$b -max_total_time=$(FUZZ_TIME) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/ \
			$$(cat tests/fuzz/$$n.flags 2>/dev/null) $$work || exit 1; \
	done

# ---- sanitizer build ---------------------------------------------------------
# The same sources with AddressSanitizer (LeakSanitizer included) and UBSan, in their own
# build dir (own objects and flags stamp). tests/run.sh runs them with STRATA_ASAN=1.
ASAN_BUILD ?= $(BUILD)/asan
ASAN_FLAGS ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
.PHONY: asan tools
asan:
	@$(MAKE) BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_FLAGS)" LDFLAGS="$(ASAN_FLAGS)" all unit

# ---- test tools ----------------------------------------------------------------
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
tools: $(TOOL_BINS)
$(BUILD)/tools/%: tests/tools/%.c Makefile
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra $(WERROR_FLAG) -D_GNU_SOURCE $(CFLAGS) -o $@ $<

# Results in $(BUILD)/bench/results.{txt,json,csv}; never gates anything on times.
.PHONY: bench
bench: $(BUILD)/stratafs
	@BUILD=$(BUILD) python3 tests/bench/bench.py

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
install: all
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/

clean:
	rm -rf $(BUILD)

# ---- rules -----------------------------------------------------------------
# Objects depend on the flags they were built with: switching CI/WERROR/CFLAGS rebuilds.
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(ALL_CFLAGS) $(FUSE_FEATURES) $(LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(ALL_CFLAGS) $(FUSE_FEATURES) $(LDFLAGS)' >$@
.PHONY: FORCE
FORCE:

$(BUILD)/stratafs: $(CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CORE_PC_LIBS) -lpthread

$(BUILD)/strata: $(DRIVER_OBJS) $(DRIVER_CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DRIVER_PC_LIBS) $(if $(DRIVER_CORE_OBJS),$(CORE_PC_LIBS)) -lpthread

$(BUILD)/strata-hook: $(HOOK_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(HOOK_PC_LIBS) -lpthread

$(DRIVER_UNIT_BINS): $(BUILD)/tests/test_%: $(OBJ)/tests/unit/test_%.o $(DRIVER_LIB_OBJS) $(DRIVER_CORE_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DRIVER_PC_LIBS) $(CORE_PC_LIBS) -lpthread

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(filter-out driver/main.c driver/spawn.c driver/mount.c driver/status.c driver/state.c,$(DRIVER_SRCS)) driver/strata.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -std=gnu11 -D_GNU_SOURCE -Icore -Idriver $(DRIVER_PC_CFLAGS) -o $@ \
		$(filter %.c,$^) $(DRIVER_PC_LIBS)

# The option parser alone; the on-disk harness links every core file but main.c.
$(BUILD)/fuzz/fuzz_params: tests/fuzz/fuzz_params.c core/params.c core/ovl.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -std=gnu11 -D_GNU_SOURCE -Icore $(CORE_PC_CFLAGS) -o $@ \
		$(filter %.c,$^)

$(BUILD)/fuzz/fuzz_layer: tests/fuzz/fuzz_layer.c $(filter-out core/main.c,$(CORE_SRCS)) core/ovl.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -std=gnu11 -D_GNU_SOURCE -Icore $(CORE_PC_CFLAGS) $(FUSE_FEATURES) -o $@ \
		$(filter %.c,$^) $(CORE_PC_LIBS) -lpthread

$(BUILD)/tests/test_%: $(OBJ)/tests/unit/test_%.o $(CORE_LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CORE_PC_LIBS) -lpthread

$(OBJ)/core/%.o: core/%.c Makefile $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(FUSE_FEATURES) $(CORE_PC_CFLAGS) -c -o $@ $<

$(OBJ)/driver/%.o: driver/%.c Makefile $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icore $(FUSE_FEATURES) $(DRIVER_PC_CFLAGS) $(CORE_PC_CFLAGS) -c -o $@ $<

$(OBJ)/oci-hooks/%.o: oci-hooks/%.c Makefile $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(HOOK_PC_CFLAGS) -c -o $@ $<

$(OBJ)/tests/unit/%.o: tests/unit/%.c Makefile $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icore $(if $(filter $(BUILD)/tests/$*,$(DRIVER_UNIT_BINS)),-Idriver $(DRIVER_PC_CFLAGS)) $(FUSE_FEATURES) $(CORE_PC_CFLAGS) -c -o $@ $<

# Unit test objects are intermediate to make, but keep them for incremental builds.
.SECONDARY:

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
