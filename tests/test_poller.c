/* test_poller: the scheduler and the poller against a real PostgreSQL and
 * the mock CRM over loopback, with rules written by the tests. */
#define _GNU_SOURCE
#include "test.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "buf.h"
#include "db.h"
#include "history.h"
#include "import.h"
#include "mock_crm.h"
#include "poll_sql.h"
#include "poller.h"
#include "scheduler.h"
#include "store.h"

/* The test CRM's rule: ids as an external-id list, the answer an array of
 * {id, status}; statuses are read as words. */
static const char pt_rule_crm[] =
	"return {\n"
	"  process = function(data)\n"
	"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"  end,\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}&key={key}', batch = 2 },\n"
	"  accepted = { url = 'http://{host}/{path}?ids={idel}&key={key}' },\n"
	"  dates = { url = 'http://{host}/{path}?from={from}&to={to}&key={key}', days = 7 },\n"
	"}\n";

/* Fails on every answer, at a known line. */
static const char pt_rule_boom[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}' },\n"
	"  process = function(data)\n"
	"    error('boom')\n"
	"  end,\n"
	"}\n";

/* Spins in C: 50 SHA-256 of 1 MB, a few hundred VM instructions whose
 * work is in C where the count hook never fires; the budget charged per
 * byte ends it (uncharged, it would fit a budget of 5M). */
static const char pt_rule_spin[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}' },\n"
	"  process = function(data)\n"
	"    local s = string.rep('x', 1 << 20) for i = 1, 50 do hash.sha256(s) end\n"
	"  end,\n"
	"}\n";

/* Does not load. */
static const char pt_rule_broken[] = "return {\n  processing = { url = \n}\n";

/* Pages: asks for ?page=2 .. until the answer says it is the last. */
static const char pt_rule_paged[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}', batch = 50,\n"
	"    process = function(data)\n"
	"      for _, d in ipairs(data.data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"      if data.current_page < data.last_page then\n"
	"        return { next = { query = { page = data.current_page + 1 } } }\n"
	"      end\n"
	"    end },\n"
	"}\n";

struct pt_env {
	char *ci;
	PGconn *c;
	uv_loop_t loop;
	bool loop_ok;
	struct db *db;
	struct poller *p[2];
	struct mock_crm *m;
	char rules[64];
	bool stopped[2];
};

/* What a MOCK_FUNC route answers: every asked id (ids=A,B) with status,
 * or, for a date query, the ids listed in dates_ids. */
struct pt_route {
	const char *status;
	const char *dates_ids; /* "A-1,A-2" */
	const char *sql;       /* run on conn before answering (a "postback") */
	PGconn *conn;
	unsigned delay_ms;
};

static void pt_answer(const struct mock_request *req, struct mock_answer *ans, void *data)
{
	struct pt_route *rt = data;
	const char *q = strstr(req->query, "ids="), *list;
	char ids[4096];
	size_t n = 0;
	char *tok, *save;
	int e = 0;

	if (rt->sql && rt->conn) {
		PGresult *r = PQexec(rt->conn, rt->sql);

		PQclear(r);
	}
	ans->delay_ms = rt->delay_ms;
	list = q ? q + 4 : rt->dates_ids ? rt->dates_ids : "";
	snprintf(ids, sizeof(ids), "%.*s", (int)strcspn(list, "&"), list);
	e |= buf_addc(&ans->body, '[');
	for (tok = strtok_r(ids, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		e |= buf_addf(&ans->body, "%s{\"id\":\"%s\",\"status\":\"%s\"}", n++ ? "," : "", tok,
			      rt->status);
	e |= buf_addc(&ans->body, ']');
	if (e)
		ans->status = 500;
}

static bool pt_write(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s.lua", dir, name);
	f = fopen(path, "w");
	if (!f)
		return false;
	ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok;
}

static int pt_import(PGconn *c, const char *text, char *err, size_t errlen)
{
	struct import_stats st;
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	int rc;

	if (!in)
		return -1;
	rc = import_run(c, in, &st, err, errlen);
	fclose(in);
	return rc;
}

/* A fresh database with the schema, a rules folder with the test rules,
 * a loop and a pool. */
static void pt_close(struct pt_env *e);

static void pt_mock_stop(void *m)
{
	mock_crm_stop(m);
}

/* A test that failed half-way leaves its world to this. */
static void pt_cleanup(void *arg)
{
	pt_close(arg);
}

static bool pt_open(struct pt_env *e, const char *name, const struct mock_route *routes,
		    size_t nroutes)
{
	struct db_config dc = { .workers = 2, .retry_min_ms = 50, .retry_max_ms = 200 };
	char err[1024];
	int applied;

	memset(e, 0, sizeof(*e));
	test_defer(pt_cleanup, e);
	e->ci = test_db_fresh(name);
	if (!e->ci)
		return false;
	if (store_connect(e->ci, &e->c, err, sizeof(err)) < 0 ||
	    store_migrate(e->c, &applied, err, sizeof(err)) < 0) {
		printf("  %s: %s\n", name, err);
		return false;
	}
	snprintf(e->rules, sizeof(e->rules), "/tmp/leadsync-rules-XXXXXX");
	if (!mkdtemp(e->rules) || !pt_write(e->rules, "pt_crm", pt_rule_crm) ||
	    !pt_write(e->rules, "pt_boom", pt_rule_boom) ||
	    !pt_write(e->rules, "pt_spin", pt_rule_spin) ||
	    !pt_write(e->rules, "pt_broken", pt_rule_broken) ||
	    !pt_write(e->rules, "pt_paged", pt_rule_paged))
		return false;
	if (routes && mock_crm_start(&e->m, routes, nroutes) < 0)
		return false;
	if (uv_loop_init(&e->loop) < 0)
		return false;
	e->loop_ok = true;
	dc.conninfo = e->ci;
	if (db_open(&e->loop, &dc, &e->db, err, sizeof(err)) < 0) {
		printf("  db_open: %s\n", err);
		return false;
	}
	return true;
}

static void pt_config(struct pt_env *e, struct poller_config *c, const char *worker)
{
	memset(c, 0, sizeof(*c));
	c->db = e->db;
	c->rules_dir = e->rules;
	c->tz = "UTC";
	c->sched.worker = worker;
	c->sched.tick_ms = 20;
	c->sched.lease_s = 30;
	c->sched.backoff_min_s = 120;
	c->sched.backoff_max_s = 600;
	c->http_limits.timeout_ms = 2000;
	c->http_limits.connect_timeout_ms = 1000;
	c->http_limits.max_response_bytes = 64 << 10;
	c->stop_deadline_ms = 2000;
}

static bool pt_start(struct pt_env *e, int i, const struct poller_config *c)
{
	char err[512];

	if (poller_start(&e->loop, c, &e->p[i], err, sizeof(err)) < 0) {
		printf("  poller_start: %s\n", err);
		return false;
	}
	return true;
}

struct pt_wait {
	struct pt_env *e;
	uint64_t deadline;
	uint64_t claims[2]; /* claims made before the wait began */
	bool idle;
};

static void pt_wait_cb(uv_timer_t *t)
{
	struct pt_wait *w = t->data;
	struct poller_stats st;
	bool idle = true;
	int i;

	/* idle only counts once a claim made after the wait began found
	 * nothing: the test may have made pairs due just before */
	for (i = 0; i < 2; i++)
		if (w->e->p[i] && !w->e->stopped[i]) {
			poller_stats(w->e->p[i], &st);
			if (!poller_idle(w->e->p[i]) || st.sched.claims < w->claims[i] + 2)
				idle = false;
		}
	if (idle || uv_now(t->loop) > w->deadline) {
		w->idle = idle;
		uv_stop(t->loop);
	}
}

/* Runs the loop until every poller is idle (true) or timeout_ms passed. */
static bool pt_run_idle(struct pt_env *e, uint64_t timeout_ms)
{
	struct pt_wait w = { .e = e };
	struct poller_stats st;
	uv_timer_t t;
	int i;

	for (i = 0; i < 2; i++)
		if (e->p[i] && !e->stopped[i]) {
			poller_stats(e->p[i], &st);
			w.claims[i] = st.sched.claims;
		}
	uv_update_time(&e->loop);
	w.deadline = uv_now(&e->loop) + timeout_ms;
	uv_timer_init(&e->loop, &t);
	t.data = &w;
	uv_timer_start(&t, pt_wait_cb, 10, 10);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	return w.idle;
}

static void pt_stopped(void *data)
{
	*(bool *)data = true;
}

static void pt_db_closed(struct db *d, void *data)
{
	*(bool *)data = true;
}

static void pt_stop_pollers(struct pt_env *e)
{
	int i;

	for (i = 0; i < 2; i++)
		if (e->p[i] && !e->stopped[i]) {
			poller_stop(e->p[i], pt_stopped, &e->stopped[i]);
			while (!e->stopped[i] && uv_run(&e->loop, UV_RUN_ONCE))
				;
			e->p[i] = NULL;
		}
}

static void pt_close(struct pt_env *e)
{
	char cmd[128];
	bool closed = false;

	test_undefer(pt_cleanup, e);
	if (e->loop_ok) {
		pt_stop_pollers(e);
		if (e->db) {
			db_close(e->db, pt_db_closed, &closed);
			while (!closed && uv_run(&e->loop, UV_RUN_ONCE))
				;
		}
		uv_run(&e->loop, UV_RUN_NOWAIT);
		if (uv_loop_close(&e->loop) != 0)
			test__fail(__FILE__, __LINE__, "the loop has handles left open");
	}
	if (e->m)
		mock_crm_stop(e->m);
	PQfinish(e->c);
	free(e->ci);
	if (e->rules[0] && strncmp(e->rules, "/tmp/leadsync-rules-", 20) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->rules);
		if (system(cmd) != 0)
			printf("  could not remove %s\n", e->rules);
	}
	memset(e, 0, sizeof(*e)); /* closing again is a no-op */
}

/* An advertiser, and offer id using rule with {host} on the mock at path. */
static int pt_offer(struct buf *b, int64_t id, const char *rule, int port, const char *path,
		    const char *extra)
{
	return buf_addf(b,
			"{\"offer\": {\"id\": %" PRId64 ", \"advertiser\": 1, \"name\": \"O%" PRId64
			"\", \"rule\": \"%s\", \"params\": {\"host\": \"127.0.0.1:%d\", \"path\": "
			"\"%s\", \"key\": \"s3cret-%" PRId64 "\"}, \"secret_params\": [\"key\"]%s%s}}\n"
			"{\"goal\": {\"offer\": %" PRId64 ", \"code\": \"lead\", \"payout\": \"fixed\","
			" \"wm\": 5, \"pay\": 8, \"currency\": \"USD\"}}\n",
			id, id, rule, port, path, id, extra ? ", " : "", extra ? extra : "", id);
}

static int pt_lead(struct buf *b, int64_t id, int64_t offer, int status, const char *created)
{
	return buf_addf(b,
			"{\"lead\": {\"id\": %" PRId64 ", \"offer\": %" PRId64 ", \"ext\": \"E-%" PRId64
			"\", \"status\": %d, \"created\": \"%s\", \"goal\": \"lead\", \"base\": 30}}\n",
			id, offer, id, status, created);
}

#define PT_ADV "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"

/* Keeps the pairs that sql's WHERE does not select from polling now. */
static bool pt_hold_except(PGconn *c, const char *where)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "UPDATE poll_schedule SET next_due = now() + interval '1 day' WHERE NOT (%s)", where);
	return test_sql_exec(c, sql);
}

/* ------------------------------------------------------------ pure helpers */

TEST(scheduler_backoff_doubles_with_jitter_and_cap)
{
	unsigned i, v;

	ASSERT_EQ(scheduler_backoff_s(0, 30, 3600, 0), 15);
	ASSERT_EQ(scheduler_backoff_s(0, 30, 3600, 15), 30);
	ASSERT_EQ(scheduler_backoff_s(0, 30, 3600, 16), 15); /* rnd % 16 */
	ASSERT_EQ(scheduler_backoff_s(1, 30, 3600, 30), 60);
	ASSERT_EQ(scheduler_backoff_s(3, 30, 3600, 0), 120);
	ASSERT_EQ(scheduler_backoff_s(30, 30, 3600, 0), 1800);
	ASSERT_EQ(scheduler_backoff_s(1000, 30, 3600, 1800), 3600);
	for (i = 0; i < 1000; i++) {
		v = scheduler_backoff_s((int)(i % 12), 30, 3600, (uint32_t)(i * 2654435761u));
		ASSERT(v >= 15 && v <= 3600);
	}
}

TEST(scheduler_worker_id_is_host_pid_random)
{
	char a[SCHED_WORKER_MAX], b[SCHED_WORKER_MAX], pid[32];

	ASSERT_EQ(scheduler_worker_id(a, sizeof(a)), 0);
	ASSERT_EQ(scheduler_worker_id(b, sizeof(b)), 0);
	snprintf(pid, sizeof(pid), ":%ld:", (long)getpid());
	ASSERT_CONTAINS(a, pid);
	ASSERT(strcmp(a, b) != 0);
	ASSERT_EQ(strlen(strrchr(a, ':') + 1), 8);
	ASSERT_EQ(scheduler_worker_id(a, 4), -1);
}

/* ------------------------------------------------------------ scheduler SQL */

TEST(scheduler_sql_claims_once_releases_and_backs_off)
{
	struct pt_env e;
	struct buf imp;
	struct sched_pair **pairs = NULL, *one = NULL;
	struct sched_release rel[2];
	struct sched_key keys[2];
	bool alive[2];
	static const unsigned iv[RULE_VARIANTS] = { 600, 10800, 3600 };
	char err[1024];
	size_t n = 0, i;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_sched_sql", NULL, 0));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", 1, "x", "\"intervals\": {\"processing\": 100}"), 0);
	ASSERT_EQ(pt_offer(&imp, 11, "pt_crm", 1, "x", "\"enabled\": false"), 0);
	ASSERT_EQ(pt_offer(&imp, 12, "pt_crm", 1, "x", NULL), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(test_sql_exec(e.c, "UPDATE offers SET rule = NULL WHERE id = 12"));
	/* only offer 10 is enabled with a rule: its three pairs */
	ASSERT_EQ(scheduler_sql_claim(e.c, "w1", 60, 10, iv, &pairs, &n, err, sizeof(err)), 0);
	ASSERT_EQ(n, 3);
	for (i = 0; i < n; i++) {
		ASSERT_EQ(pairs[i]->offer, 10);
		ASSERT_EQ(pairs[i]->missed, 0);
		ASSERT_EQ(pairs[i]->interval_s, pairs[i]->variant == RULE_PROCESSING ? 100
						: pairs[i]->variant == RULE_ACCEPTED	 ? 10800
											 : 3600);
		free(pairs[i]);
	}
	free(pairs);
	/* leased: nobody else gets them */
	ASSERT_EQ(scheduler_sql_claim(e.c, "w2", 60, 10, iv, &pairs, &n, err, sizeof(err)), 0);
	ASSERT_EQ(n, 0);
	free(pairs);
	ASSERT_EQ(scheduler_sql_lease(e.c, "w2", 60, 10, RULE_PROCESSING, iv, &one, err, sizeof(err)),
		  -1);
	ASSERT_CONTAINS(err, "offer 10 processing is being polled by 'w1'");
	/* heartbeat: w1's pairs are alive, w2 has none */
	keys[0].offer = 10;
	keys[0].variant = RULE_PROCESSING;
	keys[1].offer = 10;
	keys[1].variant = RULE_DATES;
	ASSERT_EQ(scheduler_sql_heartbeat(e.c, "w1", 60, keys, 2, alive, err, sizeof(err)), 0);
	ASSERT(alive[0] && alive[1]);
	ASSERT_EQ(scheduler_sql_heartbeat(e.c, "w2", 60, keys, 2, alive, err, sizeof(err)), 0);
	ASSERT(!alive[0] && !alive[1]);
	/* releases: ok, failed; a release of w2 touches nothing */
	memset(rel, 0, sizeof(rel));
	rel[0].offer = 10;
	rel[0].variant = RULE_PROCESSING;
	rel[0].end = SCHED_OK;
	rel[0].delay_s = 100;
	rel[0].run = 77;
	rel[1].offer = 10;
	rel[1].variant = RULE_ACCEPTED;
	rel[1].end = SCHED_FAILED;
	rel[1].delay_s = 300;
	rel[1].error = "HTTP 500";
	ASSERT_EQ(scheduler_sql_release(e.c, "w2", rel, 2, err, sizeof(err)), 0);
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_schedule WHERE lease_owner = 'w1'", "3"));
	ASSERT_EQ(scheduler_sql_release(e.c, "w1", rel, 2, err, sizeof(err)), 0);
	ASSERT(test_sql_is(e.c,
		     "SELECT lease_owner IS NULL, fail_count, last_run, last_ok IS NOT NULL,"
		     " round(extract(epoch FROM next_due - now()))::text FROM poll_schedule"
		     " WHERE offer = 10 AND variant = 'processing'",
		     "t"));
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', fail_count, last_run, last_ok IS NOT NULL,"
		     " round(extract(epoch FROM next_due - now()))) FROM poll_schedule"
		     " WHERE offer = 10 AND variant = 'processing'",
		     "0 77 t 100"));
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', fail_count, last_error, last_ok IS NULL,"
		     " round(extract(epoch FROM next_due - now()))) FROM poll_schedule"
		     " WHERE offer = 10 AND variant = 'accepted'",
		     "1 HTTP 500 t 300"));
	/* requeue keeps the due time and the fail count */
	rel[0].variant = RULE_DATES;
	rel[0].end = SCHED_REQUEUE;
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET next_due = now() - interval '1 hour'"
			    " WHERE offer = 10 AND variant = 'dates'"));
	ASSERT_EQ(scheduler_sql_release(e.c, "w1", rel, 1, err, sizeof(err)), 0);
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', lease_owner IS NULL, fail_count, next_due < now())"
		     " FROM poll_schedule WHERE offer = 10 AND variant = 'dates'",
		     "t 0 t"));
	/* the check's lease takes a pair whatever its due time or enabled flag */
	ASSERT_EQ(scheduler_sql_lease(e.c, "w3", 60, 11, RULE_ACCEPTED, iv, &one, err, sizeof(err)), 0);
	ASSERT_EQ(one->offer, 11);
	ASSERT_EQ(one->variant, RULE_ACCEPTED);
	free(one);
	ASSERT_EQ(scheduler_sql_lease(e.c, "w3", 60, 99, RULE_ACCEPTED, iv, &one, err, sizeof(err)),
		  -1);
	ASSERT_CONTAINS(err, "offer 99 not found");
	buf_release(&imp);
	pt_close(&e);
}

/* ------------------------------------------------------------ end to end */

TEST(poller_end_to_end_changes_leads_history_and_runs)
{
	struct pt_route ok = { .status = "approved" }, cb = { .status = "callback" },
			dates = { .status = "cancelled", .dates_ids = "E-301,E-302,E-999" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &ok },
		{ .path = "/cb", .kind = MOCK_FUNC, .fn = pt_answer, .data = &cb },
		{ .path = "/dates", .kind = MOCK_FUNC, .fn = pt_answer, .data = &dates },
	};
	struct mock_request reqs[32];
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;
	struct buf imp;
	char err[1024], want[512];
	size_t n, i;
	int port, nok = 0, ndates = 0;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_e2e", routes, 3));
	port = mock_crm_port(e.m);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", port, "ok", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 20, "pt_crm", port, "cb", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 30, "pt_crm", port, "dates", "\"tz\": \"Europe/Moscow\""), 0);
	/* 10: five leads in processing (batch 2: three requests), one in 5 */
	for (i = 0; i < 5; i++)
		ASSERT_EQ(pt_lead(&imp, 101 + (int64_t)i, 10, 2 + (int)(i % 3), "2026-01-10T10:00:00Z"),
			  0);
	ASSERT_EQ(pt_lead(&imp, 106, 10, 5, "2026-01-10T10:00:00Z"), 0);
	/* 20: one lead in processing, one in accepted (7) */
	ASSERT_EQ(pt_lead(&imp, 201, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 202, 20, 7, "2026-01-10T10:00:00Z"), 0);
	/* 30: open leads on two days far apart: two date requests */
	ASSERT_EQ(pt_lead(&imp, 301, 30, 3, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 302, 30, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(test_sql_exec(e.c, "UPDATE leads SET created = now() - interval '20 days' WHERE id = 301"));
	ASSERT(test_sql_exec(e.c, "UPDATE leads SET created = now() - interval '2 days' WHERE id = 302"));
	ASSERT(pt_hold_except(e.c, "(offer IN (10, 20) AND variant <> 'dates') OR"
				   " (offer = 30 AND variant = 'dates')"));
	pt_config(&e, &pc, "w-e2e");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	poller_stats(e.p[0], &st);

	/* the leads: approved (with the goal's payouts), callback, cancelled by
	 * date; 202 (7) cannot go back to callback: refused */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM leads",
		     "101:6 102:6 103:6 104:6 105:6 106:5 201:3 202:7 301:5 302:5"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', wm, pay, approved_at IS NOT NULL, reason)"
			  " FROM leads WHERE id = 101", "5.00 8.00 t"));
	/* checked is written only with a change: 202 (asked, refused) is not */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM leads"
			  " WHERE checked IS NOT NULL", "101,102,103,104,105,201,301,302"));
	/* history: one row per changed lead, naming its poll run */
	ASSERT(test_sql_is(e.c,
		     "SELECT count(*) FROM lead_history h JOIN poll_runs r ON r.id = h.source_id"
		     " AND r.offer = 10 WHERE h.source = 'poll' AND h.lead BETWEEN 101 AND 105",
		     "5"));
	ASSERT(test_sql_is(e.c,
		     "SELECT before::text || ' ' || (after->>'status') FROM lead_history"
		     " WHERE lead = 201 AND source = 'poll'",
		     "{\"status\": 2} 3"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(source, ',') FROM lead_history WHERE lead = 301"
			  " AND source <> 'import'", "dates"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM lead_history WHERE lead IN (106, 202)"
			  " AND source <> 'import'", "0"));
	/* poll runs: one per request */
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', count(*), sum(leads_asked), sum(leads_changed),"
		     " sum(pages), min(outcome), max(outcome), min(http_status), bool_or(caught_up),"
		     " min(worker)) FROM poll_runs WHERE offer = 10 AND variant = 'processing'",
		     "3 5 5 3 ok ok 200 f w-e2e"));
	snprintf(want, sizeof(want),
		 "SELECT count(*) FROM poll_runs WHERE url = 'http://127.0.0.1:%d/ok?ids=E-101,E-102"
		 "&key=***' AND method = 'GET' AND leads_asked = 2 AND bytes > 0", port);
	ASSERT(test_sql_is(e.c, want, "1"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs WHERE url LIKE '%s3cret%'"
			  " OR answer_head LIKE '%s3cret%'", "0"));
	ASSERT(test_sql_is(e.c,
		     "SELECT answer_head FROM poll_runs WHERE offer = 20 AND variant = 'processing'",
		     "[{\"id\":\"E-201\",\"status\":\"callback\"}]"));
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', outcome, leads_asked, leads_changed, leads_refused,"
		     " notes LIKE '%202%') FROM poll_runs WHERE offer = 20 AND variant = 'accepted'",
		     "ok 1 0 1 t"));
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', count(*), sum(leads_asked), sum(leads_changed),"
		     " sum(leads_unknown), min(outcome), max(outcome))"
		     " FROM poll_runs WHERE offer = 30 AND variant = 'dates'",
		     "2 2 2 4 ok ok"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs", "7"));
	/* the schedule: released, due again after the interval */
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', lease_owner IS NULL, fail_count, last_ok IS NOT NULL,"
		     " round(extract(epoch FROM next_due - now()) / 10) * 10,"
		     " last_run = (SELECT max(id) FROM poll_runs WHERE offer = 10))"
		     " FROM poll_schedule WHERE offer = 10 AND variant = 'processing'",
		     "t 0 t 600 t"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NOT NULL", "0"));
	/* the requests the CRM saw: the date ranges in Moscow time */
	n = mock_crm_requests(e.m, reqs, 32);
	ASSERT_EQ(n, 7);
	for (i = 0; i < n; i++) {
		if (strcmp(reqs[i].path, "/ok") == 0)
			nok++;
		if (strcmp(reqs[i].path, "/dates") == 0) {
			ndates++;
			ASSERT_CONTAINS(reqs[i].query, "from=");
			ASSERT_CONTAINS(reqs[i].query, "&key=s3cret-30");
		}
	}
	ASSERT_EQ(nok, 3);
	ASSERT_EQ(ndates, 2);
	{
		char *d = test_sql_value(e.c, "SELECT 'from=' || to_char((now() - interval '2 days')"
					" AT TIME ZONE 'Europe/Moscow', 'YYYY-MM-DD')");
		bool seen = false;

		for (i = 0; d && i < n; i++)
			if (strstr(reqs[i].query, d))
				seen = true;
		free(d);
		ASSERT(seen);
	}
	ASSERT_EQ(st.runs, 5); /* 10 accepted had nothing to ask */
	ASSERT_EQ(st.runs_ok, 5);
	ASSERT_EQ(st.batches, 7);
	ASSERT_EQ(st.leads_changed, 8);
	ASSERT_EQ(st.sched.claimed, 5);
	pt_close(&e);
	buf_release(&imp);
}

/* ------------------------------------------------------------ failures */

static struct pt_route pt_ok_route = { .status = "approved" };

/* Rule limits for pt_failure's poller, when a test sets them. */
static struct rule_limits pt_fail_limits;

/* Offer 10 on /ok and offer 20 on bad_path (or with bad_rule, or at a dead
 * port) poll in the same run: 10's lead is approved; 20's run fails with
 * want, writes its poll_runs row, changes nothing and backs off. */
static void pt_failure(const char *dbname, const char *bad_path, const char *bad_rule,
		       bool dead_port, const char *want, const char *want_err, long want_status)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
		{ .path = "/slow", .kind = MOCK_FIXED, .body = "[]", .delay_ms = 60000 },
		{ .path = "/500", .kind = MOCK_FIXED, .status = 500, .body = "oops" },
		{ .path = "/429", .kind = MOCK_FIXED, .status = 429, .headers = "Retry-After: 900\r\n",
		  .body = "slow down" },
		{ .path = "/bad", .kind = MOCK_FIXED, .body = "[{\"id\": \"E-201\", \"status\": " },
		{ .path = "/big", .kind = MOCK_CHUNKED, .size = 200000 },
		{ .path = "/drip", .kind = MOCK_DRIP, .body = "[{\"id\":\"E-201\",\"status\":\"approved\"}]",
		  .drip_ms = 100 },
	};
	struct mock_route good[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct mock_crm *gm = NULL;
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024], sql[512];
	int port, dead = 1;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, dbname, routes, sizeof(routes) / sizeof(routes[0])));
	/* the good offer's CRM is another host: a 429's hold is per host */
	ASSERT_EQ(mock_crm_start(&gm, good, 1), 0);
	test_defer(pt_mock_stop, gm);
	port = mock_crm_port(e.m);
	if (dead_port) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ASSERT(fd >= 0);
		ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
		close(fd);
		dead = ntohs(sa.sin_port);
	}
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(gm), "ok", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 20, bad_rule ? bad_rule : "pt_crm", dead_port ? dead : port,
			   bad_path ? bad_path : "ok", NULL),
		  0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 201, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-fail");
	pc.http_limits.timeout_ms = 700;
	pc.rule_limits = pt_fail_limits;
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM leads",
		     "101:6 201:2"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(outcome, ' ') FROM poll_runs WHERE offer = 10", "ok"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs WHERE offer = 20", "1"));
	ASSERT(test_sql_is(e.c, "SELECT outcome FROM poll_runs WHERE offer = 20", want));
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM poll_runs WHERE offer = 20 AND error LIKE '%%%s%%'", want_err);
	ASSERT(test_sql_is(e.c, sql, "1"));
	snprintf(sql, sizeof(sql), "%ld", want_status);
	ASSERT(test_sql_is(e.c, "SELECT coalesce(http_status, 0) FROM poll_runs WHERE offer = 20",
		     want_status >= 0 ? sql : "0"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM lead_history WHERE lead = 201 AND source = 'poll'",
		     "0"));
	/* the failing pair backs off (min 120 s with jitter: 60..120 s), the good
	 * one is due after its interval */
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', lease_owner IS NULL, fail_count, last_error IS NOT NULL,"
		     " next_due > now() + interval '55 seconds', last_ok IS NULL)"
		     " FROM poll_schedule WHERE offer = 20 AND variant = 'processing'",
		     "t 1 t t t"));
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', fail_count, last_error IS NULL)"
		     " FROM poll_schedule WHERE offer = 10 AND variant = 'processing'",
		     "0 t"));
	if (strcmp(bad_path ? bad_path : "", "429") == 0)
		ASSERT(test_sql_is(e.c,
			     "SELECT next_due > now() + interval '850 seconds' FROM poll_schedule"
			     " WHERE offer = 20 AND variant = 'processing'",
			     "t"));
	/* secrets stay out of the record, whatever failed */
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs WHERE url LIKE '%s3cret%'"
			  " OR error LIKE '%s3cret%'", "0"));
	buf_release(&imp);
	pt_close(&e);
}

TEST(poller_failure_timeout)
{
	pt_failure("ls_poller_f_timeout", "slow", NULL, false, "timeout", "", -1);
}

TEST(poller_failure_connection_refused)
{
	pt_failure("ls_poller_f_refused", "ok", NULL, true, "connect_error", "", -1);
}

TEST(poller_failure_http_500)
{
	pt_failure("ls_poller_f_500", "500", NULL, false, "http_error", "HTTP 500", 500);
}

TEST(poller_failure_429_retry_after_holds_the_pair)
{
	pt_failure("ls_poller_f_429", "429", NULL, false, "http_error", "HTTP 429", 429);
}

TEST(poller_failure_malformed_answer)
{
	pt_failure("ls_poller_f_bad", "bad", NULL, false, "decode_error", "answer (json, HTTP 200)",
		   200);
}

TEST(poller_failure_answer_over_the_cap)
{
	pt_failure("ls_poller_f_big", "big", NULL, false, "too_large", "", 200);
}

TEST(poller_failure_slow_drip)
{
	pt_failure("ls_poller_f_drip", "drip", NULL, false, "timeout", "", 200);
}

TEST(poller_failure_rule_error_names_file_and_line)
{
	pt_failure("ls_poller_f_rule", "ok", "pt_boom", false, "rule_error", "pt_boom.lua:4: boom",
		   200);
}

/* A rule whose work is in C library calls runs out of budget like a Lua
 * loop: a rule_error naming the budget, and the pair backs off. The
 * budget is small and the clock far away, so the budget ends it. */
TEST(poller_failure_rule_out_of_budget_backs_off)
{
	pt_fail_limits = (struct rule_limits){ .instructions = 5000000, .time_ms = 600000 };
	pt_failure("ls_poller_f_budget", "ok", "pt_spin", false, "rule_error",
		   "pt_spin.lua:4: instruction budget exhausted (5000000)", 200);
	memset(&pt_fail_limits, 0, sizeof(pt_fail_limits));
}

/* A rule that is missing or does not load is the offer's configuration,
 * wrong before any request: config_error; rule_error is a rule that failed
 * while it ran. */
TEST(poller_failure_rule_that_does_not_load)
{
	pt_failure("ls_poller_f_load", "ok", "pt_broken", false, "config_error", "pt_broken.lua:",
		   -1);
}

TEST(poller_failure_rule_file_missing)
{
	pt_failure("ls_poller_f_missing", "ok", "pt_missing", false, "config_error", "pt_missing",
		   -1);
}

/* ------------------------------------------------------------ concurrency */

static void pt_stop_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void pt_run_for(struct pt_env *e, uint64_t ms)
{
	uv_timer_t t;

	uv_timer_init(&e->loop, &t);
	uv_timer_start(&t, pt_stop_cb, ms, 0);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&e->loop, UV_RUN_NOWAIT);
}

TEST(poller_postback_change_is_not_clobbered)
{
	struct pt_route pb = { .status = "approved",
			       .sql = "UPDATE leads SET status = 5, reason = 7 WHERE id = 101" };
	struct mock_route routes[] = {
		{ .path = "/pb", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pb },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_clobber", routes, 1));
	ASSERT_EQ(store_connect(e.ci, &pb.conn, err, sizeof(err)), 0);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "pb", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 102, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-pb");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	/* 101 keeps what the "postback" wrote while the CRM was asked; 102 is
	 * approved */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status || ':' || coalesce(reason, 0), ' '"
			  " ORDER BY id) FROM leads", "101:5:7 102:6:0"));
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', outcome, leads_asked, leads_changed, leads_skipped,"
		     " notes LIKE '%lead 101 changed meanwhile%') FROM poll_runs",
		     "ok 2 1 1 t"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(lead::text, ',') FROM lead_history WHERE source = 'poll'",
		     "102"));
	pt_close(&e);
	PQfinish(pb.conn);
	buf_release(&imp);
}

static void pt_buf_release(void *b)
{
	buf_release(b);
}

/* Offer 10 asked about 101 (3), 102 (2) and 103 (3), the CRM answering
 * "callback" (3) for each: only 102 changes. */
static bool pt_callback_world(struct pt_env *e, struct mock_route *route, struct pt_route *cb,
			      const char *name)
{
	struct poller_config pc;
	struct buf *imp = calloc(1, sizeof(*imp));
	char err[1024];
	bool ok;

	if (!imp)
		return false;
	buf_init(imp, 0);
	cb->status = "callback";
	route->path = "/cb";
	route->kind = MOCK_FUNC;
	route->fn = pt_answer;
	route->data = cb;
	ok = pt_open(e, name, route, 1) && buf_adds(imp, PT_ADV) == 0 &&
	     pt_offer(imp, 10, "pt_crm", mock_crm_port(e->m), "cb", NULL) == 0 &&
	     pt_lead(imp, 101, 10, 3, "2026-01-10T10:00:00Z") == 0 &&
	     pt_lead(imp, 102, 10, 2, "2026-01-10T10:00:00Z") == 0 &&
	     pt_lead(imp, 103, 10, 3, "2026-01-10T10:00:00Z") == 0 &&
	     pt_import(e->c, imp->p, err, sizeof(err)) == 0 &&
	     pt_hold_except(e->c, "variant = 'processing'");
	buf_release(imp);
	free(imp);
	if (!ok)
		return false;
	pt_config(e, &pc, "w-cb");
	return pt_start(e, 0, &pc);
}

TEST(poller_unchanged_leads_are_not_written)
{
	struct mock_route route;
	struct pt_route cb = { 0 };
	struct pt_env e;
	char *before;

	memset(&route, 0, sizeof(route));
	ASSERT(pt_callback_world(&e, &route, &cb, "ls_poller_unwritten"));
	before = test_sql_value(e.c, "SELECT string_agg(concat_ws(':', id, xmin, updated), ' '"
				" ORDER BY id) FROM leads WHERE id IN (101, 103)");
	ASSERT(before != NULL);
	test_defer(free, before);
	ASSERT(pt_run_idle(&e, 10000));
	/* 101 and 103: the same row version, never touched; 102 written */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(':', id, xmin, updated), ' '"
			  " ORDER BY id) FROM leads WHERE id IN (101, 103)", before));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status || ':' || (checked IS NOT NULL),"
			  " ' ' ORDER BY id) FROM leads", "101:3:false 102:3:true 103:3:false"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', min(outcome), sum(leads_asked),"
			  " sum(leads_changed), sum(leads_skipped), bool_and(notes IS NULL))"
			  " FROM poll_runs", "ok 3 1 0 t"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(lead::text, ',') FROM lead_history"
			  " WHERE source = 'poll'", "102"));
	pt_close(&e);
}

TEST(poller_lead_show_checked_is_the_last_ok_poll)
{
	struct mock_route route;
	struct pt_route cb = { 0 };
	struct pt_env e;
	struct buf *out = calloc(1, sizeof(*out));
	char err[256], *want, *last_ok;

	ASSERT(out != NULL);
	test_defer(free, out);
	buf_init(out, 0);
	test_defer(pt_buf_release, out);
	memset(&route, 0, sizeof(route));
	ASSERT(pt_callback_world(&e, &route, &cb, "ls_poller_checked"));
	/* never asked: null */
	ASSERT_EQ(history_lead_show(e.c, 101, true, out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out->p, "\"checked\":null,");
	ASSERT(pt_run_idle(&e, 10000));
	/* asked, unchanged: the run's last_ok, though the row was not written */
	last_ok = test_sql_value(e.c, "SELECT lead_time_json(last_ok) FROM poll_schedule"
				 " WHERE offer = 10 AND variant = 'processing'");
	ASSERT(last_ok != NULL && last_ok[0]);
	test_defer(free, last_ok);
	want = malloc(64);
	ASSERT(want != NULL);
	test_defer(free, want);
	snprintf(want, 64, "\"checked\":\"%s\",", last_ok);
	buf_reset(out);
	ASSERT_EQ(history_lead_show(e.c, 101, true, out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out->p, want);
	/* changed by the poll: the later of its own checked and last_ok */
	buf_reset(out);
	ASSERT_EQ(history_lead_show(e.c, 102, true, out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out->p, want);
	/* a later check of its own wins over an older run */
	ASSERT(test_sql_exec(e.c, "UPDATE leads SET checked = last_ok + interval '1 hour'"
			    " FROM poll_schedule s WHERE s.offer = 10 AND s.variant = 'processing'"
			    " AND leads.id = 103"));
	test_undefer(free, want);
	free(want);
	want = test_sql_value(e.c, "SELECT '\"checked\":\"' || lead_time_json(checked) || '\",'"
			      " FROM leads WHERE id = 103");
	ASSERT(want != NULL);
	test_defer(free, want);
	buf_reset(out);
	ASSERT_EQ(history_lead_show(e.c, 103, true, out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out->p, want);
	/* a lead in a status no id variant asks about (5): its own checked only */
	ASSERT(test_sql_exec(e.c, "UPDATE leads SET status = 5, reason = 2 WHERE id = 101"));
	buf_reset(out);
	ASSERT_EQ(history_lead_show(e.c, 101, true, out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out->p, "\"checked\":null,");
	pt_close(&e);
}

static bool pt_run_until(struct pt_env *e, const char *sql, const char *want, uint64_t timeout_ms);

TEST(poller_two_workers_never_poll_a_pair_at_once)
{
	struct pt_route slow = { .status = "callback", .delay_ms = 60 };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = pt_answer, .data = &slow },
	};
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats a, b;
	struct buf imp;
	char err[1024];
	int i;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_two", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	for (i = 0; i < 8; i++) {
		ASSERT_EQ(pt_offer(&imp, 10 + i, "pt_crm", mock_crm_port(e.m), "slow",
				   "\"intervals\": {\"processing\": 1}"),
			  0);
		ASSERT_EQ(pt_lead(&imp, 100 + i, 10 + i, 2, "2026-01-10T10:00:00Z"), 0);
	}
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-a");
	pc.sched.claim_max = 2;
	pc.sched.pairs_max = 3;
	ASSERT(pt_start(&e, 0, &pc));
	pc.sched.worker = "w-b";
	ASSERT(pt_start(&e, 1, &pc));
	/* every pair is due again a second after each run: both workers go on
	 * claiming the same pairs; counted, not timed (the bound ends a hang) */
	ASSERT(pt_run_until(&e, "SELECT count(*) >= 16 AND count(DISTINCT worker) = 2"
			    " FROM poll_runs WHERE outcome = 'ok'", "t", 60000));
	poller_stats(e.p[0], &a);
	poller_stats(e.p[1], &b);
	pt_stop_pollers(&e);
	ASSERT(test_sql_is(e.c, "SELECT count(*) >= 16 FROM poll_runs WHERE outcome = 'ok'", "t"));
	ASSERT(test_sql_is(e.c, "SELECT count(DISTINCT worker) FROM poll_runs", "2"));
	ASSERT(test_sql_is(e.c,
		     "SELECT count(*) FROM poll_runs x JOIN poll_runs y ON x.offer = y.offer"
		     " AND x.variant = y.variant AND x.id < y.id"
		     " AND x.started < y.finished AND y.started < x.finished",
		     "0"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs WHERE outcome <> 'ok'", "0"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NOT NULL", "0"));
	ASSERT(a.sched.claimed > 0 && b.sched.claimed > 0);
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_expired_lease_is_taken_over)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;
	struct buf imp;
	char err[1024];

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_takeover", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 20, "pt_crm", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 201, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	/* 10: its daemon was killed mid-poll and its lease ran out; 20: leased
	 * by a live daemon */
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET lease_owner = 'dead:1:0', lease_until ="
			    " now() - interval '1 second' WHERE offer = 10 AND variant = 'processing'"));
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET lease_owner = 'alive:2:0', lease_until ="
			    " now() + interval '1 hour' WHERE offer = 20 AND variant = 'processing'"));
	pt_config(&e, &pc, "w-new");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	poller_stats(e.p[0], &st);
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM leads",
		     "101:6 201:2"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(offer || ':' || worker, ' ') FROM poll_runs", "10:w-new"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(offer || ':' || coalesce(lease_owner, '-'), ' '"
			  " ORDER BY offer) FROM poll_schedule WHERE variant = 'processing'",
		     "10:- 20:alive:2:0"));
	ASSERT_EQ(st.sched.taken_over, 1);
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_lost_lease_writes_no_lead)
{
	struct pt_route steal = { .status = "approved",
				  .sql = "UPDATE poll_schedule SET lease_owner = 'thief'"
					 " WHERE offer = 10 AND variant = 'processing'" };
	struct mock_route routes[] = {
		{ .path = "/steal", .kind = MOCK_FUNC, .fn = pt_answer, .data = &steal },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_lost", routes, 1));
	ASSERT_EQ(store_connect(e.ci, &steal.conn, err, sizeof(err)), 0);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "steal", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-lost");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 101", "2"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', outcome, leads_changed) FROM poll_runs",
		     "lease_lost 0"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM lead_history WHERE source = 'poll'", "0"));
	/* the thief's lease is left alone */
	ASSERT(test_sql_is(e.c, "SELECT lease_owner FROM poll_schedule WHERE offer = 10"
			  " AND variant = 'processing'", "thief"));
	pt_close(&e);
	PQfinish(steal.conn);
	buf_release(&imp);
}

/* ------------------------------------------------------------ schedule details */

TEST(poller_caught_up_runs_are_recorded)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_caught_up", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 20, "pt_crm", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 30, "pt_crm", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	/* 10 (a lead) and 20 (none) were polled before and missed runs while
	 * the daemon was down; 30 is on time */
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET last_ok = now() - interval '1 day',"
			    " next_due = now() - interval '35 minutes' WHERE offer = 10"
			    " AND variant = 'processing'"));
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET last_ok = now() - interval '1 day',"
			    " next_due = now() - interval '25 minutes' WHERE offer = 20"
			    " AND variant = 'processing'"));
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET last_ok = now() - interval '10 minutes',"
			    " next_due = now() WHERE offer = 30 AND variant = 'processing'"));
	pt_config(&e, &pc, "w-cu");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	/* one run each, not one per missed interval */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(':', offer, outcome, caught_up, missed,"
			  " leads_asked), ' ' ORDER BY offer) FROM poll_runs",
		     "10:ok:t:3:1 20:caught_up:t:2:0"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_schedule WHERE variant = 'processing'"
			  " AND next_due > now() + interval '9 minutes'", "3"));
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_pages_are_fetched_within_one_batch)
{
	struct mock_route routes[] = {
		{ .path = "/paged", .kind = MOCK_PAGED, .pages = 3, .per_page = 2 },
	};
	struct pt_env e;
	struct poller_config pc;
	struct mock_request reqs[8];
	struct buf imp;
	char err[1024];
	int i;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_pages", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_paged", mock_crm_port(e.m), "paged", NULL), 0);
	for (i = 1; i <= 6; i++)
		ASSERT_EQ(buf_addf(&imp, "{\"lead\": {\"id\": %d, \"offer\": 10, \"ext\": \"%d\","
					 " \"status\": 3, \"created\": \"2026-01-10T10:00:00Z\"}}\n",
				   100 + i, i),
			  0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-pages");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', count(*), sum(pages), sum(leads_changed), min(outcome))"
			  " FROM poll_runs", "1 3 6 ok"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM leads WHERE status = 2", "6"));
	ASSERT_EQ(mock_crm_requests(e.m, reqs, 8), 3);
	ASSERT_STREQ(reqs[2].query, "page=3");
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_stop_cuts_requests_short_and_requeues)
{
	struct mock_route routes[] = {
		/* answers long after any stop: only a cut ends the run */
		{ .path = "/slow", .kind = MOCK_FIXED, .body = "[]", .delay_ms = 60000 },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];
	int i;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_stop", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "slow", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-stop");
	pc.stop_deadline_ms = 150;
	ASSERT(pt_start(&e, 0, &pc));
	for (i = 0; i < 3000 && mock_crm_requests(e.m, NULL, 0) < 1; i++)
		pt_run_for(&e, 10);
	ASSERT_EQ(mock_crm_requests(e.m, NULL, 0), 1);
	pt_stop_pollers(&e);
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', outcome, error) FROM poll_runs",
		     "cancelled shutting down: request cancelled"));
	/* given back as it was: due at once, not counted as a failure */
	ASSERT(test_sql_is(e.c,
		     "SELECT concat_ws(' ', lease_owner IS NULL, fail_count, next_due <= now(),"
		     " last_ok IS NULL) FROM poll_schedule WHERE offer = 10 AND variant = 'processing'",
		     "t 0 t t"));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 101", "2"));
	pt_close(&e);
	buf_release(&imp);
}

/* ------------------------------------------------------------ rules, check */

TEST(poller_reload_keeps_the_previous_rule_when_the_new_one_fails)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_reload", routes, 1));
	ASSERT(pt_write(e.rules, "pt_rl", pt_rule_crm));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_rl", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-rl");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 101", "6"));
	/* the file breaks: the reload fails and the loaded version stays */
	ASSERT(pt_write(e.rules, "pt_rl", pt_rule_broken));
	ASSERT_EQ(poller_reload_rules(e.p[0]), 1);
	ASSERT(test_sql_exec(e.c, "INSERT INTO leads (id, offer, ext, status) VALUES (102, 10, 'E-102', 2)"));
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET next_due = now() WHERE offer = 10"
			    " AND variant = 'processing'"));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 102", "6"));
	/* a good new version replaces it */
	ASSERT(pt_write(e.rules, "pt_rl",
			"return { processing = { url = 'http://{host}/{path}?ids={idel}',"
			" process = function(d) for _, x in ipairs(d) do"
			" lead.setstatus(e2i[x.id], 'callback') end end } }\n"));
	ASSERT_EQ(poller_reload_rules(e.p[0]), 0);
	ASSERT(test_sql_exec(e.c, "INSERT INTO leads (id, offer, ext, status) VALUES (103, 10, 'E-103', 2)"));
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET next_due = now() WHERE offer = 10"
			    " AND variant = 'processing'"));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 103", "3"));
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_check_reports_and_dry_run_writes_nothing)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp, out;
	char err[1024], want[256];

	buf_init(&imp, 0);
	buf_init(&out, 0);
	ASSERT(pt_open(&e, "ls_poller_check", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "ok", "\"enabled\": false"), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 102, 10, 3, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	pt_config(&e, &pc, NULL);
	pc.db = NULL;
	ASSERT_EQ(poller_check(e.ci, &pc, 10, RULE_PROCESSING, true, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "request   GET http://127.0.0.1:%d/ok?ids=E-101,E-102&key=***",
		 mock_crm_port(e.m));
	ASSERT_CONTAINS(out.p, want);
	ASSERT_CONTAINS(out.p, "answer    HTTP 200");
	ASSERT_CONTAINS(out.p, "[{\"id\":\"E-101\",\"status\":\"approved\"}");
	ASSERT_CONTAINS(out.p, "edit      lead 101 {\"status\":2");
	ASSERT_CONTAINS(out.p, "\"status\":6");
	ASSERT_CONTAINS(out.p, "result    ok: 2 asked, 2 changed");
	ASSERT_CONTAINS(out.p, "dry run   nothing written");
	ASSERT(!strstr(out.p, "s3cret"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs", "0"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(status::text, ' ' ORDER BY id) FROM leads", "2 3"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NOT NULL"
			  " OR last_ok IS NOT NULL", "0"));
	/* for real: written, and rescheduled like a daemon's poll */
	buf_reset(&out);
	ASSERT_EQ(poller_check(e.ci, &pc, 10, -1, false, &out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out.p, "written   run ");
	ASSERT_CONTAINS(out.p, "variant accepted");
	ASSERT(test_sql_is(e.c, "SELECT string_agg(status::text, ' ' ORDER BY id) FROM leads", "6 6"));
	/* processing changed both; accepted then asked about them again */
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', count(*), min(outcome), bool_and(worker LIKE '%:check'),"
			  " string_agg(variant || ':' || leads_changed, ',' ORDER BY id)) FROM poll_runs",
		     "2 ok t processing:2,accepted:0"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_schedule WHERE lease_owner IS NULL"
			  " AND last_ok IS NOT NULL AND next_due > now() + interval '5 minutes'", "3"));
	ASSERT_EQ(poller_check(e.ci, &pc, 99, -1, true, &out, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "offer 99 not found");
	pt_close(&e);
	buf_release(&imp);
	buf_release(&out);
}

/* `check --save DIR` then `rule test --case DIR`: the replay prints the
 * live poll's edits exactly (the approval time included), and an answer
 * edited afterwards makes the case fail with a diff. */
TEST(poller_check_save_replays_as_a_rule_test_case)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp, out;
	char err[1024], dir[128], path[256], env[128], want[256];
	char *argv[] = { (char *)(getenv("LEADSYNC_TEST_BIN") && *getenv("LEADSYNC_TEST_BIN")
					  ? getenv("LEADSYNC_TEST_BIN")
					  : "build/test/leadsync"),
			 "rule", "test", "--case", dir, NULL };
	const char *envp[] = { env, NULL };
	char *expected = NULL, *params = NULL, *args = NULL, *approved = NULL, *o = NULL, *er = NULL;
	FILE *f;

	buf_init(&imp, 0);
	buf_init(&out, 0);
	ASSERT(pt_open(&e, "ls_poller_check_save", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "ok", "\"enabled\": false"), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 102, 10, 3, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	pt_config(&e, &pc, NULL);
	pc.db = NULL;
	snprintf(dir, sizeof(dir), "%s/case", e.rules); /* removed with the rules */
	snprintf(env, sizeof(env), "LEADSYNC_RULES=%s", e.rules);
	pc.check_save = dir;
	ASSERT_EQ(poller_check(e.ci, &pc, 10, RULE_PROCESSING, false, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "saved     case %s: 2 leads, 1 page", dir);
	ASSERT_CONTAINS(out.p, want);
	ASSERT(test_sql_is(e.c, "SELECT string_agg(status::text, ' ' ORDER BY id) FROM leads", "6 6"));
	snprintf(path, sizeof(path), "%s/expected.txt", dir);
	expected = test_slurp(path);
	snprintf(path, sizeof(path), "%s/params.json", dir);
	params = test_slurp(path);
	snprintf(path, sizeof(path), "%s/args", dir);
	args = test_slurp(path);
	approved = test_sql_value(e.c, "SELECT to_char(approved_at AT TIME ZONE 'UTC',"
				  " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM leads WHERE id = 101");
	if (!expected || !params || !args || !approved) {
		test__fail(__FILE__, __LINE__, "case files missing under %s", dir);
		goto out;
	}
	/* the live poll's edits, as the database holds them */
	snprintf(want, sizeof(want), "lead 101   status 2 -> 6, wm 0 -> 5, pay 0 -> 8, approved_at null"
		 " -> \"%s\"\n", approved);
	if (!test_sql_is(e.c, "SELECT string_agg(concat_ws(' ', wm, pay, cash_curr), ',' ORDER BY id)"
			 " FROM leads", "5.00 8.00,5.00 8.00")) {
		test__fail(__FILE__, __LINE__, "payouts in the database");
		goto out;
	}
	if (!strstr(expected, want) || !strstr(expected, "lead 102   status 3 -> 6") ||
	    !strstr(expected, "?ids=E-101,E-102&key=***") || strstr(expected, "s3cret") ||
	    strstr(params, "s3cret") || !strstr(params, "\"key\":\t\"***\"") ||
	    !strstr(args, "pt_crm --variant processing --leads {case}/leads.json --response "
			  "{case}/answer1.json --params {case}/params.json --now ")) {
		test__fail(__FILE__, __LINE__, "saved case:\n%s\n%s\n%s\nwant %s", args, params,
			   expected, want);
		goto out;
	}
	if (test_run(argv, envp, NULL, &o, &er) != 0 || !strstr(o, "matches expected.txt")) {
		test__fail(__FILE__, __LINE__, "replay: %s%s", o, er);
		goto out;
	}
	free(o);
	free(er);
	o = er = NULL;
	/* the CRM changes its answer: the case now fails, with a diff */
	snprintf(path, sizeof(path), "%s/answer1.json", dir);
	f = fopen(path, "w");
	if (!f || fputs("[{\"id\":\"E-101\",\"status\":\"cancelled\"},"
			"{\"id\":\"E-102\",\"status\":\"approved\"}]", f) < 0) {
		test__fail(__FILE__, __LINE__, "cannot rewrite %s", path);
		if (f)
			fclose(f);
		goto out;
	}
	fclose(f);
	if (test_run(argv, envp, NULL, &o, &er) != 1 || !strstr(o, "+++ rule test\n@@ ") ||
	    !strstr(o, "\n-lead 101   status 2 -> 6") || !strstr(o, "\n+lead 101   status 2 -> 5") ||
	    !strstr(er, "differs from its expected.txt"))
		test__fail(__FILE__, __LINE__, "edited answer: %s%s", o, er);
out:
	free(expected);
	free(params);
	free(args);
	free(approved);
	free(o);
	free(er);
	pt_close(&e);
	buf_release(&imp);
	buf_release(&out);
}

TEST(poller_bounds_requests_and_leads_in_flight)
{
	struct pt_route slow = { .status = "approved", .delay_ms = 20 };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = pt_answer, .data = &slow },
	};
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;
	struct buf imp;
	char err[1024];
	int i, j;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_bounds", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	for (i = 0; i < 6; i++) {
		ASSERT_EQ(pt_offer(&imp, 10 + i, "pt_crm", mock_crm_port(e.m), "slow", NULL), 0);
		for (j = 0; j < 5; j++)
			ASSERT_EQ(pt_lead(&imp, 100 + i * 10 + j, 10 + i, 2, "2026-01-10T10:00:00Z"), 0);
	}
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-bounds");
	pc.batches_max = 3;
	pc.pair_batches_max = 2;
	pc.leads_max = 4; /* at most 4 leads held: 2+2, or 2+1+1 */
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 20000));
	poller_stats(e.p[0], &st);
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM leads WHERE status = 6", "30"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', count(*), sum(leads_asked), max(leads_asked))"
			  " FROM poll_runs WHERE outcome = 'ok'", "18 30 2"));
	ASSERT_EQ(mock_crm_requests(e.m, NULL, 0), 18);
	ASSERT(mock_crm_max_in_flight(e.m) <= 3);
	ASSERT(mock_crm_max_in_flight(e.m) >= 2);
	ASSERT_EQ(st.runs_ok, 6);
	ASSERT_EQ(st.batches_in_flight, 0);
	ASSERT_EQ(st.leads_held, 0);
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_offer_rate_limit_spaces_its_requests)
{
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct mock_request reqs[8];
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];
	size_t n, i;
	int j;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_rate", routes, 1));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	/* 600 a minute: one request every 100 ms; three batches of two leads */
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "ok", "\"rate_limit\": 600"), 0);
	for (j = 0; j < 6; j++)
		ASSERT_EQ(pt_lead(&imp, 101 + j, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-rate");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM leads WHERE status = 6", "6"));
	n = mock_crm_requests(e.m, reqs, 8);
	ASSERT_EQ(n, 3);
	for (i = 1; i < n; i++)
		ASSERT(reqs[i].t_arrive_us - reqs[i - 1].t_arrive_us >= 80000);
	pt_close(&e);
	buf_release(&imp);
}

TEST(poller_heartbeat_finds_a_lost_lease_and_cancels)
{
	/* answers long after the heartbeat: only a cancel ends the request */
	struct pt_route steal = { .status = "approved", .delay_ms = 60000,
				  .sql = "UPDATE poll_schedule SET lease_owner = 'thief'"
					 " WHERE offer = 10 AND variant = 'processing'" };
	struct mock_route routes[] = {
		{ .path = "/steal", .kind = MOCK_FUNC, .fn = pt_answer, .data = &steal },
	};
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;
	struct buf imp;
	char err[1024];

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_beat", routes, 1));
	ASSERT_EQ(store_connect(e.ci, &steal.conn, err, sizeof(err)), 0);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "steal", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-beat");
	pc.sched.heartbeat_ms = 50;
	ASSERT(pt_start(&e, 0, &pc));
	/* idle at all means the request was cancelled: the CRM never answers */
	ASSERT(pt_run_idle(&e, 30000));
	poller_stats(e.p[0], &st);
	ASSERT_EQ(st.sched.lost, 1);
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', outcome, error) FROM poll_runs",
		     "lease_lost lease lost: request cancelled"));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 101", "2"));
	ASSERT(test_sql_is(e.c, "SELECT lease_owner FROM poll_schedule WHERE offer = 10"
			  " AND variant = 'processing'", "thief"));
	pt_close(&e);
	PQfinish(steal.conn);
	buf_release(&imp);
}

/* Runs the loop until sql (on the test's connection) answers want, or
 * timeout_ms passed; true when it did. */
struct pt_until {
	struct pt_env *e;
	const char *sql, *want;
	uint64_t deadline;
	bool met;
};

static void pt_until_cb(uv_timer_t *t)
{
	struct pt_until *u = t->data;
	char *v = test_sql_value(u->e->c, u->sql);

	u->met = v && strcmp(v, u->want) == 0;
	free(v);
	if (u->met || uv_now(t->loop) > u->deadline)
		uv_stop(t->loop);
}

static bool pt_run_until(struct pt_env *e, const char *sql, const char *want, uint64_t timeout_ms)
{
	struct pt_until u = { .e = e, .sql = sql, .want = want };
	uv_timer_t t;

	uv_update_time(&e->loop);
	u.deadline = uv_now(&e->loop) + timeout_ms;
	uv_timer_init(&e->loop, &t);
	t.data = &u;
	uv_timer_start(&t, pt_until_cb, 10, 10);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	if (!u.met)
		test_sql_is(e->c, sql, want); /* prints what it got */
	return u.met;
}

/* Offer 10 of the mock's route "ok" with lead 101 in processing, only its
 * processing pair due, and a trigger (on_sql: "BEFORE ... ON table FOR
 * EACH ROW [WHEN ...]") that kills its own backend the first two times it
 * fires: the pool runs a job once more on a fresh connection before it
 * gives up, so the second kill makes the database look gone. */
static bool pt_ok_offer_killed_twice(struct pt_env *e, const char *db, const char *on_sql)
{
	static const struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
	};
	struct buf imp, trig;
	char err[1024];
	bool ok;

	if (!pt_open(e, db, routes, 1))
		return false;
	buf_init(&imp, 0);
	buf_init(&trig, 0);
	ok = buf_adds(&imp, PT_ADV) == 0 &&
	     pt_offer(&imp, 10, "pt_crm", mock_crm_port(e->m), "ok", NULL) == 0 &&
	     pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z") == 0 &&
	     pt_import(e->c, imp.p, err, sizeof(err)) == 0 &&
	     pt_hold_except(e->c, "variant = 'processing'") &&
	     test_sql_exec(e->c, "CREATE SEQUENCE pt_kill") &&
	     test_sql_exec(e->c, "CREATE FUNCTION pt_kill() RETURNS trigger LANGUAGE plpgsql AS $$"
			   " BEGIN IF nextval('pt_kill') <= 2 THEN"
			   "  PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);"
			   " END IF; RETURN NEW; END $$") &&
	     buf_addf(&trig, "CREATE TRIGGER pt_kill %s EXECUTE FUNCTION pt_kill()", on_sql) == 0 &&
	     test_sql_exec(e->c, trig.p);
	buf_release(&imp);
	buf_release(&trig);
	if (!ok)
		pt_close(e);
	return ok;
}

/* The database drops the worker's connection in the middle of a release
 * (a trigger kills its own backend, twice: the pool runs a job once more
 * on a fresh connection before it gives up): the release is retried once the
 * database answers again, so the pair is free (and polled again when due)
 * long before its 30 s lease would have run out. */
TEST(poller_failed_release_is_retried_after_the_database_returns)
{
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;

	ASSERT(pt_ok_offer_killed_twice(&e, "ls_poller_release_retry",
					"BEFORE UPDATE ON poll_schedule FOR EACH ROW WHEN"
					" (OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL)"));
	pt_config(&e, &pc, "w-retry");
	ASSERT(pt_start(&e, 0, &pc));
	/* the run is written, its release dies with the connection, and the
	 * retry frees the pair once the pool has reconnected */
	ASSERT(pt_run_until(&e,
			    "SELECT concat_ws(' ', coalesce(lease_owner, '-'), last_ok IS NOT NULL,"
			    " fail_count) FROM poll_schedule WHERE offer = 10 AND variant = 'processing'",
			    "- t 0", 25000)); /* the bound ends a hang, under the 30 s lease */
	ASSERT(test_sql_is(e.c, "SELECT last_value FROM pt_kill", "3"));
	poller_stats(e.p[0], &st);
	ASSERT_EQ(st.sched.release_errors, 1);
	ASSERT_EQ(st.sched.done_ok, 1);
	/* due again: claimed and polled again at once */
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET next_due = now() WHERE offer = 10"
			    " AND variant = 'processing'"));
	ASSERT(pt_run_idle(&e, 10000));
	poller_stats(e.p[0], &st);
	ASSERT_EQ(st.sched.claimed, 2);
	ASSERT_EQ(st.sched.done_ok, 2);
	ASSERT(test_sql_is(e.c, "SELECT next_due > now() + interval '1 minute' FROM poll_schedule"
			  " WHERE offer = 10 AND variant = 'processing'", "t"));
	ASSERT(test_sql_is(e.c, "SELECT coalesce(lease_owner, '-') FROM poll_schedule WHERE offer = 10"
			  " AND variant = 'processing'", "-"));
	pt_close(&e);
}

/* The database goes away while a run's edits are written (a trigger kills
 * its own backend on the write, twice: the pool's own second try dies
 * too): the run's row is written once the database answers again, with
 * the outcome db_error, instead of being lost (the soak's PostgreSQL
 * restart lost every row of the runs that ended in it). */
TEST(poller_run_row_waits_for_the_database_to_return)
{
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;

	ASSERT(pt_ok_offer_killed_twice(&e, "ls_poller_row_wait",
					"BEFORE INSERT ON poll_runs FOR EACH ROW"));
	pt_config(&e, &pc, "w-rowwait");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_until(&e, "SELECT concat_ws(' ', outcome, leads_asked, leads_changed)"
			    " FROM poll_runs WHERE offer = 10", "db_error 1 0", 25000));
	ASSERT(test_sql_is(e.c, "SELECT last_value FROM pt_kill", "3"));
	ASSERT(test_sql_is(e.c, "SELECT status FROM leads WHERE id = 101", "2"));
	poller_stats(e.p[0], &st);
	ASSERT_EQ(st.rows_lost, 0);
	pt_close(&e);
}

/* `leadsync check` keeps its lease while a slow CRM answers: with a 1 s
 * lease, the lease is still ours (and not run out) 1.8 s into the request. */
TEST(poller_check_extends_its_lease_while_the_crm_is_slow)
{
	struct pt_route slow = { .status = "approved",
				 .sql = "SELECT pg_sleep(1.8); INSERT INTO pt_probe SELECT lease_owner,"
					" lease_until > clock_timestamp() FROM poll_schedule"
					" WHERE offer = 10 AND variant = 'processing'" };
	struct mock_route routes[] = {
		{ .path = "/slow", .kind = MOCK_FUNC, .fn = pt_answer, .data = &slow },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp, out;
	char err[1024];

	buf_init(&imp, 0);
	buf_init(&out, 0);
	ASSERT(pt_open(&e, "ls_poller_check_beat", routes, 1));
	ASSERT_EQ(store_connect(e.ci, &slow.conn, err, sizeof(err)), 0);
	ASSERT(test_sql_exec(e.c, "CREATE TABLE pt_probe (owner text, alive boolean)"));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "slow", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	pt_config(&e, &pc, "w-check");
	pc.db = NULL;
	pc.sched.lease_s = 1;
	pc.http_limits.timeout_ms = 5000;
	ASSERT_EQ(poller_check(e.ci, &pc, 10, RULE_PROCESSING, false, &out, err, sizeof(err)), 0);
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', owner, alive) FROM pt_probe", "w-check t"));
	ASSERT(!strstr(out.p, "warning"));
	ASSERT(test_sql_is(e.c, "SELECT coalesce(lease_owner, '-') FROM poll_schedule WHERE offer = 10"
			  " AND variant = 'processing'", "-"));
	pt_close(&e);
	PQfinish(slow.conn);
	buf_release(&imp);
	buf_release(&out);
}

/* ------------------------------------------------------------ offer words */

/* A CRM with words of its own: the rule maps "won" to cancel and blocks
 * "7"; an offer may map words itself (offers.status_words). */
static const char pt_rule_words[] =
	"return {\n"
	"  statuses = { won = 'cancel', ['7'] = false },\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}&key={key}',\n"
	"    process = function(data)\n"
	"      for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"    end },\n"
	"}\n";

/* The offer's words beat the rule's map and the built-ins, a word the
 * offer blocks is unrecognised, words that do not parse fail the run with
 * config_error, and a change by import is read at the next claim while
 * unchanged words are not parsed again. */
TEST(poller_offer_status_words_come_first)
{
	struct pt_route won = { .status = "won" }, hold = { .status = "hold" };
	struct mock_route routes[] = {
		{ .path = "/won", .kind = MOCK_FUNC, .fn = pt_answer, .data = &won },
		{ .path = "/hold", .kind = MOCK_FUNC, .fn = pt_answer, .data = &hold },
	};
	struct pt_env e;
	struct poller_config pc;
	struct poller_stats st;
	struct buf imp;
	char err[1024];
	int port;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_words", routes, 2));
	ASSERT(pt_write(e.rules, "pt_words", pt_rule_words));
	port = mock_crm_port(e.m);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_words", port, "won", "\"status_words\": {\"Won\": 10}"), 0);
	ASSERT_EQ(pt_offer(&imp, 20, "pt_words", port, "won", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 30, "pt_words", port, "hold",
			   "\"status_words\": {\"hold\": false, \"won\": 10}"), 0);
	ASSERT_EQ(pt_offer(&imp, 40, "pt_words", port, "won", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 201, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 301, 30, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 401, 40, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	/* words import would refuse, written by hand */
	ASSERT(test_sql_exec(e.c, "UPDATE offers SET status_words = '{\"won\": 13}' WHERE id = 40"));
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-words");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));

	/* 10: the offer's "won" (paid, payouts computed) beats the rule's
	 * cancel; 20: no offer words, the rule's map; 30: blocked by the
	 * offer although the built-ins read "hold" as 4; 40: not polled */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(':', id, status, reason), ' ' ORDER BY id)"
			  " FROM leads", "101:10 201:5:2 301:2 401:2"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', wm, pay) FROM leads WHERE id = 101", "5.00 8.00"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', outcome, leads_changed, leads_unrecognised,"
			  " notes LIKE '%lead 301: unrecognised status ''hold''%')"
			  " FROM poll_runs WHERE offer = 30", "ok 0 1 t"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', outcome, error) FROM poll_runs WHERE offer = 40",
		     "config_error offer 40: status_words: word 'won': status 13 is not in 1..12"));
	ASSERT(test_sql_is(e.c, "SELECT fail_count FROM poll_schedule WHERE offer = 40"
			  " AND variant = 'processing'", "1"));
	poller_stats(e.p[0], &st);
	ASSERT_EQ(st.words_parsed, 2);

	/* an import changes offer 10's words; 30's stay as they were */
	buf_reset(&imp);
	ASSERT_EQ(buf_adds(&imp, "{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"O10\","
				 " \"status_words\": {\"won\": {\"status\": 5, \"reason\": 7}}}}\n"),
		  0);
	ASSERT_EQ(pt_lead(&imp, 102, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(test_sql_exec(e.c, "UPDATE poll_schedule SET next_due = now() WHERE offer IN (10, 30)"
			    " AND variant = 'processing'"));
	ASSERT(pt_run_idle(&e, 10000));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(':', id, status, reason), ' ' ORDER BY id)"
			  " FROM leads WHERE offer IN (10, 30)", "101:10 102:5:7 301:2"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs WHERE offer = 30 AND outcome = 'ok'"
			  " AND leads_unrecognised = 1", "2"));
	poller_stats(e.p[0], &st);
	ASSERT_EQ(st.words_parsed, 3); /* 10 again; 30 from the cache */
	pt_close(&e);
	buf_release(&imp);
}

static const char pt_rule_cs_json[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}&key={key}',\n"
	"    process = function(data)\n"
	"      for _, d in ipairs(data) do lead.setstc(e2i[d.id], d.status) end\n"
	"    end },\n"
	"}\n";

static const char pt_rule_cs_xml[] =
	"return {\n"
	"  processing = { url = 'http://{host}/{path}?ids={idel}&key={key}', format = 'xml',\n"
	"    process = function(data)\n"
	"      for _, o in ipairs(xml.all(data, 'order')) do\n"
	"        lead.setstatus(e2i[o.attr.id], xml.find(o, 'status').text)\n"
	"      end\n"
	"    end },\n"
	"}\n";

/* windows-1251: Оплачен, Холд, Отмена */
#define PT_CP_PAID "\xce\xef\xeb\xe0\xf7\xe5\xed"
#define PT_CP_HOLD "\xd5\xee\xeb\xe4"
#define PT_CP_CANCEL "\xce\xf2\xec\xe5\xed\xe0"

/* Answers in windows-1251 reach the rule as UTF-8, so their status words
 * are recognised: JSON by its Content-Type charset, XML by its declaration;
 * an undeclared one fails as decode_error, and each run records the
 * answer's Content-Type. */
TEST(poller_windows_1251_answers_are_decoded)
{
	struct mock_route routes[] = {
		{ .path = "/json1251", .kind = MOCK_FIXED,
		  .headers = "Content-Type: application/json; charset=windows-1251\r\n",
		  .body = "[{\"id\":\"E-101\",\"status\":\"" PT_CP_PAID "\"},"
			  "{\"id\":\"E-102\",\"status\":\"" PT_CP_HOLD "\"}]" },
		{ .path = "/xml1251", .kind = MOCK_FIXED, .headers = "Content-Type: text/xml\r\n",
		  .body = "<?xml version=\"1.0\" encoding=\"windows-1251\"?>\n<orders>"
			  "<order id=\"E-201\"><status>" PT_CP_CANCEL "</status></order>"
			  "<order id=\"E-202\"><status>" PT_CP_PAID "</status></order></orders>" },
		{ .path = "/undeclared", .kind = MOCK_FIXED,
		  .body = "[{\"id\":\"E-301\",\"status\":\"" PT_CP_PAID "\"}]" },
	};
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];
	int port;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_cs", routes, 3));
	ASSERT(pt_write(e.rules, "pt_cs_json", pt_rule_cs_json));
	ASSERT(pt_write(e.rules, "pt_cs_xml", pt_rule_cs_xml));
	port = mock_crm_port(e.m);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_cs_json", port, "json1251", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 20, "pt_cs_xml", port, "xml1251", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 30, "pt_cs_json", port, "undeclared", NULL), 0);
	ASSERT_EQ(pt_lead(&imp, 101, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 102, 10, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 201, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 202, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 301, 30, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-cs");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));

	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(':', id, status, reason), ' ' ORDER BY id)"
			  " FROM leads", "101:10 102:4 201:5:2 202:10 301:2"));
	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(' ', offer, outcome, leads_unrecognised,"
			  " content_type), ', ' ORDER BY offer) FROM poll_runs",
			  "10 ok 0 application/json; charset=windows-1251, 20 ok 0 text/xml,"
			  " 30 decode_error 0 application/json"));
	ASSERT(test_sql_is(e.c, "SELECT error FROM poll_runs WHERE offer = 30",
			  "answer (json, HTTP 200): json: not UTF-8 at byte 25 (0xce 0xef 0xeb 0xe0)"
			  " and no charset declared (Content-Type 'application/json'): a CRM that"
			  " sends windows-1251, koi8-r or cp866 must say so in its Content-Type"
			  " ('; charset=windows-1251')"));
	/* the comment setstc keeps is UTF-8 */
	ASSERT(test_sql_is(e.c, "SELECT comment FROM leads WHERE id = 102",
			   "\xd0\xa5\xd0\xbe\xd0\xbb\xd0\xb4"));
	pt_close(&e);
	buf_release(&imp);
}

/* ------------------------------------------------------------ leads without ext */

/* Leads without an external id (a postback's) are never sent as an empty
 * id (`ids=&key=`): the id variants ask only for leads with one and count
 * the others in the run's first row (leads_no_ext) and its log line. */
TEST(poller_leads_without_ext_are_counted_never_sent)
{
	struct pt_route only_route = { .status = "approved" };
	struct mock_route routes[] = {
		{ .path = "/ok", .kind = MOCK_FUNC, .fn = pt_answer, .data = &pt_ok_route },
		{ .path = "/only", .kind = MOCK_FUNC, .fn = pt_answer, .data = &only_route },
	};
	static struct mock_request reqs[64];
	struct pt_env e;
	struct poller_config pc;
	struct buf imp;
	char err[1024];
	size_t n, i, asked = 0;

	buf_init(&imp, 0);
	ASSERT(pt_open(&e, "ls_poller_no_ext", routes, 2));
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	ASSERT_EQ(pt_offer(&imp, 10, "pt_crm", mock_crm_port(e.m), "ok", NULL), 0);
	ASSERT_EQ(pt_offer(&imp, 20, "pt_crm", mock_crm_port(e.m), "only", NULL), 0);
	/* offer 10: 101 and 103 have no ext, 102, 104 and 105 do (batch 2) */
	for (i = 101; i <= 105; i++)
		ASSERT_EQ(pt_lead(&imp, (int64_t)i, 10, 2, "2026-01-10T10:00:00Z"), 0);
	/* offer 20: two leads, neither with an ext */
	ASSERT_EQ(pt_lead(&imp, 201, 20, 2, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_lead(&imp, 202, 20, 3, "2026-01-10T10:00:00Z"), 0);
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	ASSERT(test_sql_exec(e.c, "UPDATE leads SET ext = NULL WHERE id IN (101, 201)"));
	ASSERT(test_sql_exec(e.c, "UPDATE leads SET ext = '' WHERE id IN (103, 202)"));
	ASSERT(pt_hold_except(e.c, "variant = 'processing'"));
	pt_config(&e, &pc, "w-noext");
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));

	n = mock_crm_requests(e.m, reqs, 64);
	for (i = 0; i < n && i < 64; i++) {
		ASSERT(strstr(reqs[i].query, "ids=&") == NULL);
		ASSERT(strstr(reqs[i].query, "ids=") == reqs[i].query);
		ASSERT_STREQ(reqs[i].path, "/ok"); /* offer 20 is never asked */
		asked += 1 + (size_t)(strchr(reqs[i].query, ',') != NULL);
	}
	ASSERT_EQ(n, 2);
	ASSERT_EQ(asked, 3);
	/* the three with an ext moved; the others are untouched */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM leads",
			   "101:2 102:6 103:2 104:6 105:6 201:2 202:3"));
	/* counted once per run, on one row; offer 20's run has a row of its own */
	ASSERT(test_sql_is(e.c, "SELECT string_agg(concat_ws(':', offer, n, asked, no_ext, outcome),"
			   " ' ' ORDER BY offer) FROM (SELECT offer, count(*) AS n,"
			   " sum(leads_asked) AS asked, sum(leads_no_ext) AS no_ext,"
			   " string_agg(DISTINCT outcome, ',') AS outcome FROM poll_runs"
			   " GROUP BY offer) x",
			   "10:2:3:2:ok 20:1:0:2:ok"));
	ASSERT(test_sql_is(e.c, "SELECT count(*) FROM poll_runs WHERE url IS NOT NULL AND offer = 20",
			   "0"));
	pt_close(&e);
	buf_release(&imp);
}

/* A poll's write commits without waiting for the WAL flush, for its own
 * transaction only (include/poll_sql.h "Durability"): the connection it
 * ran on, which postbacks share, is durable again for the next statement. */
TEST(poller_async_commit_stays_in_its_own_statement)
{
	PGconn *c = (PGconn *)test_db_migrated("poll_async", NULL);
	const char *p[POLL_SQL_ROW_PARAMS] = { "7", "processing", "w1", "1795000000000000",
					       "1795000001000000", NULL, NULL, NULL, NULL, "0",
					       "0", "0", "0", "0", "0", "0", "ok", NULL, NULL,
					       "false", "0", NULL, NULL, "0", "0" };
	char err[512];
	PGresult *r;

	ASSERT(c);
	test_defer((test_cleanup_fn)PQfinish, c);
	ASSERT(test_sql_exec((struct pg_conn *)c,
			     "INSERT INTO advertisers (id, name, api_key) VALUES (1, 'a', 'k');"
			     "INSERT INTO offers (id, advertiser, name) VALUES (7, 1, 'o')"));
	ASSERT(test_sql_is((struct pg_conn *)c, "SHOW synchronous_commit", "on"));
	r = store_query_prepared(c, "t_poll_row", "poll run", POLL_SQL_ROW, POLL_SQL_ROW_PARAMS, p,
				 err, sizeof(err));
	if (!r)
		printf("  %s\n", err);
	ASSERT(r);
	ASSERT(PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "off") == 0);
	PQclear(r);
	ASSERT(test_sql_is((struct pg_conn *)c, "SHOW synchronous_commit", "on"));
	ASSERT(test_sql_is((struct pg_conn *)c, "SELECT count(*) FROM poll_runs WHERE offer = 7", "1"));
}

/* The dates variant's day bounds come from PostgreSQL: America/New_York
 * 2026-03-08 is 23 hours long (05:00Z .. 04:00Z), America/Havana
 * 2026-11-01 25 hours, its midnight ambiguous (the clock falls back from
 * 01:00 to 00:00): the day starts at the first 00:00 (04:00Z), so lead 501,
 * made at 00:30 of that first hour, is in it; Europe/Moscow 2014-10-26 25
 * hours (+4 to +3). test_cli's rule test case expects the same bounds. An offer whose zone
 * PostgreSQL does not know fails with config_error naming the zone. */
TEST(poller_dates_bounds_follow_dst_in_postgresql)
{
	static const char rule[] =
		"return {\n"
		"  process = function(data)\n"
		"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
		"  end,\n"
		"  dates = { url = 'http://{host}/{path}?from={from}&to={to}&ufrom={ufrom}"
		"&uto={uto}&utom={utom}&ffrom={ffrom}&fto={fto}', days = 1 },\n"
		"}\n";
	struct pt_route ny = { .status = "cancelled", .dates_ids = "E-401" },
			hav = { .status = "cancelled", .dates_ids = "E-501" },
			msk = { .status = "cancelled", .dates_ids = "E-701" };
	struct mock_route routes[] = {
		{ .path = "/ny", .kind = MOCK_FUNC, .fn = pt_answer, .data = &ny },
		{ .path = "/hav", .kind = MOCK_FUNC, .fn = pt_answer, .data = &hav },
		{ .path = "/msk", .kind = MOCK_FUNC, .fn = pt_answer, .data = &msk },
	};
	/* offer, its CRM path, zone (60: made unknown below), its lead's creation */
	static const struct {
		int64_t offer;
		const char *path, *tz, *created;
	} world[] = {
		{ 40, "ny", "America/New_York", "2026-03-08T12:00:00Z" },
		{ 50, "hav", "America/Havana", "2026-11-01T04:30:00Z" },
		{ 60, "ny", "UTC", "2026-11-01T04:30:00Z" },
		{ 70, "msk", "Europe/Moscow", "2014-10-26T12:00:00Z" },
	};
	static const struct {
		const char *path, *query;
	} want[] = {
		{ "/ny", "from=2026-03-08&to=2026-03-08&ufrom=1772946000&uto=1773028799"
			 "&utom=1773028800&ffrom=2026-03-08%2000%3A00%3A00&fto=2026-03-08%2023%3A59%3A59" },
		{ "/hav", "from=2026-11-01&to=2026-11-01&ufrom=1793505600&uto=1793595599"
			  "&utom=1793595600&ffrom=2026-11-01%2000%3A00%3A00&fto=2026-11-01%2023%3A59%3A59" },
		{ "/msk", "from=2014-10-26&to=2014-10-26&ufrom=1414267200&uto=1414357199"
			  "&utom=1414357200&ffrom=2014-10-26%2000%3A00%3A00&fto=2014-10-26%2023%3A59%3A59" },
	};
	struct buf imp;
	struct mock_request reqs[8];
	struct pt_env e;
	struct poller_config pc;
	char err[1024];
	size_t n, i;
	int port, seen = 0;

	buf_init(&imp, 0);
	test_defer(pt_buf_release, &imp);
	ASSERT(pt_open(&e, "ls_poller_dst", routes, 3));
	ASSERT(pt_write(e.rules, "pt_dst", rule));
	port = mock_crm_port(e.m);
	ASSERT_EQ(buf_adds(&imp, PT_ADV), 0);
	for (i = 0; i < sizeof(world) / sizeof(world[0]); i++) {
		char tz[64];

		snprintf(tz, sizeof(tz), "\"tz\": \"%s\"", world[i].tz);
		ASSERT_EQ(pt_offer(&imp, world[i].offer, "pt_dst", port, world[i].path, tz), 0);
		ASSERT_EQ(pt_lead(&imp, world[i].offer * 10 + 1, world[i].offer, 2, world[i].created),
			  0);
	}
	ASSERT_EQ(pt_import(e.c, imp.p, err, sizeof(err)), 0);
	/* past import's check, as a hand edit of the table would */
	ASSERT(test_sql_exec(e.c, "UPDATE offers SET tz = 'Mars/Base' WHERE id = 60"));
	ASSERT(pt_hold_except(e.c, "variant = 'dates'"));
	pt_config(&e, &pc, "w-dst");
	pc.dates_age_days = 36500; /* the days are in the past */
	ASSERT(pt_start(&e, 0, &pc));
	ASSERT(pt_run_idle(&e, 10000));

	n = mock_crm_requests(e.m, reqs, 8);
	ASSERT_EQ(n, 3);
	for (i = 0; i < n; i++) {
		size_t k;

		for (k = 0; k < 3; k++)
			if (strcmp(reqs[i].path, want[k].path) == 0) {
				seen |= 1 << k;
				ASSERT_STREQ(reqs[i].query, want[k].query);
			}
	}
	ASSERT_EQ(seen, 7);
	ASSERT(test_sql_is(e.c, "SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM leads",
			   "401:5 501:5 601:2 701:5"));
	ASSERT(test_sql_is(e.c, "SELECT concat_ws(' ', outcome, error) FROM poll_runs WHERE offer = 60",
			   "config_error unknown time zone 'Mars/Base'"));
	pt_close(&e);
}
