/* test_import: `leadsync import` (import.c) and `lead show` (history.c)
 * against a real PostgreSQL. */
#include "test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"
#include "history.h"
#include "import.h"
#include "store.h"

/* DESIGN.md's example, one record per line. */
#define IMPORT_T_ADV "{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"
#define IMPORT_T_OFFER                                                                  \
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Nutra X\", \"rule\": "    \
	"\"acme_crm\", \"params\": {\"host\": \"127.0.0.1:9001\", \"key\": \"s3cret\"}, "   \
	"\"secret_params\": [\"key\"], \"intervals\": {\"processing\": 600, \"accepted\": " \
	"10800, \"dates\": 3600}, \"hold_days\": 7, \"reject_reason\": 2, "                 \
	"\"reject_after_days\": 30, \"tz\": \"Europe/Moscow\", \"landing_url\": "           \
	"\"https://shop.example/x\", \"click_param\": \"click_id\", \"enabled\": true}}\n"
#define IMPORT_T_GOAL                                                                   \
	"{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5, " \
	"\"pay\": 8, \"ref\": 0, \"currency\": \"USD\"}}\n"
#define IMPORT_T_LEAD                                                                   \
	"{\"lead\": {\"id\": 1001, \"offer\": 10, \"ext\": \"A-17\", \"status\": 2, "       \
	"\"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\", \"click_id\": null, "   \
	"\"base\": 30, \"counts\": 1}}\n"
#define IMPORT_T_EXAMPLE IMPORT_T_ADV IMPORT_T_OFFER IMPORT_T_GOAL IMPORT_T_LEAD

static void import_t_finish(void *c)
{
	PQfinish(c);
}

/* The connection is closed after the test, or by import_t_close. */
static PGconn *import_t_db(const char *name)
{
	PGconn *c = test_db_migrated(name, NULL);

	if (c)
		test_defer(import_t_finish, c);
	return c;
}

/* Closes c, from import_t_db or not. */
static void import_t_close(PGconn *c)
{
	test_undefer(import_t_finish, c);
	PQfinish(c);
}

/* import_run() over text. */
static int import_t_run(PGconn *c, const char *text, struct import_stats *st, char *err,
			size_t errlen)
{
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	int rc;

	if (!in) {
		snprintf(err, errlen, "fmemopen failed");
		return -2;
	}
	rc = import_run(c, in, st, err, errlen);
	fclose(in);
	return rc;
}

/* First value of the first row of sql ("" for NULL), into out. */
static const char *import_t_value(PGconn *c, const char *sql, char *out, size_t len)
{
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_TUPLES_OK || !PQntuples(r))
		snprintf(out, len, "(error: %s)", PQresultErrorMessage(r));
	else
		snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

/* Runs a statement that returns nothing; true when it worked. */
static bool import_t_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	if (!ok)
		printf("  %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

#define ASSERT_SQL(c, sql, want)                                                         \
	do {                                                                             \
		char v_[4096];                                                           \
		ASSERT_STREQ(import_t_value((c), (sql), v_, sizeof(v_)), (want));        \
	} while (0)

/* Everything the import may write, as one line, to see that a failed import
 * wrote nothing. */
#define IMPORT_T_COUNTS                                                                  \
	"SELECT concat_ws(' ', (SELECT count(*) FROM advertisers), (SELECT count(*) FROM " \
	"offers), (SELECT count(*) FROM goals), (SELECT count(*) FROM leads), (SELECT "    \
	"count(*) FROM lead_history), (SELECT count(*) FROM poll_schedule))"

TEST(import_design_example)
{
	PGconn *c = import_t_db("ls_import_example");
	struct import_stats st;
	char err[1024] = "";

	ASSERT(c);
	ASSERT_EQ(import_t_run(c, "# the example of DESIGN.md\n\n" IMPORT_T_EXAMPLE, &st, err,
			       sizeof(err)),
		  0);
	ASSERT_EQ(st.lines, 6);
	ASSERT_EQ(st.advertisers, 1);
	ASSERT_EQ(st.offers, 1);
	ASSERT_EQ(st.goals, 1);
	ASSERT_EQ(st.leads, 1);
	ASSERT_SQL(c, "SELECT concat_ws('|', id, name, api_key) FROM advertisers", "1|Acme|k-acme");
	ASSERT_SQL(c,
		   "SELECT concat_ws('|', id, advertiser, name, rule, params, secret_params,"
		   " interval_processing, interval_accepted, interval_dates, batch_processing,"
		   " days_dates, hold_days, reject_reason, reject_after_days, tz, landing_url,"
		   " click_param, enabled, status_words, cancel_approved) FROM offers",
		   "10|1|Nutra X|acme_crm|{\"key\": \"s3cret\", \"host\": \"127.0.0.1:9001\"}|{key}|"
		   "600|10800|3600|7|2|30|Europe/Moscow|https://shop.example/x|click_id|t|{}|f");
	ASSERT_SQL(c,
		   "SELECT concat_ws('|', g.offer, g.code, g.payout, g.wm, g.pay, g.ref, c.iso)"
		   " FROM goals g JOIN currencies c ON c.id = g.currency",
		   "10|lead|fixed|5.00|8.00|0.00|USD");
	ASSERT_SQL(c,
		   "SELECT concat_ws('|', l.id, l.offer, l.ext, l.status, l.reason IS NULL,"
		   " lead_time_json(l.created), g.code, l.click IS NULL, l.base, l.counts, l.wm,"
		   " l.hold_until IS NULL, l.approved_at IS NULL)"
		   " FROM leads l JOIN goals g ON g.id = l.goal",
		   "1001|10|A-17|2|t|2026-11-20T10:00:00Z|lead|t|30.00|1|0.00|t|t");
	ASSERT_SQL(c, "SELECT count(*) FROM poll_schedule WHERE offer = 10", "3");
	/* the new lead says where it came from */
	ASSERT_SQL(c, "SELECT concat_ws('|', source, source_id IS NULL, before, after->'status',"
		      " after->'base', after->'created', after ? 'comment')"
		      " FROM lead_history WHERE lead = 1001",
		   "import|t|{}|2|30|\"2026-11-20T10:00:00Z\"|f");
	import_t_close(c);
}

TEST(import_twice_changes_nothing)
{
	PGconn *c = import_t_db("ls_import_twice");
	const char *rows = "SELECT string_agg(x, ',') FROM (SELECT xmin::text || updated AS x FROM"
			   " advertisers UNION ALL SELECT xmin::text || updated FROM offers"
			   " UNION ALL SELECT xmin::text || updated FROM goals UNION ALL"
			   " SELECT xmin::text || updated FROM leads) t";
	struct import_stats st;
	char err[1024] = "", before[4096], after[4096];

	ASSERT(c);
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), 0);
	import_t_value(c, rows, before, sizeof(before));
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), 0);
	import_t_value(c, rows, after, sizeof(after));
	ASSERT_STREQ(after, before);
	ASSERT_SQL(c, IMPORT_T_COUNTS, "1 1 1 1 1 3");
	import_t_close(c);
}

TEST(import_changed_fields_update_and_absent_fields_stay)
{
	PGconn *c = import_t_db("ls_import_update");
	struct import_stats st;
	char err[1024] = "";

	ASSERT(c);
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), 0);
	ASSERT_EQ(import_t_run(c,
			       "{\"advertiser\": {\"id\": 1, \"name\": \"Acme Ltd\", \"api_key\": \"k2\"}}\n"
			       "{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Nutra Y\","
			       " \"intervals\": {\"dates\": 7200}, \"hold_days\": null,"
			       " \"future_field\": [1, 2]}}\n"
			       "{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\","
			       " \"currency\": \"EUR\", \"wm\": \"6.5\"}}\n"
			       "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 4, \"base\": 35.5}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT name || '|' || api_key FROM advertisers", "Acme Ltd|k2");
	/* a given group sets all of it; a null NOT NULL field is its default */
	ASSERT_SQL(c,
		   "SELECT concat_ws('|', name, rule, tz, interval_processing IS NULL, interval_dates,"
		   " hold_days, params->>'key') FROM offers",
		   "Nutra Y|acme_crm|Europe/Moscow|t|7200|0|s3cret");
	ASSERT_SQL(c, "SELECT concat_ws('|', wm, pay, currency) FROM goals", "6.50|8.00|978");
	/* hold: now + the offer's hold days (now 0); ext and created kept */
	ASSERT_SQL(c,
		   "SELECT concat_ws('|', status, base, ext, lead_time_json(created),"
		   " hold_until BETWEEN now() - interval '1 minute' AND now()) FROM leads",
		   "4|35.50|A-17|2026-11-20T10:00:00Z|t");
	ASSERT_SQL(c, "SELECT count(*) FROM lead_history WHERE lead = 1001", "2");
	ASSERT_SQL(c,
		   "SELECT before::text || ' ' || (after - 'hold_until')::text || ' ' ||"
		   " (after->>'hold_until' IS NOT NULL)::text FROM lead_history ORDER BY id DESC"
		   " LIMIT 1",
		   "{\"base\": 30, \"status\": 2, \"hold_until\": null} {\"base\": 35.5, \"status\": 4}"
		   " true");
	import_t_close(c);
}

struct import_t_bad {
	const char *line; /* line 3 of a file whose other lines are good */
	const char *want; /* in the error */
};

TEST(import_bad_line_writes_nothing)
{
	static const struct import_t_bad cases[] = {
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10,", "line 3: invalid JSON at column" },
		{ "{\"lead\": {}} {}", "line 3: text after the JSON value at column 13" },
		{ "[1, 2]", "line 3: a line must be an object with one key" },
		{ "{\"lead\": {\"id\": 1}, \"goal\": {}}", "line 3: a line must be an object with one key" },
		{ "{\"webmaster\": {\"id\": 1}}", "line 3: unknown record 'webmaster'" },
		{ "{\"lead\": 5}", "line 3: lead: the record must be an object" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1}}", "line 3: offer 11: missing 'name'" },
		{ "{\"offer\": {\"id\": \"11\", \"advertiser\": 1, \"name\": \"x\"}}",
		  "line 3: offer: 'id' must be a positive integer" },
		{ "{\"offer\": {\"id\": 11.5, \"advertiser\": 1, \"name\": \"x\"}}",
		  "line 3: offer: 'id' must be a positive integer" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"enabled\": 1}}",
		  "line 3: offer 11: 'enabled' must be true or false" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 7, \"name\": \"x\"}}",
		  "line 3: offer 11: unknown advertiser 7" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"tz\": \"Mars/Base\"}}",
		  "line 3: offer 11: unknown time zone 'Mars/Base'" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"tz\": \"../../etc/passwd\"}}",
		  "line 3: offer 11: unknown time zone '../../etc/passwd'" },
		/* PostgreSQL decides: an abbreviation or a POSIX rule it would
		 * read in AT TIME ZONE is no zone name (pg_timezone_names) */
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"tz\": \"MSK\"}}",
		  "line 3: offer 11: unknown time zone 'MSK'" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"tz\": \"UTC+3\"}}",
		  "line 3: offer 11: unknown time zone 'UTC+3'" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"tz\": \"europe/moscow\"}}",
		  "line 3: offer 11: unknown time zone 'europe/moscow'" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"intervals\": {\"procesing\": 5}}}",
		  "line 3: offer 11: 'intervals' has no variant 'procesing'" },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"params\": {\"from\": \"x\"}}}",
		  "line 3: offer 11: 'params': " },
		{ "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"x\", \"rule\": \"../x\"}}",
		  "line 3: offer 11: 'rule' must be a name" },
		{ "{\"advertiser\": {\"id\": 2, \"name\": \"B\", \"api_key\": \"k-acme\"}}",
		  "line 3: advertiser 2: ERROR: duplicate key value" },
		{ "{\"goal\": {\"offer\": 10, \"code\": \"sale\", \"payout\": \"fixed\", \"currency\": \"XXX\"}}",
		  "line 3: goal: unknown currency 'XXX'" },
		{ "{\"goal\": {\"offer\": 10, \"code\": \"sale\", \"payout\": \"cpa\", \"currency\": \"USD\"}}",
		  "line 3: goal: 'payout' must be fixed, percent or recurring" },
		{ "{\"goal\": {\"offer\": 10, \"code\": \"s\", \"payout\": \"percent\", \"currency\": \"USD\", \"wm\": 120}}",
		  "line 3: goal: 'wm' is a percent and must be 0..100" },
		{ "{\"goal\": {\"offer\": 99, \"code\": \"sale\", \"payout\": \"fixed\", \"currency\": \"USD\"}}",
		  "line 3: goal: unknown offer 99" },
		{ "{\"goal\": {\"offer\": 10, \"code\": \"sale\", \"payout\": \"fixed\", \"currency\": \"USD\", \"wm\": 1e12}}",
		  "line 3: goal: 'wm' must be an amount" },
		{ "{\"goal\": {\"offer\": 10, \"code\": \"sale\", \"payout\": \"fixed\", \"currency\": \"USD\", \"wm\": \"5,5\"}}",
		  "line 3: goal: 'wm' must be an amount" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10, \"status\": 13}}",
		  "line 3: lead 1002: 'status' must be an integer 1..12" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10}}", "line 3: lead 1002: missing 'status'" },
		{ "{\"lead\": {\"offer\": 10, \"status\": 2}}", "line 3: lead: give 'id' or 'ext'" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10, \"status\": 2, \"created\": \"20.11.2026\"}}",
		  "line 3: lead 1002: 'created' must be an ISO-8601 time" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10, \"status\": 2, \"click_id\": \"nope\"}}",
		  "line 3: lead 1002: 'click_id' must be a UUID" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10, \"status\": 2, \"base\": -1}}",
		  "line 3: lead 1002: 'base' must be an amount" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 99, \"status\": 2}}", "line 3: lead: unknown offer 99" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10, \"status\": 2, \"goal\": \"sale\"}}",
		  "line 3: lead: unknown goal 'sale' of offer 10" },
		{ "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 3}}",
		  "line 5: lead 1001 is already on line 3" },
		{ "{\"lead\": {\"ext\": \"A-17\", \"offer\": 10, \"status\": 2}}",
		  "line 5: lead: ext 'A-17' of offer 10 is already on line 3" },
		{ "{\"lead\": {\"id\": 1002, \"offer\": 10, \"status\": 2, \"comment\": \"\xff\"}}",
		  "line 3: not valid UTF-8 text" },
	};
	PGconn *c = import_t_db("ls_import_bad");
	struct import_stats st;
	struct buf text;
	char err[1024];
	size_t i;

	ASSERT(c);
	buf_init(&text, 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&text);
		ASSERT_EQ(buf_adds(&text, IMPORT_T_ADV IMPORT_T_OFFER), 0);
		ASSERT_EQ(buf_adds(&text, cases[i].line), 0);
		ASSERT_EQ(buf_adds(&text, "\n" IMPORT_T_GOAL IMPORT_T_LEAD), 0);
		err[0] = '\0';
		if (import_t_run(c, text.p, &st, err, sizeof(err)) != -1 ||
		    !strstr(err, cases[i].want) || strncmp(err, cases[i].want, 7) != 0) {
			test__fail(__FILE__, __LINE__, "case %zu (%s): got \"%s\", want \"%s\"", i,
				   cases[i].line, err, cases[i].want);
			break;
		}
		ASSERT_SQL(c, IMPORT_T_COUNTS, "0 0 0 0 0 0");
		ASSERT(PQtransactionStatus(c) == PQTRANS_IDLE);
	}
	buf_release(&text);
	/* the same connection still imports */
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), 0);
	ASSERT_SQL(c, IMPORT_T_COUNTS, "1 1 1 1 1 3");
	import_t_close(c);
}

TEST(import_lead_by_offer_and_ext)
{
	PGconn *c = import_t_db("ls_import_ext");
	struct import_stats st;
	char err[1024] = "";

	ASSERT(c);
	ASSERT_EQ(import_t_run(c,
			       IMPORT_T_EXAMPLE
			       "{\"lead\": {\"offer\": 10, \"ext\": \"B-1\", \"status\": 1}}\n"
			       "{\"lead\": {\"offer\": 10, \"ext\": \"B-2\", \"status\": 1}}\n",
			       &st, err, sizeof(err)),
		  0);
	/* new leads draw ids in line order, then the sequence passes 1001 */
	ASSERT_SQL(c, "SELECT string_agg(id || ':' || ext, ',' ORDER BY id) FROM leads",
		   "1:B-1,2:B-2,1001:A-17");
	ASSERT_EQ(import_t_run(c,
			       "{\"lead\": {\"offer\": 10, \"ext\": \"B-2\", \"status\": 3,"
			       " \"comment\": \"call\\tback\\n\\\\later\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT count(*) FROM leads", "3");
	ASSERT_SQL(c, "SELECT status || '|' || comment FROM leads WHERE id = 2", "3|call\tback\n\\later");
	ASSERT_SQL(c, "SELECT count(*) FROM lead_history WHERE lead = 2", "2");
	ASSERT_SQL(c, "SELECT nextval(pg_get_serial_sequence('leads', 'id'))", "1002");
	/* a lead named by id on one line and by ext on another is there twice */
	ASSERT_EQ(import_t_run(c,
			       "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 3}}\n"
			       "{\"lead\": {\"offer\": 10, \"ext\": \"A-17\", \"status\": 4}}\n",
			       &st, err, sizeof(err)),
		  -1);
	ASSERT_STREQ(err, "line 2: lead 1001 is already on line 1");
	/* request_id is unique per offer, in the file and in the database */
	ASSERT_EQ(import_t_run(c,
			       "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 2, \"request_id\": \"r1\"}}\n"
			       "{\"lead\": {\"id\": 1, \"offer\": 10, \"status\": 2, \"request_id\": \"r1\"}}\n",
			       &st, err, sizeof(err)),
		  -1);
	ASSERT_STREQ(err, "line 2: lead: request_id 'r1' of offer 10 is already on line 1");
	ASSERT_EQ(import_t_run(c,
			       "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 2, \"request_id\": \"r1\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_EQ(import_t_run(c,
			       "\n{\"lead\": {\"id\": 1, \"offer\": 10, \"status\": 2, \"request_id\": \"r1\"}}\n",
			       &st, err, sizeof(err)),
		  -1);
	ASSERT_STREQ(err, "line 2: lead: request_id 'r1' of offer 10 belongs to lead 1001");
	/* two leads with one ext: the ext alone is not enough */
	ASSERT(import_t_exec(c, "UPDATE leads SET ext = 'B-2' WHERE id = 1"));
	ASSERT_EQ(import_t_run(c, "{\"lead\": {\"offer\": 10, \"ext\": \"B-2\", \"status\": 2}}\n",
			       &st, err, sizeof(err)),
		  -1);
	ASSERT_STREQ(err, "line 1: lead: ext 'B-2' of offer 10 matches 2 leads: give the lead's id");
	import_t_close(c);
}

TEST(import_keeps_the_lead_invariants)
{
	PGconn *c = import_t_db("ls_import_invariants");
	struct import_stats st;
	char err[1024] = "";

	ASSERT(c);
	ASSERT_EQ(import_t_run(c,
			       IMPORT_T_EXAMPLE
			       "{\"lead\": {\"id\": 2001, \"offer\": 10, \"status\": 5, \"ext\": \"c1\"}}\n"
			       "{\"lead\": {\"id\": 2002, \"offer\": 10, \"status\": 5, \"reason\": 6}}\n"
			       "{\"lead\": {\"id\": 2003, \"offer\": 10, \"status\": 10,"
			       " \"created\": \"2026-11-20 13:00:00+03:00\", \"wm\": 5}}\n"
			       "{\"lead\": {\"id\": 2004, \"offer\": 10, \"status\": 4,"
			       " \"hold_until\": \"2026-12-01T00:00:00Z\"}}\n"
			       "{\"lead\": {\"id\": 2005, \"offer\": 10, \"status\": 2, \"reason\": 6}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c,
		   "SELECT string_agg(concat_ws(':', id, status, reason, lead_time_json(approved_at),"
		   " lead_time_json(hold_until), wm), ',' ORDER BY id) FROM leads WHERE id > 2000",
		   "2001:5:2:0.00,2002:5:6:0.00,2003:10:2026-11-20T10:00:00Z:5.00,"
		   "2004:4:2026-12-01T00:00:00Z:0.00,2005:2:0.00");
	/* leaving 4 clears the hold; 5 keeps the reason it had */
	ASSERT_EQ(import_t_run(c,
			       "{\"lead\": {\"id\": 2004, \"offer\": 10, \"status\": 6}}\n"
			       "{\"lead\": {\"id\": 2002, \"offer\": 10, \"status\": 5, \"comment\": \"x\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT concat_ws(':', status, hold_until, approved_at IS NOT NULL) FROM leads"
		      " WHERE id = 2004",
		   "6:t");
	ASSERT_SQL(c, "SELECT reason FROM leads WHERE id = 2002", "6");
	/* a lead cannot move to another offer */
	ASSERT_EQ(import_t_run(c,
			       "{\"offer\": {\"id\": 20, \"advertiser\": 1, \"name\": \"Other\"}}\n"
			       "{\"lead\": {\"id\": 2002, \"offer\": 20, \"status\": 5}}\n",
			       &st, err, sizeof(err)),
		  -1);
	ASSERT_STREQ(err, "line 2: lead 2002: belongs to offer 10, not 20: a lead cannot change its offer");
	import_t_close(c);
}

TEST(import_many_leads_between_other_records)
{
	PGconn *c = import_t_db("ls_import_many");
	struct import_stats st;
	struct buf text;
	char err[1024] = "";
	int i;

	ASSERT(c);
	buf_init(&text, 0);
	ASSERT_EQ(buf_adds(&text, "\xEF\xBB\xBF" IMPORT_T_ADV IMPORT_T_OFFER IMPORT_T_GOAL), 0);
	for (i = 0; i < 6000; i++) {
		ASSERT_EQ(buf_addf(&text,
				   "{\"lead\": {\"id\": %d, \"offer\": 10, \"ext\": \"E%d\", \"status\":"
				   " %d, \"goal\": \"lead\", \"base\": %d.25, \"comment\": \"%0200d\"}}\r\n",
				   i + 1, i, i % 3 + 1, i, i),
			  0);
		/* an offer in the middle of the leads ends one COPY, starts another */
		if (i == 3000)
			ASSERT_EQ(buf_adds(&text, "   \n{\"offer\": {\"id\": 11, \"advertiser\": 1,"
						  " \"name\": \"Second\"}}\n"),
				  0);
	}
	ASSERT_EQ(import_t_run(c, text.p, &st, err, sizeof(err)), 0);
	buf_release(&text);
	ASSERT_EQ(st.leads, 6000);
	ASSERT_EQ(st.offers, 2);
	ASSERT_EQ(st.lines, 6005);
	ASSERT_SQL(c, "SELECT count(*) || ' ' || sum(base) || ' ' || max(id) FROM leads",
		   "6000 17998500.00 6000");
	ASSERT_SQL(c, "SELECT count(*) FROM lead_history", "6000");
	ASSERT_SQL(c, "SELECT ext || ' ' || length(comment) FROM leads WHERE id = 4000", "E3999 200");
	import_t_close(c);
}

TEST(import_without_schema_says_migrate)
{
	char *ci = test_db_fresh("ls_import_noschema");
	struct import_stats st;
	struct buf out;
	PGconn *c = NULL;
	char err[1024] = "";

	ASSERT(ci);
	ASSERT_EQ(store_connect(ci, &c, err, sizeof(err)), 0);
	free(ci);
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "currencies: ERROR: relation \"currencies\" does not exist (run 'leadsync migrate')");
	buf_init(&out, 0);
	ASSERT_EQ(history_lead_show(c, 1, true, &out, err, sizeof(err)), -1);
	buf_release(&out);
	ASSERT_CONTAINS(err, "(run 'leadsync migrate')");
	import_t_close(c);
}

/* ---- lead show ---- */

TEST(history_lead_show_json)
{
	static const char *const keys[] = {
		"id", "offer", "ext", "status", "status_code", "created", "goal", "click_id",
		"base", "counts", "reason", "comment", "track", "wm", "pay", "ref",
		"approved_at", "hold_until", "curr", "cash_curr", "request_id", "customer_id",
		"updated", "checked", "history",
	};
	PGconn *c = import_t_db("ls_history_json");
	struct import_stats st;
	struct buf out;
	char err[1024] = "";
	cJSON *j = NULL, *e, *h;
	size_t i = 0;

	ASSERT(c);
	buf_init(&out, 0);
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), 0);
	ASSERT_EQ(import_t_run(c,
			       "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 5, \"reason\": 3,"
			       " \"comment\": \"no \\\"order\\\"\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	/* a row written with an earlier time comes first whatever its id */
	ASSERT(import_t_exec(c, "INSERT INTO lead_history (lead, at, source, source_id, before,"
				" after) VALUES (1001, '2026-11-20 10:00:05+00', 'poll', 17,"
				" '{\"status\": 1}', '{\"status\": 2}')"));
	ASSERT_EQ(history_lead_show(c, 1001, true, &out, err, sizeof(err)), 0);
	ASSERT(out.len && out.p[out.len - 1] == '\n' && !memchr(out.p, '\n', out.len - 1));
	j = cJSON_Parse(out.p);
	ASSERT(j);
	cJSON_ArrayForEach(e, j) {
		if (i >= sizeof(keys) / sizeof(keys[0]) || strcmp(e->string, keys[i]) != 0) {
			test__fail(__FILE__, __LINE__, "key %zu is '%s'", i, e->string);
			goto out;
		}
		i++;
	}
	ASSERT_EQ(i, sizeof(keys) / sizeof(keys[0]));
	ASSERT_CONTAINS(out.p, "{\"id\":1001,\"offer\":10,\"ext\":\"A-17\",\"status\":5,"
			       "\"status_code\":\"cancel\",\"created\":\"2026-11-20T10:00:00Z\","
			       "\"goal\":\"lead\",\"click_id\":null,\"base\":30,\"counts\":1,"
			       "\"reason\":3,\"comment\":\"no \\\"order\\\"\",\"track\":\"\","
			       "\"wm\":0,\"pay\":0,\"ref\":0,\"approved_at\":null,\"hold_until\":null,"
			       "\"curr\":null,\"cash_curr\":null,\"request_id\":null,"
			       "\"customer_id\":null,\"updated\":\"");
	h = cJSON_GetObjectItemCaseSensitive(j, "history");
	ASSERT(cJSON_IsArray(h));
	ASSERT_EQ(cJSON_GetArraySize(h), 3);
	e = cJSON_GetArrayItem(h, 0);
	ASSERT_STREQ(cJSON_GetObjectItemCaseSensitive(e, "at")->valuestring, "2026-11-20T10:00:05Z");
	ASSERT_STREQ(cJSON_GetObjectItemCaseSensitive(e, "source")->valuestring, "poll");
	ASSERT_EQ(cJSON_GetObjectItemCaseSensitive(e, "source_id")->valuedouble, 17);
	e = cJSON_GetArrayItem(h, 1);
	ASSERT_STREQ(cJSON_GetObjectItemCaseSensitive(e, "source")->valuestring, "import");
	ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "source_id")));
	ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "before")), 0);
	ASSERT_EQ(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "after"),
						   "status")->valuedouble,
		  2);
	e = cJSON_GetArrayItem(h, 2);
	ASSERT_EQ(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "before"),
						   "status")->valuedouble,
		  2);
	ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(e, "before"), "reason")));
	ASSERT_EQ(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "after"),
						   "reason")->valuedouble,
		  3);
	ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "after")), 3);
out:
	cJSON_Delete(j);
	buf_release(&out);
	import_t_close(c);
}

TEST(history_lead_show_text_and_unknown)
{
	PGconn *c = import_t_db("ls_history_text");
	struct import_stats st;
	struct buf out;
	char err[1024] = "";

	ASSERT(c);
	buf_init(&out, 0);
	ASSERT_EQ(import_t_run(c, IMPORT_T_EXAMPLE, &st, err, sizeof(err)), 0);
	ASSERT_EQ(import_t_run(c, "{\"lead\": {\"id\": 1001, \"offer\": 10, \"status\": 4}}\n", &st,
			       err, sizeof(err)),
		  0);
	ASSERT_EQ(history_lead_show(c, 1001, false, &out, err, sizeof(err)), 0);
	ASSERT(strncmp(out.p, "lead 1001\n", 10) == 0);
	ASSERT_CONTAINS(out.p, "\n  offer        10 Nutra X\n");
	ASSERT_CONTAINS(out.p, "\n  status       4 hold (");
	ASSERT_CONTAINS(out.p, "\n  reason       -\n");
	ASSERT_CONTAINS(out.p, "\nhistory (2)\n");
	ASSERT_CONTAINS(out.p, "Z  import                   status 2, base 30, counts 1,");
	ASSERT_CONTAINS(out.p, "Z  import                   status 2 -> 4, hold_until null -> \"");
	buf_reset(&out);
	ASSERT_EQ(history_lead_show(c, 99, true, &out, err, sizeof(err)), HISTORY_ENOTFOUND);
	ASSERT_STREQ(err, "lead 99 not found");
	buf_release(&out);
	import_t_close(c);
}

/* Issue 8 section 5: an offer without a rule is never polled, so it has no
 * schedule rows (they would stay overdue forever); giving it a rule later
 * creates them, taking the rule away removes them. */
TEST(import_offer_without_rule_has_no_schedule_rows)
{
	PGconn *c = import_t_db("ls_import_norule");
	struct import_stats st;
	char err[1024] = "";

	ASSERT(c);
	ASSERT_EQ(import_t_run(c,
			       IMPORT_T_ADV
			       "{\"offer\": {\"id\": 20, \"advertiser\": 1, \"name\": \"no crm\", \"rule\": null}}\n"
			       "{\"offer\": {\"id\": 21, \"advertiser\": 1, \"name\": \"no rule key\"}}\n"
			       "{\"offer\": {\"id\": 22, \"advertiser\": 1, \"name\": \"crm\", \"rule\": \"x\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT string_agg(offer || ':' || n, ',' ORDER BY offer) FROM"
		      " (SELECT offer, count(*) AS n FROM poll_schedule GROUP BY offer) s",
		   "22:3");
	/* a rule given later: the rows appear, due now */
	ASSERT_EQ(import_t_run(c, "{\"offer\": {\"id\": 20, \"advertiser\": 1, \"name\": \"now a crm\","
				  " \"rule\": \"x\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT count(*) || ' ' || bool_and(next_due <= now() AND lease_owner IS NULL)"
		      " FROM poll_schedule WHERE offer = 20",
		   "3 true");
	/* a line that leaves the rule out keeps it, and the rows */
	ASSERT_EQ(import_t_run(c, "{\"offer\": {\"id\": 20, \"advertiser\": 1, \"name\": \"renamed\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT count(*) FROM poll_schedule WHERE offer = 20", "3");
	/* the rule taken away: no rows */
	ASSERT_EQ(import_t_run(c, "{\"offer\": {\"id\": 22, \"advertiser\": 1, \"name\": \"crm gone\","
				  " \"rule\": null}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_SQL(c, "SELECT string_agg(DISTINCT offer::text, ',') FROM poll_schedule", "20");
	/* however the offer is written: plain SQL too */
	ASSERT(import_t_exec(c, "INSERT INTO offers (id, advertiser, name) VALUES (23, 1, 'sql')"));
	ASSERT_SQL(c, "SELECT count(*) FROM poll_schedule WHERE offer = 23", "0");
	ASSERT(import_t_exec(c, "UPDATE offers SET rule = 'x' WHERE id = 23"));
	ASSERT_SQL(c, "SELECT count(*) FROM poll_schedule WHERE offer = 23", "3");
	import_t_close(c);
}

/* A rule file that is not there is a warning, not an error: the import is
 * done (rules may be deployed later). */
TEST(import_warns_of_a_missing_rule_file)
{
	PGconn *c = import_t_db("ls_import_rulefile");
	struct import_stats st;
	char err[1024] = "", dir[] = "/tmp/ls-import-rules-XXXXXX", path[256];
	struct buf w;
	FILE *f;

	ASSERT(c);
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/here.lua", dir);
	f = fopen(path, "w");
	ASSERT(f != NULL);
	fputs("return {}\n", f);
	fclose(f);
	buf_init(&w, 0);
	ASSERT_EQ(import_t_run(c,
			       IMPORT_T_ADV
			       "{\"offer\": {\"id\": 30, \"advertiser\": 1, \"name\": \"a\", \"rule\": \"here\"}}\n"
			       "{\"offer\": {\"id\": 31, \"advertiser\": 1, \"name\": \"b\", \"rule\": \"later_crm\"}}\n"
			       "{\"offer\": {\"id\": 32, \"advertiser\": 1, \"name\": \"c\", \"rule\": \"later_crm\"}}\n"
			       "{\"offer\": {\"id\": 33, \"advertiser\": 1, \"name\": \"d\", \"rule\": null}}\n"
			       "{\"offer\": {\"id\": 34, \"advertiser\": 1, \"name\": \"e\", \"rule\": \"gone\"}}\n",
			       &st, err, sizeof(err)),
		  0);
	ASSERT_EQ(st.offers, 5);
	ASSERT_EQ(st.nrules, 3);
	ASSERT_SQL(c, "SELECT count(*) FROM offers", "5"); /* imported all the same */
	if (import_missing_rules(&st, dir, &w) != 2 ||
	    !strstr(w.p, "offer 31 and 1 more name rule 'later_crm', but ") ||
	    !strstr(w.p, "/later_crm.lua does not exist (imported: deploy the rule to poll it)\n") ||
	    !strstr(w.p, "offer 34 names rule 'gone'") || strstr(w.p, "here"))
		test__fail(__FILE__, __LINE__, "warnings:\n%s", w.p ? w.p : "(none)");
	buf_release(&w);
	unlink(path);
	rmdir(dir);
	import_t_close(c);
}

/* A new lead's history after is built as text in import.c (jsonb_build_object
 * costs too much per row at a million leads): it must equal what
 * lead_changes(NULL, lead_fields(l)) gives for every kind of field,
 * including strings that need JSON escapes, money with and without cents,
 * the times the invariants fill in and the fields left null or ''. */
TEST(import_new_lead_history_is_lead_changes_of_lead_fields)
{
	static const char *const leads[] = {
		"{\"lead\": {\"offer\": 10, \"ext\": \"plain\", \"status\": 2}}",
		"{\"lead\": {\"id\": 77, \"offer\": 10, \"status\": 1, \"created\":"
		" \"2026-11-20T10:00:00+03:00\"}}",
		"{\"lead\": {\"offer\": 10, \"ext\": \"q\\\"uote\\\\back\\/slash\\ttab\\nnl\\u0001\","
		" \"status\": 5, \"comment\": \"caf\\u00e9 \\u2713 \\\"x\\\"\", \"track\": \"t\\\\1\","
		" \"request_id\": \"r\\\"1\", \"customer_id\": \"\\u00fc\\u00df\"}}",
		"{\"lead\": {\"offer\": 10, \"ext\": \"hold\", \"status\": 4, \"goal\": \"lead\","
		" \"base\": \"30.5\", \"wm\": 1.25, \"pay\": 999999999999.99, \"ref\": 0,"
		" \"curr\": \"EUR\", \"cash_curr\": \"USD\", \"counts\": 0,"
		" \"click_id\": \"6f1c2f4e-0b7a-4d3e-9a51-2d6f0c8b1e77\"}}",
		"{\"lead\": {\"offer\": 10, \"ext\": \"approved\", \"status\": 7, \"reason\": 3,"
		" \"comment\": \"\", \"track\": \"\", \"created\": \"2026-01-02T03:04:05Z\"}}",
		"{\"lead\": {\"offer\": 10, \"ext\": \"approved2\", \"status\": 9,"
		" \"approved_at\": \"2026-02-03T04:05:06Z\", \"hold_until\": \"2026-03-01T00:00:00Z\","
		" \"base\": 100, \"goal\": null}}",
		"{\"lead\": {\"offer\": 10, \"ext\": \"rejected\", \"status\": 5, \"reason\": 7}}",
	};
	PGconn *c = import_t_db("ls_import_new_after");
	struct import_stats st;
	struct buf text;
	char err[1024] = "";
	size_t i;

	ASSERT(c);
	buf_init(&text, 0);
	ASSERT_EQ(buf_adds(&text, IMPORT_T_ADV IMPORT_T_OFFER IMPORT_T_GOAL), 0);
	for (i = 0; i < sizeof(leads) / sizeof(leads[0]); i++)
		ASSERT_EQ(buf_addf(&text, "%s\n", leads[i]), 0);
	ASSERT_EQ(import_t_run(c, text.p, &st, err, sizeof(err)), 0);
	buf_release(&text);
	ASSERT_SQL(c, "SELECT count(*) FROM lead_history WHERE before = '{}'", "7");
	ASSERT_SQL(c,
		   "SELECT count(*) FROM lead_history h JOIN leads l ON l.id = h.lead"
		   " WHERE h.after = (SELECT d.after FROM lead_changes(NULL, lead_fields(l)) d)",
		   "7");
	/* and the escapes came through as the line gave them */
	ASSERT_SQL(c,
		   "SELECT h.after->>'ext' = E'q\"uote\\\\back/slash\\ttab\\nnl\\x01'"
		   " AND h.after->>'comment' = 'caf\u00e9 \u2713 \"x\"'"
		   " AND h.after->>'customer_id' = '\u00fc\u00df'"
		   " FROM lead_history h JOIN leads l ON l.id = h.lead WHERE l.request_id = 'r\"1'",
		   "t");
	ASSERT_SQL(c,
		   "SELECT concat_ws('|', after->'base', after->'pay', after->'wm', after ? 'comment',"
		   " after ? 'reason', after->'counts')"
		   " FROM lead_history h JOIN leads l ON l.id = h.lead WHERE l.ext = 'hold'",
		   "30.5|999999999999.99|1.25|f|f|0");
	import_t_close(c);
}

/* ---- the record API (import_lead_check, import_begin .. import_commit) */

static int import_t_usd(const char *iso, const void *data)
{
	return strcmp(iso, "USD") == 0 ? 840 : 0;
}

/* One lead record as text, checked with offer standing in for "offer". */
static int import_t_check(const char *json, int64_t offer, struct import_lead *l, char *err,
			  size_t errlen)
{
	cJSON *x = cJSON_Parse(json);
	int rc;

	if (!x) {
		snprintf(err, errlen, "test: bad JSON");
		return -2;
	}
	rc = import_lead_check(x, import_t_usd, NULL, offer, l, err, errlen);
	cJSON_Delete(x);
	return rc;
}

/* A lead record is validated without a database: what is wrong names the
 * field, and the lead once its id is read; what was given, set or null is
 * told apart. */
TEST(import_lead_check_validates_one_record)
{
	static const struct {
		const char *json;
		int64_t offer;
		const char *err;
	} bad[] = {
		{ "{\"id\": 1001, \"offer\": 10, \"status\": 13}", 0,
		  "lead 1001: 'status' must be an integer 1..12" },
		{ "{\"offer\": 10, \"status\": 2}", 0, "lead: give 'id' or 'ext'" },
		{ "{\"ext\": \"A\", \"status\": 2}", 0, "lead: missing 'offer'" },
		/* past int64_t: refused before any conversion */
		{ "{\"id\": 1e300, \"offer\": 10, \"status\": 2}", 0,
		  "lead: 'id' must be a positive integer" },
		{ "{\"id\": -9.3e18, \"offer\": 10, \"status\": 2}", 0,
		  "lead: 'id' must be a positive integer" },
		{ "{\"id\": 1, \"offer\": 10, \"status\": 2, \"curr\": \"EUR\"}", 0,
		  "lead 1: unknown currency 'EUR'" },
		{ "{\"id\": 1, \"offer\": 10, \"status\": 2, \"created\": 1763632800}", 0,
		  "lead 1: 'created' must be an ISO-8601 time" },
		{ "[1]", 0, "lead: a lead must be a JSON object" },
	};
	struct import_lead l;
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ASSERT_EQ(import_t_check(bad[i].json, bad[i].offer, &l, err, sizeof(err)), -1);
		ASSERT_CONTAINS(err, bad[i].err);
	}
	ASSERT_EQ(import_t_check("{\"ext\": \"A-1\", \"offer\": 10, \"status\": 5, \"base\": \"30.5\","
				 " \"curr\": \"USD\", \"created\": \"2026-11-20T10:00:00Z\","
				 " \"reason\": null, \"comment\": null, \"goal\": \"lead\"}",
				 0, &l, err, sizeof(err)),
		  0);
	ASSERT_EQ(l.lead.offer, 10);
	ASSERT_STREQ(l.lead.ext, "A-1");
	ASSERT_EQ(l.lead.base, 3050);
	ASSERT_EQ(l.lead.curr, 840);
	ASSERT_EQ(l.lead.created, 1795168800);
	ASSERT_STREQ(l.goal, "lead");
	ASSERT(!IMPORT_LEAD_SET(&l, ILK_ID));
	ASSERT(IMPORT_LEAD_SET(&l, ILK_BASE));
	ASSERT(l.given & (1u << ILK_REASON));
	ASSERT(!IMPORT_LEAD_SET(&l, ILK_REASON));
	ASSERT(l.given & (1u << ILK_COMMENT));
	ASSERT(!(l.given & (1u << ILK_TRACK)));
	/* `rule test`'s files name the offer once */
	ASSERT_EQ(import_t_check("{\"id\": 7, \"status\": 2}", 12, &l, err, sizeof(err)), 0);
	ASSERT_EQ(l.lead.offer, 12);
	ASSERT_EQ(l.lead.id, 7);
}

/* Checks json and stages it at pos; 0 when both worked. */
static int import_t_stage(struct import *im, const char *json, size_t pos, char *err,
			  size_t errlen)
{
	struct import_lead l;

	if (import_t_check(json, 0, &l, err, errlen) < 0)
		return -1;
	return import_lead_add(im, pos, &l, err, errlen);
}

/* Records staged one by one are written as one import: ids in position
 * order, history rows; a record the database refuses is named by its
 * position and nothing is written. */
TEST(import_record_set_writes_all_or_names_the_record)
{
	static const struct {
		const char *a, *b;
		size_t pa, pb;
		const char *err;
	} bad[] = {
		{ "{\"ext\": \"R-2\", \"offer\": 10, \"status\": 2}",
		  "{\"ext\": \"R-3\", \"offer\": 99, \"status\": 2}", 1, 2, "lead: unknown offer 99" },
		{ "{\"id\": 1001, \"offer\": 10, \"status\": 6}",
		  "{\"id\": 1001, \"offer\": 10, \"status\": 6}", 4, 7,
		  "lead 1001 is already on line 4" },
	};
	PGconn *c = import_t_db("import_record_set");
	struct import_stats st;
	struct import *im;
	int64_t ids[2] = { 0, 0 };
	size_t nids = 0, pos = 0, i;
	char err[1024] = "", want[64], v[64];

	ASSERT(c);
	ASSERT_EQ(import_t_run(c, IMPORT_T_ADV IMPORT_T_OFFER IMPORT_T_GOAL, &st, err, sizeof(err)),
		  0);
	im = import_begin(c, &st, err, sizeof(err));
	ASSERT(im);
	ASSERT_EQ(import_t_stage(im, "{\"ext\": \"R-1\", \"offer\": 10, \"status\": 2,"
				 " \"curr\": \"USD\"}", 1, err, sizeof(err)), 0);
	ASSERT_EQ(import_t_stage(im, "{\"id\": 1001, \"offer\": 10, \"status\": 3,"
				 " \"goal\": \"lead\"}", 2, err, sizeof(err)), 0);
	ASSERT_EQ(import_commit(im, ids, 2, &nids, &pos, err, sizeof(err)), 0);
	import_free(im);
	ASSERT_EQ(nids, 2);
	ASSERT_EQ(ids[1], 1001);
	snprintf(want, sizeof(want), "%" PRId64, ids[0]);
	ASSERT_STREQ(import_t_value(c, "SELECT id FROM leads WHERE ext = 'R-1'", v, sizeof(v)), want);
	ASSERT_SQL(c, "SELECT count(*) FROM lead_history WHERE source = 'import'", "2");

	/* the second record's offer is unknown; the same lead twice names the
	 * later position and the earlier: nothing written either time */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		im = import_begin(c, &st, err, sizeof(err));
		ASSERT(im);
		ASSERT_EQ(import_t_stage(im, bad[i].a, bad[i].pa, err, sizeof(err)), 0);
		ASSERT_EQ(import_t_stage(im, bad[i].b, bad[i].pb, err, sizeof(err)), 0);
		ASSERT_EQ(import_commit(im, NULL, 0, NULL, &pos, err, sizeof(err)), -1);
		import_free(im);
		ASSERT_EQ(pos, bad[i].pb);
		ASSERT_STREQ(err, bad[i].err);
	}
	ASSERT_SQL(c, "SELECT concat_ws(' ', count(*), max(status)) FROM leads", "2 3");
	import_t_close(c);
}
