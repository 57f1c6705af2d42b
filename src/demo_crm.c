/* demo_crm: a small CRM on the listener for `make run`: orders appear when
 * asked about and follow a seeded plan on a fast clock; see demo_crm.h. */
#include "demo_crm.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "htab.h"
#include "lead.h"
#include "listener.h"
#include "log.h"
#include "tz.h"

#define DEMO_STAGES_MAX 8
#define DEMO_ANSWER_MAX ((size_t)8 << 20)

enum demo_word {
	DW_PROCESSING, DW_CALLBACK, DW_APPROVED, DW_CANCELLED, DW_TRASH, DW_DUPLICATE,
	DW_SHIPPED, DW_DELIVERED, DW_PAID, DW_RETURNED, DW_COUNT
};

/* Every one is a built-in status word (DESIGN.md), as the rule expects. */
static const char *const demo_words[DW_COUNT] = {
	"processing", "callback", "approved", "cancelled", "trash", "duplicate",
	"shipped",    "delivered", "paid",    "returned",
};

/* ------------------------------------------------------------------ plans */

struct demo_stage {
	enum demo_word word;
	unsigned steps; /* 0: for ever */
};

struct demo_plan {
	struct demo_stage st[DEMO_STAGES_MAX];
	size_t n;
	int64_t payout; /* cents with "approved"; 0: none */
};

/* splitmix64: one well-mixed number per call. */
static uint64_t demo__next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static unsigned demo__pick(uint64_t *s, unsigned n)
{
	return (unsigned)(demo__next(s) % n);
}

static void demo__add(struct demo_plan *p, enum demo_word w, unsigned steps)
{
	if (p->n < DEMO_STAGES_MAX)
		p->st[p->n++] = (struct demo_stage){ w, steps };
}

/* The plan of one order: the random draws come in a fixed order from a
 * generator seeded by (seed, FNV-1a of the id). */
static void demo__plan(uint64_t seed, const char *id, size_t len, struct demo_plan *p)
{
	uint64_t s = htab_hash(id, len) ^ (seed * UINT64_C(0x9e3779b97f4a7c15));
	unsigned r;

	memset(p, 0, sizeof(*p));
	demo__add(p, DW_PROCESSING, 1 + demo__pick(&s, 3));
	if (demo__pick(&s, 100) < 40)
		demo__add(p, DW_CALLBACK, 1 + demo__pick(&s, 3));
	r = demo__pick(&s, 100);
	if (r >= 55) {
		demo__add(p, r < 78 ? DW_CANCELLED : r < 93 ? DW_TRASH : DW_DUPLICATE, 0);
		return;
	}
	demo__add(p, DW_APPROVED, 2 + demo__pick(&s, 2));
	/* half the advertisers name their payout: 6..10 units */
	if (demo__pick(&s, 2))
		p->payout = 600 + 100 * (int64_t)demo__pick(&s, 5);
	demo__add(p, DW_SHIPPED, 2 + demo__pick(&s, 3));
	demo__add(p, DW_DELIVERED, 1 + demo__pick(&s, 3));
	demo__add(p, demo__pick(&s, 100) < 80 ? DW_PAID : DW_RETURNED, 0);
}

static enum demo_word demo__at(const struct demo_plan *p, uint64_t age, bool *final)
{
	size_t i;

	for (i = 0; i + 1 < p->n && p->st[i].steps && age >= p->st[i].steps; i++)
		age -= p->st[i].steps;
	*final = p->st[i].steps == 0;
	return p->st[i].word;
}

void demo_crm_progress(uint64_t seed, const char *id, size_t len, uint64_t age,
		       struct demo_crm_state *out)
{
	struct demo_plan p;
	enum demo_word w;

	demo__plan(seed, id, len, &p);
	w = demo__at(&p, age, &out->final);
	out->status = demo_words[w];
	out->payout = w == DW_APPROVED ? p.payout : 0;
	out->currency = out->payout ? "USD" : NULL;
}

/* ----------------------------------------------------------------- server */

struct demo_order {
	char *id;
	size_t len;
	uint64_t born;  /* step it appeared */
	int64_t day;    /* UTC day it appeared, for dates queries */
	int shown;      /* word last answered; -1: none */
	uint64_t asked; /* serial of the last request that listed it */
};

struct demo_crm {
	uv_loop_t *loop;
	struct listener *l;
	struct listener_route route;
	char *key, *flaky_key;
	unsigned fail_every;
	uint64_t flaky_requests;
	uint64_t seed, step_ms, start_ms;
	size_t max_orders;
	uint64_t (*clock_ms)(void *arg);
	void *clock_arg;
	struct demo_order *orders; /* in the order they appeared */
	size_t norders, cap;
	uint32_t *slots;           /* open addressing: order index + 1; 0 empty */
	size_t nslots;             /* a power of two, at least 2 * cap */
	uint64_t serial;
	void (*close_cb)(void *data);
	void *close_data;
};

static uint64_t demo__now_ms(const struct demo_crm *d)
{
	return d->clock_ms ? d->clock_ms(d->clock_arg) : uv_now(d->loop);
}

static uint64_t demo__step(const struct demo_crm *d)
{
	uint64_t now = demo__now_ms(d);

	return now > d->start_ms ? (now - d->start_ms) / d->step_ms : 0;
}

/* The slot of id: its order, or the empty slot where it would go. The
 * orders live in one array that grows by realloc, so the index holds their
 * numbers (open addressing, 4 bytes a slot) rather than htab's nodes, which
 * must not move. */
static uint32_t *demo__slot(struct demo_crm *d, const char *id, size_t len)
{
	size_t mask = d->nslots - 1, i = (size_t)htab_hash(id, len) & mask;

	for (;; i = (i + 1) & mask) {
		uint32_t *s = &d->slots[i];
		const struct demo_order *o;

		if (!*s)
			return s;
		o = &d->orders[*s - 1];
		if (o->len == len && memcmp(o->id, id, len) == 0)
			return s;
	}
}

/* Makes room for one more order; -1 when full or out of memory. */
static int demo__grow(struct demo_crm *d)
{
	struct demo_order *no;
	uint32_t *ns;
	size_t cap, nslots, i;

	if (d->norders >= d->max_orders)
		return -1;
	if (d->norders < d->cap)
		return 0;
	cap = d->cap ? d->cap * 2 : 64;
	if (cap > d->max_orders)
		cap = d->max_orders;
	for (nslots = 16; nslots < 2 * cap; nslots *= 2)
		;
	no = realloc(d->orders, cap * sizeof(*no));
	if (!no)
		return -1;
	d->orders = no;
	ns = calloc(nslots, sizeof(*ns));
	if (!ns)
		return -1;
	free(d->slots);
	d->slots = ns;
	d->nslots = nslots;
	d->cap = cap;
	for (i = 0; i < d->norders; i++)
		*demo__slot(d, d->orders[i].id, d->orders[i].len) = (uint32_t)(i + 1);
	return 0;
}

static struct demo_order *demo__find_or_add(struct demo_crm *d, const char *id, size_t len)
{
	char q[DEMO_CRM_ID_MAX * 2 + 8], idz[DEMO_CRM_ID_MAX + 1];
	struct demo_order *o;
	uint32_t *s;

	if (d->nslots) {
		s = demo__slot(d, id, len);
		if (*s)
			return &d->orders[*s - 1];
	}
	if (demo__grow(d) < 0)
		return NULL;
	o = &d->orders[d->norders];
	o->id = malloc(len + 1);
	if (!o->id)
		return NULL;
	memcpy(o->id, id, len);
	o->id[len] = '\0';
	o->len = len;
	o->born = demo__step(d);
	o->day = (int64_t)time(NULL) / 86400;
	o->shown = -1;
	o->asked = 0;
	*demo__slot(d, id, len) = (uint32_t)(++d->norders);
	memcpy(idz, id, len);
	idz[len] = '\0';
	log_info("demo crm: new order", "id=%s", log_quote(q, sizeof(q), idz));
	return o;
}

/* Appends o as it stands now (once per answer). */
static int demo__emit(struct demo_crm *d, struct demo_order *o, struct buf *b, bool *first)
{
	struct demo_crm_state st;
	char m[32], q[DEMO_CRM_ID_MAX * 2 + 8];
	uint64_t now;
	int rc = 0, w;

	if (o->asked == d->serial)
		return 0;
	o->asked = d->serial;
	now = demo__step(d);
	demo_crm_progress(d->seed, o->id, o->len, now > o->born ? now - o->born : 0, &st);
	rc |= buf_adds(b, *first ? "{\"id\":" : ",{\"id\":");
	rc |= buf_add_json_str(b, o->id, o->len);
	rc |= buf_addf(b, ",\"status\":\"%s\"", st.status);
	if (st.payout && lead_money_format(st.payout, m, sizeof(m)) > 0)
		rc |= buf_addf(b, ",\"payout\":%s,\"currency\":\"%s\"", m, st.currency);
	rc |= buf_addc(b, '}');
	*first = false;
	for (w = 0; w < DW_COUNT && strcmp(demo_words[w], st.status) != 0; w++)
		;
	if (o->shown >= 0 && o->shown != w)
		log_info("demo crm: order moved", "id=%s status=%s", log_quote(q, sizeof(q), o->id),
			 st.status);
	o->shown = w;
	return rc ? -1 : 0;
}

/* "YYYY-MM-DD" as a day number; -1 when it is not a date. */
static int demo__day(const char *s, size_t n, int64_t *out)
{
	int64_t y = 0;
	int m = 0, dd = 0;
	size_t i;

	if (n != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (i = 0; i < n; i++) {
		if (i == 4 || i == 7)
			continue;
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (i < 4)
			y = y * 10 + (s[i] - '0');
		else if (i < 7)
			m = m * 10 + (s[i] - '0');
		else
			dd = dd * 10 + (s[i] - '0');
	}
	if (!tz_date_valid(y, m, dd))
		return -1;
	*out = tz_days_from_civil(y, m, dd);
	return 0;
}

static int demo__by_ids(struct demo_crm *d, const char *ids, size_t n, struct buf *b,
			char *err, size_t errlen)
{
	const char *p = ids, *end = ids + n;
	size_t count = 0;
	bool first = true;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t len = (size_t)((comma ? comma : end) - p);
		struct demo_order *o;

		if (len) {
			if (++count > DEMO_CRM_IDS_MAX) {
				snprintf(err, errlen, "more than %d ids in one request", DEMO_CRM_IDS_MAX);
				return -1;
			}
			if (len > DEMO_CRM_ID_MAX || !buf_utf8_ok(p, len)) {
				snprintf(err, errlen, "order id %zu: not UTF-8 text of at most %d bytes",
					 count, DEMO_CRM_ID_MAX);
				return -1;
			}
			o = demo__find_or_add(d, p, len);
			if (o && demo__emit(d, o, b, &first) < 0) {
				snprintf(err, errlen, "answer too large");
				return -1;
			}
		}
		p += len + 1;
	}
	return 0;
}

static int demo__by_dates(struct demo_crm *d, int64_t from, int64_t to, struct buf *b,
			  char *err, size_t errlen)
{
	bool first = true;
	size_t i;

	for (i = 0; i < d->norders; i++)
		if (d->orders[i].day >= from && d->orders[i].day <= to &&
		    demo__emit(d, &d->orders[i], b, &first) < 0) {
			snprintf(err, errlen, "answer too large");
			return -1;
		}
	return 0;
}

/* The flaky offer's broken answer: not the JSON the rule declares. */
static const char demo_broken_page[] =
	"<html><head><title>502 Bad Gateway</title></head>\n"
	"<body><h1>502 Bad Gateway</h1><p>demo: the flaky offer's answer, on purpose</p></body>"
	"</html>\n";

static void demo__orders(struct listener_req *req, void *data)
{
	struct demo_crm *d = data;
	size_t klen = 0, ilen = 0, flen = 0, tlen = 0;
	const char *key = listener_query_get(req, "key", &klen);
	const char *ids = listener_query_get(req, "ids", &ilen);
	const char *from = listener_query_get(req, "from", &flen);
	const char *to = listener_query_get(req, "to", &tlen);
	int64_t dfrom, dto;
	char err[128];
	struct buf b;
	int rc;

	if (key && buf_ct_equal(key, klen, d->flaky_key, strlen(d->flaky_key)) &&
	    ++d->flaky_requests % d->fail_every == 0) {
		/* by turns: the CRM down, and a proxy's error page sent as 200 */
		if ((d->flaky_requests / d->fail_every) % 2)
			listener_respond_error(req, 500, "demo: the CRM's database is restarting "
							 "(this key fails now and then on purpose)");
		else
			listener_respond(req, 200, "text/html",
					 demo_broken_page, sizeof(demo_broken_page) - 1, NULL);
		return;
	}
	if (!key || (!buf_ct_equal(key, klen, d->key, strlen(d->key)) &&
		     !buf_ct_equal(key, klen, d->flaky_key, strlen(d->flaky_key)))) {
		listener_respond_error(req, 403, key ? "wrong api key" : "missing api key: add key=...");
		return;
	}
	buf_init(&b, DEMO_ANSWER_MAX);
	d->serial++;
	rc = buf_addc(&b, '[');
	if (ids)
		rc = rc < 0 ? rc : demo__by_ids(d, ids, ilen, &b, err, sizeof(err));
	else if (from && to) {
		if (demo__day(from, flen, &dfrom) < 0 || demo__day(to, tlen, &dto) < 0 || dfrom > dto) {
			snprintf(err, sizeof(err), "from and to must be dates YYYY-MM-DD, from <= to");
			rc = -1;
		} else
			rc = rc < 0 ? rc : demo__by_dates(d, dfrom, dto, &b, err, sizeof(err));
	} else {
		snprintf(err, sizeof(err), "ask by ids=A,B or by from=YYYY-MM-DD&to=YYYY-MM-DD");
		rc = -1;
	}
	if (rc == 0 && buf_addc(&b, ']') < 0) {
		snprintf(err, sizeof(err), "answer too large");
		rc = -1;
	}
	if (rc == 0)
		listener_respond(req, 200, "application/json", b.p, b.len, NULL);
	else
		listener_respond_error(req, 400, err);
	buf_release(&b);
}

int demo_crm_start(uv_loop_t *loop, const struct demo_crm_config *cfg, struct demo_crm **out,
		   char *err, size_t errlen)
{
	struct listener_config lc = { 0 };
	struct demo_crm *d = calloc(1, sizeof(*d));

	*out = NULL;
	if (!d || !(d->key = strdup(cfg->key && *cfg->key ? cfg->key : DEMO_CRM_KEY)) ||
	    !(d->flaky_key = strdup(cfg->flaky_key && *cfg->flaky_key ? cfg->flaky_key
								  : DEMO_CRM_FLAKY_KEY))) {
		if (d)
			free(d->key);
		free(d);
		snprintf(err, errlen, "demo crm: out of memory");
		return -1;
	}
	d->loop = loop;
	d->fail_every = cfg->fail_every ? cfg->fail_every : DEMO_CRM_FAIL_EVERY;
	d->seed = cfg->seed ? cfg->seed : DEMO_CRM_SEED;
	d->step_ms = cfg->step_ms ? cfg->step_ms : DEMO_CRM_STEP_MS;
	d->max_orders = cfg->max_orders ? cfg->max_orders : DEMO_CRM_ORDERS_MAX;
	if (d->max_orders > UINT32_MAX / 4)
		d->max_orders = UINT32_MAX / 4;
	d->clock_ms = cfg->clock_ms;
	d->clock_arg = cfg->clock_arg;
	d->start_ms = demo__now_ms(d);
	d->route = (struct listener_route){ LISTENER_GET, "/orders", demo__orders, d };
	lc.addr = cfg->addr ? cfg->addr : DEMO_CRM_LISTEN;
	lc.routes = &d->route;
	lc.nroutes = 1;
	/* its clients are a daemon or two on one host: no per-address cap */
	lc.limits.max_connections_per_ip = 1024;
	if (listener_start(loop, &lc, &d->l, err, errlen) < 0) {
		free(d->flaky_key);
		free(d->key);
		free(d);
		return -1;
	}
	*out = d;
	return 0;
}

int demo_crm_port(const struct demo_crm *d)
{
	return listener_port(d->l);
}

size_t demo_crm_orders(const struct demo_crm *d)
{
	return d->norders;
}

static void demo__closed(struct listener *l, void *data)
{
	struct demo_crm *d = data;
	void (*cb)(void *data) = d->close_cb;
	void *cb_data = d->close_data;
	size_t i;

	for (i = 0; i < d->norders; i++)
		free(d->orders[i].id);
	free(d->orders);
	free(d->slots);
	free(d->flaky_key);
	free(d->key);
	free(d);
	if (cb)
		cb(cb_data);
}

void demo_crm_close(struct demo_crm *d, void (*cb)(void *data), void *data)
{
	d->close_cb = cb;
	d->close_data = data;
	listener_close(d->l, demo__closed, d);
}

/* ------------------------------------------------------------ the program */

struct demo_main {
	uv_signal_t term, intr;
	struct demo_crm *d;
};

static void demo__stopped(void *data)
{
	struct demo_main *m = data;

	uv_close((uv_handle_t *)&m->term, NULL);
	uv_close((uv_handle_t *)&m->intr, NULL);
}

static void demo__signal(uv_signal_t *s, int signum)
{
	struct demo_main *m = s->data;

	if (!m->d)
		return;
	log_info("demo crm: stopping", "signal=%d orders=%zu", signum, demo_crm_orders(m->d));
	demo_crm_close(m->d, demo__stopped, m);
	m->d = NULL;
}

int demo_crm_run(const struct demo_crm_config *cfg)
{
	struct demo_main m = { 0 };
	uv_loop_t loop;
	char err[512], q[600];
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	if (uv_loop_init(&loop) < 0) {
		log_error("demo crm: cannot start the event loop", "component=%s", "demo_crm");
		return 1;
	}
	if (demo_crm_start(&loop, cfg, &m.d, err, sizeof(err)) < 0) {
		log_error("demo crm: cannot start", "error=%s", log_quote(q, sizeof(q), err));
		uv_run(&loop, UV_RUN_DEFAULT);
		goto out;
	}
	uv_signal_init(&loop, &m.term);
	uv_signal_init(&loop, &m.intr);
	m.term.data = m.intr.data = &m;
	uv_signal_start(&m.term, demo__signal, SIGTERM);
	uv_signal_start(&m.intr, demo__signal, SIGINT);
	log_info("demo crm: listening", "addr=%s port=%d step_ms=%" PRIu64 " seed=%" PRIu64,
		 cfg->addr ? cfg->addr : DEMO_CRM_LISTEN, demo_crm_port(m.d),
		 cfg->step_ms ? cfg->step_ms : (uint64_t)DEMO_CRM_STEP_MS,
		 cfg->seed ? cfg->seed : (uint64_t)DEMO_CRM_SEED);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	if (uv_loop_close(&loop) != 0)
		log_warn("demo crm: event loop closed with handles open", "component=%s", "demo_crm");
	return rc;
}
