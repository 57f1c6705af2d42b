/* fuzz target listener: the HTTP listener from raw bytes to answers, on a
 * fake stream (include/listener_int.h: no socket). One connection of a
 * listener with the daemon's route table shape (/healthz, a POST with a
 * body, /click/{offer} with a Location, postback-like /{api_key}/s2s and
 * /{api_key} that answer at once or later from the loop, /metrics) is fed
 * the client's bytes in reads of sizes the input picks; the input also
 * picks, step by step, what happens next: a read, the client's EOF, a
 * queued write completing (or failing), a pending handler answering.
 *
 * Checked (abort on a violation): every answer is one well-formed
 * HTTP/1.1 message (status line, "Name: value" headers, one
 * Content-Length matching the body, or no body for HEAD); handler
 * answers come out once each and in request order; nothing follows an
 * answer with Connection: close; no more answers than requests the client
 * began (+1 for the refusal of a malformed one); the listener's count of
 * answers equals what was written; refusals name a known route or none;
 * when the connection closes it holds nothing (stats) and the listener
 * closes with every handle freed (and LSan finds no leak).
 *
 * Input: 4 bytes of settings, then the bytes the client sends.
 *   byte 0: bit 0-1 how the postback-like routes answer (0 at once, 1
 *           later, 2 alternating, 3 later for POST only); bit 2 writes
 *           are taken in part (the rest queued, completed later); bit 3
 *           the n-th write fails (n from byte 3's high nibble); bit 4
 *           small limits; bit 5 reads up to 64 times larger;
 *   bytes 1-3: cycled: which available step comes next, and read sizes.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "fuzz.h"
#include "listener.h"
#include "listener_int.h"
#include "log.h"

#define LF_MAX_MSGS 4096

/* The one fake connection's stream and what it was sent. */
static struct lf {
	uv_stream_t *s; /* NULL once closed */
	uv_alloc_cb alloc_cb;
	uv_read_cb read_cb;
	bool reading;
	bool closed;
	bool shut;
	uv_write_t *wreq; /* a queued write not completed yet */
	uv_write_cb wcb;
	const char *wbase; /* its bytes (the listener keeps them until then) */
	size_t wlen;
	struct buf out;  /* every byte written */
	size_t msg_off[LF_MAX_MSGS], msg_len[LF_MAX_MSGS];
	size_t nmsg;
	unsigned nwrites;
	unsigned fail_at;   /* 1-based write that fails; 0 never */
	bool failed;
	size_t take;        /* bytes a try_write takes at most; 0 all */
	/* handlers */
	struct listener_req *pending;
	unsigned policy;
	unsigned dispatched;
	unsigned handler_answers; /* answered by a handler (with X-Req) */
	bool close_done;
	const struct listener_route *routes;
	size_t nroutes;
} F;

/* ----------------------------------------------------------- fake io */

static void lf_msg_begin(size_t full)
{
	if (F.nmsg == LF_MAX_MSGS)
		abort(); /* more answers than the input could ask for */
	F.msg_off[F.nmsg] = F.out.len;
	F.msg_len[F.nmsg] = full;
	F.nmsg++;
}

static int lf_try_write(uv_stream_t *s, const uv_buf_t bufs[], unsigned n)
{
	size_t len = 0, take;
	unsigned i;

	if (s != F.s || F.closed || F.wreq)
		abort(); /* a write to a closed stream, or past a queued one */
	for (i = 0; i < n; i++)
		len += bufs[i].len;
	if (F.failed)
		return UV_EPIPE; /* a broken stream stays broken */
	if (++F.nwrites == F.fail_at) {
		F.failed = true;
		return UV_EPIPE;
	}
	if (n != 1)
		abort();
	lf_msg_begin(len);
	take = F.take && F.take < len ? F.take : len;
	if (buf_add(&F.out, bufs[0].base, take) < 0)
		abort();
	return take ? (int)take : UV_EAGAIN;
}

static int lf_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[], unsigned n,
		    uv_write_cb cb)
{
	if (s != F.s || F.closed || F.wreq || n != 1)
		abort();
	if (F.failed)
		return UV_EPIPE;
	req->handle = s;
	F.wreq = req;
	F.wcb = cb;
	F.wbase = bufs[0].base;
	F.wlen = bufs[0].len;
	/* the bytes are taken when the write completes (lf_complete) */
	return 0;
}

static void lf_complete(void)
{
	uv_write_t *req = F.wreq;
	uv_write_cb cb = F.wcb;

	F.wreq = NULL;
	if (++F.nwrites == F.fail_at) {
		F.failed = true;
		cb(req, UV_EPIPE);
		return;
	}
	if (buf_add(&F.out, F.wbase, F.wlen) < 0)
		abort();
	cb(req, 0);
}

static int lf_shutdown(uv_shutdown_t *req, uv_stream_t *s, uv_shutdown_cb cb)
{
	if (s != F.s || F.closed || F.shut)
		abort();
	F.shut = true;
	return 0; /* never completes: its callback does nothing on success */
}

static int lf_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
	if (!F.s && !F.closed)
		F.s = s; /* the connection being adopted */
	if (s != F.s || F.closed || F.reading)
		abort();
	F.alloc_cb = alloc_cb;
	F.read_cb = read_cb;
	F.reading = true;
	return 0;
}

static int lf_read_stop(uv_stream_t *s)
{
	if (s != F.s || F.closed)
		abort();
	F.reading = false;
	return 0;
}

static void lf_close(uv_handle_t *h, uv_close_cb cb)
{
	if ((uv_stream_t *)h != F.s || F.closed)
		abort();
	F.closed = true;
	F.reading = false;
	F.wreq = NULL; /* a queued write is dropped: its callback never runs */
	uv_close(h, cb);
}

static const struct listener_io lf_io = {
	.try_write = lf_try_write,
	.write = lf_write,
	.shutdown = lf_shutdown,
	.read_start = lf_read_start,
	.read_stop = lf_read_stop,
	.close = lf_close,
};

/* Hands the client's bytes to the listener as one read, as libuv would. */
static void lf_feed(const char *p, size_t n)
{
	uv_buf_t b;

	F.alloc_cb((uv_handle_t *)F.s, n, &b);
	if (n > b.len)
		n = b.len;
	memcpy(b.base, p, n);
	F.read_cb(F.s, (ssize_t)n, &b);
}

static void lf_eof(void)
{
	uv_buf_t b = uv_buf_init(NULL, 0);

	F.read_cb(F.s, UV_EOF, &b);
}

/* ------------------------------------------------------------ handlers */

/* Reads every accessor, so a request's memory is touched the way the
 * daemon's handlers touch it, and answers. */
static void lf_answer(struct listener_req *req)
{
	char hdr[128];
	struct buf b;
	size_t blen, klen = 0, qlen = 0;
	const char *body = listener_req_body(req, &blen);
	const char *key = listener_req_param(req, "api_key", &klen);
	const char *offer = listener_req_param(req, "offer", NULL);
	const char *click = listener_query_get(req, "click_id", &qlen);
	const struct listener_form *form = NULL;
	const char *loc = NULL;
	int status = 200, rc = 0;

	if (listener_req_method(req) == LISTENER_POST)
		form = listener_req_body_form(req);
	buf_init(&b, 0);
	rc |= buf_addf(&b, "%s %s?%s from %s gone=%d bearer=%d\n", listener_req_method_name(req),
		       listener_req_path(req), listener_req_query(req), listener_req_remote(req),
		       listener_req_client_gone(req), listener_req_bearer_is(req, "tok"));
	rc |= listener_req_target(req, &b);
	if (key)
		rc |= buf_add_json_str(&b, key, klen);
	if (click)
		rc |= buf_add_json_str(&b, click, qlen);
	if (listener_req_header(req, "content-type"))
		rc |= buf_adds(&b, listener_req_header(req, "content-type"));
	rc |= buf_add(&b, body, blen);
	if (form && form->n)
		rc |= buf_add_json_str(&b, form->kv[form->n - 1].value, form->kv[form->n - 1].value_len);
	if (rc)
		abort();
	F.handler_answers++;
	if (offer) {
		/* a Location from the request: a stray CR or LF in it is refused
		 * (500); a whole "\r\nName: v" would be a header of its own,
		 * which only the caller can prevent (click.c's Location comes
		 * from expanded macros), so then the raw path goes instead */
		status = 302;
		loc = strstr(offer, "\r\n") ? listener_req_path(req) : offer;
	}
	if (loc) {
		struct buf h;

		buf_init(&h, 0);
		if (buf_addf(&h, "X-Req: %u\r\nLocation: /o/%s\r\n", F.dispatched, loc) < 0)
			abort();
		listener_respond(req, status, "text/plain", b.p, b.len, h.p);
		buf_release(&h);
	} else {
		snprintf(hdr, sizeof(hdr), "X-Req: %u\r\n", F.dispatched);
		listener_respond(req, status, "text/plain", b.p, b.len, hdr);
	}
	buf_release(&b);
}

static void lf_now(struct listener_req *req, void *data)
{
	if (F.pending)
		abort(); /* a second request dispatched before the first was answered */
	F.dispatched++;
	lf_answer(req);
}

/* Postback-like: answers now or later, after other steps (a commit). */
static void lf_postback(struct listener_req *req, void *data)
{
	bool later;

	if (F.pending)
		abort();
	F.dispatched++;
	switch (F.policy) {
	case 0: later = false; break;
	case 1: later = true; break;
	case 2: later = F.dispatched & 1; break;
	default: later = listener_req_method(req) == LISTENER_POST; break;
	}
	if (later)
		F.pending = req;
	else
		lf_answer(req);
}

static void lf_metrics(struct listener_req *req, void *data)
{
	struct listener_stats st;
	char hdr[64], body[512];
	int n;

	if (F.pending)
		abort();
	F.dispatched++;
	F.handler_answers++;
	listener_stats(listener_req_listener(req), &st);
	if (st.req_pending != 1 || st.conn_active > 1)
		abort();
	n = snprintf(body, sizeof(body), "requests %" PRIu64 "\nbytes_in %" PRIu64 "\n",
		     st.requests, st.bytes_in);
	snprintf(hdr, sizeof(hdr), "X-Req: %u\r\n", F.dispatched);
	listener_respond(req, 200, "text/plain; version=0.0.4", body, (size_t)n, hdr);
}

static const struct listener_route lf_routes[] = {
	{ LISTENER_GET, "/healthz", lf_now, NULL },
	{ LISTENER_POST, "/api/leads", lf_now, NULL },
	{ LISTENER_GET, "/click/{offer}", lf_now, NULL },
	{ LISTENER_GET | LISTENER_POST, "/{api_key}/s2s", lf_postback, NULL },
	{ LISTENER_POST, "/{api_key}", lf_postback, NULL },
	{ LISTENER_GET, "/readyz", lf_now, NULL },
	{ LISTENER_GET, "/metrics", lf_metrics, NULL },
};

static volatile unsigned lf_sink;

static void lf_refused(const struct listener_refusal *r, void *data)
{
	static const int ok[] = { 400, 405, 408, 413, 414, 417, 431, 500, 501, 503, 505 };
	size_t i;
	bool known = false;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		known |= r->status == ok[i];
	if (!known || !r->method || !r->remote || !r->error || !r->target)
		abort();
	if (r->route && (r->route < lf_routes || r->route >= lf_routes + F.nroutes))
		abort();
	/* the whole target is readable (ASan) */
	for (i = 0; i < r->target_len; i++)
		lf_sink += (unsigned char)r->target[i];
}

static void lf_closed(struct listener *l, void *data)
{
	struct listener_stats st;

	listener_stats(l, &st);
	if (st.conn_active || st.req_pending || st.buffer_bytes)
		abort();
	F.close_done = true;
}

/* ------------------------------------------------------------- checks */

/* Request beginnings a plain parser sees in the input, up to its first
 * error: the answers can be no more than these, plus one refusal. */
static unsigned lf_begun;
static int lf_on_begin(http_parser *p)
{
	lf_begun++;
	return 0;
}

static unsigned lf_requests_begun(const char *p, size_t n)
{
	static const http_parser_settings s = { .on_message_begin = lf_on_begin };
	http_parser hp;

	http_parser_init(&hp, HTTP_REQUEST);
	lf_begun = 0;
	http_parser_execute(&hp, &s, p, n);
	return lf_begun;
}

static bool lf_tchar(char ch)
{
	return isalnum((unsigned char)ch) || strchr("!#$%&'*+-.^_`|~", ch);
}

/* Checks message m (complete) and returns true when it is a final answer;
 * *close when it carries Connection: close, *xreq its X-Req (0: none). */
static bool lf_check_msg(const char *p, size_t n, bool *close, unsigned *xreq)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	const char *end = p + n, *eol, *q;
	long long clen = -1;
	size_t body;

	*close = false;
	*xreq = 0;
	if (n == sizeof(cont) - 1 && memcmp(p, cont, n) == 0)
		return false;
	if (n < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[9] < '2' || p[9] > '5' ||
	    !isdigit((unsigned char)p[10]) || !isdigit((unsigned char)p[11]) || p[12] != ' ')
		abort();
	eol = memmem(p, n, "\r\n", 2);
	if (!eol)
		abort();
	for (q = p + 13; q < eol; q++)
		if (*q < 0x20 || *q == 0x7f)
			abort();
	for (p = eol + 2;; p = eol + 2) {
		const char *colon;

		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			abort(); /* headers not ended */
		if (eol == p)
			break;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			abort();
		for (q = p; q < colon; q++)
			if (!lf_tchar(*q))
				abort();
		for (q = colon + 1; q < eol; q++)
			if (*q == '\r' || *q == '\n' || *q == '\0')
				abort();
		if (colon - p == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			if (clen >= 0 || colon[1] != ' ')
				abort();
			clen = 0;
			for (q = colon + 2; q < eol; q++) {
				if (!isdigit((unsigned char)*q) || clen > 1000000000)
					abort();
				clen = clen * 10 + (*q - '0');
			}
		}
		if ((size_t)(eol - p) == 17 && strncasecmp(p, "Connection: close", 17) == 0)
			*close = true;
		if (colon - p == 5 && strncasecmp(p, "X-Req", 5) == 0)
			*xreq = (unsigned)strtoul(colon + 1, NULL, 10);
	}
	body = (size_t)(end - (eol + 2));
	if (clen < 0 || (body != (size_t)clen && body != 0))
		abort();
	return true;
}

static void lf_check_output(const char *in, size_t inlen, const struct listener_stats *st)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	unsigned finals = 0, last_xreq = 0;
	bool closed_seen = false;
	size_t m;

	for (m = 0; m < F.nmsg; m++) {
		size_t off = F.msg_off[m];
		size_t have = (m + 1 < F.nmsg ? F.msg_off[m + 1] : F.out.len) - off;
		bool close;
		unsigned xreq;

		if (closed_seen)
			abort(); /* an answer after Connection: close */
		if (have != F.msg_len[m]) {
			/* cut short, and then last: by a failed write, or a 100
			 * Continue the stream took in part (the connection is
			 * then closed: half a status line garbles it) */
			if (m + 1 != F.nmsg || have > F.msg_len[m] ||
			    (!F.failed && memcmp(F.out.p + off, cont, have) != 0))
				abort();
			break;
		}
		if (!lf_check_msg(F.out.p + off, have, &close, &xreq))
			continue;
		finals++;
		closed_seen = close;
		/* X-Req: a handler's answer (a 500 for a malformed or too large
		 * answer has none) */
		if (xreq && (xreq <= last_xreq || xreq > F.dispatched))
			abort(); /* a handler's answer twice or out of order */
		if (xreq)
			last_xreq = xreq;
	}
	if (F.handler_answers != F.dispatched)
		abort(); /* a dispatched request left without its answer */
	if (!F.failed && finals != st->requests)
		abort(); /* counted answers that were not written, or the reverse */
	if (finals > lf_requests_begun(in, inlen) + 1)
		abort();
}

/* ---------------------------------------------------------------- run */

static uv_loop_t lf_loop;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_level = -1; /* refusals are logged at debug, errors on stderr: quiet */
	if (uv_loop_init(&lf_loop) < 0)
		abort();
	return 0;
}

enum lf_step { STEP_ANSWER, STEP_WRITE, STEP_READ, STEP_EOF };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct listener_config cfg = { 0 };
	struct listener *l = NULL;
	struct listener_stats st;
	char err[256];
	unsigned mode, ctl[3], step, idle = 0;
	const char *in;
	size_t inlen, pos = 0;
	bool eof_sent = false;

	if (size < 4)
		return 0;
	mode = data[0];
	ctl[0] = data[1];
	ctl[1] = data[2];
	ctl[2] = data[3];
	in = (const char *)data + 4;
	inlen = size - 4;

	memset(&F, 0, sizeof(F));
	buf_init(&F.out, 0);
	F.policy = mode & 3;
	F.take = mode & 4 ? 1 + (ctl[2] & 63) : 0;
	F.fail_at = mode & 8 ? 1 + (ctl[2] >> 4) : 0;
	F.routes = lf_routes;
	F.nroutes = sizeof(lf_routes) / sizeof(lf_routes[0]);

	cfg.routes = lf_routes;
	cfg.nroutes = F.nroutes;
	cfg.refused = lf_refused;
	/* no deadline may pass during a run: the loop's clock is real */
	cfg.limits.header_timeout_ms = cfg.limits.body_timeout_ms = 3600000;
	cfg.limits.idle_timeout_ms = cfg.limits.idle_pressure_ms = 3600000;
	cfg.limits.write_timeout_ms = cfg.limits.linger_ms = 3600000;
	if (mode & 16) {
		cfg.limits.max_url_bytes = 64;
		cfg.limits.max_header_bytes = 256;
		cfg.limits.max_headers = 4;
		cfg.limits.max_body_bytes = 128;
		cfg.limits.max_response_bytes = 512;
		cfg.limits.max_requests = 3;
	}
	if (listener__open(&lf_loop, &cfg, &lf_io, &l, err, sizeof(err)) < 0)
		abort();
	F.s = listener__adopt(l, "192.0.2.7");
	if (!F.s)
		abort();

	/* Each step does one of the things that can happen now, the input
	 * choosing which. The loop has nothing to do meanwhile (no deadline
	 * passes; a write completes when a step says so) but close
	 * callbacks. */
	for (step = 0; !F.closed; step++) {
		enum lf_step can[4];
		unsigned ncan = 0, c = ctl[step % 3];

		if (F.pending)
			can[ncan++] = STEP_ANSWER;
		if (F.wreq)
			can[ncan++] = STEP_WRITE;
		if (F.reading && pos < inlen)
			can[ncan++] = STEP_READ;
		if (F.reading && pos == inlen && !eof_sent)
			can[ncan++] = STEP_EOF;
		if (!ncan) {
			/* nothing left to happen: the connection must have closed */
			if (++idle > 2)
				abort();
			uv_run(&lf_loop, UV_RUN_NOWAIT);
			continue;
		}
		idle = 0;
		switch (can[c % ncan]) {
		case STEP_ANSWER: {
			struct listener_req *req = F.pending;

			F.pending = NULL;
			lf_answer(req);
			break;
		}
		case STEP_WRITE:
			lf_complete();
			break;
		case STEP_READ: {
			size_t n = 1 + ctl[(step + 1) % 3];

			if (mode & 32)
				n *= 64;
			if (n > inlen - pos)
				n = inlen - pos;
			lf_feed(in + pos, n);
			pos += n;
			break;
		}
		case STEP_EOF:
			eof_sent = true;
			lf_eof();
			break;
		}
	}
	if (F.pending)
		abort(); /* closed with a request not answered */
	uv_run(&lf_loop, UV_RUN_NOWAIT); /* the connection's close callbacks */
	listener_stats(l, &st);
	if (st.conn_active || st.req_pending || st.buffer_bytes || st.connections != 1)
		abort(); /* the closed connection still holds something */
	if (getenv("LF_DUMP")) /* to read what a corpus input is answered */
		fprintf(stderr, "--- %zu answers, %u dispatched\n%.*s\n", F.nmsg, F.dispatched,
			(int)F.out.len, F.out.p ? F.out.p : "");
	lf_check_output(in, inlen, &st);

	listener_close(l, lf_closed, NULL);
	for (step = 0; !F.close_done && step < 8; step++)
		uv_run(&lf_loop, UV_RUN_NOWAIT);
	if (!F.close_done || uv_loop_alive(&lf_loop))
		abort(); /* the listener did not finish closing */
	buf_release(&F.out);
	return 0;
}
