/* lead_store: a lead row into a struct lead, and a struct lead and its
 * history row into the JSON the services' statements read (lead_store.h). */
#include "lead_store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int64_t lead_store__i64(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10); /* NULL reads "": 0 */
}

static int lead_store__money(const PGresult *r, int row, int col, int64_t *out)
{
	*out = 0;
	return PQgetisnull(r, row, col) ? 0 : lead_money_parse(PQgetvalue(r, row, col), out);
}

int lead_store_read(const PGresult *r, int row, int col, struct lead *l)
{
	int rc = 0;

	memset(l, 0, sizeof(*l));
	l->id = lead_store__i64(r, row, col + 0);
	l->offer = lead_store__i64(r, row, col + 1);
	lead_strlcpy(l->ext, sizeof(l->ext), PQgetvalue(r, row, col + 2));
	l->status = (int)lead_store__i64(r, row, col + 3);
	l->reason = (int)lead_store__i64(r, row, col + 4);
	lead_strlcpy(l->comment, sizeof(l->comment), PQgetvalue(r, row, col + 5));
	lead_strlcpy(l->track, sizeof(l->track), PQgetvalue(r, row, col + 6));
	rc |= lead_store__money(r, row, col + 7, &l->base);
	l->counts = (int)lead_store__i64(r, row, col + 8);
	l->curr = (int)lead_store__i64(r, row, col + 9);
	l->goal = lead_store__i64(r, row, col + 10);
	rc |= lead_store__money(r, row, col + 11, &l->wm);
	rc |= lead_store__money(r, row, col + 12, &l->pay);
	rc |= lead_store__money(r, row, col + 13, &l->ref);
	l->cash_curr = (int)lead_store__i64(r, row, col + 14);
	l->created = lead_store__i64(r, row, col + 15);
	l->approved_at = lead_store__i64(r, row, col + 16);
	l->hold_until = lead_store__i64(r, row, col + 17);
	return rc ? -1 : 0;
}

int lead_store_json(struct buf *b, const struct lead *l)
{
	int e = 0;

	e |= buf_addf(b, "\"id\":%" PRId64 ",\"status\":%d,\"reason\":%d,\"comment\":", l->id,
		      l->status, l->reason);
	e |= buf_add_json_str(b, l->comment, strlen(l->comment));
	e |= buf_adds(b, ",\"track\":");
	e |= buf_add_json_str(b, l->track, strlen(l->track));
	e |= buf_addf(b,
		      ",\"base\":%" PRId64 ",\"counts\":%d,\"curr\":%d,\"goal\":%" PRId64
		      ",\"wm\":%" PRId64 ",\"pay\":%" PRId64 ",\"ref\":%" PRId64
		      ",\"cash_curr\":%d,\"approved_at\":%" PRId64 ",\"hold_until\":%" PRId64,
		      l->base, l->counts, l->curr, l->goal, l->wm, l->pay, l->ref, l->cash_curr,
		      l->approved_at, l->hold_until);
	return e ? -1 : 0;
}

int lead_store_history_json(struct buf *b, bool first, int64_t lead, const char *source,
			    int64_t source_id, const char *before, const char *after)
{
	int e = buf_addf(b, "%s{\"lead\":%" PRId64 ",\"source\":", first ? "" : ",", lead);

	e |= source ? buf_add_json_str(b, source, strlen(source)) : buf_adds(b, "null");
	e |= source_id ? buf_addf(b, ",\"source_id\":%" PRId64, source_id)
		       : buf_adds(b, ",\"source_id\":null");
	e |= buf_addf(b, ",\"before\":%s,\"after\":%s}", before, after);
	return e ? -1 : 0;
}
