/* mock_crm: a scripted HTTP/1.1 server in its own thread that plays the advertisers' CRMs in tests. */
#define _GNU_SOURCE
#include "mock_crm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MOCK_MAX_CONNS 1024
#define MOCK_MAX_HEAD ((size_t)64 << 10)
#define MOCK_MAX_IN ((size_t)2 << 20)
#define MOCK_MAX_BODY ((size_t)1 << 20)
#define MOCK_MAX_OUT ((size_t)64 << 20)
#define MOCK_MAX_RECORDS 100000
#define MOCK_CHUNK 16384

enum phase {
	PH_READ,  /* waiting for (the rest of) a request */
	PH_DELAY, /* answer prepared, waiting for its deadline */
	PH_SEND,  /* writing out */
	PH_DRIP,  /* between two dripped bytes */
};

struct mconn {
	int fd;
	unsigned id;
	bool dead;
	enum phase phase;
	struct buf in;
	struct buf out;
	size_t out_off;
	uint64_t deadline;
	bool active;       /* a recorded request is being answered */
	size_t rec;        /* its record */
	struct buf pending; /* the answer's first bytes, sent at the deadline */
	bool close_now;    /* at the deadline: close instead of answering */
	bool close_after;
	const char *drip;
	size_t drip_len, drip_pos;
	unsigned drip_ms;
	size_t chunk_left;
};

struct mock_crm {
	int lfd;
	int port;
	int wake[2];
	pthread_t th;
	struct mock_route *routes;
	size_t nroutes;
	unsigned *hits;
	struct mconn *conns[MOCK_MAX_CONNS];
	size_t nconns;
	unsigned conn_ids;
	struct pollfd pfd[MOCK_MAX_CONNS + 2];
	struct mconn *pc[MOCK_MAX_CONNS + 2];
	pthread_mutex_t mu; /* guards what follows */
	struct mock_request *recs;
	size_t nrecs, caprecs;
	size_t total;
	unsigned in_flight, max_in_flight, connections;
};

uint64_t mock_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *mock_request_header(const struct mock_request *r, const char *name)
{
	const char *p = r->headers;
	unsigned i;

	for (i = 0; p && i < r->nheaders; i++) {
		const char *v = p + strlen(p) + 1;

		if (strcasecmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

static const char *reason(int st)
{
	switch (st) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 307: return "Temporary Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

/* True when the header lines in `lines` have one called name. */
static bool has_header(const char *lines, const char *name)
{
	size_t n = strlen(name);
	const char *p = lines;

	while (p && *p) {
		if (strncasecmp(p, name, n) == 0 && p[n] == ':')
			return true;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return false;
}

/* Status line and headers; clen SIZE_MAX: chunked. */
static int head_add(struct buf *o, int status, const char *extra, size_t clen, bool close)
{
	extra = extra ? extra : "";
	if (buf_addf(o, "HTTP/1.1 %d %s\r\n%s", status, reason(status), extra) < 0)
		return -1;
	if (!has_header(extra, "Content-Type") && clen && status != 204 &&
	    buf_adds(o, "Content-Type: application/json\r\n") < 0)
		return -1;
	if (clen == SIZE_MAX ? buf_adds(o, "Transfer-Encoding: chunked\r\n")
			     : buf_addf(o, "Content-Length: %zu\r\n", clen))
		return -1;
	if (close && buf_adds(o, "Connection: close\r\n") < 0)
		return -1;
	return buf_adds(o, "\r\n");
}

/* --- gzip: fixed-Huffman deflate that codes runs of one byte as matches
 * of length 258 at distance 1 and everything else as literals. --- */

struct bits {
	struct buf *b;
	uint32_t acc;
	int n;
	int err;
};

static void bits_put(struct bits *w, uint32_t v, int n)
{
	w->acc |= v << w->n;
	w->n += n;
	while (w->n >= 8) {
		if (buf_addc(w->b, (char)(w->acc & 0xff)) < 0)
			w->err = -1;
		w->acc >>= 8;
		w->n -= 8;
	}
}

/* Huffman codes go most significant bit first. */
static void bits_code(struct bits *w, uint32_t code, int len)
{
	uint32_t r = 0;
	int i;

	for (i = 0; i < len; i++)
		r |= ((code >> i) & 1u) << (len - 1 - i);
	bits_put(w, r, len);
}

static void bits_sym(struct bits *w, unsigned v)
{
	if (v < 144)
		bits_code(w, 0x30 + v, 8);
	else if (v < 256)
		bits_code(w, 0x190 + (v - 144), 9);
	else if (v < 280)
		bits_code(w, v - 256, 7);
	else
		bits_code(w, 0xc0 + (v - 280), 8);
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
	static uint32_t tab[256];
	static bool ready;
	uint32_t c = 0xffffffffu;
	size_t i;

	if (!ready) {
		for (i = 0; i < 256; i++) {
			uint32_t v = (uint32_t)i;
			int k;

			for (k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			tab[i] = v;
		}
		ready = true;
	}
	for (i = 0; i < n; i++)
		c = tab[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static int gzip_add(struct buf *o, const unsigned char *p, size_t n)
{
	static const unsigned char hdr[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
	struct bits w = { o, 0, 0, 0 };
	uint32_t crc = crc32_of(p, n), sz = (uint32_t)n;
	unsigned char tr[8];
	size_t i = 0, k;

	if (buf_add(o, hdr, sizeof(hdr)) < 0)
		return -1;
	bits_put(&w, 1, 1); /* BFINAL */
	bits_put(&w, 1, 2); /* BTYPE 01: fixed Huffman */
	while (i < n && !w.err) {
		bool run = i > 0 && n - i >= 258;

		for (k = 0; run && k < 258; k++)
			run = p[i + k] == p[i - 1];
		if (run) {
			bits_sym(&w, 285);   /* length 258 */
			bits_code(&w, 0, 5); /* distance 1 */
			i += 258;
		} else {
			bits_sym(&w, p[i]);
			i++;
		}
	}
	bits_sym(&w, 256);
	if (w.n)
		bits_put(&w, 0, 8 - w.n);
	for (k = 0; k < 4; k++) {
		tr[k] = (unsigned char)(crc >> (8 * k));
		tr[4 + k] = (unsigned char)(sz >> (8 * k));
	}
	if (w.err || buf_add(o, tr, sizeof(tr)) < 0)
		return -1;
	return 0;
}

/* --- Records. --- */

static void rec_release(struct mock_request *r)
{
	free((void *)r->path);
	free((void *)r->query);
	free((void *)r->headers);
	free((void *)r->body);
}

/* Appends r (taking its strings); returns its index, or -1 when full. */
static long rec_add(struct mock_crm *m, struct mock_request *r)
{
	long idx = -1;

	pthread_mutex_lock(&m->mu);
	m->total++;
	m->in_flight++;
	if (m->in_flight > m->max_in_flight)
		m->max_in_flight = m->in_flight;
	r->in_flight = m->in_flight;
	if (m->nrecs == m->caprecs && m->caprecs < MOCK_MAX_RECORDS) {
		size_t cap = m->caprecs ? m->caprecs * 2 : 256;
		struct mock_request *v = realloc(m->recs, cap * sizeof(*v));

		if (v) {
			m->recs = v;
			m->caprecs = cap;
		}
	}
	if (m->nrecs < m->caprecs) {
		m->recs[m->nrecs] = *r;
		idx = (long)m->nrecs++;
	} else {
		rec_release(r);
	}
	pthread_mutex_unlock(&m->mu);
	return idx;
}

/* The answer of the request being served is over (sent, or the client gone). */
static void answer_over(struct mock_crm *m, struct mconn *c)
{
	if (!c->active)
		return;
	c->active = false;
	pthread_mutex_lock(&m->mu);
	m->in_flight--;
	if (c->rec != SIZE_MAX)
		m->recs[c->rec].t_done_us = mock_now_us();
	pthread_mutex_unlock(&m->mu);
}

static void conn_kill(struct mock_crm *m, struct mconn *c)
{
	answer_over(m, c);
	c->dead = true;
}

/* --- Answers. --- */

static const char *query_get(const char *q, const char *name, size_t *len)
{
	size_t n = strlen(name);

	while (q && *q) {
		if (strncmp(q, name, n) == 0 && q[n] == '=') {
			const char *v = q + n + 1;

			*len = strcspn(v, "&");
			return v;
		}
		q = strchr(q, '&');
		if (q)
			q++;
	}
	return NULL;
}

static int paged_body(struct buf *o, const struct mock_route *rt, const char *query)
{
	size_t len = 0, i;
	const char *v = query_get(query, "page", &len);
	unsigned page = 1, per = rt->per_page ? rt->per_page : 10;

	if (v) {
		page = 0;
		for (i = 0; i < len && i < 6 && v[i] >= '0' && v[i] <= '9'; i++)
			page = page * 10 + (unsigned)(v[i] - '0');
	}
	if (buf_addf(o, "{\"current_page\":%u,\"last_page\":%u,\"data\":[", page, rt->pages) < 0)
		return -1;
	if (page >= 1 && page <= rt->pages) {
		for (i = 0; i < per; i++)
			if (buf_addf(o, "%s{\"id\":\"%zu\",\"status\":\"processing\"}", i ? "," : "",
				     (size_t)(page - 1) * per + i + 1) < 0)
				return -1;
	}
	return buf_adds(o, "]}");
}

/* Prepares the answer to record r on c by route idx (-1: none matched). */
static int answer_prepare(struct mock_crm *m, struct mconn *c, int idx, const struct mock_request *r)
{
	const struct mock_route *rt = idx >= 0 ? &m->routes[idx] : NULL;
	struct buf body;
	struct mock_answer ans;
	bool head = strcmp(r->method, "HEAD") == 0;
	int status, rc = -1;
	size_t i;

	buf_init(&body, MOCK_MAX_OUT);
	memset(&ans, 0, sizeof(ans));
	buf_init(&ans.headers, 64 << 10);
	buf_init(&ans.body, MOCK_MAX_OUT);
	c->close_after = (rt && rt->close) || c->close_after;
	c->deadline = mock_now_us() + (rt ? rt->delay_ms : 0) * 1000ull;
	if (!rt) {
		if (buf_adds(&body, "{\"error\":\"not found\"}") < 0 ||
		    head_add(&c->pending, 404, NULL, body.len, c->close_after) < 0 ||
		    buf_add(&c->pending, body.p, body.len) < 0)
			goto out;
		rc = 0;
		goto out;
	}
	status = rt->status ? rt->status : 200;
	switch (rt->kind) {
	case MOCK_FIXED:
	case MOCK_PAGED:
		if (rt->kind == MOCK_PAGED ? paged_body(&body, rt, r->query) < 0
					   : buf_adds(&body, rt->body ? rt->body : "") < 0)
			goto out;
		if (head_add(&c->pending, status, rt->headers, body.len, c->close_after) < 0 ||
		    (!head && buf_add(&c->pending, body.p, body.len) < 0))
			goto out;
		break;
	case MOCK_GZIP: {
		struct buf raw;
		int e;

		buf_init(&raw, MOCK_MAX_OUT);
		e = rt->size ? 0 : buf_adds(&raw, rt->body ? rt->body : "");
		for (i = 0; !e && i < rt->size; i++)
			e = buf_addc(&raw, 'a');
		if (!e)
			e = gzip_add(&body, (const unsigned char *)(raw.p ? raw.p : ""), raw.len);
		buf_release(&raw);
		if (e < 0 || buf_adds(&ans.headers, "Content-Encoding: gzip\r\n") < 0 ||
		    buf_adds(&ans.headers, rt->headers ? rt->headers : "") < 0 ||
		    head_add(&c->pending, status, ans.headers.p, body.len, c->close_after) < 0 ||
		    (!head && buf_add(&c->pending, body.p, body.len) < 0))
			goto out;
		break;
	}
	case MOCK_DRIP:
		c->drip = rt->body ? rt->body : "";
		c->drip_len = head ? 0 : strlen(c->drip);
		c->drip_pos = 0;
		c->drip_ms = rt->drip_ms;
		if (head_add(&c->pending, status, rt->headers, strlen(c->drip), c->close_after) < 0)
			goto out;
		break;
	case MOCK_CHUNKED:
		c->chunk_left = head ? 0 : rt->size;
		if (head_add(&c->pending, status, rt->headers, SIZE_MAX, c->close_after) < 0 ||
		    (!head && rt->size == 0 && buf_adds(&c->pending, "0\r\n\r\n") < 0))
			goto out;
		break;
	case MOCK_CLOSE:
		c->close_now = true;
		break;
	case MOCK_FUNC:
		ans.status = 200;
		if (rt->fn)
			rt->fn(r, &ans, rt->data);
		else
			ans.status = 500;
		c->deadline += ans.delay_ms * 1000ull;
		if (ans.close)
			c->close_after = true;
		if (ans.status == 0) {
			c->close_now = true;
			break;
		}
		if (head_add(&c->pending, ans.status, ans.headers.p, ans.body.len, c->close_after) < 0 ||
		    (!head && buf_add(&c->pending, ans.body.p, ans.body.len) < 0))
			goto out;
		break;
	}
	rc = 0;
out:
	buf_release(&body);
	buf_release(&ans.headers);
	buf_release(&ans.body);
	return rc;
}

/* Parses one request from c->in. 1: taken (answer prepared), 0: need more,
 * -1: not HTTP (c answers 400 and closes). */
static int request_take(struct mock_crm *m, struct mconn *c)
{
	const char *p = c->in.p, *end, *line, *sp1, *sp2, *eol, *q;
	struct mock_request r;
	struct buf hb;
	size_t head_len, clen = 0, i;
	long idx;
	int route = -1;

	if (c->in.len == 0)
		return 0;
	if (p[0] < 'A' || p[0] > 'Z')
		return -1;
	end = memmem(p, c->in.len, "\r\n\r\n", 4);
	if (!end)
		return c->in.len > MOCK_MAX_HEAD ? -1 : 0;
	head_len = (size_t)(end - p) + 4;
	memset(&r, 0, sizeof(r));
	buf_init(&hb, MOCK_MAX_HEAD);
	eol = memmem(p, head_len, "\r\n", 2);
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || (size_t)(sp1 - p) >= sizeof(r.method) || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
		goto bad;
	memcpy(r.method, p, (size_t)(sp1 - p));
	if (strncmp(sp2 + 1, "HTTP/1.0", 8) == 0)
		c->close_after = true;
	/* headers */
	for (line = eol + 2; line < end + 2; line = eol + 2) {
		const char *colon, *v, *ve;

		eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			goto bad;
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		if (buf_add(&hb, line, (size_t)(colon - line)) < 0 || buf_addc(&hb, '\0') < 0 ||
		    buf_add(&hb, v, (size_t)(ve - v)) < 0 || buf_addc(&hb, '\0') < 0)
			goto bad;
		r.nheaders++;
		if ((size_t)(colon - line) == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
			clen = 0;
			for (q = v; q < ve; q++) {
				if (*q < '0' || *q > '9' || clen > MOCK_MAX_BODY)
					goto bad;
				clen = clen * 10 + (size_t)(*q - '0');
			}
		}
		if ((size_t)(colon - line) == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0)
			goto bad; /* chunked uploads are not played */
		if ((size_t)(colon - line) == 10 && strncasecmp(line, "Connection", 10) == 0 &&
		    (size_t)(ve - v) == 5 && strncasecmp(v, "close", 5) == 0)
			c->close_after = true;
	}
	if (clen > MOCK_MAX_BODY)
		goto bad;
	if (c->in.len < head_len + clen) {
		buf_release(&hb);
		return 0;
	}
	r.headers = buf_steal(&hb);
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	r.path = strndup(sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1));
	r.query = q ? strndup(q + 1, (size_t)(sp2 - q - 1)) : strdup("");
	r.body = malloc(clen + 1);
	if (!r.path || !r.query || !r.body || !r.headers) {
		rec_release(&r);
		return -1;
	}
	memcpy((char *)r.body, p + head_len, clen);
	((char *)r.body)[clen] = '\0';
	r.body_len = clen;
	r.conn = c->id;
	r.t_arrive_us = mock_now_us();
	for (i = 0; i < m->nroutes; i++) {
		const struct mock_route *rt = &m->routes[i];

		if ((strcmp(rt->path, "*") == 0 || strcmp(rt->path, r.path) == 0) &&
		    (!rt->times || m->hits[i] < rt->times)) {
			m->hits[i]++;
			route = (int)i;
			break;
		}
	}
	r.route = route;
	idx = rec_add(m, &r);
	c->active = true;
	c->rec = idx < 0 ? SIZE_MAX : (size_t)idx;
	memmove(c->in.p, c->in.p + head_len + clen, c->in.len - head_len - clen);
	c->in.len -= head_len + clen;
	c->in.p[c->in.len] = '\0';
	/* r's strings now belong to the record, which stays put */
	if (answer_prepare(m, c, route, &r) < 0) {
		conn_kill(m, c);
		return 1;
	}
	c->phase = PH_DELAY;
	return 1;
bad:
	buf_release(&hb);
	return -1;
}

static void conn_write(struct mock_crm *m, struct mconn *c);

/* The deadline of a delayed answer or a dripped byte has come. */
static void conn_due(struct mock_crm *m, struct mconn *c)
{
	if (c->phase == PH_DELAY) {
		if (c->close_now) {
			conn_kill(m, c);
			return;
		}
		if (buf_add(&c->out, c->pending.p, c->pending.len) < 0) {
			conn_kill(m, c);
			return;
		}
		buf_reset(&c->pending);
	} else if (c->phase == PH_DRIP) {
		if (buf_addc(&c->out, c->drip[c->drip_pos++]) < 0) {
			conn_kill(m, c);
			return;
		}
	}
	c->phase = PH_SEND;
	conn_write(m, c);
}

static void conn_input(struct mock_crm *m, struct mconn *c)
{
	while (!c->dead && c->phase == PH_READ) {
		int t = request_take(m, c);

		if (t == 0)
			return;
		if (t < 0) {
			c->close_after = true;
			c->in.len = 0;
			if (buf_adds(&c->out, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
					      "Connection: close\r\n\r\n") < 0) {
				conn_kill(m, c);
				return;
			}
			c->phase = PH_SEND;
			conn_write(m, c);
			return;
		}
		if (!c->dead && mock_now_us() >= c->deadline)
			conn_due(m, c);
	}
}

/* Writes what is pending; moves on to the next byte, chunk or request. */
static void conn_write(struct mock_crm *m, struct mconn *c)
{
	while (!c->dead && c->phase == PH_SEND) {
		if (c->out_off < c->out.len) {
			ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
					conn_kill(m, c);
				return;
			}
			c->out_off += (size_t)n;
			continue;
		}
		buf_reset(&c->out);
		c->out_off = 0;
		if (c->drip_pos < c->drip_len) {
			c->phase = PH_DRIP;
			c->deadline = mock_now_us() + c->drip_ms * 1000ull;
			return;
		}
		if (c->chunk_left) {
			size_t n = c->chunk_left < MOCK_CHUNK ? c->chunk_left : MOCK_CHUNK, i;
			int e = buf_addf(&c->out, "%zx\r\n", n);

			for (i = 0; !e && i < n; i++)
				e = buf_addc(&c->out, 'x');
			c->chunk_left -= n;
			if (!e)
				e = buf_adds(&c->out, c->chunk_left ? "\r\n" : "\r\n0\r\n\r\n");
			if (e) {
				conn_kill(m, c);
				return;
			}
			continue;
		}
		/* the answer is out */
		answer_over(m, c);
		c->drip = NULL;
		c->drip_len = c->drip_pos = 0;
		if (c->close_after) {
			c->dead = true;
			return;
		}
		c->phase = PH_READ;
		conn_input(m, c);
	}
}

static void conn_read(struct mock_crm *m, struct mconn *c)
{
	char tmp[16384];

	for (;;) {
		ssize_t n;

		if (c->in.len >= MOCK_MAX_IN)
			break;
		n = recv(c->fd, tmp, sizeof(tmp), 0);
		if (n == 0) {
			conn_kill(m, c);
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				conn_kill(m, c);
			break;
		}
		if (buf_add(&c->in, tmp, (size_t)n) < 0) {
			conn_kill(m, c);
			return;
		}
	}
	conn_input(m, c);
}

static void conn_free(struct mconn *c)
{
	close(c->fd);
	buf_release(&c->in);
	buf_release(&c->out);
	buf_release(&c->pending);
	free(c);
}

static void accept_all(struct mock_crm *m)
{
	for (;;) {
		int fd = accept(m->lfd, NULL, NULL);
		struct mconn *c;

		if (fd < 0)
			return;
		if (m->nconns == MOCK_MAX_CONNS || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->id = ++m->conn_ids;
		c->rec = SIZE_MAX;
		buf_init(&c->in, MOCK_MAX_IN + 16384);
		buf_init(&c->out, MOCK_MAX_OUT);
		buf_init(&c->pending, MOCK_MAX_OUT);
		m->conns[m->nconns++] = c;
		pthread_mutex_lock(&m->mu);
		m->connections++;
		pthread_mutex_unlock(&m->mu);
	}
}

static void *mock_main(void *arg)
{
	struct mock_crm *m = arg;
	struct pollfd *pfd = m->pfd;
	struct mconn **pc = m->pc;

	for (;;) {
		uint64_t now = mock_now_us(), next = UINT64_MAX;
		size_t i, n = 0, j;
		int timeout;

		for (i = 0; i < m->nconns; i++) {
			struct mconn *c = m->conns[i];

			if (!c->dead && (c->phase == PH_DELAY || c->phase == PH_DRIP) && c->deadline <= now)
				conn_due(m, c);
		}
		for (i = j = 0; i < m->nconns; i++) {
			if (m->conns[i]->dead)
				conn_free(m->conns[i]);
			else
				m->conns[j++] = m->conns[i];
		}
		m->nconns = j;
		pfd[n].fd = m->wake[0];
		pfd[n].events = POLLIN;
		pc[n++] = NULL;
		pfd[n].fd = m->lfd;
		pfd[n].events = POLLIN;
		pc[n++] = NULL;
		for (i = 0; i < m->nconns; i++) {
			struct mconn *c = m->conns[i];

			pfd[n].fd = c->fd;
			pfd[n].events = c->in.len < MOCK_MAX_IN ? POLLIN : 0;
			if (c->phase == PH_SEND)
				pfd[n].events |= POLLOUT;
			if ((c->phase == PH_DELAY || c->phase == PH_DRIP) && c->deadline < next)
				next = c->deadline;
			pc[n++] = c;
		}
		now = mock_now_us();
		timeout = next == UINT64_MAX ? -1 : next <= now ? 0 : (int)((next - now + 999) / 1000);
		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN)
			accept_all(m);
		for (i = 2; i < n; i++) {
			struct mconn *c = pc[i];

			if (c->dead || !pfd[i].revents)
				continue;
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				conn_read(m, c);
			if (!c->dead && (pfd[i].revents & POLLOUT))
				conn_write(m, c);
		}
	}
	return NULL;
}

int mock_crm_start(struct mock_crm **out, const struct mock_route *routes, size_t nroutes)
{
	struct mock_crm *m = calloc(1, sizeof(*m));
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int one = 1;

	*out = NULL;
	if (!m)
		return -1;
	m->lfd = -1;
	m->wake[0] = m->wake[1] = -1;
	pthread_mutex_init(&m->mu, NULL);
	m->routes = calloc(nroutes ? nroutes : 1, sizeof(*m->routes));
	m->hits = calloc(nroutes ? nroutes : 1, sizeof(*m->hits));
	if (!m->routes || !m->hits)
		goto fail;
	if (nroutes)
		memcpy(m->routes, routes, nroutes * sizeof(*routes));
	m->nroutes = nroutes;
	m->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (m->lfd < 0)
		goto fail;
	setsockopt(m->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(m->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(m->lfd, 1024) < 0 ||
	    getsockname(m->lfd, (struct sockaddr *)&sa, &sl) < 0 ||
	    fcntl(m->lfd, F_SETFL, O_NONBLOCK) < 0 || pipe(m->wake) < 0)
		goto fail;
	m->port = ntohs(sa.sin_port);
	if (pthread_create(&m->th, NULL, mock_main, m) != 0)
		goto fail;
	*out = m;
	return 0;
fail:
	fprintf(stderr, "mock_crm: cannot start: %s\n", strerror(errno));
	if (m->lfd >= 0)
		close(m->lfd);
	if (m->wake[0] >= 0) {
		close(m->wake[0]);
		close(m->wake[1]);
	}
	free(m->routes);
	free(m->hits);
	pthread_mutex_destroy(&m->mu);
	free(m);
	return -1;
}

int mock_crm_port(const struct mock_crm *m)
{
	return m->port;
}

size_t mock_crm_requests(struct mock_crm *m, struct mock_request *out, size_t max)
{
	size_t n;

	pthread_mutex_lock(&m->mu);
	n = m->nrecs < max ? m->nrecs : max;
	if (n)
		memcpy(out, m->recs, n * sizeof(*out));
	max = m->total;
	pthread_mutex_unlock(&m->mu);
	return max;
}

unsigned mock_crm_max_in_flight(struct mock_crm *m)
{
	unsigned v;

	pthread_mutex_lock(&m->mu);
	v = m->max_in_flight;
	pthread_mutex_unlock(&m->mu);
	return v;
}

unsigned mock_crm_connections(struct mock_crm *m)
{
	unsigned v;

	pthread_mutex_lock(&m->mu);
	v = m->connections;
	pthread_mutex_unlock(&m->mu);
	return v;
}

void mock_crm_stop(struct mock_crm *m)
{
	size_t i;
	char b = 1;

	if (!m)
		return;
	if (write(m->wake[1], &b, 1) != 1)
		fprintf(stderr, "mock_crm: cannot wake the server thread\n");
	pthread_join(m->th, NULL);
	for (i = 0; i < m->nconns; i++)
		conn_free(m->conns[i]);
	for (i = 0; i < m->nrecs; i++)
		rec_release(&m->recs[i]);
	free(m->recs);
	close(m->lfd);
	close(m->wake[0]);
	close(m->wake[1]);
	free(m->routes);
	free(m->hits);
	pthread_mutex_destroy(&m->mu);
	free(m);
}
