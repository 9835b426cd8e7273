# otp-gateway — build, test, run. `make help` lists the targets.
#
# Dependencies (Debian packages): `make deps` runs .ci/install-deps, which installs what is
# missing with apt-get (as root) and does nothing when all is there. Only `make run` and
# `make test` call it; `make` itself builds as any user once the build packages are installed.

BUILD     ?= build
CC        ?= cc
PKGS      := fcgi jansson libcurl libcrypto sqlite3
# each program links only what it uses: otp-deleter has no FastCGI (libcrypto: tg replaces
# OpenSSL's allocator)
FCGI_PKGS    := fcgi jansson libcurl libcrypto sqlite3
DELETER_PKGS := jansson libcurl libcrypto sqlite3
# hiredis: only lib/store_redis.c includes it (as <hiredis/hiredis.h>): linked, not on -I
CFLAGS    ?= -O2 -g
WARN      := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes
# CPPFLAGS and LDFLAGS: the hardening flags dpkg-buildflags hands over when debian/rules builds
ALL_CFLAGS = -std=gnu11 $(WARN) $(CPPFLAGS) $(CFLAGS) $(EXTRA_CFLAGS) -pthread -Ilib -I$(BUILD)/gen \
             $(shell pkg-config --cflags $(PKGS))
LDLIBS     = $(shell pkg-config --libs $(PKGS) hiredis) -pthread
FCGI_LIBS    = $(shell pkg-config --libs $(FCGI_PKGS) hiredis) -pthread
DELETER_LIBS = $(shell pkg-config --libs $(DELETER_PKGS) hiredis) -pthread
TEST_LIBS  = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

LIB_SRC     := $(wildcard lib/*.c)
FCGI_SRC    := $(filter-out fcgi/main.c,$(wildcard fcgi/*.c))
DELETER_SRC := $(filter-out deleter/main.c,$(wildcard deleter/*.c))
UNIT_SRC    := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ     := $(call obj,$(LIB_SRC))
FCGI_OBJ    := $(call obj,$(FCGI_SRC))
DELETER_OBJ := $(call obj,$(DELETER_SRC))
UNIT_BIN    := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# the Bot API client's pure part (reading replies, cleaning text): no libcurl
TG_REPLY_OBJ := $(call obj,lib/tg_reply.c lib/secmem.c)

PROGRAMS := $(BUILD)/otp-fcgi $(BUILD)/otp-deleter
# otp-gateway.env(5), made from docs/settings.md (dated by SOURCE_DATE_EPOCH when a package
# build sets it, else by the file)
SETTINGS_MAN := $(BUILD)/otp-gateway.env.5
BENCH_BIN := $(BUILD)/bench/revoke_claim

.PHONY: deb test-system all test test-suites run-stack unit integration check asan tsan valgrind fuzz fuzz-targets run bench soak test-loaded deps docs-assets clean help install uninstall
all: $(PROGRAMS) $(SETTINGS_MAN)

$(SETTINGS_MAN): docs/settings.md docs/settings-to-man.awk
	@mkdir -p $(@D)
	awk -v date="$$(date -u -d "@$${SOURCE_DATE_EPOCH:-$$(stat -c %Y docs/settings.md)}" +%Y-%m-%d)" \
		-f docs/settings-to-man.awk docs/settings.md > $@.tmp && mv $@.tmp $@

help:
	@echo "make            build $(PROGRAMS)"
	@echo "make run        run lighttpd + otp-fcgi + otp-deleter (sandbox mode without a token);"
	@echo "                SERVER=nginx|apache|apache-fcgid runs that front end instead"
	@echo "make install    install under PREFIX ($(PREFIX)), into DESTDIR when set; make uninstall"
	@echo "make test       build and run every test suite"
	@echo "make check      the suites under ASan/UBSan, the unit tests under valgrind, the"
	@echo "                concurrent tests under TSan, and the fuzzers (make fuzz)"
	@echo "make bench      throughput, latency, deletion lag, memory, beside the original (BENCH_QUICK=1)"
	@echo "make soak       100,000 requests through the stack: memory, descriptors, disk flat"
	@echo "make test-loaded  make test RUNS (5) times in a row beside LOAD (1) busy loops"
	@echo "make deps       install the Debian packages (as root)"
	@echo "make deb        build/deb/otp-gateway_<version>_<arch>.deb (dpkg-buildpackage on a copy)"
	@echo "make test-system  the .deb and docs/deploy.md's steps under systemd in podman (root)"

$(BUILD)/gen/schema.inc: lib/schema.sql
	@mkdir -p $(dir $@)
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^\(.*\)$$/"\1\\n"/' $< > $@

$(BUILD)/obj/lib/store_sqlite_file.o: $(BUILD)/gen/schema.inc

# The Redis backend's Lua scripts (lib/redis/*.lua) and the helpers they share
# (lib/redis/helpers/*.lua): each file one string macro, LUA_<its name in upper case>.
LUA_SRC := $(wildcard lib/redis/*.lua lib/redis/helpers/*.lua)
$(BUILD)/gen/redis_scripts.inc: $(LUA_SRC) Makefile
	@mkdir -p $(dir $@)
	set -e; for f in $(LUA_SRC); do \
		printf '#define LUA_%s \\\n' "$$(basename $$f .lua | tr a-z A-Z)"; \
		sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^\(.*\)$$/\t"\1\\n" \\/' $$f; \
		printf '\t""\n\n'; \
	done > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/lib/store_redis.o: $(BUILD)/gen/redis_scripts.inc

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/otp-fcgi: $(BUILD)/obj/fcgi/main.o $(FCGI_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(FCGI_LIBS)

$(BUILD)/otp-deleter: $(BUILD)/obj/deleter/main.o $(DELETER_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(DELETER_LIBS)

# the pure halves of the Bot API client, tested without the transport
$(BUILD)/tests/test_tg_reply: tests/unit/test_tg_reply.c $(TG_REPLY_OBJ) $(call obj,lib/tg_request.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -o $@ $(filter %.c %.o,$^) \
		$(shell pkg-config --libs jansson) $(TEST_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(FCGI_OBJ) $(DELETER_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -Ifcgi -Ideleter -o $@ $(filter %.c %.o,$^) $(LDLIBS) $(TEST_LIBS)

# make bench's revoke figure (the store's claim with many rows pending), run by tests/bench/bench.py
$(BUILD)/bench/%: tests/bench/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Every suite, one summary line at the end ("N passed, M failed"). The packages first, then
# (a make of its own, so that -j cannot compile before the compiler is installed) the rest.
test: deps
	@$(MAKE) --no-print-directory test-suites
test-suites: docs-assets $(PROGRAMS) $(UNIT_BIN) $(BENCH_BIN)
	tests/run-tests.sh $(BUILD)

unit: $(UNIT_BIN)
	tests/run-tests.sh --unit-only $(BUILD)

# Sanitizers: a build of its own, then the same suites against it; valgrind runs the unit tests.
check: asan valgrind tsan fuzz
asan:
	$(MAKE) BUILD=build/asan EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" CFLAGS="-O1 -g" test
# libFuzzer (clang): the parsers that take untrusted bytes, FUZZ_SECONDS each. New inputs go to
# build/fuzz/corpus/, never into the seeds under tests/fuzz/seeds/.
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 20
fuzz:
	$(MAKE) BUILD=build/fuzz CC=clang CFLAGS="-O1 -g" \
		EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined" fuzz-targets
	set -e; for t in $(notdir $(basename $(FUZZ_SRC))); do \
		mkdir -p build/fuzz/corpus/$$t; \
		echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
		build/fuzz/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=build/fuzz/ \
			build/fuzz/corpus/$$t tests/fuzz/seeds/$$t > build/fuzz/$$t.log 2>&1 \
			|| { tail -n 40 build/fuzz/$$t.log; exit 1; }; \
		grep -E "^stat::number_of_executed_units" build/fuzz/$$t.log; \
	done

fuzz-targets: $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

# the Bot API's replies are read by a pure module: its fuzzers link it alone (no transport,
# no libcurl, no store, no metrics)
TG_LEAF_FUZZ := $(BUILD)/fuzz/fuzz_tg_reply $(BUILD)/fuzz/fuzz_tg_clean_text
$(TG_LEAF_FUZZ): $(BUILD)/fuzz/%: tests/fuzz/%.c $(TG_REPLY_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) \
		$(shell pkg-config --libs jansson)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FCGI_OBJ) $(DELETER_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -Ifcgi -Ideleter -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# ThreadSanitizer: otp-fcgi's threads under the concurrent tests.
tsan:
	$(MAKE) BUILD=build/tsan EXTRA_CFLAGS="-fsanitize=thread" CFLAGS="-O1 -g" all
	OTP_BUILD_DIR=build/tsan /usr/bin/python3 -m pytest -p no:cacheprovider -q \
		"tests/integration/test_concurrency.py::test_sixty_concurrent_clients_at_300_ms_latency_within_the_send_budget" \
		"tests/integration/test_concurrency.py::test_telegram_429_pauses_every_process" \
		"tests/integration/test_concurrency.py::test_sends_waiting_on_telegram_hold_no_store" \
		tests/integration/test_rate_limits.py

valgrind: $(UNIT_BIN)
	tests/run-tests.sh --valgrind $(BUILD)

# Figures, not tests: ours beside the original (ORIGINAL_DIR, default ../shared/original; empty
# leaves it out) on the same fake Bot API (nginx) and load. BENCH_QUICK=1: a short run.
# tests/bench/install-deps installs the bench-only packages when run as root.
bench: $(PROGRAMS) $(BENCH_BIN)
	tests/bench/install-deps
	OTP_BUILD_DIR=$(BUILD) /usr/bin/python3 tests/bench/bench.py

# A long run (not in CI): SOAK_REQUESTS (100,000) sends through the whole stack; fails when a
# process's RSS or descriptors move more than 5 % after the first 10,000, the database grows
# past SOAK_DB_MAX_MIB, or a message is left undeleted.
soak: $(PROGRAMS)
	OTP_BUILD_DIR=$(BUILD) /usr/bin/python3 tests/soak/soak.py

# `make test` RUNS times in a row (5) beside LOAD busy loops (1): not in CI.
test-loaded: deps
	RUNS=$(RUNS) LOAD=$(LOAD) BUILD=$(BUILD) tests/loaded.sh
RUNS ?= 5
LOAD ?= 1

run: deps
	@$(MAKE) --no-print-directory run-stack
SERVER ?= lighttpd
run-stack: $(PROGRAMS)
	@www/build-assets.sh || echo "run: the API docs' assets could not be built: /docs will be empty" >&2
	SERVER=$(SERVER) conf/run.sh $(BUILD)

# Installation: programs, man pages, www/ (with vendor/ when www/build-assets.sh built it), and
# the deployment files under share/otp-gateway/ (conf/serve.sh runs any front end from there);
# systemd units with their paths filled in.
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
SHAREDIR ?= $(PREFIX)/share/otp-gateway
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SHARE_CONF := conf/serve.sh conf/docker-entrypoint.sh conf/nginx.conf \
	conf/apache-proxy-fcgi.conf conf/apache-fcgid.conf conf/otp-gateway.env \
	$(wildcard conf/.env.example conf/docker-compose.yml) \
	conf/prometheus/otp-gateway.rules.yml conf/grafana/otp-gateway.json
UNITS := $(wildcard conf/systemd/*.service conf/systemd/*.socket)
install: $(PROGRAMS) $(SETTINGS_MAN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SHAREDIR)/conf/systemd \
		$(DESTDIR)$(SHAREDIR)/conf/shared-hosting $(DESTDIR)$(SHAREDIR)/www $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SHAREDIR)/conf/prometheus $(DESTDIR)$(SHAREDIR)/conf/grafana
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	install -m 0644 fcgi/otp-fcgi.8 deleter/otp-deleter.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(SETTINGS_MAN) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 www/docs.html www/redoc.html www/openapi.json $(DESTDIR)$(SHAREDIR)/www/
	if [ -d www/vendor ]; then cp -R www/vendor $(DESTDIR)$(SHAREDIR)/www/; \
	else echo "install: www/vendor/ is not built (make docs-assets): /docs will be empty" >&2; fi
	install -m 0644 lighttpd.conf $(DESTDIR)$(SHAREDIR)/
	for f in $(SHARE_CONF); do install -m 0644 $$f $(DESTDIR)$(SHAREDIR)/$$f; done
	chmod 0755 $(DESTDIR)$(SHAREDIR)/conf/*.sh
	for f in $(wildcard conf/shared-hosting/* conf/shared-hosting/.htaccess); do \
		install -m 0644 $$f $(DESTDIR)$(SHAREDIR)/$$f; done
	chmod 0755 $(DESTDIR)$(SHAREDIR)/conf/shared-hosting/otp-gateway.fcgi
	for f in $(UNITS); do \
		sed 's|@BINDIR@|$(BINDIR)|g' $$f > $(DESTDIR)$(UNITDIR)/$${f##*/}; \
		install -m 0644 $$f $(DESTDIR)$(SHAREDIR)/$$f; done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,otp-fcgi otp-deleter) \
		$(addprefix $(DESTDIR)$(MANDIR)/man8/,otp-fcgi.8 otp-deleter.8) \
		$(DESTDIR)$(MANDIR)/man5/otp-gateway.env.5 \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	rm -rf $(DESTDIR)$(SHAREDIR)

deps:
	@.ci/install-deps

# The Debian package, built from debian/ on a copy of the tree under build/deb/src (so that
# dpkg-buildpackage, which writes its results into the parent directory, writes them into
# build/deb/ and leaves the tree clean). The docs' assets are built first: the package ships them.
DEB_DIR ?= build/deb
deb: docs-assets
	rm -rf $(DEB_DIR)/src && mkdir -p $(DEB_DIR)/src
	rm -f $(DEB_DIR)/otp-gateway_* $(DEB_DIR)/otp-gateway-dbgsym_*
	tar -cf - --exclude=./build --exclude=./www/node_modules --exclude=./.git . | tar -xf - -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -us -uc -b
	rm -rf $(DEB_DIR)/src
	lintian --fail-on error --display-info $(DEB_DIR)/otp-gateway_*.deb
	@ls $(DEB_DIR)/otp-gateway_*.deb

# The .deb installed with apt on Debian 12 booted with systemd in podman, then docs/deploy.md's
# marked steps run as written (tests/integration/test_system.py; as root; skips where podman
# cannot boot systemd).
test-system: deb
	OTP_BUILD_DIR=$(BUILD) OTP_DEB_DIR=$(DEB_DIR) /usr/bin/python3 -m pytest -p no:cacheprovider -q \
		tests/integration/test_system.py

# The API docs' assets (www/vendor/) and the docs tests' tools, from www/package-lock.json.
docs-assets:
	www/build-assets.sh

# BUILD's tree only (make clean BUILD=/tmp/x leaves build/ alone); the default also drops the
# docs assets.
clean:
	rm -rf $(BUILD)
	$(if $(filter build,$(BUILD)),rm -rf www/vendor www/node_modules)

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name "*.d" 2>/dev/null)
