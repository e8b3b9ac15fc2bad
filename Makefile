# llamachatd: build, run and test. `make run` and `make test` install what
# they need on Debian (as root) or print the apt-get line to run.

# The one version string: --version, the man pages and the package take it.
VERSION := $(shell cat VERSION)
CC ?= cc
SANITIZE ?=
PKGS := libevent libcurl jansson lmdb libconfig libssl libcrypto libsystemd hiredis

# Each compiler and sanitizer setting builds into its own tree.
BUILD := build/$(notdir $(CC))$(if $(SANITIZE),-sanitize)

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(WARNINGS) -DLLAMACHATD_VERSION='"$(VERSION)"'
ifeq ($(SANITIZE),1)
  OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
  OPT := -O2
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) cmocka 2>/dev/null)
# llhttp, Node.js's HTTP parser, from Debian's node-llhttp (llhttp-dev): its C
# sources are compiled here, from where the package puts them.
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INCLUDE ?= /usr/share/include/llhttp
LLHTTP_SRCS := $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c $(LLHTTP_DIR)/llhttp.c
LLHTTP_OBJS := $(patsubst $(LLHTTP_DIR)/%.c,$(BUILD)/llhttp/%.o,$(LLHTTP_SRCS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)
ALL_CFLAGS = $(CFLAGS_BASE) $(OPT) $(PKG_CFLAGS) -Idaemon -I$(LLHTTP_INCLUDE) $(CFLAGS)
ALL_LDFLAGS = $(OPT) $(LDFLAGS)

DAEMON_SRCS := $(wildcard daemon/*.c daemon/*/*.c)
CORE_SRCS := $(filter-out daemon/main.c,$(DAEMON_SRCS))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o) $(LLHTTP_OBJS)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
IT_TESTS := $(patsubst tests/integration/test_%.c,$(BUILD)/tests/it_%,$(wildcard tests/integration/test_*.c))
IT_OBJS := $(BUILD)/tests/integration/harness.o
FAKE := $(BUILD)/tests/fake_upstream
COLLECTOR := $(BUILD)/tests/fake_collector
# The test build of the daemon: its large calloc()s fail on demand
# (tests/support/failalloc.c), and its writer thread can be held before a
# commit (tests/support/hold_writer.c).
TEST_DAEMON := $(BUILD)/tests/llamachatd-test

DEPS_FLAGS := $(if $(findstring clang,$(CC)),--with-clang)

# Keep objects that only pattern rules mention.
.SECONDARY:

.PHONY: install-files deb test-package all binaries deps deps-tests run bench test tests test-binaries check-config clean format check-style install uninstall fuzz fuzzers

# Where `make install` puts things; DESTDIR stages them elsewhere.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/llamachatd
SUBST = sed -e 's|@BINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
    -e 's|@VERSION@|$(VERSION)|g'

# The build runs in a second make, after the dependency check: make reads
# pkg-config and looks at /usr/share/llhttp once, when it starts, so a make
# that has just installed them would not see them.
all: deps
	@$(MAKE) --no-print-directory binaries

binaries: $(BUILD)/llamachatd $(BUILD)/llamachatctl

deps:
	@scripts/deps.sh $(DEPS_FLAGS)

deps-tests:
	@scripts/deps.sh $(DEPS_FLAGS) --for-tests

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# llhttp is generated C: built with its own flags, not our warnings.
$(BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(filter -fsanitize% -fno-omit-frame-pointer -fno-sanitize-recover%,$(OPT)) \
	    -I$(LLHTTP_INCLUDE) -c $< -o $@

# The version is compiled into these two: a new VERSION rebuilds them.
$(BUILD)/daemon/main.o $(BUILD)/ctl/llamachatctl.o: VERSION

$(BUILD)/llamachatd: $(BUILD)/daemon/main.o $(CORE_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/llamachatctl: $(BUILD)/ctl/llamachatctl.o $(CORE_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(CORE_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/it_%: $(BUILD)/tests/integration/test_%.o $(IT_OBJS) $(CORE_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS)

$(FAKE): $(BUILD)/tests/fake/fake_upstream.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(COLLECTOR): $(BUILD)/tests/fake/fake_collector.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(TEST_DAEMON): $(BUILD)/daemon/main.o $(CORE_OBJS) $(BUILD)/tests/support/failalloc.o $(BUILD)/tests/support/hold_writer.o
	$(CC) $(ALL_LDFLAGS) -Wl,--wrap=calloc -o $@ $^ $(PKG_LIBS)

tests: deps-tests
	@$(MAKE) --no-print-directory test-binaries

test-binaries: binaries $(FAKE) $(COLLECTOR) $(TEST_DAEMON) $(UNIT_TESTS) $(IT_TESTS)

# Runs every suite; the last line is "N passed, M failed".
test: tests
	@tests/run.sh $(BUILD)

# Starts the daemon in the foreground with the repo's config (store in ./var).
run: all
	@mkdir -p var
	exec $(BUILD)/llamachatd -c conf/llamachatd.conf

# Every benchmark against nginx (needs wrk, nginx, python3 and valgrind):
# cached lookups (and with otel on), creates (rates, then instructions under callgrind),
# lookups beside creates, streams held at once. Numbers, not tests;
# BENCH_SECONDS a run (default 5).
BENCH_SECONDS ?= 5
bench: all tests
	bench/lookup.sh $(BENCH_SECONDS)
	bench/otel.sh $(BENCH_SECONDS)
	bench/shared.sh $(BENCH_SECONDS)
	bench/create.sh $(BENCH_SECONDS)
	bench/create-instructions.sh
	bench/mixed.sh $(BENCH_SECONDS)
	bench/streams.sh
	bench/tls.sh $(BENCH_SECONDS)

# libFuzzer targets (clang, with ASan and UBSan), each run for FUZZ_SECONDS
# from its seed corpus in tests/fuzz/corpus/; new inputs go to build/fuzz/.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BUILD := build/fuzz
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS = $(CFLAGS_BASE) -O1 $(FUZZ_FLAGS) $(PKG_CFLAGS) -Idaemon -I$(LLHTTP_INCLUDE)
FUZZ_OBJS := $(CORE_SRCS:%.c=$(FUZZ_BUILD)/%.o) $(patsubst $(LLHTTP_DIR)/%.c,$(FUZZ_BUILD)/llhttp/%.o,$(LLHTTP_SRCS))

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	clang -std=c11 -O1 -g $(FUZZ_FLAGS) -I$(LLHTTP_INCLUDE) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_OBJS)
	clang -fsanitize=fuzzer,address,undefined -o $@ $^ $(PKG_LIBS)

fuzzers: deps
	@scripts/deps.sh --with-clang
	$(MAKE) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

fuzz: fuzzers
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The Debian package, built with Debian's tooling (debhelper through
# dpkg-buildpackage) from a copy of the tree in build/deb, where the .deb
# lands: build/deb/llamachatd_$(VERSION)_<arch>.deb.
DEB_DIR := build/deb
deb:
	@scripts/deps.sh --for-package
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/llamachatd-$(VERSION)
	tar --exclude=./build --exclude=./var --exclude=./.git -cf - . | tar -C $(DEB_DIR)/llamachatd-$(VERSION) -xf -
	scripts/debian-changelog.sh $(VERSION) > $(DEB_DIR)/llamachatd-$(VERSION)/debian/changelog
	cd $(DEB_DIR)/llamachatd-$(VERSION) && dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb

# Installs the package on this machine (root, a scratch machine: it installs,
# removes and purges llamachatd) and checks it: tests/package/test-package.sh.
test-package: deb tests
	@tests/package/test-package.sh $(DEB_DIR)/llamachatd_$(VERSION)_*.deb

check-config: all
	$(BUILD)/llamachatd -t -c conf/llamachatd.conf

format:
	clang-format -i daemon/*.[ch] daemon/*/*.[ch] ctl/*.c tests/*/*.[ch]

# Style, and the include rules of the layers (scripts/check-layers.sh).
check-style:
	clang-format --dry-run --Werror daemon/*.[ch] daemon/*/*.[ch] ctl/*.c tests/*/*.[ch]
	scripts/check-layers.sh

# The daemon, its units, its man pages, and a config only where none is.
install: all
	@$(MAKE) --no-print-directory install-files

# What install puts in place, from binaries already built (the Debian
# package calls it with its own directories).
install-files: binaries
	install -D -m 0755 $(BUILD)/llamachatd $(DESTDIR)$(SBINDIR)/llamachatd
	install -D -m 0755 $(BUILD)/llamachatctl $(DESTDIR)$(BINDIR)/llamachatctl
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(DOCDIR)
	$(SUBST) systemd/llamachatd.service.in > $(DESTDIR)$(UNITDIR)/llamachatd.service
	install -m 0644 systemd/llamachatd.socket $(DESTDIR)$(UNITDIR)/llamachatd.socket
	$(SUBST) man/llamachatd.8 > $(DESTDIR)$(MANDIR)/man8/llamachatd.8
	$(SUBST) man/llamachatd.conf.5 > $(DESTDIR)$(MANDIR)/man5/llamachatd.conf.5
	$(SUBST) man/llamachatctl.1 > $(DESTDIR)$(MANDIR)/man1/llamachatctl.1
	install -m 0644 conf/llamachatd.conf $(DESTDIR)$(DOCDIR)/llamachatd.conf.sample
	install -m 0644 conf/haproxy.cfg $(DESTDIR)$(DOCDIR)/haproxy.cfg
	install -D -m 0644 conf/grafana/llamachatd.json $(DESTDIR)$(DOCDIR)/grafana/llamachatd.json
	install -D -m 0644 conf/prometheus/llamachatd-rules.yml $(DESTDIR)$(DOCDIR)/prometheus/llamachatd-rules.yml
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/llamachatd
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/llamachatd/llamachatd.conf ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/llamachatd/llamachatd.conf"; \
	else \
		$(SUBST) conf/llamachatd.installed.conf > $(DESTDIR)$(SYSCONFDIR)/llamachatd/llamachatd.conf; \
		chmod 0644 $(DESTDIR)$(SYSCONFDIR)/llamachatd/llamachatd.conf; \
	fi
	@echo "installed; next: put the key in $(SYSCONFDIR)/llamachatd/api_key (mode 600),"
	@echo "then: systemctl daemon-reload && systemctl enable --now llamachatd.socket"

# Everything install put in place but the config and the key, which are yours.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/llamachatd $(DESTDIR)$(BINDIR)/llamachatctl $(DESTDIR)$(UNITDIR)/llamachatd.service \
	    $(DESTDIR)$(UNITDIR)/llamachatd.socket $(DESTDIR)$(MANDIR)/man8/llamachatd.8 \
	    $(DESTDIR)$(MANDIR)/man5/llamachatd.conf.5 $(DESTDIR)$(MANDIR)/man1/llamachatctl.1 \
	    $(DESTDIR)$(DOCDIR)/llamachatd.conf.sample $(DESTDIR)$(DOCDIR)/haproxy.cfg \
	    $(DESTDIR)$(DOCDIR)/grafana/llamachatd.json $(DESTDIR)$(DOCDIR)/prometheus/llamachatd-rules.yml
	-rmdir $(DESTDIR)$(DOCDIR)/grafana $(DESTDIR)$(DOCDIR)/prometheus $(DESTDIR)$(DOCDIR) 2>/dev/null
	@echo "left in place: $(DESTDIR)$(SYSCONFDIR)/llamachatd (config and key) and /var/lib/llamachatd (the store)"

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
