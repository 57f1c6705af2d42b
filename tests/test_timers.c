/* test_timers: hold expiry, reject-after and pruning (timers.c) against a
 * real PostgreSQL, each change checked against lead_apply() + lead_diff()
 * run in C on the same lead, and the daemon's loop driving them. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "buf.h"
#include "db.h"
#include "import.h"
#include "lead.h"
#include "log.h"
#include "settings.h"
#include "status.h"
#include "store.h"
#include "timers.h"

#define TT_DAY 86400

static PGconn *tt_db(const char *name, char **conninfo)
{
	return test_db_migrated(name, conninfo);
}

static int tt_import(PGconn *c, const char *text)
{
	struct import_stats st;
	char err[1024];
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	int rc;

	if (!in)
		return -1;
	rc = import_run(c, in, &st, err, sizeof(err));
	fclose(in);
	if (rc < 0)
		test__fail(__FILE__, __LINE__, "import: %s", err);
	return rc;
}

static int tt_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		test__fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

/* The first value of sql as a number; -1 on error. */
static long long tt_num(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long long v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		test__fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return v;
}

/* now + delta as ISO-8601 for import lines. */
static const char *tt_at(char *out, int64_t delta)
{
	if (lead_time_format((int64_t)time(NULL) + delta, out, 32) < 0)
		snprintf(out, 32, "bad");
	return out;
}

/* What the test knows of a lead, read independently of timers.c. */
struct tt_lead {
	struct lead l;
	struct lead_offer o;
	struct lead_goal g;
	bool has_goal;
};

static const char tt_read_sql[] =
	"SELECT l.id, l.offer, l.status, coalesce(l.reason, 0), (l.base * 100)::bigint, l.counts,"
	" coalesce(l.curr, 0), coalesce(l.goal, 0), (l.wm * 100)::bigint, (l.pay * 100)::bigint,"
	" (l.ref * 100)::bigint, coalesce(l.cash_curr, 0),"
	" floor(extract(epoch FROM l.created))::bigint,"
	" coalesce(floor(extract(epoch FROM l.approved_at)), 0)::bigint,"
	" coalesce(floor(extract(epoch FROM l.hold_until)), 0)::bigint, l.comment, l.track,"
	" o.hold_days, o.reject_reason, o.cancel_approved::int, g.id IS NOT NULL,"
	" coalesce(g.id, 0), coalesce(g.payout, 'fixed'), coalesce((g.wm * 100)::bigint, 0),"
	" coalesce((g.pay * 100)::bigint, 0), coalesce((g.ref * 100)::bigint, 0),"
	" coalesce(g.currency, 0)"
	" FROM leads l JOIN offers o ON o.id = l.offer LEFT JOIN goals g ON g.id = l.goal"
	" WHERE l.id = $1";

static int tt_read(PGconn *c, int64_t id, struct tt_lead *t)
{
	char ids[32];
	const char *p[1] = { ids };
	PGresult *r;
	int k = 0, rc = -1;

#define TT_I(r, k) strtoll(PQgetvalue(r, 0, k), NULL, 10)
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	r = PQexecParams(c, tt_read_sql, 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		test__fail(__FILE__, __LINE__, "read lead %s: %s", ids, PQresultErrorMessage(r));
		goto out;
	}
	memset(t, 0, sizeof(*t));
	t->l.id = TT_I(r, k++);
	t->l.offer = TT_I(r, k++);
	t->l.status = (int)TT_I(r, k++);
	t->l.reason = (int)TT_I(r, k++);
	t->l.base = TT_I(r, k++);
	t->l.counts = (int)TT_I(r, k++);
	t->l.curr = (int)TT_I(r, k++);
	t->l.goal = TT_I(r, k++);
	t->l.wm = TT_I(r, k++);
	t->l.pay = TT_I(r, k++);
	t->l.ref = TT_I(r, k++);
	t->l.cash_curr = (int)TT_I(r, k++);
	t->l.created = TT_I(r, k++);
	t->l.approved_at = TT_I(r, k++);
	t->l.hold_until = TT_I(r, k++);
	lead_strlcpy(t->l.comment, sizeof(t->l.comment), PQgetvalue(r, 0, k++));
	lead_strlcpy(t->l.track, sizeof(t->l.track), PQgetvalue(r, 0, k++));
	t->o.hold_days = (int)TT_I(r, k++);
	t->o.reject_reason = (int)TT_I(r, k++);
	t->o.cancel_approved = TT_I(r, k++) != 0;
	t->has_goal = strcmp(PQgetvalue(r, 0, k++), "t") == 0;
	t->g.id = TT_I(r, k++);
	t->g.payout = strcmp(PQgetvalue(r, 0, k), "percent") == 0 ? PAYOUT_PERCENT
		      : strcmp(PQgetvalue(r, 0, k), "recurring") == 0 ? PAYOUT_RECURRING
								     : PAYOUT_FIXED;
	k++;
	t->g.wm = TT_I(r, k++);
	t->g.pay = TT_I(r, k++);
	t->g.ref = TT_I(r, k++);
	t->g.curr = (int)TT_I(r, k++);
	rc = 0;
#undef TT_I
out:
	PQclear(r);
	return rc;
}

static int tt_timer_rows(PGconn *c, int64_t id)
{
	char sql[128];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM lead_history WHERE lead = %lld AND source = 'timer'",
		 (long long)id);
	return (int)tt_num(c, sql);
}

static bool tt_same_lead(const struct lead *a, const struct lead *b)
{
	return a->status == b->status && a->reason == b->reason && a->base == b->base &&
	       a->counts == b->counts && a->curr == b->curr && a->goal == b->goal &&
	       a->wm == b->wm && a->pay == b->pay && a->ref == b->ref &&
	       a->cash_curr == b->cash_curr && a->approved_at == b->approved_at &&
	       a->hold_until == b->hold_until && strcmp(a->comment, b->comment) == 0 &&
	       strcmp(a->track, b->track) == 0;
}

/* The lead, read as `before` the round, is now what lead_apply() makes of
 * the timer's edit at the time of its history row, and that row's
 * before/after are lead_diff()'s. Returns 0, or -1 after recording why. */
static int tt_like_c(PGconn *c, const struct tt_lead *before, enum timers_kind kind)
{
	struct tt_lead now_db;
	struct lead want;
	struct lead_edit e = { 0 };
	struct buf b, a;
	char ids[32], why[256];
	const char *p[3];
	PGresult *r = NULL;
	int64_t now;
	int rc = -1;

	buf_init(&b, 0);
	buf_init(&a, 0);
	if (kind == TIMERS_HOLD) {
		e.set = LF_ACCEPT;
		e.accept = true;
	} else {
		e.set = LF_STATUS | LF_REASON;
		e.status = LS_CANCEL;
		e.reason = REASON_TIMER;
	}
	snprintf(ids, sizeof(ids), "%lld", (long long)before->l.id);
	p[0] = ids;
	r = PQexecParams(c,
			 "SELECT floor(extract(epoch FROM at))::bigint FROM lead_history"
			 " WHERE lead = $1 AND source = 'timer' AND source_id IS NULL",
			 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		test__fail(__FILE__, __LINE__, "lead %s: %d timer history rows: %s", ids,
			   PQntuples(r), PQresultErrorMessage(r));
		goto out;
	}
	now = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	r = NULL;
	if (lead_apply(&before->l, &before->o, before->has_goal ? &before->g : NULL, &e,
		       SOURCE_TIMER, now, &want, why, sizeof(why)) != LEAD_CHANGED) {
		test__fail(__FILE__, __LINE__, "lead %s: lead_apply does not change it: %s", ids, why);
		goto out;
	}
	if (tt_read(c, before->l.id, &now_db) < 0)
		goto out;
	if (!tt_same_lead(&want, &now_db.l)) {
		test__fail(__FILE__, __LINE__,
			   "lead %s: db status %d reason %d wm %lld pay %lld ref %lld cc %d approved %lld "
			   "hold %lld; C status %d reason %d wm %lld pay %lld ref %lld cc %d approved %lld hold %lld",
			   ids, now_db.l.status, now_db.l.reason, (long long)now_db.l.wm,
			   (long long)now_db.l.pay, (long long)now_db.l.ref, now_db.l.cash_curr,
			   (long long)now_db.l.approved_at, (long long)now_db.l.hold_until, want.status,
			   want.reason, (long long)want.wm, (long long)want.pay, (long long)want.ref,
			   want.cash_curr, (long long)want.approved_at, (long long)want.hold_until);
		goto out;
	}
	if (lead_diff(&before->l, &want, &b, &a) <= 0) {
		test__fail(__FILE__, __LINE__, "lead %s: lead_diff found no change", ids);
		goto out;
	}
	p[1] = b.p;
	p[2] = a.p;
	r = PQexecParams(c,
			 "SELECT before = $2::jsonb AND after = $3::jsonb, before::text, after::text"
			 " FROM lead_history WHERE lead = $1 AND source = 'timer'",
			 3, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
	    strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		test__fail(__FILE__, __LINE__, "lead %s: history %s -> %s, lead_diff %s -> %s", ids,
			   PQntuples(r) ? PQgetvalue(r, 0, 1) : "?",
			   PQntuples(r) ? PQgetvalue(r, 0, 2) : "?", b.p, a.p);
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	buf_release(&b);
	buf_release(&a);
	return rc;
}

/* lead_changes() over lead_fields() snapshots taken before the round
 * agrees with every timer history row (the SQL helpers and lead_diff()
 * speak the same form). */
static long long tt_sql_helpers_disagree(PGconn *c)
{
	return tt_num(c, "SELECT count(*) FROM lead_history h JOIN tt_snap s ON s.id = h.lead"
			 " JOIN leads l ON l.id = h.lead,"
			 " LATERAL lead_changes(s.f, lead_fields(l)) d"
			 " WHERE h.source = 'timer' AND (d.before <> h.before OR d.after <> h.after)");
}

#define TT_NETWORK                                                                             \
	"{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"            \
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Fixed\", \"hold_days\": 7}}\n"    \
	"{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"Percent\", \"hold_days\": 3}}\n"  \
	"{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5, "       \
	"\"pay\": 8, \"ref\": 1, \"currency\": \"USD\"}}\n"                                        \
	"{\"goal\": {\"offer\": 11, \"code\": \"sale\", \"payout\": \"percent\", \"wm\": 10, "    \
	"\"pay\": 15, \"ref\": 1, \"currency\": \"EUR\"}}\n"

static const struct timers_config tt_cfg = { .batch = 1000, .prune_batch = 1000 };

TEST(timers_hold_expiry_approves_with_goal_payouts_and_history)
{
	PGconn *c = tt_db("ls_timers_hold", NULL);
	struct buf in;
	struct timers_stats st = { 0 };
	struct tt_lead before[5];
	static const int64_t due[5] = { 101, 102, 103, 106, 107 };
	char t1[32], t2[32], t3[32], t4[32], t5[32], t6[32], err[1024];
	int i, rc;

	if (!c)
		return;
	buf_init(&in, 0);
	rc = buf_adds(&in, TT_NETWORK);
	rc |= buf_addf(&in,
		       /* fixed goal: the goal's amounts */
		       "{\"lead\": {\"id\": 101, \"offer\": 10, \"status\": 4, \"goal\": \"lead\", "
		       "\"base\": 30, \"hold_until\": \"%s\"}}\n"
		       /* percent of base * counts, rounded half away from zero, in the sale's currency */
		       "{\"lead\": {\"id\": 102, \"offer\": 11, \"status\": 4, \"goal\": \"sale\", "
		       "\"base\": 49.99, \"counts\": 3, \"curr\": \"EUR\", \"hold_until\": \"%s\"}}\n"
		       /* a payout given with the hold is kept */
		       "{\"lead\": {\"id\": 103, \"offer\": 10, \"status\": 4, \"goal\": \"lead\", "
		       "\"wm\": 3, \"hold_until\": \"%s\"}}\n"
		       /* not before its time */
		       "{\"lead\": {\"id\": 104, \"offer\": 10, \"status\": 4, \"goal\": \"lead\", "
		       "\"hold_until\": \"%s\"}}\n"
		       /* left hold: cancelled, and approved */
		       "{\"lead\": {\"id\": 105, \"offer\": 10, \"status\": 5, \"reason\": 3, \"goal\": \"lead\"}}\n"
		       "{\"lead\": {\"id\": 108, \"offer\": 10, \"status\": 7, \"goal\": \"lead\", "
		       "\"approved_at\": \"2026-01-02T00:00:00Z\"}}\n"
		       /* approved before (a chargeback, then a hold): keeps payouts and time */
		       "{\"lead\": {\"id\": 106, \"offer\": 10, \"status\": 4, \"goal\": \"lead\", "
		       "\"wm\": 7, \"pay\": 9, \"approved_at\": \"2026-01-01T00:00:00Z\", \"hold_until\": \"%s\"}}\n"
		       /* no goal: approved without payouts */
		       "{\"lead\": {\"id\": 107, \"offer\": 11, \"status\": 4, \"hold_until\": \"%s\"}}\n",
		       tt_at(t1, -3600), tt_at(t2, -60), tt_at(t3, -1), tt_at(t4, 3600),
		       tt_at(t5, -TT_DAY), tt_at(t6, -2));
	ASSERT(rc == 0);
	rc = tt_import(c, in.p);
	buf_release(&in);
	ASSERT(rc == 0);
	for (i = 0; i < 5; i++)
		ASSERT(tt_read(c, due[i], &before[i]) == 0);
	ASSERT(tt_exec(c, "CREATE TABLE tt_snap AS SELECT l.id, lead_fields(l) AS f FROM leads l") == 0);

	rc = timers_round(c, &tt_cfg, &st, err, sizeof(err));
	if (rc < 0)
		test__fail(__FILE__, __LINE__, "round: %s", err);
	ASSERT(rc == 0);
	ASSERT_EQ(st.approved, 5);
	ASSERT_EQ(st.rejected, 0);
	ASSERT_EQ(st.refused, 0);
	for (i = 0; i < 5; i++)
		ASSERT(tt_like_c(c, &before[i], TIMERS_HOLD) == 0);
	ASSERT_EQ(tt_sql_helpers_disagree(c), 0);

	/* the figures, spelled out */
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 101 AND status = 6 AND wm = 5"
			    " AND pay = 8 AND ref = 1 AND cash_curr IS NULL AND hold_until IS NULL"
			    " AND approved_at > now() - interval '1 minute'"), 1);
	/* 49.99 * 3 = 149.97: 10 % = 14.997 -> 15, 15 % = 22.4955 -> 22.5, 1 % = 1.4997 -> 1.5 */
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 102 AND status = 6 AND wm = 15"
			    " AND pay = 22.5 AND ref = 1.5 AND cash_curr = 978"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 103 AND wm = 3 AND pay = 8"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 106 AND status = 6 AND wm = 7"
			    " AND pay = 9 AND ref = 0 AND approved_at = '2026-01-01T00:00:00Z'"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 107 AND status = 6 AND wm = 0"
			    " AND approved_at IS NOT NULL"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history WHERE lead = 101 AND source = 'timer'"
			    " AND before @> '{\"status\": 4, \"wm\": 0, \"approved_at\": null}'"
			    " AND after @> '{\"status\": 6, \"wm\": 5, \"pay\": 8, \"ref\": 1,"
			    " \"hold_until\": null}'"), 1);
	/* not before its time, not leads that left hold */
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 104 AND status = 4"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 105 AND status = 5 AND reason = 3"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 108 AND status = 7"), 1);
	ASSERT_EQ(tt_timer_rows(c, 104) + tt_timer_rows(c, 105) + tt_timer_rows(c, 108), 0);

	/* a second round finds nothing */
	memset(&st, 0, sizeof(st));
	ASSERT(timers_round(c, &tt_cfg, &st, err, sizeof(err)) == 0);
	ASSERT_EQ(st.approved, 0);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history WHERE source = 'timer'"), 5);
	PQfinish(c);
}

TEST(timers_reject_after_cancels_only_leads_past_their_own_offers_deadline)
{
	PGconn *c = tt_db("ls_timers_reject", NULL);
	struct buf in;
	struct timers_stats st = { 0 };
	struct tt_lead before[2];
	char t[8][32], err[1024];
	int rc;

	if (!c)
		return;
	buf_init(&in, 0);
	rc = buf_adds(&in,
		      "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"
		      "{\"offer\": {\"id\": 20, \"advertiser\": 1, \"name\": \"Thirty\", "
		      "\"reject_after_days\": 30, \"reject_reason\": 4}}\n"
		      "{\"offer\": {\"id\": 21, \"advertiser\": 1, \"name\": \"Five\", \"reject_after_days\": 5}}\n"
		      "{\"offer\": {\"id\": 22, \"advertiser\": 1, \"name\": \"Never\"}}\n");
	rc |= buf_addf(&in,
		       "{\"lead\": {\"id\": 201, \"offer\": 20, \"status\": 2, \"created\": \"%s\", "
		       "\"comment\": \"calling\"}}\n"
		       "{\"lead\": {\"id\": 202, \"offer\": 20, \"status\": 3, \"created\": \"%s\"}}\n"
		       "{\"lead\": {\"id\": 203, \"offer\": 21, \"status\": 1, \"created\": \"%s\"}}\n"
		       "{\"lead\": {\"id\": 204, \"offer\": 21, \"status\": 4, \"created\": \"%s\", "
		       "\"hold_until\": \"2099-01-01T00:00:00Z\"}}\n"
		       "{\"lead\": {\"id\": 205, \"offer\": 21, \"status\": 6, \"created\": \"%s\"}}\n"
		       "{\"lead\": {\"id\": 206, \"offer\": 22, \"status\": 2, \"created\": \"%s\"}}\n"
		       "{\"lead\": {\"id\": 207, \"offer\": 21, \"status\": 3, \"created\": \"%s\"}}\n"
		       "{\"lead\": {\"id\": 208, \"offer\": 20, \"status\": 5, \"reason\": 3, \"created\": \"%s\"}}\n",
		       tt_at(t[0], -40 * TT_DAY), tt_at(t[1], -10 * TT_DAY), tt_at(t[2], -10 * TT_DAY),
		       tt_at(t[3], -10 * TT_DAY), tt_at(t[4], -10 * TT_DAY), tt_at(t[5], -400 * TT_DAY),
		       tt_at(t[6], -5 * TT_DAY + 3600), tt_at(t[7], -40 * TT_DAY));
	ASSERT(rc == 0);
	rc = tt_import(c, in.p);
	buf_release(&in);
	ASSERT(rc == 0);
	ASSERT(tt_read(c, 201, &before[0]) == 0);
	ASSERT(tt_read(c, 203, &before[1]) == 0);
	ASSERT(tt_exec(c, "CREATE TABLE tt_snap AS SELECT l.id, lead_fields(l) AS f FROM leads l") == 0);

	rc = timers_round(c, &tt_cfg, &st, err, sizeof(err));
	if (rc < 0)
		test__fail(__FILE__, __LINE__, "round: %s", err);
	ASSERT(rc == 0);
	ASSERT_EQ(st.rejected, 2);
	ASSERT_EQ(st.approved, 0);
	ASSERT(tt_like_c(c, &before[0], TIMERS_REJECT) == 0);
	ASSERT(tt_like_c(c, &before[1], TIMERS_REJECT) == 0);
	ASSERT_EQ(tt_sql_helpers_disagree(c), 0);
	/* reason 17, not the offer's reject_reason; the comment stays */
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id IN (201, 203) AND status = 5"
			    " AND reason = 17"), 2);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 201 AND comment = 'calling'"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history WHERE lead = 201 AND source = 'timer'"
			    " AND before = '{\"status\": 2, \"reason\": null}' AND after = '{\"status\": 5, \"reason\": 17}'"),
		  1);
	/* within its own offer's deadline, not in 1..3, an offer that never rejects, not yet */
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE (id, status) IN ((202, 3), (204, 4),"
			    " (205, 6), (206, 2), (207, 3), (208, 5))"), 6);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history WHERE source = 'timer'"), 2);
	PQfinish(c);
}

TEST(timers_locked_lead_is_skipped_and_taken_next_round)
{
	char *ci = NULL;
	PGconn *c = tt_db("ls_timers_lock", &ci), *other = NULL;
	struct timers_stats st = { 0 };
	char t1[32], err[1024], line[1024];
	struct buf in;
	int i, rc;

	if (!c)
		return;
	buf_init(&in, 0);
	rc = buf_adds(&in, TT_NETWORK);
	for (i = 301; i <= 302; i++)
		rc |= buf_addf(&in, "{\"lead\": {\"id\": %d, \"offer\": 10, \"status\": 4, \"goal\": "
				    "\"lead\", \"hold_until\": \"%s\"}}\n", i, tt_at(t1, -60));
	ASSERT(rc == 0);
	rc = tt_import(c, in.p);
	buf_release(&in);
	if (rc == 0 && store_connect(ci, &other, line, sizeof(line)) < 0)
		test__fail(__FILE__, __LINE__, "second connection: %s", line);
	free(ci);
	if (rc < 0 || !other) {
		PQfinish(c);
		PQfinish(other);
		return;
	}
	/* a postback holds lead 301; a wait would turn into an error here */
	rc = tt_exec(c, "SET statement_timeout = 5000");
	rc |= tt_exec(other, "BEGIN");
	rc |= tt_exec(other, "SELECT 1 FROM leads WHERE id = 301 FOR UPDATE");
	if (rc == 0) {
		rc = timers_round(c, &tt_cfg, &st, err, sizeof(err));
		if (rc < 0)
			test__fail(__FILE__, __LINE__, "round with a locked lead: %s", err);
	}
	if (rc == 0 && (st.approved != 1 ||
			tt_num(c, "SELECT status FROM leads WHERE id = 301") != 4 ||
			tt_num(c, "SELECT status FROM leads WHERE id = 302") != 6))
		test__fail(__FILE__, __LINE__, "approved %llu with 301 locked",
			   (unsigned long long)st.approved);
	tt_exec(other, "COMMIT");
	PQfinish(other);
	if (test__failed()) {
		PQfinish(c);
		return;
	}
	memset(&st, 0, sizeof(st));
	ASSERT(timers_round(c, &tt_cfg, &st, err, sizeof(err)) == 0);
	ASSERT_EQ(st.approved, 1);
	ASSERT_EQ(tt_num(c, "SELECT status FROM leads WHERE id = 301"), 6);
	ASSERT_EQ(tt_timer_rows(c, 301), 1);
	ASSERT_EQ(tt_timer_rows(c, 302), 1);
	PQfinish(c);
}

TEST(timers_round_goes_through_full_batches)
{
	PGconn *c = tt_db("ls_timers_batches", NULL);
	struct timers_config cfg = { .batch = 10 };
	struct timers_stats st = { 0 };
	struct timers_batch b;
	char t1[32], t2[32], err[1024];
	struct buf in;
	int i, rc;

	if (!c)
		return;
	buf_init(&in, 0);
	rc = buf_adds(&in, TT_NETWORK);
	rc |= buf_adds(&in, "{\"offer\": {\"id\": 12, \"advertiser\": 1, \"name\": \"R\", "
			    "\"reject_after_days\": 1}}\n");
	for (i = 0; i < 25; i++)
		rc |= buf_addf(&in, "{\"lead\": {\"id\": %d, \"offer\": 10, \"status\": 4, \"goal\": "
				    "\"lead\", \"hold_until\": \"%s\"}}\n", 1000 + i, tt_at(t1, -i));
	for (i = 0; i < 2; i++)
		rc |= buf_addf(&in, "{\"lead\": {\"id\": %d, \"offer\": 12, \"status\": 2, "
				    "\"created\": \"%s\"}}\n", 2000 + i, tt_at(t2, -2 * TT_DAY));
	ASSERT(rc == 0);
	rc = tt_import(c, in.p);
	buf_release(&in);
	ASSERT(rc == 0);
	/* one batch takes at most its limit */
	ASSERT(timers_leads_batch(c, TIMERS_HOLD, 4, NULL, &b, err, sizeof(err)) == 0);
	ASSERT_EQ(b.picked, 4);
	ASSERT_EQ(b.changed, 4);
	/* the round: 10 + 10 + 1 hold, then one reject batch */
	ASSERT(timers_round(c, &cfg, &st, err, sizeof(err)) == 0);
	ASSERT_EQ(st.approved, 21);
	ASSERT_EQ(st.rejected, 2);
	ASSERT_EQ(st.batches, 4);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE status = 6"), 25);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history WHERE source = 'timer'"), 27);
	/* an out-of-range limit is an error, not a silent cap */
	ASSERT(timers_leads_batch(c, TIMERS_HOLD, 0, NULL, &b, err, sizeof(err)) < 0);
	ASSERT_CONTAINS(err, "limit 0");
	PQfinish(c);
}

TEST(timers_prune_deletes_only_old_rows_in_batches)
{
	PGconn *c = tt_db("ls_timers_prune", NULL);
	struct timers_config cfg = { .prune_batch = 3, .keep_poll_runs_days = 30,
				     .keep_postbacks_days = 45 };
	struct timers_stats st = { 0 };
	char err[1024];
	int rc;

	if (!c)
		return;
	rc = tt_import(c, "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k\"}}\n"
			  "{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"X\"}}\n");
	ASSERT(rc == 0);
	/* poll runs: 7 of 40 days ago, then 3 of yesterday */
	rc = tt_exec(c, "INSERT INTO poll_runs (offer, variant, started, outcome)"
			" SELECT 10, 'processing', now() - interval '40 days' + i * interval '1 minute', 'ok'"
			" FROM generate_series(1, 7) i");
	rc |= tt_exec(c, "INSERT INTO poll_runs (offer, variant, started, outcome)"
			 " SELECT 10, 'dates', now() - interval '1 day', 'ok' FROM generate_series(1, 3)");
	/* postbacks: 3 of yesterday, 7 of 40 days ago (kept: 45), 2 of 50 days ago */
	rc |= tt_exec(c, "INSERT INTO postbacks_in (at, method, path, http_status, outcome)"
			 " SELECT now() - make_interval(days => d), 'GET', '/***/s2s', 200, 'ok'"
			 " FROM unnest(ARRAY[1, 1, 1, 40, 40, 40, 40, 40, 40, 40, 50, 50]) d");
	rc |= tt_exec(c, "INSERT INTO lead_history (lead, at, source) VALUES (1, now() - interval '400 days', 'import')");
	ASSERT(rc == 0);

	rc = timers_prune(c, &cfg, &st, err, sizeof(err));
	if (rc < 0)
		test__fail(__FILE__, __LINE__, "prune: %s", err);
	ASSERT(rc == 0);
	ASSERT_EQ(st.pruned_poll_runs, 7);
	ASSERT_EQ(st.pruned_postbacks, 2);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM poll_runs"), 3);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM poll_runs WHERE started < now() - interval '30 days'"), 0);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM postbacks_in"), 10);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM postbacks_in WHERE at < now() - interval '45 days'"), 0);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history"), 1);
	/* nothing left to do */
	memset(&st, 0, sizeof(st));
	ASSERT(timers_prune(c, &cfg, &st, err, sizeof(err)) == 0);
	ASSERT_EQ(st.pruned_poll_runs + st.pruned_postbacks, 0);
	/* a table kept forever is not touched */
	ASSERT(tt_exec(c, "INSERT INTO poll_runs (offer, variant, started, outcome)"
			  " VALUES (10, 'processing', now() - interval '400 days', 'ok')") == 0);
	cfg.keep_poll_runs_days = TIMERS_KEEP_FOREVER;
	cfg.keep_postbacks_days = 2;
	memset(&st, 0, sizeof(st));
	ASSERT(timers_prune(c, &cfg, &st, err, sizeof(err)) == 0);
	ASSERT_EQ(st.pruned_poll_runs, 0);
	ASSERT_EQ(st.pruned_postbacks, 7);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM poll_runs"), 4);
	PQfinish(c);
}

TEST(timers_config_comes_from_the_settings_table)
{
	struct settings s;
	struct timers_config cfg;
	char a0[] = "leadsync", a1[] = "--timer-interval", a2[] = "2",
	     a3[] = "--postbacks-keep-days=7", a4[] = "--poll-keep-days=0";
	char *argv[] = { a0, a1, a2, a3, NULL, NULL };
	int argc = 4;
	char err[256];

	ASSERT(settings_load(&s, &argc, argv, err, sizeof(err)) == 0);
	timers_config_from_settings(&s, &cfg);
	settings_release(&s);
	ASSERT_EQ(argc, 1);
	ASSERT_EQ(cfg.interval_ms, 2000);
	ASSERT_EQ(cfg.batch, 1000);
	ASSERT_EQ(cfg.prune_interval_ms, 900000);
	ASSERT_EQ(cfg.keep_poll_runs_days, 14); /* the scheduler's setting, one knob */
	ASSERT_EQ(cfg.keep_postbacks_days, 7);
	/* 0 keeps them forever */
	argv[1] = a4;
	argv[2] = NULL;
	argc = 2;
	ASSERT(settings_load(&s, &argc, argv, err, sizeof(err)) == 0);
	timers_config_from_settings(&s, &cfg);
	settings_release(&s);
	ASSERT_EQ(cfg.keep_poll_runs_days, TIMERS_KEEP_FOREVER);
	ASSERT_EQ(cfg.keep_postbacks_days, 30);
}

/* ------------------------------------------------- the daemon's loop path */

struct tt_loop {
	PGconn *c; /* the test's own connection, for checks and new data */
	struct db *db;
	struct timers *t;
	uv_timer_t check, watchdog;
	int phase;        /* 0: first approval pending; 1: the lead added later pending */
	bool timed_out;
	bool timers_closed, db_closed;
	struct timers_stats st;
};

static void tt_db_closed(struct db *d, void *data)
{
	struct tt_loop *l = data;

	l->db_closed = true;
}

static void tt_timers_closed(void *data)
{
	struct tt_loop *l = data;

	l->timers_closed = true;
	db_close(l->db, tt_db_closed, l);
}

static void tt_stop(struct tt_loop *l)
{
	uv_timer_stop(&l->check);
	uv_timer_stop(&l->watchdog);
	uv_close((uv_handle_t *)&l->check, NULL);
	uv_close((uv_handle_t *)&l->watchdog, NULL);
	timers_stats(l->t, &l->st);
	timers_close(l->t, tt_timers_closed, l);
}

static void tt_check_cb(uv_timer_t *h)
{
	struct tt_loop *l = h->data;
	struct timers_stats st;

	timers_stats(l->t, &st);
	if (l->phase == 0 && st.approved >= 1 && st.rejected >= 1 && st.pruned_poll_runs >= 1) {
		/* a lead whose hold ran out while the daemon runs: a later round takes it */
		PQclear(PQexec(l->c, "UPDATE leads SET hold_until = now() - interval '1 second'"
				     " WHERE id = 402"));
		l->phase = 1;
	} else if (l->phase == 1 && st.approved >= 2)
		tt_stop(l);
}

static void tt_watchdog_cb(uv_timer_t *h)
{
	struct tt_loop *l = h->data;

	l->timed_out = true;
	tt_stop(l);
}

TEST(timers_daemon_loop_runs_rounds_and_prunes_on_its_own)
{
	char *ci = NULL;
	PGconn *c = tt_db("ls_timers_loop", &ci);
	struct tt_loop l;
	struct db_config dc = { 0 };
	struct timers_config cfg = { .interval_ms = 20, .prune_interval_ms = 50 };
	uv_loop_t loop;
	char t1[32], t2[32], err[1024];
	struct buf in;
	int rc, level = log_level;

	if (!c)
		return;
	memset(&l, 0, sizeof(l));
	buf_init(&in, 0);
	rc = buf_adds(&in, TT_NETWORK);
	rc |= buf_adds(&in, "{\"offer\": {\"id\": 12, \"advertiser\": 1, \"name\": \"R\", "
			    "\"reject_after_days\": 1}}\n");
	rc |= buf_addf(&in, "{\"lead\": {\"id\": 401, \"offer\": 10, \"status\": 4, \"goal\": \"lead\", "
			    "\"hold_until\": \"%s\"}}\n"
			    "{\"lead\": {\"id\": 402, \"offer\": 10, \"status\": 4, \"goal\": \"lead\", "
			    "\"hold_until\": \"2099-01-01T00:00:00Z\"}}\n"
			    "{\"lead\": {\"id\": 403, \"offer\": 12, \"status\": 3, \"created\": \"%s\"}}\n",
		       tt_at(t1, -5), tt_at(t2, -3 * TT_DAY));
	rc = rc ? -1 : tt_import(c, in.p);
	buf_release(&in);
	if (rc == 0)
		rc = tt_exec(c, "INSERT INTO poll_runs (offer, variant, started, outcome)"
				" VALUES (10, 'processing', now() - interval '31 days', 'ok')");
	if (rc < 0) {
		free(ci);
		PQfinish(c);
		return;
	}
	l.c = c;
	uv_loop_init(&loop);
	dc.conninfo = ci;
	dc.workers = 2;
	log_level = LOG_WARN;
	rc = db_open(&loop, &dc, &l.db, err, sizeof(err));
	free(ci);
	if (rc == 0 && timers_start(&loop, l.db, &cfg, &l.t, err, sizeof(err)) < 0) {
		db_close(l.db, NULL, NULL);
		rc = -1;
	}
	if (rc == 0) {
		uv_timer_init(&loop, &l.check);
		uv_timer_init(&loop, &l.watchdog);
		l.check.data = l.watchdog.data = &l;
		uv_timer_start(&l.check, tt_check_cb, 10, 10);
		uv_timer_start(&l.watchdog, tt_watchdog_cb, 60000, 0); /* ends a hang only */
	} else
		test__fail(__FILE__, __LINE__, "start: %s", err);
	uv_run(&loop, UV_RUN_DEFAULT);
	log_level = level;
	if (uv_loop_close(&loop) != 0)
		test__fail(__FILE__, __LINE__, "the loop still has handles after closing");
	if (rc < 0 || test__failed()) {
		PQfinish(c);
		return;
	}
	ASSERT(!l.timed_out);
	ASSERT(l.timers_closed && l.db_closed);
	ASSERT_EQ(l.st.approved, 2);
	ASSERT_EQ(l.st.rejected, 1);
	ASSERT_EQ(l.st.pruned_poll_runs, 1);
	ASSERT_EQ(l.st.failures, 0);
	ASSERT(l.st.rounds >= 1); /* the round that took 402 may still be in its reject batch */
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id IN (401, 402) AND status = 6"), 2);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM leads WHERE id = 403 AND status = 5 AND reason = 17"), 1);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM lead_history WHERE source = 'timer'"), 3);
	ASSERT_EQ(tt_num(c, "SELECT count(*) FROM poll_runs"), 0);
	PQfinish(c);
}
