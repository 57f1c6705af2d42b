/* scheduler: leases of due (offer, variant) pairs, heartbeats and releases
 * with back-off (see scheduler.h). */
#include "scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "store.h"

/* The interval of a pair's variant: the offer's, else the default ($a, $b,
 * $c for processing, accepted, dates). s is poll_schedule, o offers. */
#define SCHED_INTERVAL_SQL(a, b, c)                                               \
	"CASE s.variant WHEN 'processing' THEN coalesce(o.interval_processing, " a ")" \
	" WHEN 'accepted' THEN coalesce(o.interval_accepted, " b ")"                   \
	" ELSE coalesce(o.interval_dates, " c ") END"

/* Whole intervals missed: 0 for a pair never polled. */
#define SCHED_MISSED_SQL(secs)                                                    \
	"CASE WHEN s.last_ok IS NULL AND s.last_run IS NULL THEN 0"                   \
	" ELSE greatest(0, floor(extract(epoch FROM now() - s.next_due) / " secs "))" \
	" END::bigint"

static const char sched_claim_sql[] =
	"WITH due AS ("
	" SELECT s.offer, s.variant, s.lease_owner AS prev, "
	SCHED_INTERVAL_SQL("$4::integer", "$5::integer", "$6::integer") " AS secs"
	" FROM poll_schedule s JOIN offers o ON o.id = s.offer"
	" WHERE s.next_due <= now() AND (s.lease_until IS NULL OR s.lease_until < now())"
	"  AND o.enabled AND o.rule IS NOT NULL"
	" ORDER BY s.next_due LIMIT $2"
	" FOR UPDATE OF s SKIP LOCKED"
	")"
	" UPDATE poll_schedule s SET lease_owner = $1,"
	"  lease_until = now() + make_interval(secs => $3::double precision)"
	" FROM due WHERE s.offer = due.offer AND s.variant = due.variant"
	" RETURNING s.offer, s.variant, s.fail_count, due.secs, " SCHED_MISSED_SQL("due.secs") ","
	"  coalesce(due.prev, '')";

static const char sched_lease_sql[] =
	"UPDATE poll_schedule s SET lease_owner = $1,"
	"  lease_until = now() + make_interval(secs => $2::double precision)"
	" FROM offers o WHERE s.offer = $3 AND s.variant = $4 AND o.id = s.offer"
	"  AND (s.lease_until IS NULL OR s.lease_until < now() OR s.lease_owner = $1)"
	" RETURNING s.offer, s.variant, s.fail_count, "
	SCHED_INTERVAL_SQL("$5::integer", "$6::integer", "$7::integer") ", "
	SCHED_MISSED_SQL("(" SCHED_INTERVAL_SQL("$5::integer", "$6::integer", "$7::integer") ")")
	", ''";

/* Lock order. Every statement that locks several schedule rows and may
 * wait for them locks them in (offer, variant) order, in a CTE that sorts
 * before it locks (a locking SELECT locks rows as its ORDER BY hands them
 * out); an UPDATE ... FROM a list locks in whatever order its join plan
 * reads, which differs between a heartbeat and a release: two of them on
 * overlapping rows deadlocked. FOR NO KEY UPDATE is the lock the UPDATE
 * takes anyway, so a poll's FOR KEY SHARE lease check does not wait on a
 * heartbeat. The claim needs no order: SKIP LOCKED never waits. */
#define SCHED_LOCK_SQL(list, cond)                                                   \
	" k AS MATERIALIZED ("                                                       \
	" SELECT s.offer, s.variant FROM poll_schedule s JOIN " list                 \
	" ON s.offer = x.o AND s.variant = x.v WHERE " cond                          \
	" ORDER BY s.offer, s.variant FOR NO KEY UPDATE OF s)"

static const char sched_heartbeat_sql[] =
	"WITH" SCHED_LOCK_SQL("unnest($3::bigint[], $4::text[]) AS x(o, v)", "s.lease_owner = $1")
	" UPDATE poll_schedule s SET lease_until = now() + make_interval(secs => $2::double precision)"
	" FROM k WHERE s.offer = k.offer AND s.variant = k.variant AND s.lease_owner = $1"
	" RETURNING s.offer, s.variant";

/* e: 0 ok, 1 failed, 2 requeue (enum sched_end). */
static const char sched_release_sql[] =
	"WITH j AS MATERIALIZED (SELECT * FROM json_to_recordset($2::json)"
	"  AS j(o bigint, v text, e integer, d double precision, r bigint, err text)),"
	SCHED_LOCK_SQL("(SELECT DISTINCT o, v FROM j) AS x", "s.lease_owner = $1")
	" UPDATE poll_schedule s SET lease_owner = NULL, lease_until = NULL,"
	" next_due = CASE WHEN j.e = 2 THEN s.next_due ELSE now() + make_interval(secs => j.d) END,"
	" fail_count = CASE j.e WHEN 0 THEN 0 WHEN 1 THEN s.fail_count + 1 ELSE s.fail_count END,"
	" last_ok = CASE WHEN j.e = 0 THEN now() ELSE s.last_ok END,"
	" last_run = coalesce(j.r, s.last_run),"
	" last_error = CASE j.e WHEN 0 THEN NULL WHEN 1 THEN j.err ELSE s.last_error END"
	" FROM k JOIN j ON j.o = k.offer AND j.v = k.variant"
	" WHERE s.offer = k.offer AND s.variant = k.variant AND s.lease_owner = $1";

/* ------------------------------------------------------------ helpers */

int scheduler_worker_id(char *out, size_t len)
{
	char host[64] = "localhost";
	unsigned char rnd[4] = { 0 };
	uint32_t r;
	int n;

	if (gethostname(host, sizeof(host)) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) < 0) {
		uint64_t t = uv_hrtime();

		memcpy(rnd, &t, sizeof(rnd));
	}
	r = (uint32_t)rnd[0] << 24 | (uint32_t)rnd[1] << 16 | (uint32_t)rnd[2] << 8 | rnd[3];
	n = snprintf(out, len, "%s:%ld:%08" PRIx32, host, (long)getpid(), r);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

unsigned scheduler_backoff_s(int fail_count, unsigned min_s, unsigned max_s, uint32_t rnd)
{
	uint64_t b = min_s ? min_s : 1;
	int i;

	if (max_s < b)
		max_s = (unsigned)b;
	for (i = 0; i < fail_count && b < max_s; i++)
		b *= 2;
	if (b > max_s)
		b = max_s;
	return (unsigned)(b / 2 + rnd % (b / 2 + 1));
}

static int sched__i64(const PGresult *r, int row, int col, int64_t *out)
{
	char *end;
	const char *v = PQgetvalue(r, row, col);

	*out = strtoll(v, &end, 10);
	return *end ? -1 : 0;
}

/* Rows (offer, variant, fail_count, secs, missed, prev) into pairs. */
static int sched__pairs(const PGresult *r, struct sched_pair ***out, size_t *n, char *err,
			size_t errlen)
{
	size_t i, rows = (size_t)PQntuples(r);
	struct sched_pair **v = calloc(rows + 1, sizeof(*v));
	int rc = -1;

	*out = NULL;
	*n = 0;
	if (!v)
		goto oom;
	for (i = 0; i < rows; i++) {
		struct sched_pair *p = calloc(1, sizeof(*p));
		int64_t fc, secs;
		int var = rule_variant_parse(PQgetvalue(r, (int)i, 1));

		if (!p)
			goto oom;
		v[i] = p;
		if (sched__i64(r, (int)i, 0, &p->offer) < 0 || var < 0 ||
		    sched__i64(r, (int)i, 2, &fc) < 0 || sched__i64(r, (int)i, 3, &secs) < 0 ||
		    sched__i64(r, (int)i, 4, &p->missed) < 0) {
			snprintf(err, errlen, "claim: unexpected row %zu", i);
			goto fail;
		}
		p->variant = (enum rule_variant)var;
		p->fail_count = (int)fc;
		p->interval_s = secs > 0 ? (unsigned)secs : 1;
		snprintf(p->prev_owner, sizeof(p->prev_owner), "%s", PQgetvalue(r, (int)i, 5));
	}
	*out = v;
	*n = rows;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	for (i = 0; v && i < rows; i++)
		free(v[i]);
	free(v);
	return rc;
}

int scheduler_sql_claim(PGconn *c, const char *worker, unsigned lease_s, unsigned max,
			const unsigned intervals[RULE_VARIANTS], struct sched_pair ***out, size_t *n,
			char *err, size_t errlen)
{
	char smax[16], slease[16], iv[RULE_VARIANTS][16];
	const char *params[6];
	PGresult *r;
	int rc;

	snprintf(smax, sizeof(smax), "%u", max);
	snprintf(slease, sizeof(slease), "%u", lease_s);
	for (rc = 0; rc < RULE_VARIANTS; rc++)
		snprintf(iv[rc], sizeof(iv[rc]), "%u", intervals[rc]);
	params[0] = worker;
	params[1] = smax;
	params[2] = slease;
	params[3] = iv[0];
	params[4] = iv[1];
	params[5] = iv[2];
	*out = NULL;
	*n = 0;
	r = store_query(c, "claim", sched_claim_sql, 6, params, err, errlen);
	if (!r)
		return -1;
	rc = sched__pairs(r, out, n, err, errlen);
	PQclear(r);
	return rc;
}

int scheduler_sql_lease(PGconn *c, const char *worker, unsigned lease_s, int64_t offer,
			enum rule_variant v, const unsigned intervals[RULE_VARIANTS],
			struct sched_pair **out, char *err, size_t errlen)
{
	char slease[16], soffer[24], iv[RULE_VARIANTS][16];
	const char *params[7];
	struct sched_pair **pairs = NULL;
	PGresult *r = NULL;
	size_t n = 0;
	int i, rc = -1;

	*out = NULL;
	snprintf(slease, sizeof(slease), "%u", lease_s);
	snprintf(soffer, sizeof(soffer), "%" PRId64, offer);
	for (i = 0; i < RULE_VARIANTS; i++)
		snprintf(iv[i], sizeof(iv[i]), "%u", intervals[i]);
	params[0] = worker;
	params[1] = slease;
	params[2] = soffer;
	params[3] = rule_variant_name(v);
	params[4] = iv[0];
	params[5] = iv[1];
	params[6] = iv[2];
	r = store_query(c, "lease", sched_lease_sql, 7, params, err, errlen);
	if (!r || sched__pairs(r, &pairs, &n, err, errlen) < 0)
		goto out;
	if (n == 1) {
		*out = pairs[0];
		rc = 0;
		goto out;
	}
	PQclear(r);
	r = store_query(c, "lease",
			"SELECT lease_owner, to_char(lease_until AT TIME ZONE 'UTC',"
			" 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM poll_schedule"
			" WHERE offer = $1 AND variant = $2",
			2, params + 2, err, errlen);
	if (!r)
		goto out;
	if (PQntuples(r) == 0)
		snprintf(err, errlen, "offer %" PRId64 " not found", offer);
	else
		snprintf(err, errlen, "offer %" PRId64 " %s is being polled by '%s' (lease until %s)",
			 offer, rule_variant_name(v), PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
out:
	for (i = 0; pairs && (size_t)i < n; i++)
		if (!*out || pairs[i] != *out)
			free(pairs[i]);
	free(pairs);
	PQclear(r);
	return rc;
}

/* The pair's due time moves only when the offer is enabled and nobody
 * holds the lease; the last columns say which case it was. */
static const char sched_due_now_sql[] =
	"WITH o AS (SELECT id, enabled FROM offers WHERE id = $1),"
	" u AS (UPDATE poll_schedule s SET next_due = now() FROM o"
	"  WHERE s.offer = o.id AND s.variant = $2 AND o.enabled"
	"  AND (s.lease_until IS NULL OR s.lease_until <= now()) RETURNING s.offer)"
	" SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM o), (SELECT enabled FROM o),"
	" s.offer IS NOT NULL, coalesce(s.lease_owner, '')"
	" FROM (SELECT 1) x LEFT JOIN poll_schedule s ON s.offer = $1 AND s.variant = $2";

int scheduler_sql_due_now(PGconn *c, int64_t offer, enum rule_variant v, char *err, size_t errlen)
{
	char soffer[24];
	const char *params[2] = { soffer, rule_variant_name(v) };
	PGresult *r;
	int rc = -1;

	snprintf(soffer, sizeof(soffer), "%" PRId64, offer);
	r = store_query(c, "due now", sched_due_now_sql, 2, params, err, errlen);
	if (!r)
		return -1;
	if (strcmp(PQgetvalue(r, 0, 0), "1") == 0) {
		rc = 0;
	} else if (strcmp(PQgetvalue(r, 0, 1), "0") == 0) {
		snprintf(err, errlen, "offer %" PRId64 " not found", offer);
		rc = SCHED_ENOTFOUND;
	} else if (strcmp(PQgetvalue(r, 0, 3), "t") != 0) {
		snprintf(err, errlen, "offer %" PRId64 " names no rule: nothing to poll", offer);
		rc = SCHED_ENOTFOUND;
	} else if (strcmp(PQgetvalue(r, 0, 2), "t") != 0) {
		snprintf(err, errlen, "offer %" PRId64 " is disabled", offer);
		rc = SCHED_EBUSY;
	} else {
		snprintf(err, errlen, "offer %" PRId64 " %s is being polled now by '%s'", offer,
			 rule_variant_name(v), PQgetvalue(r, 0, 4));
		rc = SCHED_EBUSY;
	}
	PQclear(r);
	return rc;
}

int scheduler_sql_heartbeat(PGconn *c, const char *worker, unsigned lease_s,
			    const struct sched_key *keys, size_t n, bool *alive, char *err,
			    size_t errlen)
{
	struct buf offers, variants;
	char slease[16];
	const char *params[4];
	PGresult *r = NULL;
	size_t i, j;
	int e = 0, rc = -1;

	buf_init(&offers, 0);
	buf_init(&variants, 0);
	for (i = 0; i < n; i++) {
		alive[i] = false;
		e |= buf_addf(&offers, "%s%" PRId64, i ? "," : "{", keys[i].offer);
		e |= buf_addf(&variants, "%s%s", i ? "," : "{", rule_variant_name(keys[i].variant));
	}
	e |= buf_adds(&offers, n ? "}" : "{}");
	e |= buf_adds(&variants, n ? "}" : "{}");
	if (e) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(slease, sizeof(slease), "%u", lease_s);
	params[0] = worker;
	params[1] = slease;
	params[2] = offers.p;
	params[3] = variants.p;
	r = store_query(c, "heartbeat", sched_heartbeat_sql, 4, params, err, errlen);
	if (!r)
		goto out;
	for (j = 0; j < (size_t)PQntuples(r); j++) {
		int64_t o;
		int v = rule_variant_parse(PQgetvalue(r, (int)j, 1));

		if (sched__i64(r, (int)j, 0, &o) < 0)
			continue;
		for (i = 0; i < n; i++)
			if (keys[i].offer == o && (int)keys[i].variant == v)
				alive[i] = true;
	}
	rc = 0;
out:
	PQclear(r);
	buf_release(&offers);
	buf_release(&variants);
	return rc;
}

int scheduler_sql_release(PGconn *c, const char *worker, const struct sched_release *rel, size_t n,
			  char *err, size_t errlen)
{
	struct buf js;
	const char *params[2];
	size_t i;
	int e = 0, rc = -1;

	buf_init(&js, 0);
	e |= buf_addc(&js, '[');
	for (i = 0; i < n; i++) {
		const struct sched_release *x = &rel[i];

		e |= buf_addf(&js, "%s{\"o\":%" PRId64 ",\"v\":\"%s\",\"e\":%d,\"d\":%.3f,\"r\":",
			      i ? "," : "", x->offer, rule_variant_name(x->variant), (int)x->end,
			      x->delay_s);
		if (x->run > 0)
			e |= buf_addf(&js, "%" PRId64, x->run);
		else
			e |= buf_adds(&js, "null");
		e |= buf_adds(&js, ",\"err\":");
		if (x->error) {
			size_t l = strlen(x->error);

			e |= buf_add_json_str(&js, x->error, l > SCHED_ERROR_MAX ? SCHED_ERROR_MAX : l);
		} else
			e |= buf_adds(&js, "null");
		e |= buf_addc(&js, '}');
	}
	e |= buf_addc(&js, ']');
	if (e) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	params[0] = worker;
	params[1] = js.p;
	rc = store_exec(c, "release", sched_release_sql, 2, params, err, errlen);
out:
	buf_release(&js);
	return rc;
}

/* ------------------------------------------------------------ loop object */

enum sched_job_kind { SJ_CLAIM, SJ_BEAT, SJ_RELEASE };

struct sched_job {
	struct db_job job;
	struct scheduler *s;
	enum sched_job_kind kind;
	/* claim */
	unsigned want;
	struct sched_pair **pairs;
	size_t npairs;
	/* heartbeat */
	struct sched_key *keys;
	bool *alive;
	size_t nkeys;
	/* release */
	struct sched_release rel;
	/* claim: failed releases retried first, on the same connection */
	struct sched_release *retry;
	size_t nretry;
	bool retry_ok;
};

struct scheduler {
	uv_loop_t *loop;
	struct scheduler_config cfg;
	char worker[SCHED_WORKER_MAX];
	uv_timer_t tick, beat;
	unsigned open_handles;
	struct list pairs;       /* in flight */
	unsigned inflight;
	unsigned jobs;           /* jobs submitted, not completed */
	bool claim_pending, beat_pending;
	bool more;               /* the last claim was full: more may be due */
	/* idle detection: seq moves whenever a pair comes back or is released */
	uint64_t seq, claim_seq, empty_seq;
	bool last_empty;
	bool stopping;
	uint32_t rng;            /* xorshift32 state for the back-off jitter */
	/* Releases that did not reach the database, retried by the next claim
	 * (at most pairs_max; see sched__claim_run). */
	struct sched_release *retry;
	size_t nretry;
	void (*stop_cb)(void *);
	void *stop_data;
	struct scheduler_stats st;
};

static void sched__claim(struct scheduler *s);
static void sched__maybe_close(struct scheduler *s);

static void sched__link(struct scheduler *s, struct sched_pair *p)
{
	p->s = s;
	list_prepend(&s->pairs, &p->link);
	s->inflight++;
}

static void sched__unlink(struct scheduler *s, struct sched_pair *p)
{
	list_remove(&p->link);
	s->inflight--;
}

static struct sched_job *sched__job(struct scheduler *s, enum sched_job_kind kind)
{
	struct sched_job *j = calloc(1, sizeof(*j));

	if (j) {
		j->s = s;
		j->kind = kind;
		j->job.data = j;
	}
	return j;
}

static void sched__job_free(struct sched_job *j)
{
	size_t i;

	for (i = 0; i < j->npairs; i++)
		free(j->pairs[i]);
	for (i = 0; i < j->nretry; i++)
		free(j->retry[i].error);
	free(j->retry);
	free(j->pairs);
	free(j->keys);
	free(j->alive);
	free(j->rel.error);
	free(j);
}

static void sched__done_cb(struct db_job *job);
static void sched__release_group(PGconn *c, struct db_job **jobs, size_t n);

static int sched__submit(struct scheduler *s, struct sched_job *j)
{
	j->job.done = sched__done_cb;
	if (db_submit(s->cfg.db, &j->job) < 0)
		return -1;
	s->jobs++;
	return 0;
}

/* Submits the release of one pair (the pair itself may be freed after). */
static void sched__release(struct scheduler *s, int64_t offer, enum rule_variant v,
			   const struct sched_result *r, int fail_count, unsigned interval_s)
{
	struct sched_job *j = sched__job(s, SJ_RELEASE);
	uint32_t rnd;

	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 17;
	s->rng ^= s->rng << 5;
	rnd = s->rng;

	if (!j)
		goto fail;
	j->rel.offer = offer;
	j->rel.variant = v;
	j->rel.end = r->end;
	j->rel.run = r->run;
	j->job.group = sched__release_group;
	if (r->end == SCHED_OK)
		j->rel.delay_s = interval_s;
	else if (r->end == SCHED_FAILED) {
		unsigned b = scheduler_backoff_s(fail_count, s->cfg.backoff_min_s, s->cfg.backoff_max_s,
						 rnd);

		j->rel.delay_s = b > r->retry_after_s ? b : r->retry_after_s;
		j->rel.error = strdup(r->error ? r->error : "failed");
	}
	if (sched__submit(s, j) == 0)
		return;
	sched__job_free(j);
fail:
	s->st.release_errors++;
	log_warn("lease not released", "worker=%s offer=%" PRId64 " variant=%s reason=%s", s->worker,
		 offer, rule_variant_name(v), "queue full or out of memory");
}

/* Failed releases are retried, not left to run out (a short outage would
 * otherwise stall those pairs for a whole lease). A retry runs in the claim
 * job, before the claim, on the same connection: only a claim can give
 * this worker a new lease of the pair, and claims run one at a time, so a
 * retry can never clear a lease that a later claim of ours took (the
 * claim sees the retry's result). The one case left is a claim already
 * running when a release fails: if the lease ran out meanwhile, that claim
 * may take the pair again; sched__claim_done() then drops the pair's retry
 * before another claim can carry it. So a retry only clears a lease of a
 * run that has ended, and a pair is never polled twice at once. A retry
 * whose lease ran out and was taken by another worker touches nothing
 * (release only updates rows still leased to this worker), and one whose
 * first try did commit is a no-op for the same reason.
 *
 * The other approach, letting the claim take this worker's own unexpired
 * leases that are not in flight here, was not taken: a release in the db
 * queue (not in flight any more, not yet written) would then clear the
 * lease of the run the claim just started. */
static void sched__retry_put(struct scheduler *s, struct sched_release *r, size_t n)
{
	size_t i, k;

	for (i = 0; i < n; i++) {
		for (k = 0; k < s->nretry; k++)
			if (s->retry[k].offer == r[i].offer && s->retry[k].variant == r[i].variant)
				break;
		if (k < s->nretry) { /* the newer result wins */
			free(s->retry[k].error);
			s->retry[k] = r[i];
		} else if (s->nretry < s->cfg.pairs_max &&
			   (s->retry || (s->retry = calloc(s->cfg.pairs_max, sizeof(*s->retry))))) {
			s->retry[s->nretry++] = r[i];
		} else {
			log_warn("lease release dropped", "worker=%s offer=%" PRId64 " variant=%s"
				 " reason=%s", s->worker, r[i].offer, rule_variant_name(r[i].variant),
				 "too many releases pending");
			free(r[i].error);
		}
		r[i].error = NULL;
	}
}

/* A claim took the pair again: its pending release (of an earlier run) must
 * not clear the new lease. */
static void sched__retry_forget(struct scheduler *s, int64_t offer, enum rule_variant v)
{
	size_t k;

	for (k = 0; k < s->nretry; k++)
		if (s->retry[k].offer == offer && s->retry[k].variant == v) {
			free(s->retry[k].error);
			s->retry[k] = s->retry[--s->nretry];
			return;
		}
}

static int sched__claim_run(PGconn *c, struct db_job *job)
{
	struct sched_job *j = job->data;
	struct scheduler *s = j->s;

	/* a failure leaves them for the next claim; the claim itself still runs */
	if (j->nretry)
		j->retry_ok = scheduler_sql_release(c, s->worker, j->retry, j->nretry, job->err,
						    sizeof(job->err)) == 0;
	if (scheduler_sql_claim(c, s->worker, s->cfg.lease_s, j->want, s->cfg.interval_s, &j->pairs,
				&j->npairs, job->err, sizeof(job->err)) < 0)
		return DB_EFAIL;
	return DB_OK;
}

static int sched__beat_run(PGconn *c, struct db_job *job)
{
	struct sched_job *j = job->data;
	struct scheduler *s = j->s;

	return scheduler_sql_heartbeat(c, s->worker, s->cfg.lease_s, j->keys, j->nkeys, j->alive,
				       job->err, sizeof(job->err)) < 0
		       ? DB_EFAIL
		       : DB_OK;
}

/* Releases of one group, one statement per worker id (usually one). */
static void sched__release_group(PGconn *c, struct db_job **jobs, size_t n)
{
	struct sched_release *rel = calloc(n, sizeof(*rel));
	bool *done = calloc(n, sizeof(*done));
	size_t i, k, m;
	char err[DB_ERR_MAX];

	if (!rel || !done) {
		for (i = 0; i < n; i++) {
			jobs[i]->status = DB_EFAIL;
			snprintf(jobs[i]->err, sizeof(jobs[i]->err), "out of memory");
		}
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct scheduler *s = ((struct sched_job *)jobs[i]->data)->s;
		int rc;

		if (done[i])
			continue;
		for (k = i, m = 0; k < n; k++) {
			struct sched_job *jk = jobs[k]->data;

			if (!done[k] && jk->s == s) {
				rel[m++] = jk->rel;
				done[k] = true;
			}
		}
		rc = scheduler_sql_release(c, s->worker, rel, m, err, sizeof(err));
		for (k = i; k < n; k++)
			if (((struct sched_job *)jobs[k]->data)->s == s) {
				jobs[k]->status = rc < 0 ? DB_EFAIL : DB_OK;
				if (rc < 0)
					snprintf(jobs[k]->err, sizeof(jobs[k]->err), "%s", err);
			}
	}
out:
	free(rel);
	free(done);
}

static void sched__claim_done(struct scheduler *s, struct sched_job *j)
{
	char q[512];
	size_t i, n;

	s->claim_pending = false;
	s->st.claims++;
	if (j->nretry && j->retry_ok && j->job.status == DB_OK) {
		s->seq++;
		log_info("leases released on retry", "worker=%s pairs=%zu", s->worker, j->nretry);
	} else if (j->nretry)
		sched__retry_put(s, j->retry, j->nretry);
	for (i = 0; i < j->nretry; i++)
		free(j->retry[i].error);
	free(j->retry);
	j->retry = NULL;
	j->nretry = 0;
	for (i = 0; j->job.status == DB_OK && i < j->npairs; i++)
		sched__retry_forget(s, j->pairs[i]->offer, j->pairs[i]->variant);
	if (j->job.status != DB_OK) {
		log_debug("claim failed", "worker=%s err=%s", s->worker,
			  log_quote(q, sizeof(q), j->job.err));
		s->more = false;
		s->last_empty = false;
		return;
	}
	s->more = j->npairs == j->want;
	s->last_empty = j->npairs == 0;
	if (s->last_empty)
		s->empty_seq = s->claim_seq;
	for (i = 0, n = 0; i < j->npairs; i++) {
		struct sched_pair *p = j->pairs[i];

		j->pairs[i] = NULL;
		s->st.claimed++;
		if (p->prev_owner[0] && strcmp(p->prev_owner, s->worker) != 0)
			s->st.taken_over++;
		if (p->missed > 0)
			s->st.caught_up++;
		sched__link(s, p);
		if (s->stopping) {
			struct sched_result r = { .end = SCHED_REQUEUE };

			scheduler_done(s, p, &r);
			continue;
		}
		if (p->prev_owner[0] && strcmp(p->prev_owner, s->worker) != 0)
			log_info("lease taken over", "worker=%s offer=%" PRId64 " variant=%s from=%s",
				 s->worker, p->offer, rule_variant_name(p->variant), p->prev_owner);
		j->pairs[n++] = p; /* handed out below, together */
	}
	if (n)
		s->cfg.on_pairs(s, j->pairs, n, s->cfg.ud);
	for (i = 0; i < n; i++)
		j->pairs[i] = NULL;
	j->npairs = 0;
	if (s->more && !s->stopping)
		sched__claim(s);
}

static void sched__beat_done(struct scheduler *s, struct sched_job *j)
{
	struct list *it, *nx;
	char q[512];
	size_t i;

	s->beat_pending = false;
	s->st.heartbeats++;
	if (j->job.status != DB_OK) {
		log_warn("heartbeat failed", "worker=%s err=%s", s->worker,
			 log_quote(q, sizeof(q), j->job.err));
		return;
	}
	list_for_each_safe(it, nx, &s->pairs) {
		struct sched_pair *p = list_entry(it, struct sched_pair, link);

		for (i = 0; i < j->nkeys; i++)
			if (j->keys[i].offer == p->offer && j->keys[i].variant == p->variant)
				break;
		if (i == j->nkeys || j->alive[i] || p->lost)
			continue;
		p->lost = true;
		s->st.lost++;
		log_warn("lease lost", "worker=%s offer=%" PRId64 " variant=%s", s->worker, p->offer,
			 rule_variant_name(p->variant));
		if (s->cfg.on_lost)
			s->cfg.on_lost(s, p, s->cfg.ud);
	}
}

static void sched__done_cb(struct db_job *job)
{
	struct sched_job *j = job->data;
	struct scheduler *s = j->s;
	char q[512];

	s->jobs--;
	switch (j->kind) {
	case SJ_CLAIM:
		sched__claim_done(s, j);
		break;
	case SJ_BEAT:
		sched__beat_done(s, j);
		break;
	case SJ_RELEASE:
		s->seq++;
		if (job->status != DB_OK) {
			s->st.release_errors++;
			log_warn("lease not released", "worker=%s offer=%" PRId64 " variant=%s err=%s",
				 s->worker, j->rel.offer, rule_variant_name(j->rel.variant),
				 log_quote(q, sizeof(q), job->err));
			if (!s->stopping)
				sched__retry_put(s, &j->rel, 1);
		}
		break;
	}
	sched__job_free(j);
	sched__maybe_close(s);
}

static void sched__claim(struct scheduler *s)
{
	struct sched_job *j;
	unsigned room = s->cfg.pairs_max > s->inflight ? s->cfg.pairs_max - s->inflight : 0;

	if (s->stopping || s->claim_pending || room == 0)
		return;
	j = sched__job(s, SJ_CLAIM);
	if (!j)
		return;
	j->want = room < s->cfg.claim_max ? room : s->cfg.claim_max;
	j->job.run = sched__claim_run;
	j->retry = s->retry;
	j->nretry = s->nretry;
	s->retry = NULL;
	s->nretry = 0;
	s->claim_seq = s->seq;
	if (sched__submit(s, j) < 0) {
		s->retry = j->retry;
		s->nretry = j->nretry;
		j->retry = NULL;
		j->nretry = 0;
		sched__job_free(j);
		return;
	}
	s->claim_pending = true;
}

static void sched__tick_cb(uv_timer_t *t)
{
	sched__claim(t->data);
}

static void sched__beat_cb(uv_timer_t *t)
{
	struct scheduler *s = t->data;
	struct sched_job *j;
	struct list *it;
	size_t n = 0;

	if (s->beat_pending || !s->inflight)
		return;
	j = sched__job(s, SJ_BEAT);
	if (!j)
		return;
	j->keys = calloc(s->inflight, sizeof(*j->keys));
	j->alive = calloc(s->inflight, sizeof(*j->alive));
	if (!j->keys || !j->alive)
		goto fail;
	list_for_each(it, &s->pairs) {
		const struct sched_pair *p = list_entry(it, struct sched_pair, link);

		if (!p->lost) {
			j->keys[n].offer = p->offer;
			j->keys[n].variant = p->variant;
			n++;
		}
	}
	j->nkeys = n;
	j->job.run = sched__beat_run;
	if (!n || sched__submit(s, j) < 0)
		goto fail;
	s->beat_pending = true;
	return;
fail:
	sched__job_free(j);
}

int scheduler_start(uv_loop_t *loop, const struct scheduler_config *cfg, struct scheduler **out,
		    char *err, size_t errlen)
{
	static const unsigned defaults[RULE_VARIANTS] = { SCHED_INTERVAL_PROCESSING,
							  SCHED_INTERVAL_ACCEPTED,
							  SCHED_INTERVAL_DATES };
	struct scheduler *s;
	int i;

	*out = NULL;
	if (!cfg->db || !cfg->on_pairs) {
		snprintf(err, errlen, "scheduler: a database pool and on_pairs are required");
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->loop = loop;
	list_init(&s->pairs);
	s->cfg = *cfg;
	if (cfg->worker && *cfg->worker)
		snprintf(s->worker, sizeof(s->worker), "%s", cfg->worker);
	else if (scheduler_worker_id(s->worker, sizeof(s->worker)) < 0) {
		snprintf(err, errlen, "scheduler: cannot make a worker id");
		free(s);
		return -1;
	}
	s->cfg.worker = s->worker;
	if (uv_random(NULL, NULL, &s->rng, sizeof(s->rng), 0, NULL) < 0 || !s->rng)
		s->rng = (uint32_t)uv_hrtime() | 1;
	if (!s->cfg.lease_s)
		s->cfg.lease_s = 60;
	if (!s->cfg.heartbeat_ms)
		s->cfg.heartbeat_ms = s->cfg.lease_s * 1000 / 3;
	if (!s->cfg.heartbeat_ms)
		s->cfg.heartbeat_ms = 1;
	if (!s->cfg.tick_ms)
		s->cfg.tick_ms = 1000;
	if (!s->cfg.claim_max)
		s->cfg.claim_max = 64;
	if (!s->cfg.pairs_max)
		s->cfg.pairs_max = 256;
	if (!s->cfg.backoff_min_s)
		s->cfg.backoff_min_s = 30;
	if (!s->cfg.backoff_max_s)
		s->cfg.backoff_max_s = 3600;
	for (i = 0; i < RULE_VARIANTS; i++)
		if (!s->cfg.interval_s[i])
			s->cfg.interval_s[i] = defaults[i];
	uv_timer_init(loop, &s->tick);
	uv_timer_init(loop, &s->beat);
	s->tick.data = s->beat.data = s;
	s->open_handles = 2;
	uv_timer_start(&s->tick, sched__tick_cb, 0, s->cfg.tick_ms);
	uv_timer_start(&s->beat, sched__beat_cb, s->cfg.heartbeat_ms, s->cfg.heartbeat_ms);
	*out = s;
	return 0;
}

void scheduler_done(struct scheduler *s, struct sched_pair *p, const struct sched_result *r)
{
	sched__unlink(s, p);
	s->seq++;
	switch (r->end) {
	case SCHED_OK:
		s->st.done_ok++;
		break;
	case SCHED_FAILED:
		s->st.done_failed++;
		break;
	case SCHED_REQUEUE:
		s->st.done_requeued++;
		break;
	}
	if (!p->lost)
		sched__release(s, p->offer, p->variant, r, p->fail_count, p->interval_s);
	free(p);
	/* room freed: claim now when the last claim suggested more is due */
	if (s->more && !s->stopping &&
	    (s->inflight == 0 || s->cfg.pairs_max - s->inflight >= (s->cfg.claim_max + 1) / 2))
		sched__claim(s);
	sched__maybe_close(s);
}

static void sched__closed_cb(uv_handle_t *h)
{
	struct scheduler *s = h->data;

	size_t i;

	if (--s->open_handles)
		return;
	if (s->nretry)
		log_warn("leases not released", "worker=%s pairs=%zu reason=%s", s->worker, s->nretry,
			 "the database did not answer before the stop; they run out");
	for (i = 0; i < s->nretry; i++)
		free(s->retry[i].error);
	free(s->retry);
	if (s->stop_cb)
		s->stop_cb(s->stop_data);
	free(s);
}

static void sched__maybe_close(struct scheduler *s)
{
	if (!s->stopping || s->inflight || s->jobs || uv_is_closing((uv_handle_t *)&s->tick))
		return;
	uv_close((uv_handle_t *)&s->tick, sched__closed_cb);
	uv_close((uv_handle_t *)&s->beat, sched__closed_cb);
}

void scheduler_stop(struct scheduler *s, void (*cb)(void *data), void *data)
{
	s->stopping = true;
	s->stop_cb = cb;
	s->stop_data = data;
	uv_timer_stop(&s->tick);
	sched__maybe_close(s);
}

bool scheduler_idle(const struct scheduler *s)
{
	return !s->claim_pending && !s->inflight && !s->jobs && !s->nretry && s->last_empty &&
	       s->empty_seq == s->seq;
}

void scheduler_stats(const struct scheduler *s, struct scheduler_stats *out)
{
	*out = s->st;
	out->in_flight = s->inflight;
}

const char *scheduler_worker(const struct scheduler *s)
{
	return s->worker;
}
