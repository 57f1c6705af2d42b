#!/usr/bin/env bash
# deps.sh: installs, with apt-get, the Debian packages leadsync needs to
# build, test and run, and only those that are missing. Quick when all is
# there; safe to run again. Another apt or dpkg at work (unattended
# upgrades, a second shell) is waited for, up to APT_LOCK_WAIT seconds
# [600], instead of failing at once.
set -euo pipefail

pkgs=(
	build-essential pkg-config make git ca-certificates tzdata
	libuv1-dev libcurl4-openssl-dev libcjson-dev liblua5.4-dev lua5.4
	libpq-dev libhttp-parser-dev libexpat1-dev libssl-dev
	postgresql postgresql-client
	clang libclang-rt-14-dev valgrind
	wrk
	stress-ng
	yamllint python3-yaml
	prometheus
	chromium
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#pkgs[@]} packages present"
	exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
wait_s=${APT_LOCK_WAIT:-600}
lock=(-o "DPkg::Lock::Timeout=$wait_s")

# apt-get update takes the lists lock, which DPkg::Lock::Timeout does not
# cover: retry while another apt holds it, fail on any other error.
apt_update() {
	local start=$SECONDS errf
	errf=$(mktemp)
	until "${sudo[@]}" apt-get "${lock[@]}" update -qq 2>"$errf"; do
		if ! grep -qiE 'could not get lock|unable to lock|is held by process' "$errf"; then
			cat "$errf" >&2
			rm -f "$errf"
			return 1
		fi
		if [ $((SECONDS - start)) -ge "$wait_s" ]; then
			echo "deps: apt is still busy after ${wait_s} s:" >&2
			cat "$errf" >&2
			rm -f "$errf"
			return 1
		fi
		echo "deps: another apt is running; waiting" >&2
		sleep 5
	done
	rm -f "$errf"
}

apt_update
# prometheus brings promtool (the tests check /metrics with it); its package
# would also start a Prometheus server, and postgresql a system cluster,
# neither of which leadsync uses: without a policy-rc.d of the machine's own,
# one that forbids starting services stands for the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# deps.sh: no service starts while it installs\nexit 101\n' |
		"${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}"
# The Debian package may start a system cluster; leadsync never uses it.
