/* test_lead_store: the lead row's one home (lead_store.h) against a real
 * PostgreSQL: what a service reads and writes back unchanged leaves the
 * row as it was, fractions of a second and cents included, and the
 * poller's page columns read the lead as the shared reader does. */
#include "test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "buf.h"
#include "import.h"
#include "lead.h"
#include "lead_store.h"
#include "poll_sql.h"

#define LST_NETWORK                                                                          \
	"{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"          \
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"X\", \"rule\": \"acme_crm\","  \
	" \"params\": {}, \"hold_days\": 7}}\n"                                                 \
	"{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5,"      \
	" \"pay\": 8, \"ref\": 0, \"currency\": \"USD\"}}\n"                                    \
	"{\"lead\": {\"id\": 1001, \"offer\": 10, \"ext\": \"A-17\", \"status\": 6,"            \
	" \"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\", \"base\": 30.05,"          \
	" \"counts\": 2, \"wm\": 5, \"pay\": 8.5, \"comment\": \"a \\\"quoted\\\" note\","       \
	" \"track\": \"t-1\"}}\n"

/* Every stored column of lead 1001 but updated, as text. */
#define LST_ROW "SELECT (l.*)::text FROM (SELECT status, reason, comment, track, base, counts," \
	" curr, goal, wm, pay, ref, cash_curr, created, approved_at, hold_until, ext"            \
	" FROM leads WHERE id = 1001) l"

static PGresult *lst_query(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		test__fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
		return NULL;
	}
	return r;
}

static void lst_clear(void *r)
{
	PQclear(r);
}

/* Writes l back as the services do (LEAD_STORE_SET); the rows updated. */
static long lst_write(PGconn *c, const struct lead *l)
{
	static const char upd[] = "UPDATE leads l SET" LEAD_STORE_SET
				  " FROM json_to_recordset($1::json) AS x(" LEAD_STORE_RECORD ")"
				  " WHERE l.id = x.id";
	struct buf b;
	PGresult *r = NULL;
	const char *param[1];
	long n = -1;

	buf_init(&b, 0);
	if (buf_adds(&b, "[{") < 0 || lead_store_json(&b, l) < 0 || buf_adds(&b, "}]") < 0) {
		test__fail(__FILE__, __LINE__, "out of memory");
		goto out;
	}
	param[0] = b.p;
	r = lst_query(c, upd, 1, param);
	if (r)
		n = strtol(PQcmdTuples(r), NULL, 10);
out:
	PQclear(r);
	buf_release(&b);
	return n;
}

TEST(lead_store_read_then_write_leaves_the_row_as_it_was)
{
	PGconn *c = (PGconn *)test_db_migrated("ls_lead_store", NULL);
	static const char sel[] = "SELECT " LEAD_STORE_COLS("l") " FROM leads l WHERE l.id = 1001";
	static const char page[] = "SELECT " POLL_LEAD_COLS " FROM leads l WHERE l.id = 1001";
	struct import_stats st;
	struct lead l, p;
	PGresult *r;
	char err[512], *before;
	uint32_t xmin;
	FILE *in;

	if (!c)
		return;
	test_defer((test_cleanup_fn)PQfinish, c);
	in = fmemopen((void *)LST_NETWORK, strlen(LST_NETWORK), "r");
	ASSERT(in != NULL);
	ASSERT_EQ(import_run(c, in, &st, err, sizeof(err)), 0);
	fclose(in);
	/* fractions of a second: rounding would read the next second */
	ASSERT(test_sql_exec((struct pg_conn *)c, "UPDATE leads SET"
			     " approved_at = timestamptz '2026-11-21 10:00:00.7Z',"
			     " created = timestamptz '2026-11-20 10:00:00.5Z' WHERE id = 1001"));
	before = test_sql_value((struct pg_conn *)c, LST_ROW);
	ASSERT(before != NULL);
	test_defer(free, before);

	r = lst_query(c, sel, 0, NULL);
	ASSERT(r != NULL);
	test_defer(lst_clear, r);
	ASSERT_EQ(PQnfields(r), LEAD_STORE_NCOLS);
	ASSERT_EQ(lead_store_read(r, 0, 0, &l), 0);
	ASSERT_EQ(l.id, 1001);
	ASSERT_EQ(l.status, 6);
	ASSERT_EQ(l.base, 3005);
	ASSERT_EQ(l.pay, 850);
	ASSERT_EQ(l.counts, 2);
	ASSERT_STREQ(l.ext, "A-17");
	ASSERT_STREQ(l.comment, "a \"quoted\" note");
	ASSERT_EQ(l.created, INT64_C(1795168800));     /* 2026-11-20T10:00:00Z, floored */
	ASSERT_EQ(l.approved_at, INT64_C(1795255200)); /* 2026-11-21T10:00:00Z, floored */
	ASSERT_EQ(l.hold_until, 0);

	/* the poller's page columns are the shared reader's */
	r = lst_query(c, page, 0, NULL);
	ASSERT(r != NULL);
	test_defer(lst_clear, r);
	ASSERT_EQ(poll_sql_lead_row(r, 0, &p, &xmin), 0);
	ASSERT(memcmp(&p, &l, sizeof(l)) == 0);

	/* written back as read: no column moves, not even by a fraction */
	ASSERT_EQ(lst_write(c, &l), 1);
	ASSERT(test_sql_is((struct pg_conn *)c, LST_ROW, before));

	/* a time whose second changes is written whole; money in cents */
	l.approved_at += 60;
	l.wm = 1234;
	ASSERT_EQ(lst_write(c, &l), 1);
	ASSERT(test_sql_is((struct pg_conn *)c,
			   "SELECT concat_ws(' ', wm, approved_at = timestamptz '2026-11-21 10:01:00Z')"
			   " FROM leads WHERE id = 1001", "12.34 t"));
}
