#!/usr/bin/env bash
# run.sh: the README's first command (`make run`). With LEADSYNC_DB set it
# uses that database; otherwise it starts a private PostgreSQL under ./var
# (kept between runs, stopped on exit), migrates it and imports the demo
# network from scripts/demo/network.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/leadsync

demo=
if [ -z "${LEADSYNC_DB:-}" ]; then
	demo=1
	mkdir -p var
	LEADSYNC_DB=$(scripts/pg-local start "$PWD/var/pg")
	export LEADSYNC_DB
	trap 'scripts/pg-local stop "$PWD/var/pg"' EXIT INT TERM
	echo "run: private PostgreSQL in var/pg ($LEADSYNC_DB)"
fi

"$bin" migrate
if [ -n "$demo" ]; then
	"$bin" import scripts/demo/network.jsonl
	echo "run: the demo network is in; lead 1001 as an operator sees it:"
	"$bin" lead show 1001
fi
