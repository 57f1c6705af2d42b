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
 * Every list here is built from lead.h's LEAD_FIELDS: adding a column is
 * a row there (see there), nothing here. */
#ifndef LEADSYNC_LEAD_STORE_H
#define LEADSYNC_LEAD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"
#include "lead.h"

/* A stored time as the wire carries it: UNIX seconds, floored; 0 for NULL. */
#define LEAD_STORE_EPOCH(t) "coalesce(floor(extract(epoch FROM " t "))::bigint, 0)"

/* Per kind (lead.h's LEAD_FIELDS), a field f of alias a as selected (NULL
 * read as 0 or ''), its type on the wire, and its value from record x as
 * a written column takes it. */
#define LEAD_STORE__SEL(a, f, k) " " LEAD_STORE__SEL_##k(a "." #f)
#define LEAD_STORE__SEL_NUM(c) c
#define LEAD_STORE__SEL_ID(c) "coalesce(" c ", 0)"
#define LEAD_STORE__SEL_MONEY(c) c
#define LEAD_STORE__SEL_TIME(c) LEAD_STORE_EPOCH(c)
#define LEAD_STORE__SEL_STR(c) "coalesce(" c ", '')"
#define LEAD_STORE__TYPE(P, f, k) " " #f " " LEAD_STORE__TYPE_##k
#define LEAD_STORE__TYPE_NUM "integer"
#define LEAD_STORE__TYPE_ID "bigint"
#define LEAD_STORE__TYPE_MONEY "bigint"
#define LEAD_STORE__TYPE_TIME "bigint"
#define LEAD_STORE__TYPE_STR "text"
#define LEAD_STORE__VAL(P, f, k) " " LEAD_STORE__VAL_##k("x." #f)
#define LEAD_STORE__VAL_NUM(v) v
#define LEAD_STORE__VAL_ID(v) "nullif(" v ", 0)"
#define LEAD_STORE__VAL_MONEY(v) v "::numeric / 100"
#define LEAD_STORE__VAL_TIME(v) "to_timestamp(nullif(" v ", 0))"
#define LEAD_STORE__VAL_STR(v) v
/* an UPDATE keeps a stored time whose floor is the one written */
#define LEAD_STORE__SET(P, f, k) " " #f " = " LEAD_STORE__SET_##k(#f)
#define LEAD_STORE__SET_NUM(f) LEAD_STORE__VAL_NUM("x." f)
#define LEAD_STORE__SET_ID(f) LEAD_STORE__VAL_ID("x." f)
#define LEAD_STORE__SET_MONEY(f) LEAD_STORE__VAL_MONEY("x." f)
#define LEAD_STORE__SET_TIME(f) LEAD_STORE_TIME("x." f, "l." f)
#define LEAD_STORE__SET_STR(f) LEAD_STORE__VAL_STR("x." f)
#define LEAD_STORE__ONE(P, f, k) + 1

/* The lead's columns of alias a (a string literal), LEAD_STORE_NCOLS of
 * them, in lead_store_read()'s order: id, offer, ext, created, then
 * LEAD_FIELDS. */
#define LEAD_STORE_COLS(a)                                                                    \
	a ".id, " a ".offer, coalesce(" a ".ext, ''), " LEAD_STORE_EPOCH(a ".created") ","     \
	LEAD_FIELDS(LEAD_STORE__SEL, LEAD_SEP_SQL, a)
#define LEAD_STORE_NCOLS (4 LEAD_FIELDS(LEAD_STORE__ONE, LEAD_SEP_NONE, ~))

/* The fields of lead_store_json() as json_to_recordset() reads them. */
#define LEAD_STORE_RECORD "id bigint," LEAD_FIELDS(LEAD_STORE__TYPE, LEAD_SEP_SQL, ~)

/* A written time: v (seconds, 0 none) into column cur's place, which is
 * kept when v is its floor. */
#define LEAD_STORE_TIME(v, cur)                                                              \
	"CASE WHEN " v " = 0 THEN NULL WHEN " v " = floor(extract(epoch FROM " cur "))::bigint" \
	" THEN " cur " ELSE to_timestamp(" v ") END"

/* UPDATE leads l SET LEAD_STORE_SET FROM (records x) WHERE ...: every
 * field of the lead from record x, and updated. */
#define LEAD_STORE_SET LEAD_FIELDS(LEAD_STORE__SET, LEAD_SEP_SQL, ~) ", updated = now()"

/* The lead's fields a service writes, in lead_diff()'s order: F(name)
 * each, commas between them. Set-based writers (import) build their
 * column lists from it, e.g. F(f) " n." #f. */
#define LEAD_STORE__EACH(F, f, k) F(f)
#define LEAD_STORE_EACH(F) LEAD_FIELDS(LEAD_STORE__EACH, LEAD_SEP_SQL, F)
#define LEAD_STORE_NAME(f) " " #f

/* INSERT INTO leads (id, ..., LEAD_STORE_INSERT_COLS) SELECT x.id, ...,
 * LEAD_STORE_VALUES FROM (records x). */
#define LEAD_STORE_INSERT_COLS LEAD_STORE_EACH(LEAD_STORE_NAME)
#define LEAD_STORE_VALUES LEAD_FIELDS(LEAD_STORE__VAL, LEAD_SEP_SQL, ~)

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
