# leadsync build: `make` builds build/leadsync, `make test` runs the test suite
# under AddressSanitizer and UBSan against a private PostgreSQL.
CC      ?= cc
PKGS    := libuv libcurl libcjson lua5.4 libpq expat libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lhttp_parser -lm -lpthread

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_DEFAULT_SOURCE $(WARN) -Iinclude $(PKG_CFLAGS) $(CFLAGS)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC     := $(wildcard src/*.c)
LIB_SRC := $(filter-out src/main.c,$(SRC))
HDR     := $(wildcard include/*.h)
TEST_SRC := $(wildcard tests/*.c)

OBJ      := $(SRC:src/%.c=build/obj/%.o)
TOBJ     := $(SRC:src/%.c=build/tobj/%.o)
TLIB_OBJ := $(LIB_SRC:src/%.c=build/tobj/%.o)
TTEST_OBJ := $(TEST_SRC:tests/%.c=build/tobj/test_%.o)

# migrations/*.sql are compiled into the binary as store_migrations[].
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
OBJ      += build/obj/gen_migrations.o
TOBJ     += build/tobj/gen_migrations.o
TLIB_OBJ += build/tobj/gen_migrations.o

# src/admin/* (the operator page) is compiled in as admin_page_assets[].
ADMIN_ASSETS := $(sort $(wildcard src/admin/*))
OBJ      += build/obj/gen_admin_assets.o
TOBJ     += build/tobj/gen_admin_assets.o
TLIB_OBJ += build/tobj/gen_admin_assets.o

.PHONY: all test check clean run deps bench bench-bin bench-rule soak readme-help install uninstall
all: build/leadsync

build/leadsync: $(OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $(OBJ) $(PKG_LIBS)

build/obj/%.o: src/%.c $(HDR) | build/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Test objects: the same sources, instrumented.
build/tobj/%.o: src/%.c $(HDR) | build/tobj
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -c -o $@ $<

build/tobj/test_%.o: tests/%.c $(HDR) tests/test.h | build/tobj
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -Itests -c -o $@ $<

# The CLI the integration tests run is the instrumented one.
build/test/leadsync: $(TOBJ) | build/test
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $(TOBJ) $(PKG_LIBS)

build/test/tests: $(TLIB_OBJ) $(TTEST_OBJ) | build/test
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $(TLIB_OBJ) $(TTEST_OBJ) $(PKG_LIBS)

# The folder is a prerequisite too, so removing a migration regenerates.
build/gen/migrations.c: $(MIGRATIONS) migrations scripts/embed.sh | build/gen
	scripts/embed.sh migrations $@ $(MIGRATIONS)

build/obj/gen_migrations.o: build/gen/migrations.c $(HDR) | build/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/tobj/gen_migrations.o: build/gen/migrations.c $(HDR) | build/tobj
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -c -o $@ $<

build/gen/admin_assets.c: $(ADMIN_ASSETS) src/admin scripts/embed.sh | build/gen
	scripts/embed.sh assets $@ $(ADMIN_ASSETS)

build/obj/gen_admin_assets.o: build/gen/admin_assets.c $(HDR) | build/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/tobj/gen_admin_assets.o: build/gen/admin_assets.c $(HDR) | build/tobj
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -c -o $@ $<

build/obj build/tobj build/test build/gen:
	mkdir -p $@

# The README's test command. Starts a private PostgreSQL, runs every test,
# stops the server whatever happens; last line is "N passed, N failed".
test: build/test/tests build/test/leadsync build/leadsync bench-bin fuzz-replay build/test/torture
	scripts/test.sh

check: test

run: build/leadsync
	scripts/run.sh

deps:
	scripts/deps.sh

# The README's command list is `leadsync help`'s; a test compares them.
readme-help: build/leadsync
	scripts/readme-help.sh build/leadsync README.md

clean:
	rm -rf build

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the binary, the example
# rules (the default rules folder of the unit), the systemd unit with its
# paths under PREFIX, and the docs. README.md "Deploying" has the layout.
PREFIX  ?= /usr/local
BINDIR  := $(PREFIX)/bin
DATADIR := $(PREFIX)/share/leadsync
UNITDIR := $(PREFIX)/lib/systemd/system
DOCDIR  := $(PREFIX)/share/doc/leadsync

install: build/leadsync
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/rules $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 755 build/leadsync $(DESTDIR)$(BINDIR)/leadsync
	install -m 644 rules/*.lua $(DESTDIR)$(DATADIR)/rules/
	sed 's|/usr/local/|$(PREFIX)/|g' docker/leadsync.service >$(DESTDIR)$(UNITDIR)/leadsync.service
	chmod 644 $(DESTDIR)$(UNITDIR)/leadsync.service
	install -m 644 README.md docs/rules.md docker/alerts.yml $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/leadsync $(DESTDIR)$(UNITDIR)/leadsync.service
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)

# Benchmarks: optimised, no sanitizers; each prints its figures beside the
# baseline measured in the same run. `make bench` runs bench/run.py: every
# section (bench/sec_*.py) on a private PostgreSQL over loopback, one table,
# bench/results.json and the table in BENCHMARKS.md. BENCH_SCALE=0.05 scales
# every size down for a quick run.
BENCH_OBJ := $(filter-out build/obj/main.o,$(OBJ))
BENCH_BIN := $(patsubst bench/%.c,build/bench/%,$(wildcard bench/*.c))
BENCH_SCALE ?= 1

build/bench/%: bench/%.c $(BENCH_OBJ) $(HDR) | build/bench
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BENCH_OBJ) $(PKG_LIBS)

build/bench:
	mkdir -p $@

bench-bin: build/leadsync $(BENCH_BIN)

bench-rule: build/bench/bench_rule
	build/bench/bench_rule $(BENCH_LEADS)

bench: bench-bin
	python3 bench/run.py --scale $(BENCH_SCALE)

# The soak (bench/soak.py): two daemons, a hostile mock CRM, postbacks, a
# PostgreSQL restart and a kill -9 for SOAK_SECONDS, then its invariants.
# Part of neither `make test` nor CI.
SOAK_SECONDS ?= 600
soak: build/leadsync
	python3 bench/soak.py $(SOAK_SECONDS)

# Fuzzing (tests/fuzz/, one target per .c with LLVMFuzzerTestOneInput).
# `make fuzz` builds every target with clang and libFuzzer
# (build/fuzz/NAME) and runs each for FUZZ_SECONDS on a scratch copy of
# tests/fuzz/corpus/NAME (new inputs stay in build/fuzz/work, not in the
# repo). `make test` replays every corpus with build/test/fuzz/NAME: the
# same target with tests/fuzz/replay.c, gcc and the test sanitizers.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(filter-out tests/fuzz/replay.c,$(wildcard tests/fuzz/*.c)))
FUZZ_BIN     := $(FUZZ_NAMES:%=build/fuzz/%)
FUZZ_REPLAY  := $(FUZZ_NAMES:%=build/test/fuzz/%)
FUZZ_HDR     := $(wildcard tests/fuzz/*.h tests/*.h)
FUZZ_LIB_OBJ := $(LIB_SRC:src/%.c=build/fuzz/obj/%.o) build/fuzz/obj/gen_migrations.o \
	build/fuzz/obj/gen_admin_assets.o build/fuzz/obj/pattern_diff.o
# clang reads cli.c's option loop (a++ to take an option's value) as a slip.
FUZZ_CFLAGS  := -std=c11 -D_DEFAULT_SOURCE $(WARN) -Wno-for-loop-analysis -Iinclude -Itests -Itests/fuzz $(PKG_CFLAGS) -O1 -g

build/fuzz/obj/%.o: src/%.c $(HDR) | build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/obj/gen_%.o: build/gen/%.c $(HDR) | build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -c -o $@ $<
build/fuzz/obj/pattern_diff.o: tests/pattern_diff.c tests/pattern_diff.h $(HDR) | build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/%: tests/fuzz/%.c $(FUZZ_HDR) $(FUZZ_LIB_OBJ) $(HDR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(PKG_LIBS)
build/test/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(FUZZ_HDR) $(TLIB_OBJ) build/tobj/test_pattern_diff.o $(HDR) | build/test/fuzz
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -Itests -Itests/fuzz -o $@ $< tests/fuzz/replay.c $(TLIB_OBJ) build/tobj/test_pattern_diff.o $(PKG_LIBS)
build/fuzz/obj build/test/fuzz:
	mkdir -p $@

fuzz-bin: $(FUZZ_BIN)
fuzz-replay: $(FUZZ_REPLAY)

fuzz: fuzz-bin
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)
.PHONY: fuzz fuzz-bin fuzz-replay

# Allocation-failure runs (tests/torture/torture.c says how): the test
# objects linked with malloc & co. wrapped. `make test` runs a sample of
# every sweep (tests/test_torture.c); `make torture` runs all of them.
TORTURE_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup
build/test/torture: tests/torture/torture.c $(TLIB_OBJ) $(HDR) | build/test
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -o $@ $< $(TLIB_OBJ) $(PKG_LIBS) $(TORTURE_WRAP)

torture: build/test/torture
	scripts/torture.sh
.PHONY: torture
