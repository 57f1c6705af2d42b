/* views: offer health, poll runs and incoming postbacks as JSON or tables,
 * for the CLI and the admin API (see views.h). */
#include "views.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "lead.h"
#include "mask.h"
#include "poller.h"
#include "store.h"

/* ---------------------------------------------------------------- columns */

enum vkind {
	VK_NUM,  /* a JSON number as PostgreSQL writes it */
	VK_STR,  /* a JSON string */
	VK_BOOL, /* 't' / 'f' */
};

enum {
	VF_LIST = 1, /* in a list's JSON */
	VF_ONE = 2,  /* in a single view */
	VF_ALL = 3,
};

#define VM_NONE (-1)

/* One column of a view: its JSON key, its SQL expression, how it is
 * masked (VM_NONE or an enum mask_kind) and, in a list's text table, its
 * header (NULL: not shown) and the most characters shown (0: all). */
struct vcol {
	const char *name;
	const char *expr;
	enum vkind kind;
	int mask;
	unsigned flags;
	const char *head;
	size_t cut;
};

/* The secrets of a row's offer: [[name, value, listed], ...] for
 * mask_param(). o is the offers alias. */
#define VIEWS_OFFER_SECRETS(o)                                                        \
	"(SELECT coalesce(json_agg(json_build_array(p.key, p.value,"                 \
	" p.key = ANY(" o ".secret_params))), '[]') FROM jsonb_each_text(" o ".params) p)"

#define VIEWS_TIME(x) "lead_time_json(" x ")"

static const struct vcol offer_cols[] = {
	{ "offer", "o.id", VK_NUM, VM_NONE, VF_ALL, "offer", 0 },
	{ "name", "o.name", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "advertiser", "o.advertiser", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "rule", "o.rule", VK_STR, VM_NONE, VF_ALL, "rule", 24 },
	{ "enabled", "o.enabled", VK_BOOL, VM_NONE, VF_ALL, NULL, 0 },
	{ "variant", "s.variant", VK_STR, VM_NONE, VF_ALL, "variant", 0 },
	{ "last_run", "s.last_run", VK_NUM, VM_NONE, VF_ALL, "last run", 0 },
	{ "last_run_at", VIEWS_TIME("r.started"), VK_STR, VM_NONE, VF_ALL, "at", 0 },
	{ "last_outcome", "r.outcome", VK_STR, VM_NONE, VF_ALL, "outcome", 0 },
	{ "last_ok", VIEWS_TIME("s.last_ok"), VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "next_due", VIEWS_TIME("s.next_due"), VK_STR, VM_NONE, VF_ALL, "next due", 0 },
	{ "consecutive_failures", "s.fail_count", VK_NUM, VM_NONE, VF_ALL, "fails", 0 },
	{ "leads_waiting",
	  "coalesce(CASE s.variant WHEN 'processing' THEN w.processing"
	  " WHEN 'accepted' THEN w.accepted ELSE w.open END, 0)",
	  VK_NUM, VM_NONE, VF_ALL, "waiting", 0 },
	{ "lease_owner", "CASE WHEN s.lease_until > now() THEN s.lease_owner END", VK_STR, VM_NONE,
	  VF_ALL, "lease", 40 },
	{ "lease_until", "CASE WHEN s.lease_until > now() THEN " VIEWS_TIME("s.lease_until") " END",
	  VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "last_error", "s.last_error", VK_STR, MASK_TEXT, VF_ALL, "error", 80 },
};

static const struct vcol poll_cols[] = {
	{ "id", "r.id", VK_NUM, VM_NONE, VF_ALL, "run", 0 },
	{ "offer", "r.offer", VK_NUM, VM_NONE, VF_ALL, "offer", 0 },
	{ "offer_name", "o.name", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "rule", "o.rule", VK_STR, VM_NONE, VF_ONE, NULL, 0 },
	{ "variant", "r.variant", VK_STR, VM_NONE, VF_ALL, "variant", 0 },
	{ "worker", "r.worker", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "started", VIEWS_TIME("r.started"), VK_STR, VM_NONE, VF_ALL, "started", 0 },
	{ "finished", VIEWS_TIME("r.finished"), VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "duration_ms", "round(extract(epoch FROM r.finished - r.started) * 1000)::bigint", VK_NUM,
	  VM_NONE, VF_ALL, "ms", 0 },
	{ "rule_cpu_ms", "round(r.rule_cpu_ms::numeric, 1)", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "method", "r.method", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "url", "r.url", VK_STR, MASK_URL, VF_ALL, NULL, 0 },
	{ "http_status", "r.http_status", VK_NUM, VM_NONE, VF_ALL, "http", 0 },
	{ "bytes", "r.bytes", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "content_type", "r.content_type", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "outcome", "r.outcome", VK_STR, VM_NONE, VF_ALL, "outcome", 0 },
	{ "leads_asked", "r.leads_asked", VK_NUM, VM_NONE, VF_ALL, "asked", 0 },
	{ "leads_changed", "r.leads_changed", VK_NUM, VM_NONE, VF_ALL, "changed", 0 },
	{ "leads_unknown", "r.leads_unknown", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "leads_refused", "r.leads_refused", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "leads_unrecognised", "r.leads_unrecognised", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "leads_skipped", "r.leads_skipped", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "leads_no_ext", "r.leads_no_ext", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "pages", "r.pages", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "caught_up", "r.caught_up", VK_BOOL, VM_NONE, VF_ALL, NULL, 0 },
	{ "missed", "r.missed", VK_NUM, VM_NONE, VF_ALL, NULL, 0 },
	{ "error", "r.error", VK_STR, MASK_TEXT, VF_ALL, "error", 80 },
	{ "notes", "r.notes", VK_STR, MASK_TEXT, VF_ONE, NULL, 0 },
	{ "answer_head", "r.answer_head", VK_STR, MASK_TEXT, VF_ONE, NULL, 0 },
};

static const struct vcol postback_cols[] = {
	{ "id", "p.id", VK_NUM, VM_NONE, VF_ALL, "id", 0 },
	{ "at", VIEWS_TIME("p.at"), VK_STR, VM_NONE, VF_ALL, "at", 0 },
	{ "remote", "p.remote", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "method", "p.method", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "path", "p.path", VK_STR, MASK_URL, VF_ALL, NULL, 0 },
	{ "query", "p.query", VK_STR, MASK_FORM, VF_ALL, NULL, 0 },
	{ "body", "p.body", VK_STR, MASK_TEXT, VF_ONE, NULL, 0 },
	{ "advertiser", "p.advertiser", VK_NUM, VM_NONE, VF_ALL, "adv", 0 },
	{ "advertiser_name", "a.name", VK_STR, VM_NONE, VF_ALL, NULL, 0 },
	{ "http_status", "p.http_status", VK_NUM, VM_NONE, VF_ALL, "http", 0 },
	{ "outcome", "p.outcome", VK_STR, VM_NONE, VF_ALL, "outcome", 0 },
	{ "lead", "p.lead", VK_NUM, VM_NONE, VF_ALL, "lead", 0 },
	/* the text table's summary of the request; not in the JSON */
	{ "request", "p.method || ' ' || p.path || coalesce('?' || p.query, '')", VK_STR, MASK_URL, 0,
	  "request", 60 },
	{ "error", "p.error", VK_STR, MASK_TEXT, VF_ALL, "error", 60 },
};

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

/* The secrets of a postback: its advertiser's api key. */
static const char postback_secrets_sql[] =
	"CASE WHEN a.api_key IS NULL THEN '[]'::json"
	" ELSE json_build_array(json_build_array('api_key', a.api_key, true)) END";

/* ------------------------------------------------------------- parameters */

#define VP_MAX 12

/* Text parameters of one statement; numbers are kept here. */
struct vparams {
	const char *v[VP_MAX];
	char num[VP_MAX][24];
	int n;
};

/* Adds x; returns its $ number. */
static int vp_int(struct vparams *p, int64_t x)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%" PRId64, x);
	p->v[p->n] = p->num[p->n];
	return ++p->n;
}

static int vp_str(struct vparams *p, const char *s)
{
	p->v[p->n] = s;
	return ++p->n;
}

static int views__limit(const struct views_filter *f)
{
	if (f->limit <= 0)
		return VIEWS_LIMIT_DEFAULT;
	return f->limit > VIEWS_LIMIT_MAX ? VIEWS_LIMIT_MAX : f->limit;
}

/* "SELECT col, ..., secrets AS secrets": every column of the table, so a
 * column's index in the result is its index in the table, and the row's
 * secrets (for mask_param) last, at index n. */
static int views__select(struct buf *sql, const struct vcol *cols, size_t n, const char *secrets)
{
	size_t i;
	int rc = buf_adds(sql, "SELECT ");

	for (i = 0; i < n; i++)
		rc |= buf_addf(sql, "%s, ", cols[i].expr);
	rc |= buf_addf(sql, "%s AS secrets", secrets);
	return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ masks */

/* Builds m from a row's secrets column ([[name, value, listed], ...]). */
static int views__mask(struct mask *m, const char *secrets)
{
	cJSON *root = cJSON_Parse(secrets), *it;
	int rc = 0;

	mask_release(m);
	cJSON_ArrayForEach(it, root)
	{
		const char *name = cJSON_GetStringValue(cJSON_GetArrayItem(it, 0));
		const char *value = cJSON_GetStringValue(cJSON_GetArrayItem(it, 1));

		if (name && value &&
		    mask_param(m, name, value, cJSON_IsTrue(cJSON_GetArrayItem(it, 2))) < 0)
			rc = -1;
	}
	cJSON_Delete(root);
	return rc;
}

/* The value of column col of row, masked as the column says, in tmp (or
 * straight from r); NULL for SQL NULL. */
static const char *views__value(const PGresult *r, int row, int col, const struct vcol *c,
				const struct mask *m, struct buf *tmp, int *rc)
{
	const char *v;

	if (PQgetisnull(r, row, col))
		return NULL;
	v = PQgetvalue(r, row, col);
	if (c->mask == VM_NONE)
		return v;
	buf_reset(tmp);
	if (mask_text(m, v, strlen(v), (enum mask_kind)c->mask, tmp) < 0)
		*rc = -1;
	return tmp->p ? tmp->p : "";
}

static int views__json_value(struct buf *out, const struct vcol *c, const char *v)
{
	if (!v)
		return buf_adds(out, "null");
	switch (c->kind) {
	case VK_NUM:
		return buf_adds(out, v);
	case VK_BOOL:
		return buf_adds(out, v[0] == 't' ? "true" : "false");
	case VK_STR:
		return buf_add_json_str(out, v, strlen(v));
	}
	return -1;
}

/* Appends row as a JSON object of the columns with flag, without its
 * closing brace. */
static int views__json_row(struct buf *out, const PGresult *r, int row, const struct vcol *cols,
			   size_t n, unsigned flag, const struct mask *m, struct buf *tmp)
{
	size_t i;
	int rc = buf_addc(out, '{');
	bool first = true;

	for (i = 0; i < n; i++) {
		const char *v;

		if (!(cols[i].flags & flag))
			continue;
		v = views__value(r, row, (int)i, &cols[i], m, tmp, &rc);
		rc |= buf_addf(out, "%s\"%s\":", first ? "" : ",", cols[i].name);
		rc |= views__json_value(out, &cols[i], v);
		first = false;
	}
	return rc ? -1 : 0;
}

/* ----------------------------------------------------------------- tables */

static size_t views__cols(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* A cell of the text table: control characters as spaces, at most cut
 * characters (the last three "..."), "-" for nothing. Caller frees. */
static char *views__cell(const char *v, size_t cut)
{
	size_t len, i, chars = 0;
	char *s;

	if (!v || !*v)
		return strdup("-");
	len = strlen(v);
	s = malloc(len + 4);
	if (!s)
		return NULL;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)v[i];

		if ((ch & 0xc0) != 0x80 && cut && ++chars > cut - 3 && views__cols(v + i) > 3) {
			memcpy(s + i, "...", 4);
			return s;
		}
		s[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	s[len] = '\0';
	return s;
}

static int views__pad(struct buf *out, const char *s, size_t width, bool last)
{
	size_t n;
	int rc = buf_adds(out, s);

	if (last)
		return rc;
	for (n = views__cols(s); n < width + 2; n++)
		rc |= buf_addc(out, ' ');
	return rc;
}

/* Appends the text table of r: the columns with a header, aligned; then,
 * when the page is full, where the next one starts. key is the keyset
 * column; rows sharing a key count once against limit. */
static int views__table(struct buf *out, const PGresult *r, const struct vcol *cols, size_t n,
			int key, int limit, const char *none, int secrets, struct buf *tmp)
{
	int rows = PQntuples(r), row, keys = 0, rc = 0;
	size_t i, shown = 0, *width = calloc(n, sizeof(*width));
	char **cell = rows ? calloc((size_t)rows * n, sizeof(*cell)) : NULL;
	struct mask m;
	const char *prev = NULL;

	mask_init(&m);
	if (!width || (rows && !cell)) {
		rc = -1;
		goto out;
	}
	if (!rows) {
		rc = buf_addf(out, "%s\n", none);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (cols[i].head) {
			width[i] = views__cols(cols[i].head);
			shown = i;
		}
	for (row = 0; row < rows; row++) {
		if (views__mask(&m, PQgetvalue(r, row, secrets)) < 0)
			rc = -1;
		for (i = 0; i < n; i++) {
			char **c = &cell[(size_t)row * n + i];
			size_t w;

			if (!cols[i].head)
				continue;
			*c = views__cell(views__value(r, row, (int)i, &cols[i], &m, tmp, &rc),
					 cols[i].cut);
			if (!*c) {
				rc = -1;
				goto out;
			}
			w = views__cols(*c);
			if (w > width[i])
				width[i] = w;
		}
		if (!prev || strcmp(prev, PQgetvalue(r, row, key)) != 0)
			keys++;
		prev = PQgetvalue(r, row, key);
	}
	for (i = 0; i < n; i++)
		if (cols[i].head)
			rc |= views__pad(out, cols[i].head, width[i], i == shown);
	rc |= buf_addc(out, '\n');
	for (row = 0; row < rows; row++) {
		for (i = 0; i < n; i++)
			if (cols[i].head)
				rc |= views__pad(out, cell[(size_t)row * n + i], width[i], i == shown);
		rc |= buf_addc(out, '\n');
	}
	if (keys >= limit)
		rc |= buf_addf(out, "(the first %d; more with --before %s)\n", limit,
			       PQgetvalue(r, rows - 1, key));
out:
	if (cell)
		for (i = 0; i < (size_t)rows * n; i++)
			free(cell[i]);
	free(cell);
	free(width);
	mask_release(&m);
	return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ lists */

/* Runs a list's statement and renders it. */
static int views__list(PGconn *c, const char *what, const struct buf *sql,
		       const struct vparams *p, const struct vcol *cols, size_t n, int key,
		       int limit, const char *none, enum views_format fmt, struct buf *out,
		       char *err, size_t errlen)
{
	PGresult *r = store_query(c, what, sql->p, p->n, p->v, err, errlen);
	struct buf tmp;
	struct mask m;
	int row, rc = 0;

	if (!r)
		return VIEWS_EFAIL;
	buf_init(&tmp, 0);
	mask_init(&m);
	if (fmt == VIEWS_TEXT)
		rc = views__table(out, r, cols, n, key, limit, none, (int)n, &tmp);
	else {
		rc |= buf_addc(out, '[');
		for (row = 0; row < PQntuples(r); row++) {
			if (row)
				rc |= buf_addc(out, ',');
			rc |= views__mask(&m, PQgetvalue(r, row, (int)n));
			rc |= views__json_row(out, r, row, cols, n, VF_LIST, &m, &tmp);
			rc |= buf_addc(out, '}');
		}
		rc |= buf_addc(out, ']');
	}
	if (rc) {
		snprintf(err, errlen, "%s: out of memory or answer too large", what);
		rc = VIEWS_EFAIL;
	}
	mask_release(&m);
	buf_release(&tmp);
	PQclear(r);
	return rc;
}

static int views__oom(const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: out of memory", what);
	return VIEWS_EFAIL;
}

int views_offers(PGconn *c, const struct views_filter *f, enum views_format fmt,
		 struct buf *out, char *err, size_t errlen)
{
	struct vparams p = { .n = 0 };
	struct buf sql;
	int limit = views__limit(f), rc = 0;

	if (views_filter_check(f, err, errlen) < 0)
		return VIEWS_EINVAL;
	buf_init(&sql, 0);
	rc |= buf_adds(&sql, "WITH o AS MATERIALIZED (SELECT * FROM offers o WHERE o.rule IS NOT NULL");
	if (f->offer)
		rc |= buf_addf(&sql, " AND o.id = $%d", vp_int(&p, f->offer));
	if (f->before)
		rc |= buf_addf(&sql, " AND o.id < $%d", vp_int(&p, f->before));
	if (f->failed)
		rc |= buf_adds(&sql, " AND EXISTS (SELECT 1 FROM poll_schedule s"
				     " WHERE s.offer = o.id AND s.fail_count > 0)");
	rc |= buf_addf(&sql, " ORDER BY o.id DESC LIMIT $%d),", vp_int(&p, limit));
	rc |= buf_adds(&sql, " w AS (SELECT l.offer,"
			     " count(*) FILTER (WHERE l.status IN (2, 3, 4)) AS processing,"
			     " count(*) FILTER (WHERE l.status IN (6, 7, 8, 9)) AS accepted,"
			     " count(*) FILTER (WHERE l.status NOT IN (5, 10, 11, 12)) AS open"
			     " FROM leads l WHERE l.offer IN (SELECT id FROM o)"
			     " AND l.status NOT IN (5, 10, 11, 12) GROUP BY l.offer) ");
	rc |= views__select(&sql, offer_cols, NCOLS(offer_cols), VIEWS_OFFER_SECRETS("o"));
	rc |= buf_adds(&sql, " FROM o JOIN poll_schedule s ON s.offer = o.id"
			     " LEFT JOIN poll_runs r ON r.id = s.last_run"
			     " LEFT JOIN w ON w.offer = o.id");
	if (f->failed)
		rc |= buf_adds(&sql, " WHERE s.fail_count > 0");
	rc |= buf_adds(&sql, " ORDER BY o.id DESC,"
			     " array_position(ARRAY['processing', 'accepted', 'dates'], s.variant)");
	if (rc)
		rc = views__oom("offers", err, errlen);
	else
		rc = views__list(c, "offers", &sql, &p, offer_cols, NCOLS(offer_cols), 0, limit,
				 f->failed ? "no offer is failing" : "no offer names a rule", fmt, out,
				 err, errlen);
	buf_release(&sql);
	return rc;
}

static bool views__variant_ok(const char *v)
{
	return strcmp(v, "processing") == 0 || strcmp(v, "accepted") == 0 ||
	       strcmp(v, "dates") == 0;
}

static bool views__outcome_ok(const char *o)
{
	int i;

	for (i = 0; i < POLL_OUTCOME_COUNT; i++)
		if (strcmp(o, poll_outcome_name((enum poll_outcome)i)) == 0)
			return true;
	return false;
}

int views_filter_check(const struct views_filter *f, char *err, size_t errlen)
{
	if (f->variant && !views__variant_ok(f->variant)) {
		snprintf(err, errlen, "variant '%s' is not processing, accepted or dates", f->variant);
		return VIEWS_EINVAL;
	}
	if (f->outcome && !views__outcome_ok(f->outcome)) {
		snprintf(err, errlen, "outcome '%s' is not a poll outcome (ok, http_error, timeout, ...)",
			 f->outcome);
		return VIEWS_EINVAL;
	}
	if (f->outcome && f->failed) {
		snprintf(err, errlen, "outcome and failed do not go together");
		return VIEWS_EINVAL;
	}
	return 0;
}

int views_polls(PGconn *c, const struct views_filter *f, enum views_format fmt, struct buf *out,
		char *err, size_t errlen)
{
	struct vparams p = { .n = 0 };
	struct buf sql;
	int limit = views__limit(f), rc = 0;

	if (views_filter_check(f, err, errlen) < 0)
		return VIEWS_EINVAL;
	buf_init(&sql, 0);
	rc |= views__select(&sql, poll_cols, NCOLS(poll_cols), VIEWS_OFFER_SECRETS("o"));
	rc |= buf_adds(&sql, " FROM poll_runs r JOIN offers o ON o.id = r.offer WHERE true");
	if (f->offer)
		rc |= buf_addf(&sql, " AND r.offer = $%d", vp_int(&p, f->offer));
	if (f->variant)
		rc |= buf_addf(&sql, " AND r.variant = $%d", vp_str(&p, f->variant));
	if (f->outcome)
		rc |= buf_addf(&sql, " AND r.outcome = $%d", vp_str(&p, f->outcome));
	if (f->failed)
		rc |= buf_adds(&sql, " AND r.outcome NOT IN ('ok', 'caught_up')");
	if (f->since)
		rc |= buf_addf(&sql, " AND r.started >= to_timestamp($%d::double precision)",
			       vp_int(&p, f->since));
	if (f->before)
		rc |= buf_addf(&sql, " AND r.id < $%d", vp_int(&p, f->before));
	rc |= buf_addf(&sql, " ORDER BY r.id DESC LIMIT $%d", vp_int(&p, limit));
	if (rc)
		rc = views__oom("poll runs", err, errlen);
	else
		rc = views__list(c, "poll runs", &sql, &p, poll_cols, NCOLS(poll_cols), 0, limit,
				 "no poll runs", fmt, out, err, errlen);
	buf_release(&sql);
	return rc;
}

int views_postbacks(PGconn *c, const struct views_filter *f, enum views_format fmt,
		    struct buf *out, char *err, size_t errlen)
{
	struct vparams p = { .n = 0 };
	struct buf sql;
	int limit = views__limit(f), rc = 0;

	if (views_filter_check(f, err, errlen) < 0)
		return VIEWS_EINVAL;
	buf_init(&sql, 0);
	rc |= views__select(&sql, postback_cols, NCOLS(postback_cols), postback_secrets_sql);
	rc |= buf_adds(&sql, " FROM postbacks_in p LEFT JOIN advertisers a ON a.id = p.advertiser"
			     " WHERE true");
	if (f->advertiser)
		rc |= buf_addf(&sql, " AND p.advertiser = $%d", vp_int(&p, f->advertiser));
	if (f->errors)
		rc |= buf_adds(&sql, " AND p.http_status >= 400");
	if (f->lead)
		rc |= buf_addf(&sql, " AND p.lead = $%d", vp_int(&p, f->lead));
	if (f->since)
		rc |= buf_addf(&sql, " AND p.at >= to_timestamp($%d::double precision)",
			       vp_int(&p, f->since));
	if (f->before)
		rc |= buf_addf(&sql, " AND p.id < $%d", vp_int(&p, f->before));
	rc |= buf_addf(&sql, " ORDER BY p.id DESC LIMIT $%d", vp_int(&p, limit));
	if (rc)
		rc = views__oom("postbacks", err, errlen);
	else
		rc = views__list(c, "postbacks", &sql, &p, postback_cols, NCOLS(postback_cols), 0,
				 limit, "no postbacks", fmt, out, err, errlen);
	buf_release(&sql);
	return rc;
}

/* ----------------------------------------------------------- single views */

/* The lead_history rows a run or a postback wrote: lead, at, source,
 * source_id, before, after, summary. $1 the id (index
 * lead_history_source, migration 007); $2 the lead (postbacks). */
static const char views_changes_sql[] =
	"SELECT h.lead, lead_time_json(h.at), h.source, h.source_id, h.before::text,"
	" h.after::text, " HISTORY_SUMMARY_SQL("h")
	" FROM lead_history h WHERE h.source_id = $1 AND h.source IN ";

static int views__changes_json(struct buf *out, const PGresult *h)
{
	int j, rc = buf_adds(out, ",\"changed\":[");

	for (j = 0; j < PQntuples(h); j++) {
		const char *at = PQgetvalue(h, j, 1), *src = PQgetvalue(h, j, 2);

		rc |= buf_addf(out, "%s{\"lead\":%s,\"at\":", j ? "," : "", PQgetvalue(h, j, 0));
		rc |= buf_add_json_str(out, at, strlen(at));
		rc |= buf_adds(out, ",\"source\":");
		rc |= buf_add_json_str(out, src, strlen(src));
		rc |= buf_addf(out, ",\"source_id\":%s,\"before\":%s,\"after\":%s}",
			       PQgetvalue(h, j, 3), PQgetvalue(h, j, 4), PQgetvalue(h, j, 5));
	}
	rc |= buf_adds(out, "]}");
	return rc ? -1 : 0;
}

static int views__changes_text(struct buf *out, const PGresult *h)
{
	int j, rc = buf_addf(out, "leads changed (%d)\n", PQntuples(h));

	for (j = 0; j < PQntuples(h); j++)
		rc |= buf_addf(out, "  lead %-8s %s  %-10s %s\n", PQgetvalue(h, j, 0),
			       PQgetvalue(h, j, 1), PQgetvalue(h, j, 2),
			       PQgetisnull(h, j, 6) ? "(no change)" : PQgetvalue(h, j, 6));
	if (PQntuples(h))
		rc |= buf_adds(out, "why a lead has its status: leadsync lead show ID\n");
	return rc ? -1 : 0;
}

/* "name  value" lines; a value of several lines as an indented block. */
static int views__object_text(struct buf *out, const PGresult *r, const struct vcol *cols,
			      size_t n, const struct mask *m, struct buf *tmp)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < n; i++) {
		const char *v, *p, *nl;

		if (!(cols[i].flags & VF_ONE))
			continue;
		v = views__value(r, 0, (int)i, &cols[i], m, tmp, &rc);
		if (cols[i].kind == VK_BOOL && v)
			v = v[0] == 't' ? "yes" : "no";
		if (!v || !strchr(v, '\n')) {
			rc |= buf_addf(out, "%-20s %s\n", cols[i].name, v && *v ? v : "-");
			continue;
		}
		rc |= buf_addf(out, "%s\n", cols[i].name);
		for (p = v; *p; p = nl ? nl + 1 : p + strlen(p)) {
			nl = strchr(p, '\n');
			rc |= buf_addf(out, "  %.*s\n", (int)(nl ? nl - p : (ptrdiff_t)strlen(p)), p);
		}
	}
	return rc ? -1 : 0;
}

/* One row of sql ($1 = id) and its lead changes (sources, and the lead
 * column lead_col for the index on lead_history's lead, or -1). */
static int views__one(PGconn *c, const char *what, int64_t id, const char *sql,
		      const struct vcol *cols, size_t n, const char *sources, int lead_col,
		      enum views_format fmt, struct buf *out, char *err, size_t errlen)
{
	struct vparams p = { .n = 0 };
	PGresult *r = NULL, *h = NULL;
	struct buf hsql, tmp;
	struct mask m;
	int rc = VIEWS_EFAIL;

	buf_init(&hsql, 0);
	buf_init(&tmp, 0);
	mask_init(&m);
	vp_int(&p, id);
	r = store_query(c, what, sql, p.n, p.v, err, errlen);
	if (!r)
		goto out;
	if (PQntuples(r) == 0) {
		snprintf(err, errlen, "%s %" PRId64 " not found", what, id);
		rc = VIEWS_ENOTFOUND;
		goto out;
	}
	if (buf_adds(&hsql, views_changes_sql) < 0 || buf_adds(&hsql, sources) < 0)
		goto oom;
	if (lead_col >= 0) {
		if (PQgetisnull(r, 0, lead_col))
			vp_int(&p, 0);
		else
			vp_str(&p, PQgetvalue(r, 0, lead_col));
		if (buf_adds(&hsql, " AND h.lead = $2") < 0)
			goto oom;
	}
	if (buf_addf(&hsql, " ORDER BY h.at, h.id LIMIT %d", VIEWS_CHANGES_MAX) < 0)
		goto oom;
	h = store_query(c, what, hsql.p, p.n, p.v, err, errlen);
	if (!h)
		goto out;
	if (views__mask(&m, PQgetvalue(r, 0, (int)n)) < 0)
		goto oom;
	if (fmt == VIEWS_JSON) {
		if (views__json_row(out, r, 0, cols, n, VF_ONE, &m, &tmp) < 0 ||
		    views__changes_json(out, h) < 0)
			goto oom;
	} else {
		if (buf_addf(out, "%s %" PRId64 "\n", what, id) < 0 ||
		    views__object_text(out, r, cols, n, &m, &tmp) < 0 || views__changes_text(out, h) < 0)
			goto oom;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "%s %" PRId64 ": out of memory or answer too large", what, id);
out:
	mask_release(&m);
	buf_release(&tmp);
	buf_release(&hsql);
	PQclear(r);
	PQclear(h);
	return rc;
}

int views_poll(PGconn *c, int64_t run, enum views_format fmt, struct buf *out, char *err,
	       size_t errlen)
{
	struct buf sql;
	int rc;

	buf_init(&sql, 0);
	if (views__select(&sql, poll_cols, NCOLS(poll_cols), VIEWS_OFFER_SECRETS("o")) < 0 ||
	    buf_adds(&sql, " FROM poll_runs r JOIN offers o ON o.id = r.offer WHERE r.id = $1") < 0)
		rc = views__oom("poll run", err, errlen);
	else
		rc = views__one(c, "poll run", run, sql.p, poll_cols, NCOLS(poll_cols),
				"('poll', 'dates')", -1, fmt, out, err, errlen);
	buf_release(&sql);
	return rc;
}

int views_postback(PGconn *c, int64_t id, enum views_format fmt, struct buf *out, char *err,
		   size_t errlen)
{
	struct buf sql;
	size_t lead_col;
	int rc;

	for (lead_col = 0; strcmp(postback_cols[lead_col].name, "lead") != 0; lead_col++)
		;
	buf_init(&sql, 0);
	if (views__select(&sql, postback_cols, NCOLS(postback_cols), postback_secrets_sql) < 0 ||
	    buf_adds(&sql, " FROM postbacks_in p LEFT JOIN advertisers a ON a.id = p.advertiser"
			   " WHERE p.id = $1") < 0)
		rc = views__oom("postback", err, errlen);
	else
		rc = views__one(c, "postback", id, sql.p, postback_cols, NCOLS(postback_cols),
				"('postback', 'chargeback')", (int)lead_col, fmt, out, err, errlen);
	buf_release(&sql);
	return rc;
}

/* ----------------------------------------------------------- poll hours */

static const struct vcol hour_cols[] = {
	{ "hour", VIEWS_TIME("date_trunc('hour', r.started)"), VK_STR, VM_NONE, VF_ALL, "hour", 0 },
	{ "outcome", "r.outcome", VK_STR, VM_NONE, VF_ALL, "outcome", 0 },
	{ "count", "count(*)", VK_NUM, VM_NONE, VF_ALL, "count", 0 },
};

int views_poll_hours(PGconn *c, int64_t now, enum views_format fmt, struct buf *out, char *err,
		     size_t errlen)
{
	struct vparams p = { .n = 0 };
	struct buf sql;
	int rc = 0, t = vp_int(&p, now);

	buf_init(&sql, 0);
	rc |= views__select(&sql, hour_cols, NCOLS(hour_cols), "'[]'::json");
	rc |= buf_addf(&sql,
		       " FROM poll_runs r, (SELECT CASE WHEN $%d::bigint = 0 THEN now()"
		       " ELSE to_timestamp($%d::double precision) END AS t) n"
		       " WHERE r.started >= date_trunc('hour', n.t) - interval '23 hours'"
		       " AND r.started <= n.t"
		       " GROUP BY date_trunc('hour', r.started), r.outcome"
		       " ORDER BY date_trunc('hour', r.started), r.outcome",
		       t, t);
	if (rc)
		rc = views__oom("poll hours", err, errlen);
	else /* at most 24 hours of every outcome: never a next page */
		rc = views__list(c, "poll hours", &sql, &p, hour_cols, NCOLS(hour_cols), 0,
				 24 * POLL_OUTCOME_COUNT + 1, "no poll runs in the last 24 hours", fmt,
				 out, err, errlen);
	buf_release(&sql);
	return rc;
}

/* ------------------------------------------------------------------ since */

int views_since_parse(const char *s, int64_t now, int64_t *out)
{
	static const struct {
		char unit;
		int64_t secs;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	int64_t n = 0;
	const char *p = s;
	size_t i;

	if (lead_time_parse(s, out) == 0)
		return 0;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > 100000000)
			return -1;
		n = n * 10 + (*p - '0');
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (p[0] == units[i].unit && p[1] == '\0') {
			*out = now - n * units[i].secs;
			return 0;
		}
	return -1;
}
