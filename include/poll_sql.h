/* poll_sql: the SQL texts the poller runs for a page of leads and for a
 * batch's write, and the builder of the write's JSON payloads, in one
 * header so that bench/bench_pgwrite.c runs exactly the poller's
 * statements (include/poller.h tells what a poll does with them).
 *
 * Page select (POLL_SQL_SEL_PROCESSING, POLL_SQL_SEL_ACCEPTED): the next
 * page of an offer's leads that the id variant asks about, keyset by id.
 *   $1 offer, $2 cursor (the last id of the previous page, 0 first),
 *   $3 leads (LIMIT), $4 boolean: also count the open leads without an
 *   external id (column POLL_NO_EXT_COL, the same on every row; 0 when
 *   false).
 * Columns: POLL_LEAD_COLS (lead_store.h's LEAD_STORE_COLS, LEAD_STORE_NCOLS
 * of them, read into a struct lead by lead_store_read()), then the row
 * version POLL_XMIN_COL (xmin as text: the write's optimistic check), then
 * POLL_NO_EXT_COL. The dates select (poller.c) ends at POLL_XMIN_COL.
 *
 * Row (POLL_SQL_ROW): one poll_runs row on its own (a failure, or a batch
 * that changed no lead: unchanged leads are not written at all). Returns
 * one row: the run's id, then POLL_ASYNC_COMMIT's "off". Parameters $1-$25
 * below.
 *
 * Durability. Both statements commit without waiting for their WAL to
 * reach the disk (POLL_ASYNC_COMMIT: synchronous_commit off for their own
 * implicit transaction only; the connection, which postbacks share, keeps
 * its setting). A poll's write answers no client and is redone by the
 * next poll: if PostgreSQL crashes, the last moment of poll writes (at
 * most 3 x wal_writer_delay, 0.6 s by default) is lost whole, lead, history
 * and run row together, never in part, and those leads are asked again.
 * Waiting for the flush was a commit's fsync per batch: 10,000 of them a
 * pass, most of the pass's time after the writes themselves
 * (bench/BENCHMARKS.md). Postbacks, clicks, intake, timers and import
 * stay durable.
 *
 * Write (POLL_SQL_WRITE): one autocommit statement, all or nothing:
 *  - the pair's lease is checked (FOR KEY SHARE on its poll_schedule row,
 *    held to the end of the statement: no other worker claims the pair
 *    meanwhile); no row: nothing at all is written;
 *  - the changed leads are locked in id order (FOR NO KEY UPDATE, the order
 *    every writer locks in, so none deadlocks with another), then updated
 *    only where their row version (xmin) is still the one the page select
 *    read: a lead a postback (or a timer) changed meanwhile is skipped,
 *    counted in leads_skipped and noted ("lead 101 changed meanwhile: not
 *    written"), asked again next poll; `checked` and `updated` are set on
 *    the leads it writes;
 *  - one lead_history row per lead written ($28 source, source_id the run);
 *  - the poll_runs row, leads_changed and leads_skipped counted from what
 *    was written.
 * Returns one row: (0) lease rows found (0: lease lost, nothing written),
 * (1) the run's id (NULL when lost), (2) the ids written, a text array in
 * id order ("{101,102}"), (3) POLL_ASYNC_COMMIT's "off".
 *
 * Parameters (text; NULL where said):
 *   $1 offer          $2 variant name     $3 worker (the lease owner)
 *   $4 started, $5 finished: microseconds since the epoch
 *   $6 method|NULL    $7 url|NULL         $8 http status|NULL
 *   $9 bytes|NULL     $10 leads asked
 *   $11 leads changed (the write adds the leads it writes)
 *   $12 unknown       $13 refused         $14 unrecognised
 *   $15 skipped (the write adds the leads it skips)
 *   $16 pages         $17 outcome         $18 error|NULL
 *   $19 answer_head|NULL                  $20 caught_up (true/false)
 *   $21 missed        $22 notes|NULL (the write appends the skipped leads,
 *                     the whole cut at POLL_NOTES_MAX characters)
 *   $23 content_type|NULL                 $24 leads_no_ext
 *   $25 rule_cpu_ms: the rule's CPU time for the batch, ms
 *   write only:
 *   $26 the changes, a JSON array built by poll_sql_change() (lead_store.h's
 *       wire format, and "xmin")
 *   $27 the history rows, a JSON array built by poll_sql_change()
 *   $28 the history source: "poll", or "dates" for the dates variant
 */
#ifndef LEADSYNC_POLL_SQL_H
#define LEADSYNC_POLL_SQL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "lead.h"
#include "lead_store.h"

#define POLL_LEAD_COLS LEAD_STORE_COLS("l") ", l.xmin::text"
#define POLL_XMIN_COL LEAD_STORE_NCOLS
#define POLL_NO_EXT_COL (LEAD_STORE_NCOLS + 1)

/* The id variants ask by external id: a lead without one (a postback's)
 * cannot be asked about, so it is not selected, only counted. The
 * conditions match the partial indexes of 006_poll_no_ext.sql literally.
 * The count rides on the run's first page ($4 true: one statement, no
 * extra round trip before the first request); a first page with no row
 * counts on its own (POLL_SQL_NO_EXT_*, $1 offer). */
#define POLL_NO_EXT_SQL(statuses)                                                   \
	"SELECT count(*) FROM leads n WHERE n.offer = $1 AND n.status IN " statuses \
	" AND coalesce(n.ext, '') = ''"
#define POLL_SEL_SQL(statuses)                                                      \
	"SELECT " POLL_LEAD_COLS ", CASE WHEN $4::boolean THEN (" POLL_NO_EXT_SQL(statuses) \
	") ELSE 0 END FROM leads l WHERE l.offer = $1 AND l.status IN " statuses          \
	" AND l.ext <> '' AND l.id > $2 ORDER BY l.id LIMIT $3"

#define POLL_SQL_SEL_PROCESSING POLL_SEL_SQL("(2, 3, 4)")
#define POLL_SQL_SEL_ACCEPTED POLL_SEL_SQL("(6, 7, 8, 9)")
#define POLL_SQL_NO_EXT_PROCESSING POLL_NO_EXT_SQL("(2, 3, 4)")
#define POLL_SQL_NO_EXT_ACCEPTED POLL_NO_EXT_SQL("(6, 7, 8, 9)")

#define POLL_RUN_COLS                                                                   \
	"offer, variant, worker, started, finished, method, url, http_status, bytes,"    \
	" leads_asked, leads_changed, leads_unknown, leads_refused, leads_unrecognised," \
	" leads_skipped, pages, outcome, error, answer_head, caught_up, missed, notes,"  \
	" content_type, leads_no_ext, rule_cpu_ms"

/* synchronous_commit off for the statement's own transaction (is_local):
 * see "Durability" above. */
#define POLL_ASYNC_COMMIT "set_config('synchronous_commit', 'off', true)"

#define POLL_SQL_ROW                                                                    \
	"INSERT INTO poll_runs (" POLL_RUN_COLS ")"                                     \
	" VALUES ($1, $2, $3, to_timestamp($4::double precision / 1000000),"             \
	"  to_timestamp($5::double precision / 1000000), $6, $7, $8, $9, $10, $11, $12," \
	"  $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"                  \
	" RETURNING id, " POLL_ASYNC_COMMIT

#define POLL_SQL_WRITE                                                                  \
	"WITH lease AS ("                                                               \
	" SELECT 1 FROM poll_schedule WHERE offer = $1 AND variant = $2 AND lease_owner = $3" \
	" FOR KEY SHARE"                                                                \
	"), x AS ("                                                                     \
	" SELECT * FROM json_to_recordset($26::json) AS x(" LEAD_STORE_RECORD ", xmin xid)"   \
	"), k AS ("                                                                     \
	" SELECT l.id FROM leads l WHERE l.id IN (SELECT id FROM x)"                     \
	"  AND EXISTS (SELECT 1 FROM lease) ORDER BY l.id FOR NO KEY UPDATE"             \
	"), u AS ("                                                                     \
	" UPDATE leads l SET" LEAD_STORE_SET ", checked = now()"                         \
	" FROM x WHERE l.id = x.id AND l.xmin = x.xmin AND l.id IN (SELECT id FROM k)"     \
	" RETURNING l.id"                                                               \
	"), r AS ("                                                                     \
	" INSERT INTO poll_runs (" POLL_RUN_COLS ")"                                    \
	" SELECT $1::bigint, $2::text, $3::text, to_timestamp($4::double precision / 1000000)," \
	"  to_timestamp($5::double precision / 1000000), $6::text, $7::text, $8::integer," \
	"  $9::bigint, $10::integer, $11::integer + (SELECT count(*) FROM u), $12::integer," \
	"  $13::integer, $14::integer,"                                                  \
	"  $15::integer + (SELECT count(*) FROM x) - (SELECT count(*) FROM u), $16::integer," \
	"  $17::text, $18::text, $19::text, $20::boolean, $21::integer,"                 \
	"  nullif(left(coalesce($22::text, '') || coalesce((SELECT"                      \
	"  string_agg('lead ' || x.id || ' changed meanwhile: not written' || chr(10), ''" \
	"  ORDER BY x.id) FROM x WHERE x.id NOT IN (SELECT id FROM u)), ''), 4096), ''),"   \
	"  $23::text, $24::integer, $25::double precision FROM lease RETURNING id"                                            \
	"), h AS ("                                                                     \
	" " LEAD_STORE_HISTORY_INSERT " SELECT y.lead, $28, r.id, y.before, y.after"      \
	" FROM r, json_to_recordset($27::json) AS y(" LEAD_STORE_HISTORY_RECORD ")"       \
	" WHERE y.lead IN (SELECT id FROM u)"                                           \
	")"                                                                             \
	" SELECT (SELECT count(*) FROM lease), (SELECT id FROM r),"                      \
	"  (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM u)::text, " POLL_ASYNC_COMMIT

#define POLL_SQL_ROW_PARAMS 25
#define POLL_SQL_WRITE_PARAMS 28

/* Row row of a page select into *l (columns POLL_LEAD_COLS) and its row
 * version into *xmin. Returns -1 when an amount does not parse. */
__attribute__((warn_unused_result))
int poll_sql_lead_row(const PGresult *r, int row, struct lead *l, uint32_t *xmin);

/* Appends one changed lead to the write's payloads: upd gets the lead's
 * new fields and xmin (the row version the page select read, its text
 * parsed), hist its history row (lead_diff(old, after)). first: the first
 * change of the batch (no comma before it). The caller opens the arrays
 * with '[' and closes them with ']'. Returns 1 when written, 0 when the
 * edit changes no field lead_diff() compares (nothing appended), -1 when a
 * buffer is full (they may then hold part of the change). before and
 * after are the caller's scratch buffers. */
__attribute__((warn_unused_result))
int poll_sql_change(struct buf *upd, struct buf *hist, const struct lead *old,
		    const struct lead *after, uint32_t xmin, bool first, struct buf *before,
		    struct buf *afterj);

#endif
