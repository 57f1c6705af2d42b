/* postback: S2S postbacks: parsed on the loop, applied in groups on the
 * database workers (one query to resolve, lead_apply in C, one statement to
 * write, one commit), answered one by one; and the incoming-postback log
 * (see postback.h). */
#include "postback.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "buf.h"
#include "click.h"
#include "lead.h"
#include "lead_store.h"
#include "list.h"
#include "log.h"
#include "mask.h"
#include "pbauth.h"
#include "postback_sql.h"
#include "status.h"
#include "store.h"

#define PB_KEY_MAX 255
#define PB_MONEY_MAX INT64_C(99999999999999) /* cents: numeric(14,2) */
#define PB_TRIES 3          /* attempts of a group that lost a unique-key race */
#define PB_BACKLOG_MS 1000  /* how often the backlog is retried */
#define PB_QUOTE_MAX 64     /* bytes of a client's value quoted in a message */
#define PB_LOG_TRIES 5      /* writes of a log row that fails for its own reason */
#define PB_CLOSE_RETRY_MS 50 /* at close, the wait before a turn the full queue refused */
#define PB_AUTH_LOG_MS 1000 /* at most one line per this long for refused authentication */
#define PB_DOUBT_HOLD_MS 15000 /* how long an answer waits to learn whether its commit landed */

_Atomic int postback_test_lose_commit;

/* The test hook (postback.h): true, with c's backend terminated, when a
 * loss was asked for; it takes one off. */
static bool pb__test_lose(PGconn *c)
{
	if (atomic_load(&postback_test_lose_commit) <= 0)
		return false;
	atomic_fetch_sub(&postback_test_lose_commit, 1);
	PQclear(PQexec(c, "SELECT pg_terminate_backend(pg_backend_pid())"));
	return true;
}

enum pb_param { PB_CLICK, PB_REQUEST, PB_ACTION, PB_STATUS, PB_PRICE, PB_CUSTOMER, PB_NPARAMS };
_Static_assert(PB_NPARAMS == POSTBACK_NPARAMS, "postback.h names the same parameters");

static const struct {
	const char *name;
	size_t max;
} pb_params[PB_NPARAMS] = {
	[PB_CLICK] = { "click_id", 64 },   [PB_REQUEST] = { "request_id", 255 },
	[PB_ACTION] = { "action", 64 },    [PB_STATUS] = { "status", STATUS_WORD_MAX },
	[PB_PRICE] = { "price", 32 },      [PB_CUSTOMER] = { "customer_id", 255 },
};

enum pb_cust { PB_CUST_NONE = 0, PB_CUST_ACTIVATE, PB_CUST_DEACTIVATE };

/* One request: copied out of the listener's request on arrival, so the
 * worker never touches the listener, and kept as a log row when the
 * database is away. */
struct pb_item {
	struct db_job job;
	struct postback *p;
	struct listener_req *req; /* NULL once answered, and for backlog rows */
	struct list link;         /* in the backlog */
	int64_t at_us;
	char remote[64];
	char method[16];
	const char *path; /* masked; static text */
	char *query;      /* for the log: sanitised and cut; NULL when none */
	char *body;
	char *key;        /* the api key as sent; NULL when no key can match */
	size_t key_len;
	char ip[PBAUTH_ADDR_MAX]; /* the peer as the networks are matched; "" none */
	struct pbauth_sig *sig; /* the signature header; NULL when none or unparsable */
	char *sig_msg;    /* its canonical string (pbauth.h); freed once answered */
	size_t sig_len;
	char *v[PB_NPARAMS]; /* parameters; NULL when absent */
	int64_t price;       /* cents, when v[PB_PRICE] */
	enum pb_cust cust;
	int pre_status;      /* 0, or the answer the request itself earns */
	char pre_err[256];
	bool log_only;       /* the results are final: only the log row is written */
	/* The commit of this item's group was in doubt (the connection broke
	 * during COMMIT): the id its log row has if that commit landed, else
	 * 0. The next attempt first looks the row up (pb__group). */
	int64_t doubt_id;
	uint64_t doubt_since; /* uv_now() when it was first held for that */
	unsigned log_tries;  /* failed writes of the log row alone */
	/* results */
	int http;
	const char *outcome;
	char err[256];
	int64_t advertiser;
	int64_t lead;
	bool duplicate;
	bool active;
};

struct postback {
	uv_loop_t *loop;
	struct db *db;
	struct postback_config cfg;
	uv_timer_t timer;
	struct list backlog; /* pb_item.link: log rows the database did not take yet */
	struct list doubt;   /* pb_item.link: answers held until their commit is known */
	size_t nbacklog;
	size_t backlog_bytes;
	size_t inflight; /* items submitted and not completed */
	bool closing;
	/* at close: the backlog goes in turns, each sent when the last is done */
	uint64_t close_deadline; /* uv_now() past which what is left is dropped */
	size_t close_turns;      /* turns sent */
	size_t close_written;    /* rows of the last turn written */
	void (*close_cb)(void *data);
	void *close_data;
	struct postback_stats st;
	struct postback_count counts[POSTBACK_COUNTS_MAX]; /* by (outcome, code) */
	size_t ncounts;
	uint64_t auth_log_next;   /* uv_now() from which a refusal is logged */
	uint64_t auth_unlogged;   /* refusals since the last line */
};

/* --------------------------------------------------------------- text */

/* s as a short, printable quotation for a message. */
static const char *pb__quote(char *out, size_t outlen, const char *s)
{
	struct buf b;
	size_t n = strlen(s);

	buf_init(&b, 4 * PB_QUOTE_MAX + 8);
	if (buf_add_text(&b, s, n > PB_QUOTE_MAX ? PB_QUOTE_MAX : n) < 0) {
		snprintf(out, outlen, "?");
	} else {
		buf_cut_utf8(&b, PB_QUOTE_MAX);
		snprintf(out, outlen, "%s%s", b.p ? b.p : "", n > PB_QUOTE_MAX ? "..." : "");
	}
	buf_release(&b);
	return out;
}

/* A client's bytes for the log: valid UTF-8 text, at most max bytes. */
static char *pb__logtext(const char *s, size_t n, size_t max)
{
	struct buf b;
	char *out = NULL;

	if (!n)
		return NULL;
	buf_init(&b, 4 * max + 16);
	if (buf_add_text(&b, s, n > max ? max : n) == 0) {
		buf_cut_utf8(&b, max);
		if (n > max && buf_adds(&b, "...") < 0)
			buf_cut_utf8(&b, b.len);
		out = buf_steal(&b);
	}
	buf_release(&b);
	return out;
}

/* A query or body for the log, masked by the rules every printer uses
 * (mask.h): the advertiser's key wherever it appears (key may be NULL),
 * credential-looking parameters (sign, token, ...) of a query or a form
 * body; then cut to max. The path keeps its shape with the key starred
 * where the item is made. NULL when empty or out of memory. */
static char *pb__logmask(const char *key, const char *s, size_t n, enum mask_kind kind, size_t max)
{
	struct mask m;
	struct buf b;
	char *out = NULL;

	if (!n)
		return NULL;
	mask_init(&m);
	buf_init(&b, 0);
	if ((!key || mask_add(&m, key) == 0) && mask_text(&m, s, n, kind, &b) == 0)
		out = pb__logtext(b.p ? b.p : "", b.len, max);
	buf_release(&b);
	mask_release(&m);
	return out;
}

/* The status word compared as status_postback() would: trimmed, any case. */
static enum pb_cust pb__cust_word(const char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 8 && strncasecmp(s, "activate", 8) == 0)
		return PB_CUST_ACTIVATE;
	if (n == 10 && strncasecmp(s, "deactivate", 10) == 0)
		return PB_CUST_DEACTIVATE;
	return PB_CUST_NONE;
}

/* ------------------------------------------------------ request parsing */

__attribute__((format(printf, 3, 4)))
static void pb__pre(struct postback_params *pp, int status, const char *fmt, ...)
{
	va_list ap;

	if (pp->status)
		return; /* the first problem is the one answered */
	pp->status = status;
	va_start(ap, fmt);
	vsnprintf(pp->err, sizeof(pp->err), fmt, ap);
	va_end(ap);
}

/* Takes one parameter's value. An empty value counts as absent. */
static void pb__set(struct postback_params *pp, int k, const char *s, size_t n)
{
	if (pp->v[k] || !s || !n)
		return;
	if (!buf_utf8_ok(s, n)) {
		pb__pre(pp, 400, "'%s' is not valid UTF-8 text or holds a NUL byte", pb_params[k].name);
		return;
	}
	if (n > pb_params[k].max) {
		pb__pre(pp, 400, "'%s' is longer than %zu bytes", pb_params[k].name, pb_params[k].max);
		return;
	}
	pp->v[k] = strndup(s, n);
	if (!pp->v[k])
		pb__pre(pp, 500, "out of memory");
}

static void pb__from_form(struct postback_params *pp, const struct listener_form *f)
{
	int k;

	for (k = 0; k < PB_NPARAMS; k++) {
		size_t n = 0;
		const char *s = listener_form_get(f, pb_params[k].name, &n);

		pb__set(pp, k, s, n);
	}
}

static bool pb__json_body(const char *ctype, const char *body, size_t len)
{
	size_t i;

	if (ctype && (strncasecmp(ctype, "application/json", 16) == 0 || strstr(ctype, "+json")))
		return true;
	if (ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0)
		return false;
	for (i = 0; i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' ||
				body[i] == '\n'); i++)
		;
	return i < len && (body[i] == '{' || body[i] == '[');
}

/* cJSON cuts a string at an escaped NUL; such a body is refused. */
static bool pb__json_has_nul(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 6 <= n; i++)
		if (s[i] == '\\' && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' &&
		    s[i + 4] == '0' && s[i + 5] == '0')
			return true;
	return false;
}

static void pb__from_json(struct postback_params *pp, const char *body, size_t len)
{
	const char *end = NULL;
	cJSON *root;
	int k;

	root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
	if (!root) {
		size_t at = end && end >= body ? (size_t)(end - body) : 0;
		const unsigned char *u = (const unsigned char *)body + at;

		if (at + 3 <= len && u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0x9c || u[2] == 0x9d))
			pb__pre(pp, 400, "malformed JSON at byte %zu: a typographic quote where '\"' belongs",
				at + 1);
		else
			pb__pre(pp, 400, "malformed JSON at byte %zu", at + 1);
		return;
	}
	for (; end && end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' ||
					   *end == '\n'); end++)
		;
	if (end && end < body + len) {
		pb__pre(pp, 400, "malformed JSON: text after the object at byte %zu",
			(size_t)(end - body) + 1);
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		pb__pre(pp, 400, "the body must be one JSON object");
		goto out;
	}
	if (pb__json_has_nul(body, len)) {
		pb__pre(pp, 400, "a JSON string holds a NUL character");
		goto out;
	}
	for (k = 0; k < PB_NPARAMS; k++) {
		const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, pb_params[k].name);
		char tmp[64];
		double d;

		if (!x || cJSON_IsNull(x))
			continue;
		if (cJSON_IsString(x)) {
			pb__set(pp, k, x->valuestring, strlen(x->valuestring));
			continue;
		}
		if (!cJSON_IsNumber(x)) {
			pb__pre(pp, 400, "'%s' must be a string or a number", pb_params[k].name);
			continue;
		}
		d = x->valuedouble;
		if (d == floor(d) && fabs(d) < 9007199254740992.0)
			snprintf(tmp, sizeof(tmp), "%.0f", d);
		else
			snprintf(tmp, sizeof(tmp), "%.15g", d);
		pb__set(pp, k, tmp, strlen(tmp));
	}
out:
	cJSON_Delete(root);
}

void postback_params_parse(struct postback_params *pp, bool post, const char *content_type,
			   const char *body, size_t blen,
			   const struct listener_form *(*body_form)(void *ud), void *ud,
			   const struct listener_form *query)
{
	static const int need_lead[] = { PB_CLICK, PB_REQUEST, PB_ACTION, PB_STATUS };
	static const int need_cust[] = { PB_CLICK, PB_CUSTOMER, PB_STATUS };
	const int *need;
	size_t nneed, i;
	char missing[160] = "", q[4 * PB_QUOTE_MAX + 8];
	char uuid[37];

	memset(pp, 0, sizeof(*pp));
	if (post && blen) {
		if (pb__json_body(content_type, body, blen)) {
			pb__from_json(pp, body, blen);
		} else {
			const struct listener_form *f = body_form(ud);

			if (!f)
				pb__pre(pp, 500, "out of memory");
			else
				pb__from_form(pp, f);
		}
	}
	pb__from_form(pp, query);
	if (pp->status)
		return;
	pp->cust = pp->v[PB_STATUS] ? pb__cust_word(pp->v[PB_STATUS]) : PB_CUST_NONE;
	need = pp->cust ? need_cust : need_lead;
	nneed = pp->cust ? 3 : 4;
	for (i = 0; i < nneed; i++)
		if (!pp->v[need[i]]) {
			size_t m = strlen(missing);

			snprintf(missing + m, sizeof(missing) - m, "%s'%s'", m ? ", " : "",
				 pb_params[need[i]].name);
		}
	if (*missing) {
		pb__pre(pp, 400, "missing %s", missing);
		return;
	}
	if (!click_uuid_parse(pp->v[PB_CLICK], uuid)) {
		pb__pre(pp, 400, "'click_id' must be a UUID like c7e2206f-03af-49fa-9046-dd6aeaa44e9b, "
			"not '%s'", pb__quote(q, sizeof(q), pp->v[PB_CLICK]));
		return;
	}
	memcpy(pp->v[PB_CLICK], uuid, 37);
	if (pp->v[PB_PRICE] && (lead_money_parse(pp->v[PB_PRICE], &pp->price) < 0 ||
				pp->price < 0 || pp->price > PB_MONEY_MAX))
		pb__pre(pp, 400, "'price' must be an amount like 30 or 30.50, not '%s'",
			pb__quote(q, sizeof(q), pp->v[PB_PRICE]));
}

void postback_params_release(struct postback_params *pp)
{
	int k;

	for (k = 0; k < PB_NPARAMS; k++) {
		free(pp->v[k]);
		pp->v[k] = NULL;
	}
}

static const struct listener_form *pb__body_form(void *req)
{
	return listener_req_body_form(req);
}

/* Reads the parameters and checks what can be checked without the
 * database; the first problem becomes pre_status/pre_err. */
static void pb__parse(struct pb_item *it, struct listener_req *req)
{
	struct postback_params pp;
	size_t blen = 0;
	const char *body = listener_req_body(req, &blen);
	int k;

	postback_params_parse(&pp, listener_req_method(req) == LISTENER_POST,
			      listener_req_header(req, "content-type"), body, blen, pb__body_form, req,
			      listener_req_query_form(req));
	for (k = 0; k < PB_NPARAMS; k++)
		it->v[k] = pp.v[k];
	it->price = pp.price;
	it->cust = pp.cust;
	it->pre_status = pp.status;
	memcpy(it->pre_err, pp.err, sizeof(it->pre_err));
}

static void pb__item_free(struct pb_item *it)
{
	int k;

	if (!it)
		return;
	for (k = 0; k < PB_NPARAMS; k++)
		free(it->v[k]);
	free(it->query);
	free(it->body);
	free(it->key);
	free(it->sig);
	free(it->sig_msg);
	free(it);
}

/* The signature header, when there is one that parses, and the canonical
 * string it signs: kept for the worker, which knows the secret. Nothing is
 * copied for a request without the header. Returns 0 or -1 (memory). */
static int pb__sig_new(struct pb_item *it, struct listener_req *req, const char *body,
		       size_t blen)
{
	const char *h = listener_req_header(req, PBAUTH_HEADER);
	struct pbauth_sig sig;
	struct buf b;

	if (!h || pbauth_sig_parse(h, &sig) < 0)
		return 0;
	it->sig = malloc(sizeof(*it->sig));
	if (!it->sig)
		return -1;
	*it->sig = sig;
	buf_init(&b, 0);
	if (pbauth_canonical(&b, sig.t, it->method, listener_req_path(req), listener_req_query(req),
			     body, blen) < 0) {
		buf_release(&b);
		return -1;
	}
	it->sig_len = b.len;
	it->sig_msg = buf_steal(&b);
	buf_release(&b);
	return it->sig_msg ? 0 : -1;
}

static struct pb_item *pb__item_new(struct postback *p, struct listener_req *req)
{
	struct pb_item *it = calloc(1, sizeof(*it));
	const char *path = listener_req_path(req), *q = listener_req_query(req), *key, *body;
	size_t plen = strlen(path), klen = 0, blen = 0;
	struct timeval tv;

	if (!it)
		return NULL;
	it->p = p;
	it->req = req;
	gettimeofday(&tv, NULL);
	it->at_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	snprintf(it->remote, sizeof(it->remote), "%s", listener_req_remote(req));
	snprintf(it->method, sizeof(it->method), "%s", listener_req_method_name(req));
	it->path = plen >= 4 && strcmp(path + plen - 4, "/s2s") == 0 ? "/***/s2s" : "/***";
	body = listener_req_body(req, &blen);
	/* a key no advertiser can have is simply unknown (403) */
	key = listener_req_param(req, "api_key", &klen);
	if (key && klen && klen <= PB_KEY_MAX && buf_utf8_ok(key, klen)) {
		it->key = strndup(key, klen);
		it->key_len = klen;
		if (!it->key)
			goto oom;
	}
	it->query = pb__logmask(it->key, q, strlen(q), MASK_FORM, POSTBACK_LOG_QUERY_MAX);
	it->body = pb__logmask(it->key, body, blen,
			       blen && (body[0] == '{' || body[0] == '[') ? MASK_TEXT : MASK_FORM,
			       POSTBACK_LOG_BODY_MAX);
	if ((q[0] && !it->query) || (blen && !it->body))
		goto oom;
	if (pbauth_addr(it->remote, it->ip, sizeof(it->ip)) < 0)
		it->ip[0] = '\0';
	if (pb__sig_new(it, req, body, blen) < 0)
		goto oom;
	return it;
oom:
	pb__item_free(it);
	return NULL;
}

/* ------------------------------------------------------ worker: resolve */

/* A lead the group touches, as it stands after the postbacks so far. */
struct pb_lslot {
	int64_t offer;
	const char *rid;
	struct lead cur;
	char click[37]; /* "" when none */
	const char *customer;
	bool is_new;
	bool dirty;
};

/* A customer the group touches. state: -1 unknown, 0 inactive, 1 active. */
struct pb_cslot {
	int64_t offer;
	const char *cust;
	const char *click;
	int state;
	bool dirty;
};

struct pb_words {
	int64_t offer;
	struct status_words *w;
};

/* One attempt at a group. */
struct pb_txn {
	PGconn *c;
	struct pb_item **items;
	size_t n;
	PGresult *res;
	struct pb_lslot *ls;
	size_t nls;
	struct pb_cslot *cs;
	size_t ncs;
	struct pb_words *ow;
	size_t now_;
	int64_t now;
	struct buf hist, newl, updl, cust, log;
	struct buf lg; /* struct log_lead: logged after the commit */
	char err[512];
};

static bool pb__null(const struct pb_txn *t, int row, int col)
{
	return PQgetisnull(t->res, row, col);
}

static const char *pb__s(const struct pb_txn *t, int row, int col)
{
	return PQgetvalue(t->res, row, col);
}

static int64_t pb__i(const struct pb_txn *t, int row, int col)
{
	return PQgetisnull(t->res, row, col) ? 0 : strtoll(PQgetvalue(t->res, row, col), NULL, 10);
}

static int64_t pb__money(const struct pb_txn *t, int row, int col)
{
	int64_t v = 0;

	if (!PQgetisnull(t->res, row, col) && lead_money_parse(PQgetvalue(t->res, row, col), &v) < 0)
		v = 0;
	return v;
}

static bool pb__b(const struct pb_txn *t, int row, int col)
{
	return !PQgetisnull(t->res, row, col) && PQgetvalue(t->res, row, col)[0] == 't';
}

/* The offer's status words (status_words_from_json, the parser the poller
 * uses too), parsed once per group; NULL for none. Words that do not parse
 * (import refuses them, so only a hand-edited row) are logged and the
 * built-in words apply, as the postback cannot wait for a fix. */
static struct status_words *pb__words(struct pb_txn *t, int64_t offer, const char *json)
{
	struct status_words *w = NULL;
	char err[256], q[300];
	size_t i;

	for (i = 0; i < t->now_; i++)
		if (t->ow[i].offer == offer)
			return t->ow[i].w;
	if (strcmp(json, "{}") != 0 && status_words_from_json(json, &w, err, sizeof(err)) < 0)
		log_warn("offer status words ignored", "offer=%" PRId64 " err=%s", offer,
			 log_quote(q, sizeof(q), err));
	t->ow[t->now_].offer = offer;
	t->ow[t->now_].w = w;
	t->now_++;
	return w;
}

/* ------------------------------------------------------ worker: results */

__attribute__((format(printf, 4, 5)))
static void pb__result(struct pb_item *it, int http, const char *outcome, const char *fmt, ...)
{
	va_list ap;

	it->http = http;
	it->outcome = outcome;
	it->err[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(it->err, sizeof(it->err), fmt, ap);
		va_end(ap);
	}
}

static int pb__json_int_or_null(struct buf *b, const char *name, int64_t v)
{
	return v ? buf_addf(b, ",\"%s\":%" PRId64, name, v) : buf_addf(b, ",\"%s\":null", name);
}

static int pb__json_str_or_null(struct buf *b, const char *name, const char *s)
{
	if (!s || !*s)
		return buf_addf(b, ",\"%s\":null", name);
	if (buf_addf(b, ",\"%s\":", name) < 0)
		return -1;
	return buf_add_json_str(b, s, strlen(s));
}

static int pb__json_sep(struct buf *b)
{
	return buf_addc(b, b->len ? ',' : '[');
}

/* One history row: the change from a to b (a NULL: a new lead). A new
 * lead's after holds every field that is not null or '', as import writes
 * it (lead_changes(NULL, lead_fields(l))), so that replaying the history
 * from {} gives the lead: its zero amounts and counts too, which a diff
 * against an all-zero lead would leave out. */
static int pb__history(struct pb_txn *t, const struct pb_lslot *s, const struct lead *a,
		       const struct lead *b, enum lead_source src, int64_t log_id)
{
	static const struct lead blank = { .base = INT64_MIN, .counts = INT_MIN, .wm = INT64_MIN,
					   .pay = INT64_MIN, .ref = INT64_MIN };
	struct buf before, after;
	char tm[32];
	int rc = -1;

	buf_init(&before, 1 << 16);
	buf_init(&after, 1 << 16);
	if (lead_diff(a ? a : &blank, b, &before, &after) < 0)
		goto out;
	if (!a) {
		/* a new lead: before is {}, after its fields that are set,
		 * also those lead_diff() leaves to set-based writers */
		buf_reset(&before);
		if (buf_adds(&before, "{}") < 0 || lead_time_format(b->created, tm, sizeof(tm)) < 0)
			goto out;
		after.len--; /* the closing brace */
		if (buf_addf(&after, "%s\"created\":\"%s\"", after.len > 1 ? "," : "", tm) < 0 ||
		    (s->click[0] && buf_addf(&after, ",\"click_id\":\"%s\"", s->click) < 0) ||
		    (s->rid && (buf_adds(&after, ",\"request_id\":") < 0 ||
				buf_add_json_str(&after, s->rid, strlen(s->rid)) < 0)) ||
		    (s->customer && (buf_adds(&after, ",\"customer_id\":") < 0 ||
				     buf_add_json_str(&after, s->customer, strlen(s->customer)) < 0)) ||
		    buf_addc(&after, '}') < 0)
			goto out;
	}
	if (pb__json_sep(&t->hist) < 0 ||
	    lead_store_history_json(&t->hist, true, b->id, lead_source_name(src), log_id,
				    before.p, after.p) < 0)
		goto out;
	if (log_leads_on()) {
		struct log_lead ll = { b->id, b->offer, log_id, a ? a->status : 0, b->status };

		if (buf_add(&t->lg, &ll, sizeof(ll)) < 0) {
			/* the log lines are best effort */
		}
	}
	rc = 0;
out:
	buf_release(&before);
	buf_release(&after);
	return rc;
}

static struct pb_lslot *pb__lslot(struct pb_txn *t, int64_t offer, const char *rid)
{
	size_t i;

	for (i = 0; i < t->nls; i++)
		if (t->ls[i].offer == offer && strcmp(t->ls[i].rid, rid) == 0)
			return &t->ls[i];
	return NULL;
}

static struct pb_cslot *pb__cslot(struct pb_txn *t, int64_t offer, const char *cust, int row)
{
	struct pb_cslot *s;
	size_t i;

	for (i = 0; i < t->ncs; i++)
		if (t->cs[i].offer == offer && strcmp(t->cs[i].cust, cust) == 0)
			return &t->cs[i];
	s = &t->cs[t->ncs++];
	s->offer = offer;
	s->cust = cust;
	s->click = NULL;
	s->dirty = false;
	s->state = pb__null(t, row, R_CACTIVE) ? -1 : pb__b(t, row, R_CACTIVE);
	return s;
}

/* The lead edit a recognised word asks for. */
static void pb__edit(const struct status_match *m, struct lead_edit *e)
{
	memset(e, 0, sizeof(*e));
	if (m->accept || status_is_approved(m->status)) {
		e->set = LF_ACCEPT;
		e->accept = true;
		if (m->status > LS_PACKING) {
			e->set |= LF_STATUS;
			e->status = m->status;
		}
	} else if (m->status == LS_CANCEL) {
		e->set = LF_STATUS;
		e->status = LS_CANCEL;
		if (m->reason) {
			e->set |= LF_REASON;
			e->reason = m->reason;
		}
	} else {
		e->set = LF_STATUS;
		e->status = LS_PROCESSING; /* seed 000's hold: not yet confirmed */
	}
}

static void pb__customer(struct pb_txn *t, struct pb_item *it, int row, int64_t offer)
{
	const char *cust = it->v[PB_CUSTOMER];
	char q[4 * PB_QUOTE_MAX + 8];
	struct pb_cslot *s;
	bool on = it->cust == PB_CUST_ACTIVATE;

	if (!pb__b(t, row, R_RECURRING)) {
		pb__result(it, 400, "invalid", "offer %" PRId64 " has no recurring goal: '%s' is for "
			   "recurring customers", offer, on ? "activate" : "deactivate");
		return;
	}
	s = pb__cslot(t, offer, cust, row);
	it->active = on;
	if (!on && s->state < 0) {
		pb__result(it, 404, "invalid", "unknown customer_id '%s' of offer %" PRId64,
			   pb__quote(q, sizeof(q), cust), offer);
		return;
	}
	if (s->state == (int)on) {
		it->duplicate = true;
		pb__result(it, 200, "duplicate", NULL);
		return;
	}
	if (s->state < 0)
		s->click = it->v[PB_CLICK];
	s->state = on;
	s->dirty = true;
	pb__result(it, 200, on ? "activated" : "deactivated", NULL);
}

/* A lead postback whose advertiser, click and offer are known. */
static void pb__lead(struct pb_txn *t, struct pb_item *it, int row, int64_t offer)
{
	char q[4 * PB_QUOTE_MAX + 8], msg[256];
	const char *word = it->v[PB_STATUS], *rid = it->v[PB_REQUEST];
	struct lead_offer lo;
	struct lead_goal g;
	struct lead_edit e;
	struct status_match m;
	struct pb_lslot *s;
	struct lead next;
	enum lead_source src = SOURCE_POSTBACK;
	enum lead_result r;
	int64_t log_id = pb__i(t, row, R_LOG_ID);

	if (!status_postback(pb__words(t, offer, pb__s(t, row, R_WORDS)), word, strlen(word), &m)) {
		pb__result(it, 400, "invalid", "unknown status '%s': send hold, approved or rejected "
			   "(or a word of their lists)", pb__quote(q, sizeof(q), word));
		return;
	}
	if (m.status == LS_DELETED) {
		pb__result(it, 400, "invalid", "status '%s' means deleted, which a postback cannot set",
			   pb__quote(q, sizeof(q), word));
		return;
	}
	if (pb__null(t, row, R_GOAL)) {
		pb__result(it, 400, "invalid", "unknown action '%s' of offer %" PRId64,
			   pb__quote(q, sizeof(q), it->v[PB_ACTION]), offer);
		return;
	}
	memset(&g, 0, sizeof(g));
	g.id = pb__i(t, row, R_GOAL);
	g.payout = strcmp(pb__s(t, row, R_PAYOUT), "percent") == 0     ? PAYOUT_PERCENT
		   : strcmp(pb__s(t, row, R_PAYOUT), "recurring") == 0 ? PAYOUT_RECURRING
								       : PAYOUT_FIXED;
	g.wm = pb__money(t, row, R_GWM);
	g.pay = pb__money(t, row, R_GPAY);
	g.ref = pb__money(t, row, R_GREF);
	g.curr = (int)pb__i(t, row, R_GCURR);
	if (g.payout == PAYOUT_PERCENT && !it->v[PB_PRICE]) {
		pb__result(it, 400, "invalid", "missing 'price': action '%s' of offer %" PRId64
			   " pays a percent of it", pb__quote(q, sizeof(q), it->v[PB_ACTION]), offer);
		return;
	}
	if (g.payout == PAYOUT_RECURRING && !it->v[PB_CUSTOMER]) {
		pb__result(it, 400, "invalid", "missing 'customer_id': action '%s' of offer %" PRId64
			   " is recurring", pb__quote(q, sizeof(q), it->v[PB_ACTION]), offer);
		return;
	}
	lo.hold_days = (int)pb__i(t, row, R_HOLD_DAYS);
	lo.reject_reason = (int)pb__i(t, row, R_REJECT_REASON);
	lo.cancel_approved = pb__b(t, row, R_CANCEL_APPROVED);
	pb__edit(&m, &e);

	s = pb__lslot(t, offer, rid);
	if (!s && !pb__null(t, row, R_LEAD)) {
		/* known to the database: the row locked by the resolve */
		s = &t->ls[t->nls++];
		memset(s, 0, sizeof(*s));
		s->offer = offer;
		s->rid = rid;
		if (lead_store_read(t->res, row, R_LEAD, &s->cur) < 0) {
			pb__result(it, 500, "error", "lead %" PRId64 ": unreadable amount",
				   pb__i(t, row, R_LEAD));
			return;
		}
		if (!pb__null(t, row, R_LCLICK))
			snprintf(s->click, sizeof(s->click), "%s", pb__s(t, row, R_LCLICK));
	}
	if (s) {
		it->lead = s->cur.id;
		if (s->click[0] && strcmp(s->click, it->v[PB_CLICK]) != 0) {
			pb__result(it, 409, "refused", "request_id '%s' of offer %" PRId64
				   " belongs to another click_id", pb__quote(q, sizeof(q), rid), offer);
			return;
		}
		if (s->cur.goal && s->cur.goal != g.id) {
			pb__result(it, 409, "refused", "request_id '%s' of offer %" PRId64
				   " is a conversion of another action", pb__quote(q, sizeof(q), rid),
				   offer);
			return;
		}
		if (e.status == LS_CANCEL && status_is_approved(s->cur.status))
			src = SOURCE_CHARGEBACK;
		r = lead_apply(&s->cur, &lo, &g, &e, src, t->now, &next, msg, sizeof(msg));
		if (r == LEAD_REFUSED) {
			pb__result(it, 409, "refused", "%s", msg);
			return;
		}
		if (r == LEAD_UNCHANGED) {
			it->duplicate = true;
			pb__result(it, 200, "duplicate", NULL);
			return;
		}
		/* a real change carries the price along, and a goal to a lead
		 * that had none */
		if (it->v[PB_PRICE] && it->price != s->cur.base) {
			e.set |= LF_BASE;
			e.base = it->price;
		}
		if (!s->cur.goal) {
			e.set |= LF_GOAL;
			e.goal = g.id;
			e.new_goal = &g;
		}
		if (lead_apply(&s->cur, &lo, &g, &e, src, t->now, &next, msg, sizeof(msg)) ==
		    LEAD_REFUSED) {
			pb__result(it, 409, "refused", "%s", msg);
			return;
		}
		if (pb__history(t, s, &s->cur, &next, src, log_id) < 0) {
			pb__result(it, 500, "error", "history row too large");
			return;
		}
		s->cur = next;
		s->dirty = true;
		pb__result(it, 200, src == SOURCE_CHARGEBACK ? "chargeback" : "updated", NULL);
		return;
	}

	/* a new conversion */
	if (pb__null(t, row, R_NEW_ID)) {
		pb__result(it, 500, "error", "no lead id drawn for a new lead");
		return;
	}
	if (g.payout == PAYOUT_RECURRING) {
		struct pb_cslot *cs = pb__cslot(t, offer, it->v[PB_CUSTOMER], row);

		if (cs->state != 1) {
			pb__result(it, 409, "refused", "customer_id '%s' of offer %" PRId64
				   " is not active: activate it first",
				   pb__quote(q, sizeof(q), it->v[PB_CUSTOMER]), offer);
			return;
		}
	}
	s = &t->ls[t->nls];
	memset(s, 0, sizeof(*s));
	s->offer = offer;
	s->rid = rid;
	s->customer = it->v[PB_CUSTOMER];
	snprintf(s->click, sizeof(s->click), "%s", it->v[PB_CLICK]);
	s->is_new = true;
	s->cur.id = pb__i(t, row, R_NEW_ID);
	s->cur.offer = offer;
	s->cur.status = LS_PROCESSING;
	s->cur.goal = g.id;
	s->cur.base = it->v[PB_PRICE] ? it->price : 0;
	s->cur.counts = 1;
	s->cur.curr = g.curr;
	s->cur.created = t->now;
	if (e.status != LS_PROCESSING &&
	    lead_apply(&s->cur, &lo, &g, &e, src, t->now, &s->cur, msg, sizeof(msg)) == LEAD_REFUSED) {
		pb__result(it, 409, "refused", "%s", msg);
		return;
	}
	if (pb__history(t, s, NULL, &s->cur, src, log_id) < 0) {
		pb__result(it, 500, "error", "history row too large");
		return;
	}
	t->nls++;
	s->dirty = true;
	it->lead = s->cur.id;
	pb__result(it, 200, "created", NULL);
}

/* Decides one postback of the group. */
static void pb__decide(struct pb_txn *t, struct pb_item *it, int row)
{
	char q[4 * PB_QUOTE_MAX + 8];
	int64_t adv = pb__i(t, row, R_ADV), offer;
	const char *key = pb__s(t, row, R_KEY);

	if (it->log_only) {
		if (adv && it->key && buf_ct_equal(key, strlen(key), it->key, it->key_len))
			it->advertiser = adv;
		return;
	}
	it->advertiser = 0;
	it->lead = 0;
	it->duplicate = false;
	if (!adv || !it->key || !buf_ct_equal(key, strlen(key), it->key, it->key_len)) {
		pb__result(it, 403, "invalid", "unknown api key");
		return;
	}
	it->advertiser = adv;
	if (!pb__b(t, row, R_SOURCE_OK)) {
		pb__result(it, 403, "forbidden", "%s", PBAUTH_SOURCE_REFUSED);
		return;
	}
	if (!pb__null(t, row, R_SECRET)) {
		enum pbauth_verdict v = pbauth_check(it->sig, it->sig_msg, it->sig_len,
						     pb__s(t, row, R_SECRET), t->now,
						     (int64_t)it->p->cfg.signature_window_s);

		if (v != PBAUTH_OK) {
			pb__result(it, 403, "forbidden", "%s", pbauth_reason(v));
			return;
		}
	}
	if (it->pre_status) {
		pb__result(it, it->pre_status, it->pre_status >= 500 ? "error" : "invalid", "%s",
			   it->pre_err);
		return;
	}
	if (pb__null(t, row, R_OFFER)) {
		pb__result(it, 404, "invalid", "unknown click_id '%s'",
			   pb__quote(q, sizeof(q), it->v[PB_CLICK]));
		return;
	}
	offer = pb__i(t, row, R_OFFER);
	if (pb__i(t, row, R_OFFER_ADV) != adv) {
		pb__result(it, 403, "invalid", "click_id '%s' belongs to another advertiser's offer",
			   pb__quote(q, sizeof(q), it->v[PB_CLICK]));
		return;
	}
	if (it->cust)
		pb__customer(t, it, row, offer);
	else
		pb__lead(t, it, row, offer);
}

/* ------------------------------------------------------ worker: the txn */

static int pb__resolve_json(struct pb_txn *t, struct buf *b)
{
	size_t i;
	int rc = buf_addc(b, '[');

	for (i = 0; i < t->n && rc == 0; i++) {
		const struct pb_item *it = t->items[i];
		bool full = !it->log_only && !it->pre_status;

		rc |= buf_addf(b, "%s{\"i\":%zu", i ? "," : "", i);
		rc |= pb__json_str_or_null(b, "k", it->key);
		rc |= pb__json_str_or_null(b, "c", full ? it->v[PB_CLICK] : NULL);
		rc |= pb__json_str_or_null(b, "r", full && !it->cust ? it->v[PB_REQUEST] : NULL);
		rc |= pb__json_str_or_null(b, "a", full && !it->cust ? it->v[PB_ACTION] : NULL);
		rc |= pb__json_str_or_null(b, "u", full ? it->v[PB_CUSTOMER] : NULL);
		rc |= pb__json_str_or_null(b, "ip", it->ip);
		rc |= buf_addc(b, '}');
	}
	rc |= buf_addc(b, ']');
	return rc ? -1 : 0;
}

static int pb__lead_json(struct pb_txn *t, const struct pb_lslot *s)
{
	struct buf *b = s->is_new ? &t->newl : &t->updl;
	const struct lead *l = &s->cur;
	int rc = pb__json_sep(b);

	rc |= buf_addc(b, '{');
	rc |= lead_store_json(b, l);
	if (s->is_new) {
		rc |= buf_addf(b, ",\"offer\":%" PRId64, s->offer);
		rc |= pb__json_str_or_null(b, "request_id", s->rid);
		rc |= pb__json_str_or_null(b, "customer_id", s->customer);
		rc |= pb__json_str_or_null(b, "click", s->click);
		rc |= buf_addf(b, ",\"created\":%" PRId64, l->created);
	}
	rc |= buf_addc(b, '}');
	return rc ? -1 : 0;
}

static int pb__log_json(struct pb_txn *t, const struct pb_item *it, int64_t log_id)
{
	struct buf *b = &t->log;
	int rc = pb__json_sep(b);

	rc |= buf_addf(b, "{\"id\":%" PRId64 ",\"at\":%" PRId64, log_id, it->at_us);
	rc |= pb__json_str_or_null(b, "remote", it->remote);
	rc |= pb__json_str_or_null(b, "m", it->method);
	rc |= pb__json_str_or_null(b, "p", it->path);
	rc |= pb__json_str_or_null(b, "q", it->query);
	rc |= pb__json_str_or_null(b, "body", it->body);
	rc |= pb__json_int_or_null(b, "adv", it->advertiser);
	rc |= buf_addf(b, ",\"st\":%d", it->http);
	rc |= pb__json_str_or_null(b, "oc", it->outcome);
	rc |= pb__json_str_or_null(b, "e", it->err);
	rc |= pb__json_int_or_null(b, "lead", it->lead);
	rc |= buf_addc(b, '}');
	return rc ? -1 : 0;
}

static bool pb__retryable(const PGresult *r)
{
	const char *st = store_sqlstate(r);

	return strcmp(st, "23505") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0;
}

static void pb__txn_release(struct pb_txn *t)
{
	size_t i;

	for (i = 0; i < t->now_; i++)
		status_words_free(t->ow[i].w);
	free(t->ow);
	free(t->ls);
	free(t->cs);
	PQclear(t->res);
	buf_release(&t->hist);
	buf_release(&t->newl);
	buf_release(&t->updl);
	buf_release(&t->cust);
	buf_release(&t->log);
	buf_release(&t->lg);
}

/* Prepares the two statements on a connection that lacks them: planning
 * them costs more than running them for a small group. The connection
 * remembers what it has prepared (store_prepare), so a group costs no
 * round trip for it, and a connection made after a cut prepares again. */
static int pb__prepare(struct pb_txn *t)
{
	if (store_prepare(t->c, "leadsync_pb_resolve", "resolve", pb_resolve_sql, 1, t->err,
			  sizeof(t->err)) < 0 ||
	    store_prepare(t->c, "leadsync_pb_write", "write", pb_write_sql, 5, t->err,
			  sizeof(t->err)) < 0)
		return -1;
	return 0;
}

/* Runs a statement: sql, or the prepared statement of that name when
 * prepared. 0 done, 1 a race worth another attempt, -1 failed. */
static int pb__exec(struct pb_txn *t, const char *what, const char *sql, bool prepared, int n,
		    const char *const *params, PGresult **out)
{
	PGresult *r = prepared ? PQexecPrepared(t->c, sql, n, params, NULL, NULL, 0)
			       : PQexecParams(t->c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	char msg[400];
	int rc;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		if (out)
			*out = r;
		else
			PQclear(r);
		return 0;
	}
	rc = pb__retryable(r) ? 1 : -1;
	snprintf(t->err, sizeof(t->err), "%s: %s", what, store_error_text(t->c, r, msg, sizeof(msg)));
	PQclear(r);
	return rc;
}

/* One attempt: 0 committed, 1 lost a race (try again), -1 failed (err). */
static int pb__attempt(PGconn *c, struct pb_item **items, size_t n, char *err, size_t errlen)
{
	struct pb_txn t;
	struct buf in;
	const char *params[5];
	size_t i;
	int rc = -1, got;

	memset(&t, 0, sizeof(t));
	t.c = c;
	t.items = items;
	t.n = n;
	t.now = (int64_t)time(NULL);
	buf_init(&in, 0);
	buf_init(&t.hist, 0);
	buf_init(&t.newl, 0);
	buf_init(&t.updl, 0);
	buf_init(&t.cust, 0);
	buf_init(&t.log, 0);
	buf_init(&t.lg, 0);
	t.ls = calloc(n, sizeof(*t.ls));
	t.cs = calloc(n, sizeof(*t.cs));
	t.ow = calloc(n, sizeof(*t.ow));
	if (!t.ls || !t.cs || !t.ow || pb__resolve_json(&t, &in) < 0) {
		snprintf(t.err, sizeof(t.err), "out of memory");
		goto out;
	}
	rc = pb__prepare(&t);
	if (rc)
		goto out;
	rc = pb__exec(&t, "begin", "BEGIN", false, 0, NULL, NULL);
	if (rc)
		goto out;
	params[0] = in.p;
	rc = pb__exec(&t, "resolve", "leadsync_pb_resolve", true, 1, params, &t.res);
	if (rc)
		goto out;
	if ((size_t)PQntuples(t.res) != n || PQnfields(t.res) != R_NCOLS) {
		snprintf(t.err, sizeof(t.err), "resolve: %d rows for %zu postbacks", PQntuples(t.res), n);
		rc = -1;
		goto out;
	}
	got = 0;
	for (i = 0; i < n; i++) {
		pb__decide(&t, items[i], (int)i);
		got |= pb__log_json(&t, items[i], pb__i(&t, (int)i, R_LOG_ID));
	}
	for (i = 0; i < t.nls; i++)
		if (t.ls[i].dirty)
			got |= pb__lead_json(&t, &t.ls[i]);
	for (i = 0; i < t.ncs; i++) {
		const struct pb_cslot *s = &t.cs[i];

		if (!s->dirty)
			continue;
		got |= pb__json_sep(&t.cust);
		got |= buf_addf(&t.cust, "{\"offer\":%" PRId64, s->offer);
		got |= pb__json_str_or_null(&t.cust, "u", s->cust);
		got |= pb__json_str_or_null(&t.cust, "c", s->click);
		got |= buf_addf(&t.cust, ",\"act\":%s}", s->state == 1 ? "true" : "false");
	}
	if (got) {
		snprintf(t.err, sizeof(t.err), "out of memory");
		rc = -1;
		goto out;
	}
	{
		struct buf *w[5] = { &t.newl, &t.updl, &t.hist, &t.cust, &t.log };

		for (i = 0; i < 5; i++) {
			if (w[i]->len)
				got |= buf_addc(w[i], ']');
			params[i] = w[i]->len ? w[i]->p : "[]";
		}
	}
	if (got) {
		snprintf(t.err, sizeof(t.err), "out of memory");
		rc = -1;
		goto out;
	}
	rc = pb__exec(&t, "write", "leadsync_pb_write", true, 5, params, NULL);
	if (rc)
		goto out;
	rc = pb__exec(&t, "commit", "COMMIT", false, 0, NULL, NULL);
	if (!rc && pb__test_lose(c)) { /* the commit landed, its answer is lost */
		snprintf(t.err, sizeof(t.err), "commit: connection lost (test)");
		rc = -1;
	}
	if (rc && PQstatus(c) != CONNECTION_OK)
		/* In doubt: the server may have committed before the connection
		 * went (only COMMIT gets here with the connection gone: a failure
		 * before it jumped past). Each item remembers its log row's id,
		 * which exists iff it did; the next attempt looks first. */
		for (i = 0; i < n; i++)
			items[i]->doubt_id = pb__i(&t, (int)i, R_LOG_ID);
	if (!rc)
		log_lead_changes("postback", (const struct log_lead *)(const void *)t.lg.p,
				 t.lg.len / sizeof(struct log_lead));
out:
	if (rc && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	if (rc)
		snprintf(err, errlen, "%s", t.err);
	buf_release(&in);
	pb__txn_release(&t);
	return rc;
}

/* Attempts with the retries a race deserves: 0 committed, -1 failed. */
static int pb__commit(PGconn *c, struct pb_item **items, size_t n, char *err, size_t errlen)
{
	int rc = 1, tries;

	for (tries = 0; tries < PB_TRIES && rc == 1; tries++)
		rc = pb__attempt(c, items, n, err, errlen);
	return rc ? -1 : 0;
}

/* All postbacks in one commit; when that fails, one by one; a postback
 * that fails alone is answered 500 and its log row is written without the
 * change. */
static void pb__apply(PGconn *c, struct db_job **jobs, size_t n)
{
	struct pb_item *it;
	char err[512];
	size_t i;

	if (n == 1 || PQstatus(c) != CONNECTION_OK) {
		/* fall through to the one-by-one path */
	} else {
		struct pb_item **items = calloc(n, sizeof(*items));

		if (items) {
			for (i = 0; i < n; i++)
				items[i] = jobs[i]->data;
			uint64_t t0 = uv_hrtime();

			if (pb__commit(c, items, n, err, sizeof(err)) == 0) {
				for (i = 0; i < n; i++)
					jobs[i]->status = DB_OK;
				free(items);
				log_debug("postback group committed", "n=%zu ms=%.1f", n,
					  (double)(uv_hrtime() - t0) / 1e6);
				return;
			}
			free(items);
			log_warn("postback group failed, applying one by one", "n=%zu error=\"%s\"", n,
				 err);
		}
	}
	for (i = 0; i < n; i++) {
		it = jobs[i]->data;
		if (PQstatus(c) != CONNECTION_OK) {
			jobs[i]->status = DB_EDOWN;
			snprintf(jobs[i]->err, sizeof(jobs[i]->err), "database connection lost");
			continue;
		}
		if (pb__commit(c, &it, 1, err, sizeof(err)) == 0) {
			jobs[i]->status = DB_OK;
			continue;
		}
		if (PQstatus(c) != CONNECTION_OK) {
			jobs[i]->status = DB_EDOWN;
			lead_strlcpy(jobs[i]->err, sizeof(jobs[i]->err), err);
			continue;
		}
		log_error("postback failed", "error=\"%s\"", err);
		if (!it->log_only) {
			pb__result(it, 500, "error", "%s", err);
			it->log_only = true;
		}
		if (pb__commit(c, &it, 1, err, sizeof(err)) == 0) {
			jobs[i]->status = DB_OK;
		} else {
			jobs[i]->status = PQstatus(c) == CONNECTION_OK ? DB_EFAIL : DB_EDOWN;
			lead_strlcpy(jobs[i]->err, sizeof(jobs[i]->err), err);
		}
	}
}

/* Items whose last commit was in doubt: those whose log row exists were
 * committed then (their results stand: DB_OK); the others are tried
 * afresh. Returns how many of jobs[0..n) are left, moved to the front;
 * -1 when the lookup failed (every job is then DB_EDOWN, still in doubt).
 * The array is permuted, never shortened: the pool finishes all n. */
static int pb__doubt_resolve(PGconn *c, struct db_job **jobs, size_t n)
{
	struct buf ids;
	PGresult *r;
	const char *param;
	size_t i, m = 0;
	int row, got = 0;

	buf_init(&ids, 0);
	for (i = 0; i < n; i++) {
		const struct pb_item *it = jobs[i]->data;

		if (it->doubt_id)
			got |= buf_addf(&ids, "%s%" PRId64, ids.len ? "," : "{", it->doubt_id);
	}
	if (!ids.len) {
		buf_release(&ids);
		return (int)n;
	}
	got |= buf_addc(&ids, '}');
	param = ids.p;
	(void)pb__test_lose(c); /* the lookup fails too */
	r = got ? NULL
		: PQexecParams(c, "SELECT id FROM postbacks_in WHERE id = ANY ($1::bigint[])", 1,
			       NULL, &param, NULL, NULL, 0);
	buf_release(&ids);
	if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
		char msg[300];

		snprintf(msg, sizeof(msg), "postback commit in doubt: %s",
			 r ? PQresultErrorMessage(r) : "out of memory");
		for (i = 0; i < n; i++) {
			jobs[i]->status = DB_EDOWN;
			lead_strlcpy(jobs[i]->err, sizeof(jobs[i]->err), msg);
		}
		PQclear(r);
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct pb_item *it = jobs[i]->data;
		bool landed = false;

		for (row = 0; it->doubt_id && row < PQntuples(r) && !landed; row++)
			landed = strtoll(PQgetvalue(r, row, 0), NULL, 10) == it->doubt_id;
		if (it->doubt_id)
			log_info("postback commit in doubt resolved", "log_id=%" PRId64 " committed=%s",
				 it->doubt_id, landed ? "yes" : "no");
		it->doubt_id = 0;
		if (landed) {
			jobs[i]->status = DB_OK;
		} else { /* to the front, keeping every job in the array */
			struct db_job *x = jobs[m];

			jobs[m++] = jobs[i];
			jobs[i] = x;
		}
	}
	PQclear(r);
	return (int)m;
}

/* The group function: items in doubt first learn their fate, then the rest
 * are applied. */
static void pb__group(PGconn *c, struct db_job **jobs, size_t n)
{
	int left = pb__doubt_resolve(c, jobs, n);

	if (left > 0)
		pb__apply(c, jobs, (size_t)left);
}

/* ---------------------------------------------------------------- loop */

static void pb__submit(struct postback *p, struct pb_item *it);
static void pb__close_step(struct postback *p);

/* Memory a backlog row holds (what its bound counts). */
static size_t pb__item_bytes(const struct pb_item *it)
{
	return sizeof(*it) + (it->query ? strlen(it->query) : 0) +
	       (it->body ? strlen(it->body) : 0) + it->key_len;
}

static struct pb_item *pb__backlog_pop(struct postback *p)
{
	struct list *l = list_first(&p->backlog);
	struct pb_item *it;

	if (!l)
		return NULL;
	it = list_entry(l, struct pb_item, link);
	list_remove(&it->link);
	p->nbacklog--;
	p->backlog_bytes -= pb__item_bytes(it);
	return it;
}

static void pb__backlog_push_front(struct postback *p, struct pb_item *it)
{
	list_prepend(&p->backlog, &it->link);
	p->nbacklog++;
	p->backlog_bytes += pb__item_bytes(it);
}

static void pb__backlog_add(struct postback *p, struct pb_item *it)
{
	if (p->nbacklog >= p->cfg.backlog_max ||
	    p->backlog_bytes + pb__item_bytes(it) > p->cfg.backlog_bytes_max) {
		p->st.log_lost++;
		log_warn("postback log row lost: backlog full", "status=%d outcome=%s", it->http,
			 it->outcome ? it->outcome : "-");
		pb__item_free(it);
		return;
	}
	list_append(&p->backlog, &it->link);
	p->nbacklog++;
	p->backlog_bytes += pb__item_bytes(it);
}

/* Counts an answer by (outcome, code); the pairs are a small fixed set
 * (the outcomes are static names), a pair past the table's room counts
 * under outcome "other" of its code's class. */
static void pb__count(struct postback *p, const char *outcome, int code)
{
	size_t i;

	if (!outcome)
		outcome = "error";
	for (i = 0; i < p->ncounts; i++)
		if (p->counts[i].code == code && strcmp(p->counts[i].outcome, outcome) == 0)
			break;
	if (i == p->ncounts) {
		if (p->ncounts == POSTBACK_COUNTS_MAX)
			i = POSTBACK_COUNTS_MAX - 1; /* the last row takes the rest */
		else {
			p->ncounts++;
			p->counts[i].outcome = p->ncounts == POSTBACK_COUNTS_MAX ? "other" : outcome;
			p->counts[i].code = code;
		}
	}
	p->counts[i].n++;
}

/* A line for a refused authentication, at most one per PB_AUTH_LOG_MS with
 * the count of those not logged since: a flood of forged postbacks must not
 * flood the log (the 503s at the connection cap are logged the same way).
 * The reason, the advertiser and the peer; never the secret nor the key. */
static void pb__auth_log(struct postback *p, const struct pb_item *it)
{
	uint64_t now = uv_now(p->loop);

	p->auth_unlogged++;
	if (now < p->auth_log_next)
		return;
	p->auth_log_next = now + PB_AUTH_LOG_MS;
	log_warn("postback refused", "reason=\"%s\" advertiser=%" PRId64 " remote=%s count=%" PRIu64,
		 it->err, it->advertiser, it->remote, p->auth_unlogged);
	p->auth_unlogged = 0;
}

static void pb__respond(struct pb_item *it)
{
	struct postback *p = it->p;
	struct listener_req *req = it->req;
	char hdr[64];
	struct buf b;

	it->req = NULL;
	/* the signed text holds the body and the key: not kept in the backlog */
	free(it->sig_msg);
	free(it->sig);
	it->sig_msg = NULL;
	it->sig = NULL;
	it->sig_len = 0;
	p->st.requests++;
	pb__count(p, it->outcome, it->http);
	if (it->http == 403 && it->outcome && strcmp(it->outcome, "forbidden") == 0)
		pb__auth_log(p, it);
	if (it->http == 200 && !it->cust && it->lead) {
		p->st.leads_checked++;
		if (!it->duplicate)
			p->st.leads_changed++;
	}
	if (it->http == 200) {
		p->st.ok++;
		buf_init(&b, 1024);
		if (it->cust) {
			if (buf_adds(&b, "{\"ok\":true,\"lead\":null,\"duplicate\":") < 0 ||
			    buf_adds(&b, it->duplicate ? "true" : "false") < 0 ||
			    buf_adds(&b, ",\"customer_id\":") < 0 ||
			    buf_add_json_str(&b, it->v[PB_CUSTOMER], strlen(it->v[PB_CUSTOMER])) < 0 ||
			    buf_addf(&b, ",\"active\":%s}", it->active ? "true" : "false") < 0) {
				buf_release(&b);
				listener_respond_error(req, 500, "out of memory");
				return;
			}
		} else if (buf_addf(&b, "{\"ok\":true,\"lead\":%" PRId64 ",\"duplicate\":%s}", it->lead,
				    it->duplicate ? "true" : "false") < 0) {
			buf_release(&b);
			listener_respond_error(req, 500, "out of memory");
			return;
		}
		listener_respond(req, 200, "application/json", b.p, b.len, NULL);
		buf_release(&b);
		return;
	}
	if (it->http == 503) {
		p->st.unavailable++;
		buf_init(&b, 1024);
		snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", p->cfg.retry_after_s);
		if (buf_adds(&b, "{\"ok\":false,\"error\":") < 0 ||
		    buf_add_json_str(&b, it->err, strlen(it->err)) < 0 || buf_addc(&b, '}') < 0)
			listener_respond(req, 503, NULL, NULL, 0, hdr);
		else
			listener_respond(req, 503, "application/json", b.p, b.len, hdr);
		buf_release(&b);
		return;
	}
	if (it->http >= 500)
		p->st.errors++;
	else
		p->st.invalid++;
	/* a database error's text stays in the log, not in the answer */
	listener_respond_error(req, it->http, it->http >= 500 ? "internal error" : it->err);
}

static void pb__done(struct db_job *j);

/* Sends it to the database as a job of the group function (then
 * pb__done), counted in flight. -1 when the queue refused it. */
static int pb__send(struct postback *p, struct pb_item *it)
{
	it->job.run = NULL;
	it->job.group = pb__group;
	it->job.done = pb__done;
	it->job.data = it;
	if (db_submit(p->db, &it->job) < 0)
		return -1;
	p->inflight++;
	return 0;
}

static void pb__done(struct db_job *j)
{
	struct pb_item *it = j->data;
	struct postback *p = it->p;

	p->inflight--;
	if (j->status == DB_OK) {
		p->close_written++;
		if (it->req)
			pb__respond(it);
		pb__item_free(it);
	} else if (it->doubt_id && it->req && !it->log_only && !p->closing) {
		/* its commit may have landed: the answer waits until the database
		 * says (pb__doubt_retry), a 503 now could deny a stored postback */
		if (!it->doubt_since)
			it->doubt_since = uv_now(p->loop);
		list_append(&p->doubt, &it->link);
	} else {
		if (!it->log_only) {
			if (j->status == DB_EFAIL)
				pb__result(it, 500, "error", "%s", j->err);
			else
				pb__result(it, 503, "unavailable", "database unreachable: try again later");
			it->log_only = true;
		}
		if (it->req)
			pb__respond(it);
		if (j->status == DB_EFAIL && ++it->log_tries >= PB_LOG_TRIES) {
			p->st.log_lost++;
			log_error("postback log row lost: it cannot be written", "error=\"%s\"", j->err);
			pb__item_free(it);
		} else {
			pb__backlog_add(p, it);
		}
	}
	if (p->closing)
		pb__close_step(p);
}

static void pb__submit(struct postback *p, struct pb_item *it)
{
	if (pb__send(p, it) == 0)
		return;
	if (!it->log_only) {
		pb__result(it, 503, "unavailable", "too many postbacks in flight: try again later");
		it->log_only = true;
	}
	if (it->req)
		pb__respond(it);
	pb__backlog_add(p, it);
}

/* Sends the backlog to the database: one row as a probe while it seems
 * down, as much as the queue takes once it is up. Returns the rows sent. */
static size_t pb__flush(struct postback *p)
{
	bool all = db_up(p->db);
	size_t sent = 0;

	while (!list_empty(&p->backlog)) {
		struct pb_item *it = pb__backlog_pop(p);

		if (pb__send(p, it) < 0) {
			pb__backlog_push_front(p, it);
			break;
		}
		sent++;
		if (!all)
			break;
	}
	return sent;
}

/* Tries again the postbacks whose commit was in doubt: each goes to the
 * database as a group job, whose first step looks up its log row
 * (pb__doubt_resolve). One as a probe while the database seems down; an
 * answer held PB_DOUBT_HOLD_MS is given up on: 503 now, and the log row,
 * in the backlog, still learns the commit's fate before it is written.
 * At close (now_all) every item goes at once, and whatever cannot is
 * answered 503 at once. */
static void pb__doubt_retry(struct postback *p, bool now_all)
{
	struct list todo = LIST_HEAD_INIT(todo), *l, *nx;
	bool all = now_all || db_up(p->db);
	uint64_t now = uv_now(p->loop);
	size_t sent = 0;

	list_splice_tail(&todo, &p->doubt);
	list_for_each_safe(l, nx, &todo) {
		struct pb_item *it = list_entry(l, struct pb_item, link);

		list_remove(&it->link);
		if (!all && sent) {
			list_append(&p->doubt, &it->link);
			continue;
		}
		if (now - it->doubt_since < PB_DOUBT_HOLD_MS || now_all) {
			if (pb__send(p, it) == 0) {
				sent++;
				continue;
			}
			if (!now_all) {
				list_append(&p->doubt, &it->link);
				continue;
			}
		}
		log_warn("postback answered 503 with its commit in doubt", "log_id=%" PRId64,
			 it->doubt_id);
		pb__result(it, 503, "unavailable", "database unreachable: try again later");
		it->log_only = true;
		pb__respond(it);
		pb__backlog_add(p, it);
	}
}

static void pb__timer_cb(uv_timer_t *t)
{
	struct postback *p = t->data;

	if (p->closing)
		return;
	if (!list_empty(&p->doubt))
		pb__doubt_retry(p, false);
	if (!list_empty(&p->backlog))
		pb__flush(p);
}

static void pb__log_refused(struct postback *p, const char *method, const char *target,
			    size_t target_len, const char *remote, int status, const char *error);

void postback_handle(struct listener_req *req, void *data)
{
	struct postback *p = data;
	struct pb_item *it;

	if (listener_req_method(req) == LISTENER_HEAD) {
		static const char msg[] = "{\"ok\":false,\"error\":\"send a postback with GET or POST\"}";
		struct buf t;

		buf_init(&t, 0);
		if (listener_req_target(req, &t) == 0)
			pb__log_refused(p, "HEAD", t.p, t.len, listener_req_remote(req), 405,
					"send a postback with GET or POST");
		buf_release(&t);
		listener_respond(req, 405, "application/json", msg, sizeof(msg) - 1,
				 "Allow: GET, POST\r\n");
		return;
	}
	it = pb__item_new(p, req);
	if (!it) {
		listener_respond_error(req, 500, "out of memory");
		return;
	}
	pb__parse(it, req);
	pb__submit(p, it);
}

/* A log row for a request refused before it was parsed as a postback:
 * what was received (the key masked), with the status and message the
 * client was sent. */
static void pb__log_refused(struct postback *p, const char *method, const char *target,
			    size_t target_len, const char *remote, int status, const char *error)
{
	const char *t = target, *end = target + target_len, *q, *seg, *slash;
	struct pb_item *it;
	struct timeval tv;
	size_t plen;

	/* the path: /{api_key}/s2s or /{api_key} */
	for (q = t; q < end && *q != '?' && *q != '#'; q++)
		;
	plen = (size_t)(q - t);
	if (plen < 2 || t[0] != '/' || p->closing)
		return;
	seg = t + 1;
	slash = memchr(seg, '/', plen - 1);
	if (slash == seg || (slash && ((size_t)(t + plen - slash) != 4 || memcmp(slash, "/s2s", 4) != 0)))
		return;
	it = calloc(1, sizeof(*it));
	if (!it)
		return;
	it->p = p;
	gettimeofday(&tv, NULL);
	it->at_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	snprintf(it->remote, sizeof(it->remote), "%s", remote);
	snprintf(it->method, sizeof(it->method), "%s", method);
	it->path = slash ? "/***/s2s" : "/***";
	if ((slash ? (size_t)(slash - seg) : plen - 1) <= PB_KEY_MAX &&
	    buf_utf8_ok(seg, slash ? (size_t)(slash - seg) : plen - 1)) {
		it->key_len = slash ? (size_t)(slash - seg) : plen - 1;
		it->key = strndup(seg, it->key_len);
	}
	if (q < end && *q == '?')
		it->query = pb__logmask(it->key, q + 1, (size_t)(end - q - 1), MASK_FORM,
					POSTBACK_LOG_QUERY_MAX);
	/* a 503 (the connection cap) is "try again later", as the database's */
	pb__result(it, status, status == 503 ? "unavailable" : status >= 500 ? "error" : "invalid",
		   "%s", error);
	it->log_only = true;
	p->st.requests++;
	if (status == 503)
		p->st.unavailable++;
	else if (status >= 500)
		p->st.errors++;
	else
		p->st.invalid++;
	pb__count(p, it->outcome, it->http);
	pb__submit(p, it);
}

void postback_refused(const struct listener_refusal *r, void *data)
{
	struct postback *p = data;

	/* only the postback routes' requests: GET /healthz with a target too
	 * long is not a postback with the key "healthz" */
	if (!r->route || r->route->data != p)
		return;
	pb__log_refused(p, r->method, r->target, r->target_len, r->remote, r->status, r->error);
}

int postback_open(uv_loop_t *loop, const struct postback_config *cfg, struct postback **out,
		  char *err, size_t errlen)
{
	struct postback *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->loop = loop;
	list_init(&p->backlog);
	list_init(&p->doubt);
	p->db = cfg->db;
	p->cfg = *cfg;
	if (!p->cfg.backlog_max)
		p->cfg.backlog_max = 10000;
	if (!p->cfg.backlog_bytes_max)
		p->cfg.backlog_bytes_max = (size_t)32 << 20;
	if (!p->cfg.retry_after_s)
		p->cfg.retry_after_s = 5;
	if (!p->cfg.signature_window_s)
		p->cfg.signature_window_s = 300;
	if (!p->cfg.close_deadline_ms)
		p->cfg.close_deadline_ms = 10000;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, pb__timer_cb, PB_BACKLOG_MS, PB_BACKLOG_MS);
	uv_unref((uv_handle_t *)&p->timer);
	*out = p;
	return 0;
}

void postback_stats(const struct postback *p, struct postback_stats *out)
{
	*out = p->st;
	out->backlog = p->nbacklog;
}

const struct postback_count *postback_counts(const struct postback *p, size_t *n)
{
	*n = p->ncounts;
	return p->counts;
}

static void pb__closed_cb(uv_handle_t *h)
{
	struct postback *p = h->data;
	void (*cb)(void *) = p->close_cb;
	void *data = p->close_data;

	free(p);
	if (cb)
		cb(data);
}

static void pb__close_retry_cb(uv_timer_t *t)
{
	pb__close_step(t->data);
}

/* Close: wait for what is in flight; then, while the database is up, send
 * the backlog in turns of what the queue takes, each turn when the last is
 * done. Rows are dropped (log_lost, one line) only when the database is
 * down, a whole turn wrote nothing (the rows cannot be written), or the
 * close deadline has passed; a turn the queue had no room for (other
 * modules' jobs) is tried again shortly, within the deadline. */
static void pb__close_step(struct postback *p)
{
	const char *why = NULL;
	size_t lost = 0;

	if (p->inflight || uv_is_closing((uv_handle_t *)&p->timer))
		return;
	if (!list_empty(&p->doubt)) {
		pb__doubt_retry(p, true);
		if (p->inflight)
			return;
	}
	if (!list_empty(&p->backlog)) {
		if (uv_now(p->loop) >= p->close_deadline)
			why = "stop deadline passed";
		else if (!db_up(p->db))
			why = "database down";
		else if (p->close_turns && !p->close_written)
			why = "rows not written";
	}
	if (!list_empty(&p->backlog) && !why) {
		p->close_written = 0;
		if (pb__flush(p)) {
			p->close_turns++;
			return;
		}
		uv_timer_start(&p->timer, pb__close_retry_cb, PB_CLOSE_RETRY_MS, 0);
		return;
	}
	while (!list_empty(&p->backlog)) {
		pb__item_free(pb__backlog_pop(p));
		lost++;
	}
	if (lost) {
		p->st.log_lost += lost;
		log_warn("postback log rows lost at exit", "count=%zu reason=\"%s\" turns=%zu", lost,
			 why, p->close_turns);
	}
	uv_close((uv_handle_t *)&p->timer, pb__closed_cb);
}

void postback_close(struct postback *p, void (*cb)(void *data), void *data)
{
	p->closing = true;
	p->close_cb = cb;
	p->close_data = data;
	p->close_deadline = uv_now(p->loop) + p->cfg.close_deadline_ms;
	uv_timer_stop(&p->timer);
	uv_ref((uv_handle_t *)&p->timer); /* its retry keeps the loop until closed */
	pb__close_step(p);
}
