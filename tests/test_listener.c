/* test_listener: the HTTP listener over real loopback sockets, a blocking
 * client in a thread against the listener on the test's own uv loop. */
#include "listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "test.h"

#define TL_CONNS 4

/* One test's world: the loop and listener (loop thread), the client's
 * results (client thread, read after join). */
struct tl {
	uv_loop_t loop;
	uv_async_t done;
	uv_timer_t watchdog;
	struct listener *l;
	int port;
	void (*client)(struct tl *t);
	/* client thread */
	struct buf resp[TL_CONNS];
	int nresp[TL_CONNS];
	bool eof[TL_CONNS];
	long elapsed_ms[TL_CONNS];
	bool refused;
	/* loop thread */
	atomic_int handled;
	bool gone_seen;
	struct tl_later *later_last; /* the loop thread's newest timer answer */
	bool close_started;
	bool closed;
	uint64_t buffer_bytes[2];
	struct listener_stats st; /* at close */
};

static struct tl *tl_cur;

static long tl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ handlers */

static void h_ok(struct listener_req *req, void *data)
{
	atomic_fetch_add(&tl_cur->handled, 1);
	listener_respond(req, 200, "text/plain", "ok", 2, NULL);
}

static const char *tl_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

/* Echoes what the request parsed into. */
static void h_echo(struct listener_req *req, void *data)
{
	struct buf b;
	size_t blen, klen = 0;
	const char *body = listener_req_body(req, &blen);
	const char *key = listener_req_param(req, "api_key", &klen);

	atomic_fetch_add(&tl_cur->handled, 1);
	buf_init(&b, 1 << 20);
	if (buf_addf(&b, "m=%s path=%s key=%s klen=%zu click=%s status=%s bad=%s query=%s",
		     listener_req_method_name(req), listener_req_path(req), tl_or(key, "-"), klen,
		     tl_or(listener_query_get(req, "click_id", NULL), "-"),
		     tl_or(listener_query_get(req, "status", NULL), "-"),
		     tl_or(listener_query_get(req, "bad", NULL), "-"), listener_req_query(req)) < 0 ||
	    buf_addf(&b, " ct=%s x-empty=[%s] x-after=[%s] remote=%s gone=%d blen=%zu body=",
		     tl_or(listener_req_header(req, "CONTENT-TYPE"), "-"),
		     tl_or(listener_req_header(req, "x-empty"), "-"),
		     tl_or(listener_req_header(req, "X-After"), "-"), listener_req_remote(req),
		     listener_req_client_gone(req), blen) < 0 ||
	    buf_add(&b, body, blen) < 0) {
		buf_release(&b);
		listener_respond_error(req, 500, "echo too large");
		return;
	}
	listener_respond(req, 200, "text/plain", b.p, b.len, NULL);
	buf_release(&b);
}

static void h_form(struct listener_req *req, void *data)
{
	const struct listener_form *f = listener_req_body_form(req);
	char out[256];
	int n;

	atomic_fetch_add(&tl_cur->handled, 1);
	if (!f) {
		listener_respond_error(req, 500, "no memory");
		return;
	}
	n = snprintf(out, sizeof(out), "n=%zu a=%s b=%s c=[%s]", f->n,
		     tl_or(listener_form_get(f, "a", NULL), "-"),
		     tl_or(listener_form_get(f, "b", NULL), "-"),
		     tl_or(listener_form_get(f, "c", NULL), "-"));
	listener_respond(req, 201, "text/plain", out, (size_t)n, "X-Form: yes\r\n");
}

struct tl_later {
	uv_timer_t timer;
	struct listener_req *req;
	char msg[32];
	unsigned until_gone; /* checks left before answering anyway; 0: answer at once */
};

static void tl_later_closed(uv_handle_t *h)
{
	free(h->data);
}

static void tl_later_fire(uv_timer_t *tm)
{
	struct tl_later *lt = tm->data;

	/* waits for the client to go, not for a time that a busy machine may
	 * not give the client to close in */
	if (lt->until_gone && --lt->until_gone && !listener_req_client_gone(lt->req)) {
		uv_timer_start(tm, tl_later_fire, 10, 0);
		return;
	}
	tl_cur->gone_seen = listener_req_client_gone(lt->req);
	listener_respond(lt->req, 200, "text/plain", lt->msg, strlen(lt->msg), NULL);
	uv_close((uv_handle_t *)tm, tl_later_closed);
}

/* Answers "later <ms>" after ms milliseconds, from a timer. */
static void tl_answer_later(struct listener_req *req, unsigned long ms)
{
	struct tl_later *lt = calloc(1, sizeof(*lt));

	if (!lt) {
		listener_respond_error(req, 500, "no memory");
		return;
	}
	lt->req = req;
	tl_cur->later_last = lt;
	snprintf(lt->msg, sizeof(lt->msg), "later %lu", ms);
	uv_timer_init(&tl_cur->loop, &lt->timer);
	lt->timer.data = lt;
	uv_timer_start(&lt->timer, tl_later_fire, ms, 0);
}

static void h_later(struct listener_req *req, void *data)
{
	const char *ms = listener_req_param(req, "ms", NULL);

	atomic_fetch_add(&tl_cur->handled, 1);
	tl_answer_later(req, strtoul(ms, NULL, 10));
}

/* Answers once the client has gone (or after 30 s). */
static void h_later_gone(struct listener_req *req, void *data)
{
	atomic_fetch_add(&tl_cur->handled, 1);
	tl_answer_later(req, 10);
	if (tl_cur->later_last)
		tl_cur->later_last->until_gone = 3000;
}

static void tl_closed_cb(struct listener *l, void *data)
{
	struct tl *t = data;

	listener_stats(l, &t->st);
	t->l = NULL;
	t->closed = true;
}

/* Starts closing the listener while this request is in flight. */
static void h_close(struct listener_req *req, void *data)
{
	atomic_fetch_add(&tl_cur->handled, 1);
	tl_cur->close_started = true;
	listener_close(listener_req_listener(req), tl_closed_cb, tl_cur);
	tl_answer_later(req, 100);
}

static void h_count(struct listener_req *req, void *data)
{
	struct listener_stats st;
	char out[32];
	int n = atomic_fetch_add(&tl_cur->handled, 1) + 1;

	if (n == 10 || n == 1000) {
		listener_stats(listener_req_listener(req), &st);
		tl_cur->buffer_bytes[n == 1000] = st.buffer_bytes;
	}
	snprintf(out, sizeof(out), "n=%d", n);
	listener_respond(req, 200, "text/plain", out, strlen(out), NULL);
}

static void h_badhdr(struct listener_req *req, void *data)
{
	listener_respond(req, 302, NULL, "", 0, "Location: /x\r\nSet-Cookie: a=b");
}

static const struct listener_route tl_routes[] = {
	{ LISTENER_GET, "/healthz", h_ok, NULL },
	{ LISTENER_GET | LISTENER_POST, "/{api_key}/s2s", h_echo, NULL },
	{ LISTENER_POST, "/api/leads", h_echo, NULL },
	{ LISTENER_PUT, "/api/leads", h_echo, NULL },
	{ LISTENER_POST, "/form", h_form, NULL },
	{ LISTENER_GET, "/later/{ms}", h_later, NULL },
	{ LISTENER_GET, "/later-gone", h_later_gone, NULL },
	{ LISTENER_GET, "/close", h_close, NULL },
	{ LISTENER_GET, "/count", h_count, NULL },
	{ LISTENER_GET, "/badhdr", h_badhdr, NULL },
	{ LISTENER_GET, "/click/{offer}/{sub}", h_echo, NULL },
	{ LISTENER_POST, "/{api_key}", h_echo, NULL },
};

/* -------------------------------------------------------------- client */

static int cli_connect(int port)
{
	struct sockaddr_in sa;
	struct timeval tv = { 30, 0 }; /* only to end a hung run */
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void cli_send(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void cli_sends(int fd, const char *s)
{
	cli_send(fd, s, strlen(s));
}

/* The header "Content-Length:" in the block [p, end), any case. */
static const char *cli_content_length(const char *p, const char *end)
{
	for (; p + 15 <= end; p++)
		if (strncasecmp(p, "content-length:", 15) == 0)
			return p;
	return NULL;
}

/* Complete answers in b: header block, then Content-Length bytes. */
static int cli_count(const struct buf *b)
{
	size_t pos = 0;
	int n = 0;

	while (b->p && pos < b->len) {
		const char *start = b->p + pos, *end = strstr(start, "\r\n\r\n"), *cl;
		size_t len = 0;

		if (!end)
			break;
		cl = cli_content_length(start, end);
		if (cl)
			len = strtoul(cl + 15, NULL, 10);
		if ((size_t)(end + 4 - b->p) + len > b->len)
			break;
		if (strncmp(start, "HTTP/1.1 100 ", 13) != 0)
			n++;
		pos = (size_t)(end + 4 - b->p) + len;
	}
	return n;
}

/* Reads into t->resp[i] until `want` answers are complete (0: until EOF),
 * EOF, or the 30 s receive timeout. */
static void cli_read(struct tl *t, int i, int fd, int want)
{
	char tmp[16384];

	while (want == 0 || cli_count(&t->resp[i]) < want) {
		ssize_t n = recv(fd, tmp, sizeof(tmp), 0);

		if (n == 0) {
			t->eof[i] = true;
			break;
		}
		if (n < 0 || buf_add(&t->resp[i], tmp, (size_t)n) < 0)
			break;
	}
	t->nresp[i] = cli_count(&t->resp[i]);
}

/* Sends one request on a fresh connection and reads until the server
 * closes it. */
static void cli_once(struct tl *t, int i, const char *req)
{
	int fd = cli_connect(t->port);
	long t0 = tl_now_ms();

	if (fd < 0) {
		t->refused = true;
		return;
	}
	cli_sends(fd, req);
	cli_read(t, i, fd, 0);
	t->elapsed_ms[i] = tl_now_ms() - t0;
	close(fd);
}

/* --------------------------------------------------------------- runner */

static void tl_watchdog_cb(uv_timer_t *w)
{
	fprintf(stderr, "test_listener: loop still running after 8 s\n");
	abort();
}

static void tl_done_cb(uv_async_t *a)
{
	struct tl *t = a->data;

	uv_close((uv_handle_t *)a, NULL);
	if (t->l && !t->close_started) {
		t->close_started = true;
		listener_close(t->l, tl_closed_cb, t);
	}
}

static void *tl_thread(void *arg)
{
	struct tl *t = arg;

	t->client(t);
	uv_async_send(&t->done);
	return NULL;
}

static struct tl tl_state;

static void tl_cleanup(void *arg)
{
	struct tl *t = arg;
	int i;

	for (i = 0; i < TL_CONNS; i++)
		buf_release(&t->resp[i]);
}

/* A fresh world; a failed test's is released by its cleanup. */
static struct tl *tl_init(void)
{
	struct tl *t = &tl_state;
	int i;

	for (i = 0; i < TL_CONNS; i++)
		buf_release(&t->resp[i]);
	memset(t, 0, sizeof(*t));
	for (i = 0; i < TL_CONNS; i++)
		buf_init(&t->resp[i], 1 << 20);
	test_defer(tl_cleanup, t);
	return t;
}

static void tl_release(struct tl *t)
{
	test_undefer(tl_cleanup, t);
	tl_cleanup(t);
}

/* Runs a listener (with lim, or defaults) on 127.0.0.1:0 and `client` in
 * a thread against it; closes the listener when the client is done and
 * the loop once the listener is closed. Returns uv_loop_close()'s result
 * (0: nothing was left open), or -1 when the listener did not start. */
static int tl_run(struct tl *t, const struct listener_limits *lim, void (*client)(struct tl *t))
{
	struct listener_config cfg = { .addr = "127.0.0.1:0",
				       .routes = tl_routes,
				       .nroutes = sizeof(tl_routes) / sizeof(tl_routes[0]) };
	pthread_t th;
	char err[256];

	tl_cur = t;
	if (lim)
		cfg.limits = *lim;
	uv_loop_init(&t->loop);
	if (listener_start(&t->loop, &cfg, &t->l, err, sizeof(err)) < 0) {
		fprintf(stderr, "listener_start: %s\n", err);
		uv_loop_close(&t->loop);
		return -1;
	}
	t->port = listener_port(t->l);
	uv_async_init(&t->loop, &t->done, tl_done_cb);
	t->done.data = t;
	uv_timer_init(&t->loop, &t->watchdog);
	uv_timer_start(&t->watchdog, tl_watchdog_cb, 8000, 0);
	uv_unref((uv_handle_t *)&t->watchdog);
	t->client = client;
	if (pthread_create(&th, NULL, tl_thread, t) != 0)
		abort();
	uv_run(&t->loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	uv_close((uv_handle_t *)&t->watchdog, NULL);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	return uv_loop_close(&t->loop);
}

/* ---------------------------------------------------------------- forms */

TEST(listener_form_parse_decodes)
{
	struct listener_form f;
	const char *v;
	size_t len = 0;
	static const char q[] = "a=1&&b=x+y%20z&c&=empty&d=%zz%4&e=%00%FF&a=2&f=a%3Db";

	ASSERT_EQ(listener_form_parse(&f, q, sizeof(q) - 1), 0);
	ASSERT_EQ(f.n, 8);
	ASSERT_STREQ(listener_form_get(&f, "a", NULL), "1"); /* first wins */
	ASSERT_STREQ(listener_form_get(&f, "b", NULL), "x y z");
	ASSERT_STREQ(listener_form_get(&f, "c", &len), "");
	ASSERT_EQ(len, 0);
	ASSERT_STREQ(listener_form_get(&f, "", NULL), "empty");
	ASSERT_STREQ(listener_form_get(&f, "d", NULL), "%zz%4");
	v = listener_form_get(&f, "e", &len);
	ASSERT(v != NULL);
	ASSERT_EQ(len, 2);
	ASSERT_EQ(v[0], 0);
	ASSERT_EQ((unsigned char)v[1], 0xff);
	ASSERT_STREQ(listener_form_get(&f, "f", NULL), "a=b");
	ASSERT(listener_form_get(&f, "g", NULL) == NULL);
	ASSERT_STREQ(f.kv[6].name, "a");
	ASSERT_STREQ(f.kv[6].value, "2");
	listener_form_release(&f);

	ASSERT_EQ(listener_form_parse(&f, "", 0), 0);
	ASSERT_EQ(f.n, 0);
	ASSERT(listener_form_get(&f, "a", NULL) == NULL);
	listener_form_release(&f);
}

/* ---------------------------------------------------------------- start */

static void h_never(struct listener_req *req, void *data)
{
	listener_respond(req, 200, NULL, "", 0, NULL);
}

static int tl_try_start(uv_loop_t *loop, const char *addr, const char *pattern, char *err,
			size_t errlen, struct listener **l)
{
	struct listener_route rt = { LISTENER_GET, pattern, h_never, NULL };
	struct listener_config cfg = { .addr = addr, .routes = &rt, .nroutes = 1 };

	err[0] = '\0';
	return listener_start(loop, &cfg, l, err, errlen);
}

TEST(listener_start_refuses_bad_config)
{
	static const struct {
		const char *addr, *pattern, *want;
	} cases[] = {
		{ "127.0.0.1", "/x", "expected host:port" },
		{ "localhost:80", "/x", "host must be an IPv4 address or [IPv6]" },
		{ "::1:80", "/x", "host must be an IPv4 address or [IPv6]" },
		{ "[::1]80", "/x", "expected host:port or [ipv6]:port" },
		{ "127.0.0.1:65536", "/x", "port must be a number" },
		{ "127.0.0.1:8o", "/x", "port must be a number" },
		{ ":8080", "/x", "missing or overlong host" },
		{ "127.0.0.1:0", "x", "route 0 'x': pattern must start with '/'" },
		{ "127.0.0.1:0", "/a/{b", "a parameter must be a whole segment" },
		{ "127.0.0.1:0", "/a/x{b}", "a parameter must be a whole segment" },
		{ "127.0.0.1:0", "/a/{}", "a parameter must be a whole segment" },
		{ "127.0.0.1:0", "/a/}", "'}' without '{'" },
		{ "127.0.0.1:0", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "more than 8 parameters" },
	};
	uv_loop_t loop;
	struct listener *l, *l2;
	char err[256];
	size_t i;
	int port;

	uv_loop_init(&loop);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		l = (struct listener *)&loop; /* must be reset to NULL */
		ASSERT_EQ(tl_try_start(&loop, cases[i].addr, cases[i].pattern, err, sizeof(err), &l), -1);
		ASSERT(l == NULL);
		ASSERT_CONTAINS(err, cases[i].want);
	}
	/* a port in use: the half-made listener is freed by the loop */
	ASSERT_EQ(tl_try_start(&loop, "127.0.0.1:0", "/{a}/x", err, sizeof(err), &l), 0);
	port = listener_port(l);
	ASSERT(port > 0);
	{
		char addr[64];

		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		ASSERT_EQ(tl_try_start(&loop, addr, "/x", err, sizeof(err), &l2), -1);
		ASSERT_CONTAINS(err, "address already in use");
		ASSERT(l2 == NULL);
	}
	/* IPv6, where the host has it */
	if (tl_try_start(&loop, "[::1]:0", "/x", err, sizeof(err), &l2) == 0) {
		ASSERT(listener_port(l2) > 0);
		listener_close(l2, NULL, NULL);
	} else
		ASSERT_CONTAINS(err, "listen on '[::1]:0': address not available");
	listener_close(l, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* --------------------------------------------------------------- routes */

static void c_get_query(struct tl *t)
{
	cli_once(t, 0,
		 "GET /k%2Dacme/s2s?click_id=abc-1&status=hold+x&bad=%zz HTTP/1.1\r\n"
		 "Host: x\r\nX-Empty:\r\nX-After: yes  \r\nConnection: close\r\n\r\n");
	cli_once(t, 1, "GET /click/12/a%2Fb?wm=5 HTTP/1.1\r\nConnection: close\r\n\r\n");
	cli_once(t, 2, "GET http://example.com/healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
}

TEST(listener_get_with_query_and_headers)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_get_query), 0);
	ASSERT(t->closed);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 200 OK\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "Content-Type: text/plain\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "Connection: close\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "m=GET path=/k%2Dacme/s2s key=k-acme klen=6 ");
	ASSERT_CONTAINS(t->resp[0].p, "click=abc-1 status=hold x bad=%zz ");
	ASSERT_CONTAINS(t->resp[0].p, "query=click_id=abc-1&status=hold+x&bad=%zz ");
	ASSERT_CONTAINS(t->resp[0].p, "x-empty=[] x-after=[yes] remote=127.0.0.1 ");
	ASSERT_CONTAINS(t->resp[0].p, "blen=0 body=");
	ASSERT(t->eof[0]);
	/* the route's parameter is a whole segment; %2F decodes to '/' */
	ASSERT_CONTAINS(t->resp[1].p, "path=/click/12/a%2Fb key=- ");
	ASSERT_CONTAINS(t->resp[2].p, "\r\n\r\nok");
	ASSERT_EQ(t->st.requests, 3);
	ASSERT_EQ(t->st.status_class[2], 3);
	tl_release(t);
}

static void c_post_json(struct tl *t)
{
	static const char json[] = "{\"click_id\":\"c1\",\"status\":\"approved\",\"x\":\"\xff\"}";
	char req[512];

	snprintf(req, sizeof(req),
		 "POST /api/leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		 sizeof(json) - 1, json);
	cli_once(t, 0, req);
	snprintf(req, sizeof(req),
		 "POST /k-acme HTTP/1.1\r\nContent-Type: application/json\r\n"
		 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n");
	cli_once(t, 1, req);
}

TEST(listener_post_json)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_post_json), 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 200 OK");
	ASSERT_CONTAINS(t->resp[0].p, "m=POST path=/api/leads ");
	ASSERT_CONTAINS(t->resp[0].p, "ct=application/json ");
	ASSERT_CONTAINS(t->resp[0].p, "blen=45 body={\"click_id\":\"c1\",\"status\":\"approved\",\"x\":\"\xff\"}");
	/* chunked body, and "/{api_key}" */
	ASSERT_CONTAINS(t->resp[1].p, "key=k-acme ");
	ASSERT_CONTAINS(t->resp[1].p, "blen=8 body={\"a\": 1}");
	tl_release(t);
}

static void c_post_form(struct tl *t)
{
	cli_once(t, 0,
		 "POST /form HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
		 "Content-Length: 27\r\nConnection: close\r\n\r\na=1&b=caf%C3%A9+x&b=2&c=%00");
}

TEST(listener_post_form)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_post_form), 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 201 Created\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "X-Form: yes\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "n=4 a=1 b=caf\xc3\xa9 x c=[]");
	tl_release(t);
}

static void c_not_found(struct tl *t)
{
	cli_once(t, 0, "GET /nope/x/y HTTP/1.1\r\nConnection: close\r\n\r\n");
	cli_once(t, 1, "GET /api/leads HTTP/1.1\r\nConnection: close\r\n\r\n");
	cli_once(t, 2, "DELETE /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
	cli_once(t, 3, "GET /healthz/ HTTP/1.1\r\nConnection: close\r\n\r\n");
}

TEST(listener_unknown_route_404_wrong_method_405)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_not_found), 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 404 Not Found\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "Content-Type: application/json\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "\r\n\r\n{\"ok\":false,\"error\":\"not found\"}");
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 405 Method Not Allowed\r\n");
	ASSERT_CONTAINS(t->resp[1].p, "Allow: POST, PUT\r\n");
	ASSERT_CONTAINS(t->resp[1].p, "{\"ok\":false,\"error\":\"method not allowed\"}");
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 405 ");
	/* "/{api_key}" takes POST on any one-segment path */
	ASSERT_CONTAINS(t->resp[2].p, "Allow: GET, HEAD, POST\r\n");
	ASSERT_CONTAINS(t->resp[3].p, "HTTP/1.1 404 ");
	ASSERT_EQ(atomic_load(&t->handled), 0);
	ASSERT_EQ(t->st.status_class[4], 4);
	tl_release(t);
}

static void c_bad_answer_header(struct tl *t)
{
	cli_once(t, 0, "GET /badhdr HTTP/1.1\r\nConnection: close\r\n\r\n");
}

TEST(listener_refuses_malformed_answer_header)
{
	struct tl *t = tl_init();
	int level = log_level;
	int rc;

	log_level = -1; /* the refusal is logged as an error: keep the output clean */
	rc = tl_run(t, NULL, c_bad_answer_header);
	log_level = level;
	ASSERT_EQ(rc, 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 500 ");
	ASSERT(!strstr(t->resp[0].p, "Set-Cookie"));
	ASSERT_EQ(t->st.status_class[5], 1);
	ASSERT_EQ(t->st.status_class[3], 0);
	tl_release(t);
}

/* ----------------------------------------------------------- keep-alive */

static void c_keepalive(struct tl *t)
{
	int fd = cli_connect(t->port), i;

	for (i = 1; i <= 3; i++) {
		cli_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
		cli_read(t, 0, fd, i);
	}
	/* HEAD: no body, but the Content-Length of one; framing holds */
	cli_sends(fd, "HEAD /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 1, fd, 1);
	close(fd);
	/* HTTP/1.0: closes unless asked to keep alive */
	cli_once(t, 2, "GET /healthz HTTP/1.0\r\n\r\n");
	fd = cli_connect(t->port);
	cli_sends(fd, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	cli_read(t, 3, fd, 1);
	cli_sends(fd, "GET /healthz HTTP/1.0\r\n\r\n");
	cli_read(t, 3, fd, 0);
	close(fd);
}

TEST(listener_keepalive_head_and_http10)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_keepalive), 0);
	ASSERT_EQ(t->nresp[0], 3);
	ASSERT(!strstr(t->resp[0].p, "Connection:"));
	ASSERT(!t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				     "Content-Length: 2\r\n\r\nHTTP/1.1 200 OK\r\n");
	ASSERT_EQ(t->nresp[2], 1);
	ASSERT_CONTAINS(t->resp[2].p, "Connection: close\r\n");
	ASSERT(t->eof[2]);
	ASSERT_EQ(t->nresp[3], 2);
	ASSERT_CONTAINS(t->resp[3].p, "Connection: keep-alive\r\n");
	ASSERT_CONTAINS(t->resp[3].p, "Connection: close\r\n");
	ASSERT(t->eof[3]);
	ASSERT_EQ(t->st.connections, 3);
	ASSERT_EQ(t->st.requests, 8);
	tl_release(t);
}

static void c_pipelined(struct tl *t)
{
	int fd = cli_connect(t->port);

	/* the first waits on a timer; the others must wait behind it */
	cli_sends(fd, "GET /later/80 HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
		      "GET /later/10 HTTP/1.1\r\n\r\nPOST /form HTTP/1.1\r\nContent-Length: 3\r\n\r\na=7");
	cli_read(t, 0, fd, 4);
	close(fd);
}

TEST(listener_pipelined_answers_in_order)
{
	struct tl *t = tl_init();
	const char *a, *b, *c, *d;

	ASSERT_EQ(tl_run(t, NULL, c_pipelined), 0);
	ASSERT_EQ(t->nresp[0], 4);
	a = strstr(t->resp[0].p, "later 80");
	b = strstr(t->resp[0].p, "\r\n\r\nok");
	c = strstr(t->resp[0].p, "later 10");
	d = strstr(t->resp[0].p, "n=1 a=7");
	ASSERT(a && b && c && d);
	ASSERT(a < b && b < c && c < d);
	ASSERT_EQ(t->st.connections, 1);
	tl_release(t);
}

static void c_async(struct tl *t)
{
	int fd = cli_connect(t->port);
	long t0 = tl_now_ms();

	cli_sends(fd, "GET /later/60 HTTP/1.1\r\n\r\n");
	cli_read(t, 0, fd, 1);
	t->elapsed_ms[0] = tl_now_ms() - t0;
	/* the connection is reusable after an async answer */
	cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 0, fd, 2);
	close(fd);
}

TEST(listener_async_answer_from_timer)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_async), 0);
	ASSERT_EQ(t->nresp[0], 2);
	ASSERT_CONTAINS(t->resp[0].p, "Content-Length: 8\r\n\r\nlater 60");
	ASSERT(t->elapsed_ms[0] >= 55);
	ASSERT(!t->gone_seen);
	tl_release(t);
}

static void c_gone(struct tl *t)
{
	int fd = cli_connect(t->port), i;

	cli_sends(fd, "GET /later-gone HTTP/1.1\r\n\r\n");
	for (i = 0; i < 3000 && atomic_load(&t->handled) == 0; i++)
		usleep(10000);
	close(fd);
	/* the server goes on serving others meanwhile */
	usleep(20000);
	cli_once(t, 0, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
}

TEST(listener_client_gone_before_async_answer)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_gone), 0);
	ASSERT_CONTAINS(t->resp[0].p, "\r\n\r\nok");
	ASSERT(t->gone_seen);
	ASSERT(t->closed);
	ASSERT_EQ(t->st.requests, 2);
	ASSERT_EQ(t->st.conn_active, 0);
	ASSERT_EQ(t->st.req_pending, 0);
	tl_release(t);
}

/* --------------------------------------------------------------- limits */

static void c_too_large(struct tl *t)
{
	char big[20000];
	struct buf req;

	/* refused from Content-Length before any body is sent */
	cli_once(t, 0, "POST /api/leads HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
	/* chunked: refused at the chunk that passes the limit */
	memset(big, 'x', 600);
	big[600] = '\0';
	buf_init(&req, 1 << 20);
	if (buf_addf(&req, "POST /api/leads HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "258\r\n%s\r\n258\r\n%s\r\n0\r\n\r\n", big, big) == 0)
		cli_once(t, 1, req.p);
	/* header block */
	memset(big, 'h', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_reset(&req);
	if (buf_addf(&req, "GET /healthz HTTP/1.1\r\nX-Big: %s\r\n\r\n", big) == 0)
		cli_once(t, 2, req.p);
	/* request target */
	big[9000] = '\0';
	buf_reset(&req);
	if (buf_addf(&req, "GET /healthz?%s HTTP/1.1\r\n\r\n", big) == 0)
		cli_once(t, 3, req.p);
	buf_release(&req);
}

TEST(listener_limits_413_431_414)
{
	struct listener_limits lim = { .max_body_bytes = 1024 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_too_large), 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 413 Payload Too Large\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "Connection: close\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "{\"ok\":false,\"error\":\"request body too large\"}");
	ASSERT(t->eof[0]); /* answered and closed without waiting for the body */
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 413 ");
	ASSERT(t->eof[1]);
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 431 Request Header Fields Too Large\r\n");
	ASSERT_CONTAINS(t->resp[2].p, "header block too large");
	ASSERT_CONTAINS(t->resp[3].p, "HTTP/1.1 414 URI Too Long\r\n");
	ASSERT_EQ(atomic_load(&t->handled), 0);
	ASSERT_EQ(t->st.status_class[4], 4);
	tl_release(t);
}

static void c_malformed(struct tl *t)
{
	cli_once(t, 0, "GARBAGE\r\n\r\n");
	cli_once(t, 1, "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n");
	cli_once(t, 2, "GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
	/* many small headers */
	{
		struct buf req;
		int i, rc = 0;

		buf_init(&req, 1 << 20);
		rc |= buf_adds(&req, "GET /healthz HTTP/1.1\r\n");
		for (i = 0; i < 120; i++)
			rc |= buf_addf(&req, "X-%d: v\r\n", i);
		rc |= buf_adds(&req, "\r\n");
		if (rc == 0)
			cli_once(t, 3, req.p);
		buf_release(&req);
	}
}

TEST(listener_malformed_request_400)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_malformed), 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 400 Bad Request\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "{\"ok\":false,\"error\":\"");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 400 ");
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 400 ");
	ASSERT_CONTAINS(t->resp[3].p, "HTTP/1.1 431 ");
	ASSERT_CONTAINS(t->resp[3].p, "too many header fields");
	ASSERT_EQ(atomic_load(&t->handled), 0);
	tl_release(t);
}

static void c_slow(struct tl *t)
{
	int fd;
	long t0;

	cli_once(t, 0, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
	cli_once(t, 1, "POST /form HTTP/1.1\r\nContent-Length: 10\r\n\r\na=1");
	/* idle keep-alive: answered, then closed without a word */
	fd = cli_connect(t->port);
	t0 = tl_now_ms();
	cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 2, fd, 0);
	t->elapsed_ms[2] = tl_now_ms() - t0;
	close(fd);
	/* silent after connecting */
	fd = cli_connect(t->port);
	t0 = tl_now_ms();
	cli_read(t, 3, fd, 0);
	t->elapsed_ms[3] = tl_now_ms() - t0;
	close(fd);
}

TEST(listener_slow_client_408_and_idle_close)
{
	struct listener_limits lim = { .header_timeout_ms = 150, .body_timeout_ms = 150,
				       .idle_timeout_ms = 150 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_slow), 0);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 408 Request Timeout\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "request header timeout");
	ASSERT(t->eof[0]);
	ASSERT(t->elapsed_ms[0] >= 140); /* not before its timeout; later is load */
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 408 ");
	ASSERT_CONTAINS(t->resp[1].p, "request body timeout");
	ASSERT_EQ(t->nresp[2], 1);
	ASSERT(t->eof[2]);
	ASSERT(t->elapsed_ms[2] >= 140);
	ASSERT_EQ(t->resp[3].len, 0);
	ASSERT(t->eof[3]);
	ASSERT(t->elapsed_ms[3] >= 140);
	ASSERT_EQ(t->st.timeouts, 4);
	tl_release(t);
}

/* A 408 goes to a client that began a request; one that sent nothing
 * (fresh, or idle after an answer) is closed without a word. */
static void c_keepalive_partial(struct tl *t)
{
	int fd = cli_connect(t->port);

	cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 0, fd, 1);
	cli_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
	cli_read(t, 0, fd, 0);
	close(fd);
	fd = cli_connect(t->port);
	cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 1, fd, 0);
	close(fd);
	fd = cli_connect(t->port);
	cli_read(t, 2, fd, 0);
	close(fd);
}

TEST(listener_408_only_for_a_begun_request)
{
	struct listener_limits lim = { .header_timeout_ms = 100, .body_timeout_ms = 100,
				       .idle_timeout_ms = 100 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_keepalive_partial), 0);
	/* the second request, begun on a kept-alive connection: 408 */
	ASSERT_EQ(t->nresp[0], 2);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 200 ");
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 408 Request Timeout\r\n");
	ASSERT(t->eof[0]);
	/* answered, then idle: closed, nothing more said */
	ASSERT_EQ(t->nresp[1], 1);
	ASSERT(strstr(t->resp[1].p, "408") == NULL);
	ASSERT(t->eof[1]);
	/* silent from the start: closed, no answer */
	ASSERT_EQ(t->resp[2].len, 0);
	ASSERT(t->eof[2]);
	tl_release(t);
}

static void c_per_conn(struct tl *t)
{
	int fd = cli_connect(t->port);

	cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 0, fd, 1);
	cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 0, fd, 0);
	close(fd);
}

TEST(listener_requests_per_connection)
{
	struct listener_limits lim = { .max_requests = 2 };
	struct tl *t = tl_init();
	const char *close1;

	ASSERT_EQ(tl_run(t, &lim, c_per_conn), 0);
	ASSERT_EQ(t->nresp[0], 2);
	ASSERT(t->eof[0]);
	close1 = strstr(t->resp[0].p, "Connection: close\r\n");
	ASSERT(close1 && close1 > strstr(t->resp[0].p, "ok"));
	ASSERT_EQ(atomic_load(&t->handled), 2);
	tl_release(t);
}

/* A connection from a given loopback address (the whole 127/8 is local),
 * so tests can be several clients. */
static int cli_connect_from(int port, const char *from)
{
	struct sockaddr_in sa;
	struct timeval tv = { 30, 0 }; /* only to end a hung run */
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (inet_pton(AF_INET, from, &sa.sin_addr) != 1 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one whole answer from a connection the server refuses or drops:
 * until EOF, into b (reset first); returns true on EOF. */
static bool cli_read_all(int fd, struct buf *b)
{
	char tmp[4096];

	buf_reset(b);
	for (;;) {
		ssize_t n = recv(fd, tmp, sizeof(tmp), 0);

		if (n == 0)
			return true;
		if (n < 0 || buf_add(b, tmp, (size_t)n) < 0)
			return false;
	}
}

/* Waits for the loop thread's handlers to have run n times: an event, not
 * a time. */
static void cli_wait_handled(struct tl *t, int n)
{
	while (atomic_load(&t->handled) < n)
		usleep(1000);
}

/* Two connections each with a request at its handler: none is idle, so
 * the third is refused. */
static void c_cap(struct tl *t)
{
	int a = cli_connect(t->port), b = cli_connect(t->port), c;

	cli_sends(a, "GET /later-gone HTTP/1.1\r\n\r\n");
	cli_sends(b, "GET /later-gone HTTP/1.1\r\n\r\n");
	cli_wait_handled(t, 2);
	c = cli_connect(t->port);
	if (c >= 0) {
		cli_read(t, 2, c, 0);
		close(c);
	}
	close(a);
	close(b);
}

TEST(listener_connection_cap_none_idle_503_retry_after)
{
	struct listener_limits lim = { .max_connections = 2 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_cap), 0);
	ASSERT(t->eof[2]);
	ASSERT_EQ(t->nresp[2], 1);
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 503 Service Unavailable\r\n");
	ASSERT_CONTAINS(t->resp[2].p, "\r\nRetry-After: 2\r\n");
	ASSERT_CONTAINS(t->resp[2].p, "\r\n\r\n{\"ok\":false,\"error\":\"too many connections\"}");
	ASSERT_EQ(t->st.conn_rejected, 1);
	ASSERT_EQ(t->st.conn_rejected_ip, 0);
	ASSERT_EQ(t->st.conn_evicted, 0);
	ASSERT_EQ(t->st.connections, 2);
	tl_release(t);
}

#define STARVE_TRIES 1100
#define STARVE_MAX 32
#define STARVE_PER_IP 16

/* 127.0.0.1 tries 1,100 kept-alive connections; 127.0.0.3 fills the rest
 * of the cap; then 127.0.0.2 still gets answers. resp[0]: what the
 * oldest of 127.0.0.1 read after that; resp[1]: 127.0.0.2's /healthz;
 * resp[2]: its postback; resp[3]: the last 503. nresp[3]: 503s seen with
 * Retry-After. */
static void c_starve(struct tl *t)
{
	int mine[STARVE_PER_IP], other[STARVE_MAX - STARVE_PER_IP], i, fd, keep;
	struct buf b;

	buf_init(&b, 1 << 16);
	for (i = 0; i < STARVE_TRIES; i++) {
		fd = cli_connect_from(t->port, "127.0.0.1");
		if (fd < 0)
			break;
		if (i < STARVE_PER_IP) {
			mine[i] = fd;
			cli_sends(fd, "GET /healthz HTTP/1.1\r\n\r\n");
			buf_reset(&t->resp[0]);
			cli_read(t, 0, fd, 1);
			continue;
		}
		/* refused at accept: the 503 comes without a request */
		if (cli_read_all(fd, &b) && b.p && strstr(b.p, "HTTP/1.1 503 ") &&
		    strstr(b.p, "\r\nRetry-After: ")) {
			t->nresp[3]++;
			buf_reset(&t->resp[3]);
			if (buf_add(&t->resp[3], b.p, b.len) < 0)
				break;
		}
		close(fd);
	}
	for (i = 0; i < STARVE_MAX - STARVE_PER_IP; i++) {
		other[i] = cli_connect_from(t->port, "127.0.0.3");
		cli_sends(other[i], "GET /healthz HTTP/1.1\r\n\r\n");
		buf_reset(&t->resp[1]);
		cli_read(t, 1, other[i], 1);
	}
	/* the cap is full of idle connections: the oldest ones make room */
	keep = cli_connect_from(t->port, "127.0.0.2");
	buf_reset(&t->resp[1]);
	cli_sends(keep, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 1, keep, 1);
	fd = cli_connect_from(t->port, "127.0.0.2");
	cli_sends(fd, "POST /key1/s2s?click_id=c1&status=approved HTTP/1.1\r\n"
		      "Connection: close\r\nContent-Length: 0\r\n\r\n");
	cli_read(t, 2, fd, 0);
	close(fd);
	/* the oldest of 127.0.0.1 was closed without a word */
	t->eof[0] = cli_read_all(mine[0], &t->resp[0]);
	close(keep);
	for (i = 0; i < STARVE_PER_IP; i++)
		close(mine[i]);
	for (i = 0; i < STARVE_MAX - STARVE_PER_IP; i++)
		close(other[i]);
	buf_release(&b);
}

TEST(listener_one_address_cannot_starve_the_others)
{
	/* idle timeouts long, so only the caps close anything */
	struct listener_limits lim = { .max_connections = STARVE_MAX,
				       .max_connections_per_ip = STARVE_PER_IP,
				       .idle_timeout_ms = 60000,
				       .idle_pressure_ms = 60000 };
	struct tl *t = tl_init();
	struct rlimit rl;

	/* both ends of the connections live in this process */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	ASSERT_EQ(tl_run(t, &lim, c_starve), 0);
	ASSERT_EQ(t->nresp[3], STARVE_TRIES - STARVE_PER_IP);
	ASSERT_CONTAINS(t->resp[3].p, "Retry-After: 2\r\n");
	ASSERT_CONTAINS(t->resp[3].p, "too many connections from this address");
	ASSERT_EQ(t->st.conn_rejected, STARVE_TRIES - STARVE_PER_IP);
	ASSERT_EQ(t->st.conn_rejected_ip, STARVE_TRIES - STARVE_PER_IP);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 200 OK\r\n");
	ASSERT_CONTAINS(t->resp[1].p, "\r\n\r\nok");
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 200 OK\r\n");
	ASSERT_CONTAINS(t->resp[2].p, "remote=127.0.0.2");
	ASSERT_CONTAINS(t->resp[2].p, "key=key1");
	/* two idle ones made room, the oldest first */
	ASSERT_EQ(t->st.conn_evicted, 2);
	ASSERT(t->eof[0]);
	ASSERT_EQ(t->resp[0].len, 0);
	ASSERT_EQ(t->st.connections, STARVE_MAX + 2);
	ASSERT_EQ(t->st.conn_active, 0);
	tl_release(t);
}

/* A per-address cap not below the total is off (one proxy in front): its
 * own oldest idle connection makes room for its next one. */
static void c_proxy(struct tl *t)
{
	int fd[5], i;

	for (i = 0; i < 5; i++) {
		fd[i] = cli_connect(t->port);
		cli_sends(fd[i], "GET /healthz HTTP/1.1\r\n\r\n");
		cli_read(t, 1, fd[i], i + 1);
	}
	t->eof[0] = cli_read_all(fd[0], &t->resp[0]);
	for (i = 0; i < 5; i++)
		close(fd[i]);
}

TEST(listener_per_address_cap_at_the_total_is_off)
{
	struct listener_limits lim = { .max_connections = 4, .max_connections_per_ip = 4,
				       .idle_timeout_ms = 60000, .idle_pressure_ms = 60000 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_proxy), 0);
	ASSERT_EQ(t->nresp[1], 5);
	ASSERT(strstr(t->resp[1].p, " 503 ") == NULL);
	ASSERT(t->eof[0]);
	ASSERT_EQ(t->resp[0].len, 0);
	ASSERT_EQ(t->st.conn_rejected, 0);
	ASSERT_EQ(t->st.conn_evicted, 1);
	tl_release(t);
}

/* Above 3/4 of the cap an answered connection gets the short idle
 * timeout: the fourth of four is closed after its answer, though the
 * ordinary idle timeout is a minute. */
static void c_pressure(struct tl *t)
{
	int fd[4], i;

	for (i = 0; i < 4; i++) {
		fd[i] = cli_connect(t->port);
		cli_sends(fd[i], "GET /healthz HTTP/1.1\r\n\r\n");
		cli_read(t, i, fd[i], i < 3 ? 1 : 0);
	}
	for (i = 0; i < 4; i++)
		close(fd[i]);
}

TEST(listener_short_idle_timeout_under_pressure)
{
	struct listener_limits lim = { .max_connections = 4, .idle_timeout_ms = 60000,
				       .idle_pressure_ms = 50 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_pressure), 0);
	ASSERT_EQ(t->nresp[3], 1);
	ASSERT(t->eof[3]);
	ASSERT_CONTAINS(t->resp[3].p, "\r\n\r\nok");
	ASSERT(t->st.timeouts + t->st.conn_evicted >= 1);
	tl_release(t);
}

/* ---------------------------------------------------------- strict HTTP */

static const char *tl_reqs[TL_CONNS];

/* Sends each of tl_reqs on its own connection, reading until it closes. */
static void c_reqs(struct tl *t)
{
	int i;

	for (i = 0; i < TL_CONNS; i++)
		if (tl_reqs[i])
			cli_once(t, i, tl_reqs[i]);
}

static struct tl *tl_run_reqs(const char *r0, const char *r1, const char *r2, const char *r3)
{
	struct tl *t = tl_init();

	tl_reqs[0] = r0;
	tl_reqs[1] = r1;
	tl_reqs[2] = r2;
	tl_reqs[3] = r3;
	if (tl_run(t, NULL, c_reqs) != 0)
		return NULL;
	return t;
}

TEST(listener_strict_version_505)
{
	struct tl *t = tl_run_reqs("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
				   "GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n",
				   "GET /healthz HTTP/3.1\r\n", "GET /healthz HTTP/1.0\r\n\r\n");

	ASSERT(t);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 505 HTTP Version Not Supported\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "{\"ok\":false,\"error\":\"HTTP version not supported\"}");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 505 ");
	/* said as soon as the request line is read */
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 505 ");
	ASSERT_CONTAINS(t->resp[3].p, "HTTP/1.1 200 ");
	ASSERT_EQ(atomic_load(&t->handled), 1);
	tl_release(t);
}

TEST(listener_strict_http09_400)
{
	/* an HTTP/0.9 client sends its line and waits: answered at once */
	struct tl *t = tl_run_reqs("GET /healthz\r\n", "GET /healthz\r\n\r\n", NULL, NULL);

	ASSERT(t);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 400 Bad Request\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/0.9");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 400 ");
	ASSERT_EQ(atomic_load(&t->handled), 0);
	tl_release(t);
}

TEST(listener_strict_space_before_colon_400)
{
	struct tl *t = tl_run_reqs("GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
				   "POST /form HTTP/1.1\r\nContent-Length : 3\r\n\r\na=1",
				   "GET /healthz HTTP/1.1\r\nHost: x y\r\nConnection: close\r\n\r\n", NULL);

	ASSERT(t);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 400 Bad Request\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "whitespace in a header name");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 400 ");
	ASSERT_CONTAINS(t->resp[1].p, "whitespace in a header name");
	/* a blank inside a value is fine */
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 200 ");
	ASSERT_EQ(atomic_load(&t->handled), 1);
	tl_release(t);
}

TEST(listener_strict_transfer_encoding_501)
{
	struct tl *t = tl_run_reqs(
		"POST /form HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
		"POST /form HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
		"POST /form HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
		"\r\n3\r\na=1\r\n0\r\n\r\n",
		"POST /form HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
		"3\r\na=1\r\n0\r\n\r\n");

	ASSERT(t);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 501 Not Implemented\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "transfer coding not supported");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 501 ");
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 501 ");
	ASSERT_CONTAINS(t->resp[3].p, "HTTP/1.1 201 ");
	ASSERT_CONTAINS(t->resp[3].p, "n=1 a=1");
	ASSERT_EQ(atomic_load(&t->handled), 1);
	tl_release(t);
}

TEST(listener_strict_expect_417)
{
	struct tl *t = tl_run_reqs(
		"POST /form HTTP/1.1\r\nContent-Length: 3\r\nExpect: 200-ok\r\n\r\na=1",
		"GET /healthz HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n",
		"POST /form HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n"
		"Connection: close\r\n\r\na=1", NULL);

	ASSERT(t);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 417 Expectation Failed\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "expectation not supported");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 417 ");
	ASSERT_CONTAINS(t->resp[2].p, "HTTP/1.1 201 ");
	ASSERT_EQ(atomic_load(&t->handled), 1);
	tl_release(t);
}

TEST(listener_strict_length_and_chunked_400)
{
	struct tl *t = tl_run_reqs("POST /form HTTP/1.1\r\nContent-Length: 3\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
				   "POST /form HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
				   "Content-Length: 3\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
				   NULL, NULL);

	ASSERT(t);
	ASSERT_CONTAINS(t->resp[0].p, "HTTP/1.1 400 Bad Request\r\n");
	ASSERT(t->eof[0]);
	ASSERT_CONTAINS(t->resp[1].p, "HTTP/1.1 400 ");
	ASSERT_EQ(atomic_load(&t->handled), 0);
	tl_release(t);
}

static void c_expect(struct tl *t)
{
	int fd = cli_connect(t->port);

	cli_sends(fd, "POST /form HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
	{
		char tmp[64];
		ssize_t n = recv(fd, tmp, sizeof(tmp) - 1, 0);

		if (n > 0 && buf_add(&t->resp[1], tmp, (size_t)n) < 0)
			return;
	}
	cli_sends(fd, "a=5");
	cli_read(t, 0, fd, 1);
	close(fd);
}

TEST(listener_expect_100_continue)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_expect), 0);
	ASSERT_STREQ(t->resp[1].p, "HTTP/1.1 100 Continue\r\n\r\n");
	ASSERT_CONTAINS(t->resp[0].p, "n=1 a=5");
	tl_release(t);
}

/* -------------------------------------------------------------- closing */

static void c_graceful(struct tl *t)
{
	int idle = cli_connect(t->port), busy = cli_connect(t->port), late;

	cli_sends(idle, "GET /healthz HTTP/1.1\r\n\r\n");
	cli_read(t, 0, idle, 1);
	cli_sends(busy, "GET /close HTTP/1.1\r\n\r\n");
	cli_read(t, 1, busy, 0);
	cli_read(t, 0, idle, 0);
	late = cli_connect(t->port);
	t->refused = late < 0;
	if (late >= 0)
		close(late);
	close(idle);
	close(busy);
}

TEST(listener_graceful_close_with_request_in_flight)
{
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, NULL, c_graceful), 0);
	ASSERT(t->closed);
	/* the idle connection was closed at once, the busy one answered */
	ASSERT_EQ(t->nresp[0], 1);
	ASSERT(t->eof[0]);
	ASSERT_EQ(t->nresp[1], 1);
	ASSERT_CONTAINS(t->resp[1].p, "Connection: close\r\n");
	ASSERT_CONTAINS(t->resp[1].p, "later 100");
	ASSERT(t->eof[1]);
	ASSERT(t->refused);
	ASSERT_EQ(t->st.requests, 2);
	ASSERT_EQ(t->st.conn_active, 0);
	tl_release(t);
}

static void c_thousand(struct tl *t)
{
	int fd = cli_connect(t->port), i;

	for (i = 1; i <= 1000; i++) {
		buf_reset(&t->resp[0]);
		cli_sends(fd, "GET /count?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n");
		cli_read(t, 0, fd, 1);
		if (t->nresp[0] != 1)
			break;
		t->nresp[1]++;
	}
	close(fd);
}

TEST(listener_thousand_requests_on_one_connection)
{
	struct listener_limits lim = { .max_requests = 5000 };
	struct tl *t = tl_init();

	ASSERT_EQ(tl_run(t, &lim, c_thousand), 0);
	ASSERT_EQ(t->nresp[1], 1000);
	ASSERT_CONTAINS(t->resp[0].p, "\r\n\r\nn=1000");
	ASSERT_EQ(t->st.connections, 1);
	ASSERT_EQ(t->st.requests, 1000);
	ASSERT(t->buffer_bytes[0] > 0);
	ASSERT_EQ(t->buffer_bytes[1], t->buffer_bytes[0]);
	ASSERT(t->st.bytes_in > 1000 * 50);
	ASSERT(t->st.bytes_out > 1000 * 50);
	tl_release(t);
}
