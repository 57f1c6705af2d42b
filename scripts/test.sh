#!/usr/bin/env bash
# test.sh: runs the test suite against a private PostgreSQL that it starts
# in /tmp and removes on exit, whatever happens. Called by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

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
