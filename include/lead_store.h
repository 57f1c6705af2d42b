/* lead_store: the one home of the lead row between C and PostgreSQL. The
 * services that read and write leads (the poller, postbacks, timers,
 * import) compose their own statements, each with its own conditions
 * (a lease, a row version, a postback's dedupe), from the pieces here:
 *
 *  - LEAD_STORE_COLS(a): the select list of a lead (alias a), read by
 *    lead_store_read() into a struct lead;
 *  - the wire format of a changed lead (lead_store_json(), read in SQL as
 *    json_to_recordset(..) AS x(LEAD_STORE_RECORD)), written back with
 *    LEAD_STORE_SET / inserted with LEAD_STORE_INSERT_COLS and
 *    LEAD_STORE_VALUES;
 *  - the history row of a change (lead_store_history_json(), read as
 *    LEAD_STORE_HISTORY_RECORD) and the one INSERT INTO lead_history
 *    (LEAD_STORE_HISTORY_INSERT).
 *
 * One unit and one rounding everywhere: money travels as integer cents
 * (lead.h's unit; SQL divides by 100), times as UNIX seconds floored
 * (as lead_diff() and `lead show --json` show them), 0 for none. A write
 * keeps a stored time whose floor equals the one written, so a time with
 * a fraction of a second is never moved by a write that did not change
 * it (and so never without a history row).
 *
 * Adding a column to leads: a migration, then struct lead, and here the
 * select list, the reader, the JSON writer and the record/SET lists. */
#ifndef LEADSYNC_LEAD_STORE_H
#define LEADSYNC_LEAD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "lead.h"

/* A stored time as the wire carries it: UNIX seconds, floored; 0 for NULL. */
#define LEAD_STORE_EPOCH(t) "coalesce(floor(extract(epoch FROM " t "))::bigint, 0)"

/* The lead's columns of alias a (a string literal), LEAD_STORE_NCOLS of
 * them, in lead_store_read()'s order. NULLs read as 0 or "". */
#define LEAD_STORE_COLS(a)                                                                    \
	a ".id, " a ".offer, coalesce(" a ".ext, ''), " a ".status, coalesce(" a ".reason, 0),"  \
	" coalesce(" a ".comment, ''), coalesce(" a ".track, ''), " a ".base, " a ".counts,"   \
	" coalesce(" a ".curr, 0), coalesce(" a ".goal, 0), " a ".wm, " a ".pay, " a ".ref,"    \
	" coalesce(" a ".cash_curr, 0), " LEAD_STORE_EPOCH(a ".created") ","                   \
	" " LEAD_STORE_EPOCH(a ".approved_at") ", " LEAD_STORE_EPOCH(a ".hold_until")
#define LEAD_STORE_NCOLS 18

/* The fields of lead_store_json() as json_to_recordset() reads them. */
#define LEAD_STORE_RECORD                                                                    \
	"id bigint, status smallint, reason smallint, comment text, track text, base bigint,"   \
	" counts integer, curr integer, goal bigint, wm bigint, pay bigint, ref bigint,"       \
	" cash_curr integer, approved_at bigint, hold_until bigint"

/* A written time: v (seconds, 0 none) into column cur's place, which is
 * kept when v is its floor. */
#define LEAD_STORE_TIME(v, cur)                                                              \
	"CASE WHEN " v " = 0 THEN NULL WHEN " v " = floor(extract(epoch FROM " cur "))::bigint" \
	" THEN " cur " ELSE to_timestamp(" v ") END"

/* UPDATE leads l SET LEAD_STORE_SET FROM (records x) WHERE ...: every
 * field of the lead from record x, and updated. */
#define LEAD_STORE_SET                                                                       \
	" status = x.status, reason = nullif(x.reason, 0), comment = x.comment,"               \
	" track = x.track, base = x.base::numeric / 100, counts = x.counts,"                   \
	" curr = nullif(x.curr, 0), goal = nullif(x.goal, 0), wm = x.wm::numeric / 100,"        \
	" pay = x.pay::numeric / 100, ref = x.ref::numeric / 100,"                              \
	" cash_curr = nullif(x.cash_curr, 0),"                                                  \
	" approved_at = " LEAD_STORE_TIME("x.approved_at", "l.approved_at") ","                 \
	" hold_until = " LEAD_STORE_TIME("x.hold_until", "l.hold_until") ", updated = now()"

/* The lead's fields a service writes, in lead_diff()'s order: F(name)
 * each, S (a string literal) between them. Set-based writers (import)
 * build their column lists from it, e.g. F(f) " n." #f. */
#define LEAD_STORE_EACH(F, S)                                                                \
	F(status) S F(reason) S F(comment) S F(track) S F(base) S F(counts) S F(curr) S        \
	F(goal) S F(wm) S F(pay) S F(ref) S F(cash_curr) S F(approved_at) S F(hold_until)
#define LEAD_STORE_NAME(f) " " #f

/* INSERT INTO leads (id, ..., LEAD_STORE_INSERT_COLS) SELECT x.id, ...,
 * LEAD_STORE_VALUES FROM (records x). */
#define LEAD_STORE_INSERT_COLS LEAD_STORE_EACH(LEAD_STORE_NAME, ",")
#define LEAD_STORE_VALUES                                                                    \
	"x.status, nullif(x.reason, 0), x.comment, x.track, x.base::numeric / 100, x.counts,"   \
	" nullif(x.curr, 0), nullif(x.goal, 0), x.wm::numeric / 100, x.pay::numeric / 100,"    \
	" x.ref::numeric / 100, nullif(x.cash_curr, 0),"                                       \
	" to_timestamp(nullif(x.approved_at, 0)), to_timestamp(nullif(x.hold_until, 0))"

/* The history rows of lead_store_history_json(), and the one statement
 * that writes history: LEAD_STORE_HISTORY_INSERT " SELECT lead, source,
 * source_id, before, after FROM ...". */
#define LEAD_STORE_HISTORY_RECORD "lead bigint, source text, source_id bigint, before jsonb, after jsonb"
#define LEAD_STORE_HISTORY_INSERT "INSERT INTO lead_history (lead, source, source_id, before, after)"

/* Row row of r, from column col on (LEAD_STORE_COLS), into *l (zeroed
 * first). Returns -1 when an amount does not parse. */
__attribute__((warn_unused_result))
int lead_store_read(const PGresult *r, int row, int col, struct lead *l);

/* Appends l's fields as JSON object members (no braces: the caller opens
 * the object and may add members of its own before closing it), names as
 * in LEAD_STORE_RECORD, money in cents, times in seconds, 0 for none.
 * Returns -1 when the buffer is full. */
__attribute__((warn_unused_result))
int lead_store_json(struct buf *b, const struct lead *l);

/* Appends one history row {"lead", "source", "source_id", "before",
 * "after"} to the JSON array b (a comma first unless first; the caller
 * writes the brackets). source NULL and source_id 0 write null, for a
 * statement that sets them itself. before and after are JSON objects
 * (lead_diff()). Returns -1 when the buffer is full. */
__attribute__((warn_unused_result))
int lead_store_history_json(struct buf *b, bool first, int64_t lead, const char *source,
			    int64_t source_id, const char *before, const char *after);

#endif
