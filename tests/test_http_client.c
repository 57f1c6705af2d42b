/* test_http_client: the CRM HTTP client against the mock CRM over loopback: caps, holds, rate keys, limits, cancel and close. */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "mock_crm.h"

/* What one callback saw. */
struct call {
	int n;
	enum http_outcome outcome;
	long status;
	char body[1024];
	size_t body_len;
	uint64_t bytes;
	long retry_after;
	long redirects;
	double total_ms;
	double queued_ms;
	char url[256];
	char ctype[64];
	char error[256];
	uint64_t t_done;
	struct http_client_stats st; /* the client's counters inside the callback */
};

struct fx {
	uv_loop_t loop;
	struct http_client *c;
	struct mock_crm *m;
	bool loop_ok;
	bool closed_by_test; /* http_client_close() was called: not again */
	int ncalls;         /* callbacks so far */
	unsigned max_in_flight; /* the client's in_flight gauge, highest seen in callbacks */
};

static struct fx *cur;

static void on_call(struct http_client_req *req, struct http_result *res, void *ud)
{
	struct call *k = ud;

	k->n++;
	k->outcome = res->outcome;
	k->status = res->status;
	k->body_len = res->body_len;
	snprintf(k->body, sizeof(k->body), "%s", res->body);
	k->bytes = res->bytes;
	k->retry_after = res->retry_after_s;
	k->redirects = res->redirects;
	k->total_ms = res->total_ms;
	k->queued_ms = res->queued_ms;
	snprintf(k->url, sizeof(k->url), "%s", res->effective_url);
	snprintf(k->ctype, sizeof(k->ctype), "%s", res->content_type);
	snprintf(k->error, sizeof(k->error), "%s", res->error);
	k->t_done = uv_hrtime() / 1000;
	http_client_stats(cur->c, &k->st);
	if (k->st.in_flight > cur->max_in_flight)
		cur->max_in_flight = (unsigned)k->st.in_flight;
	cur->ncalls++;
}

static void on_tick(uv_timer_t *t)
{
}

/* Runs the loop until *count reaches want or ms pass. */
static bool run_until(struct fx *f, const int *count, int want, uint64_t ms)
{
	uint64_t end = uv_hrtime() + ms * 1000000u;
	uv_timer_t tick;

	uv_timer_init(&f->loop, &tick);
	uv_timer_start(&tick, on_tick, 20, 20);
	while (*count < want && uv_hrtime() < end)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return *count >= want;
}

static void on_closed(struct http_client *c, void *data);

static void mock_stop_cb(void *m)
{
	mock_crm_stop(m);
}

/* What a test that failed half-way left: the client, the loop, the mock. */
static void fx_cleanup(void *arg)
{
	struct fx *f = arg;
	int closed = 0, i;

	if (f->c && !f->closed_by_test) {
		http_client_close(f->c, on_closed, &closed);
		for (i = 0; i < 100000 && !closed; i++)
			uv_run(&f->loop, UV_RUN_ONCE);
	}
	f->c = NULL;
	if (f->loop_ok) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		uv_loop_close(&f->loop);
	}
	mock_crm_stop(f->m);
	f->m = NULL;
}

static bool fx_start(struct fx *f, const struct http_client_limits *lim,
		     const struct mock_route *routes, size_t nroutes)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	cur = f;
	if (uv_loop_init(&f->loop) != 0)
		return false;
	f->loop_ok = true;
	test_defer(fx_cleanup, f);
	if (http_client_new(&f->loop, lim, &f->c, err, sizeof(err)) < 0) {
		test__fail(__FILE__, __LINE__, "http_client_new: %s", err);
		return false;
	}
	if (routes && mock_crm_start(&f->m, routes, nroutes) < 0)
		return false;
	return true;
}

static void on_closed(struct http_client *c, void *data)
{
	struct http_client_stats st;

	http_client_stats(c, &st); /* still readable here */
	*(int *)data = 1 + (int)st.in_flight + (int)st.queued;
}

/* Closes the client and the loop: 0 when everything was freed and the
 * loop closed with nothing left open. */
static int fx_stop(struct fx *f)
{
	int closed = 0, rc;

	test_undefer(fx_cleanup, f);
	http_client_close(f->c, on_closed, &closed);
	if (closed)
		return -1; /* never from within http_client_close() */
	run_until(f, &closed, 1, 5000);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	rc = uv_loop_close(&f->loop);
	mock_crm_stop(f->m);
	f->m = NULL;
	return closed == 1 && rc == 0 ? 0 : -1;
}

static void url_of(char *out, size_t n, const struct fx *f, const char *path)
{
	snprintf(out, n, "http://127.0.0.1:%d%s", mock_crm_port(f->m), path);
}

static int get(struct fx *f, const char *path, struct call *k)
{
	char url[256], err[256];
	struct http_request q;

	memset(&q, 0, sizeof(q));
	url_of(url, sizeof(url), f, path);
	q.url = url;
	if (http_client_request(f->c, &q, on_call, k, NULL, err, sizeof(err)) < 0) {
		fprintf(stdout, "request %s: %s\n", path, err);
		return -1;
	}
	return 0;
}

/* The recorded request at index i (a copy; strings stay the mock's). */
static struct mock_request rec_at(struct mock_crm *m, size_t i)
{
	struct mock_request v[256];
	size_t n = mock_crm_requests(m, v, 256);

	if (i >= n || i >= 256) {
		memset(&v[0], 0, sizeof(v[0]));
		return v[0];
	}
	return v[i];
}

static size_t rec_count(struct mock_crm *m)
{
	return mock_crm_requests(m, NULL, 0);
}

/* Requests to path the mock has seen. */
static int path_count(struct mock_crm *m, const char *path)
{
	struct mock_request v[256];
	size_t n = mock_crm_requests(m, v, 256), i;
	int k = 0;

	for (i = 0; i < n && i < 256; i++)
		k += strcmp(v[i].path, path) == 0;
	return k;
}

/* The client's clock in the tests of holds and rate keys: it moves only
 * when the test moves it, so a busy machine changes nothing. Starts at 1 s
 * (the client takes 0 for "none"). */
static uint64_t fake_clock(void *ctx)
{
	return *(const uint64_t *)ctx;
}

/* Moves the fake clock to *now + by and lets the client act on it. */
static void clock_step(struct fx *f, uint64_t *now, uint64_t by)
{
	*now += by;
	http_client_wake(f->c);
}

static struct http_client_stats stats_of(struct fx *f)
{
	struct http_client_stats st;

	http_client_stats(f->c, &st);
	return st;
}

TEST(http_client_get_reaches_mock_exactly)
{
	static const struct mock_route routes[] = {
		{ .path = "/api/orders", .headers = "X-Total: 2\r\n", .body = "{\"ok\":true}" },
	};
	struct http_header hs[] = { { "X-API-KEY", "k-17" }, { "Accept", "application/json" } };
	struct fx f;
	struct call k = { 0 };
	struct http_request q = { 0 };
	struct mock_request r;
	char url[256], err[256];

	ASSERT(fx_start(&f, NULL, routes, 1));
	url_of(url, sizeof(url), &f, "/api/orders?ids=1%2C2&key=s3cret");
	q.url = url;
	q.headers = hs;
	q.nheaders = 2;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k, NULL, err, sizeof(err)), 0);
	ASSERT_EQ(k.n, 0); /* never from within the call */
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.n, 1);
	ASSERT_EQ(k.outcome, HTTP_OK);
	ASSERT_EQ(k.status, 200);
	ASSERT_STREQ(k.body, "{\"ok\":true}");
	ASSERT_EQ(k.body_len, 11);
	ASSERT_EQ(k.bytes, 11);
	ASSERT_STREQ(k.url, url);
	ASSERT_STREQ(k.ctype, "application/json");
	ASSERT_STREQ(k.error, "");
	ASSERT_EQ(k.retry_after, -1);
	ASSERT_EQ(rec_count(f.m), 1);
	r = rec_at(f.m, 0);
	ASSERT_STREQ(r.method, "GET");
	ASSERT_STREQ(r.path, "/api/orders");
	ASSERT_STREQ(r.query, "ids=1%2C2&key=s3cret");
	ASSERT_STREQ(mock_request_header(&r, "x-api-key"), "k-17");
	ASSERT_STREQ(mock_request_header(&r, "Accept"), "application/json");
	ASSERT_STREQ(mock_request_header(&r, "User-Agent"), "leadsync");
	ASSERT_CONTAINS(mock_request_header(&r, "Accept-Encoding"), "gzip");
	ASSERT(mock_request_header(&r, "Content-Length") == NULL);
	ASSERT_EQ(r.body_len, 0);
	ASSERT_EQ(k.st.done[HTTP_OK], 1); /* counted before the callback runs */
	{
		struct http_client_stats st;

		http_client_stats(f.c, &st);
		ASSERT_EQ(st.requests, 1);
		ASSERT_EQ(st.started, 1);
		ASSERT_EQ(st.done[HTTP_OK], 1);
		ASSERT_EQ(st.status_class[2], 1);
		ASSERT_EQ(st.bytes_in, 11);
		ASSERT_EQ(st.in_flight, 0);
		ASSERT_EQ(st.hosts, 0); /* forgotten once idle */
	}
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_post_and_patch_bodies_arrive_exactly)
{
	static const struct mock_route routes[] = { { .path = "*", .status = 201, .body = "{}" } };
	static const char body[] = "{\"ids\":[\"A-17\",\"A-18\"],\"x\":\"\0z\"}";
	struct http_header hs[] = { { "Content-Type", "application/json" } };
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 }, k3 = { 0 };
	struct http_request q = { 0 };
	struct mock_request r;
	char url[256], err[256];

	ASSERT(fx_start(&f, NULL, routes, 1));
	url_of(url, sizeof(url), &f, "/api/v1/leads");
	q.url = url;
	q.headers = hs;
	q.nheaders = 1;
	q.body = body;
	q.body_len = sizeof(body) - 1; /* holds a NUL */
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k1, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	q.method = "PATCH";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k2, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 2, 5000));
	q.method = "DELETE";
	q.body = NULL;
	q.body_len = 0;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k3, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 3, 5000));
	ASSERT_EQ(k1.status, 201);
	ASSERT_EQ(k2.status, 201);
	ASSERT_EQ(k3.status, 201);

	r = rec_at(f.m, 0);
	ASSERT_STREQ(r.method, "POST");
	ASSERT_EQ(r.body_len, sizeof(body) - 1);
	ASSERT(memcmp(r.body, body, sizeof(body) - 1) == 0);
	ASSERT_STREQ(mock_request_header(&r, "Content-Type"), "application/json");
	ASSERT(mock_request_header(&r, "Expect") == NULL);
	r = rec_at(f.m, 1);
	ASSERT_STREQ(r.method, "PATCH");
	ASSERT_EQ(r.body_len, sizeof(body) - 1);
	ASSERT(memcmp(r.body, body, sizeof(body) - 1) == 0);
	r = rec_at(f.m, 2);
	ASSERT_STREQ(r.method, "DELETE");
	ASSERT_EQ(r.body_len, 0);
	ASSERT_EQ(mock_crm_connections(f.m), 1); /* one kept-alive connection */
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_error_status_is_reported_not_failed)
{
	static const struct mock_route routes[] = {
		{ .path = "/down", .status = 500, .body = "{\"error\":\"db down\"}" },
	};
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 };

	ASSERT(fx_start(&f, NULL, routes, 1));
	ASSERT_EQ(get(&f, "/down", &k1), 0);
	ASSERT_EQ(get(&f, "/nowhere", &k2), 0);
	ASSERT(run_until(&f, &f.ncalls, 2, 5000));
	ASSERT_EQ(k1.outcome, HTTP_OK);
	ASSERT_EQ(k1.status, 500);
	ASSERT_STREQ(k1.body, "{\"error\":\"db down\"}");
	ASSERT_EQ(k2.outcome, HTTP_OK);
	ASSERT_EQ(k2.status, 404);
	{
		struct http_client_stats st;

		http_client_stats(f.c, &st);
		ASSERT_EQ(st.status_class[5], 1);
		ASSERT_EQ(st.status_class[4], 1);
		ASSERT_EQ(st.done[HTTP_OK], 2);
	}
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_total_timeout)
{
	static const struct mock_route routes[] = { { .path = "/slow", .delay_ms = 5000, .body = "{}" } };
	struct fx f;
	struct call k = { 0 };
	struct http_request q = { 0 };
	char url[256], err[256];
	uint64_t t0;

	ASSERT(fx_start(&f, NULL, routes, 1));
	url_of(url, sizeof(url), &f, "/slow");
	q.url = url;
	q.timeout_ms = 300;
	t0 = uv_hrtime() / 1000;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.outcome, HTTP_TIMEOUT);
	ASSERT_EQ(k.status, 0);
	/* not before the timeout; how much later is up to the machine's load */
	ASSERT(k.t_done - t0 >= 290000);
	ASSERT_CONTAINS(k.error, "timed out");
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_connection_refused)
{
	struct fx f;
	struct call k = { 0 };
	struct http_request q = { 0 };
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char url[256], err[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* a port that was free a moment ago and has no listener now */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT(fd >= 0);
	ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	close(fd);
	ASSERT(fx_start(&f, NULL, NULL, 0));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
	q.url = url;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.outcome, HTTP_CONNECT_ERROR);
	ASSERT_STREQ(http_outcome_name(k.outcome), "connect_error");
	ASSERT(k.error[0] != '\0');
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_tls_to_a_plain_server_fails_as_tls)
{
	static const struct mock_route routes[] = { { .path = "*", .body = "{}" } };
	struct fx f;
	struct call k = { 0 };
	char url[256], err[256];
	struct http_request q = { 0 };

	ASSERT(fx_start(&f, NULL, routes, 1));
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", mock_crm_port(f.m));
	q.url = url;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.outcome, HTTP_TLS_ERROR);
	ASSERT_EQ(rec_count(f.m), 0); /* the hello was not taken for a request */
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_close_without_answer_is_bad_answer)
{
	static const struct mock_route routes[] = { { .path = "/hangup", .kind = MOCK_CLOSE } };
	struct fx f;
	struct call k = { 0 };

	ASSERT(fx_start(&f, NULL, routes, 1));
	ASSERT_EQ(get(&f, "/hangup", &k), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.outcome, HTTP_BAD_ANSWER);
	ASSERT_EQ(k.status, 0);
	ASSERT_EQ(fx_stop(&f), 0);
}

/* A 429 with Retry-After holds its host: the request queued behind it
 * (per-host cap 1) starts a second later on the client's clock, not a
 * microsecond sooner, while another host is served meanwhile. */
TEST(http_client_retry_after_holds_the_host)
{
	static const struct mock_route routes[] = {
		{ .path = "/busy", .status = 429, .headers = "Retry-After: 1\r\n", .body = "{}" },
		{ .path = "/ok", .body = "{}" },
	};
	uint64_t now = 1000000;
	struct http_client_limits lim = { .max_per_host = 1, .clock_us = fake_clock, .clock_ctx = &now };
	struct fx f;
	struct mock_crm *other = NULL;
	struct call k1 = { 0 }, k2 = { 0 }, k3 = { 0 };
	struct http_request q = { 0 };
	char url[256], err[256];

	ASSERT(fx_start(&f, &lim, routes, 2));
	ASSERT_EQ(mock_crm_start(&other, routes, 2), 0);
	test_defer(mock_stop_cb, other);
	ASSERT_EQ(get(&f, "/busy", &k1), 0);
	ASSERT_EQ(get(&f, "/ok", &k2), 0); /* queued behind /busy */
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k1.status, 429);
	ASSERT_EQ(k1.retry_after, 1);
	ASSERT_EQ(k1.st.hosts_held, 1);
	ASSERT_EQ(k1.st.queued, 1);
	ASSERT_EQ(k2.n, 0);
	/* another host is not held */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", mock_crm_port(other));
	q.url = url;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k3, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 2, 5000));
	ASSERT_EQ(k3.status, 200);
	ASSERT_EQ(k2.n, 0);
	ASSERT_EQ(stats_of(&f).queued, 1);
	clock_step(&f, &now, 999999);
	ASSERT_EQ(stats_of(&f).queued, 1);
	ASSERT_EQ(stats_of(&f).hosts_held, 1);
	clock_step(&f, &now, 1);
	ASSERT_EQ(stats_of(&f).queued, 0);
	ASSERT_EQ(stats_of(&f).hosts_held, 0);
	ASSERT(run_until(&f, &f.ncalls, 3, 5000));
	ASSERT_EQ(k2.status, 200);
	ASSERT_EQ(path_count(f.m, "/ok"), 1);
	ASSERT_EQ(k2.st.holds, 1);
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_retry_after_http_date)
{
	static struct mock_route routes[] = {
		{ .path = "/busy", .status = 503, .body = "{}" },
	};
	static char hdr[128];
	struct fx f;
	struct call k = { 0 }, k2 = { 0 };
	time_t t = time(NULL) + 100; /* far enough that no load reaches it */
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(hdr, sizeof(hdr), "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	routes[0].headers = hdr;
	ASSERT(fx_start(&f, NULL, routes, 1));
	ASSERT_EQ(get(&f, "/busy", &k), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.status, 503);
	ASSERT(k.retry_after >= 90 && k.retry_after <= 100);
	ASSERT_EQ(k.st.hosts_held, 1);
	/* a request made now waits; closing cancels it, held or not */
	ASSERT_EQ(get(&f, "/busy", &k2), 0);
	ASSERT(!run_until(&f, &f.ncalls, 2, 300));
	ASSERT_EQ(rec_count(f.m), 1);
	ASSERT_EQ(fx_stop(&f), 0);
	ASSERT_EQ(k2.n, 1);
	ASSERT_EQ(k2.outcome, HTTP_CANCELLED);
}

/* A rate key at 300/min spaces its starts 200 ms apart on the client's
 * clock; other keys and keyless requests to the same host are not delayed
 * by it; a burst of 2 starts two at once. */
TEST(http_client_rate_key_spaces_requests)
{
	static const struct mock_route routes[] = {
		{ .path = "/a", .body = "{}" }, { .path = "/b", .body = "{}" },
		{ .path = "/c", .body = "{}" }, { .path = "/d", .body = "{}" },
	};
	uint64_t now = 1000000;
	struct http_client_limits lim = { .clock_us = fake_clock, .clock_ctx = &now };
	struct fx f;
	struct call ka[4], kb = { 0 }, kc = { 0 }, kd[3];
	struct http_request q = { 0 };
	struct http_client_stats st;
	char url[256], err[256];
	int i;

	memset(ka, 0, sizeof(ka));
	memset(kd, 0, sizeof(kd));
	ASSERT(fx_start(&f, &lim, routes, 4));
	q.url = url;
	q.rate_per_min = 300;
	url_of(url, sizeof(url), &f, "/a");
	q.rate_key = "offer:1";
	for (i = 0; i < 4; i++)
		ASSERT_EQ(http_client_request(f.c, &q, on_call, &ka[i], NULL, err, sizeof(err)), 0);
	url_of(url, sizeof(url), &f, "/b");
	q.rate_key = "offer:2";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &kb, NULL, err, sizeof(err)), 0);
	url_of(url, sizeof(url), &f, "/c");
	q.rate_key = NULL;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &kc, NULL, err, sizeof(err)), 0);
	url_of(url, sizeof(url), &f, "/d");
	q.rate_key = "offer:3";
	q.rate_burst = 2;
	for (i = 0; i < 3; i++)
		ASSERT_EQ(http_client_request(f.c, &q, on_call, &kd[i], NULL, err, sizeof(err)), 0);
	/* at once: one /a, /b, /c and two /d (burst 2) */
	st = stats_of(&f);
	ASSERT_EQ(st.started, 5);
	ASSERT_EQ(st.queued, 4);
	ASSERT(run_until(&f, &f.ncalls, 5, 5000));
	ASSERT_EQ(path_count(f.m, "/a"), 1);
	ASSERT_EQ(path_count(f.m, "/b"), 1);
	ASSERT_EQ(path_count(f.m, "/c"), 1);
	ASSERT_EQ(path_count(f.m, "/d"), 2);
	/* a token is 200 ms: none a microsecond sooner */
	clock_step(&f, &now, 199999);
	ASSERT_EQ(stats_of(&f).started, 5);
	clock_step(&f, &now, 1);
	ASSERT_EQ(stats_of(&f).started, 7); /* the second /a, the third /d */
	ASSERT(run_until(&f, &f.ncalls, 7, 5000));
	ASSERT_EQ(path_count(f.m, "/d"), 3);
	for (i = 2; i < 4; i++) {
		clock_step(&f, &now, 199999);
		ASSERT_EQ(stats_of(&f).started, (uint64_t)(6 + i - 1));
		clock_step(&f, &now, 1);
		ASSERT_EQ(stats_of(&f).started, (uint64_t)(6 + i));
		ASSERT(run_until(&f, &f.ncalls, 6 + i, 5000));
		ASSERT_EQ(path_count(f.m, "/a"), i + 1);
	}
	st = stats_of(&f);
	ASSERT(st.rate_waits >= 4);
	ASSERT_EQ(st.done[HTTP_OK], 9);
	ASSERT_EQ(fx_stop(&f), 0);
}

/* On the real clock the client wakes itself when a token is due: the
 * second request of a key waits for its token (its token is due one
 * interval after the first starts) and then starts unprompted. */
TEST(http_client_rate_key_wakes_by_itself)
{
	static const struct mock_route routes[] = { { .path = "/a", .body = "{}" } };
	struct fx f;
	struct call k[2];
	struct http_request q = { 0 };
	char url[256], err[256];
	int i;

	memset(k, 0, sizeof(k));
	ASSERT(fx_start(&f, NULL, routes, 1));
	url_of(url, sizeof(url), &f, "/a");
	q.url = url;
	q.rate_key = "offer:1";
	q.rate_per_min = 600;
	for (i = 0; i < 2; i++)
		ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[i], NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 2, 10000));
	ASSERT_EQ(k[1].status, 200);
	/* it waited for its token, the first did not; the exact spacing is
	 * tested on the stepped clock (a wall-clock bound here failed when
	 * load stretched the moment between the two submits) */
	ASSERT(k[1].queued_ms > k[0].queued_ms);
	ASSERT_EQ(fx_stop(&f), 0);
}

/* The answer cap holds for a chunked answer (no Content-Length), a known
 * Content-Length, and a small gzip answer that inflates past it. */
TEST(http_client_answer_size_cap)
{
	static struct mock_route routes[] = {
		{ .path = "/chunked", .kind = MOCK_CHUNKED, .size = (size_t)2 << 20 },
		{ .path = "/big", .body = NULL },
		{ .path = "/bomb", .kind = MOCK_GZIP, .size = (size_t)8 << 20 },
		{ .path = "/fits", .kind = MOCK_CHUNKED, .size = 60000 },
	};
	struct http_client_limits lim = { .max_response_bytes = 65536 };
	static char big[100001];
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 }, k3 = { 0 }, k4 = { 0 };

	memset(big, 'y', sizeof(big) - 1);
	routes[1].body = big;
	ASSERT(fx_start(&f, &lim, routes, 4));
	ASSERT_EQ(get(&f, "/chunked", &k1), 0);
	ASSERT_EQ(get(&f, "/big", &k2), 0);
	ASSERT_EQ(get(&f, "/bomb", &k3), 0);
	ASSERT_EQ(get(&f, "/fits", &k4), 0);
	ASSERT(run_until(&f, &f.ncalls, 4, 10000));
	ASSERT_EQ(k1.outcome, HTTP_TOO_LARGE);
	ASSERT_EQ(k1.body_len, 65536); /* what fitted is kept */
	ASSERT(k1.bytes > 65536);
	ASSERT(k1.bytes < 1000000);
	ASSERT_CONTAINS(k1.error, "65536");
	ASSERT_EQ(k2.outcome, HTTP_TOO_LARGE);
	ASSERT_EQ(k3.outcome, HTTP_TOO_LARGE);
	ASSERT_EQ(k4.outcome, HTTP_OK);
	ASSERT_EQ(k4.body_len, 60000);
	ASSERT_EQ(k4.bytes, 60000);
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_gzip_answer_is_decoded)
{
	static struct mock_route routes[] = { { .path = "/gz", .kind = MOCK_GZIP } };
	static char body[900];
	struct fx f;
	struct call k = { 0 };
	struct mock_request r;

	memset(body, 'q', sizeof(body) - 1); /* a run, coded as matches */
	memcpy(body, "{\"data\":\"", 9);
	memcpy(body + sizeof(body) - 3, "\"}", 2);
	routes[0].body = body;
	ASSERT(fx_start(&f, NULL, routes, 1));
	ASSERT_EQ(get(&f, "/gz", &k), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.outcome, HTTP_OK);
	ASSERT_EQ(k.body_len, strlen(body));
	ASSERT_STREQ(k.body, body);
	r = rec_at(f.m, 0);
	ASSERT_CONTAINS(mock_request_header(&r, "Accept-Encoding"), "gzip");
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_slow_drip_ends_at_the_timeout)
{
	static const struct mock_route routes[] = {
		{ .path = "/drip", .kind = MOCK_DRIP, .drip_ms = 100,
		  .body = "{\"data\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}" },
	};
	struct http_client_limits lim = { .timeout_ms = 700 };
	struct fx f;
	struct call k = { 0 };

	ASSERT(fx_start(&f, &lim, routes, 1));
	ASSERT_EQ(get(&f, "/drip", &k), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k.outcome, HTTP_TIMEOUT);
	ASSERT_EQ(k.status, 200);
	/* some of the body came, not all; ended by the timeout, not before */
	ASSERT(k.bytes >= 1 && k.bytes < strlen(routes[0].body));
	ASSERT(k.total_ms >= 690);
	ASSERT_EQ(fx_stop(&f), 0);
}

static int caps_run(unsigned global, unsigned per_host, unsigned *server_max, unsigned *client_max,
		    unsigned *started)
{
	static const struct mock_route routes[] = { { .path = "/w", .delay_ms = 40, .body = "{}" } };
	struct http_client_limits lim = { .max_in_flight = global, .max_per_host = per_host };
	static struct fx f; /* static: its early returns leave it to the cleanup */
	struct call k[20];
	int i, ok = 0;

	memset(k, 0, sizeof(k));
	if (!fx_start(&f, &lim, routes, 1))
		return -1;
	for (i = 0; i < 20; i++)
		if (get(&f, "/w", &k[i]) < 0)
			return -1;
	/* the client starts what the caps allow at once: counted, not timed */
	*started = (unsigned)stats_of(&f).in_flight;
	if (!run_until(&f, &f.ncalls, 20, 10000))
		return -1;
	for (i = 0; i < 20; i++)
		ok += k[i].n == 1 && k[i].status == 200;
	*server_max = mock_crm_max_in_flight(f.m);
	*client_max = f.max_in_flight;
	if (fx_stop(&f) < 0)
		return -1;
	return ok;
}

TEST(http_client_caps_bound_requests_in_flight)
{
	unsigned smax = 0, cmax = 0, started = 0;

	/* the server never sees more than the cap; how many it sees at once
	 * depends on the machine's load, so the client's count is asserted */
	ASSERT_EQ(caps_run(64, 4, &smax, &cmax, &started), 20);
	ASSERT_EQ(started, 4);
	ASSERT(smax >= 1 && smax <= 4);
	ASSERT(cmax <= 4);
	ASSERT_EQ(caps_run(3, 8, &smax, &cmax, &started), 20);
	ASSERT_EQ(started, 3);
	ASSERT(smax >= 1 && smax <= 3);
	ASSERT(cmax <= 3);
}

TEST(http_client_redirects_followed_within_limits)
{
	static const struct mock_route routes[] = {
		{ .path = "/r", .status = 302, .headers = "Location: /ok\r\n" },
		{ .path = "/ok", .body = "{\"here\":1}" },
		{ .path = "/file", .status = 302, .headers = "Location: file:///etc/passwd\r\n" },
		{ .path = "/loop", .status = 302, .headers = "Location: /loop\r\n" },
	};
	struct http_client_limits lim = { .max_redirects = 3 };
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 }, k3 = { 0 }, k4 = { 0 };
	struct http_request q = { 0 };
	char url[256], err[256];
	struct mock_request v[32];
	size_t n, i, loops = 0;

	ASSERT(fx_start(&f, &lim, routes, 4));
	ASSERT_EQ(get(&f, "/r", &k1), 0);
	ASSERT_EQ(get(&f, "/file", &k2), 0);
	ASSERT_EQ(get(&f, "/loop", &k3), 0);
	url_of(url, sizeof(url), &f, "/r");
	q.url = url;
	q.max_redirects = HTTP_NO_REDIRECTS;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k4, NULL, err, sizeof(err)), 0);
	ASSERT(run_until(&f, &f.ncalls, 4, 5000));
	ASSERT_EQ(k1.outcome, HTTP_OK);
	ASSERT_EQ(k1.status, 200);
	ASSERT_EQ(k1.redirects, 1);
	ASSERT_STREQ(k1.body, "{\"here\":1}");
	ASSERT_CONTAINS(k1.url, "/ok");
	ASSERT_EQ(k2.outcome, HTTP_REDIRECT_ERROR);
	ASSERT_EQ(k3.outcome, HTTP_REDIRECT_ERROR);
	ASSERT_EQ(k4.outcome, HTTP_OK);
	ASSERT_EQ(k4.status, 302);
	n = mock_crm_requests(f.m, v, 32);
	for (i = 0; i < n && i < 32; i++)
		loops += strcmp(v[i].path, "/loop") == 0;
	ASSERT_EQ(loops, 4); /* the first and three redirects */
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_close_with_requests_in_flight)
{
	/* answers later than fx_stop waits: a close that waited would fail */
	static const struct mock_route routes[] = { { .path = "/hang", .delay_ms = 60000 } };
	struct http_client_limits lim = { .max_per_host = 2 };
	struct fx f;
	struct call k[6];
	int i;

	memset(k, 0, sizeof(k));
	ASSERT(fx_start(&f, &lim, routes, 1));
	for (i = 0; i < 6; i++)
		ASSERT_EQ(get(&f, "/hang", &k[i]), 0);
	for (i = 0; i < 1000 && rec_count(f.m) < 2; i++)
		run_until(&f, &f.ncalls, 1, 10);
	ASSERT_EQ(rec_count(f.m), 2);
	ASSERT_EQ(fx_stop(&f), 0); /* asserts the loop closes with nothing open */
	for (i = 0; i < 6; i++) {
		ASSERT_EQ(k[i].n, 1);
		ASSERT_EQ(k[i].outcome, HTTP_CANCELLED);
	}
}

static int refused_while_closing;

static void on_call_then_close(struct http_client_req *req, struct http_result *res, void *ud)
{
	static struct call first;
	char err[128];
	struct http_request q = { .url = "http://127.0.0.1:1/" };

	on_call(req, res, &first);
	http_client_close(cur->c, on_closed, ud);
	/* refused once closing, and its callback never runs */
	refused_while_closing =
		http_client_request(cur->c, &q, on_call, &first, NULL, err, sizeof(err)) < 0;
}

TEST(http_client_close_from_a_callback)
{
	static const struct mock_route routes[] = {
		{ .path = "/fast", .body = "{}" }, { .path = "/hang", .delay_ms = 5000 },
	};
	struct fx f;
	struct call k[3];
	struct http_request q = { 0 };
	char url[256], err[256];
	int closed = 0, i;

	memset(k, 0, sizeof(k));
	ASSERT(fx_start(&f, NULL, routes, 2));
	ASSERT_EQ(get(&f, "/hang", &k[0]), 0);
	ASSERT_EQ(get(&f, "/hang", &k[1]), 0);
	url_of(url, sizeof(url), &f, "/fast");
	q.url = url;
	ASSERT_EQ(http_client_request(f.c, &q, on_call_then_close, &closed, NULL, err, sizeof(err)), 0);
	f.closed_by_test = true; /* the callback closes it: the cleanup must not */
	ASSERT(run_until(&f, &closed, 1, 5000));
	ASSERT_EQ(closed, 1);
	ASSERT(refused_while_closing);
	ASSERT_EQ(f.ncalls, 3);
	for (i = 0; i < 2; i++)
		ASSERT_EQ(k[i].outcome, HTTP_CANCELLED);
	uv_run(&f.loop, UV_RUN_NOWAIT);
	test_undefer(fx_cleanup, &f);
	mock_crm_stop(f.m);
	ASSERT_EQ(uv_loop_close(&f.loop), 0);
}

TEST(http_client_cancel_queued_and_running)
{
	static const struct mock_route routes[] = {
		{ .path = "/hang", .delay_ms = 5000 }, { .path = "/ok", .body = "{}" },
	};
	struct http_client_limits lim = { .max_per_host = 1 };
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 }, k3 = { 0 };
	struct http_request q = { 0 };
	struct http_client_req *h1, *h2;
	char url[256], err[256];

	ASSERT(fx_start(&f, &lim, routes, 2));
	url_of(url, sizeof(url), &f, "/hang");
	q.url = url;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k1, &h1, err, sizeof(err)), 0);
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k2, &h2, err, sizeof(err)), 0);
	ASSERT_EQ(get(&f, "/ok", &k3), 0);
	ASSERT(h1 && h2);
	ASSERT_STREQ(http_client_req_url(h2), url);
	ASSERT(http_client_req_data(h2) == &k2);
	http_client_cancel(h2); /* queued */
	ASSERT_EQ(k2.n, 0);     /* not from within the call */
	http_client_cancel(h2); /* twice: harmless until the callback */
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k2.outcome, HTTP_CANCELLED);
	for (int i = 0; i < 1000 && rec_count(f.m) < 1; i++)
		run_until(&f, &f.ncalls, 2, 10);
	http_client_cancel(h1); /* running: frees the host's slot for /ok */
	ASSERT_EQ(k1.n, 0);
	ASSERT(run_until(&f, &f.ncalls, 3, 5000));
	ASSERT_EQ(k1.outcome, HTTP_CANCELLED);
	ASSERT_EQ(k3.outcome, HTTP_OK);
	ASSERT_EQ(k1.n + k2.n + k3.n, 3);
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_refuses_bad_requests_without_callback)
{
	static const struct mock_route routes[] = { { .path = "*", .delay_ms = 200 } };
	struct http_client_limits lim = { .max_per_host = 1, .max_queued = 2 };
	struct http_header crlf[] = { { "X-A", "1\r\nX-Injected: 1" } };
	struct http_header badname[] = { { "X A", "1" } };
	struct fx f;
	struct call k[4];
	struct http_request q = { 0 };
	struct http_client_req *h = (struct http_client_req *)&q;
	char url[256], err[256];
	struct http_client_stats st;

	memset(k, 0, sizeof(k));
	ASSERT(fx_start(&f, &lim, routes, 1));
	q.url = "ftp://127.0.0.1/x";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], &h, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "scheme 'ftp'");
	ASSERT(h == NULL);
	q.url = "file:///etc/passwd";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), -1);
	q.url = "not a url";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "url");
	url_of(url, sizeof(url), &f, "/x");
	q.url = url;
	q.headers = crlf;
	q.nheaders = 1;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "header 'X-A'");
	q.headers = badname;
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), -1);
	q.headers = NULL;
	q.nheaders = 0;
	q.method = "GE T";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), -1);
	q.method = NULL;
	q.rate_key = "offer:1";
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "rate");
	q.rate_key = NULL;
	/* one starts, two wait, the fourth finds the queue full */
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[0], NULL, err, sizeof(err)), 0);
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[1], NULL, err, sizeof(err)), 0);
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[2], NULL, err, sizeof(err)), 0);
	ASSERT_EQ(http_client_request(f.c, &q, on_call, &k[3], NULL, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "queue full");
	http_client_stats(f.c, &st);
	ASSERT_EQ(st.in_flight, 1);
	ASSERT_EQ(st.queued, 2);
	ASSERT_EQ(st.refused, 8);
	ASSERT(run_until(&f, &f.ncalls, 3, 5000));
	ASSERT(!run_until(&f, &f.ncalls, 4, 100));
	ASSERT_EQ(k[3].n, 0);
	ASSERT_EQ(k[0].n + k[1].n + k[2].n, 3);
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_keeps_connections_alive)
{
	static const struct mock_route routes[] = { { .path = "/k", .body = "{}" } };
	struct fx f;
	struct call k[5];
	int i;

	memset(k, 0, sizeof(k));
	ASSERT(fx_start(&f, NULL, routes, 1));
	for (i = 0; i < 5; i++) {
		ASSERT_EQ(get(&f, "/k", &k[i]), 0);
		ASSERT(run_until(&f, &f.ncalls, i + 1, 5000));
		ASSERT_EQ(k[i].status, 200);
	}
	ASSERT_EQ(mock_crm_connections(f.m), 1);
	ASSERT_EQ(fx_stop(&f), 0);
}

/* 200 requests to a CRM answering in 100 ms, 100 at a time: two rounds,
 * not two hundred. */
TEST(http_client_many_requests_in_parallel)
{
	static const struct mock_route routes[] = { { .path = "/p", .delay_ms = 100, .body = "{}" } };
	struct http_client_limits lim = { .max_in_flight = 100, .max_per_host = 100 };
	struct fx f;
	static struct call k[200];
	int i, ok = 0;

	memset(k, 0, sizeof(k));
	ASSERT(fx_start(&f, &lim, routes, 1));
	for (i = 0; i < 200; i++)
		ASSERT_EQ(get(&f, "/p", &k[i]), 0);
	/* counted where the client decides, not timed at the server */
	ASSERT_EQ(stats_of(&f).in_flight, 100);
	ASSERT_EQ(stats_of(&f).queued, 100);
	ASSERT(run_until(&f, &f.ncalls, 200, 30000));
	for (i = 0; i < 200; i++)
		ok += k[i].n == 1 && k[i].status == 200;
	ASSERT_EQ(ok, 200);
	ASSERT(mock_crm_max_in_flight(f.m) <= 100);
	ASSERT(mock_crm_connections(f.m) <= 100);
	ASSERT_EQ(fx_stop(&f), 0);
}

TEST(http_client_mock_pages_and_scripts)
{
	static const struct mock_route routes[] = {
		{ .path = "/orders", .kind = MOCK_PAGED, .pages = 2, .per_page = 2 },
		{ .path = "/flaky", .status = 500, .times = 1 },
		{ .path = "/flaky", .body = "{\"ok\":1}" },
	};
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 }, k3 = { 0 }, k4 = { 0 };

	ASSERT(fx_start(&f, NULL, routes, 3));
	ASSERT_EQ(get(&f, "/orders?page=2", &k1), 0);
	ASSERT_EQ(get(&f, "/orders?page=3", &k2), 0);
	ASSERT(run_until(&f, &f.ncalls, 2, 5000));
	ASSERT_STREQ(k1.body, "{\"current_page\":2,\"last_page\":2,\"data\":["
			      "{\"id\":\"3\",\"status\":\"processing\"},"
			      "{\"id\":\"4\",\"status\":\"processing\"}]}");
	ASSERT_STREQ(k2.body, "{\"current_page\":3,\"last_page\":2,\"data\":[]}");
	ASSERT_EQ(get(&f, "/flaky", &k3), 0);
	ASSERT(run_until(&f, &f.ncalls, 3, 5000));
	ASSERT_EQ(get(&f, "/flaky", &k4), 0);
	ASSERT(run_until(&f, &f.ncalls, 4, 5000));
	ASSERT_EQ(k3.status, 500);
	ASSERT_EQ(k4.status, 200);
	ASSERT_EQ(fx_stop(&f), 0);
}

static void echo_fn(const struct mock_request *req, struct mock_answer *ans, void *data)
{
	if (strcmp(req->query, "hangup") == 0) {
		ans->status = 0; /* close without answering */
		return;
	}
	ans->status = 429; /* and no Retry-After */
	if (buf_addf(&ans->body, "{\"method\":\"%s\",\"query\":\"%s\",\"tag\":\"%s\"}", req->method,
		     req->query, (const char *)data) < 0)
		ans->status = 500;
}

TEST(http_client_429_without_retry_after_holds_nothing)
{
	static const struct mock_route routes[] = {
		{ .path = "/fn", .kind = MOCK_FUNC, .fn = echo_fn, .data = "crm-1" },
	};
	/* the clock stands still: any hold would keep the second request */
	uint64_t now = 1000000;
	struct http_client_limits lim = { .clock_us = fake_clock, .clock_ctx = &now };
	struct fx f;
	struct call k1 = { 0 }, k2 = { 0 };

	ASSERT(fx_start(&f, &lim, routes, 1));
	ASSERT_EQ(get(&f, "/fn?ids=1,2", &k1), 0);
	ASSERT(run_until(&f, &f.ncalls, 1, 5000));
	ASSERT_EQ(k1.outcome, HTTP_OK);
	ASSERT_EQ(k1.status, 429);
	ASSERT_STREQ(k1.body, "{\"method\":\"GET\",\"query\":\"ids=1,2\",\"tag\":\"crm-1\"}");
	ASSERT_EQ(k1.retry_after, -1);
	ASSERT_EQ(k1.st.hosts_held, 0);
	ASSERT_EQ(get(&f, "/fn?hangup", &k2), 0);
	ASSERT_EQ(stats_of(&f).queued, 0);
	ASSERT(run_until(&f, &f.ncalls, 2, 5000));
	ASSERT_EQ(k2.outcome, HTTP_BAD_ANSWER);
	ASSERT_EQ(fx_stop(&f), 0);
}
