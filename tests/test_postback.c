/* test_postback: S2S postbacks, clicks, lead intake, /healthz and the
 * daemon's stop, over real HTTP on loopback against a real PostgreSQL: the
 * daemon runs in-process on its own loop thread (or as `leadsync run`);
 * and the database pool on its own. */
#include "daemon.h"
#include "postback.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "click.h"
#include "db.h"
#include "import.h"
#include "log.h"
#include "pbauth.h"
#include "store.h"
#include "test.h"

#define SEED_CLICK "c7e2206f-03af-49fa-9046-dd6aeaa44e9b"
#define PCT_CLICK "11111111-1111-4111-8111-111111111111"
#define REC_CLICK "22222222-2222-4222-8222-222222222222"
#define OTHER_CLICK "33333333-3333-4333-8333-333333333333"

/* The network the postback tests share: the seed's own api key, a fixed,
 * a percent and a recurring offer, another advertiser's offer, a disabled
 * offer, offer status words, and the seed's click. */
static const char tp_network[] =
	"{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"advertiser_api_key\"}}\n"
	"{\"advertiser\": {\"id\": 2, \"name\": \"Other\", \"api_key\": \"k-other\"}}\n"
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Fixed\", \"hold_days\": 7,"
	" \"reject_reason\": 2, \"landing_url\": \"https://shop.example/x?lang=en#top\","
	" \"status_words\": {\"zaakceptowany\": {\"accept\": true}, \"odrzucony\": 5,"
	" \"smieci\": {\"status\": 5, \"reason\": 6}, \"wstrzymany\": 2}}}\n"
	"{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"Percent\","
	" \"landing_url\": \"https://shop.example/y\", \"click_param\": \"cid\"}}\n"
	"{\"offer\": {\"id\": 12, \"advertiser\": 1, \"name\": \"Subscription\","
	" \"landing_url\": \"https://shop.example/z\"}}\n"
	"{\"offer\": {\"id\": 13, \"advertiser\": 1, \"name\": \"Off\", \"enabled\": false,"
	" \"landing_url\": \"https://shop.example/off\"}}\n"
	"{\"offer\": {\"id\": 20, \"advertiser\": 2, \"name\": \"Theirs\"}}\n"
	"{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5, \"pay\": 8,"
	" \"currency\": \"USD\"}}\n"
	"{\"goal\": {\"offer\": 11, \"code\": \"sale\", \"payout\": \"percent\", \"wm\": 10, \"pay\": 15,"
	" \"ref\": 1, \"currency\": \"EUR\"}}\n"
	"{\"goal\": {\"offer\": 12, \"code\": \"rebill\", \"payout\": \"recurring\", \"wm\": 3,"
	" \"pay\": 4, \"currency\": \"USD\"}}\n"
	"{\"goal\": {\"offer\": 20, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 1,"
	" \"currency\": \"USD\"}}\n"
	"{\"click\": {\"id\": \"" SEED_CLICK "\", \"offer\": 10, \"wm\": 7}}\n"
	"{\"click\": {\"id\": \"" PCT_CLICK "\", \"offer\": 11}}\n"
	"{\"click\": {\"id\": \"" REC_CLICK "\", \"offer\": 12}}\n"
	"{\"click\": {\"id\": \"" OTHER_CLICK "\", \"offer\": 20}}\n";

/* A lead whose request_id is 'boom' fails to insert; 'slow' takes 300 ms:
 * a database failure of one postback, and a busy worker, on demand. */
static const char tp_triggers[] =
	"CREATE FUNCTION tp_trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
	" IF NEW.request_id = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;"
	" IF NEW.request_id LIKE 'slow%' THEN PERFORM pg_sleep(0.3); END IF;"
	" RETURN NEW; END $$";
static const char tp_trigger[] =
	"CREATE TRIGGER tp_trap BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION tp_trap()";

/* ------------------------------------------------------------ database */

/* Migrates the database at ci and loads tp_network (and the traps). */
static int tp_setup(const char *ci, bool traps)
{
	struct import_stats st;
	PGconn *c = NULL;
	char err[1024];
	FILE *f = NULL;
	int applied, rc = -1;

	if (store_connect(ci, &c, err, sizeof(err)) < 0 ||
	    store_migrate(c, &applied, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "setup: %s", err);
		goto out;
	}
	f = fmemopen((void *)tp_network, sizeof(tp_network) - 1, "r");
	if (!f || import_run(c, f, &st, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "setup import: %s", f ? err : "fmemopen");
		goto out;
	}
	if (traps && (store_exec(c, "traps", tp_triggers, 0, NULL, err, sizeof(err)) < 0 ||
		      store_exec(c, "traps", tp_trigger, 0, NULL, err, sizeof(err)) < 0)) {
		test__fail(__FILE__, __LINE__, "setup: %s", err);
		goto out;
	}
	rc = 0;
out:
	if (f)
		fclose(f);
	PQfinish(c);
	return rc;
}

/* The shared database, made once; and a connection to it for checks.
 * Both live until the process ends. */
static char *tp_ci;
static PGconn *tp_pg;

static const char *tp_db(void)
{
	char err[512];
	char *ci;

	if (tp_ci)
		return tp_ci;
	ci = test_db_fresh("leadsync_postback");
	if (!ci)
		return NULL;
	if (tp_setup(ci, true) < 0 || store_connect(ci, &tp_pg, err, sizeof(err)) < 0) {
		free(ci);
		return NULL;
	}
	tp_ci = ci;
	return ci;
}

/* The first value of a query on c with at most one text parameter, into a
 * static buffer: "(null)" for NULL, "(none)" for no row. */
static const char *tp_val_on(PGconn *c, const char *sql, const char *param)
{
	static char out[4096];
	const char *p[1] = { param };
	PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, p, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		snprintf(out, sizeof(out), "(error: %s)", PQresultErrorMessage(r));
	else if (PQntuples(r) == 0)
		snprintf(out, sizeof(out), "(none)");
	else if (PQgetisnull(r, 0, 0))
		snprintf(out, sizeof(out), "(null)");
	else
		snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

static const char *tp_val(const char *sql, const char *param)
{
	return tp_val_on(tp_pg, sql, param);
}

/* ---------------------------------------------------------------- http */

struct tp_resp {
	int status;
	struct buf raw;
	const char *body;
};

static void tp_resp_release(struct tp_resp *r)
{
	buf_release(&r->raw);
	r->body = NULL;
}

/* A connection to 127.0.0.1:port with 20 s timeouts; -1 when refused. */
static int tp_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 20, 0 };
	int fd;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads the answer on fd to EOF and closes fd. Returns 0, or -1 when
 * nothing came back. */
static int tp_recv(int fd, struct tp_resp *r)
{
	char tmp[8192];
	int rc = -1;
	char *sep;

	buf_init(&r->raw, 1 << 20);
	r->status = 0;
	r->body = "";
	for (;;) {
		ssize_t n = recv(fd, tmp, sizeof(tmp), 0);

		if (n <= 0 || buf_add(&r->raw, tmp, (size_t)n) < 0)
			break;
	}
	if (r->raw.len < 12 || strncmp(r->raw.p, "HTTP/1.1 ", 9) != 0)
		goto out;
	r->status = (int)strtol(r->raw.p + 9, NULL, 10);
	sep = strstr(r->raw.p, "\r\n\r\n");
	r->body = sep ? sep + 4 : "";
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Sends req (a whole request, "Connection: close") and reads the answer to
 * EOF. Returns 0, or -1 when nothing came back. */
static int tp_send(int port, const char *req, size_t len, struct tp_resp *r)
{
	size_t off = 0;
	int fd = tp_connect(port);

	if (fd < 0) {
		buf_init(&r->raw, 0);
		r->status = 0;
		r->body = "";
		return -1;
	}
	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break; /* the server may answer (413) before it has read it all */
		off += (size_t)n;
	}
	return tp_recv(fd, r);
}

/* A connection that has sent req and not read yet; -1 when refused. */
static int tp_open(int port, const char *req)
{
	int fd = tp_connect(port);
	size_t len = strlen(req);

	if (fd >= 0 && send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

static int tp_sends(int port, const char *req, struct tp_resp *r)
{
	return tp_send(port, req, strlen(req), r);
}

static int tp_get(int port, const char *target, struct tp_resp *r)
{
	char req[4096];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
			 target);

	return tp_send(port, req, (size_t)n, r);
}

static int tp_post(int port, const char *target, const char *ctype, const char *body, size_t blen,
		   const char *extra, struct tp_resp *r)
{
	struct buf b;
	int rc;

	buf_init(&b, 1 << 20);
	if (buf_addf(&b, "POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s%s%s"
			 "Content-Length: %zu\r\n%s\r\n",
		     target, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
		     blen, extra ? extra : "") < 0 ||
	    buf_add(&b, body, blen) < 0) {
		buf_release(&b);
		return -1;
	}
	rc = tp_send(port, b.p, b.len, r);
	buf_release(&b);
	return rc;
}

/* A header's value (first line match, case as written by the listener). */
static const char *tp_header(const struct tp_resp *r, const char *name, char *out, size_t len)
{
	char key[64];
	const char *p, *e;

	snprintf(key, sizeof(key), "\r\n%s: ", name);
	p = r->raw.p ? strstr(r->raw.p, key) : NULL;
	if (!p || (r->body && *r->body && p > r->body)) {
		snprintf(out, len, "(none)");
		return out;
	}
	p += strlen(key);
	e = strstr(p, "\r\n");
	snprintf(out, len, "%.*s", e ? (int)(e - p) : 0, p);
	return out;
}

static int64_t tp_lead(const char *body)
{
	const char *p = strstr(body, "\"lead\":");

	return p ? strtoll(p + 7, NULL, 10) : -1;
}

/* ------------------------------------------------------- the daemon */

struct tp {
	uv_loop_t loop;
	uv_async_t stop;
	uv_async_t pause; /* holds the loop thread until release (tp_pause) */
	atomic_bool paused, release;
	bool stop_sent, joined;
	pthread_t th;
	struct daemon *d;
	struct daemon_config cfg;
	atomic_int port;
	int saved_level;
	char err[512];
};

static void tp_stopped(void *data)
{
	struct tp *t = data;

	uv_close((uv_handle_t *)&t->stop, NULL);
	uv_close((uv_handle_t *)&t->pause, NULL);
}

/* The loop thread waits here until the test releases it: connections made
 * meanwhile are accepted later, with what they sent already there. */
static void tp_pause_cb(uv_async_t *a)
{
	struct tp *t = a->data;

	atomic_store(&t->paused, true);
	while (!atomic_load(&t->release))
		usleep(1000);
	atomic_store(&t->release, false);
	atomic_store(&t->paused, false);
}

static void tp_pause(struct tp *t)
{
	uv_async_send(&t->pause);
	while (!atomic_load(&t->paused))
		usleep(1000);
}

static void tp_resume(struct tp *t)
{
	atomic_store(&t->release, true);
}

static void tp_stop_cb(uv_async_t *a)
{
	struct tp *t = a->data;

	if (t->d) {
		daemon_stop(t->d, tp_stopped, t);
		t->d = NULL;
	}
}

static void *tp_main(void *arg)
{
	struct tp *t = arg;

	uv_loop_init(&t->loop);
	uv_async_init(&t->loop, &t->stop, tp_stop_cb);
	uv_async_init(&t->loop, &t->pause, tp_pause_cb);
	t->stop.data = t->pause.data = t;
	if (daemon_start(&t->loop, &t->cfg, &t->d, t->err, sizeof(t->err)) < 0) {
		uv_close((uv_handle_t *)&t->stop, NULL);
		uv_close((uv_handle_t *)&t->pause, NULL);
		atomic_store(&t->port, -1);
	} else {
		atomic_store(&t->port, daemon_port(t->d));
	}
	uv_run(&t->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&t->loop) != 0)
		test__fail(__FILE__, __LINE__, "the daemon's loop closed with handles open");
	return NULL;
}

/* Starts the daemon with cfg (its db and listen are set here). */
static int tp_up_cfg(struct tp *t, const char *ci, const struct daemon_config *cfg)
{
	int i;

	memset(t, 0, sizeof(*t));
	if (!ci)
		return -1;
	t->saved_level = log_level;
	log_level = getenv("TEST_VERBOSE") ? LOG_DEBUG : -1;
	t->cfg = *cfg;
	t->cfg.db = ci;
	t->cfg.listen = "127.0.0.1:0";
	if (pthread_create(&t->th, NULL, tp_main, t) != 0) {
		test__fail(__FILE__, __LINE__, "pthread_create");
		return -1;
	}
	for (i = 0; i < 10000 && atomic_load(&t->port) == 0; i++)
		usleep(1000);
	if (atomic_load(&t->port) <= 0) {
		test__fail(__FILE__, __LINE__, "daemon did not start: %s", t->err);
		pthread_join(t->th, NULL);
		log_level = t->saved_level;
		return -1;
	}
	return 0;
}

static int tp_up(struct tp *t, const char *ci, const char *token, unsigned workers)
{
	struct daemon_config cfg = { .admin_token = token, .db_workers = workers };

	return tp_up_cfg(t, ci, &cfg);
}

/* The stop, as SIGTERM starts it; tp_join waits for its end. */
static void tp_stop(struct tp *t)
{
	if (!t->stop_sent)
		uv_async_send(&t->stop);
	t->stop_sent = true;
}

static void tp_join(struct tp *t)
{
	if (t->joined)
		return;
	t->joined = true;
	pthread_join(t->th, NULL);
	log_level = t->saved_level;
}

static void tp_down(struct tp *t)
{
	tp_stop(t);
	tp_join(t);
}

#define TP_PORT(t) atomic_load(&(t)->port)

/* A test with a daemon on the shared database; ASSERTs leave the body and
 * the daemon is still stopped. */
#define TP_TEST(name, token, workers)                                        \
	static void tp_body_##name(struct tp *t);                           \
	TEST(name)                                                          \
	{                                                                   \
		struct tp t;                                                \
		if (tp_up(&t, tp_db(), token, workers) == 0) {              \
			tp_body_##name(&t);                                 \
			tp_down(&t);                                        \
		}                                                           \
	}                                                                   \
	static void tp_body_##name(struct tp *t)

/* GET /advertiser_api_key/s2s?<query>; status and body into r. */
static int tp_pb(struct tp *t, const char *query, struct tp_resp *r)
{
	char target[2048];

	snprintf(target, sizeof(target), "/advertiser_api_key/s2s?%s", query);
	return tp_get(TP_PORT(t), target, r);
}

static int tp_postj(struct tp *t, const char *target, const char *json, struct tp_resp *r)
{
	return tp_post(TP_PORT(t), target, "application/json", json, strlen(json), NULL, r);
}

/* ------------------------------------------------------------ the seed */

/* Seed 000's GET examples, byte for byte, in the seed's order: hold, then
 * approved (payouts), then rejected (a chargeback). */
TP_TEST(postback_seed_get_examples_hold_approve_chargeback, NULL, 2)
{
	struct tp_resp r;
	char want[128], id[32];
	int64_t lead;

	ASSERT_EQ(tp_get(TP_PORT(t), "/advertiser_api_key/s2s?click_id=" SEED_CLICK
			 "&request_id=12345&action=lead&price=30&status=hold", &r), 0);
	lead = tp_lead(r.body);
	snprintf(want, sizeof(want), "{\"ok\":true,\"lead\":%" PRId64 ",\"duplicate\":false}", lead);
	snprintf(id, sizeof(id), "%" PRId64, lead);
	ASSERT_EQ(r.status, 200);
	ASSERT_STREQ(r.body, want);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', offer, status, base, goal IS NOT NULL, click, wm)"
			    " FROM leads WHERE request_id = '12345'", NULL),
		     "10 2 30.00 t " SEED_CLICK " 0.00");

	ASSERT_EQ(tp_get(TP_PORT(t), "/advertiser_api_key/s2s?click_id=" SEED_CLICK
			 "&request_id=12345&action=lead&price=30&status=approved", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_STREQ(r.body, want);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', status, wm, pay, approved_at IS NOT NULL)"
			    " FROM leads WHERE id = $1", id), "6 5.00 8.00 t");

	ASSERT_EQ(tp_get(TP_PORT(t), "/advertiser_api_key/s2s?click_id=" SEED_CLICK
			 "&request_id=12345&action=lead&price=30&status=rejected", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_STREQ(r.body, want);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', status, reason) FROM leads WHERE id = $1", id),
		     "5 2");
	ASSERT_STREQ(tp_val("SELECT string_agg(source, ',' ORDER BY id) FROM lead_history"
			    " WHERE lead = $1", id), "postback,postback,chargeback");
	ASSERT_STREQ(tp_val("SELECT string_agg(outcome, ',' ORDER BY id) FROM postbacks_in"
			    " WHERE lead = $1", id), "created,updated,chargeback");
	/* the history's source_id is the log row of the postback */
	ASSERT_STREQ(tp_val("SELECT count(*) FROM lead_history h JOIN postbacks_in p"
			    " ON p.id = h.source_id AND p.lead = h.lead WHERE h.lead = $1", id), "3");
	/* a second rejected: nothing to do */
	ASSERT_EQ(tp_get(TP_PORT(t), "/advertiser_api_key/s2s?click_id=" SEED_CLICK
			 "&request_id=12345&action=lead&price=30&status=rejected", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":true");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM lead_history WHERE lead = $1", id), "3");
}

/* Seed 000's POST example: the JSON as meant (the seed's CSV doubling of
 * quotes undone) is taken; the seed's literal bytes, with typographic
 * quotes and a stray full stop, are refused with a message that says so. */
#define FORM "click_id=" SEED_CLICK "&request_id=94583&action=lead&status=pending"
TP_TEST(postback_seed_post_example, NULL, 2)
{
	static const char meant[] = "{ \n"
				    "  \"click_id\": \"c7e2206f-03af-49fa-9046-dd6aeaa44e9b\", \n"
				    "  \"request_id\": \"94583\", \n"
				    "  \"action\": \"lead\", \n"
				    "  \"price\": 30, \n"
				    "  \"status\": \"hold\" \n"
				    "\n"
				    "} \n";
	static const char literal[] = "{ \n"
				      "  \"click_id\": \"c7e2206f-03af-49fa-9046-dd6aeaa44e9b\", \n"
				      "  \"request_id\": \"94583\", \n"
				      "  \"action\": \"lead\", \n"
				      "  \"price\": 30, \n"
				      "  \"status\": \xe2\x80\x9chold\xe2\x80\x9d. \n"
				      "\n"
				      "} \n";
	struct tp_resp r;

	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key", "application/json", literal,
			  sizeof(literal) - 1, NULL, &r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "malformed JSON at byte");
	ASSERT_CONTAINS(r.body, "typographic quote");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id = '94583'", NULL), "0");

	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key", "application/json", meant,
			  sizeof(meant) - 1, NULL, &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":false");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', status, base) FROM leads"
			    " WHERE request_id = '94583'", NULL), "2 30.00");
	/* the same through /s2s, as a form and as JSON: duplicates */
	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key/s2s", "application/x-www-form-urlencoded",
			  FORM, strlen(FORM), NULL, &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":true");
	tp_resp_release(&r);
	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key/s2s", NULL, meant, sizeof(meant) - 1,
			  NULL, &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":true");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM postbacks_in WHERE method = 'POST'"
			    " AND body LIKE '%94583%'", NULL), "4");
}

/* ----------------------------------------------------------- the words */

struct tp_word {
	const char *word;
	const char *want; /* "status reason" of the new lead */
};

TP_TEST(postback_every_synonym_of_seed_000, NULL, 2)
{
	static const struct tp_word words[] = {
		/* HOLD */
		{ "hold", "2 " }, { "shipped", "2 " }, { "processing", "2 " }, { "accepted", "2 " },
		{ "waiting", "2 " }, { "open", "2 " }, { "new", "2 " }, { "pending", "2 " },
		/* APPROVED */
		{ "approved", "6 " }, { "confirmed", "6 " }, { "confirm", "6 " }, { "paid", "6 " },
		{ "completed", "6 " }, { "sold", "6 " }, { "delivered", "6 " },
		/* REJECTED: the polling table's reason where it implies one */
		{ "rejected", "5 2" }, { "returned", "5 2" }, { "canceled", "5 2" },
		{ "cancelled", "5 2" }, { "archived", "5 2" }, { "refunded", "5 2" },
		{ "cancel", "5 2" }, { "archive", "5 2" }, { "refund", "5 2" }, { "spam", "5 6" },
		{ "error", "5 6" }, { "wrong", "5 6" }, { "test", "5 6" }, { "declined", "5 2" },
		/* any case, blanks around */
		{ "%20APPROVED%20", "6 " }, { "Hold", "2 " },
		/* the offer's own words */
		{ "zaakceptowany", "6 " }, { "odrzucony", "5 2" }, { "smieci", "5 6" },
		{ "wstrzymany", "2 " },
	};
	struct tp_resp r;
	char q[512], rid[64];
	size_t i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		snprintf(rid, sizeof(rid), "syn-%zu", i);
		snprintf(q, sizeof(q), "click_id=" SEED_CLICK "&request_id=%s&action=lead&status=%s",
			 rid, words[i].word);
		ASSERT_EQ(tp_pb(t, q, &r), 0);
		if (r.status != 200)
			test__fail(__FILE__, __LINE__, "status=%s: %d %s", words[i].word, r.status,
				   r.body);
		tp_resp_release(&r);
		if (test__failed())
			return;
		ASSERT_STREQ(tp_val("SELECT concat(status, ' ', reason) FROM leads WHERE offer = 10"
				    " AND request_id = $1", rid), words[i].want);
	}
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=syn-x&action=lead&status=maybe%22",
			&r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"unknown status 'maybe\\\"': send hold, "
			     "approved or rejected (or a word of their lists)\"}");
	tp_resp_release(&r);
	/* the other dialect's words are not the seed's */
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=syn-y&action=lead&status=callback",
			&r), 0);
	ASSERT_EQ(r.status, 400);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id IN ('syn-x', 'syn-y')",
			    NULL), "0");
}

/* ------------------------------------------------------ required fields */

struct tp_case {
	const char *query;
	int status;
	const char *error;
};

static void tp_cases(struct tp *t, const struct tp_case *c, size_t n)
{
	struct tp_resp r;
	size_t i;

	for (i = 0; i < n; i++) {
		if (tp_pb(t, c[i].query, &r) < 0 || r.status != c[i].status ||
		    !strstr(r.body, c[i].error))
			test__fail(__FILE__, __LINE__, "%s: got %d %s, want %d ...%s...", c[i].query,
				   r.status, r.body, c[i].status, c[i].error);
		tp_resp_release(&r);
	}
}

TP_TEST(postback_missing_parameters_by_payout_type, NULL, 2)
{
	static const struct tp_case cases[] = {
		/* fixed CPA: click_id, request_id, action, status */
		{ "request_id=m1&action=lead&status=hold", 400, "missing 'click_id'" },
		{ "click_id=" SEED_CLICK "&action=lead&status=hold", 400, "missing 'request_id'" },
		{ "click_id=" SEED_CLICK "&request_id=m1&status=hold", 400, "missing 'action'" },
		{ "click_id=" SEED_CLICK "&request_id=m1&action=lead", 400, "missing 'status'" },
		{ "click_id=" SEED_CLICK "&request_id=&action=lead&status=", 400,
		  "missing 'request_id', 'status'" },
		{ "", 400, "missing 'click_id', 'request_id', 'action', 'status'" },
		/* percent CPA: and price */
		{ "click_id=" PCT_CLICK "&request_id=m2&action=sale&status=hold", 400,
		  "missing 'price': action 'sale' of offer 11 pays a percent of it" },
		{ "click_id=" PCT_CLICK "&request_id=m2&action=sale&status=hold&price=abc", 400,
		  "'price' must be an amount like 30 or 30.50, not 'abc'" },
		{ "click_id=" PCT_CLICK "&request_id=m2&action=sale&status=hold&price=-1", 400,
		  "'price' must be an amount" },
		/* recurring: leads need customer_id; customers need click_id,
		 * customer_id, status */
		{ "click_id=" REC_CLICK "&request_id=m3&action=rebill&status=hold", 400,
		  "missing 'customer_id': action 'rebill' of offer 12 is recurring" },
		{ "click_id=" REC_CLICK "&status=activate", 400, "missing 'customer_id'" },
		{ "customer_id=c9&status=activate", 400, "missing 'click_id'" },
		{ "click_id=" SEED_CLICK "&customer_id=c9&status=activate", 400,
		  "offer 10 has no recurring goal" },
		/* other input */
		{ "click_id=nope&request_id=m1&action=lead&status=hold", 400,
		  "'click_id' must be a UUID" },
		{ "click_id=" SEED_CLICK "&request_id=m1&action=call&status=hold", 400,
		  "unknown action 'call' of offer 10" },
	};

	tp_cases(t, cases, sizeof(cases) / sizeof(cases[0]));
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id IN ('m1', 'm2', 'm3')", NULL),
		     "0");
	/* a percent goal: payouts are percents of the price */
	tp_cases(t, &(struct tp_case){ "click_id=" PCT_CLICK "&request_id=m4&action=sale"
				       "&status=approved&price=49.90", 200, "\"ok\":true" }, 1);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', status, base, wm, pay, ref, curr, cash_curr)"
			    " FROM leads WHERE request_id = 'm4'", NULL),
		     "6 49.90 4.99 7.49 0.50 978 978");
}

TP_TEST(postback_recurring_customers, NULL, 2)
{
	static const struct tp_case cases[] = {
		{ "click_id=" REC_CLICK "&customer_id=r-1&request_id=r1&action=rebill&status=hold", 409,
		  "customer_id 'r-1' of offer 12 is not active: activate it first" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&status=deactivate", 404,
		  "unknown customer_id 'r-1' of offer 12" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&status=activate", 200,
		  "{\"ok\":true,\"lead\":null,\"duplicate\":false,\"customer_id\":\"r-1\",\"active\":true}" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&status=Activate", 200, "\"duplicate\":true" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&request_id=r1&action=rebill&status=approved",
		  200, "\"duplicate\":false" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&request_id=r2&action=rebill&status=approved",
		  200, "\"duplicate\":false" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&status=deactivate", 200, "\"active\":false" },
		{ "click_id=" REC_CLICK "&customer_id=r-1&request_id=r3&action=rebill&status=hold", 409,
		  "is not active" },
		/* a known lead still takes its updates */
		{ "click_id=" REC_CLICK "&customer_id=r-1&request_id=r2&action=rebill&status=refund", 200,
		  "\"duplicate\":false" },
	};

	tp_cases(t, cases, sizeof(cases) / sizeof(cases[0]));
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', active, click) FROM customers WHERE offer = 12"
			    " AND customer_id = 'r-1'", NULL), "f " REC_CLICK);
	ASSERT_STREQ(tp_val("SELECT string_agg(concat_ws(' ', request_id, customer_id, status, wm),"
			    " ',' ORDER BY request_id) FROM leads WHERE offer = 12", NULL),
		     "r1 r-1 6 3.00,r2 r-1 5 3.00");
}

/* -------------------------------------------------------- who may send */

TP_TEST(postback_api_key_and_click_ownership, NULL, 2)
{
	struct tp_resp r;

	/* unknown key: 403 whatever else is wrong */
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-nobody/s2s?click_id=" SEED_CLICK
			 "&request_id=o1&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"unknown api key\"}");
	tp_resp_release(&r);
	ASSERT_EQ(tp_get(TP_PORT(t), "/advertiser_api_keyX/s2s?status=hold", &r), 0);
	ASSERT_EQ(r.status, 403);
	tp_resp_release(&r);
	ASSERT_EQ(tp_post(TP_PORT(t), "/k-nobody", "application/json", "{", 1, NULL, &r), 0);
	ASSERT_EQ(r.status, 403);
	tp_resp_release(&r);
	/* another advertiser's click */
	ASSERT_EQ(tp_pb(t, "click_id=" OTHER_CLICK "&request_id=o1&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_CONTAINS(r.body, "belongs to another advertiser's offer");
	tp_resp_release(&r);
	/* and that advertiser may use it */
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-other/s2s?click_id=" OTHER_CLICK
			 "&request_id=o1&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	/* a click nobody issued */
	ASSERT_EQ(tp_pb(t, "click_id=0000AAAA-0000-4000-8000-000000000000&request_id=o2&action=lead"
			"&status=hold", &r), 0);
	ASSERT_EQ(r.status, 404);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"unknown click_id "
			     "'0000aaaa-0000-4000-8000-000000000000'\"}");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT string_agg(concat_ws(' ', http_status, outcome,"
			    " coalesce(advertiser, 0)), ',' ORDER BY id) FROM postbacks_in"
			    " WHERE query LIKE '%request_id=o_&%' OR (path = '/***' AND body = '{')", NULL),
		     "403 invalid 0,403 invalid 0,403 invalid 1,200 created 2,404 invalid 1");
}

/* -------------------------------------------------------- dedup, order */

struct tp_par {
	int port;
	const char *target;
	int status;
	char body[256];
};

static void *tp_par_main(void *arg)
{
	struct tp_par *p = arg;
	struct tp_resp r;

	if (tp_get(p->port, p->target, &r) == 0) {
		p->status = r.status;
		snprintf(p->body, sizeof(p->body), "%s", r.body);
	}
	tp_resp_release(&r);
	return NULL;
}

TP_TEST(postback_same_postback_50_times_at_once_makes_one_lead, NULL, 4)
{
	static const char target[] = "/advertiser_api_key/s2s?click_id=" SEED_CLICK
				     "&request_id=dup-50&action=lead&status=approved&price=30";
	struct tp_par p[50];
	pthread_t th[50];
	int i, fresh = 0;
	int64_t lead = -1;
	char id[32];

	for (i = 0; i < 50; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].port = TP_PORT(t);
		p[i].target = target;
		pthread_create(&th[i], NULL, tp_par_main, &p[i]);
	}
	for (i = 0; i < 50; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 50; i++) {
		if (p[i].status != 200)
			test__fail(__FILE__, __LINE__, "answer %d: %d %s", i, p[i].status, p[i].body);
		if (strstr(p[i].body, "\"duplicate\":false"))
			fresh++;
		if (lead < 0)
			lead = tp_lead(p[i].body);
		else if (tp_lead(p[i].body) != lead)
			test__fail(__FILE__, __LINE__, "answer %d names lead %" PRId64 ", not %" PRId64,
				   i, tp_lead(p[i].body), lead);
	}
	ASSERT(!test__failed());
	ASSERT_EQ(fresh, 1);
	snprintf(id, sizeof(id), "%" PRId64, lead);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id = 'dup-50'", NULL), "1");
	ASSERT_STREQ(tp_val("SELECT count(*) FROM lead_history WHERE lead = $1", id), "1");
	ASSERT_STREQ(tp_val("SELECT string_agg(outcome || ' ' || n, ',' ORDER BY outcome) FROM"
			    " (SELECT outcome, count(*) n FROM postbacks_in WHERE lead = $1"
			    " GROUP BY outcome) x", id), "created 1,duplicate 49");
}

TP_TEST(postback_no_return_to_hold, NULL, 2)
{
	static const struct tp_case cases[] = {
		{ "click_id=" SEED_CLICK "&request_id=h1&action=lead&status=approved", 200, "false" },
		{ "click_id=" SEED_CLICK "&request_id=h1&action=lead&status=hold", 409,
		  "cannot go back to 'processing'" },
		{ "click_id=" SEED_CLICK "&request_id=h1&action=lead&status=sold", 200, "true" },
		{ "click_id=" SEED_CLICK "&request_id=h2&action=lead&status=declined", 200, "false" },
		{ "click_id=" SEED_CLICK "&request_id=h2&action=lead&status=pending", 409,
		  "cannot go back" },
		/* the advertiser may still confirm a lead it rejected */
		{ "click_id=" SEED_CLICK "&request_id=h2&action=lead&status=confirmed", 200, "false" },
		/* the same request_id with another click or goal */
		{ "click_id=" PCT_CLICK "&request_id=h2&action=sale&status=hold&price=1", 200, "false" },
		{ "click_id=" SEED_CLICK "&request_id=h2&action=lead&status=paid", 200, "true" },
	};

	tp_cases(t, cases, sizeof(cases) / sizeof(cases[0]));
	ASSERT_STREQ(tp_val("SELECT string_agg(concat_ws(' ', offer, request_id, status), ','"
			    " ORDER BY offer, request_id) FROM leads WHERE request_id IN ('h1', 'h2')",
			    NULL), "10 h1 6,10 h2 6,11 h2 2");
	ASSERT_STREQ(tp_val("SELECT string_agg(outcome, ',' ORDER BY id) FROM postbacks_in"
			    " WHERE query LIKE '%request_id=h1%'", NULL), "created,refused,duplicate");
}

/* A lead's times keep their fraction of a second: the postback reads them
 * floored, as the poller and the timers do (lead_store.h), and a write
 * keeps a time whose floor it did not change. Rounding read 10:00:01 and
 * wrote it with the chargeback below, a change no history row showed. A
 * repeated status is no change: no history row. */
TP_TEST(postback_keeps_fractional_times_and_writes_no_phantom_change, NULL, 2)
{
	struct tp_resp r;
	char id[32];

	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=frac1&action=lead&price=30"
			"&status=approved", &r), 0);
	snprintf(id, sizeof(id), "%" PRId64, tp_lead(r.body));
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("UPDATE leads SET approved_at = timestamptz '2026-11-20 10:00:00.7Z'"
			    " WHERE id = $1 RETURNING status", id), "6");
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=frac1&action=lead&price=30"
			"&status=approved", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":true");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM lead_history WHERE lead = $1", id), "1");
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=frac1&action=lead&price=30"
			"&status=rejected", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":false");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', status, approved_at = timestamptz"
			    " '2026-11-20 10:00:00.7Z') FROM leads WHERE id = $1", id), "5 t");
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', source, before::text, after::text)"
			    " FROM lead_history WHERE lead = $1 ORDER BY id DESC LIMIT 1", id),
		     "chargeback {\"reason\": null, \"status\": 6} {\"reason\": 2, \"status\": 5}");
	ASSERT_STREQ(tp_val("SELECT count(*) FROM lead_history WHERE lead = $1", id), "2");
}

/* A new lead's history row holds all its fields that are not null or '',
 * zero amounts included, as import writes it: replaying the history from
 * {} gives the lead (the soak's check; a diff against an all-zero lead
 * left out base, wm, pay and ref of a lead on hold). */
TP_TEST(postback_new_lead_history_replays_to_the_lead, NULL, 2)
{
	struct tp_resp r;
	char id[32];

	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=replay1&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	snprintf(id, sizeof(id), "%" PRId64, tp_lead(r.body));
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', l.wm, l.base) FROM leads l WHERE id = $1", id),
		     "0.00 0.00");
	ASSERT_STREQ(tp_val("SELECT h.after = c.after FROM lead_history h, leads l,"
			    " lead_changes(NULL, lead_fields(l)) c WHERE l.id = $1 AND h.lead = l.id",
			    id), "t");
}

/* The connection breaks after a postback's COMMIT went through: the daemon
 * cannot know whether it did, so it looks for the log row the commit would
 * have written before doing anything else. Once (found on the pool's
 * immediate retry) and three times (the answer held, retried from the
 * timer): each way one answer, 200 as first decided (not a duplicate, not
 * a 503 for a stored lead), one lead, one log row. */
static void tp_lost_commit(struct tp *t, int losses, const char *rid)
{
	struct tp_resp r;
	char q[256];

	snprintf(q, sizeof(q), "click_id=" SEED_CLICK "&request_id=%s&action=lead&status=hold", rid);
	atomic_store(&postback_test_lose_commit, losses);
	ASSERT_EQ(tp_pb(t, q, &r), 0);
	ASSERT_EQ(atomic_load(&postback_test_lose_commit), 0);
	atomic_store(&postback_test_lose_commit, 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":false");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id = $1", rid), "1");
	ASSERT_STREQ(tp_val("SELECT count(*) || ' ' || min(outcome) FROM postbacks_in p"
			    " JOIN leads l ON l.id = p.lead WHERE l.request_id = $1", rid),
		     "1 created");
}

TP_TEST(postback_commit_in_doubt_found_on_the_retry, NULL, 1)
{
	tp_lost_commit(t, 1, "doubt1");
}

TP_TEST(postback_commit_in_doubt_answer_held_until_known, NULL, 1)
{
	tp_lost_commit(t, 3, "doubt3");
}

/* --------------------------------------------------- hostile, malformed */

TP_TEST(postback_quotes_sql_and_bytes_are_data, NULL, 2)
{
	static const char json[] = "{\"click_id\": \"" SEED_CLICK "\", \"request_id\":"
				   " \"O'Reilly \\\"q\\\" \\\\ x\", \"action\": \"lead\","
				   " \"status\": \"hold\"}";
	struct tp_resp r;

	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=x%27)%3B%20DROP%20TABLE%20leads%3B%20--"
			"&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id = $1",
			    "x'); DROP TABLE leads; --"), "1");
	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key/s2s", "application/json", json,
			  sizeof(json) - 1, NULL, &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id = $1",
			    "O'Reilly \"q\" \\ x"), "1");
	/* bytes that are not UTF-8 are refused, and logged as \xNN */
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=bad%FF%00&action=lead&status=hold", &r),
		  0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "'request_id' is not valid UTF-8 text");
	tp_resp_release(&r);
	ASSERT_EQ(tp_postj(t, "/advertiser_api_key/s2s", "{\"status\": \"h\xff\"}", &r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "'status' is not valid UTF-8");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT body FROM postbacks_in WHERE body LIKE '{\"status\": \"h%'", NULL),
		     "{\"status\": \"h\\xFF\"}");
	ASSERT_EQ(tp_postj(t, "/advertiser_api_key/s2s", "{\"request_id\": \"a\\u0000b\"}", &r), 0);
	ASSERT_EQ(r.status, 400);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM pg_tables WHERE tablename = 'leads'", NULL), "1");
}

TP_TEST(postback_oversize_malformed_and_head, NULL, 2)
{
	struct tp_resp r;
	struct buf big;
	char hdr[64];

	buf_init(&big, 0);
	ASSERT_EQ(buf_addc(&big, '{'), 0);
	while (big.len < 70000)
		ASSERT_EQ(buf_adds(&big, "\"pad\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", "), 0);
	ASSERT_EQ(buf_adds(&big, "\"status\": \"hold\"}"), 0);
	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key", "application/json", big.p, big.len, NULL,
			  &r), 0);
	buf_release(&big);
	ASSERT_EQ(r.status, 413);
	tp_resp_release(&r);
	/* the listener refused it, and the log has it */
	ASSERT_EQ(tp_sends(TP_PORT(t), "POST /advertiser_api_key/s2s?request_id=big HTTP/1.1\r\n"
			   "Host: t\r\nContent-Length: 70000\r\n\r\n{}", &r), 0);
	ASSERT_EQ(r.status, 413);
	tp_resp_release(&r);
	ASSERT_EQ(tp_postj(t, "/advertiser_api_key", "{\"a\": [1,}", &r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "malformed JSON at byte 10");
	tp_resp_release(&r);
	ASSERT_EQ(tp_post(TP_PORT(t), "/advertiser_api_key", "application/json", "[]", 2, NULL, &r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "one JSON object");
	tp_resp_release(&r);
	ASSERT_EQ(tp_postj(t, "/advertiser_api_key", "{\"status\": {\"x\": 1}}", &r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "'status' must be a string or a number");
	tp_resp_release(&r);
	ASSERT_EQ(tp_sends(TP_PORT(t), "HEAD /advertiser_api_key/s2s?status=hold HTTP/1.1\r\nHost: t\r\n"
			   "Connection: close\r\n\r\n", &r), 0);
	ASSERT_EQ(r.status, 405);
	ASSERT_STREQ(tp_header(&r, "Allow", hdr, sizeof(hdr)), "GET, POST");
	tp_resp_release(&r);
	ASSERT_EQ(tp_get(TP_PORT(t), "/advertiser_api_key", &r), 0);
	ASSERT_EQ(r.status, 405);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws('|', method, path, query, advertiser, http_status,"
			    " outcome, error) FROM postbacks_in WHERE query = 'request_id=big'", NULL),
		     "POST|/***/s2s|request_id=big|1|413|invalid|request body too large");
}

TP_TEST(postback_log_masks_the_key_and_keeps_the_request, NULL, 2)
{
	struct tp_resp r;

	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=log1&action=lead&status=hold"
			"&extra=%E2%9C%93", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=log2&action=nope&status=hold", &r), 0);
	ASSERT_EQ(r.status, 400);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws('|', remote, method, path, query, advertiser, http_status,"
			    " outcome, error, lead > 0, at > now() - interval '1 minute')"
			    " FROM postbacks_in WHERE query LIKE '%request_id=log1%'", NULL),
		     "127.0.0.1|GET|/***/s2s|click_id=" SEED_CLICK "&request_id=log1&action=lead"
		     "&status=hold&extra=%E2%9C%93|1|200|created|t|t");
	ASSERT_STREQ(tp_val("SELECT concat_ws('|', http_status, outcome, error, lead)"
			    " FROM postbacks_in WHERE query LIKE '%request_id=log2%'", NULL),
		     "400|invalid|unknown action 'nope' of offer 10");
	/* masked as every printer masks (mask.h): a credential-looking
	 * parameter, and the key wherever it appears */
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=log3&action=lead&status=hold"
			"&sign=0f1e2d3c4b&note=advertiser_api_key", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT query FROM postbacks_in WHERE query LIKE '%request_id=log3%'",
			    NULL),
		     "click_id=" SEED_CLICK "&request_id=log3&action=lead&status=hold&sign=***"
		     "&note=***");
	ASSERT_STREQ(tp_val("SELECT count(*) FROM postbacks_in WHERE path LIKE '%advertiser_api_key%'"
			    " OR query LIKE '%advertiser_api_key%'", NULL), "0");
}

/* One postback of a group fails in the database: it alone is answered 500
 * (its log row written), the others commit. The worker is held by a slow
 * insert so that the burst is queued and taken as one group. */
TP_TEST(postback_a_failing_postback_fails_alone, NULL, 1)
{
	static const char *targets[] = {
		"/advertiser_api_key/s2s?click_id=" SEED_CLICK "&request_id=g1&action=lead&status=hold",
		"/advertiser_api_key/s2s?click_id=" SEED_CLICK "&request_id=boom&action=lead&status=hold",
		"/advertiser_api_key/s2s?click_id=" SEED_CLICK "&request_id=g2&action=lead&status=hold",
		"/advertiser_api_key/s2s?click_id=" SEED_CLICK "&request_id=g3&action=lead&status=hold",
	};
	struct tp_par slow = { 0 }, p[4];
	pthread_t th[5];
	int i;

	slow.port = TP_PORT(t);
	slow.target = "/advertiser_api_key/s2s?click_id=" SEED_CLICK
		      "&request_id=slow-g&action=lead&status=hold";
	pthread_create(&th[4], NULL, tp_par_main, &slow);
	usleep(100000);
	for (i = 0; i < 4; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].port = TP_PORT(t);
		p[i].target = targets[i];
		pthread_create(&th[i], NULL, tp_par_main, &p[i]);
	}
	for (i = 0; i < 5; i++)
		pthread_join(th[i], NULL);
	ASSERT_EQ(slow.status, 200);
	ASSERT_EQ(p[0].status, 200);
	ASSERT_EQ(p[1].status, 500);
	ASSERT_STREQ(p[1].body, "{\"ok\":false,\"error\":\"internal error\"}");
	ASSERT_EQ(p[2].status, 200);
	ASSERT_EQ(p[3].status, 200);
	ASSERT_STREQ(tp_val("SELECT string_agg(request_id, ',' ORDER BY request_id) FROM leads"
			    " WHERE request_id IN ('g1', 'g2', 'g3', 'boom')", NULL), "g1,g2,g3");
	ASSERT_STREQ(tp_val("SELECT concat_ws('|', http_status, outcome, error) FROM postbacks_in"
			    " WHERE query LIKE '%request_id=boom%'", NULL),
		     "500|error|write: ERROR: boom refused");
}

/* The group's statements are prepared once per connection, and again on the
 * connection a worker makes after its own was cut: the first postback
 * after the cut is answered as usual, from a new server process. */
TP_TEST(postback_statements_prepared_again_on_a_new_connection, NULL, 1)
{
	static const char others[] = "FROM pg_stat_activity WHERE datname = current_database()"
				     " AND application_name = 'leadsync' AND pid <> pg_backend_pid()";
	char sql[256], before[4096];
	struct tp_resp r;
	int i;

	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=prep-1&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	snprintf(sql, sizeof(sql), "SELECT string_agg(pid::text, ',' ORDER BY pid) %s", others);
	snprintf(before, sizeof(before), "%s", tp_val(sql, NULL));
	ASSERT(strcmp(before, "(null)") != 0);
	snprintf(sql, sizeof(sql), "SELECT count(pg_terminate_backend(pid)) %s", others);
	ASSERT(strcmp(tp_val(sql, NULL), "0") != 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) %s AND pid = ANY (string_to_array($1, ',')::int[])",
		 others);
	for (i = 0; i < 1000 && strcmp(tp_val(sql, before), "0") != 0; i++)
		usleep(10000);
	ASSERT_STREQ(tp_val(sql, before), "0");

	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=prep-2&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT(strstr(r.body, "\"duplicate\":false") != NULL);
	tp_resp_release(&r);
	ASSERT_EQ(tp_pb(t, "click_id=" SEED_CLICK "&request_id=prep-1&action=lead&status=approved",
			&r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT string_agg(request_id || ' ' || status, ',' ORDER BY request_id)"
			    " FROM leads WHERE request_id IN ('prep-1', 'prep-2')", NULL),
		     "prep-1 6,prep-2 2");
}

/* --------------------------------------------------------------- clicks */

TP_TEST(click_redirect_keeps_the_landing_query, NULL, 2)
{
	struct tp_resp r;
	char loc[512], id[40], q[600];
	const char *p;

	ASSERT_EQ(tp_sends(TP_PORT(t), "GET /click/10?wm=7&sub1=abc&sub2=%E2%9C%93 HTTP/1.1\r\nHost: t\r\n"
			   "User-Agent: test \"agent\"\r\nConnection: close\r\n\r\n", &r), 0);
	ASSERT_EQ(r.status, 302);
	tp_header(&r, "Location", loc, sizeof(loc));
	tp_resp_release(&r);
	ASSERT_EQ(strncmp(loc, "https://shop.example/x?lang=en&click_id=", 40), 0);
	p = loc + 40;
	ASSERT_EQ(strlen(p), 36 + 4);
	ASSERT_STREQ(p + 36, "#top");
	snprintf(id, sizeof(id), "%.36s", p);
	ASSERT_EQ(id[14], '4'); /* version 4 */
	ASSERT(strchr("89ab", id[19]) != NULL);
	ASSERT_STREQ(tp_val("SELECT concat_ws('|', offer, wm, subs::text, ip, ua) FROM clicks"
			    " WHERE id = $1::uuid", id),
		     "10|7|{\"sub1\": \"abc\", \"sub2\": \"\xe2\x9c\x93\"}|127.0.0.1|test \"agent\"");
	/* the advertiser's postback for that click is taken */
	snprintf(q, sizeof(q), "click_id=%s&request_id=clk-1&action=lead&status=hold", id);
	ASSERT_EQ(tp_pb(t, q, &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	/* another offer's own parameter and a landing without a query */
	ASSERT_EQ(tp_get(TP_PORT(t), "/click/11", &r), 0);
	ASSERT_EQ(r.status, 302);
	ASSERT_EQ(strncmp(tp_header(&r, "Location", loc, sizeof(loc)), "https://shop.example/y?cid=",
			  27), 0);
	tp_resp_release(&r);
	/* unknown, disabled, no landing, bad wm */
	ASSERT_EQ(tp_get(TP_PORT(t), "/click/999", &r), 0);
	ASSERT_EQ(r.status, 404);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"unknown offer 999\"}");
	tp_resp_release(&r);
	ASSERT_EQ(tp_get(TP_PORT(t), "/click/13", &r), 0);
	ASSERT_EQ(r.status, 404);
	tp_resp_release(&r);
	ASSERT_EQ(tp_get(TP_PORT(t), "/click/20", &r), 0);
	ASSERT_EQ(r.status, 404);
	tp_resp_release(&r);
	ASSERT_EQ(tp_get(TP_PORT(t), "/click/x1", &r), 0);
	ASSERT_EQ(r.status, 404);
	tp_resp_release(&r);
	ASSERT_EQ(tp_get(TP_PORT(t), "/click/10?wm=seven", &r), 0);
	ASSERT_EQ(r.status, 400);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM clicks WHERE offer IN (13, 20)", NULL), "1");
}

TEST(click_uuid_is_random_version_4)
{
	char a[37], b[37];
	int i;

	ASSERT_EQ(click_uuid(a), 0);
	ASSERT_EQ(click_uuid(b), 0);
	ASSERT(strcmp(a, b) != 0);
	ASSERT_EQ(strlen(a), 36);
	for (i = 0; i < 36; i++)
		ASSERT(i == 8 || i == 13 || i == 18 || i == 23 ? a[i] == '-'
							      : strchr("0123456789abcdef", a[i]) != NULL);
	ASSERT_EQ(a[14], '4');
	ASSERT(strchr("89ab", a[19]) != NULL);
}

/* --------------------------------------------------------------- intake */

TP_TEST(intake_with_and_without_the_token, "s3cret-token", 2)
{
	static const char two[] = "[{\"offer\": 10, \"ext\": \"IN-1\", \"status\": 2,"
				  " \"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\"},"
				  " {\"offer\": 10, \"ext\": \"IN-2\", \"status\": 3, \"base\": 12.5,"
				  " \"click_id\": \"" SEED_CLICK "\"}]";
	static const char bad[] = "[{\"offer\": 10, \"ext\": \"IN-3\", \"status\": 2},"
				  " {\"offer\": 10, \"ext\": \"IN-4\", \"status\": 13}]";
	struct tp_resp r;
	char want[128], hdr[64];

	ASSERT_EQ(tp_post(TP_PORT(t), "/api/leads", "application/json", two, sizeof(two) - 1, NULL,
			  &r), 0);
	ASSERT_EQ(r.status, 401);
	ASSERT_STREQ(tp_header(&r, "WWW-Authenticate", hdr, sizeof(hdr)), "Bearer");
	tp_resp_release(&r);
	ASSERT_EQ(tp_post(TP_PORT(t), "/api/leads", "application/json", two, sizeof(two) - 1,
			  "Authorization: Bearer s3cret-tokeN\r\n", &r), 0);
	ASSERT_EQ(r.status, 401);
	tp_resp_release(&r);
	ASSERT_EQ(tp_post(TP_PORT(t), "/api/leads", "application/json", two, sizeof(two) - 1,
			  "Authorization: Bearer s3cret-token\r\n", &r), 0);
	ASSERT_EQ(r.status, 200);
	snprintf(want, sizeof(want), "{\"ok\":true,\"leads\":[%s,",
		 tp_val("SELECT id FROM leads WHERE ext = 'IN-1'", NULL));
	ASSERT_CONTAINS(r.body, want);
	snprintf(want, sizeof(want), ",%s]}", tp_val("SELECT id FROM leads WHERE ext = 'IN-2'", NULL));
	ASSERT_CONTAINS(r.body, want);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT concat_ws(' ', status, base, click) FROM leads WHERE ext = 'IN-2'",
			    NULL), "3 12.50 " SEED_CLICK);
	ASSERT_STREQ(tp_val("SELECT source FROM lead_history h JOIN leads l ON l.id = h.lead"
			    " WHERE l.ext = 'IN-1'", NULL), "import");
	/* all or nothing, and import's own message */
	ASSERT_EQ(tp_post(TP_PORT(t), "/api/leads", "application/json", bad, sizeof(bad) - 1,
			  "Authorization: bearer s3cret-token\r\n", &r), 0);
	ASSERT_EQ(r.status, 400);
	ASSERT_CONTAINS(r.body, "lead 2: lead: 'status' must be an integer 1..12");
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE ext IN ('IN-3', 'IN-4')", NULL), "0");
	ASSERT_EQ(tp_post(TP_PORT(t), "/api/leads", "application/json", "[1]", 3,
			  "Authorization: Bearer s3cret-token\r\n", &r), 0);
	ASSERT_EQ(r.status, 400);
	tp_resp_release(&r);
}

TP_TEST(intake_is_closed_without_a_token, NULL, 1)
{
	struct tp_resp r;

	ASSERT_EQ(tp_post(TP_PORT(t), "/api/leads", "application/json", "{}", 2,
			  "Authorization: Bearer \r\n", &r), 0);
	ASSERT_EQ(r.status, 404);
	ASSERT_CONTAINS(r.body, "intake is disabled");
	tp_resp_release(&r);
}

/* ------------------------------------------------- the database away */

struct tp_load {
	int port;
	atomic_bool stop;
	int sent, other;
	atomic_int acked, unavailable; /* read by the test while the load runs */
	char acked_ids[4000][24];
	bool saw_retry_after;
};

static void *tp_load_main(void *arg)
{
	struct tp_load *l = arg;
	struct tp_resp r;
	char target[256], hdr[32];
	int i;

	for (i = 0; !atomic_load(&l->stop) && i < 4000; i++) {
		snprintf(target, sizeof(target), "/advertiser_api_key/s2s?click_id=" SEED_CLICK
			 "&request_id=down-%d&action=lead&status=hold", i);
		l->sent++;
		if (tp_get(l->port, target, &r) == 0 && r.status == 200) {
			snprintf(l->acked_ids[l->acked++], sizeof(l->acked_ids[0]), "down-%d", i);
		} else if (r.status == 503) {
			l->unavailable++;
			if (strcmp(tp_header(&r, "Retry-After", hdr, sizeof(hdr)), "5") == 0)
				l->saw_retry_after = true;
		} else {
			l->other++;
		}
		tp_resp_release(&r);
		usleep(5000);
	}
	return NULL;
}

static int tp_pg_local(const char *cmd, const char *dir, char **out)
{
	char *argv[] = { "scripts/pg-local", (char *)cmd, (char *)dir, NULL };
	const char *env[] = { "PG_FSYNC=off", NULL };
	char *o = NULL, *e = NULL;
	int rc = test_run(argv, env, NULL, &o, &e);

	if (rc != 0)
		test__fail(__FILE__, __LINE__, "pg-local %s: %s", cmd, e ? e : "");
	if (out)
		*out = o;
	else
		free(o);
	free(e);
	return rc;
}

/* The database goes away under load: postbacks get 503 with Retry-After
 * (never a 200 that is not stored), /healthz says 503; when it is back,
 * every postback answered 200 is there, and the log rows of the 503s are
 * written from the backlog. A private server in its own directory, always
 * destroyed. */
static void tp_db_down_body(const char *dir, const char *ci)
{
	struct tp t;
	struct tp_load l;
	pthread_t th;
	struct tp_resp r;
	PGconn *c = NULL;
	char err[512], cnt[32];
	int i;

	if (tp_setup(ci, false) < 0 || tp_up(&t, ci, NULL, 2) < 0)
		return;
	memset(&l, 0, sizeof(l));
	l.port = TP_PORT(&t);
	pthread_create(&th, NULL, tp_load_main, &l);
	/* each step waits for what the load saw, not for a time that a busy
	 * machine may not fill; the bounds only end a hung run */
	for (i = 0; i < 3000 && atomic_load(&l.acked) < 10; i++)
		usleep(10000);
	tp_pg_local("stop", dir, NULL);
	for (i = 0; i < 3000 && atomic_load(&l.unavailable) == 0; i++)
		usleep(10000);
	if (tp_get(TP_PORT(&t), "/healthz", &r) == 0)
		i = r.status;
	else
		i = -1;
	tp_resp_release(&r);
	if (i != 503)
		test__fail(__FILE__, __LINE__, "healthz with the database stopped: %d", i);
	tp_pg_local("start", dir, NULL);
	for (i = 0; i < 150; i++) {
		if (tp_get(TP_PORT(&t), "/healthz", &r) == 0 && r.status == 200) {
			tp_resp_release(&r);
			break;
		}
		tp_resp_release(&r);
		usleep(100000);
	}
	/* and postbacks are acknowledged again */
	{
		int before = atomic_load(&l.acked);

		for (i = 0; i < 3000 && atomic_load(&l.acked) == before; i++)
			usleep(10000);
	}
	atomic_store(&l.stop, true);
	pthread_join(th, NULL);
	if (l.unavailable == 0 || !l.saw_retry_after || l.other != 0 || l.acked < 10)
		test__fail(__FILE__, __LINE__, "sent %d: acked %d, 503 %d (Retry-After %d), other %d",
			   l.sent, l.acked, l.unavailable, l.saw_retry_after, l.other);
	/* the backlog's rows land within a few seconds */
	if (store_connect(ci, &c, err, sizeof(err)) == 0) {
		for (i = 0; i < 300; i++) {
			snprintf(cnt, sizeof(cnt), "%s",
				 tp_val_on(c, "SELECT count(*) FROM postbacks_in WHERE outcome = 'unavailable'",
					   NULL));
			if (strtol(cnt, NULL, 10) >= l.unavailable)
				break;
			usleep(100000);
		}
		if (strtol(cnt, NULL, 10) != l.unavailable)
			test__fail(__FILE__, __LINE__, "%s log rows of %d 503s", cnt, l.unavailable);
		for (i = 0; i < l.acked; i++)
			if (strcmp(tp_val_on(c, "SELECT count(*) FROM leads WHERE request_id = $1",
					     l.acked_ids[i]), "1") != 0)
				test__fail(__FILE__, __LINE__, "acknowledged %s is missing", l.acked_ids[i]);
	} else {
		test__fail(__FILE__, __LINE__, "after restart: %s", err);
	}
	PQfinish(c);
	tp_down(&t);
}

TEST(postback_database_stopped_503_and_nothing_acknowledged_lost)
{
	char dir[] = "/tmp/leadsync-pbpg.XXXXXX";
	char *ci = NULL, *full = NULL;
	struct buf b;

	if (!mkdtemp(dir)) {
		test__fail(__FILE__, __LINE__, "mkdtemp");
		return;
	}
	buf_init(&b, 1024);
	if (tp_pg_local("start", dir, &ci) == 0 && ci) {
		ci[strcspn(ci, "\n")] = '\0';
		if (buf_addf(&b, "%s dbname=postgres", ci) == 0) {
			full = b.p;
			tp_db_down_body(dir, full);
		}
	}
	tp_pg_local("destroy", dir, NULL);
	free(ci);
	buf_release(&b);
}

/* ------------------------------------------------------- healthz, run */

TP_TEST(daemon_healthz_answers_with_the_database, NULL, 1)
{
	struct tp_resp r;

	ASSERT_EQ(tp_get(TP_PORT(t), "/healthz", &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_STREQ(r.body, "{\"ok\":true,\"loop\":\"up\",\"db\":\"up\"}");
	tp_resp_release(&r);
}

static int tp_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* `leadsync run` as a child: serves, and stops cleanly on SIGTERM. */
TEST(daemon_run_serves_and_stops_on_sigterm)
{
	const char *bin = getenv("LEADSYNC_TEST_BIN");
	const char *ci = tp_db();
	char db[600], listen[64];
	struct tp_resp r;
	int port = tp_free_port(), st = 0, i, code = -1;
	pid_t pid;

	if (!bin || !ci)
		ASSERT(!"LEADSYNC_TEST_BIN and the test database are needed");
	snprintf(db, sizeof(db), "LEADSYNC_DB=%s", ci);
	snprintf(listen, sizeof(listen), "LEADSYNC_LISTEN=127.0.0.1:%d", port);
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		char *argv[] = { (char *)bin, "run", NULL };
		int devnull = open("/dev/null", O_WRONLY);

		dup2(devnull, 2);
		putenv(db);
		putenv(listen);
		putenv("LEADSYNC_LOG_LEVEL=error");
		execv(bin, argv);
		_exit(127);
	}
	for (i = 0; i < 200; i++) {
		if (tp_get(port, "/healthz", &r) == 0 && r.status == 200) {
			code = 200;
			tp_resp_release(&r);
			break;
		}
		tp_resp_release(&r);
		usleep(50000);
	}
	if (code == 200 && tp_get(port, "/advertiser_api_key/s2s?click_id=" SEED_CLICK
				   "&request_id=run-1&action=lead&status=hold", &r) == 0)
		code = r.status;
	tp_resp_release(&r);
	kill(pid, SIGTERM);
	for (i = 0; i < 200 && waitpid(pid, &st, WNOHANG) == 0; i++)
		usleep(50000);
	if (i == 200) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		ASSERT(!"leadsync run did not stop on SIGTERM within 10 s");
	}
	ASSERT_EQ(code, 200);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE request_id = 'run-1'", NULL), "1");
}

/* ------------------------------------------------------------ the pool */

struct tp_job {
	struct db_job job;
	atomic_int *done;
	int *groups_seen;
	int value;
	int status;
};

static void tp_job_done(struct db_job *j)
{
	struct tp_job *tj = j->data;

	tj->status = j->status;
	atomic_fetch_add(tj->done, 1);
}

static int tp_job_sleep(PGconn *c, struct db_job *j)
{
	PGresult *r = PQexec(c, "SELECT pg_sleep(0.2)");
	int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? DB_OK : DB_EFAIL;

	PQclear(r);
	return rc;
}

static atomic_int tp_groups, tp_largest;

static void tp_job_group(PGconn *c, struct db_job **jobs, size_t n)
{
	size_t i;

	atomic_fetch_add(&tp_groups, 1);
	if ((int)n > atomic_load(&tp_largest))
		atomic_store(&tp_largest, (int)n);
	for (i = 0; i < n; i++) {
		struct tp_job *tj = jobs[i]->data;

		jobs[i]->status = tj->value < 0 ? DB_EFAIL : DB_OK;
		if (tj->value < 0)
			snprintf(jobs[i]->err, sizeof(jobs[i]->err), "job %d refused", tj->value);
	}
}

struct tp_pool {
	uv_loop_t loop;
	struct db *db;
	atomic_int done;
	struct tp_job jobs[21];
};

static void tp_pool_stop(uv_idle_t *h)
{
	struct tp_pool *p = h->data;

	if (atomic_load(&p->done) < 21)
		return;
	uv_idle_stop(h);
	uv_close((uv_handle_t *)h, NULL);
	db_close(p->db, NULL, NULL);
}

/* One slow job holds the only worker; twenty group jobs queued meanwhile
 * are handed to one call; a job that fails fails alone. */
TEST(db_group_jobs_queued_together_run_in_one_call)
{
	const char *ci = tp_db();
	struct tp_pool *p;
	struct db_config cfg = { 0 };
	uv_idle_t idle;
	char err[256];
	int i;

	ASSERT(ci);
	p = calloc(1, sizeof(*p));
	ASSERT(p);
	uv_loop_init(&p->loop);
	cfg.conninfo = ci;
	cfg.workers = 1;
	if (db_open(&p->loop, &cfg, &p->db, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "db_open: %s", err);
		uv_loop_close(&p->loop);
		free(p);
		return;
	}
	atomic_store(&tp_groups, 0);
	atomic_store(&tp_largest, 0);
	for (i = 0; i < 21; i++) {
		struct tp_job *tj = &p->jobs[i];

		tj->done = &p->done;
		tj->value = i == 7 ? -7 : i;
		tj->job.run = i == 0 ? tp_job_sleep : NULL;
		tj->job.group = i == 0 ? NULL : tp_job_group;
		tj->job.done = tp_job_done;
		tj->job.data = tj;
		if (db_submit(p->db, &tj->job) < 0)
			test__fail(__FILE__, __LINE__, "submit %d", i);
	}
	uv_idle_init(&p->loop, &idle);
	idle.data = p;
	uv_idle_start(&idle, tp_pool_stop);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	ASSERT_EQ(uv_loop_close(&p->loop), 0);
	for (i = 0; i < 21; i++)
		if (p->jobs[i].status != (i == 7 ? DB_EFAIL : DB_OK))
			test__fail(__FILE__, __LINE__, "job %d: status %d", i, p->jobs[i].status);
	free(p);
	ASSERT_EQ(atomic_load(&tp_groups), 1);
	ASSERT_EQ(atomic_load(&tp_largest), 20);
}

/* With no database to reach, a job completes with DB_EDOWN at once: the
 * run ends (the loop returns) with every job failed, none kept for a retry
 * that could never work. How fast is the machine's business. */
TEST(db_unreachable_database_fails_jobs_fast)
{
	struct tp_pool *p = calloc(1, sizeof(*p));
	struct db_config cfg = { 0 };
	uv_idle_t idle;
	char err[256];
	int i, saved = log_level;

	ASSERT(p);
	uv_loop_init(&p->loop);
	cfg.conninfo = "host=/nonexistent-leadsync port=5432 dbname=x";
	cfg.workers = 2;
	log_level = -1;
	ASSERT_EQ(db_open(&p->loop, &cfg, &p->db, err, sizeof(err)), 0);
	atomic_store(&p->done, 21 - 5);
	for (i = 0; i < 5; i++) {
		struct tp_job *tj = &p->jobs[i];

		tj->done = &p->done;
		tj->job.group = tp_job_group;
		tj->job.done = tp_job_done;
		tj->job.data = tj;
		ASSERT_EQ(db_submit(p->db, &tj->job), 0);
	}
	uv_idle_init(&p->loop, &idle);
	idle.data = p;
	uv_idle_start(&idle, tp_pool_stop);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	uv_loop_close(&p->loop);
	log_level = saved;
	for (i = 0; i < 5; i++)
		ASSERT_EQ(p->jobs[i].status, DB_EDOWN);
	free(p);
}

/* Every request to a postback route has its log row, refusals included
 * (414, 405 for HEAD and DELETE), and a refused request to another route
 * (GET /healthz with a target too long) is no postback: it has none. */
TP_TEST(postback_log_has_the_refused_requests_of_its_routes_only, NULL, 2)
{
	struct tp_resp r;
	struct buf req;

	buf_init(&req, 0);
	test_defer((test_cleanup_fn)buf_release, &req);
	/* a target over 8 KiB: to a postback route, then to /healthz */
	for (int k = 0; k < 2; k++) {
		buf_reset(&req);
		ASSERT_EQ(buf_adds(&req, k ? "GET /healthz?request_id=health&pad="
					   : "GET /advertiser_api_key/s2s?request_id=long&pad="), 0);
		while (req.len < 9000)
			ASSERT_EQ(buf_adds(&req, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), 0);
		ASSERT_EQ(buf_adds(&req, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), 0);
		ASSERT_EQ(tp_sends(TP_PORT(t), req.p, &r), 0);
		ASSERT_EQ(r.status, 414);
		tp_resp_release(&r);
	}
	ASSERT_EQ(tp_sends(TP_PORT(t), "HEAD /advertiser_api_key/s2s?request_id=head HTTP/1.1\r\n"
			   "Host: t\r\nConnection: close\r\n\r\n", &r), 0);
	ASSERT_EQ(r.status, 405);
	tp_resp_release(&r);
	ASSERT_EQ(tp_sends(TP_PORT(t), "DELETE /advertiser_api_key/s2s?request_id=del HTTP/1.1\r\n"
			   "Host: t\r\nConnection: close\r\n\r\n", &r), 0);
	ASSERT_EQ(r.status, 405);
	tp_resp_release(&r);
	/* their rows are written after the answers: wait for them (bounded
	 * only to stop a hung run) */
	for (int i = 0; i < 3000; i++) {
		const char *n = tp_val("SELECT count(*) FROM postbacks_in WHERE query LIKE"
				       " 'request_id=long%' OR query LIKE 'request_id=head%'"
				       " OR query LIKE 'request_id=del%'", NULL);

		if (n && strcmp(n, "3") == 0)
			break;
		usleep(10000);
	}
	ASSERT_STREQ(tp_val("SELECT string_agg(concat_ws('|', method, path, http_status, outcome),"
			    " ',' ORDER BY id) FROM postbacks_in WHERE query LIKE 'request_id=long%'"
			    " OR query LIKE 'request_id=head%' OR query LIKE 'request_id=del%'", NULL),
		     "GET|/***/s2s|414|invalid,HEAD|/***/s2s|405|invalid,"
		     "DELETE|/***/s2s|405|invalid");
	ASSERT_STREQ(tp_val("SELECT count(*) FROM postbacks_in WHERE query LIKE '%health%'"
			    " OR path NOT LIKE '/***%'", NULL), "0");
}

/* A test connection holding an ACCESS EXCLUSIVE lock on postbacks_in: the
 * daemon's log writes wait for its COMMIT (or its end). NULL on failure. */
static PGconn *tp_lock_log(const char *ci)
{
	PGconn *c = NULL;
	PGresult *r;
	char err[512];

	if (store_connect(ci, &c, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "lock: %s", err);
		return NULL;
	}
	r = PQexec(c, "BEGIN; LOCK TABLE postbacks_in IN ACCESS EXCLUSIVE MODE");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		test__fail(__FILE__, __LINE__, "lock: %s", PQresultErrorMessage(r));
		PQfinish(c);
		c = NULL;
	}
	PQclear(r);
	return c;
}

static void tp_unlock_log(PGconn **c)
{
	PQfinish(*c); /* the session's end releases the lock */
	*c = NULL;
}

/* Waits until n sessions wait for the lock on postbacks_in; bounded only
 * to stop a hung run. */
static bool tp_log_waiters(int n)
{
	char want[16];

	snprintf(want, sizeof(want), "%d", n);
	for (int i = 0; i < 3000; i++) {
		if (strcmp(tp_val("SELECT count(*) FROM pg_locks WHERE NOT granted"
				  " AND relation = 'postbacks_in'::regclass", NULL), want) == 0)
			return true;
		usleep(10000);
	}
	return false;
}

#define TP_CAP_PB "/advertiser_api_key/s2s?request_id=cap-%c&click_id=" SEED_CLICK \
		  "&action=lead&status=hold"

/* A daemon with the log table locked, and client connections; released
 * (lock, connections, daemon, itself) by tp_locked_release, deferred. */
struct tp_locked {
	struct tp t;
	PGconn *lock;
	int fd[4];
	bool up;
};

static void tp_locked_release(void *arg)
{
	struct tp_locked *x = arg;
	int i;

	if (x->lock)
		tp_unlock_log(&x->lock);
	for (i = 0; i < 4; i++)
		if (x->fd[i] >= 0)
			close(x->fd[i]);
	if (x->up)
		tp_down(&x->t);
	free(x);
}

/* Starts the daemon with cfg and locks the log table; NULL on failure. */
static struct tp_locked *tp_locked_up(const struct daemon_config *cfg)
{
	const char *ci = tp_db();
	struct tp_locked *x = calloc(1, sizeof(*x));
	int i;

	if (!x)
		return NULL;
	for (i = 0; i < 4; i++)
		x->fd[i] = -1;
	test_defer(tp_locked_release, x);
	if (!ci || tp_up_cfg(&x->t, ci, cfg) < 0)
		return NULL;
	x->up = true;
	x->lock = tp_lock_log(ci);
	return x->lock ? x : NULL;
}

/* A postback refused at the connection cap has its row (503, outcome
 * unavailable, the key masked); a /healthz refused there has none. Two
 * postbacks held at their commit (one per worker and group) fill a cap of
 * 2; the loop is held while a postback and a /healthz connect and send, so
 * their request lines are there when they are accepted and refused. */
TEST(postback_log_has_the_503_at_the_connection_cap)
{
	struct daemon_config cfg = { .db_workers = 2, .commit_batch = 1,
				     .limits = { .max_connections = 2 } };
	struct tp_locked *x = tp_locked_up(&cfg);
	char req[512], hdr[16];
	struct tp_resp r;
	int i;

	ASSERT(x);
	for (i = 0; i < 2; i++) {
		snprintf(req, sizeof(req), "GET " TP_CAP_PB " HTTP/1.1\r\nHost: t\r\n"
			 "Connection: close\r\n\r\n", 'a' + i);
		x->fd[i] = tp_open(TP_PORT(&x->t), req);
		ASSERT(x->fd[i] >= 0);
	}
	ASSERT(tp_log_waiters(2));
	tp_pause(&x->t);
	snprintf(req, sizeof(req), "GET " TP_CAP_PB " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		 'c');
	x->fd[2] = tp_open(TP_PORT(&x->t), req);
	x->fd[3] = tp_open(TP_PORT(&x->t), "GET /healthz?request_id=cap-d HTTP/1.1\r\nHost: t\r\n"
					   "Connection: close\r\n\r\n");
	tp_resume(&x->t);
	ASSERT(x->fd[2] >= 0 && x->fd[3] >= 0);
	/* the two refused at the cap, then the two held, once the lock goes */
	for (int k = 0; k < 4; k++) {
		int st;

		i = (k + 2) % 4;
		st = tp_recv(x->fd[i], &r) == 0 ? r.status : -1;

		x->fd[i] = -1;
		tp_header(&r, "Retry-After", hdr, sizeof(hdr));
		tp_resp_release(&r);
		ASSERT_EQ(st, i < 2 ? 200 : 503);
		if (i >= 2)
			ASSERT_STREQ(hdr, "2");
		if (i == 3)
			tp_unlock_log(&x->lock);
	}
	/* the 503's row may be written after the answers: wait for it */
	for (i = 0; i < 3000; i++) {
		if (strcmp(tp_val("SELECT count(*) FROM postbacks_in WHERE query LIKE"
				  " 'request_id=cap-_&%'", NULL), "3") == 0)
			break;
		usleep(10000);
	}
	ASSERT_STREQ(tp_val("SELECT concat_ws('|', method, path, http_status, outcome, error,"
			    " remote) FROM postbacks_in WHERE query LIKE 'request_id=cap-c&%'", NULL),
		     "GET|/***/s2s|503|unavailable|too many connections|127.0.0.1");
	ASSERT_STREQ(tp_val("SELECT count(*) FROM postbacks_in WHERE query LIKE '%cap-d%'"
			    " OR path NOT LIKE '/***%'", NULL), "0");
}

#define TP_TERM_ROWS 300

/* The stop writes every row queued for the log while the database is up,
 * in turns of what its queue takes, not one turn and a drop. With the log
 * table locked, TP_TERM_ROWS refused postbacks (HEAD, 405: answered at
 * once, each a log row) outgrow the database queue of 10 into the backlog;
 * the stop starts (the listener closes), the lock goes, and every row is
 * there when the daemon has ended. */
TEST(postback_stop_writes_the_whole_log_backlog)
{
	struct daemon_config cfg = { .db_workers = 1, .db_queue = 10 };
	struct tp_locked *x = tp_locked_up(&cfg);
	char req[256];
	struct tp_resp r;
	int i, fd;

	ASSERT(x);
	for (i = 0; i < TP_TERM_ROWS; i++) {
		snprintf(req, sizeof(req), "HEAD /advertiser_api_key/s2s?request_id=term-%d HTTP/1.1\r\n"
			 "Host: t\r\nConnection: close\r\n\r\n", i);
		fd = tp_sends(TP_PORT(&x->t), req, &r) == 0 ? r.status : -1;
		tp_resp_release(&r);
		ASSERT_EQ(fd, 405);
	}
	tp_stop(&x->t);
	/* the stop has begun once the listener refuses connections */
	for (i = 0; i < 3000 && (fd = tp_connect(TP_PORT(&x->t))) >= 0; i++) {
		close(fd);
		usleep(1000);
	}
	ASSERT(i < 3000);
	tp_unlock_log(&x->lock);
	tp_join(&x->t);
	snprintf(req, sizeof(req), "%d", TP_TERM_ROWS);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM postbacks_in WHERE query LIKE 'request_id=term-%'",
			    NULL), req);
}

/* ------------------------------------------------------ authentication */

/* Advertisers with postback authentication (pbauth.h), set the way an
 * admin sets them: import lines. 3 takes postbacks only from 10.0.0.0/8
 * and an IPv6 network (not from loopback); 4 from loopback (IPv4 or 6);
 * 5 only signed. Each has an offer, a goal and a click. */
#define TP_SECRET "PLANTEDpb-secret-5150"
#define AUTH3_CLICK "44444444-4444-4444-8444-444444444444"
#define AUTH4_CLICK "55555555-5555-4555-8555-555555555555"
#define AUTH5_CLICK "66666666-6666-4666-8666-666666666666"
static const char tp_auth_network[] =
	"{\"advertiser\": {\"id\": 3, \"name\": \"Far\", \"api_key\": \"k-far\","
	" \"postback_sources\": [\"10.0.0.0/8\", \"2001:db8::/32\"]}}\n"
	"{\"advertiser\": {\"id\": 4, \"name\": \"Near\", \"api_key\": \"k-near\","
	" \"postback_sources\": [\"127.0.0.0/8\", \"::1\"]}}\n"
	"{\"advertiser\": {\"id\": 5, \"name\": \"Signed\", \"api_key\": \"k-signed\","
	" \"postback_secret\": \"" TP_SECRET "\"}}\n"
	"{\"offer\": {\"id\": 30, \"advertiser\": 3, \"name\": \"A3\"}}\n"
	"{\"offer\": {\"id\": 31, \"advertiser\": 4, \"name\": \"A4\"}}\n"
	"{\"offer\": {\"id\": 32, \"advertiser\": 5, \"name\": \"A5\"}}\n"
	"{\"goal\": {\"offer\": 30, \"code\": \"lead\", \"payout\": \"fixed\", \"currency\": \"USD\"}}\n"
	"{\"goal\": {\"offer\": 31, \"code\": \"lead\", \"payout\": \"fixed\", \"currency\": \"USD\"}}\n"
	"{\"goal\": {\"offer\": 32, \"code\": \"lead\", \"payout\": \"fixed\", \"currency\": \"USD\"}}\n"
	"{\"click\": {\"id\": \"" AUTH3_CLICK "\", \"offer\": 30}}\n"
	"{\"click\": {\"id\": \"" AUTH4_CLICK "\", \"offer\": 31}}\n"
	"{\"click\": {\"id\": \"" AUTH5_CLICK "\", \"offer\": 32}}\n";

/* Imports lines into the shared database: 0, or -1 with err. */
static int tp_import(const char *lines, char *err, size_t errlen)
{
	struct import_stats st;
	FILE *f = fmemopen((void *)lines, strlen(lines), "r");
	int rc;

	if (!f) {
		snprintf(err, errlen, "fmemopen");
		return -1;
	}
	rc = import_run(tp_pg, f, &st, err, errlen);
	fclose(f);
	return rc;
}

/* A request to target with the signature header of time t over what is
 * signed (body, or sign_body when not NULL: a tampered body), secret as
 * given; GET when body is NULL. */
static int tp_signed(struct tp *t, const char *target, const char *body, const char *sign_body,
		     int64_t at, const char *secret, struct tp_resp *r)
{
	const char *q = strchr(target, '?'), *sb = sign_body ? sign_body : body ? body : "";
	char path[256], ts[32], hex[65], hdr[160];
	struct buf c;
	int rc = -1;

	snprintf(path, sizeof(path), "%.*s", q ? (int)(q - target) : (int)strlen(target), target);
	snprintf(ts, sizeof(ts), "%" PRId64, at);
	buf_init(&c, 0);
	if (pbauth_canonical(&c, ts, body ? "POST" : "GET", path, q ? q + 1 : "", sb, strlen(sb)) < 0 ||
	    pbauth_sign(secret, c.p, c.len, hex) < 0)
		goto out;
	snprintf(hdr, sizeof(hdr), PBAUTH_HEADER ": t=%s,v1=%s\r\n", ts, hex);
	if (body) {
		rc = tp_post(TP_PORT(t), target, "application/json", body, strlen(body), hdr, r);
	} else {
		buf_reset(&c);
		if (buf_addf(&c, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n", target,
			     hdr) == 0)
			rc = tp_send(TP_PORT(t), c.p, c.len, r);
	}
out:
	buf_release(&c);
	return rc;
}

/* The log row of the last postback to an advertiser: status, outcome,
 * error, remote, lead. */
#define TP_LAST_ROW(adv)                                                                   \
	tp_val("SELECT concat_ws(' | ', http_status, outcome, error, remote, lead IS NOT NULL)" \
	       " FROM postbacks_in WHERE advertiser = " adv " ORDER BY id DESC LIMIT 1", NULL)

TP_TEST(postback_source_networks_allow_and_refuse, NULL, 2)
{
	struct tp_resp r;
	char err[512];

	if (tp_import(tp_auth_network, err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "import: %s", err);
	ASSERT_STREQ(tp_val("SELECT postback_sources::text FROM advertisers WHERE id = 3", NULL),
		     "{10.0.0.0/8,2001:db8::/32}");
	/* loopback is in 4's networks */
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-near/s2s?click_id=" AUTH4_CLICK
			 "&request_id=net-1&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_STREQ(TP_LAST_ROW("4"), "200 | created | 127.0.0.1 | t");
	/* and not in 3's: 403 before anything else is looked at (the
	 * parameters are missing too), a row, no lead */
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-far/s2s?click_id=" AUTH3_CLICK
			 "&request_id=net-2&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"source address not allowed\"}");
	tp_resp_release(&r);
	ASSERT_STREQ(TP_LAST_ROW("3"), "403 | forbidden | source address not allowed | 127.0.0.1 | f");
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-far/s2s?request_id=net-3", &r), 0);
	ASSERT_EQ(r.status, 403);
	tp_resp_release(&r);
	ASSERT_STREQ(tp_val("SELECT count(*) FROM leads WHERE offer = 30", NULL), "0");
	/* the networks changed by a new import line: in force at the next
	 * postback (no cache to go stale) */
	if (tp_import("{\"advertiser\": {\"id\": 3, \"name\": \"Far\", \"api_key\": \"k-far\","
		      " \"postback_sources\": [\"10.0.0.0/8\", \"127.0.0.1\"]}}\n", err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "import: %s", err);
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-far/s2s?click_id=" AUTH3_CLICK
			 "&request_id=net-2&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	/* a bad network is refused by the import, with the line and the value */
	ASSERT_EQ(tp_import("{\"advertiser\": {\"id\": 3, \"name\": \"Far\", \"api_key\": \"k-far\","
			    " \"postback_sources\": [\"10.0.0.1/8\"]}}\n", err, sizeof(err)), -1);
	ASSERT_STREQ(err, "line 1: advertiser 3: 'postback_sources': '10.0.0.1/8' has bits set past "
			  "the prefix: 10.0.0.0/8?");
	ASSERT_EQ(tp_import("{\"advertiser\": {\"id\": 3, \"name\": \"Far\", \"api_key\": \"k-far\","
			    " \"postback_sources\": \"10.0.0.0/8\"}}\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "must be an array of networks");
	/* the refusals are counted by outcome in /metrics */
	ASSERT_EQ(tp_get(TP_PORT(t), "/metrics", &r), 0);
	ASSERT_CONTAINS(r.body, "leadsync_postbacks_total{outcome=\"forbidden\",code=\"403\"} 2");
	tp_resp_release(&r);
	/* back to any address: null */
	if (tp_import("{\"advertiser\": {\"id\": 3, \"name\": \"Far\", \"api_key\": \"k-far\","
		      " \"postback_sources\": []}}\n", err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "import: %s", err);
	ASSERT_EQ(tp_get(TP_PORT(t), "/k-far/s2s?click_id=" AUTH3_CLICK
			 "&request_id=net-4&action=lead&status=hold", &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
}

TP_TEST(postback_signature_good_bad_expired_missing_tampered, NULL, 2)
{
	static const char body[] = "{\"click_id\":\"" AUTH5_CLICK "\",\"request_id\":\"sig-2\","
				   "\"action\":\"lead\",\"status\":\"hold\"}";
	static const char forged[] = "{\"click_id\":\"" AUTH5_CLICK "\",\"request_id\":\"sig-2\","
				     "\"action\":\"lead\",\"status\":\"approved\"}";
	const char *get = "/k-signed/s2s?click_id=" AUTH5_CLICK "&request_id=sig-1&action=lead"
			  "&status=hold";
	int64_t now = (int64_t)time(NULL);
	struct tp_resp r;
	char err[512];

	if (tp_import(tp_auth_network, err, sizeof(err)) < 0)
		test__fail(__FILE__, __LINE__, "import: %s", err);
	/* good: GET and POST */
	ASSERT_EQ(tp_signed(t, get, NULL, NULL, now, TP_SECRET, &r), 0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
	ASSERT_EQ(tp_signed(t, "/k-signed/s2s", body, NULL, now, TP_SECRET, &r), 0);
	ASSERT_EQ(r.status, 200);
	ASSERT_CONTAINS(r.body, "\"duplicate\":false");
	tp_resp_release(&r);
	ASSERT_STREQ(TP_LAST_ROW("5"), "200 | created | 127.0.0.1 | t");
	/* missing */
	ASSERT_EQ(tp_get(TP_PORT(t), get, &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"signature missing\"}");
	tp_resp_release(&r);
	ASSERT_STREQ(TP_LAST_ROW("5"), "403 | forbidden | signature missing | 127.0.0.1 | f");
	/* bad: another secret */
	ASSERT_EQ(tp_signed(t, get, NULL, NULL, now, "PLANTEDpb-secret-5151", &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"signature mismatch\"}");
	tp_resp_release(&r);
	ASSERT_STREQ(TP_LAST_ROW("5"), "403 | forbidden | signature mismatch | 127.0.0.1 | f");
	/* body tampered: signed hold, sent approved */
	ASSERT_EQ(tp_signed(t, "/k-signed/s2s", forged, body, now, TP_SECRET, &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"signature mismatch\"}");
	tp_resp_release(&r);
	/* query tampered: the signature of sig-1 on sig-3 */
	{
		char hdr[200], hex[65], ts[32], req[1024];
		struct buf c;

		snprintf(ts, sizeof(ts), "%" PRId64, now);
		buf_init(&c, 0);
		ASSERT_EQ(pbauth_canonical(&c, ts, "GET", "/k-signed/s2s", strchr(get, '?') + 1, "", 0),
			  0);
		ASSERT_EQ(pbauth_sign(TP_SECRET, c.p, c.len, hex), 0);
		buf_release(&c);
		snprintf(hdr, sizeof(hdr), "X-LEADSYNC-SIGNATURE: t=%s,v1=%s\r\n", ts, hex);
		snprintf(req, sizeof(req), "GET /k-signed/s2s?click_id=" AUTH5_CLICK "&request_id=sig-3"
			 "&action=lead&status=hold HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
			 hdr);
		ASSERT_EQ(tp_sends(TP_PORT(t), req, &r), 0);
		ASSERT_EQ(r.status, 403);
		ASSERT_CONTAINS(r.body, "signature mismatch");
		tp_resp_release(&r);
	}
	/* expired: right signature, t out of the window (300 s), either way */
	ASSERT_EQ(tp_signed(t, get, NULL, NULL, now - 1000, TP_SECRET, &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_STREQ(r.body, "{\"ok\":false,\"error\":\"signature expired\"}");
	tp_resp_release(&r);
	ASSERT_STREQ(TP_LAST_ROW("5"), "403 | forbidden | signature expired | 127.0.0.1 | f");
	ASSERT_EQ(tp_signed(t, get, NULL, NULL, now + 1000, TP_SECRET, &r), 0);
	ASSERT_EQ(r.status, 403);
	ASSERT_CONTAINS(r.body, "signature expired");
	tp_resp_release(&r);
	/* nothing refused changed a lead; the secret is in no log row */
	ASSERT_STREQ(tp_val("SELECT string_agg(request_id || ':' || status, ',' ORDER BY request_id)"
			    " FROM leads WHERE offer = 32", NULL), "sig-1:2,sig-2:2");
	ASSERT_STREQ(tp_val("SELECT count(*) FROM postbacks_in p WHERE p::text LIKE '%PLANTED%'",
			    NULL), "0");
	/* an advertiser without a secret ignores a signature header */
	ASSERT_EQ(tp_signed(t, "/advertiser_api_key/s2s?click_id=" SEED_CLICK
			    "&request_id=sig-4&action=lead&status=hold", NULL, NULL, 1, "whatever", &r),
		  0);
	ASSERT_EQ(r.status, 200);
	tp_resp_release(&r);
}
