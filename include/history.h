/* history: what an operator reads to learn why a lead has its status
 * (`leadsync lead show ID [--json]`): the lead and its lead_history rows.
 *
 * JSON (the contract other tools rely on; DESIGN.md "Interfaces"): one
 * object, compact, on one line ending in '\n':
 *   {"id", "offer", "ext", "status", "status_code", "created", "goal" (the
 *    goal's code), "click_id", "base", "counts", "reason", "comment",
 *    "track", "wm", "pay", "ref", "approved_at", "hold_until", "curr" and
 *    "cash_curr" (ISO codes), "request_id", "customer_id", "updated",
 *    "checked",
 *    "history": [{"at", "source", "source_id", "before": {...},
 *                 "after": {...}}, ...]}
 * Times are ISO-8601 UTC strings to the second ("2026-11-20T10:00:00Z"),
 * money a JSON number in units (30, 30.5), anything unset null. history is
 * oldest first; before/after hold the fields that changed, in lead_diff()'s
 * form (there goal, curr and cash_curr are ids). More fields may be added;
 * none is renamed.
 *
 * Text: the lead's fields one per line, then one line per history entry:
 * time, source (and its id), and "field old -> new" for each change. */
#ifndef LEADSYNC_HISTORY_H
#define LEADSYNC_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "buf.h"

/* SQL: a lead_history row's change as text, "status 2 -> 6, comment
 * \"\" -> \"ok\"", fields in lead_diff()'s order; h is the row's alias. The
 * text views of `lead show`, a poll run and a postback share it. */
#define HISTORY_SUMMARY_SQL(h)                                                        \
	"(SELECT string_agg(CASE WHEN " h ".before ? k"                                \
	"   THEN k || ' ' || coalesce((" h ".before -> k)::text, 'null') || ' -> '"    \
	"    || coalesce((" h ".after -> k)::text, 'null')"                            \
	"   ELSE k || ' ' || coalesce((" h ".after -> k)::text, 'null') END, ', '"     \
	"   ORDER BY array_position(ARRAY['status', 'reason', 'comment', 'track', 'base'," \
	"    'counts', 'curr', 'goal', 'wm', 'pay', 'ref', 'cash_curr', 'approved_at',"  \
	"    'hold_until', 'ext', 'created', 'click_id', 'request_id', 'customer_id'], k), k)" \
	"  FROM jsonb_object_keys(" h ".before || " h ".after) AS k)"

#define HISTORY_ENOTFOUND (-2)

/* Appends lead id and its history to out (the caller's buffer). Returns 0,
 * HISTORY_ENOTFOUND ("lead 99 not found" in err), or -1 with err set (a
 * database error, out full); out may then hold part of the text. */
__attribute__((warn_unused_result))
int history_lead_show(PGconn *c, int64_t id, bool json, struct buf *out, char *err, size_t errlen);

#endif
