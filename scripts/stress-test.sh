#!/usr/bin/env bash
# stress-test.sh [N]: runs `make test` N times (10 when not given) while
# stress-ng keeps every CPU busy, and prints how many runs passed; exits 1
# unless all did. The suite must not care how busy the machine is: a test
# that fails here and passes on an idle machine is timing something it
# should count. STRESS_CPUS sets the hog's workers [all CPUs].
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10}
cpus=${STRESS_CPUS:-$(nproc)}
if ! command -v stress-ng >/dev/null; then
	echo "stress-test: stress-ng is not installed: run scripts/deps.sh" >&2
	exit 2
fi
make -s -j2 build/test/tests build/test/leadsync build/leadsync

logdir=$(mktemp -d /tmp/leadsync-stress.XXXXXX)
stress-ng --cpu "$cpus" --timeout 0 --quiet &
hog=$!
trap 'kill "$hog" 2>/dev/null || true; wait "$hog" 2>/dev/null || true' EXIT INT TERM

passed=0
for i in $(seq 1 "$n"); do
	start=$SECONDS
	if make -s test >"$logdir/run$i.log" 2>&1; then
		passed=$((passed + 1))
		res=pass
	else
		res=FAIL
	fi
	echo "run $i: $res in $((SECONDS - start)) s: $(tail -n 1 "$logdir/run$i.log")"
	grep '^FAIL' "$logdir/run$i.log" || true
done
echo "stress-test: $passed of $n runs passed beside stress-ng --cpu $cpus (logs in $logdir)"
[ "$passed" -eq "$n" ]
