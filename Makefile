# strata - one entry point for building and checking.
#
#   make              build build/stratafs (and build/strata, build/strata-hook when
#                     driver/ and oci-hooks/ hold sources)
#   make deps         install the Debian packages the build and the tests need
#   make check        deps, build, unit tests, format check, bats suites (tests/run.sh),
#                     PT_TESTS against the passthrough build, then the unit tests and
#                     ASAN_SUITES again on the ASan+UBSan build
#   make demo         deps, build, then scripts/demo.sh (a 3-layer overlay, step by step)
#   make format       clang-format -i every C source and header
#   make format-check fail if clang-format would change anything
#   make install      programs, man pages, hooks.d files and docs under $(DESTDIR)$(PREFIX)
#                     (PREFIX=/usr/local; also BINDIR LIBEXECDIR DATADIR MANDIR DOCDIR HOOKSDIR)
#   make uninstall    remove what make install installed
#   make man          the man pages (docs/*.scd, scdoc) in $(BUILD)/man; part of `make`
#   make deb          a Debian package ($(BUILD)/deb/strata_VERSION_ARCH.deb), lintian-checked
#   make rpm          an RPM from packaging/rpm/strata.spec ($(BUILD)/rpm/RPMS/)
#   make fuzz         build the libFuzzer targets (clang) and run each for FUZZ_TIME seconds
#                     (default 60) on tests/fuzz/corpus/NAME: the strata spec parser (spec),
#                     stratafs's option parser (params), random layer trees mounted in-process
#                     and walked (layer; root); extra flags in tests/fuzz/NAME.flags
#   make asan         build stratafs, strata and the unit tests with ASan+UBSan into
#                     $(BUILD)/asan (make check runs the unit tests and ASAN_SUITES on it)
#   make tools        test helpers in $(BUILD)/tools (tests/tools/*.c: the fsx checker)
#   make passthrough  build $(BUILD)/pt/stratafs against a private static libfuse 3.17
#                     (scripts/libfuse.sh: Debian trixie's source package) with FUSE passthrough
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
# FUSE passthrough needs libfuse >= 3.16 (Debian 12 ships 3.14). FUSE_PREFIX=DIR builds against
# the libfuse installed there (make passthrough sets it to the private build).
FUSE_PREFIX ?=
# ($(shell) does not see exported variables before GNU make 4.4: set it on the command.)
ifneq ($(FUSE_PREFIX),)
PKG_CONFIG := PKG_CONFIG_PATH=$(FUSE_PREFIX)/lib/pkgconfig$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH)) $(PKG_CONFIG)
endif
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
# The passthrough build (make passthrough) is checked too, with PT_TESTS; when its libfuse
# cannot be fetched, that counts as one skip saying why; when stratafs does not build
# against it, as one failure.
check:
	@$(MAKE) deps
	@$(MAKE) all unit tools
	@$(MAKE) asan
	@pt=; skip=; fail=; rc=0; BUILD=$(BUILD) scripts/libfuse.sh || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		pt=$(PT_BUILD)/stratafs; \
		$(MAKE) BUILD=$(PT_BUILD) FUSE_PREFIX=$(abspath $(BUILD)/libfuse) $$pt || \
			{ rm -f $$pt; pt=; fail="stratafs does not build against libfuse 3.17"; }; \
	elif [ $$rc -eq 77 ]; then skip="no private libfuse 3.17 (scripts/libfuse.sh says why above)"; \
	else fail="scripts/libfuse.sh failed (exit $$rc)"; fi; \
	CHECK_FORMAT=1 STRATA_ASAN=1 PT_STRATAFS=$$pt PT_TESTS="$(PT_TESTS)" PT_SKIP="$$skip" PT_FAIL="$$fail" tests/run.sh

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

# ---- the passthrough build --------------------------------------------------
# $(BUILD)/pt/stratafs: the same sources, linked statically against libfuse 3.17 built from
# Debian trixie's source package into $(BUILD)/libfuse (cached). scripts/libfuse.sh exits 77
# when it cannot fetch or build it; check then skips the passthrough suites, saying why.
PT_BUILD := $(BUILD)/pt
.PHONY: passthrough libfuse
libfuse:
	@BUILD=$(BUILD) scripts/libfuse.sh

passthrough: libfuse
	@$(MAKE) BUILD=$(PT_BUILD) FUSE_PREFIX=$(abspath $(BUILD)/libfuse) $(PT_BUILD)/stratafs

# Suites run again against the passthrough build by make check (~2 minutes).
# (posix.bats is left out: its O_TMPFILE test expects the tmpfile operation of libfuse >= 3.17,
# which stratafs does not implement yet.)
PT_TESTS ?= tests/bats/semantics.bats tests/bats/copyup.bats tests/bats/whiteout.bats \
	tests/bats/passthrough.bats

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
# The passthrough build is a fourth target when it can be built.
.PHONY: bench
bench: $(BUILD)/stratafs
	@BUILD=$(BUILD) scripts/libfuse.sh && $(MAKE) passthrough || echo "bench: no passthrough build"
	@BUILD=$(BUILD) BENCH_STRATAFS_PT=$${BENCH_STRATAFS_PT-$(if $(wildcard $(PT_BUILD)/stratafs),$(PT_BUILD)/stratafs)} \
		python3 tests/bench/bench.py

# ---- man pages, install, packages ----------------------------------------------
# Man pages: docs/NAME.SECTION.scd (scdoc), generated into $(BUILD)/man/ by `make`.
VERSION   := $(shell sed -n 's/^[#]define STRATA_VERSION "\(.*\)"$$/\1/p' core/ovl.h)
SCDOC     ?= scdoc
MAN_SRCS  := $(wildcard docs/*.[1-8].scd)
MANPAGES  := $(patsubst docs/%.scd,$(BUILD)/man/%,$(MAN_SRCS))

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
DOCDIR     ?= $(DATADIR)/doc/strata
# podman reads /usr/share/containers/oci/hooks.d and /etc/containers/oci/hooks.d; with
# PREFIX=/usr/local pass HOOKSDIR=/usr/share/containers/oci/hooks.d or use --hooks-dir.
HOOKSDIR   ?= $(DATADIR)/containers/oci/hooks.d
INSTALL    ?= install

BIN_PROGRAMS := $(filter-out $(BUILD)/strata-hook,$(PROGRAMS))
HOOK_FILES   := $(wildcard oci-hooks/hooks.d/*.json)
DOC_FILES    := docs/spec.md docs/containerd.md docs/how-it-works.md docs/setup.md docs/troubleshooting.md

.PHONY: man uninstall deb rpm
man: $(MANPAGES)
all: $(MANPAGES)

$(BUILD)/man/%: docs/%.scd core/ovl.h
	@mkdir -p $(@D)
	sed 's/@VERSION@/$(VERSION)/g' $< | \
		SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
		$(SCDOC) >$@.tmp && mv $@.tmp $@

# The hooks.d files and storage.conf name installed paths, so they are written here,
# at install time, from oci-hooks/hooks.d/*.json and packaging/storage.conf.in:
# hook.path becomes $(LIBEXECDIR)/strata/strata-hook, and the hook is told where strata
# is (it looks next to itself by default, and it is not in bin/).
install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0755 $(BIN_PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(filter %.1,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 $(filter %.8,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man8/
	@mkdir -p $(BUILD)/install
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/storage.conf.in >$(BUILD)/install/storage.conf
	$(INSTALL) -m 0644 $(BUILD)/install/storage.conf $(DOC_FILES) $(DESTDIR)$(DOCDIR)/
ifneq ($(filter $(BUILD)/strata-hook,$(PROGRAMS)),)
	$(INSTALL) -d $(DESTDIR)$(LIBEXECDIR)/strata $(DESTDIR)$(HOOKSDIR)
	$(INSTALL) -m 0755 $(BUILD)/strata-hook $(DESTDIR)$(LIBEXECDIR)/strata/
	@set -e; for f in $(HOOK_FILES); do \
		out=$(BUILD)/install/$${f##*/}; \
		sed -e 's|"path": *"[^"]*"|"path": "$(LIBEXECDIR)/strata/strata-hook"|' \
		    -e 's|"args": *\[ *"strata-hook", *|"args": ["strata-hook", "--strata", "$(BINDIR)/strata", |' \
		    "$$f" >"$$out"; \
		grep -qF '"path": "$(LIBEXECDIR)/strata/strata-hook"' "$$out" && \
		grep -qF '"--strata", "$(BINDIR)/strata"' "$$out" || \
			{ echo "install: cannot rewrite hook.path/args in $$f" >&2; exit 1; }; \
		echo "$(INSTALL) -m 0644 $$out $(DESTDIR)$(HOOKSDIR)/"; \
		$(INSTALL) -m 0644 "$$out" $(DESTDIR)$(HOOKSDIR)/; \
	done
endif

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,stratafs strata)
	rm -f $(DESTDIR)$(LIBEXECDIR)/strata/strata-hook
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(filter %.1,$(MANPAGES))))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(filter %.8,$(MANPAGES))))
	rm -f $(addprefix $(DESTDIR)$(HOOKSDIR)/,$(notdir $(HOOK_FILES)))
	rm -f $(DESTDIR)$(DOCDIR)/storage.conf $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(DOC_FILES)))
	rmdir $(DESTDIR)$(LIBEXECDIR)/strata $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# Binary packages of the working tree, in $(BUILD)/deb and $(BUILD)/rpm
# (packaging/build-deb.sh, packaging/build-rpm.sh say how).
deb:
	@BUILD=$(BUILD) VERSION=$(VERSION) packaging/build-deb.sh

rpm:
	@BUILD=$(BUILD) VERSION=$(VERSION) packaging/build-rpm.sh

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
