/* history: `lead show`: a lead and its history rows as JSON or text. */
#include "history.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "store.h"

enum history_kind {
	HK_NUM,    /* a JSON number as PostgreSQL writes it */
	HK_STR,    /* a JSON string */
	HK_STATUS, /* the status's code, from the status column */
};

/* The fields of `lead show`, in output order: name, SQL expression over
 * leads l, offers o, goals g, currencies c (curr) and cc (cash_curr). */
static const struct history_field {
	const char *name;
	const char *expr;
	enum history_kind kind;
} history_fields[] = {
	{ "id", "l.id", HK_NUM },
	{ "offer", "l.offer", HK_NUM },
	{ "ext", "l.ext", HK_STR },
	{ "status", "l.status", HK_NUM },
	{ "status_code", "l.status", HK_STATUS },
	{ "created", "lead_time_json(l.created)", HK_STR },
	{ "goal", "g.code", HK_STR },
	{ "click_id", "l.click", HK_STR },
	{ "base", "trim_scale(l.base)", HK_NUM },
	{ "counts", "l.counts", HK_NUM },
	{ "reason", "l.reason", HK_NUM },
	{ "comment", "l.comment", HK_STR },
	{ "track", "l.track", HK_STR },
	{ "wm", "trim_scale(l.wm)", HK_NUM },
	{ "pay", "trim_scale(l.pay)", HK_NUM },
	{ "ref", "trim_scale(l.ref)", HK_NUM },
	{ "approved_at", "lead_time_json(l.approved_at)", HK_STR },
	{ "hold_until", "lead_time_json(l.hold_until)", HK_STR },
	{ "curr", "c.iso", HK_STR },
	{ "cash_curr", "cc.iso", HK_STR },
	{ "request_id", "l.request_id", HK_STR },
	{ "customer_id", "l.customer_id", HK_STR },
	{ "updated", "lead_time_json(l.updated)", HK_STR },
	{ "checked", "lead_time_json(" HISTORY_CHECKED_SQL("l") ")", HK_STR },
};
#define HISTORY_NFIELDS (sizeof(history_fields) / sizeof(history_fields[0]))

/* History rows oldest first; the last column is the text view's summary of
 * the change, fields in lead_diff()'s order. */
static const char history_rows_sql[] =
	"SELECT lead_time_json(h.at), h.source, h.source_id, h.before::text, h.after::text, "
	HISTORY_SUMMARY_SQL("h")
	" FROM lead_history h WHERE h.lead = $1 ORDER BY h.at, h.id";

static int history__json_value(struct buf *b, const PGresult *r, int col,
			       const struct history_field *f)
{
	const char *v = PQgetvalue(r, 0, col);
	const char *code;

	if (PQgetisnull(r, 0, col))
		return buf_adds(b, "null");
	switch (f->kind) {
	case HK_NUM:
		return buf_adds(b, v);
	case HK_STR:
		return buf_add_json_str(b, v, strlen(v));
	case HK_STATUS:
		code = status_code((int)strtol(v, NULL, 10));
		return code ? buf_add_json_str(b, code, strlen(code)) : buf_adds(b, "null");
	}
	return -1;
}

static int history__json(struct buf *b, const PGresult *lead, const PGresult *h)
{
	size_t i;
	int j, rc = 0;

	rc |= buf_addc(b, '{');
	for (i = 0; i < HISTORY_NFIELDS; i++) {
		rc |= buf_addf(b, "%s\"%s\":", i ? "," : "", history_fields[i].name);
		rc |= history__json_value(b, lead, (int)i, &history_fields[i]);
	}
	rc |= buf_adds(b, ",\"history\":[");
	for (j = 0; j < PQntuples(h); j++) {
		const char *at = PQgetvalue(h, j, 0), *src = PQgetvalue(h, j, 1);

		rc |= buf_adds(b, j ? ",{\"at\":" : "{\"at\":");
		rc |= buf_add_json_str(b, at, strlen(at));
		rc |= buf_adds(b, ",\"source\":");
		rc |= buf_add_json_str(b, src, strlen(src));
		rc |= buf_addf(b, ",\"source_id\":%s,\"before\":%s,\"after\":%s}",
			       PQgetisnull(h, j, 2) ? "null" : PQgetvalue(h, j, 2),
			       PQgetvalue(h, j, 3), PQgetvalue(h, j, 4));
	}
	rc |= buf_adds(b, "]}\n");
	return rc ? -1 : 0;
}

static const char *history__get(const PGresult *r, const char *name)
{
	size_t i;

	for (i = 0; i < HISTORY_NFIELDS; i++)
		if (strcmp(history_fields[i].name, name) == 0)
			return PQgetisnull(r, 0, (int)i) ? NULL : PQgetvalue(r, 0, (int)i);
	return NULL;
}

/* A history row's source as the text view names it, linking to the
 * record that made the change: "poll run 812", "postback 4411 (chargeback)",
 * "timer". Returns true when it names a poll run or a postback. */
static bool history__source(char *out, size_t len, const char *source, const char *id)
{
	static const struct {
		const char *source, *record, *note;
	} links[] = {
		{ "poll", "poll run", "" },
		{ "dates", "poll run", " (dates)" },
		{ "postback", "postback", "" },
		{ "chargeback", "postback", " (chargeback)" },
	};
	size_t i;

	for (i = 0; id && i < sizeof(links) / sizeof(links[0]); i++)
		if (strcmp(source, links[i].source) == 0) {
			snprintf(out, len, "%s %s%s", links[i].record, id, links[i].note);
			return true;
		}
	if (id)
		snprintf(out, len, "%s %s", source, id);
	else
		snprintf(out, len, "%s", source);
	return false;
}

static int history__text(struct buf *b, const PGresult *lead, const PGresult *h)
{
	const char *status = history__get(lead, "status"), *reason = history__get(lead, "reason");
	const char *offer_name = PQgetvalue(lead, 0, (int)HISTORY_NFIELDS);
	int st = status ? (int)strtol(status, NULL, 10) : 0;
	int rs = reason ? (int)strtol(reason, NULL, 10) : 0;
	size_t i;
	int j, rc = 0;
	bool links = false;

	rc |= buf_addf(b, "lead %s\n", history__get(lead, "id"));
	for (i = 1; i < HISTORY_NFIELDS; i++) {
		const struct history_field *f = &history_fields[i];
		const char *v = PQgetisnull(lead, 0, (int)i) ? NULL : PQgetvalue(lead, 0, (int)i);

		if (f->kind == HK_STATUS)
			continue;
		rc |= buf_addf(b, "  %-12s ", f->name);
		if (strcmp(f->name, "status") == 0)
			rc |= buf_addf(b, "%d %s (%s)", st, status_code(st) ? status_code(st) : "?",
				       status_name_ru(st) ? status_name_ru(st) : "?");
		else if (strcmp(f->name, "reason") == 0 && rs)
			rc |= buf_addf(b, "%d %s", rs, reason_name(rs) ? reason_name(rs) : "");
		else if (strcmp(f->name, "offer") == 0)
			rc |= buf_addf(b, "%s %s", v, offer_name);
		else
			rc |= buf_adds(b, v && *v ? v : "-");
		rc |= buf_addc(b, '\n');
	}
	rc |= buf_addf(b, "history (%d)\n", PQntuples(h));
	for (j = 0; j < PQntuples(h); j++) {
		char src[80];

		links |= history__source(src, sizeof(src), PQgetvalue(h, j, 1),
					 PQgetisnull(h, j, 2) ? NULL : PQgetvalue(h, j, 2));
		rc |= buf_addf(b, "  %s  %-24s %s\n", PQgetvalue(h, j, 0), src,
			       PQgetisnull(h, j, 5) ? "(no change)" : PQgetvalue(h, j, 5));
	}
	if (links)
		rc |= buf_adds(b, "a poll run whole: leadsync history RUN; a postback: "
				  "leadsync postbacks ID\n");
	return rc ? -1 : 0;
}

int history_lead_show(PGconn *c, int64_t id, bool json, struct buf *out, char *err, size_t errlen)
{
	char idtext[24];
	const char *params[1] = { idtext };
	PGresult *lead = NULL, *h = NULL;
	struct buf sql;
	size_t i;
	int rc = -1;

	buf_init(&sql, 0);
	snprintf(idtext, sizeof(idtext), "%" PRId64, id);
	if (buf_adds(&sql, "SELECT ") < 0)
		goto oom;
	for (i = 0; i < HISTORY_NFIELDS; i++)
		if (buf_addf(&sql, "%s, ", history_fields[i].expr) < 0)
			goto oom;
	if (buf_adds(&sql, "o.name FROM leads l JOIN offers o ON o.id = l.offer"
			   " LEFT JOIN goals g ON g.id = l.goal"
			   " LEFT JOIN currencies c ON c.id = l.curr"
			   " LEFT JOIN currencies cc ON cc.id = l.cash_curr"
			   " WHERE l.id = $1") < 0)
		goto oom;
	lead = store_query(c, "lead show", sql.p, 1, params, err, errlen);
	if (!lead)
		goto out;
	if (PQntuples(lead) == 0) {
		snprintf(err, errlen, "lead %" PRId64 " not found", id);
		rc = HISTORY_ENOTFOUND;
		goto out;
	}
	h = store_query(c, "lead show: history", history_rows_sql, 1, params, err, errlen);
	if (!h)
		goto out;
	if ((json ? history__json(out, lead, h) : history__text(out, lead, h)) < 0) {
		snprintf(err, errlen, "lead %" PRId64 ": output too large", id);
		goto out;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "lead show: out of memory");
out:
	PQclear(lead);
	PQclear(h);
	buf_release(&sql);
	return rc;
}
