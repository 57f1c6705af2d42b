/* poller: the pair and batch state machine. A leased pair (offer,
 * variant) is polled in batches of leads; each batch goes through
 *
 *   begin      poller__pair_begin: offer loaded with the claim, rule and
 *              words from their caches, batch size or day ranges set
 *   select     poller__pair_fill -> a select job (poll_store.c) reads the
 *              next pages of leads (id variants) or day ranges (dates)
 *   fill       poller__sel_done: one batch per page, within the caps on
 *              batches and leads held
 *   start      poller__batch_start: the rule's prepare, on a rule thread
 *   send       poller__batch_send: the request, through the http client
 *   answer     poller__http_cb: transport and HTTP outcome; the answer's
 *              decode and process on a rule thread (poller__rule_work);
 *              a next page goes back to send
 *   apply      poller__batch_apply: the rule's changes become the write's
 *              payloads (poll_sql_change)
 *   write      poller__batch_write: one statement (poll_store.c)
 *   end        poller__batch_end: counted; the pair selects more, or
 *   finish     poller__pair_finish: the run's outcome to the scheduler
 *
 * and a failure at any step jumps to write with the outcome (a row alone).
 * Everything here runs on the loop; rules on the rule threads, SQL on the
 * database threads, and back. A check's observer (poll_check.c) sees the
 * events; the daemon has none. See poller.h for what a poll does and
 * poller_int.h for the files. */
#include "poller.h"
#include "poller_int.h"

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

#define POLL_ROW_RETRY_MS 1000 /* a row that met the database away is tried again after */
#define POLL_ROW_TRIES 600     /* ... this many times at most (10 minutes) */

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

/* ------------------------------------------------------------ masking */

/* Masks with the offer's secrets into a fresh string (NULL when out of
 * memory). */
char *poller__masked(const struct poll_offer *o, const char *s, size_t len, bool url)
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

/* ------------------------------------------------------------ pairs, batches */

static void poller__pair_fill(struct poll_pair *pr);
static void poller__pair_maybe_finish(struct poll_pair *pr);
static void poller__batch_end(struct poll_batch *b);
static void poller__defer_cb(uv_timer_t *t);
static void poller__batch_write(struct poll_batch *b, enum poll_wmode m);
static void poller__batch_submit(struct poll_batch *b);
static void poller__row_retry_cb(uv_timer_t *t);

void poller__pair_free(struct poll_pair *pr)
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

	if (!list_linked(&pr->wlink))
		list_append(&p->wait, &pr->wlink);
}

static void poller__wait_del(struct poll_pair *pr)
{
	list_remove(&pr->wlink);
}

/* Room freed: the pairs waiting for it go first, in order. A woken pair
 * may finish (and be freed) here. */
static void poller__wake(struct poller *p)
{
	unsigned n = p->npairs + 1;

	while (!list_empty(&p->wait) && p->batches_used < p->cfg.batches_max && p->leads_used < p->cfg.leads_max &&
	       n--) {
		struct poll_pair *pr = list_entry(list_first(&p->wait), struct poll_pair, wlink);
		bool again;

		poller__wait_del(pr);
		poller__pair_fill(pr);
		again = list_linked(&pr->wlink);
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
	list_prepend(&pr->batches, &b->link);
	pr->active++;
	return b;
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
	POLL_OBSERVE(b->pair->p, failed, b);
	poller__batch_write(b, W_ROW);
}

/* The database is away (DB_EDOWN): b's row is written again in
 * POLL_ROW_RETRY_MS, and again, while the poller runs (at most
 * POLL_ROW_TRIES times), so that a poll run ending in an outage still gets
 * its row. The batch, and so its pair, stays alive meanwhile, counted as a
 * job. False: the row is given up. */
static bool poller__row_wait(struct poll_batch *b)
{
	struct poller *p = b->pair->p;

	if (p->stopping || b->row_tries >= POLL_ROW_TRIES)
		return false;
	b->row_tries++;
	b->wmode = W_ROW;
	list_append(&p->row_wait, &b->wlink);
	p->jobs++;
	if (!uv_is_active((uv_handle_t *)&p->row_timer))
		uv_timer_start(&p->row_timer, poller__row_retry_cb, POLL_ROW_RETRY_MS, 0);
	return true;
}

/* The rows waiting for the database go now. */
static void poller__row_flush(struct poller *p)
{
	struct list rows = LIST_HEAD_INIT(rows), *l;

	uv_timer_stop(&p->row_timer);
	list_splice_tail(&rows, &p->row_wait);
	while ((l = list_first(&rows))) {
		list_remove(l);
		p->jobs--;
		poller__batch_submit(list_entry(l, struct poll_batch, wlink));
	}
}

static void poller__row_retry_cb(uv_timer_t *t)
{
	poller__row_flush(t->data);
}

static void poller__write_done(struct db_job *job)
{
	struct poll_batch *b = job->data;
	struct poller *p = b->pair->p;

	p->jobs--;
	if (job->status == DB_OK) {
		if (b->wmode != W_ROW)
			POLL_OBSERVE(p, written, b);
		poller__batch_end(b);
		return;
	}
	if (b->wmode == W_ROW) {
		if (job->status == DB_EDOWN && poller__row_wait(b))
			return;
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
		if (poller__row_wait(b))
			return;
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

	list_append(&p->deferred, &b->wlink);
	p->jobs++;
	uv_timer_start(&p->defer, poller__defer_cb, 0, 0);
}

static void poller__batch_write(struct poll_batch *b, enum poll_wmode m)
{
	b->wmode = m;
	b->t_end_us = poller__wall_us();
	buf_cut_utf8(&b->notes, POLL_NOTES_MAX);
	poller__batch_submit(b);
}

/* Sends b's write (b->wmode) to the database. */
static void poller__batch_submit(struct poll_batch *b)
{
	struct poller *p = b->pair->p;

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

	if (p->obs || !pr->rule_calls || !(c = poller__count_of(p, pr->off.id, pr->v)))
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
	if (!p->obs)
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
	list_remove(&b->link);
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

	struct list *l;

	while ((l = list_first(&p->deferred))) { /* an end may defer another */
		list_remove(l);
		p->jobs--;
		poller__batch_end(list_entry(l, struct poll_batch, wlink));
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
		POLL_OBSERVE(p, edit, b, old, &before, &after);
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
	POLL_OBSERVE(p, result, b);
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
	POLL_OBSERVE(p, request, b, rq);
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

/* The pair was aborted (lease lost, or the stop's deadline) while the
 * batch was out: it fails with the pair's reason, what it was doing
 * appended (": request cancelled"). */
static void poller__batch_aborted(struct poll_batch *b, const char *what)
{
	struct poll_pair *pr = b->pair;

	poller__batch_fail(b, pr->abort_outcome, "%s%s",
			   pr->abort_outcome == POLL_LEASE_LOST ? "lease lost" : "shutting down", what);
}

static void poller__http_cb(struct http_client_req *req, struct http_result *res, void *ud)
{
	struct poll_batch *b = ud;
	struct poll_pair *pr = b->pair;
	struct poller *p = pr->p;
	enum poll_outcome o = poller__transport(res->outcome);

	b->h = NULL;
	b->bytes += res->bytes;
	b->status = res->status;
	if (res->outcome != HTTP_CANCELLED)
		b->pages++;
	poller__head(b, res->body, res->body_len);
	poller__ctype(b, res->content_type);
	POLL_OBSERVE(p, answer, b, res);
	if (res->outcome == HTTP_CANCELLED && pr->aborted) {
		poller__batch_aborted(b, ": request cancelled");
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
		poller__batch_aborted(b, "");
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
		poller__batch_aborted(b, "");
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
		POLL_OBSERVE(p, no_ext, pr, s->no_ext);
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

		if (macro_dates_set(r->from, r->to, r->t_from, r->t_tom, &s->dates[i], err,
				    sizeof(err)) < 0) {
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
	if (job->status != DB_OK && d->bad_zone) {
		char err[POLL_ERR_MAX];

		snprintf(err, sizeof(err), "unknown time zone '%s'", d->tz);
		pr->stop_more = true;
		poller__pair_record(pr, POLL_CONFIG_ERROR, err);
		goto out;
	}
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
		int64_t first = d->day[i].num;
		size_t j = i + 1;

		r->from = r->to = d->day[i].date;
		r->t_from = d->day[i].t_start;
		r->t_tom = d->day[i].t_next;
		r->leads = d->day[i].count;
		while (j < d->n && d->day[j].num < first + pr->days &&
		       r->leads + d->day[j].count <= p->cfg.dates_leads_max) {
			r->to = d->day[j].date;
			r->t_tom = d->day[j].t_next;
			r->leads += d->day[j].count;
			j++;
		}
		i = j;
	}
	pr->exhausted = pr->nranges == 0;
out:
	free(d->day);
	free(d);
	poller__pair_fill(pr);
	poller__pair_maybe_finish(pr);
}

/* A pair's run begins: rule, variant, then selection. */
void poller__pair_begin(struct poll_pair *pr)
{
	struct poller *p = pr->p;
	struct rule_variant_info info;
	char err[POLL_ERR_MAX];

	pr->t0_ms = poller__now_ms();
	list_init(&pr->wlink);
	list_init(&pr->batches);
	list_prepend(&p->pairs, &pr->link);
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
		POLL_OBSERVE(p, pair_skip, pr);
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
	POLL_OBSERVE(p, pair_begin, pr, &info);
	if (pr->v == RULE_DATES) {
		const char *tz = pr->off.tz[0] ? pr->off.tz : p->tz;
		struct poll_days *d = calloc(1, sizeof(*d));

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
	list_remove(&pr->link);
	p->npairs--;
	if (p->obs && p->obs->pair_done)
		p->obs->pair_done(pr, &r);
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
	struct list *it;

	if (pr->aborted)
		return;
	pr->aborted = true;
	pr->abort_outcome = why;
	atomic_store(&pr->rules_cancel, true);
	list_for_each(it, &pr->batches) {
		struct poll_batch *b = list_entry(it, struct poll_batch, link);

		if (b->h)
			http_client_cancel(b->h);
	}
	poller__pair_maybe_finish(pr);
}

/* ------------------------------------------------------------ scheduler glue */

static void poller__load_free(struct poll_load *ld)
{
	free(ld->sp);
	free(ld->pr);
	free(ld);
}

/* The claim's pairs, loaded: each one begins, or goes back to the
 * scheduler (failed with the load's error; requeued when stopping). */
static void poller__load_done(struct db_job *job)
{
	struct poll_load *ld = job->data;
	struct poller *p = ld->p;
	char q[512];
	size_t i;

	p->jobs--;
	if (job->status != DB_OK)
		log_quote(q, sizeof(q), job->err);
	for (i = 0; i < ld->n; i++) {
		struct sched_pair *sp = ld->sp[i];
		struct sched_result r = { .end = SCHED_REQUEUE };

		if (job->status == DB_OK && !p->stopping && ld->pr[i]) {
			sp->data = ld->pr[i];
			poller__pair_begin(ld->pr[i]);
			continue;
		}
		if (ld->pr[i])
			poller__pair_free(ld->pr[i]);
		if (job->status != DB_OK) {
			r.end = SCHED_FAILED;
			r.error = job->err;
			log_warn("poll not started", "worker=%s offer=%" PRId64 " variant=%s err=%s",
				 p->worker, sp->offer, rule_variant_name(sp->variant), q);
		}
		scheduler_done(p->sched, sp, &r);
	}
	poller__load_free(ld);
}

/* The scheduler's claim: the poller loads what the pairs need (their
 * offers, goals, currencies) in one job of its own, then begins them. */
static void poller__on_pairs(struct scheduler *s, struct sched_pair **pairs, size_t n, void *ud)
{
	struct poller *p = ud;
	struct poll_load *ld = calloc(1, sizeof(*ld));
	size_t i;

	if (ld) {
		ld->p = p;
		ld->n = n;
		ld->sp = malloc(n * sizeof(*ld->sp));
		ld->pr = calloc(n, sizeof(*ld->pr));
	}
	if (!ld || !ld->sp || !ld->pr) {
		if (ld)
			poller__load_free(ld);
		for (i = 0; i < n; i++) {
			struct sched_result r = { .end = SCHED_REQUEUE };

			scheduler_done(s, pairs[i], &r);
		}
		return;
	}
	memcpy(ld->sp, pairs, n * sizeof(*pairs));
	ld->job.data = ld;
	ld->job.run = poller__load_run;
	ld->job.done = poller__load_done;
	if (db_submit(p->cfg.db, &ld->job) < 0) {
		snprintf(ld->job.err, sizeof(ld->job.err), "database queue full");
		ld->job.status = DB_EFAIL;
		p->jobs++;
		poller__load_done(&ld->job);
		return;
	}
	p->jobs++;
}

static void poller__on_lost(struct scheduler *s, struct sched_pair *sp, void *ud)
{
	if (sp->data)
		poller__pair_abort(sp->data, POLL_LEASE_LOST);
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

struct poller *poller__new(uv_loop_t *loop, const struct poller_config *cfg, char *err,
				  size_t errlen)
{
	struct poller *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	list_init(&p->deferred);
	list_init(&p->row_wait);
	list_init(&p->pairs);
	list_init(&p->wait);
	p->cfg = *cfg;
	poller__defaults(&p->cfg);
	snprintf(p->rules_dir, sizeof(p->rules_dir), "%s", p->cfg.rules_dir);
	snprintf(p->tz, sizeof(p->tz), "%s", p->cfg.tz ? p->cfg.tz : "UTC");
	p->cfg.rules_dir = p->rules_dir;
	p->cfg.tz = p->tz;
	/* the zone is PostgreSQL's to know: daemon_run checks it before the
	 * start, an offer's days query reports it (poller__days_done) */
	return p;
}

void poller__timers_init(struct poller *p)
{
	uv_timer_init(p->loop, &p->deadline);
	uv_timer_init(p->loop, &p->defer);
	uv_timer_init(p->loop, &p->row_timer);
	p->deadline.data = p->defer.data = p->row_timer.data = p;
	p->handles = 4; /* the timers and the rule threads */
}

static unsigned poller__threads(struct poller *p)
{
	struct rule_pool_stats rs;

	rule_pool_stats(p->pool, &rs);
	return rs.threads;
}

int poller__pool_start(struct poller *p, char *err, size_t errlen)
{
	char e[256];

	if (rule_pool_start(p->loop, p->cfg.rule_threads, &p->pool, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "%s", e);
		return -1;
	}
	return 0;
}

void poller__free(struct poller *p)
{
	struct htab_node *x, *nx;
	size_t i;

	htab_for_each_safe(&p->rules, i, x, nx) {
		struct poll_rule_entry *e = container_of(x, struct poll_rule_entry, hn);

		poller__rule_put(e->cur);
		free(e);
	}
	htab_release(&p->rules);
	htab_for_each_safe(&p->words, i, x, nx) {
		struct poll_words_slot *s = container_of(x, struct poll_words_slot, hn);

		poller__words_put(s->cur);
		free(s);
	}
	htab_release(&p->words);
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
	sc.on_pairs = poller__on_pairs;
	sc.on_lost = poller__on_lost;
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
void poller__http_closed(struct http_client *c, void *data)
{
	struct poller *p = data;

	uv_close((uv_handle_t *)&p->deadline, poller__timer_closed);
	uv_close((uv_handle_t *)&p->defer, poller__timer_closed);
	uv_close((uv_handle_t *)&p->row_timer, poller__timer_closed);
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
	struct list *it, *nx;

	list_for_each_safe(it, nx, &p->pairs)
		poller__pair_abort(list_entry(it, struct poll_pair, link), POLL_CANCELLED);
}

void poller_stop(struct poller *p, void (*cb)(void *data), void *data)
{
	struct list *it, *nx;

	p->stopping = true;
	p->stop_cb = cb;
	p->stop_data = data;
	poller__row_flush(p); /* a last try each, before the pairs end */
	uv_timer_start(&p->deadline, poller__deadline_cb, p->cfg.stop_deadline_ms, 0);
	list_for_each_safe(it, nx, &p->pairs)
		poller__pair_maybe_finish(list_entry(it, struct poll_pair, link));
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
