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

/* Reading field f of kind k from column c (counting on): a statement each. */
#define LEAD_STORE__READ(P, f, k) LEAD_STORE__READ_##k(f)
#define LEAD_STORE__READ_NUM(f) l->f = lead_store__i64(r, row, c++);
#define LEAD_STORE__READ_ID(f) l->f = lead_store__i64(r, row, c++);
#define LEAD_STORE__READ_TIME(f) l->f = lead_store__i64(r, row, c++);
#define LEAD_STORE__READ_MONEY(f) rc |= lead_store__money(r, row, c++, &l->f);
#define LEAD_STORE__READ_STR(f) lead_strlcpy(l->f, sizeof(l->f), PQgetvalue(r, row, c++));

int lead_store_read(const PGresult *r, int row, int col, struct lead *l)
{
	int rc = 0, c = col + 4;

	memset(l, 0, sizeof(*l));
	l->id = lead_store__i64(r, row, col + 0);
	l->offer = lead_store__i64(r, row, col + 1);
	lead_strlcpy(l->ext, sizeof(l->ext), PQgetvalue(r, row, col + 2));
	l->created = lead_store__i64(r, row, col + 3);
	LEAD_FIELDS(LEAD_STORE__READ, LEAD_SEP_NONE, ~)
	return rc ? -1 : 0;
}

/* Appends n in decimal: a field of the hot write path, where a printf per
 * number cost more than the rest of the JSON. */
static int lead_store__num(struct buf *b, int64_t n)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = n < 0 ? 0 - (uint64_t)n : (uint64_t)n;

	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (n < 0)
		*--p = '-';
	return buf_add(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Writing field f of kind k as a JSON member: an expression each. */
#define LEAD_STORE__JSON(P, f, k) e |= buf_adds(b, ",\"" #f "\":"); e |= LEAD_STORE__JSON_##k(l->f);
#define LEAD_STORE__JSON_NUM(v) lead_store__num(b, v)
#define LEAD_STORE__JSON_ID(v) lead_store__num(b, v)
#define LEAD_STORE__JSON_MONEY(v) lead_store__num(b, v)
#define LEAD_STORE__JSON_TIME(v) lead_store__num(b, v)
#define LEAD_STORE__JSON_STR(v) buf_add_json_str(b, v, strlen(v))

int lead_store_json(struct buf *b, const struct lead *l)
{
	int e = buf_adds(b, "\"id\":");

	e |= lead_store__num(b, l->id);
	LEAD_FIELDS(LEAD_STORE__JSON, LEAD_SEP_NONE, ~)
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
