/* test_page: the operator page. Its files served from the binary by the
 * listener, without a token and with their headers; and the page itself in
 * headless Chromium against a daemon on a seeded database. */
#include "admin_page.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "test.h"

/* ------------------------------------------------- assets over loopback */

#define TP_REQS 6

static const char *const tp_paths[TP_REQS] = {
	"/admin/", "/admin/app.js", "/admin/style.css", "/admin", "/admin/nope.js", "/admin/index.html",
};

/* The listener's loop runs on the test thread; a client thread asks for
 * tp_paths, one connection each, and keeps the whole answers. */
struct tp {
	uv_loop_t loop;
	uv_async_t done;
	struct listener *l;
	int port;
	char *resp[TP_REQS];
};

static char *tp_get(int port, const char *path)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 30 }; /* only against a hung run */
	char req[512], chunk[4096];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct buf b;
	ssize_t n;
	char *s;

	if (fd < 0)
		return NULL;
	buf_init(&b, 4 << 20);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n)
		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			if (buf_add(&b, chunk, (size_t)n) < 0)
				break;
	close(fd);
	s = b.p ? strdup(b.p) : NULL;
	buf_release(&b);
	return s;
}

static void *tp_client(void *arg)
{
	struct tp *t = arg;
	int i;

	for (i = 0; i < TP_REQS; i++)
		t->resp[i] = tp_get(t->port, tp_paths[i]);
	uv_async_send(&t->done);
	return NULL;
}

static void tp_done_cb(uv_async_t *a)
{
	struct tp *t = a->data;

	uv_close((uv_handle_t *)a, NULL);
	listener_close(t->l, NULL, NULL);
}

static void tp_free(void *arg)
{
	struct tp *t = arg;
	int i;

	for (i = 0; i < TP_REQS; i++)
		free(t->resp[i]);
}

/* The value of header name in an answer's head, into out ("" if none). */
static void tp_header(const char *resp, const char *name, char *out, size_t outlen)
{
	const char *end = strstr(resp, "\r\n\r\n"), *p = resp;
	size_t nl = strlen(name);

	out[0] = '\0';
	while (p && end && p < end) {
		p = strstr(p, "\r\n");
		if (!p || p >= end)
			return;
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ')
				p++;
			snprintf(out, outlen, "%.*s", (int)strcspn(p, "\r"), p);
			return;
		}
	}
}

TEST(page_assets_are_served_without_a_token_with_strict_headers)
{
	static struct tp t;
	struct listener_config cfg = { .addr = "127.0.0.1:0",
				       .routes = admin_page_routes,
				       .nroutes = ADMIN_PAGE_NROUTES };
	static const char *const types[3] = { "text/html; charset=utf-8",
					       "text/javascript; charset=utf-8",
					       "text/css; charset=utf-8" };
	char err[256], h[512];
	pthread_t th;
	int i;

	memset(&t, 0, sizeof(t));
	test_defer(tp_free, &t);
	ASSERT_EQ(uv_loop_init(&t.loop), 0);
	ASSERT(listener_start(&t.loop, &cfg, &t.l, err, sizeof(err)) == 0);
	t.port = listener_port(t.l);
	uv_async_init(&t.loop, &t.done, tp_done_cb);
	t.done.data = &t;
	ASSERT_EQ(pthread_create(&th, NULL, tp_client, &t), 0);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	ASSERT_EQ(uv_loop_close(&t.loop), 0);

	for (i = 0; i < 3; i++) {
		const char *r = t.resp[i];

		ASSERT(r != NULL);
		ASSERT(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
		tp_header(r, "Content-Type", h, sizeof(h));
		ASSERT_STREQ(h, types[i]);
		tp_header(r, "Cache-Control", h, sizeof(h));
		ASSERT_STREQ(h, "no-cache");
		tp_header(r, "X-Content-Type-Options", h, sizeof(h));
		ASSERT_STREQ(h, "nosniff");
		tp_header(r, "Content-Security-Policy", h, sizeof(h));
		ASSERT(strncmp(h, "default-src 'self';", 19) == 0);
		ASSERT(strstr(h, "unsafe") == NULL);
	}
	/* the body is the embedded file, whole */
	ASSERT_CONTAINS(t.resp[0], "<script src=\"app.js\" defer></script>");
	ASSERT_CONTAINS(t.resp[0], "</html>");
	ASSERT_CONTAINS(t.resp[1], "document.addEventListener('DOMContentLoaded', init);");
	/* /admin goes to /admin/, an unknown file is 404, index.html by name too */
	ASSERT(t.resp[3] && strncmp(t.resp[3], "HTTP/1.1 308 ", 13) == 0);
	tp_header(t.resp[3], "Location", h, sizeof(h));
	ASSERT_STREQ(h, "/admin/");
	ASSERT(t.resp[4] && strncmp(t.resp[4], "HTTP/1.1 404 ", 13) == 0);
	ASSERT(t.resp[5] && strncmp(t.resp[5], "HTTP/1.1 200 ", 13) == 0);
}

/* No external request: the page names no other origin, and puts data into
 * the DOM through textContent only. */
TEST(page_assets_stay_on_their_origin_and_never_use_innerhtml)
{
	const struct admin_page_asset *a;
	int n = 0;

	for (a = admin_page_assets; a->name; a++, n++) {
		const char *s = (const char *)a->data;

		ASSERT_EQ(strlen(s), a->len);
		const char *u;

		/* a URL only as the SVG namespace name, which is never fetched */
		for (u = strstr(s, "http"); u; u = strstr(u + 1, "http"))
			ASSERT(strncmp(u, "https:", 6) != 0 &&
			       (strncmp(u, "http:", 5) != 0 ||
				strncmp(u, "http://www.w3.org/2000/svg'", 27) == 0));
		ASSERT(strstr(s, "innerHTML") == NULL);
		ASSERT(strstr(s, "outerHTML") == NULL);
		ASSERT(strstr(s, "document.write") == NULL);
		ASSERT(strstr(s, "eval(") == NULL);
	}
	ASSERT(n >= 3);
	ASSERT(admin_page_find("index.html") && admin_page_find("app.js") &&
	       admin_page_find("style.css"));
}
