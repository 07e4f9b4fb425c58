# tierd — plain Makefile. Outputs go under build/ (build/san/ for SANITIZE=1).
#   make            build everything        make check     man lint + unit + kernel tests
#   make demo       see tiering happen      make bench     benchmarks → bench/results/
#   make install    DESTDIR/PREFIX aware    make help      this list
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
# Objects and test binaries are intermediate in pattern chains; keep them between runs.
.SECONDARY:
.SUFFIXES:

PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
SBINDIR  ?= $(PREFIX)/sbin
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
SYSCONFDIR ?= /etc
DOCDIR   ?= $(PREFIX)/share/doc/tierd
MANDIR   ?= $(PREFIX)/share/man
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

VERSION  := 0.1
CC       ?= cc
PKG_CONFIG ?= pkg-config
SANITIZE ?= 0
V        ?= 0

ifeq ($(SANITIZE),1)
BUILD    ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer, for libtier's control thread (make check-tsan).
BUILD    ?= build/tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
BUILD    ?= build
SANFLAGS :=
endif

CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers -fPIC -D_GNU_SOURCE $(SANFLAGS)
CPPFLAGS += -Iinclude -Ilib -Idaemon -Ipolicy -Ibpf -Itests/lib -DTIERD_VERSION=\"$(VERSION)\"
LDFLAGS  += $(SANFLAGS)
LIBS_D   := $(shell $(PKG_CONFIG) --libs libsystemd 2>/dev/null || echo -lsystemd) -lnuma \
            $(shell $(PKG_CONFIG) --libs inih 2>/dev/null || echo -linih) -lm \
            $(shell $(PKG_CONFIG) --libs libcap-ng 2>/dev/null || echo -lcap-ng)
LIBS_JSON := $(shell $(PKG_CONFIG) --libs json-c 2>/dev/null || echo -ljson-c)
LIBS_T   := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null || echo -lcmocka)
# libbpf's .pc lists libelf and zlib as private: the static form names everything it needs.
LIBS_BPF := $(shell $(PKG_CONFIG) --libs --static libbpf 2>/dev/null || echo -lbpf -lelf -lz)

# eBPF programs (bpf/*.bpf.c): clang → $(BUILD)/bpf/NAME.bpf.o → bpftool gen skeleton →
# NAME.skel.h, which the loader (daemon/bpf.c) includes; vmlinux.h comes from the running
# kernel's BTF (CO-RE: the object relocates itself on any kernel with BTF), or, where there is
# none (or VMLINUX_BTF=none), is the checked-in bpf/vmlinux-fallback.h.
BPF_CLANG  ?= clang
BPFTOOL    ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_ARCH   := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' -e 's/ppc64le/powerpc/' \
		-e 's/s390x/s390/' -e 's/riscv64/riscv/')
# -mcpu=v3: atomic fetch-or (fault.bpf.c's first-touch bits); kernels >= 5.12 run it, Debian 12's 6.1 too.
BPF_CFLAGS_BASE := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(BPF_ARCH) -Wall -Werror
BPF_CFLAGS := $(BPF_CFLAGS_BASE) -I$(BUILD)/bpf -Ibpf
# Each program file is compiled on its own, then all are linked into one object, samplers.bpf.o
# (bpftool gen object: the BPF static linker), with one skeleton: loading an object costs libbpf
# two reads of the kernel's 5 MiB BTF, ~0.15 s here, and tierd's start waits for it.
BPF_PROGS  := fault migrate
BPF_SKELS  := $(BUILD)/bpf/samplers.skel.h

ifeq ($(V),0)
Q = @
say = @printf '  %-7s %s\n' $(1) $(2);
else
Q =
say =
endif

COMMON_SRC := lib/uffd.c lib/proto.c
POLICY_SRC := policy/host.c policy/plan.c policy/builtin_hotness.c policy/builtin_lru.c \
              policy/builtin_none.c policy/trace.c
# The simulator's engine (tierd-sim, and the unit tests that drive it).
SIM_SRC    := policy/sim.c
DAEMON_SRC := daemon/main.c daemon/manager.c daemon/attach.c daemon/segment.c daemon/region.c \
              daemon/log.c daemon/migrate.c daemon/tiers.c daemon/placement.c daemon/config.c \
              daemon/policyd.c daemon/record.c daemon/metrics.c daemon/events.c daemon/syscheck.c \
              daemon/bpf.c daemon/sampler.c daemon/perfsel.c daemon/memcg.c daemon/privs.c daemon/mems.c \
              $(POLICY_SRC)
LIBTIER_SRC := lib/libtier.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

TIERD      := $(BUILD)/tierd
LIBTIER_SO := $(BUILD)/libtier.so.1
LIBTIER_A  := $(BUILD)/libtier.a
TOOLS      := $(BUILD)/tierd-demo $(BUILD)/tierd-bench $(BUILD)/tierctl $(BUILD)/tierd-sim
# The example policy module (examples/policy-example), built by its own Makefile.
EXAMPLES   := $(BUILD)/examples/recency.so
# man/NAME.N.scd → $(BUILD)/man/NAME.N
MAN_PAGES  := $(patsubst man/%.scd,$(BUILD)/man/%,$(wildcard man/*.scd))

UNIT_TESTS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
KERNEL_TESTS := $(patsubst tests/kernel/%.c,$(BUILD)/tests/kernel/%,$(wildcard tests/kernel/test_*.c))
VM_TESTS     := $(patsubst tests/vm/%.c,$(BUILD)/tests/vm/%,$(wildcard tests/vm/test_*.c))
TEST_HELPERS := $(BUILD)/tests/helpers/tier-client $(BUILD)/tests/helpers/preload-app \
                $(BUILD)/tests/helpers/libfi.so
# The LD_PRELOAD shim (lib/preload.c + libtier, one self-contained .so) goes into programs built
# without sanitizers (PostgreSQL): it and its test program are never instrumented.
PRELOAD_SO     := $(BUILD)/libtier-preload.so
PRELOAD_CFLAGS := $(filter-out $(SANFLAGS),$(CFLAGS))

# ThreadSanitizer on the threaded parts: libtier's control thread (attach, zap, heartbeat,
# guardian) against the application's threads, in test_wake: 64 threads blocked on tracked pages
# while the guardian or a hang-up releases them, the main thread reading the segment's state; and
# tierd's own threads, in test_privs: the eBPF loading thread beside the main loop that serves
# (each tierd there must exit 0, so a report in tierd fails the test). It is built with TSan in
# build/tsan with libtier and tierd. A report fails the process that makes it (halt_on_error, exit
# 66), and with it the test. Not here (docs/reliability.md): test_track's forked children (TSan
# refuses the thread libtier's atfork handler starts in a child of a threaded process) and
# test_failopen (its client has 700 ms to attach before tierd is killed; a TSan client may not).
TSAN_TESTS := test_wake test_privs
.PHONY: check-tsan tsan-run
check-tsan:
	$(Q)$(MAKE) --no-print-directory SANITIZE=thread tsan-run
tsan-run: $(TIERD) $(BUILD)/tierctl $(TEST_HELPERS) $(patsubst %,$(BUILD)/tests/kernel/%,$(TSAN_TESTS))
	$(Q)TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" BUILD=$(BUILD) \
		tests/run.sh $(patsubst %,$(BUILD)/tests/kernel/%,$(TSAN_TESTS))

.PHONY: check-install
.PHONY: all check check-unit check-kernel check-vm check-systemd check-man demo demo-vm bench install \
	clean help
all: $(TIERD) $(LIBTIER_SO) $(LIBTIER_A) $(PRELOAD_SO) $(TOOLS) $(EXAMPLES) $(MAN_PAGES)

$(BUILD)/obj/%.o: %.c
	$(call say,CC,$<)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(TIERD): $(call obj,$(DAEMON_SRC) $(COMMON_SRC))
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_D) $(LIBS_BPF)

# VMLINUX_BTF=FILE names another kernel's BTF; without readable BTF (or VMLINUX_BTF=none) the
# hand-maintained bpf/vmlinux-fallback.h stands in (the programs still need BTF where they run).
$(BUILD)/bpf/vmlinux.h: bpf/vmlinux-fallback.h
	$(call say,GEN,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)if [ "$(VMLINUX_BTF)" != none ] && [ -r "$(VMLINUX_BTF)" ]; then \
		$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c >$@; \
	else \
		echo "note: no kernel BTF at $(VMLINUX_BTF): building the BPF programs against" \
			"bpf/vmlinux-fallback.h" >&2; \
		cp bpf/vmlinux-fallback.h $@; \
	fi

# The fallback must keep building every program, and what it builds must load and count: make
# check builds the programs against it alone in $(BPF_FB) (never against the generated header),
# links test_bpf with the loader over those skeletons, and runs it next to the regular one.
BPF_FB := $(BUILD)/bpf-fallback
$(BPF_FB)/vmlinux.h: bpf/vmlinux-fallback.h
	$(Q)mkdir -p $(dir $@)
	$(Q)cp $< $@
$(BPF_FB)/%.bpf.o: bpf/%.bpf.c bpf/tierd.bpf.h $(BPF_FB)/vmlinux.h
	$(call say,BPF,$@)
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS_BASE) -I$(BPF_FB) -Ibpf -c -o $@ $<
$(BPF_FB)/samplers.bpf.o: $(patsubst %,$(BPF_FB)/%.bpf.o,$(BPF_PROGS))
	$(call say,BPFLINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $^
$(BPF_FB)/samplers.skel.h: $(BPF_FB)/samplers.bpf.o
	$(call say,GENSKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name samplers_bpf >$@
$(BPF_FB)/bpf.o: daemon/bpf.c daemon/bpf.h daemon/perfsel.h bpf/tierd.bpf.h $(BPF_FB)/samplers.skel.h
	$(call say,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) -I$(BPF_FB) $(CFLAGS) -c -o $@ $<
$(BPF_FB)/test_bpf: $(call obj,tests/kernel/test_bpf.c tests/lib/harness.c daemon/log.c daemon/perfsel.c) $(BPF_FB)/bpf.o \
		$(LIBTIER_A)
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_T) -lpthread $(LIBS_BPF) $(LIBS_D) -lnuma

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c bpf/tierd.bpf.h $(BUILD)/bpf/vmlinux.h
	$(call say,BPF,$@)
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c -o $@ $<

$(BUILD)/bpf/samplers.bpf.o: $(patsubst %,$(BUILD)/bpf/%.bpf.o,$(BPF_PROGS))
	$(call say,BPFLINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $^

$(BUILD)/bpf/samplers.skel.h: $(BUILD)/bpf/samplers.bpf.o
	$(call say,GENSKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name samplers_bpf >$@

# The loader includes the generated skeletons (the shared header bpf/tierd.bpf.h is on CPPFLAGS).
$(BUILD)/obj/daemon/bpf.o: CPPFLAGS += -I$(BUILD)/bpf
$(BUILD)/obj/daemon/bpf.o: $(BPF_SKELS)

$(LIBTIER_SO): $(call obj,$(LIBTIER_SRC) $(COMMON_SRC)) lib/libtier.map
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,-soname,libtier.so.1 -Wl,--version-script=lib/libtier.map \
		-o $@ $(call obj,$(LIBTIER_SRC) $(COMMON_SRC)) -lpthread
	$(Q)ln -sf libtier.so.1 $(BUILD)/libtier.so

$(PRELOAD_SO): lib/preload.c lib/preload.map $(LIBTIER_SRC) $(COMMON_SRC) $(wildcard include/tierd/*.h lib/*.h)
	$(call say,LINK,$@)
	$(Q)$(CC) $(CPPFLAGS) $(PRELOAD_CFLAGS) -fvisibility=hidden -shared \
		-Wl,--version-script=lib/preload.map -o $@ lib/preload.c $(LIBTIER_SRC) $(COMMON_SRC) \
		-lpthread -ldl

$(BUILD)/tests/helpers/preload-app: tests/helpers/preload-app.c
	$(call say,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(PRELOAD_CFLAGS) -o $@ $< -lpthread

# Fault injection into tierd's uffd ioctls (LD_PRELOAD, tests only): never instrumented either.
$(BUILD)/tests/helpers/libfi.so: tests/helpers/fi-preload.c
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(PRELOAD_CFLAGS) -shared -o $@ $< -ldl

$(LIBTIER_A): $(call obj,$(LIBTIER_SRC) $(COMMON_SRC))
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# The simulator links the policies, their host and the daemon's region sampler; no libtier.
$(BUILD)/tierd-sim: $(call obj,tools/tierd-sim.c $(SIM_SRC) $(POLICY_SRC) daemon/region.c)
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lm

$(BUILD)/tierd-%: $(call obj,tools/tierd-%.c) $(LIBTIER_A)
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lpthread -lnuma -lm $(LDLIBS_EXTRA)

# tierd-bench's bpf_overhead drives the eBPF loader directly.
$(BUILD)/tierd-bench: $(call obj,daemon/bpf.c daemon/log.c)
$(BUILD)/tierd-bench: LDLIBS_EXTRA := $(LIBS_BPF) $(LIBS_D)

$(BUILD)/tierctl: $(call obj,tools/tierctl.c) $(LIBTIER_A)
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lpthread $(LIBS_JSON)

# The example builds against the public header alone, exactly as an outside author's would; only
# the sanitizer flags are passed down, so that SANITIZE=1 tests load an instrumented module.
$(BUILD)/examples/recency.so: examples/policy-example/recency.c examples/policy-example/Makefile \
		include/tierd/policy.h
	$(call say,MAKE,$@)
	$(Q)$(MAKE) $(if $(Q),-s) -C examples/policy-example O=$(abspath $(BUILD)/examples) CC="$(CC)" \
		CFLAGS="-O2 -g $(SANFLAGS)" LDFLAGS="$(SANFLAGS)" TIERD_INCLUDE=$(abspath include)

# scdoc renders; man/tidy.awk drops the no-op paragraph macros it emits around headings.
$(BUILD)/man/%: man/%.scd man/tidy.awk
	$(call say,SCDOC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)scdoc <$< >$@.tmp && awk -f man/tidy.awk $@.tmp >$@ && rm -f $@.tmp

# Every rendered page must be lint-clean: mandoc prints nothing at -W warning for a good page.
check-man: $(MAN_PAGES)
	$(Q)rc=0; for m in $(MAN_PAGES); do \
		out=$$(mandoc -T lint -W warning $$m 2>&1); \
		if [ -n "$$out" ]; then echo "$$out"; rc=1; fi; \
	done; exit $$rc

# Fuzz targets (tests/fuzz/fuzz_NAME.c, docs/fuzzing.md), built twice: here as a replay of the
# committed corpus tests/fuzz/corpus/NAME/ (replay.c's main, the normal compiler and flags, run by
# make check); by `make fuzz` with clang's libFuzzer (below).
FUZZ_TARGETS := config proto trace
FUZZ_REPLAY  := $(patsubst %,$(BUILD)/tests/fuzz/fuzz_%,$(FUZZ_TARGETS))
# The code under test, per target.
FUZZ_SRC_config := daemon/config.c
FUZZ_SRC_proto  := lib/proto.c
FUZZ_SRC_trace  := policy/trace.c

$(BUILD)/obj/tests/fuzz/replay-%.o: tests/fuzz/replay.c
	$(call say,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -DFUZZ_CORPUS='"tests/fuzz/corpus/$*"' -MMD -MP -c -o $@ $<

$(BUILD)/tests/fuzz/fuzz_config: $(call obj,$(FUZZ_SRC_config))
$(BUILD)/tests/fuzz/fuzz_proto: $(call obj,$(FUZZ_SRC_proto))
$(BUILD)/tests/fuzz/fuzz_trace: $(call obj,$(FUZZ_SRC_trace))
$(BUILD)/tests/fuzz/fuzz_%: $(call obj,tests/fuzz/fuzz_%.c) $(BUILD)/obj/tests/fuzz/replay-%.o
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_T) -linih

# Unit tests link the daemon's pure modules directly.
UNIT_LINK := $(call obj,daemon/region.c daemon/segment.c daemon/log.c daemon/migrate.c daemon/tiers.c daemon/mems.c \
	daemon/config.c daemon/syscheck.c daemon/perfsel.c $(POLICY_SRC) $(SIM_SRC) $(COMMON_SRC))
$(BUILD)/tests/unit/%: $(call obj,tests/unit/%.c) $(UNIT_LINK)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_T) $(LIBS_D)

# test_sim runs the simulator's CLI too.
$(BUILD)/tests/unit/test_sim: | $(BUILD)/tierd-sim $(EXAMPLES)

# test_recency dlopens the example module from $(BUILD)/examples at run time (not linked).
$(BUILD)/tests/unit/test_recency: | $(EXAMPLES)

$(BUILD)/tests/kernel/%: $(call obj,tests/kernel/%.c tests/lib/harness.c) $(LIBTIER_A)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_T) -lpthread $(LDLIBS_EXTRA)

# test_bpf drives the loader directly.
$(BUILD)/tests/kernel/test_bpf: $(call obj,daemon/bpf.c daemon/log.c daemon/perfsel.c)
$(BUILD)/tests/kernel/test_bpf: LDLIBS_EXTRA := $(LIBS_BPF) $(LIBS_D) -lnuma

# The raw protocol clients of the hostile and misbehaving-client tests.
$(BUILD)/tests/kernel/test_hostile $(BUILD)/tests/kernel/test_misbehave: $(call obj,tests/lib/rawclient.c)
# The chaos loops share tests/lib/chaos.c (clients, kills, re-attach polling).
$(BUILD)/tests/kernel/test_chaos: $(call obj,tests/lib/chaos.c)

# test_tierctl parses tierctl's JSON with json-c.
$(BUILD)/tests/kernel/test_tierctl: LDLIBS_EXTRA := $(LIBS_JSON)

# test_policyd reads the traces tierd records, and replays them with tierd-sim.
$(BUILD)/tests/kernel/test_policyd: | $(BUILD)/tierd-sim
$(BUILD)/tests/kernel/test_policyd: $(call obj,policy/trace.c)

# Tests for a machine with several NUMA nodes (run in the QEMU guest by make check-vm).
$(BUILD)/tests/vm/%: $(call obj,tests/vm/%.c tests/vm/vmlib.c tests/lib/harness.c) $(LIBTIER_A)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_T) -lpthread -lnuma $(LDLIBS_EXTRA)

$(BUILD)/tests/vm/test_chaos_vm: $(call obj,tests/lib/chaos.c)

# test_kmig drives the eBPF loader's migration-outcome counter directly.
$(BUILD)/tests/vm/test_kmig: $(call obj,daemon/bpf.c daemon/log.c)
$(BUILD)/tests/vm/test_kmig: LDLIBS_EXTRA := $(LIBS_BPF) $(LIBS_D)

$(BUILD)/tests/helpers/%: $(call obj,tests/helpers/%.c tests/lib/harness.c) $(LIBTIER_A)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_T) -lpthread

# The systemd run (tests/systemd/run-nspawn.sh) boots systemd in a container with the hardened
# unit; sanitizer builds skip it (the unit's syscall filter and LockPersonality are not for them).
# Exit 77 is a skip, said by the script.
CHECK_SYSTEMD = $(Q)BUILD=$(BUILD) tests/systemd/run-nspawn.sh; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]
# PostgreSQL (huge_pages=on) under the LD_PRELOAD shim (tests/pg/run.sh, ~1 min): PostgreSQL is not
# instrumented, so sanitizer builds skip it too. 77 = no PostgreSQL here (TIERD_PG_REQUIRED=1, as
# .ci/run sets, makes that a failure).
CHECK_PG = $(Q)BUILD=$(BUILD) tests/pg/run.sh; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]
# Policy modules the loader tests dlopen (tests/policy/: misbehaving on purpose).
TEST_MODULES := $(patsubst tests/policy/%.c,$(BUILD)/tests/policy/%.so,$(wildcard tests/policy/*.c))
$(BUILD)/tests/policy/%.so: tests/policy/%.c include/tierd/policy.h
	$(call say,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -shared -o $@ $< $(LDFLAGS)

# Static analysis (make analyze; not part of make check): gcc's -fanalyzer over the daemon, libtier,
# the LD_PRELOAD shim and the tools, each file compiled on its own into $(BUILD)/analyze/ (nothing
# is linked), without sanitizers. The analyzer's warnings stay warnings (-Werror still holds for
# every other one); they are listed and counted, and docs/reliability.md triages them. None is
# silenced: the target fails only when there are more than ANALYZE_KNOWN, the false positives
# triaged there (gcc 12, Debian 12), so a new warning fails it while the known ones stay in view.
ANALYZE_SRC   := $(DAEMON_SRC) $(COMMON_SRC) $(LIBTIER_SRC) lib/preload.c $(SIM_SRC) $(wildcard tools/*.c)
ANALYZE_LOGS  := $(patsubst %.c,$(BUILD)/analyze/%.log,$(ANALYZE_SRC))
ANALYZE_KNOWN := 15
# -Wno-error= for each analyzer warning this gcc has; asked of gcc once, when first used.
ANALYZE_FLAGS = $(eval ANALYZE_FLAGS := -fanalyzer $$(shell $(CC) -Q --help=warnings 2>/dev/null | \
	grep -o -- '-Wanalyzer-[a-z0-9-]*' | sort -u | sed 's/^-W/-Wno-error=/'))$(ANALYZE_FLAGS)
.PHONY: analyze
analyze: $(ANALYZE_LOGS)
	$(Q)grep -h -E 'warning: .*\[-Wanalyzer-' $^ | sort -u >$(BUILD)/analyze/warnings.txt; \
	n=$$(wc -l <$(BUILD)/analyze/warnings.txt); cat $(BUILD)/analyze/warnings.txt; \
	echo "analyze: $$n warning(s), $(ANALYZE_KNOWN) known false positives (docs/reliability.md);" \
		"the paths are in $(BUILD)/analyze/*/*.log"; \
	[ $$n -le $(ANALYZE_KNOWN) ]

$(BUILD)/analyze/%.log: %.c
	$(call say,ANALYZE,$<)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(filter-out $(SANFLAGS),$(CFLAGS)) $(ANALYZE_FLAGS) -MMD -MP -MT $@ \
		-MF $(@:.log=.d) -c -o $(@:.log=.o) $< 2>$@.tmp || { cat $@.tmp; rm -f $@.tmp; exit 1; }
	$(Q)mv $@.tmp $@

$(BUILD)/analyze/daemon/bpf.log: CPPFLAGS += -I$(BUILD)/bpf
$(BUILD)/analyze/daemon/bpf.log: $(BPF_SKELS)

# The install check links an uninstrumented client against the installed libtier: not in
# sanitizer builds (whose libtier wants the ASan runtime first).
ifeq ($(SANITIZE),0)
CHECK_INSTALL := check-install
endif
check: all check-man $(CHECK_INSTALL) $(UNIT_TESTS) $(FUZZ_REPLAY) $(KERNEL_TESTS) $(TEST_HELPERS) \
		$(TEST_MODULES) $(BPF_FB)/test_bpf
	$(Q)BUILD=$(BUILD) tests/run.sh $(UNIT_TESTS) $(FUZZ_REPLAY) $(KERNEL_TESTS) $(BPF_FB)/test_bpf
ifeq ($(SANITIZE),0)
	$(CHECK_SYSTEMD)
	$(CHECK_PG)
endif

# make install into a temporary DESTDIR, and build against what it laid out.
check-install: all
	$(Q)BUILD=$(BUILD) tests/install/run.sh

check-systemd: all $(TEST_HELPERS)
	$(CHECK_SYSTEMD)

.PHONY: check-pg
check-pg: all
	$(CHECK_PG)

check-unit: $(UNIT_TESTS) $(FUZZ_REPLAY) $(TEST_MODULES)
	$(Q)BUILD=$(BUILD) tests/run.sh $(UNIT_TESTS) $(FUZZ_REPLAY)

check-kernel: all $(KERNEL_TESTS) $(TEST_HELPERS) $(TEST_MODULES)
	$(Q)BUILD=$(BUILD) tests/run.sh $(KERNEL_TESTS)

# Multi-node tests in a QEMU guest (tests/vm/run-vm.sh; this host has one NUMA node). The guest
# kernel is fetched once into build/vm-cache/. GUEST_TESTS="..." picks the binaries to run.
# Two guests: two nodes, and three whose node 2 is a hot-plugged DIMM (all of it can go offline)
# nearer than node 1, so the node that goes away in test_node_offline is tierd's demotion target.
# Both run even when the first fails.
VM_TOPOLOGIES := "--nodes 2" "--nodes 3 --distances 30,20,20 --hotplug-last"
check-vm: all $(VM_TESTS) $(KERNEL_TESTS) $(TEST_HELPERS)
	$(Q)rc=0; for topo in $(VM_TOPOLOGIES); do \
		BUILD=$(BUILD) tests/vm/run-vm.sh $$topo --timeout 1200 -- tests/vm/guest-check.sh \
			|| rc=1; \
	done; exit $$rc

# The chaos loop at length (tests/kernel/test_chaos.c, docs/chaos.md): tierd killed CHAOS_CYCLES
# times and stopped CHAOS_STOP_CYCLES times under checksummed clients (make check runs 10 kills
# and no stop: see docs/chaos.md).
# CHAOS_SEED=N replays the schedule of a failed run (each run prints its seed).
CHAOS_CYCLES      ?= 100
CHAOS_STOP_CYCLES ?= 20
.PHONY: chaos
# test_wake (64 threads blocked, then released: docs/reliability.md) runs WAKE_ROUNDS rounds of
# each case here, 3 in make check; test_scale storms with SCALE_STORM children (250 in make check).
WAKE_ROUNDS ?= 20
SCALE_STORM ?= 1000
chaos: all $(BUILD)/tests/kernel/test_chaos $(BUILD)/tests/kernel/test_wake \
		$(BUILD)/tests/kernel/test_scale $(TEST_HELPERS)
	$(Q)CHAOS_CYCLES=$(CHAOS_CYCLES) CHAOS_STOP_CYCLES=$(CHAOS_STOP_CYCLES) BUILD=$(BUILD) \
		WAKE_ROUNDS=$(WAKE_ROUNDS) SCALE_STORM=$(SCALE_STORM) TEST_TIMEOUT=900 tests/run.sh \
		$(BUILD)/tests/kernel/test_chaos $(BUILD)/tests/kernel/test_wake \
		$(BUILD)/tests/kernel/test_scale

demo-vm: all
	$(Q)BUILD=$(BUILD) tests/vm/run-vm.sh --nodes 2 --timeout 600 -- tools/demo.sh

# The benches that need several NUMA nodes, in the 2-node guest; results → bench/results/core.jsonl.
.PHONY: bench-vm
bench-vm: all
	$(Q)BUILD=$(BUILD) tools/bench-vm.sh

# PostgreSQL's huge page buffer pool starting on the slow node of the 2-node guest (~10 min).
.PHONY: bench-vm-pg
bench-vm-pg: all
	$(Q)BUILD=$(BUILD) VM_TIMEOUT=$${VM_TIMEOUT:-1500} tools/bench-vm.sh pgbench_numa

demo: all
	$(Q)BUILD=$(BUILD) tools/demo.sh

bench: all
	$(Q)BUILD=$(BUILD) tools/bench.sh

# libFuzzer runs (clang only here; make check needs no clang). Each target runs FUZZ_SECONDS on
# its corpus, finds go to build/fuzz/found-NAME/, then a near-minimal set of those that reach new
# code (edges, not hit counts) is merged into tests/fuzz/corpus/NAME/ (commit them); a crash is saved as build/fuzz/artifacts-NAME/crash-*
# and fails the run. make -j2 fuzz runs two at a time. Inputs stay small (FUZZ_MAX_LEN) so the
# corpus stays reviewable.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
FUZZ_CFLAGS  := -g -O1 -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
		-Wmissing-prototypes -Wno-missing-field-initializers -D_GNU_SOURCE \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_BINS    := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
.PHONY: fuzz fuzz-build $(addprefix fuzz-,$(FUZZ_TARGETS))
fuzz: $(addprefix fuzz-,$(FUZZ_TARGETS))
fuzz-build: $(FUZZ_BINS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(wildcard include/tierd/*.h lib/*.h daemon/*.h policy/*.h) \
		daemon/config.c lib/proto.c policy/trace.c
	$(call say,FUZZCC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) -linih

# The generated seeds (tests/fuzz/gen-seeds.c), rewritten in place; run once and committed.
.PHONY: fuzz-seeds
fuzz-seeds: $(BUILD)/tests/fuzz/gen-seeds
	$(Q)$< tests/fuzz/corpus/proto tests/fuzz/corpus/trace
$(BUILD)/tests/fuzz/gen-seeds: $(call obj,tests/fuzz/gen-seeds.c lib/proto.c policy/trace.c)
	$(call say,LINK,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

$(addprefix fuzz-,$(FUZZ_TARGETS)): fuzz-%: build/fuzz/fuzz_%
	$(Q)mkdir -p build/fuzz/found-$* build/fuzz/artifacts-$*
	$(Q)$< -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/artifacts-$*/ build/fuzz/found-$* tests/fuzz/corpus/$*
	$(Q)$< -set_cover_merge=1 -use_counters=0 -max_len=$(FUZZ_MAX_LEN) tests/fuzz/corpus/$* build/fuzz/found-$* \
		2>build/fuzz/merge-$*.log && tail -1 build/fuzz/merge-$*.log

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)/tierd
	install -m 0755 $(TIERD) $(DESTDIR)$(SBINDIR)/tierd
	install -m 0755 $(BUILD)/tierctl $(DESTDIR)$(BINDIR)/tierctl
	install -m 0755 $(BUILD)/tierd-sim $(DESTDIR)$(BINDIR)/tierd-sim
	install -m 0755 $(LIBTIER_SO) $(DESTDIR)$(LIBDIR)/libtier.so.1
	ln -sf libtier.so.1 $(DESTDIR)$(LIBDIR)/libtier.so
	install -m 0644 $(LIBTIER_A) $(DESTDIR)$(LIBDIR)/libtier.a
	install -m 0755 $(PRELOAD_SO) $(DESTDIR)$(LIBDIR)/libtier-preload.so
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/tierd/policies
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' lib/libtier.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/libtier.pc
	install -m 0644 include/tierd/tier.h include/tierd/proto.h include/tierd/policy.h \
		$(DESTDIR)$(INCDIR)/tierd/
	# Each page into the directory of its section (tierd-policy.7 → man7/).
	for m in $(MAN_PAGES); do sec=$${m##*.}; \
		install -d $(DESTDIR)$(MANDIR)/man$$sec && install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$sec/ \
			|| exit 1; \
	done
	# The documented example; an existing configuration is never overwritten.
	install -d $(DESTDIR)$(SYSCONFDIR)/tierd/tierd.conf.d $(DESTDIR)$(DOCDIR)
	install -m 0644 config/tierd.conf $(DESTDIR)$(DOCDIR)/tierd.conf.example
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/tierd.service.in >$(DESTDIR)$(UNITDIR)/tierd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/tierd.service
	install -m 0644 systemd/tierd.socket $(DESTDIR)$(UNITDIR)/tierd.socket
	install -m 0644 systemd/tierd.sysusers $(DESTDIR)$(SYSUSERSDIR)/tierd.conf

clean:
	rm -rf build

help:
	@sed -n '2,4p' Makefile | sed 's/^# //'
	@echo "  SANITIZE=1 builds and tests under ASan/UBSan in build/san/; V=1 shows commands."
	@echo "  make fuzz       libFuzzer (clang) on each target for FUZZ_SECONDS (60); docs/fuzzing.md"
	@echo "  make chaos      tierd killed 100 times and stopped 20 under checksummed clients;"
	@echo "                  CHAOS_SEED=N replays a run (docs/chaos.md)"
	@echo "  make check-pg   PostgreSQL (huge_pages=on) under the LD_PRELOAD shim (part of check;"
	@echo "                  docs/postgres.md)"
	@echo "  make bench-vm-pg  PostgreSQL's buffer pool starting on the slow node of the 2-node"
	@echo "                  guest: tierd vs none vs NUMA balancing (~12 min; docs/postgres.md)"
	@echo "  make check-tsan libtier's control thread under ThreadSanitizer (build/tsan)"
	@echo "  make analyze    gcc -fanalyzer over tierd, libtier, the shim and the tools"
	@echo "                  (docs/reliability.md triages its warnings)"

-include $(shell find $(BUILD)/obj $(BUILD)/analyze -name '*.d' 2>/dev/null)
