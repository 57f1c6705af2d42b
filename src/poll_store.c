/* poll_store: the poller's database side, run on the database threads:
 * the offer rows of the pairs it claimed (poller__load, in a job of the
 * poller's own after the scheduler's claim), the page and day-range selects and the batch's write (poller_int.h; the
 * statements' texts are in poll_sql.h). */
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

/* ------------------------------------------------------------ offers */

void poller__offer_release(struct poll_offer *o)
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
		int64_t k;

		/* whole numbers below 2^53 print as integers: "12", not "12.0" */
		if (lead_int_from_double(v->valuedouble, -(INT64_C(1) << 53), INT64_C(1) << 53, &k))
			snprintf(num, sizeof(num), "%" PRId64, k);
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


/* Offers, goals and currencies of n claimed pairs, into a new poll_pair
 * each (out[i]; sched_pair.data is left alone: the caller hands them
 * over). Returns 0, or -1 with err set and none left. */
int poller__load(PGconn *c, struct poller *p, struct sched_pair **pairs, struct poll_pair **out,
		 size_t n, char *err, size_t errlen)
{
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
		rule_pool_lane_init(&pr->lane);
		pr->sp = pairs[i];
		pr->v = pairs[i]->variant;
		pr->off.id = pairs[i]->offer;
		out[i] = pr;
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
		struct poll_offer *o = &out[i]->off;
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
	for (i = 0; i < n; i++) {
		if (out[i])
			poller__pair_free(out[i]);
		out[i] = NULL;
	}
out:
	PQclear(ro);
	PQclear(rg);
	PQclear(rc_);
	buf_release(&ids);
	return rc;
}

/* The load job of a claim (poller.c poller__on_pairs). */
int poller__load_run(PGconn *c, struct db_job *job)
{
	struct poll_load *ld = job->data;

	return poller__load(c, ld->p, ld->sp, ld->pr, ld->n, job->err, sizeof(job->err)) < 0
		       ? DB_EFAIL
		       : DB_OK;
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

static const char poller_sel_processing_sql[] = POLL_SQL_SEL_PROCESSING;
static const char poller_sel_accepted_sql[] = POLL_SQL_SEL_ACCEPTED;
static const char poller_no_ext_processing_sql[] = POLL_SQL_NO_EXT_PROCESSING;
static const char poller_no_ext_accepted_sql[] = POLL_SQL_NO_EXT_ACCEPTED;
static const char poller_sel_dates_sql[] =
	"SELECT " POLL_LEAD_COLS " FROM leads l WHERE l.offer = $1"
	" AND l.status NOT IN (5, 10, 11, 12) AND l.created >= to_timestamp($2)"
	" AND l.created < to_timestamp($3) ORDER BY l.id LIMIT $4";
/* The first instant of local day DAY (a date expression) in zone $2, as
 * UNIX time. PostgreSQL reads a local midnight that falls in a gap with the
 * offset before the jump (the day then starts at the jump) and one that
 * falls in an overlap as the later instant; the day starts at the earlier
 * one, so the midnight is read again with the offset of a day before and
 * taken when that reading is real and earlier. */
#define POLL_DAY_START_SQL(day)                                                              \
	"SELECT extract(epoch FROM CASE WHEN e < s AND e AT TIME ZONE $2 = m THEN e ELSE s END)" \
	"::bigint FROM (SELECT m, s, (m - ((s - interval '1 day') AT TIME ZONE $2"             \
	" - (s - interval '1 day') AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC' AS e"               \
	" FROM (SELECT m, m AT TIME ZONE $2 AS s FROM (SELECT (" day ")::timestamp AS m) a) b) c"
/* The open days in the offer's zone, each with its lead count, its day
 * number (days since 1970-01-01) and its UTC bounds [start, next day's
 * start): PostgreSQL alone decides the zone's rules. */
static const char poller_days_sql[] =
	"SELECT to_char(g.d, 'YYYY-MM-DD'), g.n, g.d - date '1970-01-01', lo.t, hi.t FROM"
	" (SELECT (l.created AT TIME ZONE $2)::date AS d, count(*) AS n FROM leads l"
	" WHERE l.offer = $1 AND l.status NOT IN (5, 10, 11, 12)"
	" AND l.created >= now() - make_interval(days => $3::integer) GROUP BY 1) g,"
	" LATERAL (" POLL_DAY_START_SQL("g.d") ") lo(t),"
	" LATERAL (" POLL_DAY_START_SQL("g.d + 1") ") hi(t) ORDER BY g.d";

int poller__sel_run(PGconn *c, struct db_job *job)
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

void poller__sel_free(struct poll_sel *s)
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

int poller__days_run(PGconn *c, struct db_job *job)
{
	struct poll_days *d = job->data;
	char a[24], age[16];
	const char *params[3] = { a, d->tz[0] ? d->tz : "UTC", age };
	PGresult *r;
	size_t i, rows;

	snprintf(a, sizeof(a), "%" PRId64, d->offer);
	snprintf(age, sizeof(age), "%u", d->age);
	r = store_query(c, "open days", poller_days_sql, 3, params, job->err, sizeof(job->err));
	if (!r) {
		char e2[64];

		/* asked only when the query failed: was it the zone? */
		d->bad_zone = store_zone_known(c, params[1], e2, sizeof(e2)) == 0;
		return DB_EFAIL;
	}
	rows = (size_t)PQntuples(r);
	d->day = calloc(rows + 1, sizeof(*d->day));
	if (!d->day) {
		PQclear(r);
		snprintf(job->err, sizeof(job->err), "out of memory");
		return DB_EFAIL;
	}
	for (i = 0; i < rows; i++) {
		struct poll_day *y = &d->day[d->n];

		if (sscanf(PQgetvalue(r, (int)i, 0), "%d-%d-%d", &y->date.y, &y->date.m,
			   &y->date.d) != 3)
			continue;
		y->count = (size_t)strtoull(PQgetvalue(r, (int)i, 1), NULL, 10);
		y->num = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
		y->t_start = strtoll(PQgetvalue(r, (int)i, 3), NULL, 10);
		y->t_next = strtoll(PQgetvalue(r, (int)i, 4), NULL, 10);
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
int poller__write_run(PGconn *c, struct db_job *job)
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
