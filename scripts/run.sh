#!/usr/bin/env bash
# run.sh: the README's first command (`make run`).
#
# Without LEADSYNC_DB: starts a private PostgreSQL under ./var (kept between
# runs), migrates it, imports the demo network of scripts/demo/network.jsonl
# (on every start, so the demo starts over), starts the demo CRM (`leadsync
# demo-crm` on 127.0.0.1:9001, where the demo offers point) and runs the
# daemon, `leadsync run`, until Ctrl-C.
# With LEADSYNC_DB set: migrates that database and runs the daemon on it;
# no import, no demo CRM.
#
# Ctrl-C or SIGTERM stops the daemon (gracefully: SIGTERM), the demo CRM and
# the private PostgreSQL: nothing is left running. The daemon and the CRM
# run as children the script waits for, so a signal to the script is never
# held up behind a foreground command.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LEADSYNC_BIN:-build/leadsync} # another build for trying this script
crm_addr=127.0.0.1:9001
crm_key=s3cret

pg=
crm_pid=
daemon_pid=

interrupted=
stop_child() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	# Ctrl-C reaches the whole terminal group: the child got SIGINT too and
	# is already stopping gracefully, which a second signal would cut short
	# ("second signal: exiting now"). Give it the daemon's stop deadline.
	if [ -n "$interrupted" ]; then
		for i in $(seq 120); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	trap - EXIT INT TERM
	stop_child "$daemon_pid"
	stop_child "$crm_pid"
	if [ -n "$pg" ]; then
		scripts/pg-local stop "$pg"
		echo "run: private PostgreSQL stopped"
	fi
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT
trap 'exit 143' TERM

if [ -z "${LEADSYNC_DB:-}" ]; then
	mkdir -p var
	pg=$PWD/var/pg
	LEADSYNC_DB=$(scripts/pg-local start "$pg")
	export LEADSYNC_DB
	echo "run: private PostgreSQL in var/pg ($LEADSYNC_DB)"
fi

"$bin" migrate
if [ -n "$pg" ]; then
	"$bin" import scripts/demo/network.jsonl
fi

commands=$("$bin" help)
if ! grep -q '^  run ' <<<"$commands"; then
	# a binary from before the daemon: the demo data is all there is
	echo "run: this leadsync has no 'run' yet; lead 1001 as an operator sees it:"
	"$bin" lead show 1001
	exit 0
fi

if [ -n "$pg" ]; then
	"$bin" demo-crm --listen "$crm_addr" --key "$crm_key" &
	crm_pid=$!
	# ready when it answers; gone means it could not start (port taken?)
	for _ in $(seq 50); do
		sleep 0.1
		kill -0 "$crm_pid" 2>/dev/null || { crm_pid=; echo "run: the demo CRM did not start" >&2; exit 1; }
		(exec 3<>"/dev/tcp/${crm_addr%:*}/${crm_addr#*:}") 2>/dev/null && break
	done
	echo "run: demo CRM on $crm_addr; the demo offers poll it every few seconds"
	echo "run: why a lead has its status: LEADSYNC_DB='$LEADSYNC_DB' $bin lead show 1001"
	echo "run: failing polls (offer 11 fails now and then on purpose): LEADSYNC_DB='$LEADSYNC_DB' $bin history --failed"
fi

# the operator page needs the admin token: the demo has a fixed one
if [ -n "$pg" ] && [ -z "${LEADSYNC_ADMIN_TOKEN:-}" ]; then
	export LEADSYNC_ADMIN_TOKEN=demo-admin-token
fi
if [ -n "${LEADSYNC_ADMIN_TOKEN:-}" ]; then
	listen=${LEADSYNC_LISTEN:-127.0.0.1:8080}
	if [ "$LEADSYNC_ADMIN_TOKEN" = demo-admin-token ]; then
		echo "run: operator page: http://$listen/admin/#token=demo-admin-token"
	else
		echo "run: operator page: http://$listen/admin/ (log in with LEADSYNC_ADMIN_TOKEN)"
	fi
fi
echo "run: leadsync run on ${LEADSYNC_LISTEN:-127.0.0.1:8080}; Ctrl-C stops it"
# the demo shows each lead change ("lead changed" lines are debug)
LEADSYNC_LOG_LEVEL=${LEADSYNC_LOG_LEVEL:-debug} "$bin" run &
daemon_pid=$!
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
exit "$rc"
