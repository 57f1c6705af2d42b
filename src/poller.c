/* poller: selects a leased pair's leads, polls the CRM with the offer's
 * rule, and applies the edits with their history and poll-run record in one
 * statement per batch (see poller.h). */
#include "poller.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "lead.h"
#include "log.h"
#include "macro.h"
#include "mask.h"
#include "poll_sql.h"
#include "rule_pool.h"
#include "ruletest.h"
#include "status.h"
#include "store.h"
#include "tz.h"

#define POLL_RULE_NAME_MAX 72
#define POLL_ERR_MAX 1024
#define POLL_EXCERPT 512 /* bytes of an answer `leadsync check` prints */

static const char *const poll_outcome_names[POLL_OUTCOME_COUNT] = {
	"ok",        "http_error",  "timeout",       "connect_error", "tls_error",
	"too_large", "bad_answer",  "redirect_error", "decode_error", "rule_error",
	"config_error", "db_error", "lease_lost",    "cancelled",     "internal_error",
	"caught_up",
};

const char *poll_outcome_name(enum poll_outcome o)
{
	return (unsigned)o < POLL_OUTCOME_COUNT ? poll_outcome_names[o] : "unknown";
}

/* ------------------------------------------------------------ structures */

/* One loaded version of a rule; pairs hold a reference while they poll, so
 * a reload never frees a runtime in use. rt is the runtime loaded on the
 * loop (its variant info is read there: info never changes after a load);
 * the rule threads run the rule on runtimes taken from idle, each used by
 * one thread at a time: rt itself first, then clones of it (rule_clone),
 * made when every one is busy, so there are at most as many as threads. */
struct poll_rule {
	struct rule_rt *rt;
	unsigned refs;          /* loop only */
	pthread_mutex_t mu;     /* idle */
	struct rule_rt **idle;
	size_t nidle, capidle, made;
};

struct poll_rule_entry {
	struct poll_rule_entry *next;
	char name[POLL_RULE_NAME_MAX];
	struct poll_rule *cur; /* NULL: not loaded; err says why */
	char err[POLL_ERR_MAX];
	uint64_t failed_ms;
};

/* What a poll needs of its offer; loaded on a db worker with the claim. */
struct poll_offer {
	int64_t id;
	bool found;
	char rule[POLL_RULE_NAME_MAX];
	char tz[TZ_NAME_MAX + 1];
	struct macro_param *params;
	size_t nparams;
	struct mask mask; /* the offer's secrets */
	struct lead_offer settings;
	int rate_limit;
	int batch[2]; /* overrides for processing, accepted; 0: the rule's */
	int days;     /* override for dates; 0: the rule's */
	struct rule_goal *goals;
	size_t ngoals;
	struct rule_currency *currs;
	size_t ncurrs;
	char *words; /* offers.status_words as text ("{}": none) */
};

/* An offer's status words, parsed (status_words_from_json) and shared by
 * the pairs of that offer that poll with them, each holding a reference. */
struct poll_words {
	unsigned refs;
	struct status_words *w; /* never NULL: an offer without words has no entry */
	char json[];            /* the text they were parsed from */
};

/* The words cache: by offer id (open addressing, linear probing, at most
 * half full; offer 0 is an empty slot, ids are positive). See
 * poller__words_get for when an entry is reparsed. */
struct poll_words_slot {
	int64_t offer;
	struct poll_words *cur; /* NULL: the offer had no words at its last claim */
};

struct poll_range {
	struct macro_civil from, to;
	size_t leads; /* open leads counted when the ranges were made */
};

struct poll_batch;
struct poll_check;

struct poll_pair {
	struct poller *p;
	struct sched_pair *sp;
	struct poll_pair *prev, *next;      /* p->pairs */
	struct poll_pair *wprev, *wnext;    /* p->wait: waiting for room */
	bool waiting;
	struct poll_offer off;
	enum rule_variant v;
	struct poll_rule *rule;
	struct poll_words *words; /* the offer's words; NULL: none */
	char rate_key[40];
	size_t batch;
	int days;
	/* selection */
	int64_t cursor;
	bool started, exhausted, selecting, finishing;
	struct poll_range *ranges;
	size_t nranges, rnext;
	/* batches alive: selected (or a record to write), not yet ended */
	struct poll_batch *batches;
	unsigned active;
	/* outcome */
	unsigned nbatches, nfailed;
	bool stop_more;         /* a failure that stops further batches */
	bool aborted;           /* lease lost or shutdown deadline */
	bool cut;               /* a batch was cancelled: the run is incomplete */
	enum poll_outcome abort_outcome;
	enum poll_outcome first_fail;
	char err[POLL_ERR_MAX];
	unsigned retry_after;
	int64_t last_run;
	uint64_t asked, changed, skipped, unknown, refused, unrecognised, pages;
	/* id variants: open leads without an external id, never asked; counted
	 * once per run (its first selection) and stored on its first row */
	uint64_t no_ext;
	bool no_ext_counted, no_ext_given;
	uint64_t t0_ms;
	bool caught_row;
	struct poll_check *check;
	/* the rule threads: this pair's batches take turns in one lane */
	struct rule_pool_lane lane;
	atomic_bool rules_cancel; /* aborted: jobs not started are skipped */
	int64_t rule_ns;          /* the run's rule CPU time */
	unsigned rule_calls;
};

enum poll_wmode { W_ROW, W_LIGHT, W_FULL };

struct poll_batch {
	struct poll_pair *pair;
	struct poll_batch *prev, *next;
	bool slot;           /* holds a place in batches_max */
	struct lead *leads;
	uint32_t *xmin;      /* beside leads: the row versions the select read */
	size_t nleads, reserved;
	struct macro_dates dates;
	bool has_dates;
	struct rule_batch rb;
	struct rule_request req;
	struct rule_result res;
	struct http_client_req *h;
	const struct rule_request *cur; /* the request in flight */
	/* the poll_runs row */
	int64_t offer;
	enum rule_variant v;
	const char *worker;
	bool caught_up;
	int64_t missed;
	int64_t t_start_us, t_end_us;
	char method[8];
	char *url;
	long status;
	uint64_t bytes;
	unsigned pages;
	size_t unknown, refused, unrecognised;
	uint64_t no_ext;     /* the run's leads without an external id (first row) */
	struct buf head;
	char ctype[128];        /* Content-Type of the last answer ("": none) */
	struct buf notes;
	enum poll_outcome outcome;
	char err[POLL_ERR_MAX];
	unsigned retry_after;
	/* the write */
	struct db_job job;
	enum poll_wmode wmode;
	struct poll_batch *defer_next; /* p->deferred: ends on the next loop turn */
	struct buf upd, hist;
	size_t *chg;         /* per changed lead: index into leads */
	const struct lead **after;
	size_t nchg;
	size_t applied, skipped;
	bool lease_lost;
	int64_t run_id;
	struct ruletest_page *saved; /* check --save: the pages as fetched */
	size_t nsaved;
	/* the rule's work, on a rule thread (poller__rule_work) */
	struct rule_pool_job rjob;
	bool rule_first;        /* the job is prepare; else process of ans */
	char *ans;              /* the answer, taken from the http result */
	size_t ans_len;
	int ans_status;
	char *ans_ctype;        /* as sent; NULL: none */
	int rule_rc;
	enum rule_limit rule_lim;
	char rule_err[POLL_ERR_MAX];
	int64_t rule_ns;        /* the batch's rule CPU time */
};

struct poller {
	uv_loop_t *loop;
	struct poller_config cfg;
	char rules_dir[4096];
	char tz[TZ_NAME_MAX + 1];
	char worker[SCHED_WORKER_MAX];
	struct scheduler *sched;
	struct http_client *http;
	bool own_http;
	struct poll_rule_entry *rules;
	struct rule_pool *pool;        /* the rule threads */
	struct poll_words_slot *words; /* the words cache */
	size_t words_cap, words_used;
	struct poll_pair *pairs;
	unsigned npairs;
	struct poll_pair *wait_head, *wait_tail;
	unsigned batches_used;
	size_t leads_used;
	unsigned jobs;
	bool stopping;
	uv_timer_t deadline;
	uv_timer_t defer;              /* ends the deferred batches */
	struct poll_batch *deferred;
	unsigned handles;
	void (*stop_cb)(void *);
	void *stop_data;
	struct buf *report;  /* check mode: the report */
	bool dry_run;
	unsigned nsaved;     /* check --save: cases written */
	struct poller_stats st;
	struct poller_count *counts; /* sorted by offer, variant (/metrics) */
	size_t ncounts, capcounts;
};

/* An integer column (PostgreSQL's text is well-formed). */
static int poller__int(const char *v)
{
	return (int)strtol(v, NULL, 10);
}

static uint64_t poller__now_ms(void)
{
	return uv_hrtime() / 1000000;
}

static int64_t poller__wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void poller__rep(struct poller *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a line to the check report, if any. */
static void poller__rep(struct poller *p, const char *fmt, ...)
{
	va_list ap;

	if (!p->report)
		return;
	va_start(ap, fmt);
	if (buf_vaddf(p->report, fmt, ap) < 0) {
		/* a full report just stops growing */
	}
	va_end(ap);
}

/* ------------------------------------------------------------ masking */

/* Masks with the offer's secrets into a fresh string (NULL when out of
 * memory). */
static char *poller__masked(const struct poll_offer *o, const char *s, size_t len, bool url)
{
	return mask_dup(&o->mask, s, len, url ? MASK_URL : MASK_TEXT);
}

/* Replaces text in place with its masked form. */
static void poller__mask_inplace(const struct poll_offer *o, char *s, size_t size)
{
	char *m;

	if (!o->mask.n || !*s)
		return;
	m = poller__masked(o, s, strlen(s), false);
	if (m) {
		lead_strlcpy(s, size, m);
		free(m);
	}
}

/* ------------------------------------------------------------ rules cache */

static void poller__rule_put(struct poll_rule *r)
{
	size_t i;

	if (r && --r->refs == 0) {
		/* no job holds a runtime: every pair holding r has ended */
		for (i = 0; i < r->nidle; i++)
			if (r->idle[i] != r->rt)
				rule_free(r->idle[i]);
		rule_free(r->rt);
		free(r->idle);
		pthread_mutex_destroy(&r->mu);
		free(r);
	}
}

/* On a rule thread: a runtime of r for this thread alone (NULL with err
 * when a clone cannot be made). */
static struct rule_rt *poller__rt_take(struct poll_rule *r, char *err, size_t errlen)
{
	struct rule_rt *rt = NULL;

	pthread_mutex_lock(&r->mu);
	if (r->nidle)
		rt = r->idle[--r->nidle];
	else
		r->made++;
	pthread_mutex_unlock(&r->mu);
	if (!rt && rule_clone(r->rt, &rt, err, errlen) < 0) {
		pthread_mutex_lock(&r->mu);
		r->made--;
		pthread_mutex_unlock(&r->mu);
		return NULL;
	}
	return rt;
}

/* Gives rt back to r's idle runtimes (there is room: capidle is kept at
 * made, every runtime ever made). */
static void poller__rt_give(struct poll_rule *r, struct rule_rt *rt)
{
	struct rule_rt **v;

	pthread_mutex_lock(&r->mu);
	if (r->nidle == r->capidle) {
		v = realloc(r->idle, (r->made + 1) * sizeof(*v));
		if (!v) { /* out of memory: this one is dropped */
			r->made--;
			pthread_mutex_unlock(&r->mu);
			if (rt != r->rt)
				rule_free(rt);
			return;
		}
		r->idle = v;
		r->capidle = r->made + 1;
	}
	r->idle[r->nidle++] = rt;
	pthread_mutex_unlock(&r->mu);
}

static int poller__rule_load(struct poller *p, struct poll_rule_entry *e, char *err, size_t errlen)
{
	char path[4096 + POLL_RULE_NAME_MAX + 8];
	struct poll_rule *r;
	struct rule_rt *rt;

	snprintf(path, sizeof(path), "%s/%s.lua", p->rules_dir, e->name);
	p->st.rule_loads++;
	if (rule_load(path, &p->cfg.rule_limits, &rt, err, errlen) < 0) {
		p->st.rule_load_errors++;
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		rule_free(rt);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->rt = rt;
	r->refs = 1;
	pthread_mutex_init(&r->mu, NULL);
	r->idle = malloc(sizeof(*r->idle));
	if (r->idle) { /* else the first job clones it */
		r->idle[0] = rt;
		r->nidle = r->capidle = 1;
	}
	r->made = 1;
	poller__rule_put(e->cur);
	e->cur = r;
	e->err[0] = '\0';
	return 0;
}

/* The current version of rule name, with a reference taken; NULL with err
 * when it cannot be loaded. */
static struct poll_rule *poller__rule_get(struct poller *p, const char *name, char *err,
					  size_t errlen)
{
	struct poll_rule_entry *e;

	for (e = p->rules; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			break;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->next = p->rules;
		p->rules = e;
	}
	if (!e->cur) {
		if (e->err[0] && poller__now_ms() - e->failed_ms < (uint64_t)p->cfg.rule_retry_s * 1000) {
			snprintf(err, errlen, "%s", e->err);
			return NULL;
		}
		if (poller__rule_load(p, e, e->err, sizeof(e->err)) < 0) {
			e->failed_ms = poller__now_ms();
			log_warn("rule not loaded", "rule=%s err=\"%s\"", e->name, e->err);
			snprintf(err, errlen, "%s", e->err);
			return NULL;
		}
	}
	e->cur->refs++;
	return e->cur;
}

int poller_reload_rules(struct poller *p)
{
	struct poll_rule_entry *e;
	char err[POLL_ERR_MAX], q[POLL_ERR_MAX + 64];
	int failed = 0;

	for (e = p->rules; e; e = e->next) {
		if (poller__rule_load(p, e, err, sizeof(err)) == 0) {
			log_info("rule reloaded", "rule=%s", e->name);
			continue;
		}
		failed++;
		log_quote(q, sizeof(q), err);
		if (e->cur)
			log_warn("rule reload failed, previous version kept", "rule=%s err=%s", e->name, q);
		else {
			snprintf(e->err, sizeof(e->err), "%s", err);
			e->failed_ms = poller__now_ms();
			log_warn("rule reload failed", "rule=%s err=%s", e->name, q);
		}
	}
	return failed;
}

/* ------------------------------------------------------------ words cache */

static void poller__words_put(struct poll_words *pw)
{
	if (pw && --pw->refs == 0) {
		status_words_free(pw->w);
		free(pw);
	}
}

static size_t poller__words_home(int64_t offer, size_t cap)
{
	return (size_t)(((uint64_t)offer * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (cap - 1);
}

/* The slot of offer; with add, made when missing (NULL: out of memory);
 * without, NULL when missing. */
static struct poll_words_slot *poller__words_slot(struct poller *p, int64_t offer, bool add)
{
	struct poll_words_slot *slot;
	size_t i, cap;

	for (i = p->words_cap ? poller__words_home(offer, p->words_cap) : 0; p->words_cap;
	     i = (i + 1) & (p->words_cap - 1)) {
		if (p->words[i].offer == offer)
			return &p->words[i];
		if (!p->words[i].offer)
			break;
	}
	if (!add)
		return NULL;
	if (2 * (p->words_used + 1) > p->words_cap) {
		cap = p->words_cap ? 2 * p->words_cap : 64;
		slot = calloc(cap, sizeof(*slot));
		if (!slot)
			return NULL;
		for (i = 0; i < p->words_cap; i++) {
			size_t k;

			if (!p->words[i].offer)
				continue;
			for (k = poller__words_home(p->words[i].offer, cap); slot[k].offer;)
				k = (k + 1) & (cap - 1);
			slot[k] = p->words[i];
		}
		free(p->words);
		p->words = slot;
		p->words_cap = cap;
	}
	for (i = poller__words_home(offer, p->words_cap); p->words[i].offer;)
		i = (i + 1) & (p->words_cap - 1);
	p->words[i].offer = offer;
	p->words[i].cur = NULL;
	p->words_used++;
	return &p->words[i];
}

/* The status words of offer o, with a reference for the caller (*out NULL
 * when the offer has none). The offer row, and so its status_words text, is
 * read with every claim; the words are parsed again only when that text
 * differs from the one the cached entry was parsed from, so an import that
 * changes them takes effect at the offer's next claim and an unchanged
 * offer is never reparsed. Pairs keep the version they began with. Entries
 * live as long as the poller: one per offer that had words (an offer whose
 * words went back to {} keeps an empty slot). Returns -1 with err (the
 * offer named) when the words do not parse; nothing is cached then. */
static int poller__words_get(struct poller *p, const struct poll_offer *o, struct poll_words **out,
			     char *err, size_t errlen)
{
	struct poll_words_slot *s = poller__words_slot(p, o->id, false);
	struct status_words *w = NULL;
	struct poll_words *pw;
	char why[POLL_ERR_MAX - 64];
	size_t len;

	*out = NULL;
	if (s && s->cur && strcmp(s->cur->json, o->words) == 0) {
		s->cur->refs++;
		*out = s->cur;
		return 0;
	}
	if (s) {
		poller__words_put(s->cur);
		s->cur = NULL;
	}
	if (status_words_from_json(o->words, &w, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "offer %" PRId64 ": status_words: %s", o->id, why);
		return -1;
	}
	if (!w)
		return 0;
	len = strlen(o->words);
	pw = malloc(sizeof(*pw) + len + 1);
	if (pw && !s)
		s = poller__words_slot(p, o->id, true);
	if (!pw || !s) {
		free(pw);
		status_words_free(w);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pw->refs = 2; /* the cache's and the caller's */
	pw->w = w;
	memcpy(pw->json, o->words, len + 1);
	s->cur = pw;
	p->st.words_parsed++;
	*out = pw;
	return 0;
}

/* ------------------------------------------------------------ offers */

static void poller__offer_release(struct poll_offer *o)
{
	size_t i;

	for (i = 0; i < o->nparams; i++) {
		free((char *)o->params[i].name);
		free((char *)o->params[i].value);
	}
	free(o->params);
	mask_release(&o->mask);
	for (i = 0; i < o->ngoals; i++)
		free((char *)o->goals[i].code);
	free(o->goals);
	free(o->currs);
	free(o->words);
	memset(o, 0, sizeof(*o));
}

static char *poller__json_text(const cJSON *v)
{
	char num[64];

	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (cJSON_IsNumber(v)) {
		if (v->valuedouble == (double)(int64_t)v->valuedouble && v->valuedouble < 9e15 &&
		    v->valuedouble > -9e15)
			snprintf(num, sizeof(num), "%" PRId64, (int64_t)v->valuedouble);
		else
			snprintf(num, sizeof(num), "%.17g", v->valuedouble);
		return strdup(num);
	}
	if (cJSON_IsTrue(v))
		return strdup("true");
	if (cJSON_IsFalse(v))
		return strdup("false");
	if (cJSON_IsNull(v))
		return strdup("");
	return cJSON_PrintUnformatted(v);
}

static int poller__offer_params(struct poll_offer *o, const char *params, const char *secret,
				char *err, size_t errlen)
{
	cJSON *root = cJSON_Parse(params), *sec = cJSON_Parse(secret), *it;
	size_t n = 0;
	int rc = -1;

	if (!cJSON_IsObject(root)) {
		snprintf(err, errlen, "offer %" PRId64 ": params are not a JSON object", o->id);
		goto out;
	}
	o->params = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*o->params));
	if (!o->params)
		goto oom;
	cJSON_ArrayForEach(it, root)
	{
		bool secret_name = false;
		const cJSON *s;
		char *value = poller__json_text(it);
		char *name = strdup(it->string ? it->string : "");

		o->params[n].name = name;
		o->params[n].value = value;
		o->nparams = ++n;
		if (!value || !name)
			goto oom;
		cJSON_ArrayForEach(s, sec)
		if (cJSON_IsString(s) && strcmp(s->valuestring, name) == 0)
			secret_name = true;
		if (mask_param(&o->mask, name, value, secret_name) < 0)
			goto oom;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	cJSON_Delete(root);
	cJSON_Delete(sec);
	return rc;
}

static int poller__money(const char *s, int64_t *out)
{
	return lead_money_parse(s, out);
}

static const char poller_offers_sql[] =
	"SELECT o.id, o.rule, o.params::text, array_to_json(o.secret_params)::text,"
	" coalesce(o.batch_processing, 0), coalesce(o.batch_accepted, 0),"
	" coalesce(o.days_dates, 0), o.hold_days, o.reject_reason, o.cancel_approved,"
	" coalesce(o.tz, ''), coalesce(o.rate_limit, 0), o.status_words::text"
	" FROM offers o WHERE o.id = ANY($1::bigint[])";

static const char poller_goals_sql[] =
	"SELECT g.offer, g.id, g.code, g.payout, g.wm, g.pay, g.ref, g.currency"
	" FROM goals g WHERE g.offer = ANY($1::bigint[]) ORDER BY g.offer, g.id";

static int poller__fill_offer(struct poll_offer *o, const PGresult *r, int row, char *err,
			      size_t errlen)
{
	o->found = true;
	snprintf(o->rule, sizeof(o->rule), "%s", PQgetvalue(r, row, 1));
	o->batch[0] = poller__int(PQgetvalue(r, row, 4));
	o->batch[1] = poller__int(PQgetvalue(r, row, 5));
	o->days = poller__int(PQgetvalue(r, row, 6));
	o->settings.hold_days = poller__int(PQgetvalue(r, row, 7));
	o->settings.reject_reason = poller__int(PQgetvalue(r, row, 8));
	o->settings.cancel_approved = PQgetvalue(r, row, 9)[0] == 't';
	snprintf(o->tz, sizeof(o->tz), "%s", PQgetvalue(r, row, 10));
	o->rate_limit = poller__int(PQgetvalue(r, row, 11));
	o->words = strdup(PQgetvalue(r, row, 12));
	if (!o->words) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return poller__offer_params(o, PQgetvalue(r, row, 2), PQgetvalue(r, row, 3), err, errlen);
}

static void poller__pair_free(struct poll_pair *pr);

/* sched_load_fn: offers, goals and currencies of the claimed pairs. */
static int poller__load(PGconn *c, struct sched_pair **pairs, size_t n, void *ud, char *err,
			size_t errlen)
{
	struct poller *p = ud;
	struct buf ids;
	PGresult *ro = NULL, *rg = NULL, *rc_ = NULL;
	const char *param;
	size_t i;
	int row, rc = -1;

	buf_init(&ids, 0);
	for (i = 0; i < n; i++) {
		struct poll_pair *pr = calloc(1, sizeof(*pr));

		if (!pr)
			goto oom;
		pr->p = p;
		pr->sp = pairs[i];
		pr->v = pairs[i]->variant;
		pr->off.id = pairs[i]->offer;
		pairs[i]->data = pr;
		if (buf_addf(&ids, "%s%" PRId64, i ? "," : "{", pairs[i]->offer) < 0)
			goto oom;
	}
	if (buf_addc(&ids, '}') < 0)
		goto oom;
	param = ids.p;
	ro = store_query(c, "offers", poller_offers_sql, 1, &param, err, errlen);
	rg = ro ? store_query(c, "goals", poller_goals_sql, 1, &param, err, errlen) : NULL;
	rc_ = rg ? store_query(c, "currencies", "SELECT id, iso FROM currencies ORDER BY id", 0, NULL,
			       err, errlen)
		 : NULL;
	if (!rc_)
		goto fail;
	for (i = 0; i < n; i++) {
		struct poll_offer *o = &((struct poll_pair *)pairs[i]->data)->off;
		int g, k;

		for (row = 0; row < PQntuples(ro); row++)
			if (strtoll(PQgetvalue(ro, row, 0), NULL, 10) == o->id)
				break;
		if (row == PQntuples(ro))
			continue; /* deleted meanwhile: the pair fails with config_error */
		if (poller__fill_offer(o, ro, row, err, errlen) < 0)
			goto fail;
		o->goals = calloc((size_t)PQntuples(rg) + 1, sizeof(*o->goals));
		o->currs = calloc((size_t)PQntuples(rc_) + 1, sizeof(*o->currs));
		if (!o->goals || !o->currs)
			goto oom;
		for (g = 0; g < PQntuples(rg); g++) {
			struct rule_goal *rgl = &o->goals[o->ngoals];
			const char *payout = PQgetvalue(rg, g, 3);

			if (strtoll(PQgetvalue(rg, g, 0), NULL, 10) != o->id)
				continue;
			rgl->offer = o->id;
			rgl->goal.id = strtoll(PQgetvalue(rg, g, 1), NULL, 10);
			rgl->code = strdup(PQgetvalue(rg, g, 2));
			if (!rgl->code)
				goto oom;
			o->ngoals++;
			rgl->goal.payout = strcmp(payout, "percent") == 0	? PAYOUT_PERCENT
					   : strcmp(payout, "recurring") == 0 ? PAYOUT_RECURRING
									       : PAYOUT_FIXED;
			if (poller__money(PQgetvalue(rg, g, 4), &rgl->goal.wm) < 0 ||
			    poller__money(PQgetvalue(rg, g, 5), &rgl->goal.pay) < 0 ||
			    poller__money(PQgetvalue(rg, g, 6), &rgl->goal.ref) < 0) {
				snprintf(err, errlen, "goal %" PRId64 ": unreadable amount", rgl->goal.id);
				goto fail;
			}
			rgl->goal.curr = poller__int(PQgetvalue(rg, g, 7));
		}
		for (k = 0; k < PQntuples(rc_); k++) {
			o->currs[k].id = poller__int(PQgetvalue(rc_, k, 0));
			snprintf(o->currs[k].iso, sizeof(o->currs[k].iso), "%s", PQgetvalue(rc_, k, 1));
		}
		o->ncurrs = (size_t)PQntuples(rc_);
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	for (i = 0; i < n; i++)
		if (pairs[i]->data) {
			poller__pair_free(pairs[i]->data);
			pairs[i]->data = NULL;
		}
out:
	PQclear(ro);
	PQclear(rg);
	PQclear(rc_);
	buf_release(&ids);
	return rc;
}

/* ------------------------------------------------------------ leads */

/* The page's leads, and beside them their row versions (*xmin, the
 * caller frees both). */
/* Rows [from, from + n) of a page select, read into fresh arrays (a
 * batch's own: no copy of a whole page first, which for 100 leads is
 * 140 KB, an mmap and munmap each time). NULL with err when out of memory
 * or a row does not read. */
static struct lead *poller__rows_at(const PGresult *r, size_t from, size_t n, uint32_t **xmin,
				    char *err, size_t errlen)
{
	struct lead *l = malloc((n ? n : 1) * sizeof(*l));
	uint32_t *x = malloc((n ? n : 1) * sizeof(*x));
	size_t i;

	*xmin = NULL;
	if (!l || !x) {
		free(l);
		free(x);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (poll_sql_lead_row(r, (int)(from + i), &l[i], &x[i]) < 0) {
			snprintf(err, errlen, "lead %" PRId64 ": unreadable amount", l[i].id);
			free(l);
			free(x);
			return NULL;
		}
	}
	*xmin = x;
	return l;
}

static struct lead *poller__rows(const PGresult *r, size_t *n, uint32_t **xmin, char *err,
				 size_t errlen)
{
	struct lead *l = poller__rows_at(r, 0, (size_t)PQntuples(r), xmin, err, errlen);

	*n = l ? (size_t)PQntuples(r) : 0;
	return l;
}

/* ------------------------------------------------------------ jobs: select */

struct poll_sel {
	struct db_job job;
	struct poll_pair *pair;
	int64_t offer;
	enum rule_variant v;
	unsigned k;           /* batches asked */
	size_t per;           /* id variants: leads per batch; dates: cap per range */
	int64_t cursor;
	struct macro_dates *dates; /* dates: k ranges */
	size_t reserved;
	bool count_no_ext;    /* also count the leads without an external id */
	bool more;            /* id variants: leads beyond these k batches exist */
	/* out */
	uint64_t no_ext;
	struct lead **leads;
	uint32_t **xmin;      /* beside leads: each lead's row version */
	size_t *n;
	size_t total;
};

static const char poller_sel_processing_sql[] = POLL_SQL_SEL_PROCESSING;
static const char poller_sel_accepted_sql[] = POLL_SQL_SEL_ACCEPTED;
static const char poller_no_ext_processing_sql[] = POLL_SQL_NO_EXT_PROCESSING;
static const char poller_no_ext_accepted_sql[] = POLL_SQL_NO_EXT_ACCEPTED;
static const char poller_sel_dates_sql[] =
	"SELECT " POLL_LEAD_COLS " FROM leads l WHERE l.offer = $1"
	" AND l.status NOT IN (5, 10, 11, 12) AND l.created >= to_timestamp($2)"
	" AND l.created < to_timestamp($3) ORDER BY l.id LIMIT $4";
static const char poller_days_sql[] =
	"SELECT to_char((l.created AT TIME ZONE $2)::date, 'YYYY-MM-DD'), count(*) FROM leads l"
	" WHERE l.offer = $1 AND l.status NOT IN (5, 10, 11, 12)"
	" AND l.created >= now() - make_interval(days => $3::integer)"
	" GROUP BY 1 ORDER BY 1";

static int poller__sel_run(PGconn *c, struct db_job *job)
{
	struct poll_sel *s = job->data;
	char a[24], b[24], cc[24], d[24];
	const char *params[4] = { a, b, cc, d };
	PGresult *r = NULL;
	unsigned i;

	snprintf(a, sizeof(a), "%" PRId64, s->offer);
	if (s->v != RULE_DATES) {
		size_t rows, off = 0;

		snprintf(b, sizeof(b), "%" PRId64, s->cursor);
		/* one row more than asked for tells whether a page follows:
		 * an offer whose leads fill its batches exactly needs no
		 * select that finds nothing */
		snprintf(cc, sizeof(cc), "%zu", s->per * s->k + 1);
		snprintf(d, sizeof(d), "%s", s->count_no_ext ? "true" : "false");
		/* prepared: planning costs as much as running it on a page */
		r = s->v == RULE_PROCESSING
			    ? store_query_prepared(c, "leadsync_poll_sel_processing", "select leads",
						   poller_sel_processing_sql, 4, params, job->err,
						   sizeof(job->err))
			    : store_query_prepared(c, "leadsync_poll_sel_accepted", "select leads",
						   poller_sel_accepted_sql, 4, params, job->err,
						   sizeof(job->err));
		if (!r)
			return DB_EFAIL;
		if (s->count_no_ext && PQntuples(r))
			s->no_ext = strtoull(PQgetvalue(r, 0, POLL_NO_EXT_COL), NULL, 10);
		else if (s->count_no_ext) {
			PGresult *rn = store_query(c, "count leads without ext",
						   s->v == RULE_PROCESSING
							   ? poller_no_ext_processing_sql
							   : poller_no_ext_accepted_sql,
						   1, params, job->err, sizeof(job->err));

			if (!rn) {
				PQclear(r);
				return DB_EFAIL;
			}
			s->no_ext = strtoull(PQgetvalue(rn, 0, 0), NULL, 10);
			PQclear(rn);
		}
		rows = (size_t)PQntuples(r);
		s->more = rows > s->per * s->k;
		if (s->more)
			rows = s->per * s->k;
		s->total = rows;
		for (i = 0; i < s->k && off < rows; i++) {
			size_t m = rows - off < s->per ? rows - off : s->per;

			s->leads[i] = poller__rows_at(r, off, m, &s->xmin[i], job->err,
						      sizeof(job->err));
			if (!s->leads[i]) {
				PQclear(r);
				return DB_EFAIL;
			}
			s->n[i] = m;
			off += m;
		}
		PQclear(r);
		return DB_OK;
	}
	for (i = 0; i < s->k; i++) {
		snprintf(b, sizeof(b), "%" PRId64, s->dates[i].t_from);
		snprintf(cc, sizeof(cc), "%" PRId64, s->dates[i].t_tom);
		snprintf(d, sizeof(d), "%zu", s->per);
		r = store_query(c, "select leads", poller_sel_dates_sql, 4, params, job->err,
				sizeof(job->err));
		if (!r)
			return DB_EFAIL;
		s->leads[i] = poller__rows(r, &s->n[i], &s->xmin[i], job->err, sizeof(job->err));
		PQclear(r);
		if (!s->leads[i])
			return DB_EFAIL;
		s->total += s->n[i];
	}
	return DB_OK;
}

static void poller__sel_free(struct poll_sel *s)
{
	unsigned i;

	for (i = 0; i < s->k; i++) {
		free(s->leads[i]);
		free(s->xmin[i]);
	}
	free(s->leads);
	free(s->xmin);
	free(s->n);
	free(s->dates);
	free(s);
}

struct poll_days {
	struct db_job job;
	struct poll_pair *pair;
	int64_t offer;
	char tz[TZ_NAME_MAX + 1];
	unsigned age;
	struct macro_civil *day;
	size_t *count;
	size_t n;
};

static int poller__days_run(PGconn *c, struct db_job *job)
{
	struct poll_days *d = job->data;
	char a[24], age[16];
	const char *params[3] = { a, d->tz[0] ? d->tz : "UTC", age };
	PGresult *r;
	size_t i, rows;

	snprintf(a, sizeof(a), "%" PRId64, d->offer);
	snprintf(age, sizeof(age), "%u", d->age);
	r = store_query(c, "open days", poller_days_sql, 3, params, job->err, sizeof(job->err));
	if (!r)
		return DB_EFAIL;
	rows = (size_t)PQntuples(r);
	d->day = calloc(rows + 1, sizeof(*d->day));
	d->count = calloc(rows + 1, sizeof(*d->count));
	if (!d->day || !d->count) {
		PQclear(r);
		snprintf(job->err, sizeof(job->err), "out of memory");
		return DB_EFAIL;
	}
	for (i = 0; i < rows; i++) {
		const char *v = PQgetvalue(r, (int)i, 0);

		if (sscanf(v, "%d-%d-%d", &d->day[i].y, &d->day[i].m, &d->day[i].d) != 3)
			continue;
		d->count[d->n] = (size_t)strtoull(PQgetvalue(r, (int)i, 1), NULL, 10);
		d->day[d->n] = d->day[i];
		d->n++;
	}
	PQclear(r);
	return DB_OK;
}

/* ------------------------------------------------------------ jobs: write */

/* The run row's parameters $1-$25 (poll_sql.h) into params; n is the
 * scratch space their numbers are written in. */
static void poller__run_params(const struct poll_batch *b, const char **params, char n[][24])
{
	int i = 0;

	snprintf(n[0], 24, "%" PRId64, b->offer);
	snprintf(n[1], 24, "%" PRId64, b->t_start_us);
	snprintf(n[2], 24, "%" PRId64, b->t_end_us);
	snprintf(n[3], 24, "%ld", b->status);
	snprintf(n[4], 24, "%" PRIu64, b->bytes);
	snprintf(n[5], 24, "%zu", b->nleads);
	snprintf(n[6], 24, "%zu", b->applied);
	snprintf(n[7], 24, "%zu", b->unknown);
	snprintf(n[8], 24, "%zu", b->refused);
	snprintf(n[9], 24, "%zu", b->unrecognised);
	snprintf(n[10], 24, "%zu", b->skipped);
	snprintf(n[11], 24, "%u", b->pages);
	snprintf(n[12], 24, "%" PRId64, b->missed);
	snprintf(n[13], 24, "%" PRIu64, b->no_ext);
	snprintf(n[14], 24, "%.3f", (double)b->rule_ns / 1e6);
	params[i++] = n[0];
	params[i++] = rule_variant_name(b->v);
	params[i++] = b->worker;
	params[i++] = n[1];
	params[i++] = n[2];
	params[i++] = b->method[0] ? b->method : NULL;
	params[i++] = b->url;
	params[i++] = b->status ? n[3] : NULL;
	params[i++] = b->pages ? n[4] : NULL;
	params[i++] = n[5];
	params[i++] = n[6];
	params[i++] = n[7];
	params[i++] = n[8];
	params[i++] = n[9];
	params[i++] = n[10];
	params[i++] = n[11];
	params[i++] = poll_outcome_name(b->outcome);
	params[i++] = b->err[0] ? b->err : NULL;
	params[i++] = b->pages ? b->head.p : NULL;
	params[i++] = b->caught_up ? "true" : "false";
	params[i++] = n[12];
	params[i++] = b->notes.len ? b->notes.p : NULL;
	params[i++] = b->ctype[0] ? b->ctype : NULL;
	params[i++] = n[13];
	params[i++] = n[14];
}

/* The index in b->chg of the change of lead id (changes are few: a scan). */
static size_t poller__chg_of(const struct poll_batch *b, int64_t id)
{
	size_t j;

	for (j = 0; j < b->nchg; j++)
		if (b->leads[b->chg[j]].id == id)
			return j;
	return b->nchg;
}

/* W_ROW, W_LIGHT: the run's row alone (unchanged leads are not written).
 * W_FULL: POLL_SQL_WRITE, one autocommit statement (poll_sql.h). */
static int poller__write_run(PGconn *c, struct db_job *job)
{
	struct poll_batch *b = job->data;
	char n[15][24];
	const char *params[POLL_SQL_WRITE_PARAMS];
	struct buf lg;
	PGresult *r;
	const char *p;
	int rc = DB_EFAIL;

	buf_init(&lg, 0);
	b->applied = b->skipped = 0;
	poller__run_params(b, params, n);
	if (b->wmode != W_FULL) {
		r = store_query_prepared(c, "leadsync_poll_row", "poll run", POLL_SQL_ROW,
					 POLL_SQL_ROW_PARAMS, params, job->err, sizeof(job->err));
		if (!r)
			goto out;
		b->run_id = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
		PQclear(r);
		rc = DB_OK;
		goto out;
	}
	params[25] = b->upd.p;
	params[26] = b->hist.p;
	params[27] = b->v == RULE_DATES ? "dates" : "poll";
	/* prepared: planning this statement costs about 1 ms of the server's
	 * CPU, a fifth of a batch's (bench/BENCHMARKS.md) */
	r = store_query_prepared(c, "leadsync_poll_write", "poll write", POLL_SQL_WRITE,
				 POLL_SQL_WRITE_PARAMS, params, job->err, sizeof(job->err));
	if (!r)
		goto out;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
		PQclear(r);
		b->lease_lost = true;
		snprintf(job->err, sizeof(job->err), "the lease of offer %" PRId64 " %s is lost",
			 b->offer, rule_variant_name(b->v));
		goto out;
	}
	b->run_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	/* the ids written, "{101,102}": the log lines, and what was skipped */
	for (p = PQgetvalue(r, 0, 2); *p; p++) {
		char *end;
		int64_t id;
		size_t j;

		if (*p < '0' || *p > '9')
			continue;
		id = strtoll(p, &end, 10);
		p = end - 1;
		j = poller__chg_of(b, id);
		if (j == b->nchg)
			continue;
		b->applied++;
		if (log_leads_on()) {
			struct log_lead ll = { id, b->offer, b->run_id, b->leads[b->chg[j]].status,
					       b->after[j]->status };

			if (buf_add(&lg, &ll, sizeof(ll)) < 0) {
				/* the log lines are best effort */
			}
		}
	}
	PQclear(r);
	b->skipped = b->nchg - b->applied;
	log_lead_changes(b->v == RULE_DATES ? "dates" : "poll", (struct log_lead *)(void *)lg.p,
			 lg.len / sizeof(struct log_lead));
	rc = DB_OK;
out:
	buf_release(&lg);
	return rc;
}

/* ------------------------------------------------------------ pairs, batches */

static void poller__pair_fill(struct poll_pair *pr);
static void poller__pair_maybe_finish(struct poll_pair *pr);
static void poller__batch_end(struct poll_batch *b);
static void poller__defer_cb(uv_timer_t *t);
static void poller__batch_write(struct poll_batch *b, enum poll_wmode m);
static void poller__check_pair_done(struct poll_pair *pr, const struct sched_result *r);

static void poller__pair_free(struct poll_pair *pr)
{
	poller__offer_release(&pr->off);
	poller__rule_put(pr->rule);
	poller__words_put(pr->words);
	free(pr->ranges);
	free(pr);
}

static void poller__wait_add(struct poll_pair *pr)
{
	struct poller *p = pr->p;

	if (pr->waiting)
		return;
	pr->waiting = true;
	pr->wnext = NULL;
	pr->wprev = p->wait_tail;
	if (p->wait_tail)
		p->wait_tail->wnext = pr;
	else
		p->wait_head = pr;
	p->wait_tail = pr;
}

static void poller__wait_del(struct poll_pair *pr)
{
	struct poller *p = pr->p;

	if (!pr->waiting)
		return;
	if (pr->wprev)
		pr->wprev->wnext = pr->wnext;
	else
		p->wait_head = pr->wnext;
	if (pr->wnext)
		pr->wnext->wprev = pr->wprev;
	else
		p->wait_tail = pr->wprev;
	pr->waiting = false;
	pr->wprev = pr->wnext = NULL;
}

/* Room freed: the pairs waiting for it go first, in order. A woken pair
 * may finish (and be freed) here. */
static void poller__wake(struct poller *p)
{
	unsigned n = p->npairs + 1;

	while (p->wait_head && p->batches_used < p->cfg.batches_max && p->leads_used < p->cfg.leads_max &&
	       n--) {
		struct poll_pair *pr = p->wait_head;
		bool again;

		poller__wait_del(pr);
		poller__pair_fill(pr);
		again = pr->waiting;
		poller__pair_maybe_finish(pr);
		if (again)
			break;
	}
}

/* Records the pair's first failure. stop: no further batches. */
static void poller__pair_fail(struct poll_pair *pr, enum poll_outcome o, const char *err, bool stop)
{
	if (!pr->nfailed++) {
		pr->first_fail = o;
		snprintf(pr->err, sizeof(pr->err), "%s", err);
	}
	if (stop)
		pr->stop_more = true;
}

static struct poll_batch *poller__batch_new(struct poll_pair *pr)
{
	struct poller *p = pr->p;
	struct poll_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->pair = pr;
	b->offer = pr->off.id;
	b->v = pr->v;
	b->worker = p->worker;
	b->caught_up = pr->sp->missed > 0;
	b->missed = pr->sp->missed;
	if (pr->no_ext && !pr->no_ext_given) {
		b->no_ext = pr->no_ext;
		pr->no_ext_given = true;
	}
	b->t_start_us = poller__wall_us();
	rule_request_init(&b->req);
	rule_result_init(&b->res);
	buf_init(&b->head, p->cfg.answer_head + 1);
	buf_init(&b->notes, POLL_NOTES_MAX + 1024);
	buf_init(&b->upd, BUF_DEFAULT_MAX);
	buf_init(&b->hist, BUF_DEFAULT_MAX);
	b->job.data = b;
	b->next = pr->batches;
	if (pr->batches)
		pr->batches->prev = b;
	pr->batches = b;
	pr->active++;
	return b;
}

/* ---- check --save: a batch kept as a `rule test` case folder ---- */

static void poller__save_drop(struct poll_batch *b)
{
	size_t i;

	for (i = 0; i < b->nsaved; i++) {
		free((char *)b->saved[i].body);
		free((char *)b->saved[i].content_type);
	}
	free(b->saved);
	b->saved = NULL;
	b->nsaved = 0;
}

/* Keeps an answer as fetched; a copy that fails shows as a missing page
 * when the case is replayed. */
static void poller__save_page(struct poll_batch *b, const struct rule_request *rq,
			      const struct http_result *res)
{
	struct ruletest_page *v, *pg;
	char *body;

	if (!b->pair->p->cfg.check_save)
		return;
	v = realloc(b->saved, (b->nsaved + 1) * sizeof(*v));
	if (!v)
		return;
	b->saved = v;
	pg = &v[b->nsaved];
	memset(pg, 0, sizeof(*pg));
	body = malloc(res->body_len + 1);
	if (!body)
		return;
	memcpy(body, res->body, res->body_len);
	body[res->body_len] = '\0';
	pg->body = body;
	pg->len = res->body_len;
	pg->status = (int)res->status;
	pg->format = rq->format;
	if (res->content_type && *res->content_type && !(pg->content_type = strdup(res->content_type))) {
		free(body);
		return;
	}
	b->nsaved++;
}

/* Writes the batch's case folder (once: the pages are dropped after). */
static void poller__save_case(struct poll_batch *b)
{
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;
	struct ruletest_save sv;
	char dir[4096], err[1024];

	if (!p->cfg.check_save || !b->nsaved)
		return;
	if (p->nsaved++ == 0)
		snprintf(dir, sizeof(dir), "%s", p->cfg.check_save);
	else
		snprintf(dir, sizeof(dir), "%s.%u", p->cfg.check_save, p->nsaved);
	memset(&sv, 0, sizeof(sv));
	sv.dir = dir;
	sv.rule = pr->off.rule;
	sv.rules_dir = p->rules_dir;
	sv.variant = pr->v;
	sv.offer = pr->off.id;
	sv.tz = pr->off.tz[0] ? pr->off.tz : p->tz;
	sv.settings = pr->off.settings;
	sv.status_words = pr->off.words;
	sv.goals = pr->off.goals;
	sv.ngoals = pr->off.ngoals;
	sv.currs = pr->off.currs;
	sv.ncurrs = pr->off.ncurrs;
	sv.params = pr->off.params;
	sv.nparams = pr->off.nparams;
	sv.mask = &pr->off.mask;
	sv.leads = b->leads;
	sv.nleads = b->nleads;
	sv.dates = b->has_dates ? &b->dates : NULL;
	sv.now = b->rb.now;
	sv.pages = b->saved;
	sv.npages = b->nsaved;
	sv.limits = &p->cfg.rule_limits;
	if (ruletest_case_save(&sv, err, sizeof(err)) < 0)
		poller__rep(p, "warning   case not saved: %s\n", err);
	else
		poller__rep(p, "saved     case %s: %zu lead%s, %zu page%s\n", dir, b->nleads,
			    b->nleads == 1 ? "" : "s", b->nsaved, b->nsaved == 1 ? "" : "s");
	poller__save_drop(b);
}

static void poller__batch_free(struct poll_batch *b)
{
	rule_request_release(&b->req);
	rule_result_release(&b->res);
	buf_release(&b->head);
	buf_release(&b->notes);
	buf_release(&b->upd);
	buf_release(&b->hist);
	free(b->leads);
	free(b->xmin);
	free(b->url);
	free(b->chg);
	free(b->after);
	free(b->ans);
	free(b->ans_ctype);
	poller__save_drop(b);
	free(b);
}

/* A batch failed: its row is written on its own (then it ends). */
static void poller__batch_fail(struct poll_batch *b, enum poll_outcome o, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void poller__batch_fail(struct poll_batch *b, enum poll_outcome o, const char *fmt, ...)
{
	va_list ap;

	b->outcome = o;
	va_start(ap, fmt);
	vsnprintf(b->err, sizeof(b->err), fmt, ap);
	va_end(ap);
	poller__mask_inplace(&b->pair->off, b->err, sizeof(b->err));
	poller__rep(b->pair->p, "error     %s: %s\n", poll_outcome_name(o), b->err);
	poller__save_case(b);
	poller__batch_write(b, W_ROW);
}

static void poller__write_done(struct db_job *job)
{
	struct poll_batch *b = job->data;
	struct poller *p = b->pair->p;

	p->jobs--;
	if (job->status == DB_OK) {
		if (b->wmode != W_ROW)
			poller__rep(p, "written   run %" PRId64 ": %zu lead%s changed, %zu skipped\n",
				    b->run_id, b->applied, b->applied == 1 ? "" : "s", b->skipped);
		poller__batch_end(b);
		return;
	}
	if (b->wmode == W_ROW) {
		p->st.rows_lost++;
		log_warn("poll run not recorded", "offer=%" PRId64 " variant=%s outcome=%s err=\"%s\"",
			 b->offer, rule_variant_name(b->v), poll_outcome_name(b->outcome), job->err);
		poller__batch_end(b);
		return;
	}
	/* the apply failed: nothing of it was written; record why, on its own */
	b->applied = b->skipped = 0;
	if (job->status == DB_EDOWN) {
		b->outcome = POLL_DB_ERROR;
		snprintf(b->err, sizeof(b->err), "%s", job->err);
		p->st.rows_lost++;
		log_warn("poll run not recorded", "offer=%" PRId64 " variant=%s outcome=db_error err=\"%s\"",
			 b->offer, rule_variant_name(b->v), job->err);
		poller__batch_end(b);
		return;
	}
	poller__batch_fail(b, b->lease_lost ? POLL_LEASE_LOST : POLL_DB_ERROR, "%s", job->err);
}

/* Ends b on the next turn of the loop, never from within the caller, so
 * no caller sees its pair freed under it. */
static void poller__defer_end(struct poll_batch *b)
{
	struct poller *p = b->pair->p;

	b->defer_next = p->deferred;
	p->deferred = b;
	p->jobs++;
	uv_timer_start(&p->defer, poller__defer_cb, 0, 0);
}

static void poller__batch_write(struct poll_batch *b, enum poll_wmode m)
{
	struct poller *p = b->pair->p;

	b->wmode = m;
	b->t_end_us = poller__wall_us();
	buf_cut_utf8(&b->notes, POLL_NOTES_MAX);
	if (p->dry_run) {
		poller__defer_end(b);
		return;
	}
	b->job.run = poller__write_run;
	b->job.group = NULL;
	b->job.done = poller__write_done;
	b->job.status = DB_OK;
	b->job.err[0] = '\0';
	if (db_submit(p->cfg.db, &b->job) < 0) {
		p->st.rows_lost++;
		if (b->outcome == POLL_OK) {
			b->outcome = POLL_DB_ERROR;
			snprintf(b->err, sizeof(b->err), "database queue full");
		}
		log_warn("poll run not recorded", "offer=%" PRId64 " variant=%s outcome=%s err=\"%s\"",
			 b->offer, rule_variant_name(b->v), poll_outcome_name(b->outcome),
			 "database queue full");
		poller__defer_end(b);
		return;
	}
	p->jobs++;
}

/* Does the outcome say the CRM (or the database) is in trouble, so that
 * the pair's other batches should wait for the back-off? */
static bool poller__stops(enum poll_outcome o)
{
	return o != POLL_OK && o != POLL_DECODE_ERROR && o != POLL_RULE_ERROR && o != POLL_CAUGHT_UP;
}

/* Counts a batch's outcome in the per-pair table (binary search; a pair
 * seen for the first time is inserted in order). Out of memory: only the
 * totals count it. */
/* The counts of (offer, v), made when missing; NULL when out of memory. */
static struct poller_count *poller__count_of(struct poller *p, int64_t offer, enum rule_variant v)
{
	size_t lo = 0, hi = p->ncounts, mid;
	struct poller_count *c;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		c = &p->counts[mid];
		if (c->offer < offer || (c->offer == offer && c->variant < v))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->ncounts || p->counts[lo].offer != offer || p->counts[lo].variant != v) {
		if (p->ncounts == p->capcounts) {
			size_t cap = p->capcounts ? p->capcounts * 2 : 64;
			struct poller_count *nc = realloc(p->counts, cap * sizeof(*nc));

			if (!nc)
				return NULL;
			p->counts = nc;
			p->capcounts = cap;
		}
		memmove(&p->counts[lo + 1], &p->counts[lo],
			(p->ncounts - lo) * sizeof(p->counts[0]));
		p->ncounts++;
		memset(&p->counts[lo], 0, sizeof(p->counts[0]));
		p->counts[lo].offer = offer;
		p->counts[lo].variant = v;
	}
	return &p->counts[lo];
}

static void poller__count(struct poller *p, int64_t offer, enum rule_variant v,
			  enum poll_outcome o)
{
	struct poller_count *c = poller__count_of(p, offer, v);

	if (c)
		c->outcomes[o]++;
}

static unsigned poller__threads(struct poller *p);

/* The run's rule CPU time: counted, and judged slow or not (poller.h). */
static void poller__rule_judge(struct poll_pair *pr)
{
	struct poller *p = pr->p;
	struct poller_count *c;
	unsigned batches = pr->nbatches ? pr->nbatches : 1;
	uint64_t per_ms = (uint64_t)pr->rule_ns / 1000000 / batches;
	bool slow;

	if (p->report || !pr->rule_calls || !(c = poller__count_of(p, pr->off.id, pr->v)))
		return;
	c->rule_ns += pr->rule_ns;
	slow = per_ms >= p->cfg.rule_slow_ms;
	if (!slow) {
		if (c->slow_streak >= POLL_RULE_SLOW_RUNS)
			log_info("rule no longer slow", "offer=%" PRId64 " variant=%s rule=%s cpu_ms_per_batch=%" PRIu64,
				 pr->off.id, rule_variant_name(pr->v), pr->off.rule, per_ms);
		c->slow_streak = 0;
		return;
	}
	c->slow_runs++;
	p->st.rule_slow_runs++;
	if (++c->slow_streak == POLL_RULE_SLOW_RUNS)
		log_warn("rule slow",
			 "offer=%" PRId64 " variant=%s rule=%s runs=%u cpu_ms_per_batch=%" PRIu64
			 " slow_ms=%u threads=%u",
			 pr->off.id, rule_variant_name(pr->v), pr->off.rule, c->slow_streak, per_ms,
			 p->cfg.rule_slow_ms, poller__threads(p));
}

static void poller__batch_end(struct poll_batch *b)
{
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;

	p->st.outcomes[b->outcome]++;
	if (!p->report)
		poller__count(p, b->offer, b->v, b->outcome);
	if (b->slot) {
		p->st.batches++;
		p->st.pages += b->pages;
		p->st.bytes += b->bytes;
		p->st.leads_asked += b->nleads;
		p->st.leads_changed += b->applied;
		if (b->v == RULE_DATES) {
			p->st.leads_asked_dates += b->nleads;
			p->st.leads_changed_dates += b->applied;
		}
		p->st.leads_skipped += b->skipped;
		p->st.leads_unknown += b->unknown;
		p->st.leads_refused += b->refused;
		p->st.leads_unrecognised += b->unrecognised;
		pr->asked += b->nleads;
		pr->changed += b->applied;
		pr->skipped += b->skipped;
		pr->unknown += b->unknown;
		pr->refused += b->refused;
		pr->unrecognised += b->unrecognised;
		pr->pages += b->pages;
	}
	if (b->run_id > pr->last_run)
		pr->last_run = b->run_id;
	if (b->outcome == POLL_LEASE_LOST || b->outcome == POLL_CANCELLED) {
		/* not the CRM's fault: the run is cut short, not failed */
		pr->stop_more = true;
		pr->cut = true;
		if (b->outcome == POLL_LEASE_LOST && !pr->aborted) {
			pr->aborted = true;
			pr->abort_outcome = POLL_LEASE_LOST;
		}
	} else if (b->outcome != POLL_OK && b->outcome != POLL_CAUGHT_UP) {
		poller__pair_fail(pr, b->outcome, b->err, poller__stops(b->outcome));
		if (b->retry_after > pr->retry_after)
			pr->retry_after = b->retry_after;
	}
	if (b->prev)
		b->prev->next = b->next;
	else
		pr->batches = b->next;
	if (b->next)
		b->next->prev = b->prev;
	pr->active--;
	if (b->slot) {
		p->batches_used--;
		p->leads_used -= b->reserved;
	}
	poller__batch_free(b);
	poller__wait_del(pr); /* so that waking the others never frees pr */
	poller__wake(p);
	poller__pair_fill(pr);
	poller__pair_maybe_finish(pr);
}

static void poller__defer_cb(uv_timer_t *t)
{
	struct poller *p = t->data;

	while (p->deferred) {
		struct poll_batch *b = p->deferred;

		p->deferred = b->defer_next;
		p->jobs--;
		poller__batch_end(b);
	}
}

/* The rule's result of a batch into the write's JSON; W_LIGHT when no
 * lead changed. */
static void poller__batch_apply(struct poll_batch *b)
{
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;
	struct buf before, after;
	size_t i;
	int e = 0;

	b->unknown = b->res.unknown;
	b->refused = b->res.refused;
	b->unrecognised = b->res.unrecognised;
	/* notes are best effort: a full buffer keeps what fitted */
	if (b->res.capped)
		e |= buf_addf(&b->notes, "page cap reached: the rule asked for more pages\n");
	if (b->res.notes.len) {
		char *m = poller__masked(&pr->off, b->res.notes.p, b->res.notes.len, false);

		e |= m ? buf_adds(&b->notes, m) : -1;
		free(m);
	}
	if (b->res.notes_dropped)
		e |= buf_addf(&b->notes, "(%zu more notes dropped)\n", b->res.notes_dropped);
	if (b->res.log.len) {
		char *m = poller__masked(&pr->off, b->res.log.p, b->res.log.len, false);

		e |= m ? buf_adds(&b->notes, m) : -1;
		free(m);
	}
	e = 0;
	b->chg = calloc(b->res.nchanges + 1, sizeof(*b->chg));
	b->after = calloc(b->res.nchanges + 1, sizeof(*b->after));
	if (!b->chg || !b->after) {
		poller__batch_fail(b, POLL_INTERNAL_ERROR, "out of memory");
		return;
	}
	buf_init(&before, 0);
	buf_init(&after, 0);
	e |= buf_addc(&b->upd, '[');
	e |= buf_addc(&b->hist, '[');
	for (i = 0; i < b->res.nchanges && !e; i++) {
		const struct rule_change *ch = &b->res.changes[i];
		const struct lead *old = &b->leads[ch->lead], *l = &ch->after;
		int d;

		d = poll_sql_change(&b->upd, &b->hist, old, l, b->xmin[ch->lead], b->nchg == 0,
				    &before, &after);
		if (d < 0) {
			e = -1;
			break;
		}
		if (d == 0)
			continue;
		if (p->report) {
			char *mb = poller__masked(&pr->off, before.p, before.len, false);
			char *ma = poller__masked(&pr->off, after.p, after.len, false);

			poller__rep(p, "edit      lead %" PRId64 " %s -> %s\n", old->id, mb ? mb : "",
				    ma ? ma : "");
			free(mb);
			free(ma);
		}
		b->chg[b->nchg] = ch->lead;
		b->after[b->nchg] = l;
		b->nchg++;
	}
	e |= buf_addc(&b->upd, ']');
	e |= buf_addc(&b->hist, ']');
	buf_release(&before);
	buf_release(&after);
	if (e) {
		poller__batch_fail(b, POLL_INTERNAL_ERROR, "the batch's changes do not fit in memory");
		return;
	}
	if (p->report) {
		poller__rep(p,
			    "result    %s: %zu asked, %zu changed, %zu unknown, %zu refused, "
			    "%zu unrecognised, %u page%s\n",
			    poll_outcome_name(b->outcome), b->nleads, b->nchg, b->unknown, b->refused,
			    b->unrecognised, b->pages, b->pages == 1 ? "" : "s");
		if (b->notes.len)
			poller__rep(p, "notes     %s%s", b->notes.p,
				    b->notes.p[b->notes.len - 1] == '\n' ? "" : "\n");
		if (p->dry_run)
			poller__rep(p, "dry run   nothing written\n");
	}
	poller__save_case(b);
	b->applied = p->dry_run ? b->nchg : 0; /* else known after the write */
	poller__batch_write(b, b->nchg ? W_FULL : W_LIGHT);
}

static void poller__http_cb(struct http_client_req *req, struct http_result *res, void *ud);
static void poller__rule_submit(struct poll_batch *b, bool first);

static void poller__batch_send(struct poll_batch *b, const struct rule_request *rq)
{
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;
	struct http_header *hs = NULL;
	struct http_request hr;
	char err[512];
	size_t i;

	memset(&hr, 0, sizeof(hr));
	if (rq->nheaders) {
		hs = calloc(rq->nheaders, sizeof(*hs));
		if (!hs) {
			poller__batch_fail(b, POLL_INTERNAL_ERROR, "out of memory");
			return;
		}
		for (i = 0; i < rq->nheaders; i++) {
			hs[i].name = rq->headers[i].name;
			hs[i].value = rq->headers[i].value;
		}
	}
	hr.method = rq->method;
	hr.url = rq->url;
	hr.headers = hs;
	hr.nheaders = rq->nheaders;
	hr.body = rq->body;
	hr.body_len = rq->body_len;
	if (pr->off.rate_limit > 0) {
		hr.rate_key = pr->rate_key;
		hr.rate_per_min = pr->off.rate_limit;
		hr.rate_burst = 1;
	}
	if (rq->page <= 1 || !b->url) {
		snprintf(b->method, sizeof(b->method), "%s", rq->method);
		free(b->url);
		b->url = poller__masked(&pr->off, rq->url, strlen(rq->url), true);
	}
	if (p->report) {
		char *u = poller__masked(&pr->off, rq->url, strlen(rq->url), true);

		poller__rep(p, "request   %s %s (page %u, %zu lead%s%s%s)\n", rq->method, u ? u : "",
			    rq->page ? rq->page : 1, b->nleads, b->nleads == 1 ? "" : "s",
			    b->has_dates ? ", " : "", b->has_dates ? b->dates.from : "");
		free(u);
	}
	b->cur = rq;
	if (http_client_request(p->http, &hr, poller__http_cb, b, &b->h, err, sizeof(err)) < 0) {
		free(hs);
		b->h = NULL;
		poller__batch_fail(b, POLL_RULE_ERROR, "request not sent: %s", err);
		return;
	}
	free(hs);
}

static enum poll_outcome poller__transport(enum http_outcome o)
{
	switch (o) {
	case HTTP_OK:
		return POLL_OK;
	case HTTP_TIMEOUT:
		return POLL_TIMEOUT;
	case HTTP_CONNECT_ERROR:
		return POLL_CONNECT_ERROR;
	case HTTP_TLS_ERROR:
		return POLL_TLS_ERROR;
	case HTTP_TOO_LARGE:
		return POLL_TOO_LARGE;
	case HTTP_BAD_ANSWER:
		return POLL_BAD_ANSWER;
	case HTTP_REDIRECT_ERROR:
		return POLL_REDIRECT_ERROR;
	case HTTP_CANCELLED:
		return POLL_CANCELLED;
	default:
		return POLL_INTERNAL_ERROR;
	}
}

/* The first answer_head bytes of an answer: valid UTF-8, masked. */
static void poller__head(struct poll_batch *b, const char *body, size_t len)
{
	struct poller *p = b->pair->p;
	size_t want = p->cfg.answer_head;
	struct buf esc;
	char *m;

	buf_reset(&b->head);
	buf_init(&esc, 0);
	if (buf_add_text(&esc, body, len < want + 4 ? len : want + 4) == 0) {
		m = poller__masked(&b->pair->off, esc.p, esc.len, false);
		if (m) {
			size_t ml = strlen(m);
			struct buf tmp;

			buf_init(&tmp, 0);
			if (buf_add(&tmp, m, ml) == 0) {
				buf_cut_utf8(&tmp, want);
				if (buf_add(&b->head, tmp.p, tmp.len) < 0) {
					/* cannot happen: head holds want bytes */
				}
			}
			buf_release(&tmp);
			free(m);
		}
	}
	buf_release(&esc);
}

/* The answer's Content-Type for the poll_runs row: a header may hold any
 * byte, a text column only UTF-8, so anything but printable ASCII is '?'. */
static void poller__ctype(struct poll_batch *b, const char *ct)
{
	size_t i;

	for (i = 0; ct && ct[i] && i + 1 < sizeof(b->ctype); i++)
		b->ctype[i] = ct[i] >= 0x20 && ct[i] < 0x7f ? ct[i] : '?';
	b->ctype[i] = '\0';
}

static void poller__http_cb(struct http_client_req *req, struct http_result *res, void *ud)
{
	struct poll_batch *b = ud;
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;
	enum poll_outcome o = poller__transport(res->outcome);
	const struct rule_request *rq = b->cur;

	b->h = NULL;
	b->bytes += res->bytes;
	b->status = res->status;
	if (res->outcome != HTTP_CANCELLED)
		b->pages++;
	poller__head(b, res->body, res->body_len);
	poller__ctype(b, res->content_type);
	if (res->outcome == HTTP_OK)
		poller__save_page(b, rq, res);
	if (p->report && res->outcome != HTTP_CANCELLED && res->status) {
		poller__rep(p, "answer    HTTP %ld, %" PRIu64 " bytes in %.0f ms%s%s\n", res->status,
			    res->bytes, res->total_ms, res->error[0] ? ": " : "", res->error);
		if (b->head.len)
			poller__rep(p, "          %.*s%s\n",
				    (int)(b->head.len < POLL_EXCERPT ? b->head.len : POLL_EXCERPT),
				    b->head.p, b->head.len > POLL_EXCERPT ? " ..." : "");
	}
	if (res->outcome == HTTP_CANCELLED && pr->aborted) {
		poller__batch_fail(b, pr->abort_outcome, "%s",
				   pr->abort_outcome == POLL_LEASE_LOST ? "lease lost: request cancelled"
									: "shutting down: request cancelled");
		return;
	}
	if (o != POLL_OK) {
		poller__batch_fail(b, o, "%s", res->error[0] ? res->error : http_outcome_name(res->outcome));
		return;
	}
	if (res->status == 429 || res->status >= 500) {
		if (res->retry_after_s > 0)
			b->retry_after = (unsigned)res->retry_after_s;
		if (res->retry_after_s >= 0)
			poller__batch_fail(b, POLL_HTTP_ERROR, "HTTP %ld, Retry-After %ld s", res->status,
					   res->retry_after_s);
		else
			poller__batch_fail(b, POLL_HTTP_ERROR, "HTTP %ld", res->status);
		return;
	}
	if (pr->aborted) {
		poller__batch_fail(b, pr->abort_outcome, "%s",
				   pr->abort_outcome == POLL_LEASE_LOST ? "lease lost" : "shutting down");
		return;
	}
	if (!p->cfg.check_save) /* a saved case replays with one --now */
		b->rb.now = (int64_t)time(NULL);
	b->ans_len = res->body_len;
	b->ans_status = (int)res->status;
	if (!(b->ans = http_result_take_body(res)) ||
	    (res->content_type && *res->content_type && !(b->ans_ctype = strdup(res->content_type)))) {
		poller__batch_fail(b, POLL_INTERNAL_ERROR, "out of memory");
		return;
	}
	poller__rule_submit(b, false);
}

/* On a rule thread: prepare, or process of the answer, on a runtime of
 * the pair's rule that no other thread uses meanwhile. Touches only the
 * batch and what the pair does not change while it polls. */
static void poller__rule_work(struct rule_pool_job *job)
{
	struct poll_batch *b = job->data;
	struct poll_pair *pr = b->pair;
	struct rule_rt *rt;

	b->rule_lim = RULE_LIMIT_NONE;
	b->rule_rc = -1;
	if (atomic_load(&pr->rules_cancel)) {
		snprintf(b->rule_err, sizeof(b->rule_err), "cancelled");
		return;
	}
	rt = poller__rt_take(pr->rule, b->rule_err, sizeof(b->rule_err));
	if (!rt)
		return;
	if (b->rule_first)
		b->rule_rc = rule_prepare(rt, pr->v, &b->rb, &b->res, &b->req, b->rule_err,
					  sizeof(b->rule_err));
	else
		b->rule_rc = rule_process(rt, pr->v, &b->rb, b->cur, b->ans, b->ans_len,
					  b->ans_status, b->ans_ctype, &b->res, b->rule_err,
					  sizeof(b->rule_err));
	if (b->rule_rc < 0)
		b->rule_lim = rule_last_limit(rt);
	poller__rt_give(pr->rule, rt);
}

/* Back on the loop: the rule's verdict, then the batch goes on as it did
 * when the rule ran right here. */
static void poller__rule_done(struct rule_pool_job *job)
{
	struct poll_batch *b = job->data;
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;
	const struct rule_request *rq = b->cur;
	char prefix[64];
	bool ok2xx = b->ans_status >= 200 && b->ans_status < 300;

	b->rule_ns += job->cpu_ns;
	pr->rule_ns += job->cpu_ns;
	pr->rule_calls++;
	p->st.rule_calls++;
	p->st.rule_ns += job->cpu_ns;
	free(b->ans);
	free(b->ans_ctype);
	b->ans = b->ans_ctype = NULL;
	if (b->rule_lim != RULE_LIMIT_NONE)
		p->st.rule_limits[b->rule_lim - 1]++;
	if (pr->aborted) {
		poller__batch_fail(b, pr->abort_outcome, "%s",
				   pr->abort_outcome == POLL_LEASE_LOST ? "lease lost" : "shutting down");
		return;
	}
	if (b->rule_rc < 0 && b->rule_first) {
		poller__batch_fail(b, POLL_RULE_ERROR, "%s", b->rule_err);
		return;
	}
	if (b->rule_rc < 0) {
		snprintf(prefix, sizeof(prefix), "answer (%s, HTTP %d): ",
			 decode_format_name(rq->format), b->ans_status);
		if (!ok2xx)
			poller__batch_fail(b, POLL_HTTP_ERROR, "HTTP %d: %s", b->ans_status,
					   b->rule_err);
		else if (strstr(b->rule_err, prefix))
			poller__batch_fail(b, POLL_DECODE_ERROR, "%s", b->rule_err);
		else
			poller__batch_fail(b, POLL_RULE_ERROR, "%s", b->rule_err);
		return;
	}
	if (b->rule_first) {
		poller__batch_send(b, &b->req);
		return;
	}
	if (b->res.has_next) {
		poller__batch_send(b, &b->res.next);
		return;
	}
	poller__batch_apply(b);
}

/* Hands the batch's rule work to the rule threads, in its pair's lane. */
static void poller__rule_submit(struct poll_batch *b, bool first)
{
	b->rule_first = first;
	b->rjob.work = poller__rule_work;
	b->rjob.done = poller__rule_done;
	b->rjob.data = b;
	rule_pool_submit(b->pair->p->pool, &b->pair->lane, &b->rjob);
}

static void poller__batch_start(struct poll_batch *b)
{
	struct poll_pair *pr = b->pair;

	b->rb.offer = pr->off.id;
	b->rb.leads = b->leads;
	b->rb.nleads = b->nleads;
	b->rb.dates = b->has_dates ? &b->dates : NULL;
	b->rb.params = pr->off.params;
	b->rb.nparams = pr->off.nparams;
	b->rb.settings = pr->off.settings;
	b->rb.goals = pr->off.goals;
	b->rb.ngoals = pr->off.ngoals;
	b->rb.currencies = pr->off.currs;
	b->rb.ncurrencies = pr->off.ncurrs;
	b->rb.status_words = pr->words ? pr->words->w : NULL;
	b->rb.now = (int64_t)time(NULL);
	poller__rule_submit(b, true);
}

/* A record of the pair that is no request (rule not loaded, caught up). */
static void poller__pair_record(struct poll_pair *pr, enum poll_outcome o, const char *err)
{
	struct poll_batch *b = poller__batch_new(pr);

	if (!b) {
		poller__pair_fail(pr, POLL_INTERNAL_ERROR, "out of memory", true);
		poller__pair_maybe_finish(pr);
		return;
	}
	if (o == POLL_CAUGHT_UP || o == POLL_OK) {
		b->outcome = o;
		poller__batch_write(b, W_ROW);
	} else
		poller__batch_fail(b, o, "%s", err);
}

static void poller__sel_done(struct db_job *job)
{
	struct poll_sel *s = job->data;
	struct poll_pair *pr = s->pair;
	struct poller *p = pr->p;
	unsigned i;

	p->jobs--;
	pr->selecting = false;
	p->batches_used -= s->k;
	p->leads_used -= s->reserved;
	if (job->status != DB_OK) {
		poller__pair_fail(pr, POLL_DB_ERROR, job->err, true);
		goto out;
	}
	if (s->count_no_ext && s->no_ext) {
		pr->no_ext = s->no_ext;
		poller__rep(p, "skip      %" PRIu64 " lead%s without an external id: not asked\n",
			    s->no_ext, s->no_ext == 1 ? "" : "s");
	}
	if (p->stopping || pr->aborted)
		goto out; /* read, but no new request now: the pair is cut short */
	if (s->dates) {
		pr->rnext += s->k;
		pr->exhausted = pr->rnext >= pr->nranges;
	} else {
		for (i = 0; i < s->k; i++)
			if (s->n[i])
				pr->cursor = s->leads[i][s->n[i] - 1].id;
		pr->exhausted = !s->more;
	}
	for (i = 0; i < s->k; i++) {
		struct poll_batch *b;

		if (!s->leads[i] || !s->n[i])
			continue;
		b = poller__batch_new(pr);
		if (!b) {
			poller__pair_fail(pr, POLL_INTERNAL_ERROR, "out of memory", true);
			break;
		}
		b->slot = true;
		b->leads = s->leads[i];
		b->xmin = s->xmin[i];
		b->nleads = b->reserved = s->n[i];
		s->leads[i] = NULL;
		s->xmin[i] = NULL;
		p->batches_used++;
		p->leads_used += b->reserved;
		pr->nbatches++;
		if (s->dates) {
			b->dates = s->dates[i];
			b->has_dates = true;
			if (b->nleads >= s->per && buf_addf(&b->notes,
				"range %s..%s holds more open leads than %zu: the first %zu asked\n",
				b->dates.from, b->dates.to, s->per, s->per) < 0) {
				/* notes are best effort */
			}
		}
		poller__batch_start(b);
	}
out:
	poller__sel_free(s);
	poller__wait_del(pr);
	poller__wake(p);
	poller__pair_fill(pr);
	poller__pair_maybe_finish(pr);
}

static void poller__pair_fill(struct poll_pair *pr)
{
	struct poller *p = pr->p;
	struct poll_sel *s;
	unsigned room, groom, k, i;
	size_t lroom, reserve = 0;

	if (!pr->started || pr->aborted || pr->stop_more || pr->exhausted || pr->selecting ||
	    pr->finishing || p->stopping)
		return;
	room = p->cfg.pair_batches_max > pr->active ? p->cfg.pair_batches_max - pr->active : 0;
	if (!room)
		return;
	groom = p->cfg.batches_max > p->batches_used ? p->cfg.batches_max - p->batches_used : 0;
	lroom = p->cfg.leads_max > p->leads_used ? p->cfg.leads_max - p->leads_used : 0;
	k = room < groom ? room : groom;
	if (pr->v != RULE_DATES) {
		size_t kl = lroom / pr->batch;

		if (!kl && !p->leads_used)
			kl = 1;
		if (kl < k)
			k = (unsigned)kl;
		reserve = (size_t)k * pr->batch;
	} else {
		size_t left = pr->nranges - pr->rnext;

		if ((size_t)k > left)
			k = (unsigned)left;
		for (i = 0; i < k; i++) {
			size_t est = pr->ranges[pr->rnext + i].leads;

			if (est > p->cfg.dates_leads_max)
				est = p->cfg.dates_leads_max;
			if (reserve + est > lroom && !(i == 0 && !p->leads_used))
				break;
			reserve += est;
		}
		k = i;
		if (!left) {
			pr->exhausted = true;
			return;
		}
	}
	if (!k) {
		poller__wait_add(pr);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s) {
		s->leads = calloc(k, sizeof(*s->leads));
		s->xmin = calloc(k, sizeof(*s->xmin));
		s->n = calloc(k, sizeof(*s->n));
		if (pr->v == RULE_DATES)
			s->dates = calloc(k, sizeof(*s->dates));
	}
	if (!s || !s->leads || !s->xmin || !s->n || (pr->v == RULE_DATES && !s->dates))
		goto oom;
	s->job.data = s;
	s->job.run = poller__sel_run;
	s->job.done = poller__sel_done;
	s->pair = pr;
	s->offer = pr->off.id;
	s->v = pr->v;
	s->k = k;
	s->per = pr->v == RULE_DATES ? p->cfg.dates_leads_max : pr->batch;
	s->cursor = pr->cursor;
	s->count_no_ext = pr->v != RULE_DATES && !pr->no_ext_counted;
	pr->no_ext_counted = true;
	s->reserved = reserve;
	for (i = 0; pr->v == RULE_DATES && i < k; i++) {
		char err[256];
		const struct poll_range *r = &pr->ranges[pr->rnext + i];
		const char *tz = pr->off.tz[0] ? pr->off.tz : p->tz;

		if (macro_dates_compute(tz, r->from, r->to, &s->dates[i], err, sizeof(err)) < 0) {
			poller__sel_free(s);
			poller__pair_record(pr, POLL_CONFIG_ERROR, err);
			pr->stop_more = true;
			return;
		}
	}
	if (db_submit(p->cfg.db, &s->job) < 0) {
		poller__sel_free(s);
		poller__pair_fail(pr, POLL_DB_ERROR, "database queue full", true);
		return;
	}
	p->jobs++;
	pr->selecting = true;
	p->batches_used += k;
	p->leads_used += reserve;
	return;
oom:
	if (s)
		poller__sel_free(s);
	poller__pair_fail(pr, POLL_INTERNAL_ERROR, "out of memory", true);
}

/* The dates variant's ranges from the open days. */
static void poller__days_done(struct db_job *job)
{
	struct poll_days *d = job->data;
	struct poll_pair *pr = d->pair;
	struct poller *p = pr->p;
	size_t i = 0;

	p->jobs--;
	pr->selecting = false;
	if (job->status != DB_OK) {
		poller__pair_fail(pr, POLL_DB_ERROR, job->err, true);
		goto out;
	}
	pr->ranges = calloc(d->n + 1, sizeof(*pr->ranges));
	if (!pr->ranges) {
		poller__pair_fail(pr, POLL_INTERNAL_ERROR, "out of memory", true);
		goto out;
	}
	while (i < d->n) {
		struct poll_range *r = &pr->ranges[pr->nranges++];
		int64_t first = tz_days_from_civil(d->day[i].y, d->day[i].m, d->day[i].d);
		size_t j = i + 1;

		r->from = r->to = d->day[i];
		r->leads = d->count[i];
		while (j < d->n &&
		       tz_days_from_civil(d->day[j].y, d->day[j].m, d->day[j].d) < first + pr->days &&
		       r->leads + d->count[j] <= p->cfg.dates_leads_max) {
			r->to = d->day[j];
			r->leads += d->count[j];
			j++;
		}
		i = j;
	}
	pr->exhausted = pr->nranges == 0;
out:
	free(d->day);
	free(d->count);
	free(d);
	poller__pair_fill(pr);
	poller__pair_maybe_finish(pr);
}

/* A pair's run begins: rule, variant, then selection. */
static void poller__pair_begin(struct poll_pair *pr)
{
	struct poller *p = pr->p;
	struct rule_variant_info info;
	char err[POLL_ERR_MAX];

	pr->t0_ms = poller__now_ms();
	pr->next = p->pairs;
	if (p->pairs)
		p->pairs->prev = pr;
	p->pairs = pr;
	p->npairs++;
	pr->started = true;
	snprintf(pr->rate_key, sizeof(pr->rate_key), "offer:%" PRId64, pr->off.id);
	if (!pr->off.found) {
		pr->exhausted = true;
		poller__pair_record(pr, POLL_CONFIG_ERROR, "the offer no longer exists");
		return;
	}
	if (!pr->off.rule[0]) {
		pr->exhausted = true;
		poller__pair_record(pr, POLL_CONFIG_ERROR, "the offer names no rule");
		return;
	}
	pr->rule = poller__rule_get(p, pr->off.rule, err, sizeof(err));
	if (!pr->rule) {
		/* config_error: wrong before any request (include/poller.h) */
		pr->stop_more = true;
		poller__pair_record(pr, POLL_CONFIG_ERROR, err);
		return;
	}
	rule_variant_info(pr->rule->rt, pr->v, &info);
	if (!info.present) {
		pr->exhausted = true;
		poller__rep(p, "skip      rule '%s' declares no %s variant\n", pr->off.rule,
			    rule_variant_name(pr->v));
		poller__pair_maybe_finish(pr);
		return;
	}
	if (poller__words_get(p, &pr->off, &pr->words, err, sizeof(err)) < 0) {
		pr->stop_more = true;
		poller__pair_record(pr, POLL_CONFIG_ERROR, err);
		return;
	}
	pr->batch = info.batch ? info.batch : RULE_BATCH_DEFAULT;
	if (pr->v != RULE_DATES && pr->off.batch[pr->v] > 0)
		pr->batch = (size_t)pr->off.batch[pr->v];
	if (p->cfg.rule_limits.batch_max && pr->batch > p->cfg.rule_limits.batch_max)
		pr->batch = p->cfg.rule_limits.batch_max;
	pr->days = pr->off.days > 0 ? pr->off.days : info.days > 0 ? info.days : 1;
	if (pr->days > RULE_DAYS_MAX)
		pr->days = RULE_DAYS_MAX;
	poller__rep(p, "poll      offer %" PRId64 ", rule %s, variant %s (%s, %s %d)\n", pr->off.id,
		    pr->off.rule, rule_variant_name(pr->v), decode_format_name(info.format),
		    pr->v == RULE_DATES ? "days" : "batch",
		    pr->v == RULE_DATES ? pr->days : (int)pr->batch);
	if (pr->v == RULE_DATES) {
		const char *tz = pr->off.tz[0] ? pr->off.tz : p->tz;
		struct poll_days *d;

		if (!tz_valid(tz)) {
			snprintf(err, sizeof(err), "unknown time zone '%s'", tz);
			pr->stop_more = true;
			poller__pair_record(pr, POLL_CONFIG_ERROR, err);
			return;
		}
		d = calloc(1, sizeof(*d));
		if (!d) {
			poller__pair_fail(pr, POLL_INTERNAL_ERROR, "out of memory", true);
			poller__pair_maybe_finish(pr);
			return;
		}
		d->job.data = d;
		d->job.run = poller__days_run;
		d->job.done = poller__days_done;
		d->pair = pr;
		d->offer = pr->off.id;
		snprintf(d->tz, sizeof(d->tz), "%s", strcmp(tz, "") ? tz : "UTC");
		d->age = p->cfg.dates_age_days;
		if (db_submit(p->cfg.db, &d->job) < 0) {
			free(d);
			poller__pair_fail(pr, POLL_DB_ERROR, "database queue full", true);
			poller__pair_maybe_finish(pr);
			return;
		}
		p->jobs++;
		pr->selecting = true;
		return;
	}
	poller__pair_fill(pr);
	poller__pair_maybe_finish(pr);
}

static void poller__pair_finish(struct poll_pair *pr)
{
	struct poller *p = pr->p;
	struct sched_result r = { .end = SCHED_OK };
	const char *outcome = "ok";
	char q[POLL_ERR_MAX + 64] = "", why[POLL_ERR_MAX + 32];
	bool lost = pr->sp->lost || (pr->aborted && pr->abort_outcome == POLL_LEASE_LOST);

	if (lost) {
		r.end = SCHED_REQUEUE;
		outcome = "lease_lost";
	} else if (pr->nfailed) {
		r.end = SCHED_FAILED;
		snprintf(why, sizeof(why), "%s: %s", poll_outcome_name(pr->first_fail), pr->err);
		r.error = why; /* pr is freed before r is used */
		r.retry_after_s = pr->retry_after;
		outcome = poll_outcome_name(pr->first_fail);
	} else if (!pr->exhausted || pr->cut) {
		r.end = SCHED_REQUEUE;
		outcome = "cancelled";
	}
	r.run = pr->last_run;
	p->st.runs++;
	if (r.end == SCHED_OK)
		p->st.runs_ok++;
	else if (r.end == SCHED_FAILED)
		p->st.runs_failed++;
	else
		p->st.runs_requeued++;
	if (pr->nfailed)
		log_quote(q, sizeof(q), pr->err);
	poller__rule_judge(pr);
	/* a run with nothing to ask is routine: debug, so 10,000 idle offers
	 * do not fill the log */
	log_at(pr->nfailed ? LOG_WARN : pr->nbatches || pr->caught_row ? LOG_INFO : LOG_DEBUG,
	       "poll done",
	       "worker=%s offer=%" PRId64 " variant=%s run=%" PRId64 " outcome=%s batches=%u failed=%u"
	       " asked=%" PRIu64 " changed=%" PRIu64 " skipped=%" PRIu64 " unknown=%" PRIu64
	       " refused=%" PRIu64 " unrecognised=%" PRIu64 " no_ext=%" PRIu64 " pages=%" PRIu64
	       " caught_up=%s missed=%" PRId64 " ms=%" PRIu64 " rule_cpu_ms=%" PRId64 "%s%s",
	       p->worker, pr->off.id, rule_variant_name(pr->v), pr->last_run, outcome, pr->nbatches,
	       pr->nfailed, pr->asked, pr->changed, pr->skipped, pr->unknown, pr->refused,
	       pr->unrecognised, pr->no_ext, pr->pages, pr->sp->missed > 0 ? "true" : "false", pr->sp->missed,
	       poller__now_ms() - pr->t0_ms, pr->rule_ns / 1000000, q[0] ? " err=" : "", q);
	poller__wait_del(pr);
	if (pr->prev)
		pr->prev->next = pr->next;
	else
		p->pairs = pr->next;
	if (pr->next)
		pr->next->prev = pr->prev;
	p->npairs--;
	if (pr->check)
		poller__check_pair_done(pr, &r);
	else {
		struct sched_pair *sp = pr->sp;

		poller__pair_free(pr);
		sp->data = NULL;
		scheduler_done(p->sched, sp, &r);
	}
}

static void poller__pair_maybe_finish(struct poll_pair *pr)
{
	if (!pr->started || pr->finishing || pr->selecting || pr->active)
		return;
	if (!(pr->exhausted || pr->stop_more || pr->aborted || pr->p->stopping))
		return;
	if (!pr->caught_row && pr->exhausted && !pr->nbatches && !pr->nfailed && !pr->aborted &&
	    pr->sp->missed > 0 && pr->rule) {
		pr->caught_row = true;
		poller__pair_record(pr, POLL_CAUGHT_UP, "");
		return;
	}
	/* nothing asked, but leads without an external id were left out: the
	 * run's row says how many (the record takes the count) */
	if (!pr->no_ext_given && pr->no_ext && pr->exhausted && !pr->nbatches && !pr->nfailed &&
	    !pr->aborted && pr->rule) {
		poller__pair_record(pr, POLL_OK, "");
		return;
	}
	pr->finishing = true;
	poller__pair_finish(pr);
}

static void poller__pair_abort(struct poll_pair *pr, enum poll_outcome why)
{
	struct poll_batch *b;

	if (pr->aborted)
		return;
	pr->aborted = true;
	pr->abort_outcome = why;
	atomic_store(&pr->rules_cancel, true);
	for (b = pr->batches; b; b = b->next)
		if (b->h)
			http_client_cancel(b->h);
	poller__pair_maybe_finish(pr);
}

/* ------------------------------------------------------------ scheduler glue */

static void poller__on_pair(struct scheduler *s, struct sched_pair *sp, void *ud)
{
	struct poll_pair *pr = sp->data;

	if (!pr) { /* cannot happen: load sets data for every pair */
		struct sched_result r = { .end = SCHED_REQUEUE };

		scheduler_done(s, sp, &r);
		return;
	}
	poller__pair_begin(pr);
}

static void poller__on_lost(struct scheduler *s, struct sched_pair *sp, void *ud)
{
	if (sp->data)
		poller__pair_abort(sp->data, POLL_LEASE_LOST);
}

static void poller__on_drop(struct sched_pair *sp, void *ud)
{
	if (sp->data)
		poller__pair_free(sp->data);
	sp->data = NULL;
}

/* ------------------------------------------------------------ life cycle */

static void poller__defaults(struct poller_config *c)
{
	if (!c->rules_dir)
		c->rules_dir = "./rules";
	if (!c->batches_max)
		c->batches_max = 256;
	if (!c->pair_batches_max)
		c->pair_batches_max = 8;
	if (!c->leads_max)
		c->leads_max = 50000;
	if (!c->dates_age_days)
		c->dates_age_days = 60;
	if (!c->dates_leads_max)
		c->dates_leads_max = 5000;
	if (c->dates_leads_max > c->leads_max)
		c->dates_leads_max = c->leads_max;
	if (!c->answer_head)
		c->answer_head = POLL_ANSWER_HEAD;
	if (!c->stop_deadline_ms)
		c->stop_deadline_ms = 10000;
	if (!c->rule_retry_s)
		c->rule_retry_s = 60;
	if (!c->rule_slow_ms)
		c->rule_slow_ms = POLL_RULE_SLOW_MS;
	if (!c->rule_limits.batch_max)
		c->rule_limits.batch_max = RULE_DEFAULT_BATCH_MAX;
}

void poller_config_from_settings(struct poller_config *c, const struct settings *s)
{
	memset(c, 0, sizeof(*c));
	c->rules_dir = s->rules;
	c->tz = s->tz;
	c->rule_limits.instructions = s->rule_instructions;
	c->rule_limits.memory = (size_t)s->rule_memory_mb << 20;
	c->rule_limits.time_ms = (unsigned)s->rule_time_ms;
	c->rule_threads = (unsigned)s->rule_threads;
	c->rule_slow_ms = (unsigned)s->rule_slow_ms;
	c->rule_limits.batch_max = (size_t)s->batch_max;
	c->sched.pairs_max = (unsigned)s->poll_pairs;
	c->sched.lease_s = (unsigned)s->poll_lease;
	c->sched.backoff_min_s = (unsigned)s->poll_backoff_min;
	c->sched.backoff_max_s = (unsigned)s->poll_backoff_max;
	c->batches_max = (unsigned)s->poll_batches;
	c->dates_age_days = (unsigned)s->dates_max_age;
	c->http_limits.max_in_flight = (unsigned)s->crm_in_flight;
	c->http_limits.max_per_host = (unsigned)s->crm_per_host;
	c->http_limits.timeout_ms = (uint64_t)s->crm_timeout * 1000;
	c->http_limits.max_response_bytes = (size_t)s->crm_max_mb << 20;
	/* more requests may wait than run: every batch in flight may queue */
	c->http_limits.max_queued = (unsigned)s->poll_batches + 16;
}

static struct poller *poller__new(uv_loop_t *loop, const struct poller_config *cfg, char *err,
				  size_t errlen)
{
	struct poller *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->cfg = *cfg;
	poller__defaults(&p->cfg);
	snprintf(p->rules_dir, sizeof(p->rules_dir), "%s", p->cfg.rules_dir);
	snprintf(p->tz, sizeof(p->tz), "%s", p->cfg.tz ? p->cfg.tz : "UTC");
	p->cfg.rules_dir = p->rules_dir;
	p->cfg.tz = p->tz;
	if (!tz_valid(p->tz)) {
		snprintf(err, errlen, "tz: unknown time zone '%s'", p->tz);
		free(p);
		return NULL;
	}
	return p;
}

static void poller__timers_init(struct poller *p)
{
	uv_timer_init(p->loop, &p->deadline);
	uv_timer_init(p->loop, &p->defer);
	p->deadline.data = p->defer.data = p;
	p->handles = 3; /* the timers and the rule threads */
}

static unsigned poller__threads(struct poller *p)
{
	struct rule_pool_stats rs;

	rule_pool_stats(p->pool, &rs);
	return rs.threads;
}

static int poller__pool_start(struct poller *p, char *err, size_t errlen)
{
	char e[256];

	if (rule_pool_start(p->loop, p->cfg.rule_threads, &p->pool, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "%s", e);
		return -1;
	}
	return 0;
}

static void poller__free(struct poller *p)
{
	struct poll_rule_entry *e, *n;
	size_t i;

	for (e = p->rules; e; e = n) {
		n = e->next;
		poller__rule_put(e->cur);
		free(e);
	}
	for (i = 0; i < p->words_cap; i++)
		poller__words_put(p->words[i].cur);
	free(p->words);
	free(p->counts);
	free(p);
}

int poller_start(uv_loop_t *loop, const struct poller_config *cfg, struct poller **out, char *err,
		 size_t errlen)
{
	struct poller *p;
	struct scheduler_config sc;

	*out = NULL;
	if (!cfg->db) {
		snprintf(err, errlen, "poller: a database pool is required");
		return -1;
	}
	p = poller__new(loop, cfg, err, errlen);
	if (!p)
		return -1;
	if (poller__pool_start(p, err, errlen) < 0) {
		poller__free(p);
		return -1;
	}
	if (p->cfg.http)
		p->http = p->cfg.http;
	else if (http_client_new(loop, &p->cfg.http_limits, &p->http, err, errlen) < 0) {
		rule_pool_close(p->pool, NULL, NULL);
		poller__free(p);
		return -1;
	} else
		p->own_http = true;
	sc = p->cfg.sched;
	sc.db = p->cfg.db;
	sc.load = poller__load;
	sc.on_pair = poller__on_pair;
	sc.on_lost = poller__on_lost;
	sc.on_drop = poller__on_drop;
	sc.ud = p;
	if (scheduler_start(loop, &sc, &p->sched, err, errlen) < 0) {
		if (p->own_http)
			http_client_close(p->http, NULL, NULL);
		rule_pool_close(p->pool, NULL, NULL);
		poller__free(p);
		return -1;
	}
	snprintf(p->worker, sizeof(p->worker), "%s", scheduler_worker(p->sched));
	poller__timers_init(p);
	log_info("poller started", "worker=%s rules=%s pairs=%u batches=%u rule_threads=%u",
		 p->worker, p->rules_dir, p->cfg.sched.pairs_max ? p->cfg.sched.pairs_max : 256,
		 p->cfg.batches_max, poller__threads(p));
	*out = p;
	return 0;
}

static void poller__handle_closed(struct poller *p)
{
	void (*cb)(void *) = p->stop_cb;
	void *data = p->stop_data;

	if (--p->handles)
		return;
	poller__free(p);
	if (cb)
		cb(data);
}

static void poller__timer_closed(uv_handle_t *h)
{
	poller__handle_closed(h->data);
}

static void poller__pool_closed(void *data)
{
	struct poller *p = data;

	p->pool = NULL;
	poller__handle_closed(p);
}

/* The last step of a stop: the timers and the rule threads (every pair has
 * ended, so no rule job is left), then p is freed and stop_cb runs. */
static void poller__http_closed(struct http_client *c, void *data)
{
	struct poller *p = data;

	uv_close((uv_handle_t *)&p->deadline, poller__timer_closed);
	uv_close((uv_handle_t *)&p->defer, poller__timer_closed);
	rule_pool_close(p->pool, poller__pool_closed, p);
}

static void poller__sched_stopped(void *data)
{
	struct poller *p = data;

	p->sched = NULL;
	log_info("poller stopped", "worker=%s", p->worker);
	if (p->own_http)
		http_client_close(p->http, poller__http_closed, p);
	else
		poller__http_closed(NULL, p);
}

static void poller__deadline_cb(uv_timer_t *t)
{
	struct poller *p = t->data;
	struct poll_pair *pr, *next;

	for (pr = p->pairs; pr; pr = next) {
		next = pr->next;
		poller__pair_abort(pr, POLL_CANCELLED);
	}
}

void poller_stop(struct poller *p, void (*cb)(void *data), void *data)
{
	struct poll_pair *pr, *next;

	p->stopping = true;
	p->stop_cb = cb;
	p->stop_data = data;
	uv_timer_start(&p->deadline, poller__deadline_cb, p->cfg.stop_deadline_ms, 0);
	for (pr = p->pairs; pr; pr = next) {
		next = pr->next;
		poller__pair_maybe_finish(pr);
	}
	scheduler_stop(p->sched, poller__sched_stopped, p);
}

bool poller_idle(const struct poller *p)
{
	return !p->npairs && !p->jobs && p->sched && scheduler_idle(p->sched);
}

void poller_stats(const struct poller *p, struct poller_stats *out)
{
	struct rule_pool_stats rs;

	*out = p->st;
	if (p->pool) {
		rule_pool_stats(p->pool, &rs);
		out->rule_threads = rs.threads;
		out->rule_waiting = rs.waiting;
		out->rule_running = rs.running;
	}
	if (p->sched)
		scheduler_stats(p->sched, &out->sched);
	out->pairs_in_flight = p->npairs;
	out->batches_in_flight = p->batches_used;
	out->leads_held = p->leads_used;
}

const char *poller_worker(const struct poller *p)
{
	return p->worker;
}

const struct poller_count *poller_counts(const struct poller *p, size_t *n)
{
	*n = p->ncounts;
	return p->counts;
}

struct http_client *poller_http(const struct poller *p)
{
	return p->http;
}

/* ------------------------------------------------------------ check */

enum check_step { CK_LOAD, CK_LEASE, CK_RELEASE };

struct poll_check {
	struct db_job job;
	struct poller *p;
	enum check_step step;
	int64_t offer;
	int variants[RULE_VARIANTS];
	int nvariants, vi;
	int want;             /* requested variant, -1: all */
	bool dry;
	unsigned intervals[RULE_VARIANTS];
	unsigned lease_s;
	struct sched_pair *sp; /* the pair of the step */
	struct sched_release rel;
	int rc;               /* 0 ok, 1 a poll failed, -1 could not run */
	char *err;
	size_t errlen;
	bool finished;
	/* The lease is extended every lease_s / 3 while a pair is polled, as the
	 * daemon's scheduler does: a slow CRM (paging, retries, rate limits) can
	 * take longer than one lease, and a daemon must not claim the pair
	 * meanwhile. */
	uv_timer_t beat;
	struct db_job beat_job;
	struct sched_key beat_key;
	bool leased, beat_pending, beat_alive;
};

static void poller__check_next(struct poll_check *ck);

static int poller__check_beat_run(PGconn *c, struct db_job *job)
{
	struct poll_check *ck = job->data;

	return scheduler_sql_heartbeat(c, ck->p->worker, ck->lease_s, &ck->beat_key, 1,
				       &ck->beat_alive, job->err, sizeof(job->err)) < 0
		       ? DB_EFAIL
		       : DB_OK;
}

static void poller__check_beat_done(struct db_job *job)
{
	struct poll_check *ck = job->data;

	ck->p->jobs--;
	ck->beat_pending = false;
	if (job->status != DB_OK)
		poller__rep(ck->p, "warning   the lease was not extended: %s\n", job->err);
	else if (!ck->beat_alive && ck->leased)
		poller__rep(ck->p, "warning   the lease was lost: another worker took the pair\n");
}

static void poller__check_beat_cb(uv_timer_t *t)
{
	struct poll_check *ck = t->data;

	if (!ck->leased || ck->beat_pending || ck->dry)
		return;
	memset(&ck->beat_job, 0, sizeof(ck->beat_job));
	ck->beat_job.data = ck;
	ck->beat_job.run = poller__check_beat_run;
	ck->beat_job.done = poller__check_beat_done;
	ck->beat_key.offer = ck->offer;
	ck->beat_key.variant = (enum rule_variant)ck->variants[ck->vi];
	if (db_submit(ck->p->cfg.db, &ck->beat_job) < 0)
		return;
	ck->p->jobs++;
	ck->beat_pending = true;
}

static int poller__check_run(PGconn *c, struct db_job *job)
{
	struct poll_check *ck = job->data;
	struct poller *p = ck->p;

	switch (ck->step) {
	case CK_LOAD:
	case CK_LEASE:
		if (ck->step == CK_LEASE && !ck->dry) {
			if (scheduler_sql_lease(c, p->worker, ck->lease_s, ck->offer,
						(enum rule_variant)ck->variants[ck->vi], ck->intervals,
						&ck->sp, job->err, sizeof(job->err)) < 0)
				return DB_EFAIL;
		} else {
			ck->sp = calloc(1, sizeof(*ck->sp));
			if (!ck->sp) {
				snprintf(job->err, sizeof(job->err), "out of memory");
				return DB_EFAIL;
			}
			ck->sp->offer = ck->offer;
			ck->sp->variant = ck->step == CK_LEASE ? (enum rule_variant)ck->variants[ck->vi]
								 : RULE_PROCESSING;
			ck->sp->interval_s = ck->intervals[ck->sp->variant];
		}
		if (poller__load(c, &ck->sp, 1, p, job->err, sizeof(job->err)) < 0) {
			free(ck->sp);
			ck->sp = NULL;
			return DB_EFAIL;
		}
		return DB_OK;
	case CK_RELEASE:
		return scheduler_sql_release(c, p->worker, &ck->rel, 1, job->err, sizeof(job->err)) < 0
			       ? DB_EFAIL
			       : DB_OK;
	}
	return DB_EFAIL;
}

static void poller__check_fail(struct poll_check *ck, const char *msg)
{
	snprintf(ck->err, ck->errlen, "%s", msg);
	ck->rc = -1;
	ck->finished = true;
}

static void poller__check_done_cb(struct db_job *job)
{
	struct poll_check *ck = job->data;
	struct poller *p = ck->p;
	struct poll_pair *pr;
	int i;

	p->jobs--;
	if (job->status != DB_OK) {
		if (ck->step == CK_RELEASE) {
			poller__rep(p, "warning   the lease was not released: %s\n", job->err);
			poller__check_next(ck);
		} else
			poller__check_fail(ck, job->err);
		return;
	}
	if (ck->step == CK_RELEASE) {
		poller__check_next(ck);
		return;
	}
	pr = ck->sp->data;
	if (!pr->off.found) {
		char msg[64];

		snprintf(msg, sizeof(msg), "offer %" PRId64 " not found", ck->offer);
		poller__pair_free(pr);
		free(ck->sp);
		ck->sp = NULL;
		poller__check_fail(ck, msg);
		return;
	}
	if (ck->step == CK_LOAD) {
		char err[POLL_ERR_MAX];
		struct poll_rule *r = pr->off.rule[0] ? poller__rule_get(p, pr->off.rule, err, sizeof(err))
						      : NULL;

		if (!pr->off.rule[0])
			snprintf(err, sizeof(err), "offer %" PRId64 " names no rule", ck->offer);
		if (r) {
			for (i = 0; i < RULE_VARIANTS; i++) {
				struct rule_variant_info info;

				rule_variant_info(r->rt, (enum rule_variant)i, &info);
				if (ck->want >= 0 && ck->want != i)
					continue;
				if (!info.present && ck->want < 0)
					continue;
				ck->variants[ck->nvariants++] = i;
			}
			poller__rule_put(r);
		}
		poller__pair_free(pr);
		free(ck->sp);
		ck->sp = NULL;
		if (!r) {
			poller__check_fail(ck, err);
			return;
		}
		if (!ck->nvariants) {
			poller__check_fail(ck, "the rule declares no variant");
			return;
		}
		ck->vi = -1;
		poller__check_next(ck);
		return;
	}
	pr->check = ck;
	ck->leased = !ck->dry;
	poller__pair_begin(pr);
}

static void poller__check_submit(struct poll_check *ck, enum check_step step)
{
	ck->step = step;
	ck->job.data = ck;
	ck->job.run = poller__check_run;
	ck->job.group = NULL;
	ck->job.done = poller__check_done_cb;
	if (db_submit(ck->p->cfg.db, &ck->job) < 0) {
		poller__check_fail(ck, "database queue full");
		return;
	}
	ck->p->jobs++;
}

static void poller__check_next(struct poll_check *ck)
{
	if (++ck->vi >= ck->nvariants) {
		ck->finished = true;
		return;
	}
	poller__check_submit(ck, CK_LEASE);
}

static void poller__check_pair_done(struct poll_pair *pr, const struct sched_result *r)
{
	struct poll_check *ck = pr->check;
	struct poller *p = pr->p;
	struct sched_pair *sp = pr->sp;

	if (r->end != SCHED_OK) {
		ck->rc = ck->rc < 0 ? ck->rc : 1;
		if (pr->nfailed)
			poller__rep(p, "failed    %u of %u request%s, the first with %s\n", pr->nfailed,
				    pr->nbatches, pr->nbatches == 1 ? "" : "s",
				    poll_outcome_name(pr->first_fail));
		else
			poller__rep(p, "failed    cut short\n");
	} else if (!pr->nbatches)
		poller__rep(p, "done      no lead to ask about\n");
	poller__rep(p, "\n");
	ck->leased = false;
	free(ck->rel.error);
	memset(&ck->rel, 0, sizeof(ck->rel));
	ck->rel.offer = sp->offer;
	ck->rel.variant = sp->variant;
	ck->rel.end = r->end;
	ck->rel.run = r->run;
	ck->rel.delay_s = sp->interval_s;
	if (r->end == SCHED_FAILED) {
		unsigned b = scheduler_backoff_s(sp->fail_count, p->cfg.sched.backoff_min_s
								       ? p->cfg.sched.backoff_min_s
								       : 30,
						 p->cfg.sched.backoff_max_s ? p->cfg.sched.backoff_max_s
									    : 3600,
						 (uint32_t)uv_hrtime());

		ck->rel.delay_s = b > r->retry_after_s ? b : r->retry_after_s;
		ck->rel.error = strdup(r->error ? r->error : "failed");
	}
	poller__pair_free(pr);
	free(sp);
	if (ck->dry) {
		poller__check_next(ck);
		return;
	}
	poller__check_submit(ck, CK_RELEASE);
}

static void poller__check_http_closed(struct http_client *c, void *data)
{
	*(bool *)data = true;
}

static void poller__check_db_closed(struct db *d, void *data)
{
	*(bool *)data = true;
}

int poller_check(const char *conninfo, const struct poller_config *cfg, int64_t offer,
		 int variant, bool dry_run, struct buf *out, char *err, size_t errlen)
{
	static const unsigned defaults[RULE_VARIANTS] = { SCHED_INTERVAL_PROCESSING,
							  SCHED_INTERVAL_ACCEPTED,
							  SCHED_INTERVAL_DATES };
	struct poller_config c = *cfg;
	struct db_config dc = { .conninfo = conninfo, .workers = 1, .retry_min_ms = 100,
				.retry_max_ms = 1000 };
	struct poll_check ck;
	struct poller *p = NULL;
	struct db *db = NULL;
	uv_loop_t loop;
	bool http_closed = false, db_closed = false;
	unsigned beat_ms;
	int i, rc = -1;

	memset(&ck, 0, sizeof(ck));
	if (uv_loop_init(&loop) < 0) {
		snprintf(err, errlen, "cannot start an event loop");
		return -1;
	}
	if (db_open(&loop, &dc, &db, err, errlen) < 0)
		goto close_loop;
	c.db = db;
	c.http = NULL;
	c.batches_max = 1;
	c.pair_batches_max = 1;
	c.rule_threads = 1;
	p = poller__new(&loop, &c, err, errlen);
	if (!p)
		goto close_db;
	if (poller__pool_start(p, err, errlen) < 0) {
		poller__free(p);
		p = NULL;
		goto close_db;
	}
	if (http_client_new(&loop, &p->cfg.http_limits, &p->http, err, errlen) < 0) {
		rule_pool_close(p->pool, NULL, NULL);
		uv_run(&loop, UV_RUN_NOWAIT);
		poller__free(p);
		p = NULL;
		goto close_db;
	}
	p->own_http = true;
	poller__timers_init(p);
	p->report = out;
	p->dry_run = dry_run;
	if (c.sched.worker && *c.sched.worker)
		snprintf(p->worker, sizeof(p->worker), "%s", c.sched.worker);
	else {
		char id[SCHED_WORKER_MAX - 8];

		if (scheduler_worker_id(id, sizeof(id)) == 0)
			snprintf(p->worker, sizeof(p->worker), "%s:check", id);
	}
	ck.p = p;
	ck.offer = offer;
	ck.want = variant;
	ck.dry = dry_run;
	ck.err = err;
	ck.errlen = errlen;
	ck.lease_s = c.sched.lease_s ? c.sched.lease_s : 60;
	for (i = 0; i < RULE_VARIANTS; i++)
		ck.intervals[i] = c.sched.interval_s[i] ? c.sched.interval_s[i] : defaults[i];
	uv_timer_init(&loop, &ck.beat);
	ck.beat.data = &ck;
	beat_ms = ck.lease_s * 1000 / 3 ? ck.lease_s * 1000 / 3 : 1;
	uv_timer_start(&ck.beat, poller__check_beat_cb, beat_ms, beat_ms);
	uv_unref((uv_handle_t *)&ck.beat); /* the check's own work keeps the loop running */
	poller__check_submit(&ck, CK_LOAD);
	while (!ck.finished && uv_run(&loop, UV_RUN_ONCE))
		;
	uv_close((uv_handle_t *)&ck.beat, NULL);
	rc = ck.finished ? ck.rc : -1;
	if (!ck.finished)
		snprintf(err, errlen, "the check stopped before it finished");
	http_client_close(p->http, poller__check_http_closed, &http_closed);
	while (!http_closed && uv_run(&loop, UV_RUN_ONCE))
		;
	p->stop_cb = NULL;
	p->handles++; /* kept: p is freed below, after the pool */
	poller__http_closed(NULL, p);
	while (p->handles > 1 && uv_run(&loop, UV_RUN_ONCE))
		;
	free(ck.rel.error);
close_db:
	db_close(db, poller__check_db_closed, &db_closed);
	while (!db_closed && uv_run(&loop, UV_RUN_ONCE))
		;
	if (p)
		poller__free(p);
close_loop:
	uv_run(&loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&loop) != 0)
		log_warn("check: event loop not empty at exit", "offer=%" PRId64, offer);
	return rc;
}
