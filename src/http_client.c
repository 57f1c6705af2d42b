/* http_client: CRM requests through curl_multi_socket_action on libuv, with caps, host holds, rate keys and bounded answers. */
#include "http_client.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "heap.h"
#include "htab.h"
#include "list.h"

#define HC_MAX_URL 65536      /* bytes of a request URL */
#define HC_MAX_KEY 256        /* bytes of a rate key */
#define HC_MAX_HEADER 8192    /* bytes of one request header value */
#define HC_MAX_METHOD 16

/* --- Named entries (hosts, rate keys) in a hash table by name. --- */

struct hc_name {
	struct htab_node hn;
	char *name;
};

static bool hc_name_eq(const struct htab_node *x, const void *key)
{
	return strcmp(container_of(x, struct hc_name, hn)->name, key) == 0;
}

static uint64_t hc_name_hash(const char *name)
{
	return htab_hash(name, strlen(name));
}

/* --- Wake-ups: a binary min-heap of moments at which a held host or a
 * rate key needs attention, served by one uv_timer armed for the earliest.
 * Every host and key owns one slot, reserved when it is created, so
 * scheduling never fails. --- */

enum wake_kind { WAKE_HOST, WAKE_KEY };

struct wake {
	struct heap_node hn; /* key: µs, uv_hrtime clock */
	enum wake_kind kind;
};

/* --- The client's objects. --- */

struct host;
struct bucket;

/* A FIFO of queued requests sharing a host and a rate key (NULL: none). A
 * lane with requests is either READY (in its host's ready list) or WAITING
 * (in its key's waiting list, for a token). */
enum lane_where { LANE_IDLE, LANE_READY, LANE_WAITING };

struct lane {
	struct host *host;
	struct bucket *bucket; /* NULL: the host's plain lane */
	struct list reqs;
	struct list wlink;     /* host->ready or bucket->waiting */
	struct list blink;     /* bucket->lanes */
	enum lane_where where;
};

/* A "host:port". It lives while it has requests queued or in flight or a
 * hold not yet over. */
struct host {
	struct hc_name node;
	struct lane plain;
	struct list ready;     /* READY lanes, served round-robin */
	struct list rlink;     /* in client->ready_hosts */
	unsigned in_flight;
	unsigned nqueued;
	uint64_t hold_until;   /* µs; 0: none */
	struct wake wake;
};

/* A rate key's token bucket, counted in µs of credit: a token costs
 * `interval` µs, the bucket holds `cap` µs. It lives while it has lanes, and
 * afterwards until it is full again, so forgetting it lets no burst out. */
struct bucket {
	struct hc_name node;
	uint64_t interval;
	uint64_t cap;
	uint64_t credit;
	uint64_t last;
	struct list lanes;
	struct list waiting;
	struct wake wake;
};

enum req_state { REQ_QUEUED, REQ_RUNNING, REQ_DONE };

struct http_client_req {
	struct http_client *c;
	struct list link;      /* lane->reqs, client->running or client->done */
	struct list all;       /* client->all, from acceptance to the callback */
	enum req_state state;
	struct lane *lane;     /* while queued */
	struct host *host;     /* while queued or running */
	CURL *easy;
	struct curl_slist *hdrs;
	char *url;
	char *method;
	char *body;
	size_t body_len;
	char **hv;             /* header lines "Name: value", nhv of them */
	size_t nhv;
	http_client_cb cb;
	void *ud;
	struct buf resp;
	uint64_t bytes;
	bool too_large;
	bool oom;
	long retry_after;
	enum http_outcome outcome; /* set when it reaches the done list */
	CURLcode code;
	uint64_t connect_timeout_ms, timeout_ms;
	size_t max_bytes;
	int max_redirects;
	uint64_t t_new, t_start, t_end; /* µs */
	struct http_client_host *series; /* where its duration is counted */
	char errbuf[CURL_ERROR_SIZE];
};

struct sock {
	uv_poll_t poll;
	struct http_client *c;
	curl_socket_t fd;
	struct list link;
};

struct http_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t curl_timer;
	uv_timer_t wake_timer;
	uv_idle_t idle;
	int handles;           /* our open uv handles */
	struct http_client_limits lim;
	char *ca_file;
	char *user_agent;
	struct htab hosts;
	struct htab keys;
	struct heap heap;
	uint64_t wake_at;      /* what wake_timer is armed for; 0: not armed */
	struct list ready_hosts;
	struct list running;
	struct list done;
	struct list all;
	struct list socks;
	unsigned in_flight;
	unsigned queued;
	struct http_client_stats st;
	struct http_client_host series[HTTP_CLIENT_METRIC_HOSTS + 1]; /* + "other" */
	size_t nseries;
	bool closing;
	bool finishing;
	http_client_close_cb close_cb;
	void *close_data;
};

static char empty_body[1];

static const char *const outcome_names[HTTP_OUTCOME_COUNT] = {
	[HTTP_OK] = "ok",
	[HTTP_TIMEOUT] = "timeout",
	[HTTP_CONNECT_ERROR] = "connect_error",
	[HTTP_TLS_ERROR] = "tls_error",
	[HTTP_TOO_LARGE] = "too_large",
	[HTTP_BAD_ANSWER] = "bad_answer",
	[HTTP_REDIRECT_ERROR] = "redirect_error",
	[HTTP_CANCELLED] = "cancelled",
	[HTTP_INTERNAL_ERROR] = "internal_error",
};

const char *http_outcome_name(enum http_outcome o)
{
	return (unsigned)o < HTTP_OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

static uint64_t clock_hrtime_us(void *ctx)
{
	return uv_hrtime() / 1000;
}

/* Every moment the client reasons about (holds, tokens, result times) is
 * read here, so a test that injects limits.clock_us owns all of them. */
static uint64_t now_us(const struct http_client *c)
{
	return c->lim.clock_us(c->lim.clock_ctx);
}

static void dispatch(struct http_client *c);
static void client_handle_gone(struct http_client *c);
static void on_idle(uv_idle_t *i);

/* --- Wake timer. --- */

static void on_wake(uv_timer_t *t);

/* Arms the wake timer for the heap's earliest moment. The loop's clock may
 * lag ours a little, so the timer can fire early: on_wake then re-arms. */
static void wake_arm(struct http_client *c)
{
	uint64_t top, now;

	if (c->heap.n == 0) {
		if (c->wake_at)
			uv_timer_stop(&c->wake_timer);
		c->wake_at = 0;
		return;
	}
	top = heap_min(&c->heap)->key;
	if (c->wake_at == top)
		return;
	now = now_us(c);
	c->wake_at = top;
	uv_timer_start(&c->wake_timer, on_wake, top > now ? (top - now + 999) / 1000 : 0, 0);
}

/* --- Hosts. --- */

static void host_free(struct http_client *c, struct host *h)
{
	htab_remove(&c->hosts, &h->node.hn);
	heap_remove(&c->heap, &h->wake.hn);
	free(h->node.name);
	free(h);
}

static bool host_held(const struct host *h, uint64_t now)
{
	return h->hold_until > now;
}

/* Brings h's place in the ready list and the wake heap in line with its
 * state; frees h when nothing needs it any more (h must not be used after). */
static void host_settle(struct http_client *c, struct host *h, uint64_t now)
{
	bool held = host_held(h, now);
	bool ready = !held && h->in_flight < c->lim.max_per_host && list_linked(&h->ready);

	if (ready && !list_linked(&h->rlink))
		list_append(&c->ready_hosts, &h->rlink);
	else if (!ready && list_linked(&h->rlink))
		list_remove(&h->rlink);
	if (held) {
		if (!heap_linked(&h->wake.hn) || h->wake.hn.key != h->hold_until) {
			heap_set(&c->heap, &h->wake.hn, h->hold_until);
			wake_arm(c);
		}
		return;
	}
	h->hold_until = 0;
	heap_remove(&c->heap, &h->wake.hn);
	if (h->in_flight == 0 && h->nqueued == 0)
		host_free(c, h);
}

static struct host *host_get(struct http_client *c, const char *name)
{
	uint64_t hash = hc_name_hash(name);
	struct htab_node *nd = htab_find(&c->hosts, hash, hc_name_eq, name);
	struct host *h;

	if (nd)
		return container_of(nd, struct host, node.hn);
	if (heap_reserve(&c->heap, c->hosts.n + c->keys.n + 1) < 0)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->node.name = strdup(name);
	if (!h->node.name || htab_add(&c->hosts, &h->node.hn, hash) < 0) {
		free(h->node.name);
		free(h);
		return NULL;
	}
	h->plain.host = h;
	list_init(&h->plain.reqs);
	list_init(&h->plain.wlink);
	list_init(&h->plain.blink);
	list_init(&h->ready);
	list_init(&h->rlink);
	heap_node_init(&h->wake.hn);
	h->wake.kind = WAKE_HOST;
	return h;
}

/* --- Rate keys. --- */

static void bucket_refill(struct bucket *b, uint64_t now)
{
	if (now > b->last) {
		uint64_t gain = now - b->last;

		b->credit = gain >= b->cap - b->credit ? b->cap : b->credit + gain;
		b->last = now;
	}
}

static void lane_make_ready(struct http_client *c, struct lane *l)
{
	if (list_linked(&l->wlink))
		list_remove(&l->wlink);
	l->where = LANE_READY;
	list_append(&l->host->ready, &l->wlink);
}

/* Like host_settle for a key: wakes waiting lanes when a token is there,
 * schedules the moment one will be, frees the bucket once it is unused and
 * full (b must not be used after). */
static void bucket_settle(struct http_client *c, struct bucket *b, uint64_t now)
{
	bucket_refill(b, now);
	if (list_linked(&b->waiting)) {
		if (b->credit >= b->interval) {
			heap_remove(&c->heap, &b->wake.hn);
			while (list_linked(&b->waiting)) {
				struct lane *l = list_entry(list_first(&b->waiting), struct lane, wlink);

				lane_make_ready(c, l);
				host_settle(c, l->host, now);
			}
		} else {
			heap_set(&c->heap, &b->wake.hn, now + (b->interval - b->credit));
			wake_arm(c);
		}
		return;
	}
	if (list_linked(&b->lanes)) {
		heap_remove(&c->heap, &b->wake.hn);
		return;
	}
	if (b->credit >= b->cap) {
		htab_remove(&c->keys, &b->node.hn);
		heap_remove(&c->heap, &b->wake.hn);
		free(b->node.name);
		free(b);
		return;
	}
	heap_set(&c->heap, &b->wake.hn, now + (b->cap - b->credit));
	wake_arm(c);
}

static struct bucket *bucket_get(struct http_client *c, const char *key, double per_min,
				 unsigned burst, uint64_t now)
{
	uint64_t hash = hc_name_hash(key);
	struct htab_node *nd = htab_find(&c->keys, hash, hc_name_eq, key);
	double iv = 60e6 / per_min;
	uint64_t interval = iv < 1 ? 1 : (uint64_t)iv;
	struct bucket *b;

	if (burst == 0)
		burst = 1;
	if (nd) {
		b = container_of(nd, struct bucket, node.hn);
		bucket_refill(b, now);
	} else {
		if (heap_reserve(&c->heap, c->hosts.n + c->keys.n + 1) < 0)
			return NULL;
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		b->node.name = strdup(key);
		if (!b->node.name || htab_add(&c->keys, &b->node.hn, hash) < 0) {
			free(b->node.name);
			free(b);
			return NULL;
		}
		list_init(&b->lanes);
		list_init(&b->waiting);
		heap_node_init(&b->wake.hn);
		b->wake.kind = WAKE_KEY;
		b->credit = UINT64_MAX; /* full, clamped below */
		b->last = now;
	}
	b->interval = interval;
	b->cap = interval * burst;
	if (b->credit > b->cap)
		b->credit = b->cap;
	return b;
}

/* --- Lanes. --- */

static struct lane *lane_get(struct host *h, struct bucket *b)
{
	struct list *it;
	struct lane *l;

	if (!b)
		return &h->plain;
	list_for_each(it, &b->lanes) {
		l = container_of(it, struct lane, blink);
		if (l->host == h)
			return l;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->host = h;
	l->bucket = b;
	list_init(&l->reqs);
	list_init(&l->wlink);
	list_append(&b->lanes, &l->blink);
	return l;
}

/* Called when l may have become empty: an empty lane leaves every list and,
 * unless it is a host's plain lane, is freed (its key settled). */
static void lane_settle(struct http_client *c, struct lane *l, uint64_t now)
{
	struct bucket *b = l->bucket;

	if (list_linked(&l->reqs))
		return;
	if (list_linked(&l->wlink))
		list_remove(&l->wlink);
	l->where = LANE_IDLE;
	if (!b)
		return;
	list_remove(&l->blink);
	free(l);
	bucket_settle(c, b, now);
}

/* --- Requests. --- */

static void req_free(struct http_client_req *r)
{
	size_t i;

	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	for (i = 0; i < r->nhv; i++)
		free(r->hv[i]);
	free(r->hv);
	free(r->url);
	free(r->method);
	free(r->body);
	buf_release(&r->resp);
	free(r);
}

static enum http_outcome outcome_of(const struct http_client_req *r, CURLcode code)
{
	if (r->too_large)
		return HTTP_TOO_LARGE;
	if (r->oom)
		return HTTP_INTERNAL_ERROR;
	switch (code) {
	case CURLE_OK:
		return HTTP_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return HTTP_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
		return HTTP_CONNECT_ERROR;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		return HTTP_TLS_ERROR;
	case CURLE_FILESIZE_EXCEEDED:
		return HTTP_TOO_LARGE;
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return HTTP_REDIRECT_ERROR;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
		return HTTP_BAD_ANSWER;
	default:
		return HTTP_INTERNAL_ERROR;
	}
}

/* Runs r's callback with its result, counts it, frees r. */
static void req_deliver(struct http_client *c, struct http_client_req *r)
{
	struct http_result res;
	long status = 0, redirects = 0;
	char *eff = NULL, *ctype = NULL;
	curl_off_t up = 0;
	uint64_t end = r->t_end ? r->t_end : now_us(c);

	memset(&res, 0, sizeof(res));
	if (r->easy && r->t_start) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
		curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ctype);
		curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_COUNT, &redirects);
		curl_easy_getinfo(r->easy, CURLINFO_SIZE_UPLOAD_T, &up);
	}
	res.outcome = r->outcome;
	res.status = status;
	res.body_len = r->resp.len;
	res.body = res.body_len ? buf_steal(&r->resp) : empty_body;
	if (!res.body) {
		res.body = empty_body;
		res.body_len = 0;
	}
	res.bytes = r->bytes;
	res.bytes_sent = up > 0 ? (uint64_t)up : 0;
	if (r->t_start) {
		res.queued_ms = (double)(r->t_start - r->t_new) / 1e3;
		res.total_ms = (double)(end - r->t_start) / 1e3;
	} else {
		res.queued_ms = (double)(end - r->t_new) / 1e3;
	}
	res.retry_after_s = r->retry_after;
	res.redirects = redirects;
	res.effective_url = eff ? eff : r->url;
	res.content_type = ctype ? ctype : "";
	if (r->outcome == HTTP_OK)
		res.error = "";
	else if (r->outcome == HTTP_CANCELLED)
		res.error = "cancelled";
	else if (r->outcome == HTTP_TOO_LARGE) {
		snprintf(r->errbuf, sizeof(r->errbuf), "answer over %zu bytes", r->max_bytes);
		res.error = r->errbuf;
	} else if (r->oom) {
		res.error = "out of memory reading the answer";
	} else if (r->errbuf[0]) {
		res.error = r->errbuf;
	} else {
		res.error = curl_easy_strerror(r->code);
	}

	if (r->t_start && r->series)
		metrics_hist_observe(&r->series->duration, (double)(end - r->t_start) / 1e6);
	c->st.done[r->outcome]++;
	if (r->outcome == HTTP_OK && status >= 100 && status < 600)
		c->st.status_class[status / 100]++;
	c->st.bytes_in += r->bytes;
	c->st.bytes_out += res.bytes_sent;
	r->state = REQ_DONE;
	r->cb(r, &res, r->ud);
	if (res.body != empty_body)
		free(res.body);
	list_remove(&r->all);
	req_free(r);
}

/* The duration series of host name: its own while there is room, else
 * "other" (NULL only when the table is somehow full, which it never is). */
static struct http_client_host *series_get(struct http_client *c, const char *name)
{
	size_t i, len = strlen(name);
	struct http_client_host *s;

	for (i = 0; i < c->nseries; i++)
		if (strcmp(c->series[i].name, name) == 0)
			return &c->series[i];
	if (c->nseries < HTTP_CLIENT_METRIC_HOSTS && len < HTTP_CLIENT_HOST_NAME_MAX &&
	    strcmp(name, "other") != 0) {
		s = &c->series[c->nseries++];
	} else {
		for (i = 0; i < c->nseries; i++)
			if (strcmp(c->series[i].name, "other") == 0)
				return &c->series[i];
		if (c->nseries > HTTP_CLIENT_METRIC_HOSTS)
			return NULL;
		s = &c->series[c->nseries++];
		name = "other";
	}
	snprintf(s->name, sizeof(s->name), "%s", name);
	metrics_hist_init(&s->duration, metrics_crm_bounds, metrics_crm_nbounds);
	return s;
}

const struct http_client_host *http_client_hosts(const struct http_client *c, size_t *n)
{
	*n = c->nseries;
	return c->series;
}

char *http_result_take_body(struct http_result *res)
{
	char *p = res->body;

	if (p == empty_body || !p) {
		p = malloc(1);
		if (p)
			p[0] = '\0';
		return p;
	}
	res->body = empty_body;
	return p;
}

static void idle_start(struct http_client *c)
{
	uv_idle_start(&c->idle, on_idle);
}

/* Puts r on the done list: its callback runs from the idle handle. */
static void req_defer(struct http_client *c, struct http_client_req *r, enum http_outcome o)
{
	r->state = REQ_DONE;
	r->outcome = o;
	if (!r->t_end)
		r->t_end = now_us(c);
	list_append(&c->done, &r->link);
	idle_start(c);
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	struct http_client_req *r = ud;
	size_t len = size * n, room = r->max_bytes - r->resp.len;

	r->bytes += len;
	if (len > room) {
		if (room && buf_add(&r->resp, p, room) < 0)
			r->oom = true;
		r->too_large = true;
		return CURL_WRITEFUNC_ERROR;
	}
	if (buf_add(&r->resp, p, len) < 0) {
		r->oom = true;
		return CURL_WRITEFUNC_ERROR;
	}
	return len;
}

/* Retry-After: delta-seconds or an HTTP-date; -1 when unreadable. */
static long parse_retry_after(const char *p, size_t n)
{
	char tmp[80];
	size_t i = 0;
	long v = 0;
	time_t t;

	while (n && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	if (n == 0 || n >= sizeof(tmp))
		return -1;
	while (i < n && p[i] >= '0' && p[i] <= '9') {
		if (v < 100000000)
			v = v * 10 + (p[i] - '0');
		i++;
	}
	if (i == n)
		return v;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	t = curl_getdate(tmp, NULL);
	if (t == (time_t)-1)
		return -1;
	t -= time(NULL);
	return t > 0 ? (long)(t < 100000000 ? t : 100000000) : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct http_client_req *r = ud;
	size_t len = size * n;

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
		r->retry_after = -1; /* a new answer: a redirect's, or the final one */
	else if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0)
		r->retry_after = parse_retry_after(p + 12, len - 12);
	return len;
}

#define SET(opt, val)                                                        \
	do {                                                                 \
		if (curl_easy_setopt(e, opt, val) != CURLE_OK)               \
			goto fail;                                           \
	} while (0)

/* Creates r's easy handle and adds it to the multi. -1: nothing started. */
static int req_start(struct http_client *c, struct http_client_req *r)
{
	CURL *e = curl_easy_init();
	const char *m = r->method;
	size_t i;
	bool expect = false;

	if (!e)
		return -1;
	r->easy = e;
	for (i = 0; i < r->nhv; i++) {
		struct curl_slist *s = curl_slist_append(r->hdrs, r->hv[i]);

		if (!s)
			goto fail;
		r->hdrs = s;
		if (strncasecmp(r->hv[i], "expect:", 7) == 0)
			expect = true;
	}
	if (!expect) {
		/* no 100-continue round trip before a large body */
		struct curl_slist *s = curl_slist_append(r->hdrs, "Expect:");

		if (!s)
			goto fail;
		r->hdrs = s;
	}
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_PRIVATE, r);
	SET(CURLOPT_ERRORBUFFER, r->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	if (r->max_redirects > 0) {
		SET(CURLOPT_FOLLOWLOCATION, 1L);
		SET(CURLOPT_MAXREDIRS, (long)r->max_redirects);
	}
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	if (c->lim.low_speed_bytes && c->lim.low_speed_time_s) {
		SET(CURLOPT_LOW_SPEED_LIMIT, (long)c->lim.low_speed_bytes);
		SET(CURLOPT_LOW_SPEED_TIME, (long)c->lim.low_speed_time_s);
	}
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_bytes);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	/* a transfer cancelled or timed out while its name is being resolved
	 * leaves the resolver thread to finish (and free itself) alone, instead
	 * of joining it on the loop thread */
	SET(CURLOPT_QUICK_EXIT, 1L);
	if (c->ca_file)
		SET(CURLOPT_CAINFO, c->ca_file);
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, r);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, r);
	SET(CURLOPT_HTTPHEADER, r->hdrs);
	if (strcmp(m, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (strcmp(m, "GET") == 0 && r->body_len == 0) {
		SET(CURLOPT_HTTPGET, 1L);
	} else {
		if (r->body_len || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
		    strcmp(m, "PATCH") == 0) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
			SET(CURLOPT_POSTFIELDS, r->body ? r->body : "");
		}
		if (strcmp(m, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, m);
	}
	r->t_start = now_us(c);
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
		goto fail;
	return 0;
fail:
	r->t_start = 0;
	curl_easy_cleanup(e);
	r->easy = NULL;
	return -1;
}

#undef SET

/* Starts what the caps, holds and keys allow, hosts round-robin. */
static void dispatch(struct http_client *c)
{
	uint64_t now;

	if (c->closing || !list_linked(&c->ready_hosts))
		return;
	now = now_us(c);
	while (c->in_flight < c->lim.max_in_flight && list_linked(&c->ready_hosts)) {
		struct host *h = list_entry(list_first(&c->ready_hosts), struct host, rlink);
		struct lane *l = list_entry(list_first(&h->ready), struct lane, wlink);
		struct bucket *b = l->bucket;
		struct http_client_req *r;

		list_remove(&h->rlink);
		list_remove(&l->wlink);
		if (b) {
			bucket_refill(b, now);
			if (b->credit < b->interval) {
				l->where = LANE_WAITING;
				list_append(&b->waiting, &l->wlink);
				c->st.rate_waits++;
				bucket_settle(c, b, now);
				host_settle(c, h, now);
				continue;
			}
			b->credit -= b->interval;
		}
		r = list_entry(list_first(&l->reqs), struct http_client_req, link);
		list_remove(&r->link);
		r->lane = NULL;
		h->nqueued--;
		c->queued--;
		if (list_linked(&l->reqs)) {
			l->where = LANE_READY;
			list_append(&h->ready, &l->wlink);
		} else {
			lane_settle(c, l, now);
		}
		if (req_start(c, r) == 0) {
			r->state = REQ_RUNNING;
			list_append(&c->running, &r->link);
			h->in_flight++;
			c->in_flight++;
			c->st.started++;
		} else {
			r->host = NULL;
			snprintf(r->errbuf, sizeof(r->errbuf), "cannot start the transfer: out of memory");
			req_defer(c, r, HTTP_INTERNAL_ERROR);
		}
		host_settle(c, h, now);
	}
}

/* A transfer ended: account, hold its host if told to, call back, start more. */
static void req_finish(struct http_client *c, struct http_client_req *r, CURLcode code)
{
	struct host *h = r->host;
	uint64_t now = now_us(c);
	long status = 0;

	r->t_end = now;
	r->code = code;
	curl_multi_remove_handle(c->multi, r->easy);
	list_remove(&r->link);
	c->in_flight--;
	h->in_flight--;
	r->host = NULL;
	r->outcome = outcome_of(r, code);
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if ((status == 429 || status == 503) && r->retry_after > 0) {
		uint64_t ms = (uint64_t)r->retry_after * 1000;
		uint64_t until;

		if (ms > c->lim.max_retry_after_ms)
			ms = c->lim.max_retry_after_ms;
		until = now + ms * 1000;
		if (until > h->hold_until) {
			h->hold_until = until;
			c->st.holds++;
		}
	}
	host_settle(c, h, now);
	req_deliver(c, r);
	dispatch(c);
}

static void multi_done(struct http_client *c)
{
	for (;;) {
		int left;
		CURLMsg *m;
		struct http_client_req *r = NULL;
		CURLcode code;

		if (!c->multi)
			return;
		m = curl_multi_info_read(c->multi, &left);
		if (!m)
			break;
		if (m->msg != CURLMSG_DONE)
			continue;
		code = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &r);
		req_finish(c, r, code);
	}
}

/* --- libuv glue: curl's sockets and its timer. --- */

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock *k = p->data;
	struct http_client *c = k->c;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, k->fd, flags, &running);
	multi_done(c);
}

static void sock_closed(uv_handle_t *h)
{
	struct sock *k = h->data;
	struct http_client *c = k->c;

	free(k);
	client_handle_gone(c);
}

static void sock_close(struct sock *k)
{
	list_remove(&k->link);
	uv_poll_stop(&k->poll);
	uv_close((uv_handle_t *)&k->poll, sock_closed);
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct http_client *c = userp;
	struct sock *k = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (k)
			sock_close(k);
		return 0;
	}
	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k)
			return -1;
		if (uv_poll_init_socket(c->loop, &k->poll, s) != 0) {
			free(k);
			return -1;
		}
		k->poll.data = k;
		k->c = c;
		k->fd = s;
		list_append(&c->socks, &k->link);
		c->handles++;
		if (curl_multi_assign(c->multi, s, k) != CURLM_OK) {
			sock_close(k);
			return -1;
		}
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	if (uv_poll_start(&k->poll, events, on_poll) != 0)
		return -1;
	return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
	struct http_client *c = t->data;
	int running;

	if (!c->multi)
		return;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	multi_done(c);
}

static int on_curl_timer(CURLM *m, long ms, void *userp)
{
	struct http_client *c = userp;

	if (ms < 0)
		uv_timer_stop(&c->curl_timer);
	else
		uv_timer_start(&c->curl_timer, on_curl_timeout, (uint64_t)ms, 0);
	return 0;
}

static void on_wake(uv_timer_t *t)
{
	http_client_wake(t->data);
}

void http_client_wake(struct http_client *c)
{
	uint64_t now = now_us(c);

	if (c->closing)
		return;

	c->wake_at = 0;
	while (c->heap.n && heap_min(&c->heap)->key <= now) {
		struct wake *w = container_of(heap_pop(&c->heap), struct wake, hn);

		if (w->kind == WAKE_HOST)
			host_settle(c, container_of(w, struct host, wake), now);
		else
			bucket_settle(c, container_of(w, struct bucket, wake), now);
	}
	wake_arm(c);
	dispatch(c);
}

/* --- Close. --- */

static void client_free(struct http_client *c);

/* One of c's handles has closed; the last one, once closing, frees c. */
static void client_handle_gone(struct http_client *c)
{
	c->handles--;
	if (c->handles == 0 && c->finishing)
		client_free(c);
}

static void client_free(struct http_client *c)
{
	struct htab_node *x, *nx;
	size_t i;

	/* every uv handle and the CURLM are gone; c is still whole for cb */
	if (c->close_cb)
		c->close_cb(c, c->close_data);
	/* hosts and keys left: a hold not over yet, a key still refilling */
	htab_for_each_safe(&c->hosts, i, x, nx) {
		struct host *h = container_of(x, struct host, node.hn);

		free(h->node.name);
		free(h);
	}
	htab_for_each_safe(&c->keys, i, x, nx) {
		struct bucket *b = container_of(x, struct bucket, node.hn);

		free(b->node.name);
		free(b);
	}
	htab_release(&c->hosts);
	htab_release(&c->keys);
	heap_release(&c->heap);
	free(c->ca_file);
	free(c->user_agent);
	free(c);
	curl_global_cleanup();
}

static void handle_closed(uv_handle_t *h)
{
	client_handle_gone(h->data);
}

static void client_finish(struct http_client *c)
{
	struct list *it;

	c->finishing = true;
	uv_idle_stop(&c->idle);
	/* curl closes its cached connections here and tells on_curl_socket */
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	while (list_linked(&c->socks)) {
		it = list_first(&c->socks);
		sock_close(container_of(it, struct sock, link));
	}
	uv_close((uv_handle_t *)&c->curl_timer, handle_closed);
	uv_close((uv_handle_t *)&c->wake_timer, handle_closed);
	uv_close((uv_handle_t *)&c->idle, handle_closed);
}

static void on_idle(uv_idle_t *i)
{
	struct http_client *c = i->data;

	while (list_linked(&c->done)) {
		struct http_client_req *r = list_entry(list_first(&c->done), struct http_client_req, link);

		list_remove(&r->link);
		req_deliver(c, r);
	}
	uv_idle_stop(&c->idle);
	if (c->closing && !c->finishing && !list_linked(&c->all))
		client_finish(c);
}

void http_client_cancel(struct http_client_req *r)
{
	struct http_client *c = r->c;
	uint64_t now = now_us(c);

	if (r->state == REQ_QUEUED) {
		struct lane *l = r->lane;
		struct host *h = r->host;

		list_remove(&r->link);
		r->lane = NULL;
		r->host = NULL;
		h->nqueued--;
		c->queued--;
		lane_settle(c, l, now);
		host_settle(c, h, now);
		req_defer(c, r, HTTP_CANCELLED);
	} else if (r->state == REQ_RUNNING) {
		struct host *h = r->host;

		curl_multi_remove_handle(c->multi, r->easy);
		list_remove(&r->link);
		r->host = NULL;
		h->in_flight--;
		c->in_flight--;
		host_settle(c, h, now);
		req_defer(c, r, HTTP_CANCELLED);
		dispatch(c);
	}
}

void http_client_close(struct http_client *c, http_client_close_cb cb, void *data)
{
	struct list *it;

	c->closing = true;
	c->close_cb = cb;
	c->close_data = data;
	list_for_each(it, &c->all) {
		struct http_client_req *r = container_of(it, struct http_client_req, all);

		http_client_cancel(r);
	}
	idle_start(c);
}

/* --- Public entry points. --- */

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool is_token(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (!is_tchar((unsigned char)*s) || n >= max)
			return false;
	return n > 0;
}

/* Splits url into "host:port" (lowercase) after checking its scheme. */
static int url_host(const char *url, struct buf *hostport, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	CURLUcode uc;
	int rc = -1;
	size_t i;

	if (!u) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		snprintf(err, errlen, "url: %s", curl_url_strerror(uc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
		snprintf(err, errlen, "url: scheme '%.16s' not allowed (http and https only)",
			 scheme ? scheme : "");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		snprintf(err, errlen, "url: no host");
		goto out;
	}
	if (buf_addf(hostport, "%s:%s", host, port) < 0) {
		snprintf(err, errlen, "url: host too long");
		goto out;
	}
	for (i = 0; i < hostport->len; i++)
		if (hostport->p[i] >= 'A' && hostport->p[i] <= 'Z')
			hostport->p[i] = (char)(hostport->p[i] - 'A' + 'a');
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

static int req_check(const struct http_request *q, char *err, size_t errlen)
{
	size_t i;

	if (!q->url || !*q->url) {
		snprintf(err, errlen, "url: empty");
		return -1;
	}
	if (strlen(q->url) > HC_MAX_URL) {
		snprintf(err, errlen, "url: longer than %d bytes", HC_MAX_URL);
		return -1;
	}
	if (q->method && !is_token(q->method, HC_MAX_METHOD)) {
		snprintf(err, errlen, "method '%.16s' is not an HTTP method", q->method);
		return -1;
	}
	if (q->timeout_ms > LONG_MAX || q->connect_timeout_ms > LONG_MAX) {
		snprintf(err, errlen, "timeout out of range");
		return -1;
	}
	if (q->body_len && !q->body) {
		snprintf(err, errlen, "body: length without data");
		return -1;
	}
	for (i = 0; i < q->nheaders; i++) {
		const struct http_header *hd = &q->headers[i];

		if (!hd->name || !is_token(hd->name, 256)) {
			snprintf(err, errlen, "header '%.64s': not a header name",
				 hd->name ? hd->name : "");
			return -1;
		}
		if (!hd->value || strpbrk(hd->value, "\r\n") || strlen(hd->value) > HC_MAX_HEADER) {
			snprintf(err, errlen, "header '%.64s': value missing, too long or with a line break",
				 hd->name);
			return -1;
		}
	}
	if (q->rate_key) {
		if (!*q->rate_key || strlen(q->rate_key) > HC_MAX_KEY) {
			snprintf(err, errlen, "rate key: empty or longer than %d bytes", HC_MAX_KEY);
			return -1;
		}
		if (!(q->rate_per_min > 0.0 && q->rate_per_min <= 6e6)) {
			snprintf(err, errlen, "rate key '%.64s': rate per minute must be in (0, 6000000]",
				 q->rate_key);
			return -1;
		}
	}
	return 0;
}

/* Copies q's data into a new request; NULL when out of memory. */
static struct http_client_req *req_new(struct http_client *c, const struct http_request *q)
{
	struct http_client_req *r = calloc(1, sizeof(*r));
	const char *m = q->method ? q->method : q->body_len ? "POST" : "GET";
	size_t i;

	if (!r)
		return NULL;
	r->c = c;
	list_init(&r->link);
	list_init(&r->all);
	r->retry_after = -1;
	r->url = strdup(q->url);
	r->method = strdup(m);
	if (!r->url || !r->method)
		goto fail;
	if (q->body_len) {
		r->body = malloc(q->body_len + 1);
		if (!r->body)
			goto fail;
		memcpy(r->body, q->body, q->body_len);
		r->body[q->body_len] = '\0';
		r->body_len = q->body_len;
	}
	if (q->nheaders) {
		r->hv = calloc(q->nheaders, sizeof(*r->hv));
		if (!r->hv)
			goto fail;
		for (i = 0; i < q->nheaders; i++) {
			struct buf b;

			buf_init(&b, HC_MAX_HEADER + 300);
			/* "Name:" alone removes curl's own header of that name */
			if (buf_addf(&b, *q->headers[i].value ? "%s: %s" : "%s:", q->headers[i].name,
				     q->headers[i].value) < 0) {
				buf_release(&b);
				goto fail;
			}
			r->hv[r->nhv++] = buf_steal(&b);
		}
	}
	r->connect_timeout_ms = q->connect_timeout_ms ? q->connect_timeout_ms : c->lim.connect_timeout_ms;
	r->timeout_ms = q->timeout_ms ? q->timeout_ms : c->lim.timeout_ms;
	r->max_bytes = q->max_response_bytes ? q->max_response_bytes : c->lim.max_response_bytes;
	r->max_redirects = q->max_redirects ? q->max_redirects : c->lim.max_redirects;
	buf_init(&r->resp, r->max_bytes);
	return r;
fail:
	req_free(r);
	return NULL;
}

int http_client_request(struct http_client *c, const struct http_request *q, http_client_cb cb,
			void *ud, struct http_client_req **handle, char *err, size_t errlen)
{
	struct buf hp;
	struct http_client_req *r = NULL;
	struct host *h = NULL;
	struct bucket *b = NULL;
	struct lane *l;
	uint64_t now = now_us(c);
	int rc = -1;

	buf_init(&hp, 1024);
	if (handle)
		*handle = NULL;
	if (c->closing) {
		snprintf(err, errlen, "http client is closing");
		goto out;
	}
	if (req_check(q, err, errlen) < 0 || url_host(q->url, &hp, err, errlen) < 0)
		goto out;
	if (c->queued >= c->lim.max_queued) {
		snprintf(err, errlen, "request queue full (%u waiting)", c->queued);
		goto out;
	}
	r = req_new(c, q);
	if (!r)
		goto oom;
	h = host_get(c, hp.p);
	if (!h)
		goto oom;
	if (q->rate_key) {
		b = bucket_get(c, q->rate_key, q->rate_per_min, q->rate_burst, now);
		if (!b)
			goto oom;
	}
	l = lane_get(h, b);
	if (!l)
		goto oom;

	r->cb = cb;
	r->ud = ud;
	r->t_new = now;
	r->series = series_get(c, hp.p);
	r->state = REQ_QUEUED;
	r->lane = l;
	r->host = h;
	list_append(&l->reqs, &r->link);
	list_append(&c->all, &r->all);
	if (l->where == LANE_IDLE)
		lane_make_ready(c, l);
	h->nqueued++;
	c->queued++;
	c->st.requests++;
	host_settle(c, h, now);
	if (handle)
		*handle = r;
	r = NULL;
	rc = 0;
	dispatch(c);
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
	if (b)
		bucket_settle(c, b, now);
	if (h)
		host_settle(c, h, now);
out:
	if (r)
		req_free(r);
	if (rc < 0)
		c->st.refused++;
	buf_release(&hp);
	return rc;
}

const char *http_client_req_url(const struct http_client_req *r)
{
	return r->url;
}

void *http_client_req_data(const struct http_client_req *r)
{
	return r->ud;
}

void http_client_stats(const struct http_client *c, struct http_client_stats *out)
{
	uint64_t now = now_us(c);
	const struct htab_node *n;
	size_t i;

	*out = c->st;
	out->in_flight = c->in_flight;
	out->queued = c->queued;
	out->hosts = c->hosts.n;
	out->keys = c->keys.n;
	out->hosts_held = 0;
	htab_for_each(&c->hosts, i, n)
		if (host_held(container_of(n, const struct host, node.hn), now))
			out->hosts_held++;
	out->sockets = 0;
	{
		const struct list *it;

		list_for_each(it, &c->socks)
			out->sockets++;
	}
}

int http_client_new(uv_loop_t *loop, const struct http_client_limits *limits,
		    struct http_client **out, char *err, size_t errlen)
{
	struct http_client *c = NULL;
	struct http_client_limits lim;
	bool global = false;
	int rc = -1;

	*out = NULL;
	memset(&lim, 0, sizeof(lim));
	if (limits)
		lim = *limits;
	if (!lim.max_in_flight)
		lim.max_in_flight = 64;
	if (!lim.max_per_host)
		lim.max_per_host = 8;
	if (!lim.max_queued)
		lim.max_queued = 10000;
	if (!lim.connect_timeout_ms)
		lim.connect_timeout_ms = 10000;
	if (!lim.timeout_ms)
		lim.timeout_ms = 60000;
	if (!lim.max_response_bytes)
		lim.max_response_bytes = (size_t)8 << 20;
	if (!lim.max_redirects)
		lim.max_redirects = 5;
	if (lim.max_redirects < 0)
		lim.max_redirects = HTTP_NO_REDIRECTS;
	if (!lim.max_retry_after_ms)
		lim.max_retry_after_ms = 600000;
	if (!lim.clock_us) {
		lim.clock_us = clock_hrtime_us;
		lim.clock_ctx = NULL;
	}
	if (lim.timeout_ms > LONG_MAX || lim.connect_timeout_ms > LONG_MAX) {
		snprintf(err, errlen, "http client: timeout out of range");
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "http client: curl_global_init failed");
		goto out;
	}
	global = true;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto oom;
	c->lim = lim;
	c->user_agent = strdup(lim.user_agent ? lim.user_agent : "leadsync");
	if (!c->user_agent)
		goto oom;
	if (lim.ca_file) {
		c->ca_file = strdup(lim.ca_file);
		if (!c->ca_file)
			goto oom;
	}
	c->lim.ca_file = NULL;
	c->lim.user_agent = NULL;
	c->multi = curl_multi_init();
	if (!c->multi)
		goto oom;
	if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
	    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK ||
	    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)lim.max_per_host) != CURLM_OK ||
	    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)lim.max_in_flight) != CURLM_OK ||
	    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)lim.max_in_flight) != CURLM_OK) {
		snprintf(err, errlen, "http client: curl_multi_setopt failed");
		goto out;
	}
	c->loop = loop;
	list_init(&c->ready_hosts);
	list_init(&c->running);
	list_init(&c->done);
	list_init(&c->all);
	list_init(&c->socks);
	/* nothing below can fail: once a handle is open, c is only freed by
	 * http_client_close() */
	uv_timer_init(loop, &c->curl_timer);
	uv_timer_init(loop, &c->wake_timer);
	uv_idle_init(loop, &c->idle);
	c->curl_timer.data = c;
	c->wake_timer.data = c;
	c->idle.data = c;
	c->handles = 3;
	*out = c;
	c = NULL;
	global = false;
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "http client: out of memory");
out:
	if (c) {
		if (c->multi)
			curl_multi_cleanup(c->multi);
		free(c->ca_file);
		free(c->user_agent);
		free(c);
	}
	if (global)
		curl_global_cleanup();
	return rc;
}
