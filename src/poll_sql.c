/* poll_sql: a page select's row into a lead, and the JSON payloads of the
 * poller's batch write (poll_sql.h). */
#include "poll_sql.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* An integer column (PostgreSQL's text is well-formed). */
static int poll_sql__int(const char *v)
{
	return (int)strtol(v, NULL, 10);
}

int poll_sql_lead_row(const PGresult *r, int row, struct lead *l, uint32_t *xmin)
{
	int rc = 0;

	memset(l, 0, sizeof(*l));
	l->id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
	l->offer = strtoll(PQgetvalue(r, row, 1), NULL, 10);
	lead_strlcpy(l->ext, sizeof(l->ext), PQgetvalue(r, row, 2));
	l->status = poll_sql__int(PQgetvalue(r, row, 3));
	l->reason = poll_sql__int(PQgetvalue(r, row, 4));
	lead_strlcpy(l->comment, sizeof(l->comment), PQgetvalue(r, row, 5));
	lead_strlcpy(l->track, sizeof(l->track), PQgetvalue(r, row, 6));
	rc |= lead_money_parse(PQgetvalue(r, row, 7), &l->base);
	l->counts = poll_sql__int(PQgetvalue(r, row, 8));
	l->curr = poll_sql__int(PQgetvalue(r, row, 9));
	l->goal = strtoll(PQgetvalue(r, row, 10), NULL, 10);
	rc |= lead_money_parse(PQgetvalue(r, row, 11), &l->wm);
	rc |= lead_money_parse(PQgetvalue(r, row, 12), &l->pay);
	rc |= lead_money_parse(PQgetvalue(r, row, 13), &l->ref);
	l->cash_curr = poll_sql__int(PQgetvalue(r, row, 14));
	l->created = strtoll(PQgetvalue(r, row, 15), NULL, 10);
	l->approved_at = strtoll(PQgetvalue(r, row, 16), NULL, 10);
	l->hold_until = strtoll(PQgetvalue(r, row, 17), NULL, 10);
	*xmin = (uint32_t)strtoul(PQgetvalue(r, row, POLL_XMIN_COL), NULL, 10);
	return rc ? -1 : 0;
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
	e |= buf_addf(upd, "%s{\"id\":%" PRId64 ",\"xm\":%" PRIu32 ",\"s\":%d,\"rs\":%d,\"cm\":",
		      first ? "" : ",", l->id, xmin, l->status, l->reason);
	e |= buf_add_json_str(upd, l->comment, strlen(l->comment));
	e |= buf_adds(upd, ",\"tr\":");
	e |= buf_add_json_str(upd, l->track, strlen(l->track));
	e |= buf_addf(upd,
		      ",\"b\":%" PRId64 ",\"n\":%d,\"cu\":%d,\"g\":%" PRId64 ",\"wm\":%" PRId64
		      ",\"pay\":%" PRId64 ",\"ref\":%" PRId64 ",\"cc\":%d,\"ap\":%" PRId64
		      ",\"hu\":%" PRId64 "}",
		      l->base, l->counts, l->curr, l->goal, l->wm, l->pay, l->ref, l->cash_curr,
		      l->approved_at, l->hold_until);
	e |= buf_addf(hist, "%s{\"lead\":%" PRId64 ",\"b\":%s,\"a\":%s}", first ? "" : ",", l->id,
		      before->p, afterj->p);
	return e ? -1 : 1;
}
