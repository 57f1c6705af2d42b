/* poll_sql: a page select's row into a lead, and the JSON payloads of the
 * poller's batch write (poll_sql.h). */
#include "poll_sql.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int poll_sql_lead_row(const PGresult *r, int row, struct lead *l, uint32_t *xmin)
{
	*xmin = (uint32_t)strtoul(PQgetvalue(r, row, POLL_XMIN_COL), NULL, 10);
	return lead_store_read(r, row, 0, l);
}

int poll_sql_change(struct buf *upd, struct buf *hist, const struct lead *old,
		    const struct lead *after, uint32_t xmin, bool first, struct buf *before,
		    struct buf *afterj)
{
	const struct lead *l = after;
	int d, e = 0;

	buf_reset(before);
	buf_reset(afterj);
	d = lead_diff(old, l, before, afterj);
	if (d <= 0)
		return d;
	e |= buf_adds(upd, first ? "{" : ",{");
	e |= lead_store_json(upd, l);
	e |= buf_addf(upd, ",\"xmin\":%" PRIu32 "}", xmin);
	e |= lead_store_history_json(hist, first, l->id, NULL, 0, before->p, afterj->p);
	return e ? -1 : 1;
}
