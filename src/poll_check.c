/* poll_check: `leadsync check`, one poll of an offer now, with its report
 * and --save (poller_int.h, poller.h poller_check). */
#include "poller_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "log.h"
#include "poll_sql.h"
#include "store.h"

/* ------------------------------------------------------------ the check */

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
	struct buf *report;
};

/* Appends a line to the report. */
static void check__rep(struct poller *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void check__rep(struct poller *p, const char *fmt, ...)
{
	struct poll_check *ck = p->obs_data;
	va_list ap;

	va_start(ap, fmt);
	if (buf_vaddf(ck->report, fmt, ap) < 0) {
		/* a full report just stops growing */
	}
	va_end(ap);
}

/* ---- check --save: a batch kept as a `rule test` case folder ---- */

void poller__save_drop(struct poll_batch *b)
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
		check__rep(p, "warning   case not saved: %s\n", err);
	else
		check__rep(p, "saved     case %s: %zu lead%s, %zu page%s\n", dir, b->nleads,
			    b->nleads == 1 ? "" : "s", b->nsaved, b->nsaved == 1 ? "" : "s");
	poller__save_drop(b);
}

/* ------------------------------------------------------------ check */


/* ---- the report: an observer of the pair's and batches' events ---- */

static void check__pair_begin(struct poll_pair *pr, const struct rule_variant_info *info)
{
	check__rep(pr->p, "poll      offer %" PRId64 ", rule %s, variant %s (%s, %s %d)\n",
		   pr->off.id, pr->off.rule, rule_variant_name(pr->v),
		   decode_format_name(info->format), pr->v == RULE_DATES ? "days" : "batch",
		   pr->v == RULE_DATES ? pr->days : (int)pr->batch);
}

static void check__pair_skip(struct poll_pair *pr)
{
	check__rep(pr->p, "skip      rule '%s' declares no %s variant\n", pr->off.rule,
		   rule_variant_name(pr->v));
}

static void check__no_ext(struct poll_pair *pr, uint64_t n)
{
	check__rep(pr->p, "skip      %" PRIu64 " lead%s without an external id: not asked\n", n,
		   n == 1 ? "" : "s");
}

static void check__request(struct poll_batch *b, const struct rule_request *rq)
{
	char *u = poller__masked(&b->pair->off, rq->url, strlen(rq->url), true);

	check__rep(b->pair->p, "request   %s %s (page %u, %zu lead%s%s%s)\n", rq->method,
		   u ? u : "", rq->page ? rq->page : 1, b->nleads, b->nleads == 1 ? "" : "s",
		   b->has_dates ? ", " : "", b->has_dates ? b->dates.from : "");
	free(u);
}

static void check__answer(struct poll_batch *b, const struct http_result *res)
{
	struct poller *p = b->pair->p;

	if (res->outcome == HTTP_OK)
		poller__save_page(b, b->cur, res);
	if (res->outcome == HTTP_CANCELLED || !res->status)
		return;
	check__rep(p, "answer    HTTP %ld, %" PRIu64 " bytes in %.0f ms%s%s\n", res->status,
		   res->bytes, res->total_ms, res->error[0] ? ": " : "", res->error);
	if (b->head.len)
		check__rep(p, "          %.*s%s\n",
			   (int)(b->head.len < POLL_EXCERPT ? b->head.len : POLL_EXCERPT), b->head.p,
			   b->head.len > POLL_EXCERPT ? " ..." : "");
}

static void check__edit(struct poll_batch *b, const struct lead *old, const struct buf *before,
			const struct buf *after)
{
	char *mb = poller__masked(&b->pair->off, before->p, before->len, false);
	char *ma = poller__masked(&b->pair->off, after->p, after->len, false);

	check__rep(b->pair->p, "edit      lead %" PRId64 " %s -> %s\n", old->id, mb ? mb : "",
		   ma ? ma : "");
	free(mb);
	free(ma);
}

static void check__result(struct poll_batch *b)
{
	struct poller *p = b->pair->p;

	check__rep(p,
		   "result    %s: %zu asked, %zu changed, %zu unknown, %zu refused, "
		   "%zu unrecognised, %u page%s\n",
		   poll_outcome_name(b->outcome), b->nleads, b->nchg, b->unknown, b->refused,
		   b->unrecognised, b->pages, b->pages == 1 ? "" : "s");
	if (b->notes.len)
		check__rep(p, "notes     %s%s", b->notes.p,
			   b->notes.p[b->notes.len - 1] == '\n' ? "" : "\n");
	if (p->dry_run)
		check__rep(p, "dry run   nothing written\n");
	poller__save_case(b);
}

static void check__failed(struct poll_batch *b)
{
	check__rep(b->pair->p, "error     %s: %s\n", poll_outcome_name(b->outcome), b->err);
	poller__save_case(b);
}

static void check__written(struct poll_batch *b)
{
	check__rep(b->pair->p, "written   run %" PRId64 ": %zu lead%s changed, %zu skipped\n",
		   b->run_id, b->applied, b->applied == 1 ? "" : "s", b->skipped);
}

static void poller__check_pair_done(struct poll_pair *pr, const struct sched_result *r);

static const struct poll_observer check_observer = {
	.pair_begin = check__pair_begin,
	.pair_skip = check__pair_skip,
	.no_ext = check__no_ext,
	.request = check__request,
	.answer = check__answer,
	.edit = check__edit,
	.result = check__result,
	.failed = check__failed,
	.written = check__written,
	.pair_done = poller__check_pair_done,
};

/* ---- the check's steps: claim, poll, release, for each variant ---- */

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
		check__rep(ck->p, "warning   the lease was not extended: %s\n", job->err);
	else if (!ck->beat_alive && ck->leased)
		check__rep(ck->p, "warning   the lease was lost: another worker took the pair\n");
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
		{
			struct poll_pair *pr = NULL;

			if (poller__load(c, p, &ck->sp, &pr, 1, job->err, sizeof(job->err)) < 0) {
				free(ck->sp);
				ck->sp = NULL;
				return DB_EFAIL;
			}
			ck->sp->data = pr; /* the check's own pair: no one else sees it yet */
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
			check__rep(p, "warning   the lease was not released: %s\n", job->err);
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
			check__rep(p, "failed    %u of %u request%s, the first with %s\n", pr->nfailed,
				    pr->nbatches, pr->nbatches == 1 ? "" : "s",
				    poll_outcome_name(pr->first_fail));
		else
			check__rep(p, "failed    cut short\n");
	} else if (!pr->nbatches)
		check__rep(p, "done      no lead to ask about\n");
	check__rep(p, "\n");
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
	p->obs = &check_observer;
	p->obs_data = &ck;
	ck.report = out;
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
