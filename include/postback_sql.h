/* postback_sql: the two statements of a postback group (see postback.h
 * "Group commit"), shared by src/postback.c and the benchmark that measures
 * PostgreSQL's own rate for them (bench/bench_pgpost.c), so both run the
 * same text. Internal to the postback module otherwise.
 *
 * pb_resolve_sql, $1: a JSON array of {"i", "k" api key, "c" click uuid,
 * "r" request_id, "a" action, "u" customer_id, "ip" the peer (pbauth_addr,
 * null when none)}; one row per element, in i order, with the columns of
 * enum pb_resolve_col.
 * pb_write_sql, $1..$5: JSON arrays of new leads, changed leads, history
 * rows, customers and log rows (postback.c's pb__lead_json, pb__history,
 * pb__log_json write them; leads and history rows in lead_store.h's wire
 * format, a new lead with "offer", "request_id", "customer_id", "click"
 * and "created" added). */
#ifndef LEADSYNC_POSTBACK_SQL_H
#define LEADSYNC_POSTBACK_SQL_H

#include "lead_store.h"

/* The resolve query: for each postback, its advertiser, the click's offer
 * and goal, the lead with that request_id, the customer, a log id and, when
 * the lead is new, a lead id. Leads are locked one by one in (offer,
 * request_id) order, the order new leads are inserted in, so concurrent
 * groups wait for each other and never deadlock; each is looked up by the
 * unique (offer, request_id) index whatever the statistics say (a lateral
 * lookup), and read by the locking scan itself, so a lead another
 * transaction changed while we waited is seen as it is now. */
static const char pb_resolve_sql[] =
	"WITH x AS MATERIALIZED ("
	" SELECT * FROM json_to_recordset($1::json)"
	"  AS x(i integer, k text, c uuid, r text, a text, u text, ip inet)"
	"), q AS ("
	" SELECT pg_get_serial_sequence('postbacks_in', 'id')::regclass AS pbs,"
	"  pg_get_serial_sequence('leads', 'id')::regclass AS ls"
	"), lk AS MATERIALIZED ("
	" SELECT l.* FROM ("
	"  SELECT DISTINCT cl.offer, x.r FROM x JOIN clicks cl ON cl.id = x.c"
	"  JOIN offers o ON o.id = cl.offer JOIN advertisers a ON a.id = o.advertiser"
	"  WHERE x.r IS NOT NULL AND a.api_key = x.k ORDER BY cl.offer, x.r) q"
	" CROSS JOIN LATERAL ("
	"  SELECT l.*"
	"  FROM leads l WHERE l.offer = q.offer AND l.request_id = q.r FOR UPDATE) l"
	")"
	" SELECT x.i, a.id, a.api_key, o.id, o.advertiser, o.hold_days, o.reject_reason,"
	"  o.cancel_approved, o.status_words::text,"
	"  EXISTS (SELECT 1 FROM goals rg WHERE rg.offer = o.id AND rg.payout = 'recurring'),"
	"  g.id, g.payout, g.wm, g.pay, g.ref, g.currency,"
	"  " LEAD_STORE_COLS("lk") ", lk.click,"
	"  cu.active, nextval(q.pbs),"
	"  CASE WHEN lk.id IS NULL AND x.r IS NOT NULL AND o.id IS NOT NULL THEN nextval(q.ls) END,"
	"  COALESCE(COALESCE(cardinality(a.postback_sources), 0) = 0"
	"   OR x.ip <<= ANY (a.postback_sources), false),"
	"  a.postback_secret"
	" FROM x CROSS JOIN q"
	" LEFT JOIN advertisers a ON a.api_key = x.k"
	" LEFT JOIN clicks cl ON cl.id = x.c"
	" LEFT JOIN offers o ON o.id = cl.offer"
	" LEFT JOIN goals g ON g.offer = o.id AND g.code = x.a"
	" LEFT JOIN lk ON lk.offer = o.id AND lk.request_id = x.r"
	" LEFT JOIN customers cu ON cu.offer = o.id AND cu.customer_id = x.u"
	" ORDER BY x.i";

enum pb_resolve_col {
	R_I, R_ADV, R_KEY, R_OFFER, R_OFFER_ADV, R_HOLD_DAYS, R_REJECT_REASON, R_CANCEL_APPROVED,
	R_WORDS, R_RECURRING, R_GOAL, R_PAYOUT, R_GWM, R_GPAY, R_GREF, R_GCURR,
	R_LEAD, /* LEAD_STORE_COLS: R_LEAD is the lead's id, NULL when none */
	R_LCLICK = R_LEAD + LEAD_STORE_NCOLS, R_CACTIVE, R_LOG_ID, R_NEW_ID,
	R_SOURCE_OK, /* the peer is in the advertiser's networks, or it has none */
	R_SECRET,    /* the advertiser's signature secret; NULL: none */
	R_NCOLS
};

/* The write: new leads, changed leads, history rows, customers and the
 * log rows, one statement. New leads go in (offer, request_id) order and
 * customers in (offer, customer_id) order, so that two groups racing for
 * the same keys wait for each other instead of deadlocking. */
static const char pb_write_sql[] =
	"WITH nl AS ("
	" INSERT INTO leads (id, offer, request_id, customer_id, click, created, "
	LEAD_STORE_INSERT_COLS ")"
	" SELECT x.id, x.offer, x.request_id, x.customer_id, x.click, to_timestamp(x.created), "
	LEAD_STORE_VALUES
	" FROM json_to_recordset($1::json) AS x(" LEAD_STORE_RECORD ", offer bigint,"
	"  request_id text, customer_id text, click uuid, created bigint)"
	" ORDER BY x.offer, x.request_id"
	"), ul AS ("
	" UPDATE leads l SET" LEAD_STORE_SET
	" FROM json_to_recordset($2::json) AS x(" LEAD_STORE_RECORD ")"
	" WHERE l.id = x.id"
	"), hi AS ("
	" " LEAD_STORE_HISTORY_INSERT
	" SELECT x.lead, x.source, x.source_id, x.before, x.after"
	" FROM json_to_recordset($3::json) AS x(" LEAD_STORE_HISTORY_RECORD ")"
	"), cu AS ("
	" INSERT INTO customers AS t (offer, customer_id, click, active)"
	" SELECT x.offer, x.u, x.c, x.act"
	" FROM json_to_recordset($4::json) AS x(offer bigint, u text, c uuid, act boolean)"
	" ORDER BY x.offer, x.u"
	" ON CONFLICT (offer, customer_id) DO UPDATE SET active = EXCLUDED.active, updated = now()"
	"), pb AS ("
	" INSERT INTO postbacks_in (id, at, remote, method, path, query, body, advertiser,"
	"  http_status, outcome, error, lead) OVERRIDING SYSTEM VALUE"
	" SELECT x.id, to_timestamp((x.at / 1000000.0)::double precision), x.remote, x.m, x.p,"
	"  x.q, x.body, x.adv, x.st, x.oc, x.e, x.lead"
	" FROM json_to_recordset($5::json) AS x(id bigint, at bigint, remote text, m text, p text,"
	"  q text, body text, adv bigint, st integer, oc text, e text, lead bigint)"
	")"
	" SELECT 1";

#endif
