/* test_api: the admin HTTP API (api.c) on an in-process daemon (its loop
 * on a thread of its own) against a seeded real PostgreSQL, spoken to over
 * loopback: the token (401, 403), each route's JSON compared with the
 * CLI's --json for the same view, keyset paging, 400 on a bad filter, 404
 * on unknown ids, the check route making a poll happen (its poll_runs row),
 * and the hourly outcomes (views_poll_hours, CLI-free). */
#define _GNU_SOURCE
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <uv.h>

#include "buf.h"
#include "daemon.h"
#include "mock_crm.h"
#include "views.h"

#define AT_TOKEN "tok-admin-0123456789"

/* Poll runs 1..5, postbacks 1..3, leads 1001..1003 on offers 10 and 11
 * (rule at_crm); offer 12 names no rule. Every pair is due only tomorrow,
 * so nothing is polled unless a test asks. */
static const char at_seed[] =
	"INSERT INTO advertisers (id, name, api_key) VALUES (1, 'Acme', 'k-acme-secret');"
	"INSERT INTO offers (id, advertiser, name, rule, params, secret_params) VALUES"
	" (10, 1, 'Nutra X', 'at_crm', '{\"host\": \"127.0.0.1:1\", \"key\": \"s3cret-value\"}',"
	"  '{key}'),"
	" (11, 1, 'Slim Y', 'at_crm', '{\"host\": \"127.0.0.1:1\"}', '{}'),"
	" (12, 1, 'Old Z', NULL, '{}', '{}');"
	"INSERT INTO leads (id, offer, ext, status) VALUES (1001, 10, 'A-1', 2), (1002, 10, 'A-2', 3),"
	" (1003, 11, 'B-1', 2);"
	"INSERT INTO poll_runs (offer, variant, worker, started, finished, method, url, http_status,"
	" bytes, outcome, error, answer_head, leads_asked, leads_changed) VALUES"
	" (10, 'processing', 'w1', '2026-11-20T10:00:00Z', '2026-11-20T10:00:01Z', 'GET',"
	"  'http://crm/o?key=s3cret-value', 200, 60, 'ok', NULL, '[]', 2, 1),"
	" (10, 'processing', 'w1', '2026-11-20T11:00:00Z', '2026-11-20T11:00:01Z', 'GET',"
	"  'http://crm/o?key=s3cret-value', 500, 30, 'http_error', 'HTTP 500', '{}', 2, 0),"
	" (10, 'accepted', 'w2', '2026-11-20T12:00:00Z', '2026-11-20T12:00:00Z', 'GET',"
	"  'http://crm/o', 200, 10, 'rule_error', 'at_crm.lua:14: attempt to index a nil value',"
	"  '[]', 1, 0),"
	" (11, 'dates', 'w1', now() - interval '1 hour', now() - interval '1 hour', 'GET',"
	"  'http://crm/o', 200, 2, 'ok', NULL, '[]', 1, 0),"
	" (11, 'processing', 'w1', now(), now(), 'GET', 'http://crm/o', 200, 2, 'ok', NULL, '[]', 1, 1);"
	"UPDATE poll_schedule SET next_due = now() + interval '1 day';"
	"UPDATE poll_schedule SET last_run = 3, fail_count = 2, last_error = 'rule_error: boom'"
	" WHERE offer = 10 AND variant = 'accepted';"
	"INSERT INTO postbacks_in (at, remote, method, path, query, body, advertiser, http_status,"
	" outcome, error, lead) VALUES"
	" ('2026-11-20T10:30:00Z', '10.0.0.1', 'GET', '/***/s2s', 'request_id=r1&status=hold', NULL,"
	"  1, 200, 'created', NULL, 1001),"
	" ('2026-11-20T10:31:00Z', '10.0.0.1', 'GET', '/***/s2s', 'status=bogus', NULL, 1, 400,"
	"  'invalid', 'unknown status ''bogus''', NULL),"
	" ('2026-11-25T09:00:00Z', '10.0.0.3', 'POST', '/***/s2s', NULL, 'status=approved', 1, 200,"
	"  'updated', NULL, 1002);"
	"INSERT INTO lead_history (lead, at, source, source_id, before, after) VALUES"
	" (1001, '2026-11-20T09:00:00Z', 'import', NULL, '{}', '{\"status\": 2}'),"
	" (1001, '2026-11-20T10:00:00Z', 'poll', 1, '{\"comment\": \"\"}', '{\"comment\": \"cb\"}'),"
	" (1001, '2026-11-20T10:30:00Z', 'postback', 1, '{\"status\": 2}', '{\"status\": 3}');";

/* The tests' rule: processing only, ids as a list; the answer read as words. */
static const char at_rule[] =
	"return {\n"
	"  processing = { url = 'http://{host}/orders?ids={idel}', batch = 10 },\n"
	"  process = function(data)\n"
	"    for _, d in ipairs(data) do lead.setstatus(e2i[d.id], d.status) end\n"
	"  end,\n"
	"}\n";

/* ------------------------------------------------------------ fixture */

/* The last answer of at_http(). */
struct at_answer {
	int status;
	char *head; /* status line and headers */
	char *body;
};

/* On the heap: the daemon's thread uses it until at_close(), which runs
 * after the test function has returned. */
struct at_env {
	struct at_answer a;
	PGconn *c;
	char *ci;
	char rules[64];
	uv_loop_t loop;
	bool loop_open;
	uv_async_t stop;
	pthread_t thread;
	bool running;
	struct daemon *d;
	int port;
};

static void *at_loop_main(void *arg)
{
	struct at_env *e = arg;

	uv_run(&e->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void at_stop_cb(uv_async_t *a)
{
	struct at_env *e = a->data;

	daemon_stop(e->d, NULL, NULL);
	uv_close((uv_handle_t *)a, NULL);
}

static void at_close(void *arg)
{
	struct at_env *e = arg;
	char path[128];

	if (e->running) {
		uv_async_send(&e->stop);
		pthread_join(e->thread, NULL);
		e->running = false;
	}
	if (e->loop_open) {
		if (uv_loop_close(&e->loop) != 0)
			test__fail(__FILE__, __LINE__, "the daemon's loop closed with handles open");
		e->loop_open = false;
	}
	if (e->rules[0]) {
		snprintf(path, sizeof(path), "%s/at_crm.lua", e->rules);
		unlink(path);
		rmdir(e->rules);
		e->rules[0] = '\0';
	}
	PQfinish(e->c);
	free(e->ci);
	free(e->a.head);
	free(e->a.body);
	free(e);
}

/* A fresh seeded database named name, the rules folder, and the daemon
 * (poller included) with admin token `token` (NULL: none), its loop
 * running on a thread. The CRM at crm_port (0: none) takes offer 10. */
static struct at_env *at_open(const char *name, const char *token, int crm_port)
{
	struct at_env *e = calloc(1, sizeof(*e));
	struct daemon_config cfg = { 0 };
	struct poller_config poc = { 0 };
	char err[1024], path[128];
	FILE *f;

	if (!e)
		return NULL;
	test_defer(at_close, e);
	e->c = (PGconn *)test_db_migrated(name, &e->ci);
	if (!e->c || !test_sql_exec((struct pg_conn *)e->c, at_seed))
		return NULL;
	if (crm_port) {
		char sql[256];

		snprintf(sql, sizeof(sql),
			 "UPDATE offers SET params = '{\"host\": \"127.0.0.1:%d\"}' WHERE id = 10",
			 crm_port);
		if (!test_sql_exec((struct pg_conn *)e->c, sql))
			return NULL;
	}
	snprintf(e->rules, sizeof(e->rules), "/tmp/leadsync-atrules-XXXXXX");
	if (!mkdtemp(e->rules)) {
		e->rules[0] = '\0';
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/at_crm.lua", e->rules);
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(at_rule, f);
	fclose(f);
	if (uv_loop_init(&e->loop) < 0)
		return NULL;
	e->loop_open = true;
	poc.rules_dir = e->rules;
	cfg.db = e->ci;
	cfg.listen = "127.0.0.1:0";
	cfg.admin_token = token;
	cfg.poller = &poc;
	if (daemon_start(&e->loop, &cfg, &e->d, err, sizeof(err)) < 0) {
		printf("  daemon_start: %s\n", err);
		uv_run(&e->loop, UV_RUN_DEFAULT);
		return NULL;
	}
	e->port = daemon_port(e->d);
	uv_async_init(&e->loop, &e->stop, at_stop_cb);
	e->stop.data = e;
	if (pthread_create(&e->thread, NULL, at_loop_main, e) != 0) {
		uv_close((uv_handle_t *)&e->stop, NULL);
		daemon_stop(e->d, NULL, NULL);
		uv_run(&e->loop, UV_RUN_DEFAULT);
		return NULL;
	}
	e->running = true;
	return e;
}

/* ---------------------------------------------------------------- HTTP */

/* method path, with "Authorization: auth" unless auth is NULL, into
 * e->a. One request, Connection: close;
 * waits at most 60 s, only so that a hung daemon does not hang the run. */
static bool at_http(struct at_env *e, const char *method, const char *path, const char *auth)
{
	struct at_answer *a = &e->a;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 60 };
	struct buf req, in;
	char chunk[4096], *sep;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n;
	bool ok = false;

	free(a->head);
	free(a->body);
	memset(a, 0, sizeof(*a));
	buf_init(&req, 0);
	buf_init(&in, 64 << 20);
	if (fd < 0)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	sa.sin_port = htons((uint16_t)e->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	if (buf_addf(&req, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n", method, path) < 0 ||
	    (auth && buf_addf(&req, "Authorization: %s\r\n", auth) < 0) ||
	    (strcmp(method, "POST") == 0 && buf_adds(&req, "Content-Length: 0\r\n") < 0) ||
	    buf_adds(&req, "\r\n") < 0)
		goto out;
	if (write(fd, req.p, req.len) != (ssize_t)req.len)
		goto out;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		if (buf_add(&in, chunk, (size_t)n) < 0)
			goto out;
	if (n < 0 || !in.p)
		goto out;
	sep = strstr(in.p, "\r\n\r\n");
	if (!sep || sscanf(in.p, "HTTP/1.1 %d", &a->status) != 1)
		goto out;
	a->head = strndup(in.p, (size_t)(sep - in.p) + 2);
	a->body = strdup(sep + 4);
	ok = a->head && a->body;
out:
	if (fd >= 0)
		close(fd);
	buf_release(&req);
	buf_release(&in);
	if (!ok)
		printf("  %s %s: no answer\n", method, path);
	return ok;
}

static bool at_get(struct at_env *e, const char *path)
{
	return at_http(e, "GET", path, "Bearer " AT_TOKEN);
}

/* ----------------------------------------------------------------- CLI */

static const char *at_bin(void)
{
	const char *b = getenv("LEADSYNC_TEST_BIN");

	return b && *b ? b : "build/test/leadsync";
}

/* The CLI's stdout for args on e's database (deferred free); NULL when it
 * did not exit 0. */
static char *at_cli(struct at_env *e, const char *const *args)
{
	char *argv[16] = { (char *)at_bin() };
	char env[1024], *out = NULL, *err = NULL;
	const char *envp[] = { env, NULL };
	size_t i;
	int rc;

	snprintf(env, sizeof(env), "LEADSYNC_DB=%s", e->ci);
	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	rc = test_run(argv, envp, NULL, &out, &err);
	test_defer_free(out);
	test_defer_free(err);
	if (rc != 0) {
		printf("  %s: exit %d: %s\n", args[0], rc, err ? err : "");
		return NULL;
	}
	return out;
}

/* The ids (field key) of a JSON array body, comma-joined. */
static const char *at_keys(const char *body, const char *key, char *out, size_t len)
{
	cJSON *j = cJSON_Parse(body), *it;
	size_t n = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(it, j)
	{
		const cJSON *v = cJSON_GetObjectItem(it, key);

		n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%lld", n ? "," : "",
				      cJSON_IsNumber(v) ? (long long)v->valuedouble : -1LL);
	}
	cJSON_Delete(j);
	return out;
}

/* --------------------------------------------------------------- tests */

/* The compare behind the token (buf_ct_equal via listener_req_bearer_is):
 * exact bytes and length, whichever side is longer. */
TEST(api_token_compare_is_exact)
{
	ASSERT(buf_ct_equal("abc", 3, "abc", 3));
	ASSERT(!buf_ct_equal("abc", 3, "abd", 3));
	ASSERT(!buf_ct_equal("abc", 3, "abcabc", 6)); /* the shorter repeats: still unequal */
	ASSERT(!buf_ct_equal("abcabc", 6, "abc", 3));
	ASSERT(!buf_ct_equal("", 0, "abc", 3));
	ASSERT(!buf_ct_equal("abc", 3, "", 0));
	ASSERT(!buf_ct_equal("xbc", 3, "abc", 3));
}

TEST(api_refuses_a_missing_or_wrong_token)
{
	struct at_env *e;
	struct at_answer *a;

	e = at_open("ls_api_auth", AT_TOKEN, 0);
	ASSERT(e);
	a = &e->a;
	ASSERT(at_http(e, "GET", "/admin/api/offers", NULL));
	ASSERT_EQ(a->status, 401);
	ASSERT_CONTAINS(a->head, "\r\nWWW-Authenticate: Bearer");
	ASSERT_CONTAINS(a->body, "\"ok\":false");
	ASSERT_CONTAINS(a->body, "bearer token");
	ASSERT(!strstr(a->body, AT_TOKEN));
	ASSERT(at_http(e, "GET", "/admin/api/polls", "Bearer tok-admin-012345678X"));
	ASSERT_EQ(a->status, 401);
	ASSERT(at_http(e, "GET", "/admin/api/polls", "Bearer tok-admin")); /* a prefix */
	ASSERT_EQ(a->status, 401);
	ASSERT(at_http(e, "GET", "/admin/api/polls", "Basic " AT_TOKEN));
	ASSERT_EQ(a->status, 401);
	ASSERT(at_http(e, "POST", "/admin/api/offers/10/check?variant=processing",
		       "Bearer wrong"));
	ASSERT_EQ(a->status, 401);
	ASSERT(test_sql_is((struct pg_conn *)e->c,
			   "SELECT count(*) FROM poll_schedule WHERE next_due <= now()", "0"));
	ASSERT(at_http(e, "GET", "/admin/api/offers", "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 200);
	ASSERT_CONTAINS(a->head, "Content-Type: application/json");
}

TEST(api_is_closed_when_the_token_is_unset)
{
	struct at_env *e;
	struct at_answer *a;

	e = at_open("ls_api_closed", NULL, 0);
	ASSERT(e);
	a = &e->a;
	ASSERT(at_http(e, "GET", "/admin/api/offers", "Bearer anything"));
	ASSERT_EQ(a->status, 403);
	ASSERT_CONTAINS(a->body, "closed");
	ASSERT_CONTAINS(a->body, "LEADSYNC_ADMIN_TOKEN");
	ASSERT(at_http(e, "GET", "/admin/api/leads/1001", NULL));
	ASSERT_EQ(a->status, 403);
	ASSERT(at_http(e, "GET", "/admin/api/leads/1001", "Bearer "));
	ASSERT_EQ(a->status, 403);
}

/* Every GET route answers what the CLI prints with --json (the views end
 * their JSON without a newline; the CLI adds one; lead show has its own). */
TEST(api_routes_answer_the_clis_json)
{
	static const struct {
		const char *path;
		const char *args[10];
		bool newline; /* the CLI adds one */
	} cases[] = {
		{ "/admin/api/offers", { "offers", "--json" }, true },
		{ "/admin/api/offers?failing=1", { "offers", "--failing", "--json" }, true },
		{ "/admin/api/offers?offer=11", { "offers", "--offer", "11", "--json" }, true },
		{ "/admin/api/polls", { "history", "--json" }, true },
		{ "/admin/api/polls?offer=10&variant=processing&limit=1",
		  { "history", "--offer=10", "--variant", "processing", "--limit", "1", "--json" },
		  true },
		{ "/admin/api/polls?failed=1", { "history", "--failed", "--json" }, true },
		{ "/admin/api/polls?outcome=rule_error", { "history", "--outcome", "rule_error", "--json" },
		  true },
		{ "/admin/api/polls?since=2026-11-20T11:00:00Z",
		  { "history", "--since", "2026-11-20T11:00:00Z", "--json" }, true },
		{ "/admin/api/polls/1", { "history", "1", "--json" }, true },
		{ "/admin/api/postbacks", { "postbacks", "--json" }, true },
		{ "/admin/api/postbacks?errors=true", { "postbacks", "--errors", "--json" }, true },
		{ "/admin/api/postbacks?advertiser=1&lead=1002",
		  { "postbacks", "--advertiser", "1", "--lead", "1002", "--json" }, true },
		{ "/admin/api/postbacks/1", { "postbacks", "1", "--json" }, true },
		{ "/admin/api/leads/1001", { "lead", "show", "1001", "--json" }, false },
	};
	struct at_env *e;
	struct at_answer *a;
	size_t i;

	e = at_open("ls_api_routes", AT_TOKEN, 0);
	ASSERT(e);
	a = &e->a;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *cli = at_cli(e, cases[i].args);
		struct buf want;
		bool same;

		ASSERT(cli);
		ASSERT(at_get(e, cases[i].path));
		if (a->status != 200)
			printf("  %s: %d %s\n", cases[i].path, a->status, a->body);
		ASSERT_EQ(a->status, 200);
		ASSERT_CONTAINS(a->head, "Content-Type: application/json");
		buf_init(&want, 0);
		same = buf_adds(&want, a->body) == 0 &&
		       (!cases[i].newline || buf_addc(&want, '\n') == 0) && strcmp(want.p, cli) == 0;
		if (!same)
			printf("  %s:\n  api %s\n  cli %s", cases[i].path, want.p ? want.p : "", cli);
		buf_release(&want);
		ASSERT(same);
		ASSERT(!strstr(a->body, "s3cret-value"));
		ASSERT(!strstr(a->body, "k-acme-secret"));
	}
	ASSERT(at_get(e, "/admin/api/polls/1"));
	ASSERT_CONTAINS(a->body, "\"changed\":[{\"lead\":1001,");
	ASSERT(at_get(e, "/admin/api/leads/1001"));
	ASSERT_CONTAINS(a->body, "\"history\":[");
}

TEST(api_lists_page_by_keyset)
{
	struct at_env *e;
	struct at_answer *a;
	char keys[128];

	e = at_open("ls_api_paging", AT_TOKEN, 0);
	ASSERT(e);
	a = &e->a;
	ASSERT(at_get(e, "/admin/api/polls?limit=2"));
	ASSERT_EQ(a->status, 200);
	ASSERT_STREQ(at_keys(a->body, "id", keys, sizeof(keys)), "5,4");
	ASSERT(at_get(e, "/admin/api/polls?limit=2&before=4"));
	ASSERT_STREQ(at_keys(a->body, "id", keys, sizeof(keys)), "3,2");
	ASSERT(at_get(e, "/admin/api/polls?limit=2&before=2"));
	ASSERT_STREQ(at_keys(a->body, "id", keys, sizeof(keys)), "1");
	ASSERT(at_get(e, "/admin/api/polls?before=1"));
	ASSERT_STREQ(a->body, "[]");
	ASSERT(at_get(e, "/admin/api/postbacks?limit=1&before=3"));
	ASSERT_STREQ(at_keys(a->body, "id", keys, sizeof(keys)), "2");
	ASSERT(at_get(e, "/admin/api/offers?limit=1"));
	ASSERT_STREQ(at_keys(a->body, "offer", keys, sizeof(keys)), "11,11,11");
	ASSERT(at_get(e, "/admin/api/offers?limit=1&before=11"));
	ASSERT_STREQ(at_keys(a->body, "offer", keys, sizeof(keys)), "10,10,10");
}

TEST(api_bad_parameters_are_400_naming_them_and_unknown_ids_404)
{
	static const struct {
		const char *path;
		int status;
		const char *says;
	} cases[] = {
		{ "/admin/api/polls?variant=sideways", 400, "variant 'sideways'" },
		{ "/admin/api/polls?outcome=meh", 400, "outcome 'meh'" },
		{ "/admin/api/polls?failed=maybe", 400, "failed 'maybe'" },
		{ "/admin/api/polls?failed=1&outcome=ok", 400, "outcome and failed" },
		{ "/admin/api/polls?limit=0", 400, "limit '0'" },
		{ "/admin/api/polls?limit=1001", 400, "limit '1001'" },
		{ "/admin/api/polls?before=x", 400, "before 'x'" },
		{ "/admin/api/polls?since=yesterday", 400, "since 'yesterday'" },
		{ "/admin/api/polls?frob=1", 400, "unknown parameter 'frob'" },
		{ "/admin/api/offers?variant=dates", 400, "unknown parameter 'variant'" },
		{ "/admin/api/postbacks?advertiser=-1", 400, "advertiser '-1'" },
		{ "/admin/api/polls/abc", 400, "run 'abc' is not an id" },
		{ "/admin/api/polls/999", 404, "poll run 999 not found" },
		{ "/admin/api/postbacks/999", 404, "postback 999 not found" },
		{ "/admin/api/leads/99", 404, "lead 99 not found" },
		{ "/admin/api/nothing", 404, "" },
	};
	struct at_env *e;
	struct at_answer *a;
	size_t i;

	e = at_open("ls_api_errors", AT_TOKEN, 0);
	ASSERT(e);
	a = &e->a;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ASSERT(at_get(e, cases[i].path));
		if (a->status != cases[i].status)
			printf("  %s: %d %s\n", cases[i].path, a->status, a->body);
		ASSERT_EQ(a->status, cases[i].status);
		ASSERT_CONTAINS(a->body, "\"ok\":false");
		ASSERT_CONTAINS(a->body, cases[i].says);
	}
}

/* The check route makes the pair due now and the poller polls it: its
 * poll_runs row appears. Everything else was due only tomorrow. */
TEST(api_check_polls_the_pair_now)
{
	struct mock_route routes[] = { { .path = "/orders", .kind = MOCK_FIXED, .body = "[]" } };
	struct mock_crm *m = NULL;
	struct at_env *e;
	struct at_answer *a;
	char *n = NULL;
	int i;

	ASSERT_EQ(mock_crm_start(&m, routes, 1), 0);
	test_defer((test_cleanup_fn)mock_crm_stop, m);
	e = at_open("ls_api_check", AT_TOKEN, mock_crm_port(m));
	ASSERT(e);
	a = &e->a;
	ASSERT(at_http(e, "POST", "/admin/api/offers/10/check?variant=dates",
		       "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 202); /* queued; the rule declares no dates: no row */
	ASSERT(at_http(e, "POST", "/admin/api/offers/99/check?variant=processing",
		       "Bearer " AT_TOKEN));
	if (a->status != 404)
		printf("  %s\n", a->body);
	ASSERT_EQ(a->status, 404);
	ASSERT_CONTAINS(a->body, "offer 99 not found");
	ASSERT(at_http(e, "POST", "/admin/api/offers/12/check?variant=processing",
		       "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 404);
	ASSERT_CONTAINS(a->body, "names no rule");
	ASSERT(at_http(e, "POST", "/admin/api/offers/10/check?variant=often", "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 400);
	ASSERT_CONTAINS(a->body, "variant 'often'");
	ASSERT(at_http(e, "POST", "/admin/api/offers/10/check", "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 400);
	ASSERT_CONTAINS(a->body, "variant is missing");
	ASSERT(at_get(e, "/admin/api/offers/10/check?variant=processing"));
	ASSERT_EQ(a->status, 405);
	/* a pair another worker polls now, and a disabled offer: 409 */
	ASSERT(test_sql_exec((struct pg_conn *)e->c,
			     "UPDATE poll_schedule SET lease_owner = 'host:1:other',"
			     " lease_until = now() + interval '1 hour'"
			     " WHERE offer = 11 AND variant = 'accepted'"));
	ASSERT(at_http(e, "POST", "/admin/api/offers/11/check?variant=accepted",
		       "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 409);
	ASSERT_CONTAINS(a->body, "offer 11 accepted is being polled now by 'host:1:other'");
	ASSERT(test_sql_exec((struct pg_conn *)e->c, "UPDATE offers SET enabled = false WHERE id = 11"));
	ASSERT(at_http(e, "POST", "/admin/api/offers/11/check?variant=processing",
		       "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 409);
	ASSERT_CONTAINS(a->body, "offer 11 is disabled");
	ASSERT(test_sql_is((struct pg_conn *)e->c,
			   "SELECT count(*) FROM poll_schedule WHERE offer = 11 AND next_due <= now()",
			   "0"));
	ASSERT(test_sql_is((struct pg_conn *)e->c,
			   "SELECT count(*) FROM poll_runs WHERE offer = 10 AND started > now() - "
			   "interval '1 day'",
			   "0"));

	ASSERT(at_http(e, "POST", "/admin/api/offers/10/check?variant=processing",
		       "Bearer " AT_TOKEN));
	ASSERT_EQ(a->status, 202);
	ASSERT_STREQ(a->body, "{\"queued\":true,\"offer\":10,\"variant\":\"processing\"}");
	/* bounded only so that a broken poller does not hang the run */
	for (i = 0; i < 1200; i++) {
		free(n);
		n = test_sql_value((struct pg_conn *)e->c,
				   "SELECT count(*) FROM poll_runs WHERE offer = 10"
				   " AND variant = 'processing' AND started > now() - interval '1 day'");
		if (n && strcmp(n, "0") != 0)
			break;
		usleep(50 * 1000);
	}
	test_defer(free, n);
	ASSERT_STREQ(n, "1");
	ASSERT(test_sql_is((struct pg_conn *)e->c,
			   "SELECT outcome || ' ' || leads_asked FROM poll_runs WHERE offer = 10"
			   " AND started > now() - interval '1 day'",
			   "ok 2"));
	/* the pair is due again only after its interval: the release that sets
	 * it commits after the poll run's row, so wait for it (bounded only so
	 * that a release that never comes does not hang the run) */
	for (i = 0; i < 1200; i++) {
		char *due = test_sql_value((struct pg_conn *)e->c,
					   "SELECT next_due > now() FROM poll_schedule"
					   " WHERE offer = 10 AND variant = 'processing'");
		bool later = due && strcmp(due, "t") == 0;

		free(due);
		if (later)
			break;
		usleep(50 * 1000);
	}
	ASSERT(test_sql_is((struct pg_conn *)e->c,
			   "SELECT next_due > now() FROM poll_schedule WHERE offer = 10"
			   " AND variant = 'processing'",
			   "t"));
}

/* views_poll_hours with the clock given: 2026-12-02T06:30Z covers the hours
 * 2026-12-01T07:00Z .. 2026-12-02T06:00Z. */
TEST(views_poll_hours_counts_outcomes_per_hour)
{
	static const char seed[] =
		"INSERT INTO advertisers (id, name, api_key) VALUES (1, 'A', 'k');"
		"INSERT INTO offers (id, advertiser, name, rule) VALUES (10, 1, 'X', 'r');"
		"INSERT INTO poll_runs (offer, variant, worker, started, finished, outcome) VALUES"
		" (10, 'processing', 'w', '2026-12-01T06:59:59Z', now(), 'ok'),"
		" (10, 'processing', 'w', '2026-12-01T07:00:00Z', now(), 'ok'),"
		" (10, 'processing', 'w', '2026-12-02T05:10:00Z', now(), 'ok'),"
		" (10, 'processing', 'w', '2026-12-02T05:20:00Z', now(), 'ok'),"
		" (10, 'processing', 'w', '2026-12-02T05:30:00Z', now(), 'http_error'),"
		" (10, 'dates', 'w', '2026-12-02T06:05:00Z', now(), 'ok'),"
		" (10, 'dates', 'w', '2026-12-02T06:40:00Z', now(), 'ok');";
	char *ci = NULL;
	PGconn *c = (PGconn *)test_db_migrated("ls_views_hours", &ci);
	struct buf out;
	char err[512];
	int64_t now;

	ASSERT(c);
	test_defer((test_cleanup_fn)PQfinish, c);
	test_defer(free, ci);
	ASSERT(test_sql_exec((struct pg_conn *)c, seed));
	ASSERT_EQ(views_since_parse("2026-12-02T06:30:00Z", 0, &now), 0);
	buf_init(&out, 0);
	test_defer((test_cleanup_fn)buf_release, &out);
	ASSERT_EQ(views_poll_hours(c, now, VIEWS_JSON, &out, err, sizeof(err)), 0);
	ASSERT_STREQ(out.p, "[{\"hour\":\"2026-12-01T07:00:00Z\",\"outcome\":\"ok\",\"count\":1},"
			    "{\"hour\":\"2026-12-02T05:00:00Z\",\"outcome\":\"http_error\",\"count\":1},"
			    "{\"hour\":\"2026-12-02T05:00:00Z\",\"outcome\":\"ok\",\"count\":2},"
			    "{\"hour\":\"2026-12-02T06:00:00Z\",\"outcome\":\"ok\",\"count\":1}]");
	buf_reset(&out);
	ASSERT_EQ(views_poll_hours(c, now, VIEWS_TEXT, &out, err, sizeof(err)), 0);
	ASSERT_CONTAINS(out.p, "hour");
	ASSERT_CONTAINS(out.p, "http_error");
	buf_reset(&out);
	ASSERT_EQ(views_since_parse("2026-11-01T00:00:00Z", 0, &now), 0);
	ASSERT_EQ(views_poll_hours(c, now, VIEWS_JSON, &out, err, sizeof(err)), 0);
	ASSERT_STREQ(out.p, "[]");
}

/* The route serves the same, with the database's clock. */
TEST(api_polls_hourly_counts_the_last_24_hours)
{
	struct at_env *e;
	struct at_answer *a;
	cJSON *j, *it;
	int total = 0;

	e = at_open("ls_api_hourly", AT_TOKEN, 0);
	ASSERT(e);
	a = &e->a;
	ASSERT(at_get(e, "/admin/api/polls/hourly"));
	ASSERT_EQ(a->status, 200);
	j = cJSON_Parse(a->body);
	ASSERT(cJSON_IsArray(j));
	test_defer((test_cleanup_fn)cJSON_Delete, j);
	cJSON_ArrayForEach(it, j)
	{
		ASSERT(cJSON_IsString(cJSON_GetObjectItem(it, "hour")));
		ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(it, "outcome")), "ok");
		total += (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "count"));
	}
	ASSERT_EQ(total, 2); /* runs 4 and 5; 1-3 are from November */
	ASSERT(at_get(e, "/admin/api/polls/hourly?offer=1"));
	ASSERT_EQ(a->status, 400);
}
