/* timers: hold expiry, reject-after and pruning in set-based batches on the
 * database clock, scheduled on the daemon's loop; see include/timers.h. */
#include "timers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "db.h"
#include "lead.h"
#include "lead_store.h"
#include "log.h"
#include "settings.h"
#include "status.h"
#include "store.h"

#define TIMERS_DEF_INTERVAL_MS 5000
#define TIMERS_DEF_BATCH 1000
#define TIMERS_DEF_PRUNE_INTERVAL_MS 900000
#define TIMERS_DEF_PRUNE_BATCH 5000
#define TIMERS_DEF_KEEP_DAYS 30
#define TIMERS_KEEP_DAYS_MAX 36500
/* numeric(14,2): the largest amount a payout column holds, in cents */
#define TIMERS_MONEY_MAX INT64_C(99999999999999)

const char *timers_kind_name(enum timers_kind k)
{
	return k == TIMERS_HOLD ? "hold" : k == TIMERS_REJECT ? "reject" : "unknown";
}

const char *timers_table_name(enum timers_table t)
{
	return t == TIMERS_POLL_RUNS ? "poll_runs" : t == TIMERS_POSTBACKS_IN ? "postbacks_in" : "unknown";
}

/* ------------------------------------------------------------ lead batches */

/* The due leads (lead_store.h's columns) with what lead_apply() needs
 * besides: the offer's settings, the goal and the database's clock, in
 * UNIX seconds floored as the lead's times are. */
#define TIMERS_COLS                                                                            \
	"SELECT " LEAD_STORE_COLS("l") ", o.hold_days, o.reject_reason,"                       \
	" o.cancel_approved, g.id, g.payout, g.wm, g.pay, g.ref, g.currency,"                  \
	" floor(extract(epoch FROM now()))::bigint"

static const char *const timers_select_sql[] = {
	/* the partial index leads_hold_until */
	[TIMERS_HOLD] = TIMERS_COLS
	" FROM leads l JOIN offers o ON o.id = l.offer LEFT JOIN goals g ON g.id = l.goal"
	" WHERE l.status = 4 AND l.hold_until <= now() AND l.id <> ALL ($2::bigint[])"
	" LIMIT $1 FOR UPDATE OF l SKIP LOCKED",
	/* offer by offer on leads_offer_created_open: a plain join would let
	 * the planner scan every open lead each round to find none */
	[TIMERS_REJECT] = TIMERS_COLS
	" FROM offers o CROSS JOIN LATERAL ("
	"  SELECT * FROM leads l WHERE l.offer = o.id AND l.status IN (1, 2, 3)"
	"  AND l.created < now() - make_interval(days => o.reject_after_days)"
	"  AND l.id <> ALL ($2::bigint[]) LIMIT $1 FOR UPDATE SKIP LOCKED) l"
	" LEFT JOIN goals g ON g.id = l.goal"
	" WHERE o.reject_after_days IS NOT NULL LIMIT $1",
};

enum {
	C_LEAD, /* LEAD_STORE_NCOLS columns */
	C_HOLD_DAYS = C_LEAD + LEAD_STORE_NCOLS, C_REJECT_REASON, C_CANCEL_APPROVED, C_GID,
	C_PAYOUT, C_GWM, C_GPAY, C_GREF, C_GCURR, C_NOW, C_NCOLS
};

/* $1 the changed leads (lead_store_json()), $2 their history rows. */
static const char timers_write_sql[] =
	"WITH x AS MATERIALIZED ("
	" SELECT * FROM json_to_recordset($1::json) AS x(" LEAD_STORE_RECORD ")"
	"), u AS ("
	" UPDATE leads l SET" LEAD_STORE_SET
	" FROM x WHERE l.id = x.id RETURNING l.id"
	")"
	" " LEAD_STORE_HISTORY_INSERT
	" SELECT h.lead, 'timer', NULL, h.before, h.after"
	" FROM json_to_recordset($2::json) AS h(" LEAD_STORE_HISTORY_RECORD ")"
	" JOIN u ON u.id = h.lead";

static int64_t timers__i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int timers__money(const PGresult *r, int row, int col, int64_t *out)
{
	*out = 0;
	return PQgetisnull(r, row, col) ? 0 : lead_money_parse(PQgetvalue(r, row, col), out);
}

/* One row of the select as lead_apply()'s input. */
static int timers__read(const PGresult *r, int i, struct lead *l, struct lead_offer *o,
			struct lead_goal *g, bool *has_goal, char *err, size_t errlen)
{
	const char *payout;

	memset(o, 0, sizeof(*o));
	memset(g, 0, sizeof(*g));
	if (lead_store_read(r, i, C_LEAD, l) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": a money column is not a decimal", l->id);
		return -1;
	}
	o->hold_days = (int)timers__i64(r, i, C_HOLD_DAYS);
	o->reject_reason = (int)timers__i64(r, i, C_REJECT_REASON);
	o->cancel_approved = strcmp(PQgetvalue(r, i, C_CANCEL_APPROVED), "t") == 0;
	*has_goal = !PQgetisnull(r, i, C_GID);
	if (timers__money(r, i, C_GWM, &g->wm) < 0 || timers__money(r, i, C_GPAY, &g->pay) < 0 ||
	    timers__money(r, i, C_GREF, &g->ref) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": a money column of goal %s is not a decimal",
			 l->id, PQgetvalue(r, i, C_GID));
		return -1;
	}
	/* percents are numeric(14,2) too: 12.5 % reads as 1250, lead.h's unit */
	g->id = timers__i64(r, i, C_GID);
	g->curr = (int)timers__i64(r, i, C_GCURR);
	payout = PQgetvalue(r, i, C_PAYOUT);
	g->payout = strcmp(payout, "percent") == 0	 ? PAYOUT_PERCENT
		    : strcmp(payout, "recurring") == 0 ? PAYOUT_RECURRING
						       : PAYOUT_FIXED;
	return 0;
}

static void timers__edit(enum timers_kind kind, struct lead_edit *e)
{
	memset(e, 0, sizeof(*e));
	if (kind == TIMERS_HOLD) {
		e->set = LF_ACCEPT;
		e->accept = true;
	} else {
		e->set = LF_STATUS | LF_REASON;
		e->status = LS_CANCEL;
		e->reason = REASON_TIMER;
	}
}

static void timers__refuse(struct timers_batch *out, struct timers_skip *skip, int64_t id,
			   const char *why)
{
	size_t i;

	if (!out->refused++)
		snprintf(out->note, sizeof(out->note), "%s", why);
	if (!skip)
		return;
	for (i = 0; i < skip->n; i++)
		if (skip->ids[i] == id)
			return;
	if (skip->n < TIMERS_SKIP_MAX)
		skip->ids[skip->n++] = id;
}

/* The skip list as a PostgreSQL array literal. */
static int timers__skip_text(const struct timers_skip *skip, struct buf *b)
{
	size_t i;

	if (buf_addc(b, '{') < 0)
		return -1;
	for (i = 0; skip && i < skip->n; i++)
		if (buf_addf(b, "%s%" PRId64, i ? "," : "", skip->ids[i]) < 0)
			return -1;
	return buf_addc(b, '}');
}

static int timers__rollback(PGconn *c)
{
	if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}

/* Computes each lead's edit and appends the changed lead to rows and its
 * history row to hist (JSON arrays, lead_store.h); returns the number of
 * changed leads, or -1 with err set. */
static int timers__compute(const PGresult *r, enum timers_kind kind, struct timers_skip *skip,
			   struct timers_batch *out, struct buf *rows, struct buf *hist,
			   struct buf *lg, char *err,
			   size_t errlen)
{
	struct buf before, after;
	struct lead old, neu;
	struct lead_offer off;
	struct lead_goal goal;
	struct lead_edit e;
	char why[256];
	bool has_goal;
	int i, n = PQntuples(r), changed = 0, rc = -1;

	buf_init(&before, 0);
	buf_init(&after, 0);
	timers__edit(kind, &e);
	if (buf_addc(rows, '[') < 0 || buf_addc(hist, '[') < 0)
		goto full;
	for (i = 0; i < n; i++) {
		int64_t now = timers__i64(r, i, C_NOW);
		enum lead_result lr;

		if (timers__read(r, i, &old, &off, &goal, &has_goal, err, errlen) < 0)
			goto out;
		lr = lead_apply(&old, &off, has_goal ? &goal : NULL, &e, SOURCE_TIMER, now, &neu, why,
				sizeof(why));
		if (lr == LEAD_CHANGED && (neu.wm > TIMERS_MONEY_MAX || neu.pay > TIMERS_MONEY_MAX ||
					   neu.ref > TIMERS_MONEY_MAX)) {
			snprintf(why, sizeof(why),
				 "lead %" PRId64 ": a payout of goal %" PRId64 " exceeds 999999999999.99",
				 old.id, goal.id);
			lr = LEAD_REFUSED;
		}
		if (lr == LEAD_REFUSED)
			timers__refuse(out, skip, old.id, why);
		if (lr != LEAD_CHANGED)
			continue;
		buf_reset(&before);
		buf_reset(&after);
		if (lead_diff(&old, &neu, &before, &after) < 0 ||
		    buf_adds(rows, changed ? ",{" : "{") < 0 || lead_store_json(rows, &neu) < 0 ||
		    buf_addc(rows, '}') < 0 ||
		    lead_store_history_json(hist, !changed, old.id, NULL, 0, before.p, after.p) < 0)
			goto full;
		if (log_leads_on()) {
			struct log_lead ll = { old.id, old.offer, 0, old.status, neu.status };

			if (buf_add(lg, &ll, sizeof(ll)) < 0) {
				/* the log lines are best effort */
			}
		}
		changed++;
	}
	if (buf_addc(rows, ']') < 0 || buf_addc(hist, ']') < 0)
		goto full;
	rc = changed;
	goto out;
full:
	snprintf(err, errlen, "timers %s batch: out of memory", timers_kind_name(kind));
out:
	buf_release(&before);
	buf_release(&after);
	return rc;
}

int timers_leads_batch(PGconn *c, enum timers_kind kind, size_t limit, struct timers_skip *skip,
		       struct timers_batch *out, char *err, size_t errlen)
{
	struct buf rows, hist, skipped, lg;
	PGresult *r = NULL, *w = NULL;
	char lim[32], what[64];
	const char *params[2];
	int changed, rc = -1;

	memset(out, 0, sizeof(*out));
	buf_init(&rows, 0);
	buf_init(&hist, 0);
	buf_init(&skipped, 0);
	buf_init(&lg, 0);
	snprintf(what, sizeof(what), "timers %s batch", timers_kind_name(kind));
	if ((kind != TIMERS_HOLD && kind != TIMERS_REJECT) || limit < 1 || limit > TIMERS_LIMIT_MAX) {
		snprintf(err, errlen, "%s: limit %zu is not in 1..%d", what, limit, TIMERS_LIMIT_MAX);
		goto out;
	}
	snprintf(lim, sizeof(lim), "%zu", limit);
	if (timers__skip_text(skip, &skipped) < 0) {
		snprintf(err, errlen, "%s: out of memory", what);
		goto out;
	}
	params[0] = lim;
	params[1] = skipped.p;
	if (store_exec(c, what, "BEGIN", 0, NULL, err, errlen) < 0)
		goto out;
	r = store_query(c, what, timers_select_sql[kind], 2, params, err, errlen);
	if (!r)
		goto fail;
	if (PQnfields(r) != C_NCOLS) {
		snprintf(err, errlen, "%s: the select gave %d columns", what, PQnfields(r));
		goto fail;
	}
	out->picked = (size_t)PQntuples(r);
	changed = timers__compute(r, kind, skip, out, &rows, &hist, &lg, err, errlen);
	if (changed < 0)
		goto fail;
	if (changed) {
		params[0] = rows.p;
		params[1] = hist.p;
		w = store_query(c, what, timers_write_sql, 2, params, err, errlen);
		if (!w)
			goto fail;
		if (strtol(PQcmdTuples(w), NULL, 10) != changed) {
			snprintf(err, errlen, "%s: %s history rows for %d changed leads", what,
				 PQcmdTuples(w), changed);
			goto fail;
		}
	}
	if (store_exec(c, what, "COMMIT", 0, NULL, err, errlen) < 0)
		goto fail;
	out->changed = (size_t)changed;
	log_lead_changes("timer", (const struct log_lead *)(const void *)lg.p,
			 lg.len / sizeof(struct log_lead));
	rc = 0;
	goto out;
fail:
	timers__rollback(c);
	out->picked = out->changed = out->refused = 0;
out:
	PQclear(r);
	PQclear(w);
	buf_release(&rows);
	buf_release(&hist);
	buf_release(&skipped);
	buf_release(&lg);
	return rc;
}

/* ---------------------------------------------------------------- pruning */

static const char *const timers_prune_sql[] = {
	/* the oldest `limit` ids only, so a table with nothing to prune costs
	 * `limit` index entries, not a scan */
	[TIMERS_POLL_RUNS] =
		"DELETE FROM poll_runs p USING ("
		" SELECT s.id FROM (SELECT id, started FROM poll_runs ORDER BY id LIMIT $2) s"
		" WHERE s.started < now() - make_interval(days => $1::integer)) d"
		" WHERE p.id = d.id",
	[TIMERS_POSTBACKS_IN] =
		"DELETE FROM postbacks_in p USING ("
		" SELECT id FROM postbacks_in WHERE at < now() - make_interval(days => $1::integer)"
		" ORDER BY at LIMIT $2) d"
		" WHERE p.id = d.id",
};

int timers_prune_batch(PGconn *c, enum timers_table table, int keep_days, size_t limit,
		       size_t *deleted, char *err, size_t errlen)
{
	char days[16], lim[32], what[64];
	const char *params[2] = { days, lim };
	PGresult *r = NULL;
	int rc = -1;

	*deleted = 0;
	snprintf(what, sizeof(what), "timers prune %s", timers_table_name(table));
	if ((table != TIMERS_POLL_RUNS && table != TIMERS_POSTBACKS_IN) || keep_days < 1 ||
	    keep_days > TIMERS_KEEP_DAYS_MAX || limit < 1 || limit > TIMERS_LIMIT_MAX) {
		snprintf(err, errlen, "%s: keep %d days, limit %zu: out of range", what, keep_days,
			 limit);
		goto out;
	}
	snprintf(days, sizeof(days), "%d", keep_days);
	snprintf(lim, sizeof(lim), "%zu", limit);
	r = store_query(c, what, timers_prune_sql[table], 2, params, err, errlen);
	if (!r)
		goto out;
	*deleted = (size_t)strtoul(PQcmdTuples(r), NULL, 10);
	rc = 0;
out:
	PQclear(r);
	return rc;
}

/* ---------------------------------------------------------- configuration */

static void timers__defaults(struct timers_config *c)
{
	if (!c->interval_ms)
		c->interval_ms = TIMERS_DEF_INTERVAL_MS;
	if (!c->batch)
		c->batch = TIMERS_DEF_BATCH;
	if (c->batch > TIMERS_LIMIT_MAX)
		c->batch = TIMERS_LIMIT_MAX;
	if (!c->prune_interval_ms)
		c->prune_interval_ms = TIMERS_DEF_PRUNE_INTERVAL_MS;
	if (!c->prune_batch)
		c->prune_batch = TIMERS_DEF_PRUNE_BATCH;
	if (c->prune_batch > TIMERS_LIMIT_MAX)
		c->prune_batch = TIMERS_LIMIT_MAX;
	if (c->keep_poll_runs_days == 0)
		c->keep_poll_runs_days = TIMERS_DEF_KEEP_DAYS;
	if (c->keep_postbacks_days == 0)
		c->keep_postbacks_days = TIMERS_DEF_KEEP_DAYS;
	if (c->keep_poll_runs_days < 0)
		c->keep_poll_runs_days = TIMERS_KEEP_FOREVER;
	if (c->keep_postbacks_days < 0)
		c->keep_postbacks_days = TIMERS_KEEP_FOREVER;
}

void timers_config_from_settings(const struct settings *s, struct timers_config *out)
{
	memset(out, 0, sizeof(*out));
	out->interval_ms = (uint64_t)s->timer_interval * 1000;
	out->batch = (size_t)s->timer_batch;
	out->prune_interval_ms = (uint64_t)s->prune_interval * 1000;
	out->keep_poll_runs_days = s->poll_keep_days ? (int)s->poll_keep_days : TIMERS_KEEP_FOREVER;
	out->keep_postbacks_days =
		s->postbacks_keep_days ? (int)s->postbacks_keep_days : TIMERS_KEEP_FOREVER;
	timers__defaults(out);
}

/* ---------------------------------------------------------------- logging */

static long long timers__ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (long long)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void timers__log_batch(enum timers_kind kind, const struct timers_batch *b, long long ms)
{
	char q[300];

	if (b->picked)
		log_info("timer batch", "kind=%s picked=%zu %s=%zu refused=%zu ms=%lld",
			 timers_kind_name(kind), b->picked,
			 kind == TIMERS_HOLD ? "approved" : "rejected", b->changed, b->refused, ms);
	else
		log_debug("timer batch", "kind=%s picked=0 ms=%lld", timers_kind_name(kind), ms);
	if (b->refused)
		log_warn("timer edit refused", "kind=%s refused=%zu first=%s", timers_kind_name(kind),
			 b->refused, log_quote(q, sizeof(q), b->note));
}

static void timers__log_prune(enum timers_table t, int keep_days, size_t n, long long ms)
{
	if (n)
		log_info("pruned", "table=%s rows=%zu keep_days=%d ms=%lld", timers_table_name(t), n,
			 keep_days, ms);
	else
		log_debug("pruned", "table=%s rows=0 keep_days=%d ms=%lld", timers_table_name(t),
			  keep_days, ms);
}

static void timers__count(struct timers_stats *st, enum timers_kind kind,
			  const struct timers_batch *b)
{
	st->batches++;
	st->picked += b->picked;
	if (kind == TIMERS_HOLD)
		st->approved += b->changed;
	else
		st->rejected += b->changed;
	st->refused += b->refused;
}

/* Whether a round goes on after a batch: a full batch that made progress
 * (changed leads, or refused ones now skipped) may have left more. */
static bool timers__more(const struct timers_batch *b, size_t limit, size_t skip_before,
			 const struct timers_skip *skip)
{
	return b->picked >= limit && (b->changed > 0 || skip->n > skip_before);
}

static int timers__keep(const struct timers_config *cfg, int t)
{
	return t == TIMERS_POLL_RUNS ? cfg->keep_poll_runs_days : cfg->keep_postbacks_days;
}

/* The first table from t on that is pruned at all; past the last: none. */
static enum timers_table timers__first_table(const struct timers_config *cfg, int t)
{
	while (t <= TIMERS_POSTBACKS_IN && timers__keep(cfg, t) == TIMERS_KEEP_FOREVER)
		t++;
	return (enum timers_table)t;
}

/* ------------------------------------------------------- synchronous rounds */

int timers_round(PGconn *c, const struct timers_config *cfg_in, struct timers_stats *st,
		 char *err, size_t errlen)
{
	struct timers_config cfg = *cfg_in;
	struct timers_stats none;
	struct timers_skip *skip = calloc(1, sizeof(*skip));
	struct timers_batch b;
	struct timespec t0;
	int k, rc = -1;

	if (!st)
		st = &none;
	timers__defaults(&cfg);
	if (!skip) {
		snprintf(err, errlen, "timers round: out of memory");
		return -1;
	}
	for (k = TIMERS_HOLD; k <= TIMERS_REJECT; k++) {
		size_t before;

		skip->n = 0;
		do {
			before = skip->n;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			if (timers_leads_batch(c, (enum timers_kind)k, cfg.batch, skip, &b, err,
					       errlen) < 0) {
				st->failures++;
				goto out;
			}
			timers__log_batch((enum timers_kind)k, &b, timers__ms_since(&t0));
			timers__count(st, (enum timers_kind)k, &b);
		} while (timers__more(&b, cfg.batch, before, skip));
	}
	rc = 0;
out:
	st->rounds++;
	free(skip);
	return rc;
}

int timers_prune(PGconn *c, const struct timers_config *cfg_in, struct timers_stats *st,
		 char *err, size_t errlen)
{
	struct timers_config cfg = *cfg_in;
	struct timers_stats none;
	struct timespec t0;
	size_t n;
	int t, rc = -1;

	if (!st)
		st = &none;
	timers__defaults(&cfg);
	for (t = TIMERS_POLL_RUNS; t <= TIMERS_POSTBACKS_IN; t++) {
		if (timers__keep(&cfg, t) == TIMERS_KEEP_FOREVER)
			continue;
		do {
			clock_gettime(CLOCK_MONOTONIC, &t0);
			if (timers_prune_batch(c, (enum timers_table)t, timers__keep(&cfg, t),
					       cfg.prune_batch, &n, err, errlen) < 0) {
				st->failures++;
				goto out;
			}
			timers__log_prune((enum timers_table)t, timers__keep(&cfg, t), n,
					  timers__ms_since(&t0));
			if (t == TIMERS_POLL_RUNS)
				st->pruned_poll_runs += n;
			else
				st->pruned_postbacks += n;
		} while (n >= cfg.prune_batch);
	}
	rc = 0;
out:
	st->prune_rounds++;
	return rc;
}

/* ------------------------------------------------------- the daemon's loop */

struct timers {
	uv_loop_t *loop;
	struct db *db;
	struct timers_config cfg;
	uv_timer_t lead_timer, prune_timer;
	int handles_open;
	struct timers_stats st;

	/* The lead round. While lead_busy the worker owns kind, skip and
	 * batch; the loop reads them in the job's completion. */
	struct db_job lead_job;
	bool lead_busy;
	enum timers_kind kind;
	struct timers_skip skip;
	size_t skip_before;
	struct timers_batch batch;
	long long lead_ms;
	bool lead_failing;

	/* The prune round, likewise. */
	struct db_job prune_job;
	bool prune_busy;
	enum timers_table table;
	size_t pruned;
	long long prune_ms;
	bool prune_failing;

	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
};

static int timers__lead_run(PGconn *c, struct db_job *j)
{
	struct timers *t = j->data;
	struct timespec t0;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	t->skip_before = t->skip.n;
	rc = timers_leads_batch(c, t->kind, t->cfg.batch, &t->skip, &t->batch, j->err,
				sizeof(j->err));
	t->lead_ms = timers__ms_since(&t0);
	return rc < 0 ? DB_EFAIL : DB_OK;
}

static int timers__prune_run(PGconn *c, struct db_job *j)
{
	struct timers *t = j->data;
	struct timespec t0;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = timers_prune_batch(c, t->table, timers__keep(&t->cfg, t->table), t->cfg.prune_batch,
				&t->pruned, j->err, sizeof(j->err));
	t->prune_ms = timers__ms_since(&t0);
	return rc < 0 ? DB_EFAIL : DB_OK;
}

static void timers__lead_done(struct db_job *j);
static void timers__prune_done(struct db_job *j);

static void timers__finish(struct timers *t)
{
	void (*cb)(void *data) = t->close_cb;

	if (!t->closing || t->handles_open || t->lead_busy || t->prune_busy)
		return;
	if (cb)
		cb(t->close_data);
	free(t);
}

/* A failed batch ends its round: logged as a warning when the previous one
 * worked, so a database outage is one line, not one every interval. */
static void timers__failed(struct timers *t, struct db_job *j, bool *failing, const char *what)
{
	char q[300];

	t->st.failures++;
	if (!*failing)
		log_warn("timers failed", "work=%s error=%s", what, log_quote(q, sizeof(q), j->err));
	else
		log_debug("timers failed", "work=%s error=%s", what, log_quote(q, sizeof(q), j->err));
	*failing = true;
}

/* Queues the next batch of the current round; false when the queue is full
 * or closing (the round then ends and the next one comes as usual). */
static bool timers__submit(struct timers *t, struct db_job *j, db_run_fn run, db_done_fn done,
			   bool *busy, const char *what)
{
	memset(j, 0, sizeof(*j));
	j->run = run;
	j->done = done;
	j->data = t;
	if (db_submit(t->db, j) == 0) {
		*busy = true;
		return true;
	}
	t->st.failures++;
	log_debug("timers failed", "work=%s error=%s", what, "\"database queue full\"");
	return false;
}

static void timers__lead_cb(uv_timer_t *h);
static void timers__prune_cb(uv_timer_t *h);

static void timers__lead_next(struct timers *t)
{
	t->st.rounds++;
	uv_timer_start(&t->lead_timer, timers__lead_cb, t->cfg.interval_ms, 0);
}

static void timers__prune_next(struct timers *t)
{
	t->st.prune_rounds++;
	uv_timer_start(&t->prune_timer, timers__prune_cb, t->cfg.prune_interval_ms, 0);
}

static void timers__lead_cb(uv_timer_t *h)
{
	struct timers *t = h->data;

	if (t->closing || t->lead_busy)
		return;
	t->kind = TIMERS_HOLD;
	t->skip.n = 0;
	if (!timers__submit(t, &t->lead_job, timers__lead_run, timers__lead_done, &t->lead_busy,
			    "leads"))
		timers__lead_next(t);
}

static void timers__lead_done(struct db_job *j)
{
	struct timers *t = j->data;
	bool more = false;

	t->lead_busy = false;
	if (j->status == DB_OK) {
		if (t->lead_failing)
			log_info("timers working again", "work=%s", "leads");
		t->lead_failing = false;
		timers__log_batch(t->kind, &t->batch, t->lead_ms);
		timers__count(&t->st, t->kind, &t->batch);
		more = timers__more(&t->batch, t->cfg.batch, t->skip_before, &t->skip);
		if (!more && t->kind == TIMERS_HOLD) {
			t->kind = TIMERS_REJECT;
			t->skip.n = 0;
			more = true;
		}
	} else
		timers__failed(t, j, &t->lead_failing, "leads");
	if (t->closing) {
		timers__finish(t);
		return;
	}
	if (more && timers__submit(t, &t->lead_job, timers__lead_run, timers__lead_done,
				   &t->lead_busy, "leads"))
		return;
	timers__lead_next(t);
}

static void timers__prune_cb(uv_timer_t *h)
{
	struct timers *t = h->data;

	if (t->closing || t->prune_busy)
		return;
	t->table = timers__first_table(&t->cfg, TIMERS_POLL_RUNS);
	if (t->table > TIMERS_POSTBACKS_IN) {
		timers__prune_next(t);
		return;
	}
	if (!timers__submit(t, &t->prune_job, timers__prune_run, timers__prune_done,
			    &t->prune_busy, "prune"))
		timers__prune_next(t);
}

static void timers__prune_done(struct db_job *j)
{
	struct timers *t = j->data;
	bool more = false;

	t->prune_busy = false;
	if (j->status == DB_OK) {
		if (t->prune_failing)
			log_info("timers working again", "work=%s", "prune");
		t->prune_failing = false;
		timers__log_prune(t->table, timers__keep(&t->cfg, t->table), t->pruned, t->prune_ms);
		if (t->table == TIMERS_POLL_RUNS)
			t->st.pruned_poll_runs += t->pruned;
		else
			t->st.pruned_postbacks += t->pruned;
		more = t->pruned >= t->cfg.prune_batch;
		if (!more) {
			t->table = timers__first_table(&t->cfg, t->table + 1);
			more = t->table <= TIMERS_POSTBACKS_IN;
		}
	} else
		timers__failed(t, j, &t->prune_failing, "prune");
	if (t->closing) {
		timers__finish(t);
		return;
	}
	if (more && timers__submit(t, &t->prune_job, timers__prune_run, timers__prune_done,
				   &t->prune_busy, "prune"))
		return;
	timers__prune_next(t);
}

int timers_start(uv_loop_t *loop, struct db *db, const struct timers_config *cfg,
		 struct timers **out, char *err, size_t errlen)
{
	struct timers *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "timers: out of memory");
		return -1;
	}
	t->loop = loop;
	t->db = db;
	if (cfg)
		t->cfg = *cfg;
	timers__defaults(&t->cfg);
	uv_timer_init(loop, &t->lead_timer);
	uv_timer_init(loop, &t->prune_timer);
	t->lead_timer.data = t;
	t->prune_timer.data = t;
	t->handles_open = 2;
	uv_timer_start(&t->lead_timer, timers__lead_cb, 0, 0);
	uv_timer_start(&t->prune_timer, timers__prune_cb, t->cfg.interval_ms, 0);
	log_info("timers started",
		 "interval_ms=%" PRIu64 " batch=%zu prune_interval_ms=%" PRIu64
		 " keep_poll_runs_days=%d keep_postbacks_days=%d",
		 t->cfg.interval_ms, t->cfg.batch, t->cfg.prune_interval_ms,
		 t->cfg.keep_poll_runs_days, t->cfg.keep_postbacks_days);
	*out = t;
	return 0;
}

void timers_stats(const struct timers *t, struct timers_stats *out)
{
	*out = t->st;
}

static void timers__closed(uv_handle_t *h)
{
	struct timers *t = h->data;

	t->handles_open--;
	timers__finish(t);
}

void timers_close(struct timers *t, void (*cb)(void *data), void *data)
{
	t->closing = true;
	t->close_cb = cb;
	t->close_data = data;
	uv_timer_stop(&t->lead_timer);
	uv_timer_stop(&t->prune_timer);
	uv_close((uv_handle_t *)&t->lead_timer, timers__closed);
	uv_close((uv_handle_t *)&t->prune_timer, timers__closed);
}
