/* history: what an operator reads to learn why a lead has its status
 * (`leadsync lead show ID [--json]`): the lead and its lead_history rows.
 *
 * JSON (the contract other tools rely on; DESIGN.md "Interfaces"): one
 * object, compact, on one line ending in '\n':
 *   {"id", "offer", "ext", "status", "status_code", "created", "goal" (the
 *    goal's code), "click_id", "base", "counts", "reason", "comment",
 *    "track", "wm", "pay", "ref", "approved_at", "hold_until", "curr" and
 *    "cash_curr" (ISO codes), "request_id", "customer_id", "updated",
 *    "checked" (when a poll last asked the CRM about it:
 *    HISTORY_CHECKED_SQL below),
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

/* SQL: when a poll last asked the CRM about lead l: the later of
 * l.checked (set by the poll that last changed it) and the last successful
 * run of its offer's variant for its status (poll_schedule.last_ok;
 * statuses 2-4 processing, 6-9 accepted), which asked about every such
 * lead with an external id. A poll writes nothing on the leads the CRM
 * reports unchanged (issue 10: that UPDATE was most of a pass's cost), so
 * leads.checked alone is the last change by a poll, not the last question.
 * NULL when never asked. `lead show`'s "checked" key. */
#define HISTORY_CHECKED_SQL(l)                                                         \
	"greatest(" l ".checked, (SELECT s.last_ok FROM poll_schedule s"              \
	" WHERE s.offer = " l ".offer AND " l ".ext <> '' AND s.variant ="             \
	" CASE WHEN " l ".status IN (2, 3, 4) THEN 'processing'"                        \
	" WHEN " l ".status IN (6, 7, 8, 9) THEN 'accepted' END))"

#define HISTORY_ENOTFOUND (-2)

/* Appends lead id and its history to out (the caller's buffer). Returns 0,
 * HISTORY_ENOTFOUND ("lead 99 not found" in err), or -1 with err set (a
 * database error, out full); out may then hold part of the text. */
__attribute__((warn_unused_result))
int history_lead_show(PGconn *c, int64_t id, bool json, struct buf *out, char *err, size_t errlen);

#endif
