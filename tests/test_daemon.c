/* test_daemon: `leadsync run` as child processes (the instrumented binary,
 * LEADSYNC_TEST_BIN) against a real PostgreSQL and the mock CRM over
 * loopback: two daemons on one database, kill -9 and lease take-over, the
 * database restarted mid-run, graceful stop, SIGHUP reload, postbacks while
 * the poller is busy. Every test runs its body in a helper and cleans up
 * after it whatever happened: no child is left running, no server left
 * behind. A failed test shows the end of each daemon's log (DM_SHOW_LOG=1:
 * every test does). */
#define _GNU_SOURCE
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "buf.h"
#include "import.h"
#include "mock_crm.h"
#include "pbauth.h"
#include "scheduler.h"
#include "store.h"

#define DM_SEED_CLICK "c7e2206f-03af-49fa-9046-dd6aeaa44e9b"

/* The tests' CRM rule: ids as a list of external ids; the answer an array
 * of {id, status}, statuses read as words. Only processing is declared, so
 * only processing pairs make requests. */
static const char dm_rule_crm[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"  end,\n"
	"}\n";

/* ------------------------------------------------------------ environment */

struct dm_daemon {
	pid_t pid;     /* 0: never started */
	bool reaped;
	int status;    /* wait status, once reaped */
	char log[64];  /* its stdout and stderr */
	int port;
	char worker[SCHED_WORKER_MAX];
};

struct dm_env {
	char *ci;
	PGconn *c;
	struct mock_crm *m;
	char rules[64];
	char pgdir[64]; /* a private server's directory; "" none */
	struct dm_daemon d[2];
};

/* What a MOCK_FUNC route answers: every asked id (ids=A,B) with status
 * (alt_status once *flip is set), after delay_ms plus up to jitter_ms. */
struct dm_route {
	const char *status;
	const char *alt_status;
	atomic_bool *flip;
	unsigned delay_ms;
	unsigned jitter_ms;
};

static void dm_answer(const struct mock_request *req, struct mock_answer *ans, void *data)
{
	struct dm_route *rt = data;
	const char *q = strstr(req->query, "ids="), *st = rt->status;
	char ids[4096];
	char *tok, *save;
	size_t n = 0;
	int e = 0;

	if (rt->flip && atomic_load(rt->flip))
		st = rt->alt_status;
	ans->delay_ms = rt->delay_ms;
	if (rt->jitter_ms) { /* the mock's thread only: a plain LCG will do */
		static uint32_t seed = 12345;

		seed = seed * 1103515245u + 12345u;
		ans->delay_ms += (seed >> 8) % rt->jitter_ms;
	}
	snprintf(ids, sizeof(ids), "%.*s", q ? (int)strcspn(q + 4, "&") : 0, q ? q + 4 : "");
	e |= buf_addc(&ans->body, '[');
	for (tok = strtok_r(ids, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		e |= buf_addf(&ans->body, "%s{\"id\":\"%s\",\"status\":\"%s\"}", n++ ? "," : "", tok,
			      st);
	e |= buf_addc(&ans->body, ']');
	if (e)
		ans->status = 500;
}

/* Every wait below is a bound that ends a hung run, not a measurement: a
 * busy machine gets DM_SLACK times the time it names. */
#define DM_SLACK 3

/* A test that runs body on a fresh environment and cleans up after it,
 * whatever happened (dm_close: children, servers, folders). */
#define DM_TEST(name, body)                      \
	TEST(name)                               \
	{                                        \
		struct dm_env e;                 \
                                                 \
		memset(&e, 0, sizeof(e));        \
		body(&e);                        \
		dm_close(&e);                    \
	}

static uint64_t dm_ms(void)
{
	return mock_now_us() / 1000;
}

static void dm_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool dm_write_file(const char *path, const char *text)
{
	char tmp[300];
	FILE *f;
	bool ok;

	/* written beside and renamed: a reload never reads half a file */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return false;
	ok = fputs(text, f) >= 0;
	if (fclose(f) != 0 || !ok)
		return false;
	return rename(tmp, path) == 0;
}

static bool dm_rule(struct dm_env *e, const char *name, const char *text)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s.lua", e->rules, name);
	return dm_write_file(path, text);
}

static long dm_long(PGconn *c, const char *sql)
{
	char *v = test_sql_value(c, sql);
	long n = v && *v ? strtol(v, NULL, 10) : -1;

	free(v);
	return n;
}

/* Polls sql until it answers want (true) or timeout_ms passed (false, the
 * last answer printed). */
static bool dm_wait_sql(PGconn *c, const char *sql, const char *want, unsigned timeout_ms)
{
	uint64_t end = dm_ms() + (uint64_t)timeout_ms * DM_SLACK;
	char *v;

	for (;;) {
		v = test_sql_value(c, sql);
		if (v && strcmp(v, want) == 0) {
			free(v);
			return true;
		}
		if (dm_ms() > end) {
			printf("  waited %u ms for %s\n    got %s, want %s\n", timeout_ms, sql,
			       v ? v : "(no row)", want);
			free(v);
			return false;
		}
		free(v);
		dm_sleep_ms(50);
	}
}

/* A fresh database (on LEADSYNC_TEST_PG, or on the server at base) with
 * the schema, a rules folder holding dm_crm, and the mock CRM. */
static bool dm_open(struct dm_env *e, const char *name, const char *base,
		    const struct mock_route *routes, size_t nroutes)
{
	char err[1024];
	int applied;

	if (base) {
		struct buf b;

		buf_init(&b, 1024);
		if (buf_addf(&b, "%s dbname=postgres", base) < 0) {
			buf_release(&b);
			return false;
		}
		e->ci = buf_steal(&b);
		buf_release(&b);
	} else {
		e->ci = test_db_fresh(name);
	}
	if (!e->ci)
		return false;
	if (store_connect(e->ci, &e->c, err, sizeof(err)) < 0 ||
	    store_migrate(e->c, &applied, err, sizeof(err)) < 0) {
		printf("  %s: %s\n", name, err);
		return false;
	}
	snprintf(e->rules, sizeof(e->rules), "/tmp/leadsync-dmrules-XXXXXX");
	if (!mkdtemp(e->rules)) {
		e->rules[0] = '\0';
		return false;
	}
	if (!dm_rule(e, "dm_crm", dm_rule_crm))
		return false;
	if (routes && mock_crm_start(&e->m, routes, nroutes) < 0)
		return false;
	return true;
}

static int dm_import(struct dm_env *e, const char *text)
{
	struct import_stats st;
	char err[1024];
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	int rc;

	if (!in)
		return -1;
	rc = import_run(e->c, in, &st, err, sizeof(err));
	if (rc < 0)
		printf("  import: %s\n", err);
	fclose(in);
	return rc;
}

#define DM_ADV "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"advertiser_api_key\"}}\n"

/* Offers first .. first+n-1 on rule at the mock's path, processing every
 * second, each with `leads` leads in status 2 (ids offer*100 + 1 ..). */
static int dm_offers(struct buf *b, int first, int n, const char *rule, int port,
		     const char *path, int leads)
{
	int i, j, rc = 0;

	for (i = first; i < first + n; i++) {
		rc |= buf_addf(b,
			       "{\"offer\": {\"id\": %d, \"advertiser\": 1, \"name\": \"O%d\","
			       " \"rule\": \"%s\", \"params\": {\"host\": \"127.0.0.1:%d\","
			       " \"path\": \"%s\"}, \"intervals\": {\"processing\": 1}}}\n"
			       "{\"goal\": {\"offer\": %d, \"code\": \"lead\", \"payout\": \"fixed\","
			       " \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n",
			       i, i, rule, port, path, i);
		for (j = 1; j <= leads; j++)
			rc |= buf_addf(b,
				       "{\"lead\": {\"id\": %d, \"offer\": %d, \"ext\": \"E-%d\","
				       " \"status\": 2, \"created\": \"2026-11-01T10:00:00Z\","
				       " \"goal\": \"lead\", \"base\": 30}}\n",
				       i * 100 + j, i, i * 100 + j);
	}
	return rc;
}

/* The whole of a daemon's log, malloc'd ("" when there is none). */
static char *dm_log(const struct dm_daemon *d)
{
	char *s = d->log[0] ? test_slurp(d->log) : NULL;

	return s ? s : strdup("");
}

/* Reaps d if it has exited (or waits up to timeout_ms for it). True once
 * reaped. */
static bool dm_reap(struct dm_daemon *d, unsigned timeout_ms)
{
	uint64_t end = dm_ms() + (uint64_t)timeout_ms * DM_SLACK;
	pid_t r;

	if (!d->pid || d->reaped)
		return true;
	for (;;) {
		r = waitpid(d->pid, &d->status, WNOHANG);
		if (r == d->pid || (r < 0 && errno == ECHILD)) {
			d->reaped = true;
			return true;
		}
		if (dm_ms() >= end)
			return false;
		dm_sleep_ms(10);
	}
}

/* The value after "key=" in the first log line holding msg, into out. */
static bool dm_log_field(const char *log, const char *msg, const char *key, char *out,
			 size_t outlen)
{
	const char *line = strstr(log, msg), *eol, *v;
	char k[64];

	if (!line)
		return false;
	eol = strchr(line, '\n');
	snprintf(k, sizeof(k), " %s=", key);
	v = strstr(line, k);
	if (!v || (eol && v > eol))
		return false;
	v += strlen(k);
	snprintf(out, outlen, "%.*s", (int)strcspn(v, " \n"), v);
	return true;
}

/* Starts `leadsync run` as daemon i with the test's settings and extra
 * ("NAME=value", NULL-terminated; may be NULL; they come first, so they
 * override the test's). Does not wait. */
static bool dm_spawn(struct dm_env *e, int i, const char *const *extra)
{
	struct dm_daemon *d = &e->d[i];
	const char *bin = getenv("LEADSYNC_TEST_BIN");
	extern char **environ;
	char db[1024], rules[128];
	char *envp[512], *argv[3];
	size_t n = 0, k;
	int fd, devnull;
	pid_t parent;

	if (!bin || !*bin) {
		printf("  LEADSYNC_TEST_BIN is not set: run the tests with 'make test'\n");
		return false;
	}
	memset(d, 0, sizeof(*d));
	snprintf(d->log, sizeof(d->log), "/tmp/leadsync-daemon-XXXXXX");
	fd = mkstemp(d->log);
	if (fd < 0) {
		d->log[0] = '\0';
		return false;
	}
	devnull = open("/dev/null", O_RDONLY);
	snprintf(db, sizeof(db), "LEADSYNC_DB=%s", e->ci);
	snprintf(rules, sizeof(rules), "LEADSYNC_RULES=%s", e->rules);
	/* extra, then ours, then the test's: getenv() takes the first of a name */
	for (k = 0; extra && extra[k] && n < 40; k++)
		envp[n++] = (char *)extra[k];
	envp[n++] = db;
	envp[n++] = rules;
	envp[n++] = "LEADSYNC_LISTEN=127.0.0.1:0";
	envp[n++] = "LEADSYNC_LOG_LEVEL=info";
	envp[n++] = "LEADSYNC_POLL_LEASE=5";
	envp[n++] = "LEADSYNC_POLL_BACKOFF_MIN=1";
	envp[n++] = "LEADSYNC_POLL_BACKOFF_MAX=2";
	envp[n++] = "LEADSYNC_CRM_TIMEOUT=40";
	for (k = 0; environ[k] && n < 511; k++)
		envp[n++] = environ[k];
	envp[n] = NULL;
	argv[0] = (char *)bin;
	argv[1] = "run";
	argv[2] = NULL;
	parent = getpid();
	d->pid = fork();
	if (d->pid < 0) {
		d->pid = 0;
		close(fd);
		close(devnull);
		return false;
	}
	if (d->pid == 0) {
		/* dies with the test process, whatever happens to it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(devnull, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		closefrom(3); /* not the mock's sockets nor the test's connections */
		execve(bin, argv, envp);
		_exit(127);
	}
	close(fd);
	close(devnull);
	return true;
}

/* dm_spawn(), then waits until daemon i listens. Learns its port and
 * worker id from its log. */
static bool dm_start(struct dm_env *e, int i, const char *const *extra)
{
	struct dm_daemon *d = &e->d[i];
	char port[16], *log = NULL;
	uint64_t end;
	bool ok = false;

	if (!dm_spawn(e, i, extra))
		return false;
	end = dm_ms() + 15000 * DM_SLACK;
	while (dm_ms() < end) {
		free(log);
		log = dm_log(d);
		if (strstr(log, "msg=\"listening\"")) {
			ok = dm_log_field(log, "msg=\"listening\"", "port", port, sizeof(port)) &&
			     dm_log_field(log, "msg=\"poller started\"", "worker", d->worker,
					  sizeof(d->worker));
			d->port = (int)strtol(port, NULL, 10);
			ok = ok && d->port > 0;
			break;
		}
		if (dm_reap(d, 0))
			break;
		dm_sleep_ms(20);
	}
	if (!ok)
		printf("  daemon %d did not start:\n%s\n", i, log ? log : "");
	free(log);
	return ok;
}

/* Sends sig to daemon i and waits up to timeout_ms for it to exit; true
 * when it exited. *ms (may be NULL): how long it took. */
static bool dm_signal_wait(struct dm_env *e, int i, int sig, unsigned timeout_ms, uint64_t *ms)
{
	struct dm_daemon *d = &e->d[i];
	uint64_t t0 = dm_ms();
	bool done;

	if (!d->pid || d->reaped)
		return d->reaped;
	kill(d->pid, sig);
	done = dm_reap(d, timeout_ms);
	if (ms)
		*ms = dm_ms() - t0;
	return done;
}

static bool dm_exited_0(const struct dm_daemon *d)
{
	if (!d->reaped || !WIFEXITED(d->status) || WEXITSTATUS(d->status) != 0) {
		printf("  daemon %d: %s %d\n", (int)d->pid,
		       !d->reaped ? "still running" : WIFEXITED(d->status) ? "exit" : "signal",
		       !d->reaped ? 0 : WIFEXITED(d->status) ? WEXITSTATUS(d->status)
							  : WTERMSIG(d->status));
		return false;
	}
	return true;
}

static int dm_pg_local(const char *cmd, const char *dir, char **out)
{
	char *argv[] = { "scripts/pg-local", (char *)cmd, (char *)dir, NULL };
	const char *env[] = { "PG_FSYNC=off", NULL };
	char *o = NULL, *er = NULL;
	int rc = test_run(argv, env, NULL, &o, &er);

	if (rc != 0)
		printf("  pg-local %s: %s\n", cmd, er ? er : "");
	if (out && o)
		o[strcspn(o, "\n")] = '\0';
	if (out)
		*out = o;
	else
		free(o);
	free(er);
	return rc;
}

/* Kills and reaps what still runs, shows the logs of a failed test, and
 * removes everything the test made. */
static void dm_close(struct dm_env *e)
{
	char cmd[128];
	int i;

	for (i = 0; i < 2; i++) {
		struct dm_daemon *d = &e->d[i];

		if (d->pid && !d->reaped) {
			kill(d->pid, SIGKILL);
			if (waitpid(d->pid, &d->status, 0) == d->pid)
				d->reaped = true;
		}
		if (d->log[0]) {
			if (test__failed() || getenv("DM_SHOW_LOG")) {
				char *log = dm_log(d);
				size_t len = strlen(log);

				printf("  --- daemon %d log (last 6 KB):\n%s\n", i,
				       len > 6144 ? log + len - 6144 : log);
				free(log);
			}
			unlink(d->log);
		}
	}
	if (e->m)
		mock_crm_stop(e->m);
	PQfinish(e->c);
	free(e->ci);
	if (e->rules[0] && strncmp(e->rules, "/tmp/leadsync-dmrules-", 22) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->rules);
		if (system(cmd) != 0)
			printf("  could not remove %s\n", e->rules);
	}
	if (e->pgdir[0])
		dm_pg_local("destroy", e->pgdir, NULL);
	memset(e, 0, sizeof(*e));
}

/* Requests the mock has read and not yet answered; of them, how many
 * arrived after since_us. */
static size_t dm_in_flight(struct mock_crm *m, uint64_t since_us, size_t *after)
{
	static struct mock_request reqs[4096];
	size_t n = mock_crm_requests(m, reqs, 4096), i, open = 0;

	if (after)
		*after = 0;
	for (i = 0; i < n && i < 4096; i++)
		if (reqs[i].t_done_us == 0) {
			open++;
			if (after && reqs[i].t_arrive_us > since_us)
				(*after)++;
		}
	return open;
}

/* A GET on the daemon's listener: the status, or -1. */
/* GET path with extra header lines ("Name: value\r\n"; "" for none). */
static int dm_http_get_hdr(int port, const char *path, const char *headers)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 10 };
	char req[1024], resp[512];
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		     "%s\r\n", path, headers);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
		while (got < sizeof(resp) - 1 &&
		       (n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
			got += (size_t)n;
		resp[got] = '\0';
		if (strncmp(resp, "HTTP/1.1 ", 9) == 0)
			status = (int)strtol(resp + 9, NULL, 10);
	}
	close(fd);
	return status;
}

static int dm_http_get(int port, const char *path)
{
	return dm_http_get_hdr(port, path, "");
}

/* ------------------------------------------------------------ two daemons */

static void dm_two_body(struct dm_env *e)
{
	/* answers that take 100-500 ms spread the due times, so both
	 * daemons' ticks race for the same pairs */
	struct dm_route slow = { .status = "callback", .delay_ms = 100, .jitter_ms = 400 };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = dm_answer, .data = &slow },
	};
	static const char *const pairs15[] = { "LEADSYNC_POLL_PAIRS=15", NULL };
	struct buf imp;
	char sql[512];
	int i;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_two", NULL, routes, 1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 40, "dm_crm", mock_crm_port(e->m), "slow", 1), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	/* at most 15 pairs each: 40 due pairs need both daemons */
	ASSERT(dm_start(e, 0, pairs15));
	ASSERT(dm_start(e, 1, pairs15));
	ASSERT(strcmp(e->d[0].worker, e->d[1].worker) != 0);
	/* until both have done their share: counted, not slept */
	ASSERT(dm_wait_sql(e->c,
			   "SELECT (SELECT count(*) >= 60 FROM poll_runs)"
			   " AND (SELECT count(*) = 2 AND min(n) >= 15"
			   " FROM (SELECT count(*) n FROM poll_runs GROUP BY worker) w)"
			   " AND (SELECT count(*) >= 3 FROM (SELECT offer FROM poll_runs"
			   " GROUP BY offer HAVING count(DISTINCT worker) = 2) x)",
			   "t", 20000));
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_signal_wait(e, 1, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
	ASSERT(dm_exited_0(&e->d[1]));

	/* both worked, and polled the same pairs at different times */
	for (i = 0; i < 2; i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) >= 15 FROM poll_runs WHERE worker = '%s'", e->d[i].worker);
		ASSERT(test_sql_is(e->c, sql, "t"));
	}
	ASSERT(test_sql_is(e->c, "SELECT count(*) >= 60 FROM poll_runs", "t"));
	ASSERT(test_sql_is(e->c,
		     "SELECT count(*) >= 3 FROM (SELECT offer FROM poll_runs GROUP BY offer"
		     " HAVING count(DISTINCT worker) = 2) x",
		     "t"));
	/* never at once: for each pair, runs of different workers are disjoint */
	ASSERT(test_sql_is(e->c,
		     "SELECT count(*) FROM poll_runs x JOIN poll_runs y ON x.offer = y.offer"
		     " AND x.variant = y.variant AND x.worker <> y.worker AND x.id < y.id"
		     " AND x.started < y.finished AND y.started < x.finished",
		     "0"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM poll_runs WHERE outcome <> 'ok'"
			   " OR finished IS NULL OR finished < started", "0"));
	/* each lead moved once, whoever polled it */
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM leads WHERE status = 3", "40"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM lead_history WHERE source = 'poll'", "40"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NOT NULL", "0"));
}

DM_TEST(daemon_two_on_one_database_never_poll_a_pair_at_once, dm_two_body)

/* ------------------------------------------------------------ kill -9 */

static void dm_kill_body(struct dm_env *e)
{
	struct dm_route slow = { .status = "callback", .delay_ms = 1500 };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = dm_answer, .data = &slow },
	};
	static const char *const pairs15[] = { "LEADSYNC_POLL_PAIRS=15", NULL };
	struct buf imp;
	char sql[1024], *log;
	long held;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_kill", NULL, routes, 1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 30, "dm_crm", mock_crm_port(e->m), "slow", 1), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, pairs15));
	ASSERT(dm_start(e, 1, pairs15));
	/* daemon 0 dies while it holds leases with requests in flight */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) >= 5 FROM poll_schedule WHERE lease_owner = '%s'"
		 " AND lease_until > now()", e->d[0].worker);
	ASSERT(dm_wait_sql(e->c, sql, "t", 8000));
	ASSERT(dm_signal_wait(e, 0, SIGKILL, 5000, NULL));
	ASSERT(WIFSIGNALED(e->d[0].status) && WTERMSIG(e->d[0].status) == SIGKILL);
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE dm_held AS SELECT offer, variant, lease_until, now() AS killed"
		 " FROM poll_schedule WHERE lease_owner = '%s'", e->d[0].worker);
	ASSERT(test_sql_exec(e->c, sql));
	ASSERT(test_sql_exec(e->c, "CREATE TABLE dm_snap AS SELECT offer, variant, next_due"
			     " FROM poll_schedule WHERE variant = 'processing'"));
	held = dm_long(e->c, "SELECT count(*) FROM dm_held");
	ASSERT(held >= 5);

	/* after the lease runs out (5 s), the survivor polls every held pair */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM dm_held h WHERE NOT EXISTS (SELECT 1 FROM poll_runs r"
		 " WHERE r.offer = h.offer AND r.variant = h.variant AND r.worker = '%s'"
		 " AND r.started > h.killed AND r.outcome = 'ok')", e->d[1].worker);
	/* 30 s, not 15: the survivor polls 15 pairs at once at 1.5 s each, and
	 * a loaded CI machine must not turn a slow takeover into a failure */
	ASSERT(dm_wait_sql(e->c, sql, "0", 30000));
	/* no pair stuck: every due time moved on */
	ASSERT(dm_wait_sql(e->c,
			   "SELECT count(*) FROM poll_schedule s JOIN dm_snap p USING (offer, variant)"
			   " WHERE s.next_due <= p.next_due",
			   "0", 8000));
	/* not before the dead daemon's lease had run out */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM dm_held h JOIN poll_runs r ON r.offer = h.offer"
		 " AND r.variant = h.variant AND r.worker = '%s' AND r.started > h.killed"
		 " AND r.started < h.lease_until", e->d[1].worker);
	ASSERT(test_sql_is(e->c, sql, "0"));
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM poll_runs WHERE worker = '%s'"
				   " AND started > (SELECT max(killed) FROM dm_held)", e->d[0].worker);
	ASSERT(test_sql_is(e->c, sql, "0"));
	ASSERT(dm_signal_wait(e, 1, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[1]));
	log = dm_log(&e->d[1]);
	snprintf(sql, sizeof(sql), "from=%s", e->d[0].worker);
	if (!strstr(log, "msg=\"lease taken over\"") || !strstr(log, sql)) {
		free(log);
		ASSERT(!"the survivor did not log taking the leases over");
	}
	free(log);
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM leads WHERE status = 3", "30"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM lead_history WHERE source = 'poll'", "30"));
}

DM_TEST(daemon_killed_daemons_pairs_are_taken_over_after_the_lease, dm_kill_body)

/* ------------------------------------------------------------ database restart */

static void dm_restart_body(struct dm_env *e)
{
	static atomic_bool flip;
	struct dm_route slow = { .status = "processing", .alt_status = "callback", .flip = &flip,
				 .delay_ms = 800 };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = dm_answer, .data = &slow },
	};
	struct buf imp;
	char *base = NULL, *log, *restarted = NULL, sql[512];
	uint64_t t_flip, end;
	size_t after = 0;
	bool seen;

	atomic_store(&flip, false);
	snprintf(e->pgdir, sizeof(e->pgdir), "/tmp/leadsync-pg.XXXXXX");
	if (!mkdtemp(e->pgdir)) {
		e->pgdir[0] = '\0';
		ASSERT(!"mkdtemp");
	}
	ASSERT_EQ(dm_pg_local("start", e->pgdir, &base), 0);
	seen = dm_open(e, "postgres", base, routes, 1);
	free(base);
	ASSERT(seen);
	buf_init(&imp, 0);
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 10, "dm_crm", mock_crm_port(e->m), "slow", 2), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, NULL));
	/* a first round answers "processing": nothing changes */
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) >= 10 FROM poll_runs WHERE outcome = 'ok'", "t",
			   8000));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM lead_history WHERE source = 'poll'", "0"));
	/* from now on the CRM moves every lead to callback; the database goes
	 * away while such answers are in flight */
	t_flip = mock_now_us();
	atomic_store(&flip, true);
	end = dm_ms() + 5000 * DM_SLACK;
	for (;;) {
		dm_in_flight(e->m, t_flip, &after);
		if (after >= 3 || dm_ms() > end)
			break;
		dm_sleep_ms(10);
	}
	ASSERT(after >= 3);
	PQfinish(e->c);
	e->c = NULL;
	ASSERT_EQ(dm_pg_local("stop", e->pgdir, NULL), 0);
	dm_sleep_ms(1500);
	ASSERT(dm_reap(&e->d[0], 0) == false); /* still running */
	ASSERT_EQ(dm_pg_local("start", e->pgdir, NULL), 0);
	{
		char err[512];

		ASSERT_EQ(store_connect(e->ci, &e->c, err, sizeof(err)), 0);
	}
	restarted = test_sql_value(e->c, "SELECT now()::text");
	ASSERT(restarted);
	/* it reconnects and polls again; every lead gets its change */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) >= 10 FROM poll_runs WHERE started > '%s' AND outcome = 'ok'",
		 restarted);
	free(restarted);
	ASSERT(dm_wait_sql(e->c, sql, "t", 20000));
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) FROM leads WHERE status = 3", "20", 10000));
	ASSERT(dm_reap(&e->d[0], 0) == false);
	/* each lead moved once: one poll history row, 2 -> 3, written with an
	 * ok poll run that counted it */
	ASSERT(test_sql_is(e->c,
		     "SELECT count(*) FROM leads l WHERE (SELECT count(*) FROM lead_history h"
		     " WHERE h.lead = l.id AND h.source = 'poll') <> 1",
		     "0"));
	ASSERT(test_sql_is(e->c,
		     "SELECT count(*) FROM lead_history h JOIN poll_runs r ON r.id = h.source_id"
		     " WHERE h.source = 'poll' AND r.outcome = 'ok' AND h.before->>'status' = '2'"
		     " AND h.after->>'status' = '3' AND r.offer = (h.lead / 100)",
		     "20"));
	ASSERT(test_sql_is(e->c, "SELECT sum(leads_changed) FROM poll_runs", "20"));
	/* the outage was seen, and survived */
	log = dm_log(&e->d[0]);
	seen = strstr(log, "level=warn") != NULL;
	free(log);
	ASSERT(seen);
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NOT NULL", "0"));
}

DM_TEST(daemon_survives_a_database_restart_mid_run_and_applies_once, dm_restart_body)

/* ------------------------------------------------------------ SIGTERM */

static void dm_term_body(struct dm_env *e)
{
	/* quick: still out when the signal comes however slow the start;
	 * held: out long after any stop, so only the deadline ends them */
	struct dm_route quick = { .status = "callback", .delay_ms = 5000 };
	struct dm_route held = { .status = "callback", .delay_ms = 300000 };
	struct mock_route routes[] = {
		{ .path = "/quick", .kind = MOCK_FUNC, .fn = dm_answer, .data = &quick },
		{ .path = "/held", .kind = MOCK_FUNC, .fn = dm_answer, .data = &held },
	};
	static const char *const lease30[] = { "LEADSYNC_POLL_LEASE=30", NULL };
	struct mock_request reqs[256];
	struct buf imp;
	char *log;
	uint64_t t_term, ms = 0, end;
	size_t n, i, open = 0, quick_open = 0;
	bool stopped;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_term", NULL, routes, 2));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 10, "dm_crm", mock_crm_port(e->m), "quick", 1), 0);
	ASSERT_EQ(dm_offers(&imp, 30, 5, "dm_crm", mock_crm_port(e->m), "held", 1), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	/* a lease longer than the stop deadline: released means released */
	ASSERT(dm_start(e, 0, lease30));
	end = dm_ms() + 8000 * DM_SLACK;
	while ((open = dm_in_flight(e->m, 0, NULL)) < 15 && dm_ms() < end)
		dm_sleep_ms(5);
	ASSERT_EQ(open, 15);
	t_term = mock_now_us();
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 20000, &ms));
	ASSERT(dm_exited_0(&e->d[0]));
	/* the held requests are cut at the 10 s deadline */
	printf("  stopped in %" PRIu64 " ms\n", ms);
	ASSERT(ms >= 9000); /* not before it; how much after is the machine's load */
	n = mock_crm_requests(e->m, reqs, 256);
	for (i = 0; i < n; i++) {
		if (strcmp(reqs[i].path, "/quick") == 0 && reqs[i].t_arrive_us < t_term &&
		    (reqs[i].t_done_us == 0 || reqs[i].t_done_us > t_term))
			quick_open++;
	}
	ASSERT_EQ(n, 15);     /* no new claim after the signal */
	ASSERT_EQ(quick_open, 10); /* the quick ones were in flight at the signal */
	/* in-flight work finished and was applied */
	ASSERT(test_sql_is(e->c,
		     "SELECT concat_ws(' ', count(*), min(outcome), max(outcome), sum(leads_changed))"
		     " FROM poll_runs WHERE offer < 30",
		     "10 ok ok 10"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM leads WHERE status = 3 AND offer < 30", "10"));
	/* what the deadline cut is recorded as cancelled, not applied, due again */
	ASSERT(test_sql_is(e->c,
		     "SELECT concat_ws(' ', count(*), min(outcome), max(outcome))"
		     " FROM poll_runs WHERE offer >= 30",
		     "5 cancelled cancelled"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM leads WHERE status = 2 AND offer >= 30", "5"));
	ASSERT(test_sql_is(e->c,
		     "SELECT count(*) FROM poll_schedule WHERE offer >= 30 AND variant = 'processing'"
		     " AND next_due <= now() AND fail_count = 0",
		     "5"));
	/* every lease given back (the lease is 30 s: not merely run out) */
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NOT NULL", "0"));
	log = dm_log(&e->d[0]);
	stopped = strstr(log, "msg=\"stopped\"") != NULL;
	free(log);
	ASSERT(stopped);
}

DM_TEST(daemon_sigterm_finishes_in_flight_work_and_releases_leases, dm_term_body)

/* ------------------------------------------------------------ SIGHUP */

static const char dm_rule_v1[] =
	"return {\n"
	"  processing = { url = 'http://{host}/v1?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"  end,\n"
	"}\n";

/* Does not compile: line 3. */
static const char dm_rule_broken[] =
	"return {\n"
	"  processing = { url = 'http://{host}/v1?ids={idel}', batch = 10 },\n"
	"  process = function(data) for _, d in ipairs(data) do end end end,\n"
	"}\n";

/* The new version: another path, and every answer read as approved. */
static const char dm_rule_v2[] =
	"return {\n"
	"  processing = { url = 'http://{host}/v2?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], 'approved') end\n"
	"  end,\n"
	"}\n";

static bool dm_wait_log(struct dm_daemon *d, const char *needle, unsigned timeout_ms)
{
	uint64_t end = dm_ms() + (uint64_t)timeout_ms * DM_SLACK;
	char *log;
	bool found;

	for (;;) {
		log = dm_log(d);
		found = strstr(log, needle) != NULL;
		free(log);
		if (found || dm_ms() > end)
			return found;
		dm_sleep_ms(50);
	}
}

static void dm_hup_body(struct dm_env *e)
{
	struct dm_route cb = { .status = "callback" };
	struct mock_route routes[] = {
		{ .path = "/v1", .kind = MOCK_FUNC, .fn = dm_answer, .data = &cb },
		{ .path = "/v2", .kind = MOCK_FUNC, .fn = dm_answer, .data = &cb },
	};
	struct buf imp;
	char *log, *line, sql[512];
	long mark;
	bool ok;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_hup", NULL, routes, 2));
	ASSERT(dm_rule(e, "dm_hup", dm_rule_v1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 5, "dm_hup", mock_crm_port(e->m), "unused", 1), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, NULL));
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) FROM leads WHERE status = 3", "5", 8000));

	/* a version that does not compile: logged with file and line, the
	 * loaded version goes on polling */
	ASSERT(dm_rule(e, "dm_hup", dm_rule_broken));
	mark = dm_long(e->c, "SELECT max(id) FROM poll_runs");
	kill(e->d[0].pid, SIGHUP);
	ASSERT(dm_wait_log(&e->d[0], "rule reload failed", 5000));
	log = dm_log(&e->d[0]);
	line = strstr(log, "rule reload failed");
	if (line)
		line[strcspn(line, "\n")] = '\0';
	printf("  %s\n", line ? line : "(no line)");
	ok = line && strstr(line, "previous version kept") && strstr(line, "dm_hup.lua:3");
	free(log);
	ASSERT(ok);
	snprintf(sql, sizeof(sql), "SELECT count(*) >= 10 FROM poll_runs WHERE id > %ld", mark);
	ASSERT(dm_wait_sql(e->c, sql, "t", 8000));
	snprintf(sql, sizeof(sql),
		 "SELECT concat_ws(' ', min(outcome), max(outcome), bool_and(url LIKE '%%/v1?%%'))"
		 " FROM poll_runs WHERE id > %ld", mark);
	ASSERT(test_sql_is(e->c, sql, "ok ok t"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM leads WHERE status = 3", "5"));
	ASSERT(kill(e->d[0].pid, 0) == 0);

	/* a good version is taken on the next SIGHUP: the new path, the new
	 * reading */
	ASSERT(dm_rule(e, "dm_hup", dm_rule_v2));
	mark = dm_long(e->c, "SELECT max(id) FROM poll_runs");
	kill(e->d[0].pid, SIGHUP);
	ASSERT(dm_wait_log(&e->d[0], "msg=\"rule reloaded\" rule=dm_hup", 5000));
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) FROM leads WHERE status = 6", "5", 8000));
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) >= 5 FROM poll_runs WHERE id > %ld AND url LIKE '%%/v2?%%'"
		 " AND outcome = 'ok'", mark);
	ASSERT(test_sql_is(e->c, sql, "t"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM poll_runs WHERE outcome <> 'ok'", "0"));
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_sighup_keeps_a_broken_rule_out_and_takes_a_good_one, dm_hup_body)

/* ------------------------------------------------------------ postbacks */

static void dm_postback_body(struct dm_env *e)
{
	/* out for longer than six postbacks take even on a busy machine */
	struct dm_route slow = { .status = "callback", .delay_ms = 10000 };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = dm_answer, .data = &slow },
	};
	struct mock_request reqs[256];
	struct buf imp;
	char path[256];
	uint64_t t0, t1, ts, worst = 0;
	size_t n, i, across = 0;
	int k, status;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_postback", NULL, routes, 1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 20, "dm_crm", mock_crm_port(e->m), "slow", 1), 0);
	/* the postbacks' offer has no rule: it is never polled */
	ASSERT_EQ(buf_adds(&imp,
			   "{\"offer\": {\"id\": 900, \"advertiser\": 1, \"name\": \"Push\","
			   " \"landing_url\": \"https://shop.example/x\"}}\n"
			   "{\"goal\": {\"offer\": 900, \"code\": \"lead\", \"payout\": \"fixed\","
			   " \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n"
			   "{\"click\": {\"id\": \"" DM_SEED_CLICK "\", \"offer\": 900, \"wm\": 7}}\n"),
		  0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, NULL));
	t0 = dm_ms() + 8000 * DM_SLACK;
	while (dm_in_flight(e->m, 0, NULL) < 20 && dm_ms() < t0)
		dm_sleep_ms(5);
	ASSERT_EQ(dm_in_flight(e->m, 0, NULL), 20);
	t0 = mock_now_us();
	for (k = 1; k <= 6; k++) {
		snprintf(path, sizeof(path),
			 "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
			 "&request_id=dm-busy-%d&action=lead&status=hold", k);
		ts = dm_ms();
		status = dm_http_get(e->d[0].port, path);
		ts = dm_ms() - ts;
		if (ts > worst)
			worst = ts;
		ASSERT_EQ(status, 200);
		dm_sleep_ms(400); /* spread over the time the polls are out */
	}
	t1 = mock_now_us();
	printf("  slowest postback %" PRIu64 " ms\n", worst);
	/* answered while the CRM still held every poll: by order, not by time */
	n = mock_crm_requests(e->m, reqs, 256);
	for (i = 0; i < n; i++)
		if (reqs[i].t_arrive_us < t0 && (reqs[i].t_done_us == 0 || reqs[i].t_done_us > t1))
			across++;
	ASSERT_EQ(across, 20);
	ASSERT(test_sql_is(e->c,
		     "SELECT concat_ws(' ', count(*), min(status), max(status)) FROM leads"
		     " WHERE offer = 900 AND request_id LIKE 'dm-busy-%'",
		     "6 2 2"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM postbacks_in WHERE http_status = 200", "6"));
	/* and the polls finish as usual */
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) FROM leads WHERE status = 3 AND offer < 900",
			   "20", 15000));
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_postbacks_answer_while_the_poller_is_busy, dm_postback_body)

/* ------------------------------------------------------------ failed start */

/* What a daemon could write, as one text: the leads, the schedule, the
 * poll runs, the history and the postback log. */
static char *dm_db_state(PGconn *c)
{
	return test_sql_value(c,
		"SELECT concat_ws(' | ',"
		" (SELECT string_agg(l::text, ',' ORDER BY l.id) FROM leads l),"
		" (SELECT string_agg(s::text, ',' ORDER BY s.offer, s.variant) FROM poll_schedule s),"
		" (SELECT count(*) FROM poll_runs), (SELECT count(*) FROM lead_history),"
		" (SELECT count(*) FROM postbacks_in))");
}

/* A daemon that cannot start (extra says why) exits 1 with `cannot start`
 * and why, having written nothing and asked the CRM nothing, though a
 * lead's hold is over and a pair is due. */
static void dm_no_start_body(struct dm_env *e, const char *db, const char *const *extra,
			     const char *why)
{
	struct dm_route ok = { .status = "callback" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = dm_answer, .data = &ok },
	};
	static struct mock_request reqs[16];
	struct buf imp;
	char *before = NULL, *after = NULL, *log = NULL;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, db, NULL, routes, 1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 2, "dm_crm", mock_crm_port(e->m), "ok", 1), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	/* lead 1001's hold ended an hour ago: the first timer round approves it */
	ASSERT(test_sql_exec(e->c, "UPDATE leads SET status = 4,"
				   " hold_until = now() - interval '1 hour' WHERE id = 1001"));
	before = dm_db_state(e->c);
	ASSERT(before);
	if (!dm_spawn(e, 0, extra) || !dm_reap(&e->d[0], 30000)) {
		free(before);
		ASSERT(!"the daemon did not exit");
	}
	after = dm_db_state(e->c);
	log = dm_log(&e->d[0]);
	if (!WIFEXITED(e->d[0].status) || WEXITSTATUS(e->d[0].status) != 1 || !after ||
	    strcmp(before, after) != 0 || !strstr(log, "msg=\"cannot start\"") ||
	    !strstr(log, why) || strstr(log, "timers started") || strstr(log, "poller started")) {
		printf("  exit %d\n  before %s\n  after  %s\n",
		       WIFEXITED(e->d[0].status) ? WEXITSTATUS(e->d[0].status) : -1, before,
		       after ? after : "(none)");
		test__fail(__FILE__, __LINE__, "a daemon that cannot start changed something");
	}
	free(before);
	free(after);
	free(log);
	ASSERT_EQ(mock_crm_requests(e->m, reqs, 16), 0);
	ASSERT(test_sql_is(e->c, "SELECT status FROM leads WHERE id = 1001", "4"));
}

TEST(daemon_unknown_time_zone_exits_1_and_changes_nothing)
{
	static const char *const tz[] = { "LEADSYNC_TZ=Mars/Olympus", NULL };
	struct dm_env e;

	memset(&e, 0, sizeof(e));
	dm_no_start_body(&e, "ls_daemon_bad_tz", tz, "Mars/Olympus");
	dm_close(&e);
}

TEST(daemon_listen_port_taken_exits_1_and_changes_nothing)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	char listen_env[64];
	const char *extra[] = { listen_env, NULL };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct dm_env e;

	memset(&e, 0, sizeof(e));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		if (fd >= 0)
			close(fd);
		ASSERT(!"cannot hold a port");
	}
	snprintf(listen_env, sizeof(listen_env), "LEADSYNC_LISTEN=127.0.0.1:%d", ntohs(a.sin_port));
	dm_no_start_body(&e, "ls_daemon_port_taken", extra, "address already in use");
	dm_close(&e);
	close(fd);
}

TEST(daemon_unmigrated_database_or_missing_rules_exit_1)
{
	static const char *const norules[] = { "LEADSYNC_RULES=/nonexistent/leadsync-rules", NULL };
	struct dm_env e;

	memset(&e, 0, sizeof(e));
	dm_no_start_body(&e, "ls_daemon_no_rules", norules, "/nonexistent/leadsync-rules");
	dm_close(&e);
	memset(&e, 0, sizeof(e));
	if (dm_open(&e, "ls_daemon_old_schema", NULL, NULL, 0) &&
	    test_sql_exec(e.c, "DELETE FROM schema_migrations WHERE name = ("
			       "SELECT max(name) FROM schema_migrations)") &&
	    dm_spawn(&e, 0, NULL) && dm_reap(&e.d[0], 30000)) {
		char *log = dm_log(&e.d[0]);

		if (!WIFEXITED(e.d[0].status) || WEXITSTATUS(e.d[0].status) != 1 ||
		    !strstr(log, "lacks migration"))
			test__fail(__FILE__, __LINE__, "an unmigrated database did not stop the start");
		free(log);
	} else
		test__fail(__FILE__, __LINE__, "could not run the daemon on an old schema");
	dm_close(&e);
}

/* A wrong database configuration (LEADSYNC_DB: a string libpq cannot
 * read, a role or a database that does not exist) stops `leadsync run` at
 * once with libpq's message and the cause, the planted password masked;
 * `leadsync config check` says the same. */
static void dm_bad_db_body(struct dm_env *e, const char *name, const char *fmt, const char *why)
{
	const char *base = getenv("LEADSYNC_TEST_PG");
	char env[1024], rules[128];
	const char *extra[] = { env, NULL }, *cenv[] = { env, rules, NULL };
	char *argv[] = { (char *)getenv("LEADSYNC_TEST_BIN"), "config", "check", NULL };
	char *log, *out = NULL, *err = NULL;
	int rc;

	ASSERT(base && *base && argv[0]);
	snprintf(env, sizeof(env), fmt, base);
	dm_no_start_body(e, name, extra, why);
	if (test__failed())
		return;
	log = test_defer_free(dm_log(&e->d[0]));
	ASSERT_CONTAINS(log, "wrong configuration (");
	ASSERT(!strstr(log, "Plant3dPw9"));
	ASSERT(!strstr(log, "database unreachable"));
	snprintf(rules, sizeof(rules), "LEADSYNC_RULES=%s", e->rules);
	rc = test_run(argv, cenv, NULL, &out, &err);
	test_defer_free(out);
	test_defer_free(err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(err, "leadsync: config check: cannot connect to the database: wrong "
			     "configuration (");
	ASSERT_CONTAINS(err, why);
	ASSERT(!strstr(err, "Plant3dPw9") && out && !strstr(out, "Plant3dPw9"));
}

TEST(daemon_wrong_database_configuration_exits_1_and_says_why)
{
	static const struct {
		const char *fmt, *why;
	} cases[] = {
		{ "LEADSYNC_DB=%s password=Plant3dPw9 dbname=postgres bogus=1",
		  "(invalid connection string): invalid connection option" },
		{ "LEADSYNC_DB=%s user=ls_nosuchrole password=Plant3dPw9 dbname=postgres",
		  "SQLSTATE 28000): " },
		{ "LEADSYNC_DB=%s password=Plant3dPw9 dbname=ls_nosuchdb", "SQLSTATE 3D000): " },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]) && !test__failed(); i++) {
		struct dm_env e;

		memset(&e, 0, sizeof(e));
		dm_bad_db_body(&e, "ls_daemon_bad_db", cases[i].fmt, cases[i].why);
		dm_close(&e);
	}
}

/* The test server's log (scripts/pg-local writes it beside the socket
 * folder that LEADSYNC_TEST_PG names as host=), malloc'd; NULL when it
 * cannot be read. */
static char *dm_server_log(void)
{
	const char *base = getenv("LEADSYNC_TEST_PG"), *h = base ? strstr(base, "host=") : NULL;
	char path[1024];

	if (!h)
		return NULL;
	h += 5;
	snprintf(path, sizeof(path), "%.*s/server.log", (int)strcspn(h, " "), h);
	return test_slurp(path);
}

static int dm_count(const char *hay, const char *needle)
{
	int n = 0;

	while (hay && (hay = strstr(hay, needle))) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* A role that may no longer log in at run time: each db worker logs
 * libpq's message once (not at every retry, which the server's log
 * counts), keeps retrying, and is back once the role may log in again. */
static void dm_role_refused_body(struct dm_env *e)
{
	static const char refused[] = "role \"ls_dm_role\" is not permitted to log in";
	char env[1200], *log = NULL, *slog = NULL;
	const char *extra[] = { env, NULL };
	uint64_t end;
	int attempts = 0, lines = 0, before, status = -1;

	ASSERT(dm_open(e, "ls_daemon_role_refused", NULL, NULL, 0));
	slog = dm_server_log();
	if (!slog)
		printf("  the test server's log cannot be read: retries are not counted\n");
	before = dm_count(slog, refused);
	free(slog);
	ASSERT(test_sql_exec(e->c, "DROP ROLE IF EXISTS ls_dm_role"));
	ASSERT(test_sql_exec(e->c, "CREATE ROLE ls_dm_role LOGIN SUPERUSER"));
	snprintf(env, sizeof(env), "LEADSYNC_DB=%s user=ls_dm_role password=Plant3dPw9", e->ci);
	ASSERT(dm_start(e, 0, extra));
	ASSERT_EQ(dm_http_get(e->d[0].port, "/healthz"), 200);
	ASSERT(test_sql_exec(e->c, "ALTER ROLE ls_dm_role NOLOGIN"));
	ASSERT(test_sql_exec(e->c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
				  " WHERE usename = 'ls_dm_role'"));
	/* each /healthz is a job: a worker out of its back-off tries again */
	end = dm_ms() + 20000 * DM_SLACK;
	while (dm_ms() < end) {
		(void)dm_http_get(e->d[0].port, "/healthz");
		free(log);
		log = dm_log(&e->d[0]);
		lines = dm_count(log, "msg=\"database configuration is wrong\"");
		slog = dm_server_log();
		attempts = slog ? dm_count(slog, refused) - before : 6;
		free(slog);
		if (lines >= 1 && attempts >= 6)
			break;
		dm_sleep_ms(50);
	}
	test_defer_free(log);
	ASSERT(lines >= 1 && attempts >= 6);
	/* one line per worker (LEADSYNC_DB_WORKERS is 2), whatever the retries */
	ASSERT(lines <= 2);
	ASSERT_CONTAINS(log, "level=error msg=\"database configuration is wrong\" worker=");
	ASSERT_CONTAINS(log, "SQLSTATE 28000): ");
	ASSERT_CONTAINS(log, "is not permitted to log in");
	ASSERT(!strstr(log, "Plant3dPw9"));
	ASSERT(test_sql_exec(e->c, "ALTER ROLE ls_dm_role LOGIN"));
	/* a worker still in its back-off answers 503 meanwhile: wait for a 200 */
	end = dm_ms() + 20000 * DM_SLACK;
	while (dm_ms() < end && (status = dm_http_get(e->d[0].port, "/healthz")) != 200)
		dm_sleep_ms(50);
	ASSERT_EQ(status, 200);
	log = test_defer_free(dm_log(&e->d[0]));
	ASSERT_CONTAINS(log, "msg=\"database reachable again\"");
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_role_refused_at_run_time_is_logged_once_and_retried, dm_role_refused_body)

/* ------------------------------------------------------------ lead change log */

/* At debug level the log has one "lead changed" line per lead change,
 * from each writer, after its commit: a poll, a timer, a postback. */
static void dm_lead_log_body(struct dm_env *e)
{
	struct dm_route cb = { .status = "callback" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = dm_answer, .data = &cb },
	};
	static const char *const debug[] = { "LEADSYNC_LOG_LEVEL=debug", NULL };
	struct buf imp;
	char *log = NULL, *want = NULL, *tok, *save;
	size_t lines = 0;
	const char *p;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_lead_log", NULL, routes, 1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 1, "dm_crm", mock_crm_port(e->m), "ok", 1), 0);
	/* offer 900 has no rule: its leads change by timers and postbacks only */
	ASSERT_EQ(buf_adds(&imp,
			   "{\"offer\": {\"id\": 900, \"advertiser\": 1, \"name\": \"Push\","
			   " \"landing_url\": \"https://shop.example/x\"}}\n"
			   "{\"goal\": {\"offer\": 900, \"code\": \"lead\", \"payout\": \"fixed\","
			   " \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n"
			   "{\"click\": {\"id\": \"" DM_SEED_CLICK "\", \"offer\": 900, \"wm\": 7}}\n"
			   "{\"lead\": {\"id\": 9001, \"offer\": 900, \"ext\": \"H-1\", \"status\": 2,"
			   " \"created\": \"2026-11-01T10:00:00Z\", \"goal\": \"lead\", \"base\": 30}}\n"),
		  0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(test_sql_exec(e->c, "UPDATE leads SET status = 4,"
				   " hold_until = now() - interval '1 hour' WHERE id = 9001"));
	ASSERT(dm_start(e, 0, debug));
	ASSERT(dm_wait_sql(e->c, "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM leads",
			   "1001:3 9001:6", 15000));
	ASSERT_EQ(dm_http_get(e->d[0].port, "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
					    "&request_id=dm-log-1&action=lead&status=hold"),
		  200);
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
	/* the lines the history says there must be, and no others */
	want = test_sql_value(e->c,
		"SELECT string_agg(format('lead=%s offer=%s source=%s%s from=%s to=%s', h.lead,"
		" l.offer, h.source, CASE h.source WHEN 'timer' THEN ''"
		" WHEN 'postback' THEN ' postback=' || h.source_id"
		" ELSE ' run=' || coalesce(h.source_id, 0) END, coalesce(h.before ->> 'status', '0'),"
		" h.after ->> 'status'), '|' ORDER BY h.id) FROM lead_history h"
		" JOIN leads l ON l.id = h.lead WHERE h.source <> 'import'");
	ASSERT(want);
	log = dm_log(&e->d[0]);
	for (p = strstr(log, "msg=\"lead changed\""); p; p = strstr(p + 1, "msg=\"lead changed\""))
		lines++;
	for (tok = strtok_r(want, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
		if (!strstr(log, tok)) {
			printf("  no line \"%s\"\n", tok);
			test__fail(__FILE__, __LINE__, "a lead change is not in the log");
		}
	}
	if (!strstr(log, "lead=1001 offer=10 source=poll run=") ||
	    !strstr(log, "lead=9001 offer=900 source=timer from=4 to=6") ||
	    !strstr(log, "offer=900 source=postback postback=") || lines != 3)
		test__fail(__FILE__, __LINE__, "want 3 lead lines (poll, timer, postback), got %zu",
			   lines);
	free(want);
	free(log);
}

DM_TEST(daemon_debug_log_has_a_line_per_changed_lead, dm_lead_log_body)

/* ------------------------------------------------------------ metrics, readyz */

/* A GET on the daemon's listener: the status, and the body (malloc'd, the
 * caller frees) into *body; -1 when nothing came. */
static int dm_http_fetch(int port, const char *path, char **body)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 10 };
	char req[1024], chunk[4096];
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
	const char *sep;
	struct buf b;
	ssize_t n;

	*body = NULL;
	if (fd < 0)
		return -1;
	buf_init(&b, 16 << 20);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
		     path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			if (buf_add(&b, chunk, (size_t)n) < 0)
				break;
		if (b.p && strncmp(b.p, "HTTP/1.1 ", 9) == 0)
			status = (int)strtol(b.p + 9, NULL, 10);
		sep = b.p ? strstr(b.p, "\r\n\r\n") : NULL;
		*body = strdup(sep ? sep + 4 : "");
	}
	close(fd);
	buf_release(&b);
	return status;
}

/* The value of the sample `series` (its whole name and labels, as the
 * exposition writes them) in text; -1 when absent. */
static double dm_metric(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p;

	for (p = text; (p = strstr(p, series)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

/* Runs `promtool check metrics` on text; true when it finds nothing. */
static bool dm_promtool(const char *text)
{
	char *argv[] = { "/usr/bin/env", "promtool", "check", "metrics", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(argv, NULL, text, &out, &err);

	if (rc != 0)
		printf("  promtool check metrics (exit %d; installed by scripts/deps.sh, Debian"
		       " package prometheus):\n%s%s\n", rc, out ? out : "", err ? err : "");
	free(out);
	free(err);
	return rc == 0;
}

/* Every line of log is one JSON object with ts, level and msg first. */
static bool dm_log_is_json(const char *log)
{
	char *copy = strdup(log), *tok, *save;
	bool ok = copy != NULL;
	size_t lines = 0;

	for (tok = copy ? strtok_r(copy, "\n", &save) : NULL; tok && ok;
	     tok = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(tok);

		lines++;
		ok = j && cJSON_IsObject(j) && j->child && strcmp(j->child->string, "ts") == 0 &&
		     cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "level")) &&
		     cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "msg"));
		if (!ok)
			printf("  not a JSON log line: %s\n", tok);
		cJSON_Delete(j);
	}
	free(copy);
	return ok && lines > 0;
}

/* The push-only offer of the lead-log test: a click to post back on. */
#define DM_PUSH_OFFER                                                                     \
	"{\"offer\": {\"id\": 900, \"advertiser\": 1, \"name\": \"Push\","                \
	" \"landing_url\": \"https://shop.example/x\"}}\n"                                 \
	"{\"goal\": {\"offer\": 900, \"code\": \"lead\", \"payout\": \"fixed\","           \
	" \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n"                                \
	"{\"click\": {\"id\": \"" DM_SEED_CLICK "\", \"offer\": 900, \"wm\": 7}}\n"

/* /metrics after a poll and a postback: the counters moved, promtool
 * reads the text without a complaint; the log, in JSON, is one object per
 * line with the ids under the logfmt keys. */
static void dm_metrics_body(struct dm_env *e)
{
	struct dm_route cb = { .status = "callback" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = dm_answer, .data = &cb },
	};
	static const char *const json[] = { "LEADSYNC_LOG_FORMAT=json", "LEADSYNC_LOG_LEVEL=debug",
					    NULL };
	char *text = NULL, *log = NULL, series[256];
	struct buf imp;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_metrics", NULL, routes, 1));
	ASSERT_EQ(buf_adds(&imp, DM_ADV DM_PUSH_OFFER), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 1, "dm_crm", mock_crm_port(e->m), "ok", 1), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	/* the start is logged in JSON too: dm_start reads logfmt, so wait by hand */
	ASSERT(dm_spawn(e, 0, json));
	{
		uint64_t end = dm_ms() + 15000 * DM_SLACK;
		const char *p;

		while (!e->d[0].port && dm_ms() < end && !dm_reap(&e->d[0], 0)) {
			free(log);
			log = dm_log(&e->d[0]);
			p = strstr(log, "\"msg\":\"listening\"");
			p = p ? strstr(p, "\"port\":") : NULL;
			if (p)
				e->d[0].port = (int)strtol(p + 7, NULL, 10);
			else
				dm_sleep_ms(20);
		}
		free(log);
		log = NULL;
		ASSERT(e->d[0].port > 0);
	}
	ASSERT(dm_wait_sql(e->c, "SELECT status FROM leads WHERE id = 1001", "3", 15000));
	ASSERT_EQ(dm_http_get(e->d[0].port, "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
					    "&request_id=dm-metrics-1&action=lead&status=hold"),
		  200);
	/* a refused one too: another series of the same counter */
	ASSERT_EQ(dm_http_get(e->d[0].port, "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
					    "&action=lead&status=hold"),
		  400);

	/* the poll's counters move when its write's completion reaches the
	 * loop, a moment after the commit the wait above saw: scrape until
	 * they have (bounded only against a hang) */
	{
		uint64_t end = dm_ms() + 15000 * DM_SLACK;

		for (;;) {
			ASSERT_EQ(dm_http_fetch(e->d[0].port, "/metrics", &text), 200);
			if (dm_metric(text, "leadsync_polls_total{offer=\"10\",variant=\"processing\","
					    "outcome=\"ok\"}") >= 1 || dm_ms() >= end)
				break;
			free(text);
			text = NULL;
			dm_sleep_ms(50);
		}
	}
	test_defer(free, text);
	ASSERT(dm_promtool(text));
	ASSERT(dm_metric(text, "leadsync_polls_total{offer=\"10\",variant=\"processing\","
			       "outcome=\"ok\"}") >= 1);
	ASSERT_EQ(dm_metric(text, "leadsync_postbacks_total{outcome=\"created\",code=\"200\"}"), 1);
	ASSERT_EQ(dm_metric(text, "leadsync_postbacks_total{outcome=\"invalid\",code=\"400\"}"), 1);
	ASSERT(dm_metric(text, "leadsync_leads_checked_total{source=\"poll\"}") >= 1);
	ASSERT(dm_metric(text, "leadsync_leads_changed_total{source=\"poll\"}") == 1);
	ASSERT_EQ(dm_metric(text, "leadsync_leads_checked_total{source=\"postback\"}"), 1);
	ASSERT_EQ(dm_metric(text, "leadsync_leads_changed_total{source=\"postback\"}"), 1);
	snprintf(series, sizeof(series),
		 "leadsync_crm_request_duration_seconds_count{host=\"127.0.0.1:%d\"}",
		 mock_crm_port(e->m));
	ASSERT(dm_metric(text, series) >= 1);
	snprintf(series, sizeof(series),
		 "leadsync_crm_request_duration_seconds_bucket{host=\"127.0.0.1:%d\",le=\"+Inf\"}",
		 mock_crm_port(e->m));
	ASSERT(dm_metric(text, series) >= 1);
	ASSERT(dm_metric(text, "leadsync_db_job_duration_seconds_count") >= 3);
	ASSERT_EQ(dm_metric(text, "leadsync_database_up"), 1);
	ASSERT_EQ(dm_metric(text, "leadsync_ready"), 1);
	ASSERT_EQ(dm_metric(text, "leadsync_rule_limit_exhausted_total{limit=\"budget\"}"), 0);
	ASSERT(dm_metric(text, "leadsync_listener_connections_open") >= 1); /* this scrape */
	ASSERT(dm_metric(text, "process_resident_memory_bytes") > 1e6);
	ASSERT(dm_metric(text, "process_open_fds") >= 3);

	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
	log = dm_log(&e->d[0]);
	test_defer(free, log);
	ASSERT(dm_log_is_json(log));
	ASSERT_CONTAINS(log, "\"msg\":\"poll done\",\"worker\":");
	ASSERT_CONTAINS(log, "\"offer\":10,\"variant\":\"processing\",\"run\":");
	ASSERT_CONTAINS(log, "\"lead\":1001,\"offer\":10,\"source\":\"poll\",\"run\":");
	ASSERT_CONTAINS(log, "\"offer\":900,\"source\":\"postback\",\"postback\":");
}

DM_TEST(daemon_metrics_count_a_poll_and_a_postback, dm_metrics_body)

/* /readyz: 200 while serving; after SIGTERM with a drain period, 503
 * "draining" while /healthz and /metrics still answer; a second SIGTERM
 * stops at once, cleanly. */
static void dm_readyz_body(struct dm_env *e)
{
	static const char *const drain[] = { "LEADSYNC_DRAIN=600", NULL };
	char *body = NULL;
	uint64_t end;
	int st = -1;

	ASSERT(dm_open(e, "ls_daemon_readyz", NULL, NULL, 0));
	ASSERT_EQ(dm_import(e, DM_ADV), 0);
	ASSERT(dm_start(e, 0, drain));
	/* serving once the pool has connected: waited for, not assumed */
	for (end = dm_ms() + 10000 * DM_SLACK; dm_ms() < end; dm_sleep_ms(20)) {
		free(body);
		st = dm_http_fetch(e->d[0].port, "/readyz", &body);
		if (st != 503 || !body || !strstr(body, "\"starting\""))
			break; /* 200, or anything but "starting" (then asserted below) */
	}
	test_defer(free, body);
	ASSERT_EQ(st, 200);
	ASSERT_STREQ(body, "{\"ok\":true,\"state\":\"serving\"}");
	ASSERT(test_undefer(free, body));
	free(body);
	body = NULL;

	kill(e->d[0].pid, SIGTERM);
	for (end = dm_ms() + 10000 * DM_SLACK; dm_ms() < end; dm_sleep_ms(20)) {
		free(body);
		st = dm_http_fetch(e->d[0].port, "/readyz", &body);
		if (st != 200)
			break;
	}
	test_defer(free, body);
	ASSERT_EQ(st, 503);
	ASSERT_STREQ(body, "{\"ok\":false,\"state\":\"draining\"}");
	ASSERT_EQ(dm_http_get(e->d[0].port, "/healthz"), 200);
	ASSERT(test_undefer(free, body));
	free(body);
	ASSERT_EQ(dm_http_fetch(e->d[0].port, "/metrics", &body), 200);
	test_defer(free, body);
	ASSERT_EQ(dm_metric(body, "leadsync_ready"), 0);
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_readyz_fails_while_draining, dm_readyz_body)

/* ------------------------------------------------------------ heavy rules */

/* Rules whose work is inside library calls: a loop of them runs out of
 * budget like a Lua loop would (rule_int.h RULE_COST_*). */
static const char dm_rule_hash[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    local s = string.rep('x', 1 << 16)\n"
	"    while true do hash.sha256(s) end\n"
	"  end,\n"
	"}\n";

static const char dm_rule_json[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    local t = {}\n"
	"    for i = 1, 2000 do t[i] = { a = 'xxxxxxxxxxxxxxxx', b = i } end\n"
	"    while true do json.encode(t) end\n"
	"  end,\n"
	"}\n";

/* A rule that ends, but spends CPU in every call: about 12 million
 * instructions, a quarter of the default budget (60 ms at -O2). */
static const char dm_rule_slow[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    local x = 0\n"
	"    for i = 1, 3000000 do x = x + i end\n"
	"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"  end,\n"
	"}\n";

#define DM_PUSH_OFFER                                                                     \
	"{\"offer\": {\"id\": 900, \"advertiser\": 1, \"name\": \"Push\","                \
	" \"landing_url\": \"https://shop.example/x\"}}\n"                                 \
	"{\"goal\": {\"offer\": 900, \"code\": \"lead\", \"payout\": \"fixed\","           \
	" \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n"                                \
	"{\"click\": {\"id\": \"" DM_SEED_CLICK "\", \"offer\": 900, \"wm\": 7}}\n"

/* The earliest time the mock finished answering a request to path; 0 when
 * it has answered none. */
static uint64_t dm_served(struct mock_crm *m, const char *path)
{
	static struct mock_request reqs[4096];
	size_t n = mock_crm_requests(m, reqs, 4096), i;
	uint64_t t = 0;

	for (i = 0; i < n && i < 4096; i++)
		if (strcmp(reqs[i].path, path) == 0 && reqs[i].t_done_us &&
		    (!t || reqs[i].t_done_us < t))
			t = reqs[i].t_done_us;
	return t;
}

static void dm_heavy_body(struct dm_env *e)
{
	struct dm_route fast = { .status = "callback" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = dm_answer, .data = &fast },
		{ .path = "/heavy", .kind = MOCK_FUNC, .fn = dm_answer, .data = &fast },
	};
	/* the budget ends the heavy rules, not the clock; a failed pair waits
	 * long enough that each heavy rule runs once */
	const char *const extra[] = { "LEADSYNC_RULE_INSTRUCTIONS=200000000",
				      "LEADSYNC_RULE_TIME_MS=600000",
				      "LEADSYNC_POLL_BACKOFF_MIN=600",
				      "LEADSYNC_POLL_BACKOFF_MAX=1200", NULL };
	struct buf imp;
	char path[256];
	uint64_t served = 0, t, lat, worst = 0, end;
	unsigned during = 0, healthz = 0, postbacks = 0, k = 0;
	long rows = 0;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_heavy", NULL, routes, 2));
	ASSERT(dm_rule(e, "dm_hash", dm_rule_hash));
	ASSERT(dm_rule(e, "dm_json", dm_rule_json));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 10, 1, "dm_crm", mock_crm_port(e->m), "ok", 2), 0);
	ASSERT_EQ(dm_offers(&imp, 20, 1, "dm_hash", mock_crm_port(e->m), "heavy", 1), 0);
	ASSERT_EQ(dm_offers(&imp, 21, 1, "dm_json", mock_crm_port(e->m), "heavy", 1), 0);
	ASSERT_EQ(buf_adds(&imp, DM_PUSH_OFFER), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, extra));
	/* /healthz and postbacks, one after another, from the moment the
	 * heavy offers have their answers until both heavy runs are
	 * recorded: each answered meanwhile was answered while a heavy rule
	 * ran. On the loop, a rule would let none through in that window. */
	end = dm_ms() + 60000 * DM_SLACK;
	while (rows < 2 && dm_ms() < end) {
		t = dm_ms();
		if (k++ % 2) {
			snprintf(path, sizeof(path),
				 "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
				 "&request_id=dm-heavy-%u&action=lead&status=hold", k);
			ASSERT_EQ(dm_http_get(e->d[0].port, path), 200);
			postbacks++;
		} else {
			ASSERT_EQ(dm_http_get(e->d[0].port, "/healthz"), 200);
			healthz++;
		}
		lat = dm_ms() - t;
		if (!served)
			served = dm_served(e->m, "/heavy");
		else {
			during++;
			if (lat > worst)
				worst = lat;
		}
		rows = dm_long(e->c, "SELECT count(*) FROM poll_runs WHERE offer IN (20, 21)");
	}
	printf("  %u requests answered while the heavy rules ran, slowest %" PRIu64 " ms"
	       " (%u healthz, %u postbacks in all)\n", during, worst, healthz, postbacks);
	ASSERT_EQ(rows, 2);
	ASSERT(during >= 10);
	/* both ran out of budget, failed their batch and back off */
	ASSERT(test_sql_is(e->c,
			   "SELECT string_agg(outcome || ':' || (error LIKE '%instruction budget "
			   "exhausted (200000000)%')::text || ':' || (rule_cpu_ms > 50)::text, ' '"
			   " ORDER BY offer) FROM poll_runs WHERE offer IN (20, 21)",
			   "rule_error:true:true rule_error:true:true"));
	ASSERT(dm_wait_sql(e->c,
			   "SELECT count(*) FROM poll_schedule WHERE offer IN (20, 21)"
			   " AND variant = 'processing' AND fail_count = 1"
			   " AND next_due > now() + interval '60 seconds'",
			   "2", 5000 * DM_SLACK));
	/* the healthy offer polled on, every run ok */
	ASSERT(dm_wait_sql(e->c,
			   "SELECT count(*) >= 2 FROM poll_runs WHERE offer = 10 AND outcome = 'ok'",
			   "t", 15000 * DM_SLACK));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM poll_runs WHERE offer = 10 AND outcome <> 'ok'",
			   "0"));
	ASSERT_EQ(dm_long(e->c, "SELECT count(*) FROM leads WHERE offer = 900"), (long)postbacks);
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000 * DM_SLACK, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_heavy_rules_never_stall_the_loop, dm_heavy_body)

/* A rule that takes LEADSYNC_RULE_SLOW_MS of CPU per batch three runs in
 * a row is logged once and counted; its CPU time is in every run's row
 * and in /metrics, and the polls still apply its edits. */
static void dm_slow_body(struct dm_env *e)
{
	struct dm_route fast = { .status = "callback" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = dm_answer, .data = &fast },
	};
	const char *const extra[] = { "LEADSYNC_RULE_SLOW_MS=5", NULL };
	struct buf imp;
	char *body = NULL, *log;
	double slow, cpu;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_slow", NULL, routes, 1));
	ASSERT(dm_rule(e, "dm_slow", dm_rule_slow));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(dm_offers(&imp, 30, 1, "dm_slow", mock_crm_port(e->m), "ok", 2), 0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, extra));
	ASSERT(dm_wait_log(&e->d[0], "msg=\"rule slow\"", 30000 * DM_SLACK));
	log = dm_log(&e->d[0]);
	test_defer(free, log);
	ASSERT(strstr(log, "msg=\"rule slow\" offer=30 variant=processing rule=dm_slow runs=3"));
	ASSERT(test_sql_is(e->c,
			   "SELECT count(*) >= 3 AND bool_and(rule_cpu_ms >= 5) FROM poll_runs"
			   " WHERE offer = 30 AND outcome = 'ok'",
			   "t"));
	ASSERT(test_sql_is(e->c, "SELECT count(*) FROM leads WHERE offer = 30 AND status = 3", "2"));
	ASSERT_EQ(dm_http_fetch(e->d[0].port, "/metrics", &body), 200);
	test_defer(free, body);
	slow = dm_metric(body, "leadsync_rule_slow_runs_total{offer=\"30\",variant=\"processing\"}");
	cpu = dm_metric(body, "leadsync_rule_cpu_seconds_total{offer=\"30\",variant=\"processing\"}");
	printf("  slow runs %.0f, rule CPU %.3f s\n", slow, cpu);
	ASSERT(slow >= 3);
	ASSERT(cpu >= 0.015);
	ASSERT(dm_metric(body, "leadsync_rule_threads") >= 1);
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000 * DM_SLACK, NULL));
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_slow_rule_is_logged_and_counted, dm_slow_body)

/* ------------------------------------------------------------ secrets */

/* Secrets planted where a careless daemon would print them: an offer's
 * secret param and a credential-looking one in the request URL, echoed by
 * the CRM, logged by the rule and raised in its error; an advertiser's key
 * and a signature in postbacks, good and refused. None may reach the log,
 * the poll runs, the postback log or the history (README "Security"). */
#define DM_KEY "PLANTEDkey7319"
#define DM_TOKEN "PLANTEDtok8420"
#define DM_SIGN "PLANTEDsig9531"
#define DM_PBSECRET "PLANTEDpbsecret6642"
#define DM_PBQUERY "click_id=nonsense&request_id=dm-sec-3"

static const char dm_rule_secret[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}&key={key}&token={token}',"
	" batch = 10 },\n"
	"  process = function(data)\n"
	"    log('the key is ' .. offer.params.key .. ', the token ' .. offer.params.token)\n"
	"    error('the CRM said ' .. data.said .. ' to ' .. offer.params.key)\n"
	"  end,\n"
	"}\n";

/* Answers {"said": "<the request's query>"}: the CRM echoes the secrets. */
static void dm_echo(const struct mock_request *req, struct mock_answer *ans, void *data)
{
	if (buf_addf(&ans->body, "{\"said\": \"%s\"}", req->query) < 0)
		ans->status = 500;
}

static void dm_secrets_body(struct dm_env *e)
{
	static const char *const planted[] = { DM_KEY, DM_TOKEN, DM_SIGN, "advertiser_api_key",
					       DM_PBSECRET };
	struct mock_route routes[] = { { .path = "/echo", .kind = MOCK_FUNC, .fn = dm_echo } };
	const char *const extra[] = { "LEADSYNC_LOG_LEVEL=debug", NULL };
	struct buf imp;
	char *log, *rows;
	size_t i;

	buf_init(&imp, 0);
	ASSERT(dm_open(e, "ls_daemon_secrets", NULL, routes, 1));
	ASSERT(dm_rule(e, "dm_secret", dm_rule_secret));
	ASSERT_EQ(buf_adds(&imp, DM_ADV), 0);
	ASSERT_EQ(buf_addf(&imp,
			   "{\"offer\": {\"id\": 40, \"advertiser\": 1, \"name\": \"S\","
			   " \"rule\": \"dm_secret\", \"params\": {\"host\": \"127.0.0.1:%d\","
			   " \"path\": \"echo\", \"key\": \"" DM_KEY "\", \"token\": \"" DM_TOKEN "\"},"
			   " \"secret_params\": [\"key\"], \"intervals\": {\"processing\": 1}}}\n"
			   "{\"goal\": {\"offer\": 40, \"code\": \"lead\", \"payout\": \"fixed\","
			   " \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n"
			   "{\"lead\": {\"id\": 4001, \"offer\": 40, \"ext\": \"E-4001\", \"status\": 2,"
			   " \"created\": \"2026-11-01T10:00:00Z\", \"goal\": \"lead\", \"base\": 30}}\n",
			   mock_crm_port(e->m)),
		  0);
	ASSERT_EQ(buf_adds(&imp, DM_PUSH_OFFER), 0);
	/* an advertiser whose postbacks are signed (pbauth.h) */
	ASSERT_EQ(buf_adds(&imp, "{\"advertiser\": {\"id\": 9, \"name\": \"Signed\","
			   " \"api_key\": \"k-signed\", \"postback_secret\": \"" DM_PBSECRET "\"}}\n"),
		  0);
	ASSERT_EQ(dm_import(e, imp.p), 0);
	buf_release(&imp);
	ASSERT(dm_start(e, 0, extra));
	{
		char ts[32], hex[65], hdr[160];
		struct buf c;

		snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
		buf_init(&c, 0);
		ASSERT_EQ(pbauth_canonical(&c, ts, "GET", "/k-signed/s2s", DM_PBQUERY, "", 0), 0);
		ASSERT_EQ(pbauth_sign(DM_PBSECRET, c.p, c.len, hex), 0);
		buf_release(&c);
		snprintf(hdr, sizeof(hdr), PBAUTH_HEADER ": t=%s,v1=%s\r\n", ts, hex);
		/* signed: past the signature, a 400 of the parameters */
		ASSERT_EQ(dm_http_get_hdr(e->d[0].port, "/k-signed/s2s?" DM_PBQUERY, hdr), 400);
		/* unsigned: refused, and a log line says why */
		ASSERT_EQ(dm_http_get(e->d[0].port, "/k-signed/s2s?" DM_PBQUERY), 403);
	}
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) > 0 FROM poll_runs WHERE offer = 40", "t",
			   15000 * DM_SLACK));
	ASSERT_EQ(dm_http_get(e->d[0].port, "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
			      "&request_id=dm-sec-1&action=lead&status=hold&sign=" DM_SIGN),
		  200);
	ASSERT_EQ(dm_http_get(e->d[0].port, "/advertiser_api_key/s2s?click_id=" DM_SEED_CLICK
			      "&request_id=dm-sec-2&action=nope&status=hold&note=advertiser_api_key"),
		  400);
	ASSERT_EQ(dm_http_get(e->d[0].port, "/advertiser_api_key/s2s?click_id=nonsense&key="
			      DM_KEY), 400);
	ASSERT(dm_wait_sql(e->c, "SELECT count(*) FROM postbacks_in", "5", 15000 * DM_SLACK));
	ASSERT(dm_signal_wait(e, 0, SIGTERM, 15000 * DM_SLACK, NULL));
	/* the poll ran into the rule's error, which names the key: masked */
	ASSERT(test_sql_is(e->c,
			   "SELECT outcome FROM poll_runs WHERE offer = 40 ORDER BY id LIMIT 1",
			   "rule_error"));
	log = test_defer_free(dm_log(&e->d[0]));
	rows = test_defer_free(test_sql_value(
		(struct pg_conn *)e->c, "SELECT concat_ws(' ', (SELECT string_agg(r::text, ' ') FROM poll_runs r),"
		      " (SELECT string_agg(p::text, ' ') FROM postbacks_in p),"
		      " (SELECT string_agg(h::text, ' ') FROM lead_history h))"));
	ASSERT(rows && strstr(rows, "***"));
	ASSERT_CONTAINS(log, "postback refused");
	ASSERT_CONTAINS(log, "signature missing");
	ASSERT(test_sql_is(e->c, "SELECT string_agg(http_status || ' ' || outcome, ',' ORDER BY id)"
			   " FROM postbacks_in WHERE advertiser = 9", "400 invalid,403 forbidden"));
	for (i = 0; i < sizeof(planted) / sizeof(planted[0]); i++) {
		if (strstr(log, planted[i]))
			printf("  the log has %s: ...%.300s\n", planted[i], strstr(log, planted[i]));
		if (strstr(rows, planted[i]))
			printf("  the records have %s: ...%.200s\n", planted[i], strstr(rows, planted[i]));
		ASSERT(!strstr(log, planted[i]));
		ASSERT(!strstr(rows, planted[i]));
	}
	ASSERT(dm_exited_0(&e->d[0]));
}

DM_TEST(daemon_planted_secrets_reach_no_log_or_record, dm_secrets_body)
