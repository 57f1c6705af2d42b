#!/usr/bin/env bash
# torture.sh [NAME...]: `make torture`: every allocation-failure sweep of
# build/test/torture (tests/torture/torture.c), every n, against a private
# PostgreSQL (for import_run) that it starts in /tmp and removes on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

pgdir=$(mktemp -d /tmp/leadsync-pg.XXXXXX)
cleanup() { scripts/pg-local destroy "$pgdir"; }
trap cleanup EXIT INT TERM

LEADSYNC_TEST_PG=$(PG_FSYNC=off scripts/pg-local start "$pgdir")
export LEADSYNC_TEST_PG
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
build/test/torture "$@"
