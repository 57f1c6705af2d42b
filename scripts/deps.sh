#!/usr/bin/env bash
# deps.sh: installs, with apt-get, the Debian packages leadsync needs to
# build, test and run, and only those that are missing. Quick when all is
# there; safe to run again.
set -euo pipefail

pkgs=(
	build-essential pkg-config make git ca-certificates tzdata
	libuv1-dev libcurl4-openssl-dev libcjson-dev liblua5.4-dev lua5.4
	libpq-dev libhttp-parser-dev libexpat1-dev
	postgresql postgresql-client
	clang libclang-rt-14-dev valgrind
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
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian package may start a system cluster; leadsync never uses it.
