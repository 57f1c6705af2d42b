/* test_demo_crm: the demo CRM of `make run` (demo_crm.c): its plans, its
 * API over loopback read by the real rules/demo_crm.lua, and the demo
 * network of scripts/demo/network.jsonl. */
#include "demo_crm.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "buf.h"
#include "import.h"
#include "lead.h"
#include "log.h"
#include "rule.h"
#include "status.h"
#include "store.h"
#include "test.h"
#include "timers.h"
#include "tz.h"

#define DT_SEED 42
#define DT_STEP_MS 1000
#define DT_LEADS 24

/* ------------------------------------------------------------------ plans */

static const char *const dt_next[][7] = {
	/* word, then the words that may follow it */
	{ "processing", "processing", "callback", "approved", "cancelled", "trash", "duplicate" },
	{ "callback", "callback", "approved", "cancelled", "trash", "duplicate", NULL },
	{ "approved", "approved", "shipped", NULL },
	{ "shipped", "shipped", "delivered", NULL },
	{ "delivered", "delivered", "paid", "returned", NULL },
	{ "paid", "paid", NULL },
	{ "returned", "returned", NULL },
	{ "cancelled", "cancelled", NULL },
	{ "trash", "trash", NULL },
	{ "duplicate", "duplicate", NULL },
};

static bool dt_may_follow(const char *a, const char *b)
{
	size_t i, j;

	for (i = 0; i < sizeof(dt_next) / sizeof(dt_next[0]); i++)
		if (strcmp(dt_next[i][0], a) == 0)
			for (j = 1; j < 7 && dt_next[i][j]; j++)
				if (strcmp(dt_next[i][j], b) == 0)
					return true;
	return false;
}

TEST(demo_crm_plans_are_plausible_and_fixed_by_the_seed)
{
	static const char *const words[] = { "processing", "callback", "approved", "cancelled",
					      "trash", "duplicate", "shipped", "delivered",
					      "paid", "returned" };
	unsigned seen[10] = { 0 };
	struct demo_crm_state a, b, prev = { 0 };
	struct status_match m;
	bool seeds_differ = false;
	char id[16];
	int i, k;
	size_t w;

	for (i = 0; i < 200; i++) {
		int n = snprintf(id, sizeof(id), "D-%d", i);

		for (k = 0; k <= 30; k++) {
			demo_crm_progress(DT_SEED, id, (size_t)n, (uint64_t)k, &a);
			demo_crm_progress(DT_SEED, id, (size_t)n, (uint64_t)k, &b);
			ASSERT_STREQ(a.status, b.status);
			ASSERT_EQ(a.payout, b.payout);
			if (k == 0)
				ASSERT_STREQ(a.status, "processing");
			else if (!dt_may_follow(prev.status, a.status)) {
				test__fail(__FILE__, __LINE__, "%s: %s then %s at %d", id, prev.status,
					   a.status, k);
				return;
			}
			/* a payout only with "approved", in whole units 6..10, in USD */
			if (a.payout) {
				ASSERT_STREQ(a.status, "approved");
				ASSERT(a.payout >= 600 && a.payout <= 1000 && a.payout % 100 == 0);
				ASSERT_STREQ(a.currency, "USD");
			} else
				ASSERT(a.currency == NULL);
			/* every word is one of the built-in words the rule relies on */
			ASSERT(status_recognise(NULL, a.status, strlen(a.status), &m));
			for (w = 0; w < 10; w++)
				if (strcmp(words[w], a.status) == 0)
					seen[w]++;
			demo_crm_progress(DT_SEED + 1, id, (size_t)n, (uint64_t)k, &b);
			if (strcmp(a.status, b.status) != 0)
				seeds_differ = true;
			prev = a;
		}
		ASSERT(a.final); /* a whole plan fits in 30 steps */
	}
	for (w = 0; w < 10; w++)
		if (!seen[w])
			test__fail(__FILE__, __LINE__, "no order is ever '%s'", words[w]);
	ASSERT(seeds_differ);
	/* pinned, so the demo replays the same way from one version to the next:
	 * lead 1001 of scripts/demo/network.jsonl under the default seed */
	{
		static const char want[] = "processing callback callback approved$8 approved$8 "
					   "approved$8 shipped shipped shipped shipped delivered "
					   "delivered paid paid";
		struct buf got;

		buf_init(&got, 0);
		for (k = 0; k < 14; k++) {
			demo_crm_progress(DEMO_CRM_SEED, "A-17", 4, (uint64_t)k, &a);
			if (buf_addf(&got, "%s%s", k ? " " : "", a.status) < 0 ||
			    (a.payout && buf_addf(&got, "$%lld", (long long)a.payout / 100) < 0))
				break;
		}
		ASSERT(a.final);
		if (strcmp(got.p, want) != 0)
			test__fail(__FILE__, __LINE__, "plan of A-17: %s", got.p);
		buf_release(&got);
	}
}

/* -------------------------------------------------------- over loopback */

/* The CRM on a loop in its own thread; the test talks to it with curl. */
struct dt_srv {
	int log_level; /* the test's, restored at the end: the CRM logs every move */
	uv_loop_t loop;
	uv_async_t stop;
	pthread_t thread;
	struct demo_crm *d;
	atomic_uint_fast64_t clock_ms;
	size_t orders; /* at close */
	int port;
};

static uint64_t dt_clock(void *arg)
{
	struct dt_srv *s = arg;

	return (uint64_t)atomic_load(&s->clock_ms);
}

static void dt_stop_cb(uv_async_t *a)
{
	struct dt_srv *s = a->data;

	s->orders = demo_crm_orders(s->d);
	demo_crm_close(s->d, NULL, NULL);
	uv_close((uv_handle_t *)&s->stop, NULL);
}

static void *dt_thread(void *arg)
{
	struct dt_srv *s = arg;

	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

static int dt_start(struct dt_srv *s, const char *key, size_t max_orders)
{
	struct demo_crm_config cfg = { .addr = "127.0.0.1:0", .key = key, .seed = DT_SEED,
				       .step_ms = DT_STEP_MS, .max_orders = max_orders,
				       .clock_ms = dt_clock };
	char err[256];

	memset(s, 0, sizeof(*s));
	s->log_level = log_level;
	log_level = LOG_WARN;
	atomic_store(&s->clock_ms, 1000000);
	cfg.clock_arg = s;
	uv_loop_init(&s->loop);
	if (demo_crm_start(&s->loop, &cfg, &s->d, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "demo crm: %s", err);
		log_level = s->log_level;
		uv_run(&s->loop, UV_RUN_DEFAULT);
		uv_loop_close(&s->loop);
		return -1;
	}
	s->port = demo_crm_port(s->d);
	uv_async_init(&s->loop, &s->stop, dt_stop_cb);
	s->stop.data = s;
	pthread_create(&s->thread, NULL, dt_thread, s);
	return 0;
}

static void dt_finish(struct dt_srv *s)
{
	uv_async_send(&s->stop);
	pthread_join(s->thread, NULL);
	log_level = s->log_level;
	if (uv_loop_close(&s->loop) != 0)
		test__fail(__FILE__, __LINE__, "the demo crm left handles open");
}

static void dt_age(struct dt_srv *s, unsigned steps)
{
	atomic_store(&s->clock_ms, 1000000 + (uint64_t)steps * DT_STEP_MS);
}

static size_t dt_write(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) < 0 ? 0 : size * n;
}

/* GET http://127.0.0.1:port/query into body; returns the HTTP status. */
static long dt_get(const struct dt_srv *s, const char *query, struct buf *body)
{
	char url[4096];
	CURL *h = curl_easy_init();
	long status = -1;

	buf_reset(body);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, query);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, dt_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	return status;
}

TEST(demo_crm_checks_the_key_and_the_query)
{
	struct dt_srv s;
	struct buf b;
	char today[16];
	int64_t y;
	int mo, d;
	long st[7];

	buf_init(&b, 0);
	if (dt_start(&s, "k-9", 3) < 0)
		return;
	tz_civil_from_days((int64_t)time(NULL) / 86400, &y, &mo, &d);
	snprintf(today, sizeof(today), "%04d-%02d-%02d", (int)y, mo, d);
	st[0] = dt_get(&s, "/orders?ids=A-1&key=nope", &b);
	ASSERT_CONTAINS(b.p, "{\"ok\":false,\"error\":\"wrong api key\"}");
	st[1] = dt_get(&s, "/orders?ids=A-1", &b);
	ASSERT_CONTAINS(b.p, "\"ok\":false");
	st[2] = dt_get(&s, "/orders?key=k-9", &b);
	ASSERT_CONTAINS(b.p, "ask by ids=A,B or by from=YYYY-MM-DD&to=YYYY-MM-DD");
	st[3] = dt_get(&s, "/orders?from=2026-13-01&to=2026-13-02&key=k-9", &b);
	ASSERT_CONTAINS(b.p, "from and to must be dates");
	/* unknown ids are created on first sight, up to max_orders; past it
	 * they are left out as unknown ids are; a repeated id is answered once */
	st[4] = dt_get(&s, "/orders?ids=A-1,%2CA-2,A-1,A-3,A-4&key=k-9", &b);
	ASSERT_STREQ(b.p, "[{\"id\":\"A-1\",\"status\":\"processing\"},{\"id\":\"A-2\",\"status\":"
			  "\"processing\"},{\"id\":\"A-3\",\"status\":\"processing\"}]");
	{
		char q[96];

		snprintf(q, sizeof(q), "/orders?from=%s&to=%s&key=k-9", today, today);
		st[5] = dt_get(&s, q, &b);
		ASSERT_STREQ(b.p, "[{\"id\":\"A-1\",\"status\":\"processing\"},{\"id\":\"A-2\","
				  "\"status\":\"processing\"},{\"id\":\"A-3\",\"status\":\"processing\"}]");
	}
	st[6] = dt_get(&s, "/orders?from=2000-01-01&to=2000-01-02&key=k-9", &b);
	ASSERT_STREQ(b.p, "[]");
	dt_finish(&s);
	buf_release(&b);
	ASSERT_EQ(st[0], 403);
	ASSERT_EQ(st[1], 403);
	ASSERT_EQ(st[2], 400);
	ASSERT_EQ(st[3], 400);
	ASSERT_EQ(st[4], 200);
	ASSERT_EQ(st[5], 200);
	ASSERT_EQ(st[6], 200);
	ASSERT_EQ(s.orders, 3);
}

/* The daemon's side, in miniature: leads on the demo offer, polled every
 * step by the variant their status calls for, the answers run through the
 * real rules/demo_crm.lua and its edits applied. */
struct dt_net {
	struct lead leads[DT_LEADS];
	struct rule_rt *rt;
	size_t refused, unrecognised;
};

static const struct rule_goal dt_goals[] = { { 10, "lead", { 5, PAYOUT_FIXED, 500, 800, 0, 840 } } };
static const struct rule_currency dt_curr[] = { { "USD", 840 }, { "EUR", 978 } };

/* Polls the leads of one variant once; 0, or -1 after recording a failure. */
static int dt_poll(struct dt_srv *s, struct dt_net *n, enum rule_variant v, unsigned age,
		   struct buf *body)
{
	struct macro_param params[2] = { { "host", NULL }, { "key", "s3cret" } };
	struct lead batch[DT_LEADS];
	size_t idx[DT_LEADS], nb = 0, i;
	struct rule_batch b;
	struct rule_request req;
	struct rule_result res;
	char host[32], err[1024];
	const char *path;
	cJSON *arr = NULL, *it;
	long status;
	int rc = -1;

	for (i = 0; i < DT_LEADS; i++) {
		int st = n->leads[i].status;

		if (v == RULE_PROCESSING ? st >= 2 && st <= 4 : st >= 6 && st <= 9) {
			idx[nb] = i;
			batch[nb++] = n->leads[i];
		}
	}
	if (!nb)
		return 0;
	snprintf(host, sizeof(host), "127.0.0.1:%d", s->port);
	params[0].value = host;
	memset(&b, 0, sizeof(b));
	b.offer = 10;
	b.leads = batch;
	b.nleads = nb;
	b.params = params;
	b.nparams = 2;
	b.settings.hold_days = 7;
	b.settings.reject_reason = 2;
	b.goals = dt_goals;
	b.ngoals = 1;
	b.currencies = dt_curr;
	b.ncurrencies = 2;
	b.now = 1795000000 + (int64_t)age;
	rule_result_init(&res);
	rule_request_init(&req);
	/* the request is the rule's own, macros expanded */
	if (rule_prepare(n->rt, v, &b, &res, &req, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "prepare: %s", err);
		goto out;
	}
	path = strstr(req.url, "/orders?");
	status = path ? dt_get(s, path, body) : -1;
	if (status != 200) {
		test__fail(__FILE__, __LINE__, "GET %s: %ld %s", req.url, status, body->p);
		goto out;
	}
	/* the answer is what the plans say, in the order asked */
	arr = cJSON_Parse(body->p);
	i = 0;
	cJSON_ArrayForEach(it, arr) {
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
		const char *word = cJSON_GetStringValue(cJSON_GetObjectItem(it, "status"));
		cJSON *pay = cJSON_GetObjectItem(it, "payout");
		struct demo_crm_state want;

		if (i >= nb || !id || strcmp(id, batch[i].ext) != 0 || !word) {
			test__fail(__FILE__, __LINE__, "answer item %zu: %s", i, body->p);
			goto out;
		}
		demo_crm_progress(DT_SEED, id, strlen(id), age, &want);
		if (strcmp(word, want.status) != 0 || (want.payout && !cJSON_IsNumber(pay)) ||
		    (!want.payout && pay) ||
		    (want.payout && (int64_t)(cJSON_GetNumberValue(pay) * 100 + 0.5) != want.payout)) {
			test__fail(__FILE__, __LINE__, "%s at %u: want %s %lld, got %s", id, age,
				   want.status, (long long)want.payout, body->p);
			goto out;
		}
		i++;
	}
	if (!arr || i != nb) {
		test__fail(__FILE__, __LINE__, "%zu of %zu orders in %s", i, nb, body->p);
		goto out;
	}
	if (rule_process(n->rt, v, &b, &req, body->p, body->len, 200, NULL, &res, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "process: %s", err);
		goto out;
	}
	n->refused += res.refused;
	n->unrecognised += res.unrecognised;
	for (i = 0; i < res.nchanges; i++)
		n->leads[idx[res.changes[i].lead]] = res.changes[i].after;
	rc = 0;
out:
	cJSON_Delete(arr);
	rule_request_release(&req);
	rule_result_release(&res);
	return rc;
}

TEST(demo_crm_answers_as_rules_demo_crm_lua_expects)
{
	struct dt_srv s;
	struct dt_net n;
	struct buf body;
	char err[1024];
	unsigned age;
	size_t i, payouts = 0, approved = 0;
	int rc = 0;

	memset(&n, 0, sizeof(n));
	for (i = 0; i < DT_LEADS; i++) {
		n.leads[i].id = 1000 + (int64_t)i;
		n.leads[i].offer = 10;
		snprintf(n.leads[i].ext, sizeof(n.leads[i].ext), "D-%zu", i);
		n.leads[i].status = i % 3 ? 2 : 3;
		n.leads[i].goal = 5;
		n.leads[i].base = 3000;
		n.leads[i].counts = 1;
		n.leads[i].created = 1795000000 - 86400;
	}
	if (rule_load("rules/demo_crm.lua", NULL, &n.rt, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "%s", err);
		return;
	}
	buf_init(&body, 0);
	if (dt_start(&s, "s3cret", 0) < 0) {
		rule_free(n.rt);
		return;
	}
	for (age = 0; age <= 30 && rc == 0; age++) {
		dt_age(&s, age);
		rc = dt_poll(&s, &n, RULE_PROCESSING, age, &body);
		if (rc == 0)
			rc = dt_poll(&s, &n, RULE_ACCEPTED, age, &body);
	}
	dt_finish(&s);
	buf_release(&body);
	rule_free(n.rt);
	if (rc < 0)
		return;
	ASSERT_EQ(s.orders, DT_LEADS);
	ASSERT_EQ(n.refused, 0);
	ASSERT_EQ(n.unrecognised, 0);
	/* every lead ends where its order's plan ends, through the semantics */
	for (i = 0; i < DT_LEADS; i++) {
		const struct lead *l = &n.leads[i];
		struct demo_crm_state end, st;
		unsigned k;
		int64_t payout = 0;

		demo_crm_progress(DT_SEED, l->ext, strlen(l->ext), 100, &end);
		for (k = 0; k < 30; k++) {
			demo_crm_progress(DT_SEED, l->ext, strlen(l->ext), k, &st);
			if (st.payout)
				payout = st.payout;
		}
		if (strcmp(end.status, "paid") == 0 || strcmp(end.status, "returned") == 0) {
			ASSERT_EQ(l->status, strcmp(end.status, "paid") == 0 ? LS_PAID : LS_RETURN);
			ASSERT(l->approved_at != 0);
			ASSERT_EQ(l->wm, 500);
			/* the advertiser's payout when it named one, else the goal's */
			ASSERT_EQ(l->pay, payout ? payout : 800);
			ASSERT_EQ(l->cash_curr, payout ? 840 : 0);
			approved++;
			payouts += payout != 0;
		} else {
			ASSERT_EQ(l->status, LS_CANCEL);
			ASSERT_EQ(l->reason, strcmp(end.status, "trash") == 0       ? REASON_TRASH_TEST
					     : strcmp(end.status, "duplicate") == 0 ? REASON_DUPLICATE
										    : 2);
			ASSERT_STREQ(l->comment, end.status);
		}
	}
	/* the seed gives a mix worth watching */
	ASSERT(approved >= 3 && approved < DT_LEADS);
	ASSERT(payouts >= 1 && payouts < approved);
}

/* --------------------------------------------------------- the demo data */

TEST(demo_crm_demo_network_imports_and_its_timers_fire)
{
	char *ci = test_db_fresh("ls_demo_network");
	FILE *in = fopen("scripts/demo/network.jsonl", "r");
	struct timers_config cfg = { 0 };
	struct import_stats ist;
	struct timers_stats st = { 0 };
	PGconn *c = NULL;
	PGresult *r;
	char err[1024];
	int applied, rc = -1, level = log_level;

	if (!ci || !in) {
		test__fail(__FILE__, __LINE__, "no database or no scripts/demo/network.jsonl");
		goto out;
	}
	if (store_connect(ci, &c, err, sizeof(err)) < 0 ||
	    store_migrate(c, &applied, err, sizeof(err)) < 0 ||
	    import_run(c, in, &ist, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "%s", err);
		goto out;
	}
	/* twice: `make run` imports it on every start */
	rewind(in);
	if (import_run(c, in, &ist, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "second import: %s", err);
		goto out;
	}
	log_level = LOG_WARN;
	rc = timers_round(c, &cfg, &st, err, sizeof(err));
	log_level = level;
	if (rc < 0) {
		test__fail(__FILE__, __LINE__, "%s", err);
		goto out;
	}
	/* the demo shows each timer at work at once */
	if (st.approved < 1 || st.rejected < 1)
		test__fail(__FILE__, __LINE__, "demo timers: %llu approved, %llu rejected",
			   (unsigned long long)st.approved, (unsigned long long)st.rejected);
	/* every offer that names a rule polls the demo CRM within seconds
	 * (with its key, or its flaky key: demo_crm_flaky_offer_fails_now_and_then) */
	r = PQexec(c, "SELECT count(*) FROM offers WHERE rule IS NOT NULL AND (rule <> 'demo_crm'"
		      " OR params ->> 'host' <> '127.0.0.1:9001'"
		      " OR params ->> 'key' NOT IN ('" DEMO_CRM_KEY "', '" DEMO_CRM_FLAKY_KEY "')"
		      " OR coalesce(interval_processing, 600) > 10 OR coalesce(interval_accepted, 0) > 30)");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "0") != 0)
		test__fail(__FILE__, __LINE__, "demo offers not on the demo CRM with short intervals: %s",
			   PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0)
								: PQresultErrorMessage(r));
	PQclear(r);
out:
	if (in)
		fclose(in);
	PQfinish(c);
	free(ci);
}

/* The demo's flaky offer: offer 11 of the demo network polls with the
 * demo CRM's flaky key, so every DEMO_CRM_FAIL_EVERY-th of its polls fails,
 * by turns a 500 and an HTML page: `leadsync history --failed` and
 * `leadsync offers --failing` list it. Polled by the real CLI (`leadsync
 * check`), counted, never timed. */
static void dt_db_finish(void *c)
{
	PQfinish(c);
}

static int dt_cli(const char *db, char *const *args, char **out)
{
	const char *b = getenv("LEADSYNC_TEST_BIN");
	char *argv[12] = { (char *)(b && *b ? b : "build/test/leadsync") };
	char env[1024];
	const char *envp[] = { env, NULL };
	char *err = NULL;
	size_t i;
	int rc;

	snprintf(env, sizeof(env), "LEADSYNC_DB=%s", db);
	for (i = 0; args[i] && i < 10; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	rc = test_run(argv, envp, NULL, out, &err);
	test_defer_free(*out);
	test_defer_free(err);
	return rc;
}

static void dt_finish_cb(void *s)
{
	dt_finish(s);
}

static void dt_fclose(void *f)
{
	fclose(f);
}

static void dt_json_delete(void *j)
{
	cJSON_Delete(j);
}

TEST(demo_crm_flaky_offer_fails_now_and_then)
{
	char *ci = test_db_fresh("ls_demo_flaky");
	FILE *in = fopen("scripts/demo/network.jsonl", "r");
	struct import_stats ist;
	struct dt_srv s;
	PGconn *c = NULL;
	char err[1024], sql[256], *out;
	char *check[] = { "check", "11", "--variant", "processing", NULL };
	char *failed[] = { "history", "--failed", "--json", NULL };
	char *failing[] = { "offers", "--failing", "--json", NULL };
	int applied, i, fails = 0;
	cJSON *j;

	test_defer_free(ci);
	if (in)
		test_defer(dt_fclose, in);
	ASSERT(ci && in);
	ASSERT(store_connect(ci, &c, err, sizeof(err)) == 0);
	test_defer(dt_db_finish, c);
	if (store_migrate(c, &applied, err, sizeof(err)) < 0 ||
	    import_run(c, in, &ist, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "%s", err);
		return;
	}
	/* exactly one demo offer is the flaky one */
	ASSERT(test_sql_is((struct pg_conn *)c,
			   "SELECT string_agg(id::text, ',') FROM offers WHERE params ->> 'key' = '"
			   DEMO_CRM_FLAKY_KEY "'", "11"));
	if (dt_start(&s, DEMO_CRM_KEY, 0) < 0)
		return;
	test_defer(dt_finish_cb, &s);
	snprintf(sql, sizeof(sql),
		 "UPDATE offers SET params = jsonb_set(params, '{host}', '\"127.0.0.1:%d\"')", s.port);
	ASSERT(test_sql_exec((struct pg_conn *)c, sql));
	/* offer 10's key never fails; offer 11's every 4th request does */
	for (i = 1; i <= 2 * DEMO_CRM_FAIL_EVERY; i++) {
		int rc = dt_cli(ci, check, &out);

		if (rc != (i % DEMO_CRM_FAIL_EVERY ? 0 : 1)) {
			test__fail(__FILE__, __LINE__, "check %d: exit %d: %s", i, rc, out);
			return;
		}
		fails += rc;
	}
	ASSERT_EQ(fails, 2);
	ASSERT_EQ(dt_cli(ci, failed, &out), 0);
	j = cJSON_Parse(out);
	test_defer(dt_json_delete, j);
	ASSERT_EQ(cJSON_GetArraySize(j), 2);
	/* newest first: the HTML page, then the 500 */
	ASSERT_CONTAINS(out, "\"offer\":11,\"offer_name\":\"Slim Y\",\"variant\":\"processing\"");
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "outcome")),
		     "decode_error");
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "outcome")),
		     "http_error");
	ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "http_status")),
		  500);
	ASSERT(!strstr(out, DEMO_CRM_FLAKY_KEY));
	ASSERT_EQ(dt_cli(ci, failing, &out), 0);
	ASSERT_CONTAINS(out, "[{\"offer\":11,\"name\":\"Slim Y\"");
	ASSERT_CONTAINS(out, "\"last_outcome\":\"decode_error\"");
}
