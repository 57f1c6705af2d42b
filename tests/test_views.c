/* test_views: the operator's views (views.c) against a seeded real
 * PostgreSQL: each view, its filters, keyset paging, masking, the JSON
 * shape and the text table; then the same through the CLI (`offers`,
 * `history`, `postbacks`, `lead show`), usage errors included. */
#include "test.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "views.h"

/* Poll runs 1..5, postbacks 1..4 (ids in insertion order on a fresh
 * database). Secrets that must never come out: s3cret-value (offer 10's
 * declared secret), tok-12345 (a credential-looking param), k-acme-secret
 * (advertiser 1's api key). */
static const char vt_seed[] =
	"INSERT INTO advertisers (id, name, api_key) VALUES (1, 'Acme', 'k-acme-secret'),"
	" (2, 'Beta', 'k-beta');"
	"INSERT INTO offers (id, advertiser, name, rule, params, secret_params) VALUES"
	" (10, 1, 'Nutra X', 'acme_crm',"
	"  '{\"host\": \"crm.example\", \"key\": \"s3cret-value\", \"token\": \"tok-12345\"}', '{key}'),"
	" (11, 1, 'Slim Y', 'acme_crm', '{\"host\": \"crm.example\"}', '{}'),"
	" (12, 2, 'Old Z', NULL, '{}', '{}');"
	"INSERT INTO leads (id, offer, ext, status, reason, approved_at) VALUES"
	" (1001, 10, 'A-1', 2, NULL, NULL), (1002, 10, 'A-2', 3, NULL, NULL),"
	" (1003, 10, 'A-3', 6, NULL, now()), (1004, 10, 'A-4', 5, 2, NULL),"
	" (1005, 11, 'B-1', 2, NULL, NULL);"
	"INSERT INTO poll_runs (offer, variant, worker, started, finished, method, url, http_status,"
	" bytes, outcome, error, answer_head, leads_asked, leads_changed, notes) VALUES"
	" (10, 'processing', 'w1', '2026-11-20T10:00:00Z', '2026-11-20T10:00:00.250Z', 'GET',"
	"  'https://crm.example/orders?ids=A-1,A-2&key=s3cret-value', 200, 60, 'ok', NULL,"
	"  '[{\"id\": \"A-1\", \"status\": \"callback\"}]', 2, 1, 'unrecognised: ''frobbed'''),"
	" (10, 'processing', 'w1', '2026-11-20T11:00:00Z', '2026-11-20T11:00:01Z', 'GET',"
	"  'https://crm.example/orders?ids=A-1,A-2&key=s3cret-value', 500, 30, 'http_error',"
	"  'HTTP 500', '{\"error\": \"bad key s3cret-value\"}', 2, 0, NULL),"
	" (10, 'accepted', 'w2', '2026-11-20T12:00:00Z', '2026-11-20T12:00:00Z', 'GET',"
	"  'https://crm.example/orders?ids=A-3&token=tok-12345', 200, 10, 'rule_error',"
	"  'acme_crm.lua:14: attempt to index a nil value (field ''d'') near tok-12345',"
	"  '[]', 1, 0, NULL),"
	" (11, 'dates', 'w1', '2026-11-21T00:00:00Z', '2026-11-21T00:00:02Z', 'GET',"
	"  'https://crm.example/orders?from=2026-11-14&to=2026-11-20', 200, 2, 'ok', NULL, '[]', 1, 0,"
	"  NULL),"
	" (11, 'processing', 'w1', '2026-11-22T00:00:00Z', '2026-11-22T00:00:00Z', 'GET',"
	"  'https://crm.example/orders?ids=B-1', 200, 2, 'ok', NULL, '[]', 1, 1, NULL);"
	"UPDATE poll_schedule SET last_run = 2, fail_count = 0, last_ok = '2026-11-20T11:00:01Z'"
	" WHERE offer = 10 AND variant = 'processing';"
	"UPDATE poll_schedule SET last_run = 3, fail_count = 2,"
	" last_error = 'rule_error: acme_crm.lua:14: near s3cret-value'"
	" WHERE offer = 10 AND variant = 'accepted';"
	"UPDATE poll_schedule SET last_run = 5, lease_owner = 'host:1:abc',"
	" lease_until = now() + interval '1 hour' WHERE offer = 11 AND variant = 'processing';"
	"INSERT INTO postbacks_in (at, remote, method, path, query, body, advertiser, http_status,"
	" outcome, error, lead) VALUES"
	" ('2026-11-20T10:30:00Z', '10.0.0.1', 'GET', '/***/s2s',"
	"  'click_id=c1&request_id=r1&action=lead&status=hold', NULL, 1, 200, 'created', NULL, 1001),"
	" ('2026-11-20T10:31:00Z', '10.0.0.1', 'GET', '/***/s2s',"
	"  'click_id=c1&request_id=r1&status=bogus&api_key=k-acme-secret', NULL, 1, 400, 'invalid',"
	"  'unknown status ''bogus''', NULL),"
	" ('2026-11-20T10:32:00Z', '10.0.0.2', 'POST', '/***', NULL, '{\"status\": \"hold\"}', NULL, 403,"
	"  'invalid', 'unknown api key', NULL),"
	" ('2026-11-25T09:00:00Z', '10.0.0.3', 'POST', '/***/s2s', NULL,"
	"  'request_id=r9&status=approved&note=k-beta', 2, 200, 'updated', NULL, 1002);"
	"INSERT INTO lead_history (lead, at, source, source_id, before, after) VALUES"
	" (1001, '2026-11-20T09:00:00Z', 'import', NULL, '{}', '{\"status\": 2}'),"
	" (1001, '2026-11-20T10:00:00Z', 'poll', 1, '{\"comment\": \"\"}', '{\"comment\": \"callback\"}'),"
	" (1001, '2026-11-20T10:30:00Z', 'postback', 1, '{\"status\": 2}', '{\"status\": 3}'),"
	" (1002, '2026-11-25T09:00:00Z', 'postback', 4, '{\"status\": 3}', '{\"status\": 2}'),"
	" (1005, '2026-11-22T00:00:00Z', 'poll', 5, '{\"status\": 3}', '{\"status\": 2}');";

static PGconn *vt_db(const char *name, char **conninfo)
{
	PGconn *c = (PGconn *)test_db_migrated(name, conninfo);

	if (c && !test_sql_exec(c, vt_seed)) {
		test__fail(__FILE__, __LINE__, "seeding %s failed", name);
		PQfinish(c);
		return NULL;
	}
	return c;
}

static void vt_finish(void *c)
{
	PQfinish(c);
}

static void vt_buf(void *b)
{
	buf_release(b);
}

static void vt_json(void *j)
{
	cJSON_Delete(j);
}

/* The field key of each object of the array j, comma-joined ("5,4,3"). */
static const char *vt_keys(const cJSON *j, const char *key, char *out, size_t len)
{
	const cJSON *it;
	size_t n = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(it, j)
	{
		const cJSON *v = cJSON_GetObjectItem(it, key);
		char one[64];

		if (cJSON_IsNumber(v))
			snprintf(one, sizeof(one), "%lld", (long long)v->valuedouble);
		else
			snprintf(one, sizeof(one), "%s", cJSON_IsString(v) ? v->valuestring : "null");
		n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s", n ? "," : "", one);
	}
	return out;
}

/* Runs a list view as JSON into a parsed array (deferred); NULL after
 * recording a failure. */
static cJSON *vt_list(PGconn *c,
		      int (*fn)(PGconn *, const struct views_filter *, enum views_format,
				struct buf *, char *, size_t),
		      const struct views_filter *f, struct buf *out)
{
	char err[512];
	cJSON *j;

	buf_reset(out);
	if (fn(c, f, VIEWS_JSON, out, err, sizeof(err)) != 0) {
		test__fail(__FILE__, __LINE__, "view: %s", err);
		return NULL;
	}
	j = cJSON_Parse(out->p);
	if (!cJSON_IsArray(j)) {
		test__fail(__FILE__, __LINE__, "not a JSON array: %s", out->p);
		cJSON_Delete(j);
		return NULL;
	}
	test_defer(vt_json, j);
	return j;
}

#define VT_IDS(c, fn, f, out, key, want)                                            \
	do {                                                                        \
		char got_[256];                                                     \
		cJSON *j_ = vt_list(c, fn, f, out);                                 \
		if (!j_)                                                            \
			return;                                                     \
		ASSERT_STREQ(vt_keys(j_, key, got_, sizeof(got_)), want);           \
	} while (0)

static void vt_no_secrets(const char *s)
{
	if (strstr(s, "s3cret-value") || strstr(s, "tok-12345") || strstr(s, "k-acme-secret"))
		test__fail(__FILE__, __LINE__, "a secret in a view: %s", s);
}

TEST(views_polls_filter_page_and_mask)
{
	PGconn *c = vt_db("ls_views_polls", NULL);
	struct views_filter f = { 0 };
	struct buf out;
	char err[512];

	if (!c)
		return;
	test_defer(vt_finish, c);
	buf_init(&out, 0);
	test_defer(vt_buf, &out);
	VT_IDS(c, views_polls, &f, &out, "id", "5,4,3,2,1");
	vt_no_secrets(out.p);
	ASSERT_CONTAINS(out.p, "\"url\":\"https://crm.example/orders?ids=A-1,A-2&key=***\"");
	ASSERT_CONTAINS(out.p, "\"error\":\"acme_crm.lua:14: attempt to index a nil value (field 'd')"
			       " near ***\"");
	ASSERT_CONTAINS(out.p, "\"duration_ms\":250,");
	ASSERT_CONTAINS(out.p, "\"started\":\"2026-11-20T10:00:00Z\"");
	ASSERT(!strstr(out.p, "answer_head")); /* the whole run only */
	f.offer = 10;
	VT_IDS(c, views_polls, &f, &out, "id", "3,2,1");
	f.variant = "processing";
	VT_IDS(c, views_polls, &f, &out, "id", "2,1");
	f = (struct views_filter){ .failed = true };
	VT_IDS(c, views_polls, &f, &out, "id", "3,2");
	f = (struct views_filter){ .outcome = "http_error" };
	VT_IDS(c, views_polls, &f, &out, "id", "2");
	ASSERT_EQ(views_since_parse("2026-11-21T00:00:00Z", 0, &f.since), 0);
	f.outcome = NULL;
	VT_IDS(c, views_polls, &f, &out, "id", "5,4");
	/* keyset paging: each page starts below the last id of the one before */
	f = (struct views_filter){ .limit = 2 };
	VT_IDS(c, views_polls, &f, &out, "id", "5,4");
	f.before = 4;
	VT_IDS(c, views_polls, &f, &out, "id", "3,2");
	f.before = 2;
	VT_IDS(c, views_polls, &f, &out, "id", "1");
	f.before = 1;
	VT_IDS(c, views_polls, &f, &out, "id", "");
	/* wrong filters are named */
	f = (struct views_filter){ .variant = "weekly" };
	ASSERT_EQ(views_polls(c, &f, VIEWS_JSON, &out, err, sizeof(err)), VIEWS_EINVAL);
	ASSERT_CONTAINS(err, "variant 'weekly'");
	f = (struct views_filter){ .outcome = "nope" };
	ASSERT_EQ(views_polls(c, &f, VIEWS_JSON, &out, err, sizeof(err)), VIEWS_EINVAL);
	ASSERT_CONTAINS(err, "outcome 'nope'");
	f = (struct views_filter){ .outcome = "ok", .failed = true };
	ASSERT_EQ(views_polls(c, &f, VIEWS_JSON, &out, err, sizeof(err)), VIEWS_EINVAL);
}

TEST(views_polls_text_is_an_aligned_table)
{
	PGconn *c = vt_db("ls_views_polls_text", NULL);
	struct views_filter f = { .limit = 2 };
	struct buf out;
	char err[512];

	if (!c)
		return;
	test_defer(vt_finish, c);
	buf_init(&out, 0);
	test_defer(vt_buf, &out);
	ASSERT_EQ(views_polls(c, &f, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	ASSERT_STREQ(out.p,
		     "run  offer  variant     started               ms    http  outcome  asked  changed  error\n"
		     "5    11     processing  2026-11-22T00:00:00Z  0     200   ok       1      1        -\n"
		     "4    11     dates       2026-11-21T00:00:00Z  2000  200   ok       1      0        -\n"
		     "(the first 2; more with --before 4)\n");
	buf_reset(&out);
	f = (struct views_filter){ .offer = 99 };
	ASSERT_EQ(views_polls(c, &f, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	ASSERT_STREQ(out.p, "no poll runs\n");
}

TEST(views_poll_whole_run_with_the_leads_it_changed)
{
	PGconn *c = vt_db("ls_views_poll", NULL);
	struct buf out;
	char err[512];
	cJSON *j, *ch;

	if (!c)
		return;
	test_defer(vt_finish, c);
	buf_init(&out, 0);
	test_defer(vt_buf, &out);
	ASSERT_EQ(views_poll(c, 2, VIEWS_JSON, &out, err, sizeof(err)), 0);
	vt_no_secrets(out.p);
	ASSERT_CONTAINS(out.p, "\"answer_head\":\"{\\\"error\\\": \\\"bad key ***\\\"}\"");
	ASSERT_CONTAINS(out.p, "\"http_status\":500,");
	ASSERT_CONTAINS(out.p, "\"changed\":[]}");
	buf_reset(&out);
	ASSERT_EQ(views_poll(c, 1, VIEWS_JSON, &out, err, sizeof(err)), 0);
	j = cJSON_Parse(out.p);
	ASSERT(cJSON_IsObject(j));
	test_defer(vt_json, j);
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "rule")), "acme_crm");
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "notes")), "unrecognised: 'frobbed'");
	ch = cJSON_GetObjectItem(j, "changed");
	ASSERT_EQ(cJSON_GetArraySize(ch), 1);
	ASSERT_CONTAINS(out.p, "\"changed\":[{\"lead\":1001,\"at\":\"2026-11-20T10:00:00Z\","
			       "\"source\":\"poll\",\"source_id\":1,\"before\":{\"comment\": \"\"},"
			       "\"after\":{\"comment\": \"callback\"}}]}");
	buf_reset(&out);
	ASSERT_EQ(views_poll(c, 3, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	vt_no_secrets(out.p);
	ASSERT_CONTAINS(out.p, "poll run 3\n");
	ASSERT_CONTAINS(out.p, "\nurl                  https://crm.example/orders?ids=A-3&token=***\n");
	ASSERT_CONTAINS(out.p, "\nerror                acme_crm.lua:14: attempt to index");
	ASSERT_CONTAINS(out.p, "\nleads changed (0)\n");
	buf_reset(&out);
	ASSERT_EQ(views_poll(c, 1, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out.p, "leads changed (1)\n  lead 1001     2026-11-20T10:00:00Z  poll       "
			       "comment \"\" -> \"callback\"\n");
	ASSERT_EQ(views_poll(c, 99, VIEWS_JSON, &out, err, sizeof(err)), VIEWS_ENOTFOUND);
	ASSERT_STREQ(err, "poll run 99 not found");
}

TEST(views_offers_health_failing_and_paging)
{
	PGconn *c = vt_db("ls_views_offers", NULL);
	struct views_filter f = { 0 };
	struct buf out;
	char err[512];
	cJSON *j, *row;

	if (!c)
		return;
	test_defer(vt_finish, c);
	buf_init(&out, 0);
	test_defer(vt_buf, &out);
	/* offer 12 names no rule: not polled, not listed */
	VT_IDS(c, views_offers, &f, &out, "offer", "11,11,11,10,10,10");
	VT_IDS(c, views_offers, &f, &out, "variant",
	       "processing,accepted,dates,processing,accepted,dates");
	VT_IDS(c, views_offers, &f, &out, "leads_waiting", "1,0,1,2,1,3");
	VT_IDS(c, views_offers, &f, &out, "last_run", "5,null,null,2,3,null");
	VT_IDS(c, views_offers, &f, &out, "last_outcome", "ok,null,null,http_error,rule_error,null");
	VT_IDS(c, views_offers, &f, &out, "lease_owner", "host:1:abc,null,null,null,null,null");
	vt_no_secrets(out.p);
	f.failed = true;
	j = vt_list(c, views_offers, &f, &out);
	ASSERT(j);
	ASSERT_EQ(cJSON_GetArraySize(j), 1);
	row = cJSON_GetArrayItem(j, 0);
	ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(row, "offer")), 10);
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(row, "variant")), "accepted");
	ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(row, "consecutive_failures")), 2);
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(row, "last_error")),
		     "rule_error: acme_crm.lua:14: near ***");
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(row, "last_run_at")),
		     "2026-11-20T12:00:00Z");
	/* a page is offers, never half an offer */
	f = (struct views_filter){ .limit = 1 };
	VT_IDS(c, views_offers, &f, &out, "offer", "11,11,11");
	f.before = 11;
	VT_IDS(c, views_offers, &f, &out, "offer", "10,10,10");
	buf_reset(&out);
	ASSERT_EQ(views_offers(c, &f, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	vt_no_secrets(out.p);
	ASSERT_CONTAINS(out.p, "offer  rule      variant     last run  at                    outcome");
	ASSERT_CONTAINS(out.p, "(the first 1; more with --before 10)\n");
}

TEST(views_postbacks_filter_page_and_mask)
{
	PGconn *c = vt_db("ls_views_postbacks", NULL);
	struct views_filter f = { 0 };
	struct buf out;
	char err[512];

	if (!c)
		return;
	test_defer(vt_finish, c);
	buf_init(&out, 0);
	test_defer(vt_buf, &out);
	VT_IDS(c, views_postbacks, &f, &out, "id", "4,3,2,1");
	vt_no_secrets(out.p);
	ASSERT_CONTAINS(out.p, "\"query\":\"click_id=c1&request_id=r1&status=bogus&api_key=***\"");
	ASSERT(!strstr(out.p, "\"body\"")); /* the whole postback only */
	f.lead = 1001;
	VT_IDS(c, views_postbacks, &f, &out, "id", "1");
	f = (struct views_filter){ .advertiser = 1 };
	VT_IDS(c, views_postbacks, &f, &out, "id", "2,1");
	f = (struct views_filter){ .errors = true };
	VT_IDS(c, views_postbacks, &f, &out, "http_status", "403,400");
	ASSERT_EQ(views_since_parse("2026-11-20T10:31:00Z", 0, &f.since), 0);
	f.errors = false;
	VT_IDS(c, views_postbacks, &f, &out, "id", "4,3,2");
	f = (struct views_filter){ .before = 3, .limit = 1 };
	VT_IDS(c, views_postbacks, &f, &out, "id", "2");
	/* one whole: its body, masked with its advertiser's key, and its change */
	buf_reset(&out);
	ASSERT_EQ(views_postback(c, 4, VIEWS_JSON, &out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out.p, "\"body\":\"request_id=r9&status=approved&note=***\"");
	ASSERT_CONTAINS(out.p, "\"advertiser_name\":\"Beta\"");
	ASSERT_CONTAINS(out.p, "\"changed\":[{\"lead\":1002,\"at\":\"2026-11-25T09:00:00Z\","
			       "\"source\":\"postback\",\"source_id\":4,");
	buf_reset(&out);
	ASSERT_EQ(views_postback(c, 3, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out.p, "postback 3\n");
	ASSERT_CONTAINS(out.p, "\nerror                unknown api key\n");
	ASSERT_CONTAINS(out.p, "\nleads changed (0)\n");
	buf_reset(&out);
	f = (struct views_filter){ 0 };
	ASSERT_EQ(views_postbacks(c, &f, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	vt_no_secrets(out.p);
	/* long cells are cut */
	ASSERT_CONTAINS(out.p, "\n2   2026-11-20T10:31:00Z  1    400   invalid  -     "
			       "GET /***/s2s?click_id=c1&request_id=r1&status=bogus&api_k...  "
			       "unknown status 'bogus'\n");
	ASSERT_EQ(views_postback(c, 99, VIEWS_JSON, &out, err, sizeof(err)), VIEWS_ENOTFOUND);
	ASSERT_STREQ(err, "postback 99 not found");
}

TEST(views_since_reads_times_and_ages)
{
	int64_t t = 0;

	ASSERT_EQ(views_since_parse("2026-11-20T10:00:00Z", 0, &t), 0);
	ASSERT_EQ(t, 1795168800);
	ASSERT_EQ(views_since_parse("30m", 10000, &t), 0);
	ASSERT_EQ(t, 10000 - 1800);
	ASSERT_EQ(views_since_parse("2h", 10000, &t), 0);
	ASSERT_EQ(t, 10000 - 7200);
	ASSERT_EQ(views_since_parse("7d", 1000000, &t), 0);
	ASSERT_EQ(t, 1000000 - 7 * 86400);
	ASSERT_EQ(views_since_parse("yesterday", 0, &t), -1);
	ASSERT_EQ(views_since_parse("5", 0, &t), -1);
	ASSERT_EQ(views_since_parse("5w", 0, &t), -1);
	ASSERT_EQ(views_since_parse("", 0, &t), -1);
}

/* ------------------------------------------------------------ the CLI */

static const char *vt_bin(void)
{
	const char *b = getenv("LEADSYNC_TEST_BIN");

	return b && *b ? b : "build/test/leadsync";
}

/* Runs the CLI on db with args; the exit code, output in *out and *err
 * (deferred frees). */
static int vt_cli(const char *db, const char *const *args, char **out, char **err)
{
	char *argv[16] = { (char *)vt_bin() };
	char env[1024];
	const char *envp[] = { env, NULL };
	size_t i;
	int rc;

	snprintf(env, sizeof(env), "LEADSYNC_DB=%s", db);
	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	rc = test_run(argv, envp, NULL, out, err);
	test_defer_free(*out);
	test_defer_free(*err);
	return rc;
}

TEST(views_cli_lists_whole_records_and_json)
{
	char *db = NULL, *out, *err;
	PGconn *c = vt_db("ls_views_cli", &db);
	cJSON *j;

	if (!c)
		return;
	test_defer(vt_finish, c);
	test_defer_free(db);
	{
		const char *a[] = { "history", "--failed", "--json", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		j = cJSON_Parse(out);
		ASSERT(cJSON_IsArray(j));
		test_defer(vt_json, j);
		ASSERT_EQ(cJSON_GetArraySize(j), 2);
		ASSERT(out[strlen(out) - 1] == '\n');
		vt_no_secrets(out);
	}
	{
		const char *a[] = { "history", "--offer=10", "--variant", "processing", "--limit", "1",
				    NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT_CONTAINS(out, "\n2    10     processing  2026-11-20T11:00:00Z  1000  500   "
				     "http_error  2      0        HTTP 500\n");
		ASSERT_CONTAINS(out, "more with --before 2");
	}
	{
		const char *a[] = { "history", "2", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT_CONTAINS(out, "poll run 2\n");
		ASSERT_CONTAINS(out, "key=***");
		vt_no_secrets(out);
	}
	{
		const char *a[] = { "history", "2", "--json", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		j = cJSON_Parse(out);
		ASSERT(cJSON_IsObject(j));
		test_defer(vt_json, j);
		ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "id")), 2);
	}
	{
		const char *a[] = { "offers", "--failing", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT_CONTAINS(out, "\n10     acme_crm  accepted  3         2026-11-20T12:00:00Z  "
				     "rule_error");
		ASSERT_CONTAINS(out, "rule_error: acme_crm.lua:14: near ***\n");
	}
	{
		const char *a[] = { "postbacks", "--lead", "1001", "--json", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT(strncmp(out, "[{\"id\":1,", 9) == 0);
	}
	{
		const char *a[] = { "postbacks", "--errors", "--since", "2026-11-20T10:32:00Z", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT_CONTAINS(out, "\n3   2026-11-20T10:32:00Z  -    403   invalid");
		ASSERT(!strstr(out, "\n2 "));
	}
	{
		const char *a[] = { "postbacks", "99", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 1);
		ASSERT_CONTAINS(err, "postback 99 not found");
	}
	/* lead show names and links each change's source */
	{
		const char *a[] = { "lead", "show", "1001", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT_CONTAINS(out, "  2026-11-20T09:00:00Z  import                   status 2\n");
		ASSERT_CONTAINS(out, "  2026-11-20T10:00:00Z  poll run 1               comment");
		ASSERT_CONTAINS(out, "  2026-11-20T10:30:00Z  postback 1               status 2 -> 3\n");
		ASSERT_CONTAINS(out, "leadsync history RUN");
	}
	{
		const char *a[] = { "lead", "show", "1001", "--json", NULL };

		ASSERT_EQ(vt_cli(db, a, &out, &err), 0);
		ASSERT_CONTAINS(out, "{\"at\":\"2026-11-20T10:00:00Z\",\"source\":\"poll\","
				     "\"source_id\":1,\"before\":{\"comment\": \"\"},");
	}
}

TEST(views_cli_usage_errors_exit_2_and_name_the_argument)
{
	static const char *const cases[][6] = {
		{ "history", "--variant", "weekly" },
		{ "history", "--outcome", "ok", "--failed" },
		{ "history", "--outcome", "nope" },
		{ "history", "2", "--offer", "10" },
		{ "history", "--since", "yesterday" },
		{ "postbacks", "--limit", "0" },
		{ "postbacks", "--limit", "1001" },
		{ "postbacks", "--lead" },
		{ "postbacks", "--failed" },
		{ "offers", "7" },
		{ "history", "1", "2" },
		{ "postbacks", "--errors=yes" },
	};
	static const char *const why[] = {
		"--variant 'weekly'", "--outcome and --failed", "outcome 'nope'", "--offer lists",
		"--since 'yesterday'", "--limit '0'", "--limit '1001'", "--lead needs a value",
		"unknown option '--failed'", "unexpected argument '7'", "one ID at most",
		"--errors takes no value",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out, *err;
		/* usage errors come before the database is opened */
		int rc = vt_cli("host=/nonexistent", cases[i], &out, &err);

		if (rc != 2 || !strstr(err, why[i]) || !strstr(err, "usage: leadsync")) {
			test__fail(__FILE__, __LINE__, "%s %s: exit %d: %s", cases[i][0], cases[i][1], rc,
				   err);
			return;
		}
	}
}
