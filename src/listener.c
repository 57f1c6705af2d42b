/* listener: HTTP/1.1 server on the libuv loop: connections, limits, routing, answers. */
#include "listener.h"
#include "listener_int.h"

#include <http_parser.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "buf.h"
#include "htab.h"
#include "list.h"
#include "log.h"

/* Bytes read per read call; one buffer per listener, since a read callback
 * consumes its data before the next read. */
#define LISTENER_READ_CHUNK 65536
/* Unparsed input held per connection (pipelined requests waiting behind a
 * pending one); reading stops past it until the backlog is parsed. */
#define LISTENER_IN_LIMIT 65536
/* Buffers above this size are released between requests, so idle
 * keep-alive connections hold little memory. */
#define LISTENER_KEEP_BYTES 4096
/* Seconds a client refused at a connection cap is told to wait. */
#define LISTENER_RETRY_AFTER "2"
/* Refused connections are logged at most once in this many ms, with the
 * count since the last line. */
#define LISTENER_REFUSE_LOG_MS 5000

/* Where a connection is in its request cycle; it decides which deadline
 * runs and what the timer does when it fires. */
enum conn_phase {
	PHASE_IDLE,    /* waiting for a request's first byte */
	PHASE_HEAD,    /* reading request line and headers */
	PHASE_BODY,    /* reading the body */
	PHASE_READY,   /* parsed, about to be dispatched */
	PHASE_HANDLER, /* with a handler, waiting for listener_respond() */
	PHASE_WRITE,   /* answer queued, the kernel has not taken it all */
	PHASE_LINGER,  /* last answer sent, draining input before close */
};

struct listener_param {
	const char *name; /* into the route pattern, not NUL-terminated */
	size_t name_len;
	const char *raw; /* into the path while matching */
	size_t raw_len;
	size_t off, len; /* decoded value in req->pvals */
};

struct listener_req {
	struct conn *conn;
	unsigned method;
	struct buf url;  /* request target; '?' and '#' become NULs at dispatch */
	size_t path_off; /* the path starts here in url */
	size_t query_off; /* 0: no query */
	struct buf hdr;  /* "name\0value\0" for each header */
	unsigned nhdr;
	size_t hdr_bytes;
	int hdr_state; /* 0 none yet, 1 in a name, 2 in a value */
	struct buf body;
	struct listener_form query;
	struct listener_form form;
	bool form_parsed;
	struct listener_param params[LISTENER_MAX_PARAMS];
	unsigned nparams;
	struct buf pvals;
	bool keep_alive;
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	struct listener *l;
	struct list link;  /* in l->conns */
	http_parser parser;
	enum conn_phase phase;
	int handles;       /* open libuv handles; the conn is freed at 0 */
	unsigned nreq;     /* requests dispatched */
	struct buf in;     /* input read, not parsed yet, from in_off */
	size_t in_off;
	struct buf out;    /* the answer being written */
	size_t out_sent;
	bool keep_alive;   /* of the answer being written */
	struct listener_req req;
	int err_status;    /* set by a parser callback refusing the request */
	const char *err_msg;
	bool running;      /* inside conn_run() */
	bool reading;
	bool eof;          /* the client closed its side */
	bool dead;         /* the socket failed: nothing more can be sent */
	bool closing;      /* uv_close() called */
	bool counted;      /* counts against max_connections (and its address's cap) */
	bool has_key;      /* key holds the peer's address */
	struct list idle;  /* in l->idle while idle */
	uint64_t idle_since; /* uv_now() when it went idle */
	uint8_t key[16];   /* the peer's address; IPv4 as ::ffff:a.b.c.d */
	char remote[64];
};

/* Open connections of one peer address; count 0: an empty slot. */
struct ip_slot {
	uint8_t key[16];
	uint32_t count;
};

struct listener {
	uv_loop_t *loop;
	const struct listener_io *io; /* listener_io_uv, or a test's fake */
	uv_tcp_t server;
	struct listener_limits lim;
	const struct listener_route *routes;
	size_t nroutes;
	listener_refused_fn refused;
	void *refused_data;
	struct list conns;  /* every conn not freed yet */
	size_t nactive;     /* conns counted against max_connections */
	/* idle conns (nothing asked yet, or kept alive), oldest first: the
	 * ones closed first at the cap */
	struct list idle;
	struct ip_slot *ips; /* open addressing, linear probing, ip_mask + 1 slots */
	size_t ip_mask;
	uint64_t ip_seed;
	/* refused connections not logged yet, and when the next line may go */
	uint64_t refuse_unlogged, refuse_unlogged_ip;
	uint64_t refuse_log_next;
	bool refuse_logged;
	char refuse_last[64]; /* the address last refused */
	struct listener_stats st;
	int port;
	bool closing;
	bool server_closed;
	bool done;
	listener_close_cb close_cb;
	void *close_data;
	char rbuf[LISTENER_READ_CHUNK];
};

/* The stream calls of every connection: libuv's own. */
const struct listener_io listener_io_uv = {
	.try_write = uv_try_write,
	.write = uv_write,
	.shutdown = uv_shutdown,
	.read_start = uv_read_start,
	.read_stop = uv_read_stop,
	.close = uv_close,
};

static const struct listener_limits limits_default = {
	.max_url_bytes = 8 << 10,
	.max_header_bytes = 16 << 10,
	.max_headers = 100,
	.max_body_bytes = 64 << 10,
	.max_response_bytes = 16 << 20,
	.max_requests = 1000,
	.max_connections = 1024,
	.max_connections_per_ip = 128,
	.header_timeout_ms = 10000,
	.body_timeout_ms = 30000,
	.idle_timeout_ms = 60000,
	.idle_pressure_ms = 5000,
	.write_timeout_ms = 30000,
	.linger_ms = 2000,
};

/* Method bits by http_parser method; the names come from the parser. */
static const struct {
	enum http_method m;
	unsigned bit;
} method_bits[] = {
	{ HTTP_GET, LISTENER_GET },	{ HTTP_HEAD, LISTENER_HEAD },
	{ HTTP_POST, LISTENER_POST },	{ HTTP_PUT, LISTENER_PUT },
	{ HTTP_DELETE, LISTENER_DELETE }, { HTTP_PATCH, LISTENER_PATCH },
	{ HTTP_OPTIONS, LISTENER_OPTIONS },
};

static void conn_run(struct conn *c);
static void conn_close(struct conn *c);
static void conn_send(struct conn *c);
static void listener_maybe_done(struct listener *l);
static void idle_add(struct conn *c);
static void idle_del(struct conn *c);
static uint64_t listener_idle_ms(const struct listener *l);

/* ---------------------------------------------------------------- forms */

int listener_form_parse(struct listener_form *f, const char *s, size_t len)
{
	size_t npieces = 1, i, start, k = 0;
	char *text;

	f->kv = NULL;
	f->n = 0;
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] == '&')
			npieces++;
	if (npieces > (SIZE_MAX - len - 1) / (sizeof(*f->kv) + 2))
		return -1;
	/* One block: the pairs, then the decoded text (never longer than the
	 * input) with a NUL after each name and value. */
	f->kv = malloc(npieces * sizeof(*f->kv) + len + 2 * npieces + 1);
	if (!f->kv)
		return -1;
	text = (char *)(f->kv + npieces);
	for (start = 0; start <= len; start = i + 1) {
		size_t eq, end;

		for (i = start; i < len && s[i] != '&'; i++)
			;
		end = i;
		if (end == start)
			continue;
		for (eq = start; eq < end && s[eq] != '='; eq++)
			;
		f->kv[k].name = text;
		f->kv[k].name_len = buf_urldecode(text, s + start, eq - start, true);
		text += f->kv[k].name_len;
		*text++ = '\0';
		f->kv[k].value = text;
		f->kv[k].value_len = eq < end ? buf_urldecode(text, s + eq + 1, end - eq - 1, true) : 0;
		text += f->kv[k].value_len;
		*text++ = '\0';
		k++;
	}
	f->n = k;
	return 0;
}

const char *listener_form_get(const struct listener_form *f, const char *name, size_t *len)
{
	size_t i, n = strlen(name);

	for (i = 0; i < f->n; i++) {
		if (f->kv[i].name_len == n && memcmp(f->kv[i].name, name, n) == 0) {
			if (len)
				*len = f->kv[i].value_len;
			return f->kv[i].value;
		}
	}
	return NULL;
}

void listener_form_release(struct listener_form *f)
{
	free(f->kv);
	f->kv = NULL;
	f->n = 0;
}

/* ------------------------------------------------------------- requests */

static void listener__buf_trim(struct buf *b)
{
	if (b->cap > LISTENER_KEEP_BYTES)
		buf_release(b);
	else
		buf_reset(b);
}

static void req_init(struct listener_req *r, struct conn *c)
{
	const struct listener_limits *lim = &c->l->lim;

	memset(r, 0, sizeof(*r));
	r->conn = c;
	buf_init(&r->url, lim->max_url_bytes);
	/* names and values plus a NUL after each */
	buf_init(&r->hdr, lim->max_header_bytes + 2 * (size_t)lim->max_headers + 2);
	buf_init(&r->body, lim->max_body_bytes);
	buf_init(&r->pvals, lim->max_url_bytes + LISTENER_MAX_PARAMS);
}

/* Forgets the request, keeping small buffers for the next one. */
static void req_clear(struct listener_req *r)
{
	listener__buf_trim(&r->url);
	listener__buf_trim(&r->hdr);
	listener__buf_trim(&r->body);
	listener__buf_trim(&r->pvals);
	listener_form_release(&r->query);
	listener_form_release(&r->form);
	r->form_parsed = false;
	r->method = 0;
	r->path_off = r->query_off = 0;
	r->nhdr = 0;
	r->hdr_bytes = 0;
	r->hdr_state = 0;
	r->nparams = 0;
	r->keep_alive = false;
}

static void req_release(struct listener_req *r)
{
	buf_release(&r->url);
	buf_release(&r->hdr);
	buf_release(&r->body);
	buf_release(&r->pvals);
	listener_form_release(&r->query);
	listener_form_release(&r->form);
}

unsigned listener_req_method(const struct listener_req *req)
{
	return req->method;
}

const char *listener_req_method_name(const struct listener_req *req)
{
	return http_method_str((enum http_method)req->conn->parser.method);
}

const char *listener_req_path(const struct listener_req *req)
{
	return req->url.p + req->path_off;
}

const char *listener_req_query(const struct listener_req *req)
{
	return req->query_off ? req->url.p + req->query_off : "";
}

int listener_req_target(const struct listener_req *req, struct buf *out)
{
	const char *query = listener_req_query(req);

	if (buf_adds(out, listener_req_path(req)) < 0)
		return -1;
	return *query && (buf_addc(out, '?') < 0 || buf_adds(out, query) < 0) ? -1 : 0;
}

const char *listener_req_param(const struct listener_req *req, const char *name, size_t *len)
{
	size_t i, n = strlen(name);

	for (i = 0; i < req->nparams; i++) {
		const struct listener_param *p = &req->params[i];

		if (p->name_len == n && memcmp(p->name, name, n) == 0) {
			if (len)
				*len = p->len;
			return req->pvals.p + p->off;
		}
	}
	return NULL;
}

const char *listener_query_get(const struct listener_req *req, const char *name, size_t *len)
{
	return listener_form_get(&req->query, name, len);
}

const struct listener_form *listener_req_query_form(const struct listener_req *req)
{
	return &req->query;
}

const struct listener_form *listener_req_body_form(struct listener_req *req)
{
	if (!req->form_parsed) {
		if (listener_form_parse(&req->form, req->body.p, req->body.len) < 0)
			return NULL;
		req->form_parsed = true;
	}
	return &req->form;
}

const char *listener_req_header(const struct listener_req *req, const char *name)
{
	const char *p = req->hdr.p, *end;
	unsigned i;

	if (!p) /* no header at all (NULL + 0 is undefined) */
		return NULL;
	end = p + req->hdr.len;
	for (i = 0; i < req->nhdr && p < end; i++) {
		const char *value = p + strlen(p) + 1;

		if (strcasecmp(p, name) == 0)
			return value;
		p = value + strlen(value) + 1;
	}
	return NULL;
}

bool listener_req_bearer_is(const struct listener_req *req, const char *token)
{
	const char *h = listener_req_header(req, "authorization");

	if (!h || !token || !*token || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	return buf_ct_equal(h, strlen(h), token, strlen(token));
}

const char *listener_req_body(const struct listener_req *req, size_t *len)
{
	if (len)
		*len = req->body.len;
	return req->body.p ? req->body.p : "";
}

const char *listener_req_remote(const struct listener_req *req)
{
	return req->conn->remote;
}

bool listener_req_client_gone(const struct listener_req *req)
{
	return req->conn->eof || req->conn->dead;
}

struct listener *listener_req_listener(const struct listener_req *req)
{
	return req->conn->l;
}

/* --------------------------------------------------------------- parser */

/* Refuses the request being parsed: the answer goes out once the parser
 * has stopped. Returns the value that stops it. */
static int conn_refuse(struct conn *c, int status, const char *msg)
{
	c->err_status = status;
	c->err_msg = msg;
	return -1;
}

static void conn_timer_cb(uv_timer_t *t);

/* One timer per connection; the phase says what its expiry means. */
static void conn_timer(struct conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

/* True (and the refusal set) when the request line named a version other
 * than 1.0 and 1.1, or none (HTTP/0.9). Once the version is parsed only. */
static bool conn_version_refused(struct conn *c)
{
	const http_parser *p = &c->parser;

	if (p->http_major == 1 && p->http_minor <= 1)
		return false;
	if (p->http_major == 0 && p->http_minor == 9)
		conn_refuse(c, 400, "HTTP/0.9 request line (no version) not supported");
	else
		conn_refuse(c, 505, "HTTP version not supported");
	return true;
}

/* Refuses what a proxy in front could read differently: a transfer coding
 * other than one "chunked", an expectation other than 100-continue. */
static int conn_strict_headers(struct conn *c)
{
	const struct listener_req *r = &c->req;
	const char *p = r->hdr.p, *end;
	unsigned i, nte = 0;

	if (!p) /* no header at all (NULL + 0 is undefined) */
		return 0;
	end = p + r->hdr.len;
	for (i = 0; i < r->nhdr && p < end; i++) {
		const char *value = p + strlen(p) + 1;

		if (strcasecmp(p, "transfer-encoding") == 0 &&
		    (++nte > 1 || strcasecmp(value, "chunked") != 0))
			return conn_refuse(c, 501, "transfer coding not supported (only chunked)");
		if (strcasecmp(p, "expect") == 0 && strcasecmp(value, "100-continue") != 0)
			return conn_refuse(c, 417, "expectation not supported (only 100-continue)");
		p = value + strlen(value) + 1;
	}
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;

	c->phase = PHASE_HEAD;
	idle_del(c);
	/* the parser sets both from the request line: 0.9 when it has no
	 * version; 0.0 until then */
	p->http_major = 0;
	p->http_minor = 0;
	conn_timer(c, c->l->lim.header_timeout_ms);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;

	if (n > c->l->lim.max_url_bytes - c->req.url.len) {
		/* what fits is kept: a log of refusals shows what was sent */
		if (buf_add(&c->req.url, at, c->l->lim.max_url_bytes - c->req.url.len) < 0)
			buf_reset(&c->req.url);
		return conn_refuse(c, 414, "request target too long");
	}
	if (buf_add(&c->req.url, at, n) < 0)
		return conn_refuse(c, 500, "out of memory");
	return 0;
}

/* Ends the header value being read (trailing blanks trimmed), or the name
 * of a header that had no value callback at all. */
static int req_header_end(struct listener_req *r)
{
	if (r->hdr_state == 1 && buf_addc(&r->hdr, '\0') < 0)
		return -1;
	if (r->hdr_state != 0) {
		while (r->hdr.len > 0 &&
		       (r->hdr.p[r->hdr.len - 1] == ' ' || r->hdr.p[r->hdr.len - 1] == '\t'))
			r->hdr.len--;
		if (buf_addc(&r->hdr, '\0') < 0)
			return -1;
	}
	r->hdr_state = 0;
	return 0;
}

/* Appends a piece of a header name or value, within the header limit. */
static int req_header_add(struct conn *c, const char *at, size_t n)
{
	struct listener_req *r = &c->req;

	if (n > c->l->lim.max_header_bytes - r->hdr_bytes)
		return conn_refuse(c, 431, "header block too large");
	r->hdr_bytes += n;
	if (buf_add(&r->hdr, at, n) < 0)
		return conn_refuse(c, 500, "out of memory");
	return 0;
}

/* Headers are kept as "name\0value\0"; the parser may hand a name or a
 * value in several pieces, and an empty value as a zero-length piece. */
static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;
	struct listener_req *r = &c->req;

	/* the parser takes "Name : v" as the name "Name ", which a proxy in
	 * front may read otherwise */
	if (memchr(at, ' ', n))
		return conn_refuse(c, 400, "whitespace in a header name");
	if (r->hdr_state != 1) {
		if (r->nhdr == 0 && conn_version_refused(c))
			return -1;
		if (r->hdr_state == 2 && req_header_end(r) < 0)
			return conn_refuse(c, 500, "out of memory");
		if (++r->nhdr > c->l->lim.max_headers)
			return conn_refuse(c, 431, "too many header fields");
		r->hdr_state = 1;
	}
	return req_header_add(c, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;
	struct listener_req *r = &c->req;

	if (r->hdr_state == 1) {
		if (buf_addc(&r->hdr, '\0') < 0)
			return conn_refuse(c, 500, "out of memory");
		r->hdr_state = 2;
	}
	return req_header_add(c, at, n);
}

static int on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;
	struct listener *l = c->l;
	bool chunked = (p->flags & F_CHUNKED) != 0;
	bool has_length = !chunked && p->content_length != UINT64_MAX;
	const char *expect;
	size_t i;

	if (req_header_end(&c->req) < 0)
		return conn_refuse(c, 500, "out of memory");
	if (conn_version_refused(c) || conn_strict_headers(c) < 0)
		return -1;
	for (i = 0; i < sizeof(method_bits) / sizeof(method_bits[0]); i++)
		if (method_bits[i].m == p->method)
			c->req.method = method_bits[i].bit;
	if (has_length && p->content_length > l->lim.max_body_bytes)
		return conn_refuse(c, 413, "request body too large");
	expect = listener_req_header(&c->req, "expect");
	if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1 &&
	    (chunked || (has_length && p->content_length > 0))) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
		int n = l->io->try_write((uv_stream_t *)&c->tcp, &b, 1);

		/* Best effort: a client that gets nothing sends the body anyway;
		 * but half a status line would garble the stream. */
		if (n > 0)
			l->st.bytes_out += (uint64_t)n;
		if (n > 0 && (size_t)n < sizeof(cont) - 1) {
			c->dead = true;
			return -1;
		}
	}
	c->phase = PHASE_BODY;
	conn_timer(c, l->lim.body_timeout_ms);
	return 0;
}

static int on_chunk_header(http_parser *p)
{
	struct conn *c = p->data;

	if (p->content_length > c->l->lim.max_body_bytes - c->req.body.len)
		return conn_refuse(c, 413, "request body too large");
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;

	if (n > c->l->lim.max_body_bytes - c->req.body.len)
		return conn_refuse(c, 413, "request body too large");
	if (buf_add(&c->req.body, at, n) < 0)
		return conn_refuse(c, 500, "out of memory");
	return 0;
}

/* Pauses the parser after each request, so requests behind it wait in the
 * input buffer until this one is answered. */
static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->req.keep_alive = http_should_keep_alive(p) && !p->upgrade;
	c->phase = PHASE_READY;
	uv_timer_stop(&c->timer);
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
	.on_chunk_header = on_chunk_header,
};

/* ------------------------------------------------------------- answers */

static void listener__count(struct listener *l, int status)
{
	l->st.requests++;
	if (status >= 100 && status < 600)
		l->st.status_class[status / 100]++;
}

/* True when s holds no CR or LF. */
static bool listener__header_text_ok(const char *s)
{
	return s[strcspn(s, "\r\n")] == '\0';
}

/* True when s is a run of "Name: value\r\n" lines. */
static bool listener__extra_ok(const char *s)
{
	while (*s) {
		size_t n = strcspn(s, "\r\n");

		if (n == 0 || !memchr(s, ':', n) || s[n] != '\r' || s[n + 1] != '\n')
			return false;
		s += n + 2;
	}
	return true;
}

/* Builds the whole answer into c->out. Returns 0 or -1 (too large). */
static int conn_build(struct conn *c, int status, const char *ctype, const void *body, size_t len,
		      const char *extra, bool keep_alive, bool head)
{
	const char *reason = http_status_str((enum http_status)status);
	int rc = 0;

	if (reason[0] == '<')
		reason = "Unknown";
	buf_reset(&c->out);
	rc |= buf_addf(&c->out, "HTTP/1.1 %d %s\r\n", status, reason);
	if (ctype)
		rc |= buf_addf(&c->out, "Content-Type: %s\r\n", ctype);
	rc |= buf_addf(&c->out, "Content-Length: %zu\r\n", len);
	if (!keep_alive)
		rc |= buf_adds(&c->out, "Connection: close\r\n");
	else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
		rc |= buf_adds(&c->out, "Connection: keep-alive\r\n");
	if (extra)
		rc |= buf_adds(&c->out, extra);
	rc |= buf_add(&c->out, "\r\n", 2);
	if (!head)
		rc |= buf_add(&c->out, body, len);
	return rc ? -1 : 0;
}

/* The one error body: {"ok":false,"error":msg}. */
static int listener__error_body(struct buf *b, const char *msg)
{
	buf_init(b, 1024);
	if (buf_adds(b, "{\"ok\":false,\"error\":") < 0 ||
	    buf_add_json_str(b, msg, strnlen(msg, 512)) < 0 || buf_addc(b, '}') < 0) {
		buf_release(b);
		return -1;
	}
	return 0;
}

static int conn_build_error(struct conn *c, int status, const char *msg, const char *extra,
			    bool keep_alive, bool head)
{
	struct buf b;
	int rc;

	if (listener__error_body(&b, msg) < 0)
		return -1;
	rc = conn_build(c, status, "application/json", b.p, b.len, extra, keep_alive, head);
	buf_release(&b);
	return rc;
}

static bool route_match(struct listener_req *r, const char *pat, const char *path);

/* The route a raw target's path names: the first that takes the method
 * (LISTENER_* bits, HEAD as GET), else the first whose pattern matches;
 * NULL when none does or the path cannot be read. */
static const struct listener_route *listener__route_of(const struct listener *l, unsigned method,
							const char *target, size_t len)
{
	const struct listener_route *any = NULL;
	size_t i, plen = 0;
	char *path;

	while (plen < len && target[plen] && target[plen] != '?' && target[plen] != '#')
		plen++;
	if (!plen || target[0] != '/' || !(path = strndup(target, plen)))
		return NULL;
	if (method == LISTENER_HEAD)
		method |= LISTENER_GET;
	for (i = 0; i < l->nroutes; i++) {
		const struct listener_route *rt = &l->routes[i];

		if (!route_match(NULL, rt->pattern, path))
			continue;
		if (rt->methods & method) {
			any = rt;
			break;
		}
		if (!any)
			any = rt;
	}
	free(path);
	return any;
}

/* Answers for the listener itself (refused or malformed requests, 408):
 * the connection closes after it. */
static void conn_fail(struct conn *c, int status, const char *msg)
{
	struct listener *l = c->l;

	log_debug("http request refused", "status=%d remote=%s error=\"%s\"", status, c->remote, msg);
	uv_timer_stop(&c->timer);
	if (l->refused && c->req.url.len) {
		struct listener_refusal r = {
			/* the method is parsed before any of the target */
			.method = http_method_str((enum http_method)c->parser.method),
			.target = c->req.url.p,
			.target_len = c->req.url.len,
			.remote = c->remote,
			.status = status,
			.error = msg,
		};

		r.route = listener__route_of(l, c->req.method, c->req.url.p, c->req.url.len);
		l->refused(&r, l->refused_data);
	}
	req_clear(&c->req);
	listener__count(l, status);
	c->keep_alive = false;
	if (conn_build_error(c, status, msg, NULL, false, false) < 0) {
		conn_close(c);
		return;
	}
	conn_send(c);
}

void listener_respond(struct listener_req *req, int status, const char *content_type,
		      const void *body, size_t len, const char *extra_headers)
{
	struct conn *c = req->conn;
	struct listener *l = c->l;
	bool head = req->method == LISTENER_HEAD;
	int rc = -1;

	if (c->phase != PHASE_HANDLER) {
		log_error("http answer to a request not waiting for one", "status=%d", status);
		return;
	}
	/* After EOF, requests already buffered are still answered; the
	 * connection closes when they run out. */
	c->keep_alive = req->keep_alive && !l->closing;
	if (status < 200 || status > 599)
		status = 500;
	if (c->dead) {
		listener__count(l, status);
		req_clear(req);
		c->phase = PHASE_IDLE;
		conn_close(c);
		return;
	}
	if ((content_type && !listener__header_text_ok(content_type)) ||
	    (extra_headers && !listener__extra_ok(extra_headers))) {
		log_error("http answer with a malformed header refused", "status=%d path=%s",
			  status, listener_req_path(req));
		status = 500;
		rc = conn_build_error(c, status, "malformed answer header", NULL, c->keep_alive, head);
	} else if (conn_build(c, status, content_type, body, len, extra_headers, c->keep_alive,
			      head) < 0) {
		log_error("http answer too large", "status=%d len=%zu path=%s", status, len,
			  listener_req_path(req));
		status = 500;
		rc = conn_build_error(c, status, "answer too large", NULL, c->keep_alive, head);
	} else
		rc = 0;
	listener__count(l, status);
	req_clear(req);
	c->phase = PHASE_WRITE;
	if (rc < 0) {
		conn_close(c);
		return;
	}
	conn_send(c);
}

void listener_respond_error(struct listener_req *req, int status, const char *msg)
{
	struct buf b;

	if (listener__error_body(&b, msg) < 0) {
		listener_respond(req, 500, NULL, NULL, 0, NULL);
		return;
	}
	listener_respond(req, status, "application/json", b.p, b.len, NULL);
	buf_release(&b);
}

/* --------------------------------------------------------- connections */

/* Closes after the answer: send FIN, then drain what the client still
 * sends for a while, so our answer is not destroyed by a reset. */
static void conn_shutdown_cb(uv_shutdown_t *sr, int status)
{
	struct conn *c = sr->data;

	if (status < 0)
		conn_close(c);
}

static void conn_read_start(struct conn *c);

static void conn_end(struct conn *c)
{
	if (c->closing)
		return;
	if (c->eof || c->dead) {
		conn_close(c);
		return;
	}
	c->phase = PHASE_LINGER;
	c->sreq.data = c;
	if (c->l->io->shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn_shutdown_cb) < 0) {
		conn_close(c);
		return;
	}
	conn_read_start(c);
	conn_timer(c, c->l->lim.linger_ms);
}

/* The whole answer is with the kernel. */
static void conn_sent(struct conn *c)
{
	listener__buf_trim(&c->out);
	c->out_sent = 0;
	if (!c->keep_alive) {
		conn_end(c);
		return;
	}
	c->phase = PHASE_IDLE;
	idle_add(c);
	conn_timer(c, listener_idle_ms(c->l));
	conn_run(c);
}

static void conn_write_cb(uv_write_t *wr, int status)
{
	struct conn *c = wr->data;

	if (c->closing)
		return;
	if (status < 0) {
		c->dead = true;
		conn_close(c);
		return;
	}
	c->l->st.bytes_out += c->out.len - c->out_sent;
	conn_sent(c);
}

/* Sends c->out: straight away when the socket takes it, else queued with
 * a deadline. */
static void conn_send(struct conn *c)
{
	uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
	int n;

	c->phase = PHASE_WRITE;
	idle_del(c);
	n = c->l->io->try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n == UV_EAGAIN)
		n = 0;
	if (n < 0) {
		c->dead = true;
		conn_close(c);
		return;
	}
	c->l->st.bytes_out += (uint64_t)n;
	if ((size_t)n == c->out.len) {
		conn_sent(c);
		return;
	}
	c->out_sent = (size_t)n;
	b = uv_buf_init(c->out.p + n, (unsigned)(c->out.len - (size_t)n));
	c->wreq.data = c;
	if (c->l->io->write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) < 0) {
		c->dead = true;
		conn_close(c);
		return;
	}
	conn_timer(c, c->l->lim.write_timeout_ms);
}

/* Splits the target into path and query (NULs replace '?' and '#'); an
 * absolute-form target ("http://host/p") is reduced to its path. */
static int req_split_target(struct listener_req *r)
{
	char *u, *q;

	if (!r->url.p && buf_add(&r->url, "", 0) < 0)
		return -1;
	u = r->url.p;
	r->path_off = 0;
	if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
		char *slash = strchr(strstr(u, "//") + 2, '/');

		r->path_off = slash ? (size_t)(slash - u) : r->url.len;
	}
	u[strcspn(u, "#")] = '\0';
	q = strchr(u + r->path_off, '?');
	if (q) {
		*q = '\0';
		r->query_off = (size_t)(q + 1 - u);
	}
	return 0;
}

/* Matches path against a route pattern (checked at start); on a match the
 * raw parameter values are noted in r->params (r may be NULL). */
static bool route_match(struct listener_req *r, const char *pat, const char *path)
{
	const char *p = pat, *s = path;

	if (r)
		r->nparams = 0;
	while (*p) {
		if (*p == '{') {
			const char *name = p + 1, *end = strchr(name, '}');
			const char *seg = s;

			while (*s && *s != '/')
				s++;
			if (s == seg)
				return false;
			if (r) {
				struct listener_param *prm = &r->params[r->nparams++];

				prm->name = name;
				prm->name_len = (size_t)(end - name);
				prm->raw = seg;
				prm->raw_len = (size_t)(s - seg);
			}
			p = end + 1;
		} else {
			if (*p != *s)
				return false;
			p++;
			s++;
		}
	}
	return *s == '\0';
}

/* Decodes the matched parameters into r->pvals. */
static int req_decode_params(struct listener_req *r)
{
	unsigned i;

	buf_reset(&r->pvals);
	for (i = 0; i < r->nparams; i++) {
		struct listener_param *prm = &r->params[i];
		size_t off = r->pvals.len;

		/* room for the raw text, decoded in place, and its NUL */
		if (buf_add(&r->pvals, prm->raw, prm->raw_len) < 0 || buf_addc(&r->pvals, '\0') < 0)
			return -1;
		prm->off = off;
		prm->len = buf_urldecode(r->pvals.p + off, prm->raw, prm->raw_len, false);
		r->pvals.p[off + prm->len] = '\0';
	}
	return 0;
}

static void listener__allow_header(struct buf *b, unsigned allow)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ LISTENER_GET, "GET" },   { LISTENER_HEAD, "HEAD" },   { LISTENER_POST, "POST" },
		{ LISTENER_PUT, "PUT" },   { LISTENER_DELETE, "DELETE" }, { LISTENER_PATCH, "PATCH" },
		{ LISTENER_OPTIONS, "OPTIONS" },
	};
	const char *sep = "";
	size_t i;

	if (allow & LISTENER_GET)
		allow |= LISTENER_HEAD;
	if (buf_adds(b, "Allow: ") < 0)
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(allow & names[i].bit))
			continue;
		if (buf_adds(b, sep) < 0 || buf_adds(b, names[i].name) < 0)
			return;
		sep = ", ";
	}
	if (buf_adds(b, "\r\n") < 0)
		buf_reset(b);
}

/* Hands the parsed request to its route, or answers 404/405/500. */
static void conn_dispatch(struct conn *c)
{
	struct listener *l = c->l;
	struct listener_req *r = &c->req;
	unsigned want = r->method, allow = 0;
	const struct listener_route *named = NULL; /* the first whose path matched */
	const char *path;
	size_t i;

	c->phase = PHASE_HANDLER;
	c->nreq++;
	if (c->nreq >= l->lim.max_requests || l->closing)
		r->keep_alive = false;
	if (req_split_target(r) < 0 ||
	    (r->query_off && listener_form_parse(&r->query, r->url.p + r->query_off,
						 strlen(r->url.p + r->query_off)) < 0)) {
		listener_respond_error(r, 500, "out of memory");
		return;
	}
	if (want == LISTENER_HEAD)
		want |= LISTENER_GET;
	path = listener_req_path(r);
	for (i = 0; i < l->nroutes; i++) {
		const struct listener_route *rt = &l->routes[i];

		if (!route_match(r, rt->pattern, path))
			continue;
		if (!(rt->methods & want)) {
			if (!named)
				named = rt;
			allow |= rt->methods;
			continue;
		}
		if (req_decode_params(r) < 0) {
			listener_respond_error(r, 500, "out of memory");
			return;
		}
		rt->handler(r, rt->data);
		return;
	}
	r->nparams = 0;
	if (allow) {
		struct buf h;
		static const char msg[] = "{\"ok\":false,\"error\":\"method not allowed\"}";

		if (l->refused) {
			struct listener_refusal rf = {
				.method = listener_req_method_name(r),
				.remote = c->remote,
				.status = 405,
				.error = "method not allowed",
				.route = named,
			};
			struct buf t;

			buf_init(&t, 0);
			if (listener_req_target(r, &t) == 0) {
				rf.target = t.p;
				rf.target_len = t.len;
				l->refused(&rf, l->refused_data);
			}
			buf_release(&t);
		}

		buf_init(&h, 256);
		listener__allow_header(&h, allow);
		listener_respond(r, 405, "application/json", msg, sizeof(msg) - 1, h.p);
		buf_release(&h);
		return;
	}
	listener_respond_error(r, 404, "not found");
}

/* Maps a parser error to an answer. */
static void conn_parse_error(struct conn *c, enum http_errno e)
{
	if (e == HPE_HEADER_OVERFLOW)
		conn_fail(c, 431, "header block too large");
	else if (e == HPE_INVALID_TRANSFER_ENCODING)
		conn_fail(c, 501, "transfer coding not supported (only chunked)");
	else
		conn_fail(c, 400, http_errno_description(e));
}

/* Parses buffered input and dispatches requests, one at a time, until the
 * input runs out or a request waits for its answer. Not re-entered: an
 * answer given inside a handler lets the running loop go on. */
static void conn_run(struct conn *c)
{
	if (c->running)
		return;
	c->running = true;
	while (!c->closing) {
		size_t n;
		enum http_errno e;

		if (c->phase == PHASE_READY) {
			conn_dispatch(c);
			continue;
		}
		if (c->phase == PHASE_HANDLER || c->phase == PHASE_WRITE || c->phase == PHASE_LINGER)
			break;
		if (c->in_off == c->in.len) {
			listener__buf_trim(&c->in);
			c->in_off = 0;
			if (c->eof)
				conn_close(c);
			else
				conn_read_start(c);
			break;
		}
		n = http_parser_execute(&c->parser, &parser_settings, c->in.p + c->in_off,
					c->in.len - c->in_off);
		c->in_off += n;
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (c->dead) {
			conn_close(c);
			break;
		}
		if (c->err_status) {
			conn_fail(c, c->err_status, c->err_msg);
			break;
		}
		/* an HTTP/0.9 (or 2) client sends its line and waits: say no
		 * now (0.0 is the version not read yet) */
		if (e == HPE_OK && c->phase == PHASE_HEAD &&
		    (c->parser.http_major > 1 ||
		     (c->parser.http_major == 0 && c->parser.http_minor == 9)) &&
		    conn_version_refused(c)) {
			conn_fail(c, c->err_status, c->err_msg);
			break;
		}
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			continue;
		}
		if (e != HPE_OK) {
			conn_parse_error(c, e);
			break;
		}
		if (c->phase == PHASE_READY)
			continue;
		if (c->in_off < c->in.len) { /* an upgrade: the rest is not HTTP */
			conn_fail(c, 400, "protocol upgrade not supported");
			break;
		}
	}
	c->running = false;
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;

	*b = uv_buf_init(c->l->rbuf, sizeof(c->l->rbuf));
}

static void conn_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;

	if (n == 0)
		return;
	if (n < 0) {
		c->l->io->read_stop(s);
		c->reading = false;
		if (n == UV_EOF)
			c->eof = true;
		else
			c->dead = true;
		switch (c->phase) {
		case PHASE_IDLE:
		case PHASE_HEAD:
		case PHASE_BODY:
			if (c->dead)
				conn_close(c);
			else
				conn_run(c); /* serves what is buffered, then closes */
			break;
		case PHASE_WRITE:
			if (c->dead)
				conn_close(c);
			break;
		case PHASE_LINGER:
			conn_close(c);
			break;
		case PHASE_READY:
		case PHASE_HANDLER:
			break; /* the answer ends it */
		}
		return;
	}
	c->l->st.bytes_in += (uint64_t)n;
	if (c->phase == PHASE_LINGER)
		return;
	if (c->in_off > 0) {
		memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
		c->in.len -= c->in_off;
		c->in_off = 0;
	}
	if (buf_add(&c->in, b->base, (size_t)n) < 0) {
		conn_close(c);
		return;
	}
	if (c->in.len >= LISTENER_IN_LIMIT) {
		c->l->io->read_stop(s);
		c->reading = false;
	}
	conn_run(c);
}

static void conn_read_start(struct conn *c)
{
	if (c->reading || c->eof || c->dead || c->closing)
		return;
	if (c->l->io->read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) < 0) {
		c->dead = true;
		conn_close(c);
		return;
	}
	c->reading = true;
}

static void conn_timer_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	struct listener *l = c->l;

	switch (c->phase) {
	case PHASE_HEAD:
		l->st.timeouts++;
		conn_fail(c, 408, "request header timeout");
		break;
	case PHASE_BODY:
		l->st.timeouts++;
		conn_fail(c, 408, "request body timeout");
		break;
	case PHASE_IDLE:
	case PHASE_WRITE:
		l->st.timeouts++;
		conn_close(c);
		break;
	case PHASE_LINGER:
		conn_close(c);
		break;
	case PHASE_READY:
	case PHASE_HANDLER:
		break;
	}
}

/* --------------------------------------------- caps, idle list, eviction */

/* The per-IP counts are a fixed open-addressing table sized at start (twice
 * max_connections) and keyed by the 16 address bytes: the accept path never
 * allocates, and a count needs no node, so it stays its own table; the hash
 * is htab's FNV-1a from a seeded basis, so a client cannot aim at a slot. */
static size_t ip_hash(const struct listener *l, const uint8_t *key)
{
	uint64_t h = htab_fnv1a(HTAB_FNV_BASIS ^ l->ip_seed, key, 16);

	return (size_t)(h ^ (h >> 29));
}

/* The slot of key: its own, or the empty one where it would go. */
static struct ip_slot *ip_find(struct listener *l, const uint8_t *key)
{
	size_t i = ip_hash(l, key) & l->ip_mask;

	while (l->ips[i].count && memcmp(l->ips[i].key, key, 16) != 0)
		i = (i + 1) & l->ip_mask;
	return &l->ips[i];
}

static uint32_t ip_count(struct listener *l, const uint8_t *key)
{
	return ip_find(l, key)->count;
}

/* Counted conns are at most max_connections and the table has twice as
 * many slots, so an empty one is always there. */
static void ip_inc(struct listener *l, const uint8_t *key)
{
	struct ip_slot *s = ip_find(l, key);

	if (!s->count)
		memcpy(s->key, key, 16);
	s->count++;
}

/* Drops one; an emptied slot is filled by shifting later ones of its run
 * back (no tombstones). */
static void ip_dec(struct listener *l, const uint8_t *key)
{
	struct ip_slot *s = ip_find(l, key);
	size_t i, j;

	if (!s->count || --s->count)
		return;
	i = (size_t)(s - l->ips);
	for (j = (i + 1) & l->ip_mask; l->ips[j].count; j = (j + 1) & l->ip_mask) {
		size_t home = ip_hash(l, l->ips[j].key) & l->ip_mask;

		/* j may move to i when its home is not in (i, j] cyclically */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			l->ips[i] = l->ips[j];
			l->ips[j].count = 0;
			i = j;
		}
	}
}

static void idle_add(struct conn *c)
{
	struct listener *l = c->l;

	if (list_linked(&c->idle) || !c->counted)
		return;
	c->idle_since = uv_now(l->loop);
	list_append(&l->idle, &c->idle);
}

static void idle_del(struct conn *c)
{
	list_remove(&c->idle);
}

/* The conn idle longest, or NULL. */
static struct conn *idle_oldest(const struct listener *l)
{
	struct list *it = list_first(&l->idle);

	return it ? list_entry(it, struct conn, idle) : NULL;
}

/* Takes c off the counts: at its close, so its place is free at once. */
static void conn_uncount(struct conn *c)
{
	struct listener *l = c->l;

	idle_del(c);
	if (!c->counted)
		return;
	c->counted = false;
	l->nactive--;
	if (c->has_key)
		ip_dec(l, c->key);
}

/* More than 3/4 of the cap open: idle connections get the short timeout. */
static bool listener_pressed(const struct listener *l)
{
	return (uint64_t)l->nactive * 4 > (uint64_t)l->lim.max_connections * 3;
}

static uint64_t listener_idle_ms(const struct listener *l)
{
	return listener_pressed(l) ? l->lim.idle_pressure_ms : l->lim.idle_timeout_ms;
}

static void conn_evict(struct conn *c)
{
	c->l->st.conn_evicted++;
	conn_close(c);
}

static void listener_refuse_log(struct listener *l)
{
	log_warn("http connections refused",
		 "count=%" PRIu64 " per_ip=%" PRIu64 " last_remote=%s open=%zu max=%u max_per_ip=%u",
		 l->refuse_unlogged, l->refuse_unlogged_ip, l->refuse_last, l->nactive,
		 l->lim.max_connections, l->lim.max_connections_per_ip);
	l->refuse_unlogged = l->refuse_unlogged_ip = 0;
}

/* The request line a connection refused at a cap had already sent, to the
 * refused hook (the postback log's row). How much is read: what had
 * arrived when the connection was accepted, in one non-blocking read into
 * the listener's shared buffer, never a wait for more. So a refused
 * connection holds nothing past the accept callback (a flood at the cap
 * costs an accept, a read and a write each, as before), and the price is
 * that a request arriving after its accept is not seen: its client gets
 * the 503 all the same, with no row. The target is cut at
 * max_url_bytes, as a 414's is; a line cut where the read ended keeps what
 * came. */
static void conn_refused_line(struct conn *c, const char *p, size_t n, int status,
			      const char *msg)
{
	struct listener *l = c->l;
	struct listener_refusal r = { .remote = c->remote, .status = status, .error = msg };
	char method[16];
	unsigned bit = 0;
	size_t i = 0, t;

	if (!l->refused)
		return;
	while (i < n && i < sizeof(method) - 1 && p[i] >= 'A' && p[i] <= 'Z')
		i++;
	if (!i || i >= n || p[i] != ' ' || i + 1 >= n || p[i + 1] != '/')
		return;
	memcpy(method, p, i);
	method[i] = '\0';
	for (t = 0; t < sizeof(method_bits) / sizeof(method_bits[0]); t++)
		if (strcmp(method, http_method_str(method_bits[t].m)) == 0)
			bit = method_bits[t].bit;
	r.method = method;
	r.target = p + i + 1;
	for (t = 0; i + 1 + t < n && r.target[t] != ' ' && r.target[t] != '\r' &&
		    r.target[t] != '\n' && t < l->lim.max_url_bytes;
	     t++)
		;
	r.target_len = t;
	r.route = listener__route_of(l, bit, r.target, r.target_len);
	l->refused(&r, l->refused_data);
}

/* Answers 503 with Retry-After on a connection not admitted, closes it,
 * counts it and logs, at most a line per LISTENER_REFUSE_LOG_MS; a request
 * line already here gets the refused hook (conn_refused_line). */
static void conn_refuse_503(struct conn *c, bool per_ip)
{
	struct listener *l = c->l;
	uint64_t now = uv_now(l->loop);
	const char *msg = per_ip ? "too many connections from this address" : "too many connections";
	ssize_t got = 0;

	l->st.conn_rejected++;
	l->refuse_unlogged++;
	memcpy(l->refuse_last, c->remote, sizeof(l->refuse_last));
	if (per_ip) {
		l->st.conn_rejected_ip++;
		l->refuse_unlogged_ip++;
	}
	if (!l->refuse_logged || now >= l->refuse_log_next) {
		l->refuse_logged = true;
		l->refuse_log_next = now + LISTENER_REFUSE_LOG_MS;
		listener_refuse_log(l);
	}
	/* A request already here, unread, would turn the close into a reset
	 * that can destroy the 503 before the client reads it: take it (and
	 * it is what the refused hook sees). */
	{
		uv_os_fd_t fd;

		if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0) {
			got = recv(fd, l->rbuf, sizeof(l->rbuf), MSG_DONTWAIT);
			if (got > 0)
				l->st.bytes_in += (uint64_t)got;
		}
	}
	/* One try to say why; the socket is new, so it takes it. */
	if (conn_build_error(c, 503, msg, "Retry-After: " LISTENER_RETRY_AFTER "\r\n", false,
			     false) == 0) {
		uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
		int n = l->io->try_write((uv_stream_t *)&c->tcp, &b, 1);

		if (n > 0)
			l->st.bytes_out += (uint64_t)n;
	}
	if (got > 0)
		conn_refused_line(c, l->rbuf, (size_t)got, 503, msg);
	conn_close(c);
}

/* Decides on a new connection: over its address's cap, refused; under
 * pressure, idle ones past idle_pressure_ms are closed; at the cap, the
 * oldest idle one is closed to make room, or, with none, c is refused.
 * Returns true when c is admitted (and counted). */
static bool listener_admit(struct listener *l, struct conn *c)
{
	uint64_t now = uv_now(l->loop);
	struct conn *old;

	/* a per-address cap not below the total is off: one peer (a proxy) may
	 * then fill the cap, and its oldest idle ones make room as anyone's */
	if (c->has_key && l->lim.max_connections_per_ip < l->lim.max_connections &&
	    ip_count(l, c->key) >= l->lim.max_connections_per_ip) {
		conn_refuse_503(c, true);
		return false;
	}
	if ((uint64_t)(l->nactive + 1) * 4 > (uint64_t)l->lim.max_connections * 3)
		while ((old = idle_oldest(l)) && now - old->idle_since >= l->lim.idle_pressure_ms)
			conn_evict(old);
	if (l->nactive >= l->lim.max_connections) {
		if (!(old = idle_oldest(l))) {
			conn_refuse_503(c, false);
			return false;
		}
		conn_evict(old);
	}
	c->counted = true;
	l->nactive++;
	if (c->has_key)
		ip_inc(l, c->key);
	return true;
}

static void conn_free(struct conn *c)
{
	struct listener *l = c->l;

	list_remove(&c->link);
	conn_uncount(c);
	req_release(&c->req);
	buf_release(&c->in);
	buf_release(&c->out);
	free(c);
	listener_maybe_done(l);
}

/* Memory of a conn goes only when both its handles have closed. */
static void conn_closed_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->handles == 0)
		conn_free(c);
}

/* Closes the connection; with a request at its handler, only once it has
 * been answered (the request must stay valid until then). */
static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	idle_del(c);
	if (c->phase == PHASE_HANDLER) {
		c->dead = true;
		if (c->reading)
			c->l->io->read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
		uv_timer_stop(&c->timer);
		return;
	}
	c->closing = true;
	conn_uncount(c);
	c->l->io->close((uv_handle_t *)&c->tcp, conn_closed_cb);
	uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void conn_peer_name(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	snprintf(c->remote, sizeof(c->remote), "unknown");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		uv_ip4_name(sin, c->remote, sizeof(c->remote));
		memset(c->key, 0, 10);
		c->key[10] = c->key[11] = 0xff;
		memcpy(c->key + 12, &sin->sin_addr, 4);
		c->has_key = true;
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

		uv_ip6_name(sin6, c->remote, sizeof(c->remote));
		memcpy(c->key, &sin6->sin6_addr, 16);
		c->has_key = true;
	}
}

/* A new connection with its stream and timer initialised, not accepted
 * yet; NULL when out of memory. */
static struct conn *conn_new(struct listener *l)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->l = l;
	c->tcp.data = c;
	c->timer.data = c;
	buf_init(&c->in, LISTENER_IN_LIMIT + LISTENER_READ_CHUNK);
	buf_init(&c->out, l->lim.max_response_bytes + 4096);
	req_init(&c->req, c);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->phase = PHASE_IDLE;
	uv_tcp_init(l->loop, &c->tcp);
	uv_timer_init(l->loop, &c->timer);
	c->handles = 2;
	list_init(&c->idle);
	list_prepend(&l->conns, &c->link);
	return c;
}

/* An admitted connection starts: its header deadline, then reading. */
static void conn_begin(struct conn *c)
{
	c->l->st.connections++;
	idle_add(c);
	conn_timer(c, c->l->lim.header_timeout_ms);
	conn_read_start(c);
}

static void listener_conn_cb(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct conn *c;

	if (status < 0) {
		log_warn("http accept failed", "error=\"%s\"", uv_strerror(status));
		return;
	}
	c = conn_new(l);
	if (!c) {
		log_warn("http accept failed", "error=\"%s\"", "out of memory");
		return;
	}
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	conn_peer_name(c);
	if (!listener_admit(l, c))
		return;
	uv_tcp_nodelay(&c->tcp, 1);
	conn_begin(c);
}

uv_stream_t *listener__adopt(struct listener *l, const char *remote)
{
	struct conn *c = conn_new(l);

	if (!c)
		return NULL;
	snprintf(c->remote, sizeof(c->remote), "%s", remote);
	if (!listener_admit(l, c))
		return NULL;
	conn_begin(c);
	return c->closing ? NULL : (uv_stream_t *)&c->tcp;
}

/* ------------------------------------------------------------ listener */

/* Parses "a.b.c.d:port" or "[v6]:port" into ss. */
static int listener_parse_addr(const char *addr, struct sockaddr_storage *ss, char *err,
			       size_t errlen)
{
	bool v6 = addr[0] == '[';
	const char *h = v6 ? addr + 1 : addr, *hend, *port_s;
	unsigned long port = 0;
	char host[64];
	size_t i, hlen;
	int rc = -1;

	hend = v6 ? strchr(h, ']') : strrchr(h, ':');
	if (!hend || (v6 && hend[1] != ':')) {
		snprintf(err, errlen, "listen address '%s': expected host:port or [ipv6]:port", addr);
		goto out;
	}
	port_s = v6 ? hend + 2 : hend + 1;
	hlen = (size_t)(hend - h);
	if (hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errlen, "listen address '%s': missing or overlong host", addr);
		goto out;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	for (i = 0; port_s[i] >= '0' && port_s[i] <= '9' && i < 6; i++)
		port = port * 10 + (unsigned long)(port_s[i] - '0');
	if (i == 0 || port_s[i] || port > 65535) {
		snprintf(err, errlen, "listen address '%s': port must be a number from 0 to 65535",
			 addr);
		goto out;
	}
	memset(ss, 0, sizeof(*ss));
	if (v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) < 0
	       : strchr(host, ':') || uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) < 0) {
		snprintf(err, errlen, "listen address '%s': host must be an IPv4 address or [IPv6]",
			 addr);
		goto out;
	}
	rc = 0;
out:
	return rc;
}

/* Checks a route row: pattern "/..." whose "{name}" parameters fill whole
 * segments, a handler and some methods. */
static int listener_check_route(const struct listener_route *rt, size_t i, char *err,
				size_t errlen)
{
	const char *p = rt->pattern;
	unsigned nparams = 0;

	if (!p || p[0] != '/') {
		snprintf(err, errlen, "route %zu '%s': pattern must start with '/'", i,
			 p ? p : "(null)");
		return -1;
	}
	if (!rt->handler || !rt->methods) {
		snprintf(err, errlen, "route %zu '%s': no handler or no methods", i, p);
		return -1;
	}
	for (; *p; p++) {
		if (*p == '}') {
			snprintf(err, errlen, "route %zu '%s': '}' without '{'", i, rt->pattern);
			return -1;
		}
		if (*p != '{')
			continue;
		{
			size_t n = strcspn(p + 1, "{}/");

			if (p[-1] != '/' || p[1 + n] != '}' || n == 0 ||
			    (p[2 + n] != '/' && p[2 + n] != '\0')) {
				snprintf(err, errlen,
					 "route %zu '%s': a parameter must be a whole segment '{name}'",
					 i, rt->pattern);
				return -1;
			}
			if (++nparams > LISTENER_MAX_PARAMS) {
				snprintf(err, errlen, "route %zu '%s': more than %d parameters", i,
					 rt->pattern, LISTENER_MAX_PARAMS);
				return -1;
			}
			p += n + 1;
		}
	}
	return 0;
}

static void listener_fill_limits(struct listener_limits *lim, const struct listener_limits *in)
{
	*lim = *in;
#define LIMIT(f)                               \
	do {                                   \
		if (!lim->f)                   \
			lim->f = limits_default.f; \
	} while (0)
	LIMIT(max_url_bytes);
	LIMIT(max_header_bytes);
	LIMIT(max_headers);
	LIMIT(max_body_bytes);
	LIMIT(max_response_bytes);
	LIMIT(max_requests);
	LIMIT(max_connections);
	LIMIT(max_connections_per_ip);
	LIMIT(header_timeout_ms);
	LIMIT(body_timeout_ms);
	LIMIT(idle_timeout_ms);
	LIMIT(idle_pressure_ms);
	LIMIT(write_timeout_ms);
	LIMIT(linger_ms);
#undef LIMIT
	if (lim->idle_pressure_ms > lim->idle_timeout_ms)
		lim->idle_pressure_ms = lim->idle_timeout_ms;
}

static void listener_start_failed_cb(uv_handle_t *h)
{
	struct listener *l = h->data;

	free(l->ips);
	free(l);
}

/* The listener of cfg with its server handle initialised, not bound;
 * NULL with a message in err on failure. */
static struct listener *listener_new(uv_loop_t *loop, const struct listener_config *cfg,
				     const struct listener_io *io, const char *addr, char *err,
				     size_t errlen)
{
	struct listener *l;
	size_t i;
	int e;

	for (i = 0; i < cfg->nroutes; i++)
		if (listener_check_route(&cfg->routes[i], i, err, errlen) < 0)
			return NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "listen on '%s': out of memory", addr);
		return NULL;
	}
	l->loop = loop;
	l->io = io;
	list_init(&l->conns);
	list_init(&l->idle);
	l->routes = cfg->routes;
	l->nroutes = cfg->nroutes;
	l->refused = cfg->refused;
	l->refused_data = cfg->refused_data;
	listener_fill_limits(&l->lim, &cfg->limits);
	for (l->ip_mask = 16; l->ip_mask < 2 * (size_t)l->lim.max_connections; l->ip_mask *= 2)
		;
	l->ips = calloc(l->ip_mask, sizeof(*l->ips));
	l->ip_mask--;
	l->ip_seed = uv_hrtime() ^ (uint64_t)(uintptr_t)l;
	if (!l->ips) {
		snprintf(err, errlen, "listen on '%s': out of memory", addr);
		free(l);
		return NULL;
	}
	e = uv_tcp_init(loop, &l->server);
	if (e < 0) {
		snprintf(err, errlen, "listen on '%s': %s", addr, uv_strerror(e));
		free(l->ips);
		free(l);
		return NULL;
	}
	l->server.data = l;
	return l;
}

int listener__open(uv_loop_t *loop, const struct listener_config *cfg,
		   const struct listener_io *io, struct listener **out, char *err, size_t errlen)
{
	*out = listener_new(loop, cfg, io, "(no socket)", err, errlen);
	return *out ? 0 : -1;
}

int listener_start(uv_loop_t *loop, const struct listener_config *cfg, struct listener **out,
		   char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct listener *l = NULL;
	struct sigaction sa;
	int namelen = sizeof(ss);
	int rc = -1, e;

	*out = NULL;
	if (listener_parse_addr(cfg->addr ? cfg->addr : "", &ss, err, errlen) < 0)
		goto out;
	l = listener_new(loop, cfg, &listener_io_uv, cfg->addr, err, errlen);
	if (!l)
		goto out;
	e = uv_tcp_bind(&l->server, (const struct sockaddr *)&ss, 0);
	if (e == 0)
		e = uv_listen((uv_stream_t *)&l->server, 1024, listener_conn_cb);
	if (e == 0)
		e = uv_tcp_getsockname(&l->server, (struct sockaddr *)&ss, &namelen);
	if (e < 0) {
		snprintf(err, errlen, "listen on '%s': %s", cfg->addr, uv_strerror(e));
		uv_close((uv_handle_t *)&l->server, listener_start_failed_cb);
		l = NULL;
		goto out;
	}
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	/* A write to a vanished client must not kill the daemon. */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	*out = l;
	rc = 0;
out:
	return rc;
}

int listener_port(const struct listener *l)
{
	return l->port;
}

void listener_stats(const struct listener *l, struct listener_stats *out)
{
	const struct list *it;

	*out = l->st;
	out->conn_active = l->nactive;
	out->req_pending = 0;
	out->buffer_bytes = 0;
	list_for_each(it, &l->conns) {
		const struct conn *c = list_entry(it, const struct conn, link);
		const struct listener_req *r = &c->req;

		if (c->phase == PHASE_HANDLER)
			out->req_pending++;
		out->buffer_bytes += c->in.cap + c->out.cap + r->url.cap + r->hdr.cap + r->body.cap +
				     r->pvals.cap;
	}
}

/* Calls the close callback once the server and every connection are gone;
 * the listener is freed after it returns. */
static void listener_maybe_done(struct listener *l)
{
	if (!l->closing || !l->server_closed || !list_empty(&l->conns) || l->done)
		return;
	l->done = true;
	if (l->close_cb)
		l->close_cb(l, l->close_data);
	free(l->ips);
	free(l);
}

static void listener_server_closed_cb(uv_handle_t *h)
{
	struct listener *l = h->data;

	l->server_closed = true;
	listener_maybe_done(l);
}

void listener_close(struct listener *l, listener_close_cb cb, void *data)
{
	struct list *it;

	if (l->closing)
		return;
	l->closing = true;
	l->close_cb = cb;
	l->close_data = data;
	if (l->refuse_unlogged)
		listener_refuse_log(l);
	uv_close((uv_handle_t *)&l->server, listener_server_closed_cb);
	/* conn_close() frees nothing before the loop runs, so walking on is safe */
	list_for_each(it, &l->conns) {
		struct conn *c = list_entry(it, struct conn, link);

		if (c->phase == PHASE_IDLE && c->in_off == c->in.len)
			conn_close(c);
	}
}
