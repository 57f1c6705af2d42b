#!/usr/bin/env bash
# fuzz.sh SECONDS NAME...: runs each libFuzzer target build/fuzz/NAME for
# SECONDS on its seed corpus tests/fuzz/corpus/NAME (read only) plus a
# scratch corpus build/fuzz/work/NAME that receives the new inputs. A
# crash leaves its input in build/fuzz/work/NAME-crash-*: copy it into the
# seed corpus once fixed, as a regression (`make test` replays it). Prints
# one line per target (executions per second, coverage) and exits non-zero
# when any target failed. FUZZ_FLAGS adds libFuzzer options.
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${1:?seconds}
shift
fail=0
summary=()
for name in "$@"; do
	work=build/fuzz/work/$name
	mkdir -p "$work" "tests/fuzz/corpus/$name"
	log=build/fuzz/work/$name.log
	echo "fuzz: $name for ${secs} s"
	# shellcheck disable=SC2086
	if build/fuzz/"$name" -max_total_time="$secs" -print_final_stats=1 \
		-artifact_prefix="$work-" ${FUZZ_FLAGS:-} \
		"$work" "tests/fuzz/corpus/$name" >"$log" 2>&1; then
		res=ok
	else
		res=FAILED
		fail=1
		tail -n 40 "$log" >&2
	fi
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
	ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
	eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
	runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
	summary+=("$(printf '%-10s %-6s runs %-10s exec/s %-7s cov %-6s ft %s' "$name" "$res" \
		"${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}")")
done
printf '%s\n' "${summary[@]}"
exit $fail
