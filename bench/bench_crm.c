/* bench_crm: the mock CRM of the poll-pass benchmark (bench/sec_pass.py), a
 * process of its own so that its CPU time is visible beside the daemon's
 * and PostgreSQL's.
 *
 *   build/bench/bench_crm --listen 127.0.0.1:PORT [--delay-ms 100] [--change 0.2]
 *                         [--key K]
 *
 * GET /api/orders?ids=E1,E2,...&key=K is answered after delay-ms (a libuv
 * timer per request: the loop never waits, so any number of requests wait
 * at once, on as many keep-alive connections as come) with
 *   [{"id":"E1","status":"processing"},{"id":"E2","status":"callback"},...]
 * where an id answers "callback" when a hash of it falls in the lowest
 * `change` fraction: the same ids always get the same answer, so one pass
 * over freshly seeded leads in status 2 (comment "processing", the text
 * setstc writes) changes ~20 % of them to 3 and leaves the rest as they
 * are. A request without ids or key (or with another key than --key) gets
 * 400. GET /stats answers {"requests":N,"ids":N,"callbacks":N,"bad":N}
 * at once, for the section to read before it stops the mock. Port 0 picks
 * a free port; the port is printed once on stdout ("listening on
 * 127.0.0.1:PORT"); nothing is printed per request. SIGTERM or SIGINT
 * stops it: the listener closes after the requests waiting are answered.
 *
 * It uses the daemon's own HTTP listener (src/listener.c), so its cost per
 * request is close to what a lean real server would spend. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "listener.h"

#define CRM_ANSWER_MAX ((size_t)4 << 20)

struct crm {
	uint64_t delay_ms;
	uint32_t change_per_10k; /* ids answering "callback", per 10,000 */
	const char *key;         /* NULL: any non-empty key */
	uint64_t requests, ids, callbacks, bad;
	struct listener *l;
	uv_signal_t sig_term, sig_int;
};

/* A request waiting for its timer, with its answer already built. */
struct crm_wait {
	uv_timer_t timer;
	struct listener_req *req;
	struct buf body;
};

/* FNV-1a over the id, then splitmix64's finaliser so that neighbouring ids
 * (E1, E2, ...) spread evenly over the buckets. */
static uint32_t crm_bucket(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return (uint32_t)(h % 10000);
}

/* The answer to ids (a comma list): one item per non-empty id, in order. */
static int crm_answer(struct crm *c, struct buf *b, const char *ids, size_t n)
{
	size_t i = 0, start;
	bool first = true;

	if (buf_addc(b, '[') < 0)
		return -1;
	while (i <= n) {
		start = i;
		while (i < n && ids[i] != ',')
			i++;
		if (i > start) {
			bool cb = crm_bucket(ids + start, i - start) < c->change_per_10k;

			if ((!first && buf_addc(b, ',') < 0) || buf_adds(b, "{\"id\":") < 0 ||
			    buf_add_json_str(b, ids + start, i - start) < 0 ||
			    buf_adds(b, cb ? ",\"status\":\"callback\"}" : ",\"status\":\"processing\"}") < 0)
				return -1;
			first = false;
			c->ids++;
			c->callbacks += cb;
		}
		i++;
	}
	return buf_addc(b, ']');
}

static void crm_wait_closed(uv_handle_t *h)
{
	struct crm_wait *w = h->data;

	buf_release(&w->body);
	free(w);
}

static void crm_wait_fire(uv_timer_t *t)
{
	struct crm_wait *w = t->data;

	listener_respond(w->req, 200, "application/json", w->body.p, w->body.len, NULL);
	uv_close((uv_handle_t *)&w->timer, crm_wait_closed);
}

static void crm_orders(struct listener_req *req, void *data)
{
	struct crm *c = data;
	struct crm_wait *w;
	size_t ids_len = 0, key_len = 0;
	const char *ids = listener_query_get(req, "ids", &ids_len);
	const char *key = listener_query_get(req, "key", &key_len);

	c->requests++;
	if (!ids || !ids_len || !key || !key_len ||
	    (c->key && !buf_ct_equal(key, key_len, c->key, strlen(c->key)))) {
		c->bad++;
		listener_respond_error(req, 400, !ids || !ids_len ? "ids missing" : "bad key");
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		listener_respond_error(req, 500, "out of memory");
		return;
	}
	buf_init(&w->body, CRM_ANSWER_MAX);
	w->req = req;
	if (crm_answer(c, &w->body, ids, ids_len) < 0) {
		buf_release(&w->body);
		free(w);
		listener_respond_error(req, 500, "answer too large");
		return;
	}
	uv_timer_init(uv_default_loop(), &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, crm_wait_fire, c->delay_ms, 0);
}

static void crm_stats(struct listener_req *req, void *data)
{
	struct crm *c = data;
	char out[256];
	int n = snprintf(out, sizeof(out),
			 "{\"requests\":%" PRIu64 ",\"ids\":%" PRIu64 ",\"callbacks\":%" PRIu64
			 ",\"bad\":%" PRIu64 "}",
			 c->requests, c->ids, c->callbacks, c->bad);

	listener_respond(req, 200, "application/json", out, (size_t)n, NULL);
}

static void crm_stop(uv_signal_t *s, int signum)
{
	struct crm *c = s->data;

	(void)signum;
	uv_close((uv_handle_t *)&c->sig_term, NULL);
	uv_close((uv_handle_t *)&c->sig_int, NULL);
	listener_close(c->l, NULL, NULL);
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_crm --listen HOST:PORT [--delay-ms 100] [--change 0.2] "
			"[--key K]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static struct crm c;
	const struct listener_route routes[] = {
		{ LISTENER_GET, "/api/orders", crm_orders, &c },
		{ LISTENER_GET, "/stats", crm_stats, &c },
	};
	struct listener_config cfg = { 0 };
	const char *listen = NULL;
	double change = 0.2;
	char err[256];
	int i;

	c.delay_ms = 100;
	for (i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;

		if (!v)
			return usage();
		errno = 0;
		if (!strcmp(argv[i], "--listen")) {
			listen = v;
		} else if (!strcmp(argv[i], "--delay-ms")) {
			unsigned long long d = strtoull(v, &end, 10);

			if (errno || !*v || *end || d > 3600000)
				return usage();
			c.delay_ms = d;
		} else if (!strcmp(argv[i], "--change")) {
			change = strtod(v, &end);
			if (errno || !*v || *end || !(change >= 0 && change <= 1))
				return usage();
		} else if (!strcmp(argv[i], "--key")) {
			c.key = v;
		} else {
			return usage();
		}
		i++;
	}
	if (!listen)
		return usage();
	c.change_per_10k = (uint32_t)(change * 10000 + 0.5);

	cfg.addr = listen;
	cfg.routes = routes;
	cfg.nroutes = sizeof(routes) / sizeof(routes[0]);
	/* a benchmark's client keeps its connections for the whole run */
	cfg.limits.max_requests = 100000000;
	cfg.limits.max_connections = 4096;
	cfg.limits.max_connections_per_ip = 4096; /* its one client: no per-address cap */
	cfg.limits.idle_timeout_ms = 600000;
	if (listener_start(uv_default_loop(), &cfg, &c.l, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_crm: %s\n", err);
		return 1;
	}
	uv_signal_init(uv_default_loop(), &c.sig_term);
	uv_signal_init(uv_default_loop(), &c.sig_int);
	c.sig_term.data = c.sig_int.data = &c;
	uv_signal_start(&c.sig_term, crm_stop, SIGTERM);
	uv_signal_start(&c.sig_int, crm_stop, SIGINT);
	printf("listening on %.*s:%d\n", (int)(strrchr(listen, ':') ? strrchr(listen, ':') - listen : 0),
	       listen, listener_port(c.l));
	fflush(stdout);
	uv_run(uv_default_loop(), UV_RUN_DEFAULT);
	uv_loop_close(uv_default_loop());
	return 0;
}
