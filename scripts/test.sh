#!/usr/bin/env bash
# test.sh [NAME]: runs the test suite (or the tests whose name contains
# NAME) against a private PostgreSQL that it starts in /tmp and removes on
# exit, whatever happens. Called by `make test`. Builds what it runs first,
# so a test run never uses stale binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

# Quiet: only compiler errors show. A no-op under `make test`.
${MAKE:-make} -s -j2 build/test/tests build/test/leadsync build/leadsync bench-bin fuzz-replay build/test/torture

pgdir=$(mktemp -d /tmp/leadsync-pg.XXXXXX)
cleanup() { scripts/pg-local destroy "$pgdir"; }
trap cleanup EXIT INT TERM

# fsync off: a test server loses nothing it needs when the machine is fine.
LEADSYNC_TEST_PG=$(PG_FSYNC=off scripts/pg-local start "$pgdir")
export LEADSYNC_TEST_PG
export LEADSYNC_TEST_BIN=build/test/leadsync
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
build/test/tests "$@"
