#!/bin/sh
# readme-help.sh [BIN] [README]: rewrites the README's command list (between
# the "commands:begin" and "commands:end" markers) with the commands part
# of `BIN help`, so the two never drift apart; `make readme-help` runs it
# and tests/test_cli.c checks the result.
set -eu
bin=${1:-build/leadsync}
readme=${2:-README.md}
help=$(mktemp)
tmp=$(mktemp)
trap 'rm -f "$help" "$tmp"' EXIT
# everything before the settings list, without the blank line that ends it
"$bin" help | awk '/^settings \(/ { exit } { print }' | sed '${/^$/d}' >"$help"
grep -q '^<!-- commands:begin' "$readme" || { echo "$readme: no commands:begin marker" >&2; exit 1; }
awk -v hf="$help" '
/^<!-- commands:begin/ { print; print "```"; while ((getline l < hf) > 0) print l; print "```"; skip = 1; next }
/^<!-- commands:end -->/ { skip = 0 }
!skip { print }' "$readme" >"$tmp"
cat "$tmp" >"$readme"
