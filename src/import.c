/* import: `leadsync import`, JSON lines of advertisers, offers, goals and
 * leads upserted in one transaction (the rules are in include/import.h). */
#include "import.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "click.h"
#include "lead.h"
#include "lead_store.h"
#include "macro.h"
#include "pbauth.h"
#include "status.h"
#include "store.h"
#include "tz.h"

#define IMPORT_ID_MAX (INT64_C(1) << 53) /* cJSON numbers are doubles */
#define IMPORT_MONEY_MAX INT64_C(99999999999999) /* cents: numeric(14,2) */
#define IMPORT_CHUNK ((size_t)1 << 16)
#define IMPORT_COPY_FLUSH ((size_t)1 << 18)
#define IMPORT_FIELDS_MAX 32
#define IMPORT_SECONDS_MAX (30 * 86400)
#define IMPORT_TIME_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z, lead_time_format's last */

enum import_type {
	IT_ID,       /* integer 1..2^53 */
	IT_INT,      /* integer min..max */
	IT_BOOL,
	IT_TEXT,     /* string of min..max bytes */
	IT_NAME,     /* [A-Za-z0-9_-]{1,max}: rule and parameter names */
	IT_CUT,      /* string cut to max bytes on a UTF-8 boundary */
	IT_URL,      /* http:// or https:// */
	IT_TZ,       /* IANA zone name */
	IT_MONEY,    /* number or decimal string in units, not negative */
	IT_CURRENCY, /* ISO 4217 code → currency id */
	IT_TIME,     /* ISO-8601 */
	IT_UUID,
	IT_PAYOUT,   /* fixed, percent, recurring */
	IT_PARAMS,   /* object of scalars keyed by macro names */
	IT_WORDS,    /* status word overrides */
	IT_NAMES,    /* array of non-empty strings → text[] */
	IT_NETS,     /* array of networks (pbauth_net_parse) → cidr[] */
};

enum {
	IF_REQUIRED = 1u << 0, /* absent or null is an error */
	IF_KEY = 1u << 1,      /* part of the upsert key: never updated */
	IF_NOT_NULL = 1u << 2, /* column NOT NULL: JSON null means its default */
	IF_SCALAR = 1u << 3,   /* with sub: a bare number sets every sub */
};

/* One field of a record: the JSON key (or key.sub) and its column. */
struct import_field {
	const char *key;
	const char *sub;
	const char *col;
	enum import_type type;
	unsigned flags;
	int64_t min, max;
	const char *sqltype; /* leads: the staging column's type */
};

enum import_state { IV_ABSENT = 0, IV_NULL, IV_DEFAULT, IV_SET };

struct import_val {
	enum import_state state;
	size_t off; /* into import.vals when IV_SET */
	int64_t num; /* IT_ID, IT_INT, IT_MONEY (cents) */
};

struct import_currency {
	int id;
	char iso[4];
};

struct import {
	PGconn *c;
	struct import_stats *st;
	char *err;
	size_t errlen;
	size_t line;
	const char *kind;       /* the current line's record kind */
	char subject[64];       /* "offer 10": what the current line is about */
	struct buf vals;        /* the current line's values, NUL-separated */
	struct buf copy;        /* COPY rows not yet sent */
	bool staged;            /* the staging table exists */
	bool copying;           /* COPY import_leads is in progress */
	struct import_currency *curr;
	size_t ncurr;
	import_currency_fn currency; /* ISO code -> id: import_currency(), or the caller's */
	const void *cdata;
	size_t errpos;          /* import_commit(): the staged record at fault */
	bool begun;             /* BEGIN sent, no COMMIT yet */
	bool numbers;           /* a lead record: numbers and times are kept as
				 * numbers only (import__lead_text writes them) */
	struct import_lead lead; /* the current lead line */
	char **zones;           /* the zone names PostgreSQL knows, sorted; NULL:
				 * not read yet (import__zone_known) */
	size_t nzones;
};

struct import_kind;
typedef int (*import_apply_fn)(struct import *im, const struct import_kind *k,
			       struct import_val *v);

struct import_kind {
	const char *name;
	const char *table;
	const struct import_field *fields;
	size_t nfields;
	size_t stat;           /* offset of the counter in struct import_stats */
	const char *fk_field;  /* key whose foreign key violation means "unknown <key>" */
	import_apply_fn check; /* cross-field checks; may be NULL */
	import_apply_fn apply;
};

static const struct import_field import_advertiser_fields[] = {
	{ "id", NULL, "id", IT_ID, IF_REQUIRED | IF_KEY, 0, 0, NULL },
	{ "name", NULL, "name", IT_TEXT, IF_REQUIRED, 1, IMPORT_TEXT_MAX, NULL },
	{ "api_key", NULL, "api_key", IT_TEXT, IF_REQUIRED, 1, IMPORT_TEXT_MAX, NULL },
	{ "postback_sources", NULL, "postback_sources", IT_NETS, 0, 0, 0, NULL },
	{ "postback_secret", NULL, "postback_secret", IT_TEXT, 0, 16, 255, NULL },
};

static const struct import_field import_offer_fields[] = {
	{ "id", NULL, "id", IT_ID, IF_REQUIRED | IF_KEY, 0, 0, NULL },
	{ "advertiser", NULL, "advertiser", IT_ID, IF_REQUIRED, 0, 0, NULL },
	{ "name", NULL, "name", IT_TEXT, IF_REQUIRED, 1, IMPORT_TEXT_MAX, NULL },
	{ "rule", NULL, "rule", IT_NAME, 0, 1, 64, NULL },
	{ "params", NULL, "params", IT_PARAMS, IF_NOT_NULL, 0, 0, NULL },
	{ "secret_params", NULL, "secret_params", IT_NAMES, IF_NOT_NULL, 0, 0, NULL },
	{ "intervals", "processing", "interval_processing", IT_INT, 0, 1, IMPORT_SECONDS_MAX, NULL },
	{ "intervals", "accepted", "interval_accepted", IT_INT, 0, 1, IMPORT_SECONDS_MAX, NULL },
	{ "intervals", "dates", "interval_dates", IT_INT, 0, 1, IMPORT_SECONDS_MAX, NULL },
	{ "batch", "processing", "batch_processing", IT_INT, IF_SCALAR, 1, 100000, NULL },
	{ "batch", "accepted", "batch_accepted", IT_INT, IF_SCALAR, 1, 100000, NULL },
	{ "days", "dates", "days_dates", IT_INT, IF_SCALAR, 1, 366, NULL },
	{ "hold_days", NULL, "hold_days", IT_INT, IF_NOT_NULL, 0, LEAD_HOLD_DAYS_MAX, NULL },
	{ "reject_reason", NULL, "reject_reason", IT_INT, IF_NOT_NULL, 1, REASON_MAX, NULL },
	{ "reject_after_days", NULL, "reject_after_days", IT_INT, 0, 1, 3650, NULL },
	{ "tz", NULL, "tz", IT_TZ, 0, 0, 0, NULL },
	{ "landing_url", NULL, "landing_url", IT_URL, 0, 0, 2048, NULL },
	{ "click_param", NULL, "click_param", IT_NAME, IF_NOT_NULL, 1, 64, NULL },
	{ "enabled", NULL, "enabled", IT_BOOL, IF_NOT_NULL, 0, 0, NULL },
	{ "status_words", NULL, "status_words", IT_WORDS, IF_NOT_NULL, 0, 0, NULL },
	{ "cancel_approved", NULL, "cancel_approved", IT_BOOL, IF_NOT_NULL, 0, 0, NULL },
	{ "rate_limit", NULL, "rate_limit", IT_INT, 0, 1, 1000000, NULL },
};

enum { GOAL_F_PAYOUT = 2, GOAL_F_WM = 4 }; /* indexes below */
static const struct import_field import_goal_fields[] = {
	{ "offer", NULL, "offer", IT_ID, IF_REQUIRED | IF_KEY, 0, 0, NULL },
	{ "code", NULL, "code", IT_TEXT, IF_REQUIRED | IF_KEY, 1, 64, NULL },
	{ "payout", NULL, "payout", IT_PAYOUT, IF_REQUIRED, 0, 0, NULL },
	{ "currency", NULL, "currency", IT_CURRENCY, IF_REQUIRED, 0, 0, NULL },
	{ "wm", NULL, "wm", IT_MONEY, IF_NOT_NULL, 0, 0, NULL },
	{ "pay", NULL, "pay", IT_MONEY, IF_NOT_NULL, 0, 0, NULL },
	{ "ref", NULL, "ref", IT_MONEY, IF_NOT_NULL, 0, 0, NULL },
	{ "name", NULL, "name", IT_TEXT, 0, 0, IMPORT_TEXT_MAX, NULL },
};

/* Clicks recorded elsewhere (another tracker, a demo), so that postbacks
 * naming them are taken. */
static const struct import_field import_click_fields[] = {
	{ "id", NULL, "id", IT_UUID, IF_REQUIRED | IF_KEY, 0, 0, NULL },
	{ "offer", NULL, "offer", IT_ID, IF_REQUIRED, 0, 0, NULL },
	{ "wm", NULL, "wm", IT_ID, 0, 0, 0, NULL },
	{ "created", NULL, "created", IT_TIME, IF_NOT_NULL, 0, 0, NULL },
};

/* The staging table import_leads has these columns after (line, rid,
 * given); given lists the columns a line gave. import__apply_leads() names
 * them. In the order of enum import_lead_key. */
static const struct import_field import_lead_fields[] = {
	{ "id", NULL, "id", IT_ID, 0, 0, 0, "bigint" },
	{ "offer", NULL, "offer", IT_ID, IF_REQUIRED, 0, 0, "bigint" },
	{ "ext", NULL, "ext", IT_TEXT, 0, 1, LEAD_EXT_MAX - 1, "text" },
	{ "status", NULL, "status", IT_INT, IF_REQUIRED, STATUS_MIN, STATUS_MAX, "smallint" },
	{ "reason", NULL, "reason", IT_INT, 0, 1, REASON_MAX, "smallint" },
	{ "created", NULL, "created", IT_TIME, IF_NOT_NULL, 0, 0, "timestamptz" },
	{ "goal", NULL, "goal", IT_TEXT, 0, 1, 64, "text" },
	{ "click_id", NULL, "click", IT_UUID, 0, 0, 0, "uuid" },
	{ "base", NULL, "base", IT_MONEY, IF_NOT_NULL, 0, 0, "numeric" },
	{ "counts", NULL, "counts", IT_INT, IF_NOT_NULL, 0, 1000000000, "integer" },
	{ "comment", NULL, "comment", IT_CUT, IF_NOT_NULL, 0, LEAD_COMMENT_MAX - 1, "text" },
	{ "track", NULL, "track", IT_TEXT, IF_NOT_NULL, 0, LEAD_TRACK_MAX - 1, "text" },
	{ "curr", NULL, "curr", IT_CURRENCY, 0, 0, 0, "integer" },
	{ "wm", NULL, "wm", IT_MONEY, IF_NOT_NULL, 0, 0, "numeric" },
	{ "pay", NULL, "pay", IT_MONEY, IF_NOT_NULL, 0, 0, "numeric" },
	{ "ref", NULL, "ref", IT_MONEY, IF_NOT_NULL, 0, 0, "numeric" },
	{ "cash_curr", NULL, "cash_curr", IT_CURRENCY, 0, 0, 0, "integer" },
	{ "request_id", NULL, "request_id", IT_TEXT, 0, 1, IMPORT_TEXT_MAX, "text" },
	{ "customer_id", NULL, "customer_id", IT_TEXT, 0, 1, IMPORT_TEXT_MAX, "text" },
	{ "approved_at", NULL, "approved_at", IT_TIME, 0, 0, 0, "timestamptz" },
	{ "hold_until", NULL, "hold_until", IT_TIME, 0, 0, 0, "timestamptz" },
};

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))
_Static_assert(NFIELDS(import_offer_fields) <= IMPORT_FIELDS_MAX, "raise IMPORT_FIELDS_MAX");
_Static_assert(NFIELDS(import_lead_fields) <= IMPORT_FIELDS_MAX, "raise IMPORT_FIELDS_MAX");
_Static_assert(NFIELDS(import_lead_fields) == ILK_COUNT, "one field per import_lead_key");

/* ---- errors ---- */

__attribute__((format(printf, 2, 3)))
static int import__fail(struct import *im, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (im->line && im->subject[0])
		snprintf(im->err, im->errlen, "line %zu: %s: %s", im->line, im->subject, msg);
	else if (im->line)
		snprintf(im->err, im->errlen, "line %zu: %s", im->line, msg);
	else if (im->subject[0])
		snprintf(im->err, im->errlen, "%s: %s", im->subject, msg);
	else
		snprintf(im->err, im->errlen, "%s", msg);
	return -1;
}

/* The name of a field in messages: 'tz' or 'intervals.dates'. */
static const char *import__fname(const struct import_field *f, char *out, size_t len)
{
	if (f->sub)
		snprintf(out, len, "%s.%s", f->key, f->sub);
	else
		snprintf(out, len, "%s", f->key);
	return out;
}

/* A string quoted for a message, cut short. */
static const char *import__q(const char *s, char *out, size_t len)
{
	size_t n = strlen(s);

	if (n + 1 <= len) {
		memcpy(out, s, n + 1);
		return out;
	}
	lead_strlcpy(out, len > 4 ? len - 3 : len, s);
	if (len > 4)
		memcpy(out + strlen(out), "...", 4);
	return out;
}

/* ---- input ---- */

struct import_reader {
	FILE *in;
	char *chunk;
	size_t len, off;
	bool eof;
	struct buf line;
};

/* Reads the next line (without its '\n') into r->line. Returns 1, 0 at end
 * of input, -1 when the line is longer than IMPORT_LINE_MAX, -2 on a read
 * error. */
static int import__read(struct import_reader *r)
{
	buf_reset(&r->line);
	for (;;) {
		char *nl;
		size_t n;

		if (r->off == r->len) {
			if (r->eof)
				return r->line.len ? 1 : 0;
			r->len = fread(r->chunk, 1, IMPORT_CHUNK, r->in);
			r->off = 0;
			if (r->len < IMPORT_CHUNK) {
				if (ferror(r->in))
					return -2;
				r->eof = true;
			}
			continue;
		}
		nl = memchr(r->chunk + r->off, '\n', r->len - r->off);
		n = nl ? (size_t)(nl - (r->chunk + r->off)) : r->len - r->off;
		if (buf_add(&r->line, r->chunk + r->off, n) < 0)
			return -1;
		r->off += n;
		if (nl) {
			r->off++;
			return 1;
		}
	}
}

/* ---- values ---- */

static int import__put(struct import *im, struct import_val *v, const char *s, size_t n)
{
	v->off = im->vals.len;
	v->state = IV_SET;
	if (buf_add(&im->vals, s, n) < 0 || buf_addc(&im->vals, '\0') < 0)
		return import__fail(im, "out of memory");
	return 0;
}

static int import__putf(struct import *im, struct import_val *v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int import__putf(struct import *im, struct import_val *v, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	if (im->numbers) { /* v->num holds it */
		v->state = IV_SET;
		return 0;
	}
	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return import__fail(im, "value too long");
	return import__put(im, v, tmp, (size_t)n);
}

static const char *import__text(const struct import *im, const struct import_val *v)
{
	return v->state == IV_SET ? im->vals.p + v->off : NULL;
}

/* An integral JSON number in min..max. */
static bool import__integer(const cJSON *x, int64_t min, int64_t max, int64_t *out)
{
	return cJSON_IsNumber(x) && lead_int_from_double(x->valuedouble, min, max, out);
}

static int import__money(const cJSON *x, int64_t *cents)
{
	char tmp[64];
	const char *s;

	if (cJSON_IsNumber(x)) {
		if (!isfinite(x->valuedouble))
			return -1;
		/* 15 significant digits give back the decimal text of the
		 * line for any amount numeric(14,2) holds. */
		snprintf(tmp, sizeof(tmp), "%.15g", x->valuedouble);
		s = tmp;
	} else if (cJSON_IsString(x)) {
		s = x->valuestring;
	} else {
		return -1;
	}
	if (lead_money_parse(s, cents) < 0 || *cents < 0 || *cents > IMPORT_MONEY_MAX)
		return -1;
	return 0;
}

static bool import__name_ok(const char *s, size_t max)
{
	size_t n = strlen(s), i;

	if (n < 1 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

int import_currency(const char *iso, const void *data)
{
	const struct import *im = data;
	size_t i;

	for (i = 0; i < im->ncurr; i++)
		if (strcmp(im->curr[i].iso, iso) == 0)
			return im->curr[i].id;
	return 0;
}

static int import__currency(const struct import *im, const char *iso)
{
	return im->currency(iso, im->cdata);
}

/* Offer params: an object of strings, numbers and booleans whose names are
 * macro names (macro_check_params). */
static int import__params(struct import *im, const cJSON *x, const char *name)
{
	struct macro_param *p = NULL;
	const cJSON *e;
	char msg[256];
	size_t n = 0;
	int rc = -1;

	p = calloc((size_t)cJSON_GetArraySize(x) + 1, sizeof(*p));
	if (!p)
		return import__fail(im, "out of memory");
	cJSON_ArrayForEach(e, x) {
		if (!cJSON_IsString(e) && !cJSON_IsNumber(e) && !cJSON_IsBool(e)) {
			import__fail(im, "'%s.%s' must be a string, number or boolean", name,
				     e->string);
			goto out;
		}
		p[n].name = e->string;
		p[n].value = "";
		n++;
	}
	if (macro_check_params(p, n, msg, sizeof(msg)) < 0) {
		import__fail(im, "'%s': %s", name, msg);
		goto out;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

/* Status words: checked by the parser the poller and the postbacks read
 * them with (status.h, status_words_from_cjson), so what is stored is what
 * they accept. */
static int import__words(struct import *im, const cJSON *x, const char *name)
{
	struct status_words *w = NULL;
	char why[512];
	int rc = status_words_from_cjson(x, &w, why, sizeof(why));

	status_words_free(w);
	return rc < 0 ? import__fail(im, "'%s': %s", name, why) : 0;
}

/* An array of strings as a PostgreSQL array literal: names (secret_params,
 * text[]) or, with nets, networks (postback_sources, cidr[]). */
static int import__names(struct import *im, struct import_val *v, const cJSON *x, const char *name,
			 bool nets)
{
	const char *want = nets ? "an array of networks like \"192.0.2.0/24\"" : "an array of names";
	struct pbauth_net net;
	const cJSON *e;
	char msg[160];
	struct buf b;
	const char *p;
	int rc = -1;

	if (!cJSON_IsArray(x))
		return import__fail(im, "'%s' must be %s", name, want);
	buf_init(&b, IMPORT_LINE_MAX);
	if (buf_addc(&b, '{') < 0)
		goto oom;
	cJSON_ArrayForEach(e, x) {
		if (!cJSON_IsString(e) || !*e->valuestring) {
			import__fail(im, "'%s' must be %s", name, want);
			goto out;
		}
		/* checked here, so that a typo gets a message naming it */
		if (nets && pbauth_net_parse(e->valuestring, &net, msg, sizeof(msg)) < 0) {
			import__fail(im, "'%s': %s", name, msg);
			goto out;
		}
		if (b.len > 1 && buf_addc(&b, ',') < 0)
			goto oom;
		if (buf_addc(&b, '"') < 0)
			goto oom;
		for (p = e->valuestring; *p; p++)
			if ((*p == '"' || *p == '\\' ? buf_addc(&b, '\\') : 0) < 0 ||
			    buf_addc(&b, *p) < 0)
				goto oom;
		if (buf_addc(&b, '"') < 0)
			goto oom;
	}
	if (buf_addc(&b, '}') < 0)
		goto oom;
	rc = import__put(im, v, b.p, b.len);
	goto out;
oom:
	import__fail(im, "'%s' is too long", name);
out:
	buf_release(&b);
	return rc;
}

static int import__json(struct import *im, struct import_val *v, const cJSON *x)
{
	char *s = cJSON_PrintUnformatted(x);
	int rc;

	if (!s)
		return import__fail(im, "out of memory");
	rc = import__put(im, v, s, strlen(s));
	cJSON_free(s);
	return rc;
}

static int import__copy_end(struct import *im, const char *abort_msg);

static int import__zone_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether PostgreSQL, which decides every zone rule the daemon uses, knows
 * zone: 1, 0, or -1 (err set). Its names are read once per import, at the
 * first zone: the view costs a tenth of a second per question. */
static int import__zone_known(struct import *im, const char *zone)
{
	PGresult *r;
	size_t i, n, len = 0;

	if (!im->zones) {
		/* a query cannot run inside the leads' COPY; the record ends it anyway */
		if (im->copying && import__copy_end(im, NULL) < 0)
			return -1;
		r = store_query(im->c, "time zones", "SELECT name FROM pg_timezone_names", 0, NULL,
				im->err, im->errlen);
		if (!r)
			return -1;
		n = (size_t)PQntuples(r);
		for (i = 0; i < n; i++)
			len += strlen(PQgetvalue(r, (int)i, 0)) + 1;
		/* the pointers, then the names they point to, in one block */
		im->zones = malloc((n + 1) * sizeof(*im->zones) + len);
		if (!im->zones) {
			PQclear(r);
			snprintf(im->err, im->errlen, "time zones: out of memory");
			return -1;
		}
		len = 0;
		for (i = 0; i < n; i++) {
			char *dst = (char *)(im->zones + n + 1) + len;
			const char *v = PQgetvalue(r, (int)i, 0);

			memcpy(dst, v, strlen(v) + 1);
			im->zones[i] = dst;
			len += strlen(v) + 1;
		}
		im->nzones = n;
		PQclear(r);
		qsort(im->zones, n, sizeof(*im->zones), import__zone_cmp);
	}
	return bsearch(&zone, im->zones, im->nzones, sizeof(*im->zones), import__zone_cmp) != NULL;
}

/* Parses one field of rec into v. Returns 0 or -1 (err set). */
static int import__field(struct import *im, const cJSON *rec, const struct import_field *f,
			 struct import_val *v)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(rec, f->key);
	char name[64], q[96], tmp[LEAD_COMMENT_MAX];
	const char *s;
	int64_t t;
	int id;

	v->state = IV_ABSENT;
	import__fname(f, name, sizeof(name));
	if (x && f->sub) {
		if (cJSON_IsObject(x))
			x = cJSON_GetObjectItemCaseSensitive(x, f->sub);
		else if (!cJSON_IsNull(x) && !(cJSON_IsNumber(x) && (f->flags & IF_SCALAR)))
			return import__fail(im, "'%s' must be an object%s", f->key,
					    f->flags & IF_SCALAR ? " or a number" : "");
		if (!x) { /* a group given sets all of it */
			v->state = f->flags & IF_NOT_NULL ? IV_DEFAULT : IV_NULL;
			return 0;
		}
	}
	if (!x)
		return f->flags & IF_REQUIRED ? import__fail(im, "missing '%s'", name) : 0;
	if (cJSON_IsNull(x)) {
		if (f->flags & IF_REQUIRED)
			return import__fail(im, "'%s' must not be null", name);
		v->state = f->flags & IF_NOT_NULL ? IV_DEFAULT : IV_NULL;
		return 0;
	}
	s = cJSON_IsString(x) ? x->valuestring : NULL;
	switch (f->type) {
	case IT_ID:
		if (!import__integer(x, 1, IMPORT_ID_MAX, &v->num))
			return import__fail(im, "'%s' must be a positive integer", name);
		if (strcmp(f->key, "id") == 0 && im->kind)
			snprintf(im->subject, sizeof(im->subject), "%s %" PRId64, im->kind, v->num);
		return import__putf(im, v, "%" PRId64, v->num);
	case IT_INT:
		if (!import__integer(x, f->min, f->max, &v->num))
			return import__fail(im, "'%s' must be an integer %" PRId64 "..%" PRId64,
					    name, f->min, f->max);
		return import__putf(im, v, "%" PRId64, v->num);
	case IT_BOOL:
		if (!cJSON_IsBool(x))
			return import__fail(im, "'%s' must be true or false", name);
		return import__put(im, v, cJSON_IsTrue(x) ? "true" : "false",
				   cJSON_IsTrue(x) ? 4 : 5);
	case IT_TEXT:
		if (!s)
			return import__fail(im, "'%s' must be a string", name);
		if (strlen(s) < (size_t)f->min || strlen(s) > (size_t)f->max)
			return import__fail(im, "'%s' must be %" PRId64 "..%" PRId64 " bytes long",
					    name, f->min, f->max);
		return import__put(im, v, s, strlen(s));
	case IT_NAME:
		if (!s || !import__name_ok(s, (size_t)f->max))
			return import__fail(im, "'%s' must be a name of [A-Za-z0-9_-], 1..%" PRId64
					    " long", name, f->max);
		return import__put(im, v, s, strlen(s));
	case IT_CUT:
		if (!s)
			return import__fail(im, "'%s' must be a string", name);
		lead_strlcpy(tmp, (size_t)f->max + 1 < sizeof(tmp) ? (size_t)f->max + 1 : sizeof(tmp),
			     s);
		return import__put(im, v, tmp, strlen(tmp));
	case IT_URL:
		if (!s || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) ||
		    strlen(s) > (size_t)f->max || strpbrk(s, " \t\r\n"))
			return import__fail(im, "'%s' must be an http:// or https:// URL", name);
		return import__put(im, v, s, strlen(s));
	case IT_TZ:
		if (!s || strlen(s) > TZ_NAME_MAX)
			return import__fail(im, "'%s' must be a time zone name", name);
		if (!*s) {
			v->state = IV_NULL;
			return 0;
		}
		switch (import__zone_known(im, s)) {
		case 1:
			break;
		case 0:
			return import__fail(im, "unknown time zone '%s'", import__q(s, q, sizeof(q)));
		default:
			return -1;
		}
		return import__put(im, v, s, strlen(s));
	case IT_MONEY:
		if (import__money(x, &v->num) < 0)
			return import__fail(im, "'%s' must be an amount 0..999999999999.99", name);
		if (im->numbers) {
			v->state = IV_SET;
			return 0;
		}
		if (lead_money_format(v->num, tmp, sizeof(tmp)) < 0)
			return import__fail(im, "'%s' cannot be written", name);
		return import__put(im, v, tmp, strlen(tmp));
	case IT_CURRENCY:
		if (!s)
			return import__fail(im, "'%s' must be an ISO 4217 code", name);
		id = import__currency(im, s);
		if (!id)
			return import__fail(im, "unknown currency '%s'", import__q(s, q, sizeof(q)));
		v->num = id;
		return import__putf(im, v, "%d", id);
	case IT_TIME:
		if (!s || lead_time_parse(s, &t) < 0 || t < 0 || t > IMPORT_TIME_MAX)
			return import__fail(im, "'%s' must be an ISO-8601 time from 1970 on, e.g. "
					    "2026-11-20T10:00:00Z", name);
		v->num = t;
		if (im->numbers) {
			v->state = IV_SET;
			return 0;
		}
		if (lead_time_format(t, tmp, sizeof(tmp)) < 0)
			return import__fail(im, "'%s' cannot be written", name);
		return import__put(im, v, tmp, strlen(tmp));
	case IT_UUID:
		if (!s || !click_uuid_parse(s, tmp))
			return import__fail(im, "'%s' must be a UUID", name);
		return import__put(im, v, tmp, 36);
	case IT_PAYOUT:
		if (!s || (strcmp(s, "fixed") != 0 && strcmp(s, "percent") != 0 &&
			   strcmp(s, "recurring") != 0))
			return import__fail(im, "'%s' must be fixed, percent or recurring", name);
		return import__put(im, v, s, strlen(s));
	case IT_PARAMS:
		if (!cJSON_IsObject(x))
			return import__fail(im, "'%s' must be an object", name);
		if (import__params(im, x, name) < 0)
			return -1;
		return import__json(im, v, x);
	case IT_WORDS:
		if (!cJSON_IsObject(x))
			return import__fail(im, "'%s' must be an object", name);
		if (import__words(im, x, name) < 0)
			return -1;
		return import__json(im, v, x);
	case IT_NAMES:
	case IT_NETS:
		return import__names(im, v, x, name, f->type == IT_NETS);
	}
	return import__fail(im, "'%s': unknown field type", name);
}

/* A group object ("intervals") may only hold the subs the table names. */
static int import__groups(struct import *im, const cJSON *rec, const struct import_kind *k)
{
	size_t i, j;

	for (i = 0; i < k->nfields; i++) {
		const struct import_field *f = &k->fields[i];
		const cJSON *x, *e;

		if (!f->sub || (i && k->fields[i - 1].sub && strcmp(k->fields[i - 1].key, f->key) == 0))
			continue;
		x = cJSON_GetObjectItemCaseSensitive(rec, f->key);
		if (!cJSON_IsObject(x))
			continue;
		cJSON_ArrayForEach(e, x) {
			bool known = false;

			for (j = i; j < k->nfields && k->fields[j].sub &&
				    strcmp(k->fields[j].key, f->key) == 0; j++)
				if (strcmp(k->fields[j].sub, e->string) == 0)
					known = true;
			if (!known)
				return import__fail(im, "'%s' has no variant '%s'", f->key,
						    e->string);
		}
	}
	return 0;
}

/* ---- advertisers, offers, goals: one upsert per line ---- */

/* INSERT of the given columns; on conflict the given non-key columns are
 * set, and only when they differ, so a line that changes nothing writes
 * nothing. A JSON null for a NOT NULL column inserts its DEFAULT. */
static int import__upsert(struct import *im, const struct import_kind *k, struct import_val *v)
{
	const char *params[IMPORT_FIELDS_MAX];
	struct buf sql, keys, set, cur, exc;
	char msg[640];
	PGresult *r = NULL;
	int np = 0, rc = -1;
	size_t i, ncols = 0, nset = 0;

	buf_init(&sql, 0);
	buf_init(&keys, 0);
	buf_init(&set, 0);
	buf_init(&cur, 0);
	buf_init(&exc, 0);
	if (buf_addf(&sql, "INSERT INTO %s AS t (", k->table) < 0)
		goto oom;
	for (i = 0; i < k->nfields; i++) {
		const struct import_field *f = &k->fields[i];

		if (v[i].state == IV_ABSENT)
			continue;
		if (buf_addf(&sql, "%s%s", ncols++ ? ", " : "", f->col) < 0)
			goto oom;
		if (v[i].state != IV_DEFAULT)
			params[np++] = import__text(im, &v[i]);
		if (f->flags & IF_KEY) {
			if (buf_addf(&keys, "%s%s", keys.len ? ", " : "", f->col) < 0)
				goto oom;
		} else {
			if (buf_addf(&set, "%s%s = EXCLUDED.%s", nset ? ", " : "", f->col, f->col) <
				    0 ||
			    buf_addf(&cur, "%st.%s", nset ? ", " : "", f->col) < 0 ||
			    buf_addf(&exc, "%sEXCLUDED.%s", nset ? ", " : "", f->col) < 0)
				goto oom;
			nset++;
		}
	}
	if (buf_adds(&sql, ") VALUES (") < 0)
		goto oom;
	for (i = 0, np = 0, ncols = 0; i < k->nfields; i++) {
		if (v[i].state == IV_ABSENT)
			continue;
		if (ncols++ && buf_adds(&sql, ", ") < 0)
			goto oom;
		if (v[i].state == IV_DEFAULT ? buf_adds(&sql, "DEFAULT") < 0
					     : buf_addf(&sql, "$%d", ++np) < 0)
			goto oom;
	}
	if (nset) {
		if (buf_addf(&sql, ") ON CONFLICT (%s) DO UPDATE SET %s, updated = now() "
				   "WHERE ROW(%s) IS DISTINCT FROM ROW(%s)",
			     keys.p, set.p, cur.p, exc.p) < 0)
			goto oom;
	} else if (buf_addf(&sql, ") ON CONFLICT (%s) DO NOTHING", keys.p) < 0) {
		goto oom;
	}
	r = PQexecParams(im->c, sql.p, np, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		if (k->fk_field && strcmp(store_sqlstate(r), "23503") == 0) {
			for (i = 0; i < k->nfields; i++)
				if (strcmp(k->fields[i].key, k->fk_field) == 0)
					break;
			import__fail(im, "unknown %s %s", k->fk_field,
				     i < k->nfields ? import__text(im, &v[i]) : "?");
		} else {
			import__fail(im, "%s", store_error_text(im->c, r, msg, sizeof(msg)));
		}
		goto out;
	}
	rc = 0;
	goto out;
oom:
	import__fail(im, "out of memory");
out:
	PQclear(r);
	buf_release(&sql);
	buf_release(&keys);
	buf_release(&set);
	buf_release(&cur);
	buf_release(&exc);
	return rc;
}

static int import__goal_check(struct import *im, const struct import_kind *k,
			      struct import_val *v)
{
	size_t i;

	if (strcmp(import__text(im, &v[GOAL_F_PAYOUT]), "percent") != 0)
		return 0;
	for (i = GOAL_F_WM; i < GOAL_F_WM + 3; i++)
		if (v[i].state == IV_SET && v[i].num > 10000)
			return import__fail(im, "'%s' is a percent and must be 0..100",
					    k->fields[i].key);
	return 0;
}

/* ---- leads: staged with COPY, applied at the end ---- */

/* A database failure that belongs to no line. */
static int import__dbfail(struct import *im, const char *what, const PGresult *r)
{
	char msg[640];

	snprintf(im->err, im->errlen, "%s: %s", what, store_error_text(im->c, r, msg, sizeof(msg)));
	return -1;
}

static int import__copy_flush(struct import *im)
{
	if (!im->copy.len)
		return 0;
	if (PQputCopyData(im->c, im->copy.p, (int)im->copy.len) != 1)
		return import__dbfail(im, "leads: copy", NULL);
	buf_reset(&im->copy);
	return 0;
}

static int import__copy_start(struct import *im)
{
	struct buf sql;
	PGresult *r = NULL;
	size_t i;
	int rc = -1;

	buf_init(&sql, 0);
	if (!im->staged) {
		if (buf_adds(&sql, "CREATE TEMP TABLE import_leads (line bigint NOT NULL, "
				   "rid bigint, given text[] NOT NULL") < 0)
			goto oom;
		for (i = 0; i < NFIELDS(import_lead_fields); i++)
			if (buf_addf(&sql, ", %s %s", import_lead_fields[i].col,
				     import_lead_fields[i].sqltype) < 0)
				goto oom;
		if (buf_adds(&sql, ") ON COMMIT DROP") < 0)
			goto oom;
		if (store_exec(im->c, "leads: staging table", sql.p, 0, NULL, im->err, im->errlen) < 0)
			goto out;
		im->staged = true;
		buf_reset(&sql);
	}
	if (buf_adds(&sql, "COPY import_leads (line, rid, given") < 0)
		goto oom;
	for (i = 0; i < NFIELDS(import_lead_fields); i++)
		if (buf_addf(&sql, ", %s", import_lead_fields[i].col) < 0)
			goto oom;
	if (buf_adds(&sql, ") FROM STDIN") < 0)
		goto oom;
	r = PQexec(im->c, sql.p);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		import__dbfail(im, "leads: copy", r);
		goto out;
	}
	im->copying = true;
	rc = 0;
	goto out;
oom:
	import__fail(im, "out of memory");
out:
	PQclear(r);
	buf_release(&sql);
	return rc;
}

/* Ends the COPY in progress; abort_msg non-NULL abandons it. */
static int import__copy_end(struct import *im, const char *abort_msg)
{
	PGresult *r;
	int rc = 0;

	if (!im->copying)
		return 0;
	im->copying = false;
	if (!abort_msg && import__copy_flush(im) < 0)
		abort_msg = "import failed";
	if (PQputCopyEnd(im->c, abort_msg) != 1 && !abort_msg)
		rc = import__dbfail(im, "leads: copy", NULL);
	while ((r = PQgetResult(im->c))) {
		if (!abort_msg && rc == 0 && PQresultStatus(r) != PGRES_COMMAND_OK)
			rc = import__dbfail(im, "leads: copy", r);
		PQclear(r);
	}
	buf_reset(&im->copy);
	return abort_msg ? -1 : rc;
}

/* COPY text format: backslash escapes for the bytes that end fields and
 * rows; NULL is \N. */
static int import__copy_field(struct buf *b, const char *s)
{
	const char *p, *run;

	if (!s)
		return buf_adds(b, "\\N");
	for (p = run = s; *p; p++) {
		const char *esc = *p == '\\' ? "\\\\" : *p == '\t' ? "\\t" : *p == '\n' ? "\\n"
				: *p == '\r' ? "\\r" : NULL;

		if (!esc)
			continue;
		if (buf_add(b, run, (size_t)(p - run)) < 0 || buf_adds(b, esc) < 0)
			return -1;
		run = p + 1;
	}
	return buf_add(b, run, (size_t)(p - run));
}

/* n in decimal, at the end of tmp (len >= 21): a COPY row holds several
 * per lead, and printf was a tenth of an import's CPU. */
static const char *import__i64(int64_t n, char *tmp, size_t len)
{
	uint64_t m = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
	char *p = tmp + len;

	*--p = '\0';
	do
		*--p = (char)('0' + m % 10);
	while ((m /= 10) != 0);
	if (n < 0)
		*--p = '-';
	return p;
}

/* The text of a lead's field k in the staging table; NULL when not set. */
static const char *import__lead_text(const struct import_lead *l, enum import_lead_key k,
				     char *tmp, size_t len)
{
	const struct lead *d = &l->lead;
	int64_t t = 0, m = 0, n = 0;

	if (!IMPORT_LEAD_SET(l, k))
		return NULL;
	switch (k) {
	case ILK_ID: n = d->id; break;
	case ILK_OFFER: n = d->offer; break;
	case ILK_STATUS: n = d->status; break;
	case ILK_REASON: n = d->reason; break;
	case ILK_COUNTS: n = d->counts; break;
	case ILK_CURR: n = d->curr; break;
	case ILK_CASH_CURR: n = d->cash_curr; break;
	case ILK_EXT: return d->ext;
	case ILK_COMMENT: return d->comment;
	case ILK_TRACK: return d->track;
	case ILK_GOAL: return l->goal;
	case ILK_CLICK: return l->click;
	case ILK_REQUEST_ID: return l->request_id;
	case ILK_CUSTOMER_ID: return l->customer_id;
	case ILK_CREATED: t = d->created; goto time;
	case ILK_APPROVED_AT: t = d->approved_at; goto time;
	case ILK_HOLD_UNTIL: t = d->hold_until; goto time;
	case ILK_BASE: m = d->base; goto money;
	case ILK_WM: m = d->wm; goto money;
	case ILK_PAY: m = d->pay; goto money;
	case ILK_REF: m = d->ref; goto money;
	case ILK_COUNT: return NULL;
	}
	return import__i64(n, tmp, len);
time:
	return lead_time_format(t, tmp, len) < 0 ? NULL : tmp;
money:
	return lead_money_format(m, tmp, len) < 0 ? NULL : tmp;
}

/* One COPY row of the staging table. */
static int import__lead_stage(struct import *im, size_t pos, const struct import_lead *l)
{
	struct buf *b = &im->copy;
	char tmp[64];
	size_t i, ngiven = 0;
	int rc = 0;

	if (!im->copying && import__copy_start(im) < 0)
		return -1;
	rc |= buf_addf(b, "%zu\t", pos);
	rc |= import__copy_field(b, import__lead_text(l, ILK_ID, tmp, sizeof(tmp)));
	rc |= buf_adds(b, "\t{");
	for (i = 0; i < ILK_COUNT; i++)
		if (l->given >> i & 1u)
			rc |= buf_addf(b, "%s%s", ngiven++ ? "," : "", import_lead_fields[i].col);
	rc |= buf_addc(b, '}');
	for (i = 0; i < ILK_COUNT; i++) {
		rc |= buf_addc(b, '\t');
		rc |= import__copy_field(b, import__lead_text(l, (enum import_lead_key)i, tmp,
							      sizeof(tmp)));
	}
	rc |= buf_addc(b, '\n');
	if (rc)
		return import__fail(im, "out of memory");
	if (b->len >= IMPORT_COPY_FLUSH)
		return import__copy_flush(im);
	return 0;
}

/* A lead record's fields into *out (import_lead_check). offer > 0 stands
 * for an absent "offer". */
static int import__lead_parse(struct import *im, const cJSON *rec, int64_t offer,
			      struct import_lead *out)
{
	struct import_val v[ILK_COUNT];
	struct lead *d = &out->lead;
	size_t i;

	memset(out, 0, sizeof(*out));
	memset(v, 0, sizeof(v)); /* num is 0 where no value was given */
	buf_reset(&im->vals);
	for (i = 0; i < ILK_COUNT; i++) {
		int rc = 0;

		if (i == ILK_OFFER && offer > 0 && !cJSON_GetObjectItemCaseSensitive(rec, "offer")) {
			v[i].state = IV_SET;
			v[i].num = offer;
		} else {
			im->numbers = true;
			rc = import__field(im, rec, &import_lead_fields[i], &v[i]);
			im->numbers = false;
		}
		if (rc < 0)
			return -1;
		if (v[i].state != IV_ABSENT)
			out->given |= 1u << i;
		if (v[i].state == IV_SET)
			out->set |= 1u << i;
	}
	if (!IMPORT_LEAD_SET(out, ILK_ID) && !IMPORT_LEAD_SET(out, ILK_EXT))
		return import__fail(im, "give 'id' or 'ext'");
	d->id = v[ILK_ID].num;
	d->offer = v[ILK_OFFER].num;
	d->status = (int)v[ILK_STATUS].num;
	d->reason = (int)v[ILK_REASON].num;
	d->counts = (int)v[ILK_COUNTS].num;
	d->curr = (int)v[ILK_CURR].num;
	d->cash_curr = (int)v[ILK_CASH_CURR].num;
	d->base = v[ILK_BASE].num;
	d->wm = v[ILK_WM].num;
	d->pay = v[ILK_PAY].num;
	d->ref = v[ILK_REF].num;
	d->created = v[ILK_CREATED].num;
	d->approved_at = v[ILK_APPROVED_AT].num;
	d->hold_until = v[ILK_HOLD_UNTIL].num;
	/* the lengths were checked against these sizes (import_lead_fields) */
	lead_strlcpy(d->ext, sizeof(d->ext), import__text(im, &v[ILK_EXT]));
	lead_strlcpy(d->comment, sizeof(d->comment), import__text(im, &v[ILK_COMMENT]));
	lead_strlcpy(d->track, sizeof(d->track), import__text(im, &v[ILK_TRACK]));
	lead_strlcpy(out->goal, sizeof(out->goal), import__text(im, &v[ILK_GOAL]));
	lead_strlcpy(out->click, sizeof(out->click), import__text(im, &v[ILK_CLICK]));
	lead_strlcpy(out->request_id, sizeof(out->request_id), import__text(im, &v[ILK_REQUEST_ID]));
	lead_strlcpy(out->customer_id, sizeof(out->customer_id),
		     import__text(im, &v[ILK_CUSTOMER_ID]));
	return 0;
}

int import_lead_check(const cJSON *rec, import_currency_fn currency, const void *data,
		      int64_t offer, struct import_lead *out, char *err, size_t errlen)
{
	struct import im = { .err = err, .errlen = errlen, .kind = "lead", .subject = "lead",
			     .currency = currency, .cdata = data };
	int rc;

	buf_init(&im.vals, IMPORT_LINE_MAX * 2);
	if (!cJSON_IsObject(rec))
		rc = import__fail(&im, "a lead must be a JSON object");
	else
		rc = import__lead_parse(&im, rec, offer, out);
	buf_release(&im.vals);
	return rc;
}

int import_lead_add(struct import *im, size_t pos, const struct import_lead *l, char *err,
		    size_t errlen)
{
	im->err = err;
	im->errlen = errlen;
	im->line = 0;
	im->subject[0] = '\0';
	return import__lead_stage(im, pos, l);
}

/* A validation query over the staged leads: when it returns a row, its
 * first column is the offending line and fmt (taking the other columns as
 * strings, at most 3) says what is wrong. */
static int import__verify(struct import *im, const char *what, const char *sql, const char *fmt)
{
	const char *a[3] = { "", "", "" };
	PGresult *r = store_query(im->c, what, sql, 0, NULL, im->err, im->errlen);
	int i, rc = -1;

	if (!r)
		goto out;
	rc = 0;
	if (PQntuples(r) == 0)
		goto out;
	for (i = 1; i < PQnfields(r) && i <= 3; i++)
		a[i - 1] = PQgetvalue(r, 0, i);
	snprintf(im->err, im->errlen, fmt, a[0], a[1], a[2]);
	im->errpos = (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	rc = -1;
out:
	PQclear(r);
	return rc;
}

static const struct {
	const char *what;
	const char *sql;
	const char *fmt;
} import_checks[] = {
	{ "leads: offers",
	  "SELECT s.line, s.offer FROM import_leads s"
	  " WHERE NOT EXISTS (SELECT 1 FROM offers o WHERE o.id = s.offer)"
	  " ORDER BY s.line LIMIT 1",
	  "lead: unknown offer %s" },
	{ "leads: goals",
	  "SELECT s.line, s.goal, s.offer FROM import_leads s"
	  " WHERE s.goal IS NOT NULL AND NOT EXISTS"
	  " (SELECT 1 FROM goals g WHERE g.offer = s.offer AND g.code = s.goal)"
	  " ORDER BY s.line LIMIT 1",
	  "lead: unknown goal '%s' of offer %s" },
	{ "leads: ext",
	  "SELECT s.line, s.ext, s.offer, count(*) FROM import_leads s"
	  " JOIN leads l ON l.offer = s.offer AND l.ext = s.ext WHERE s.id IS NULL"
	  " GROUP BY s.line, s.ext, s.offer HAVING count(*) > 1 ORDER BY s.line LIMIT 1",
	  "lead: ext '%s' of offer %s matches %s leads: give the lead's id" },
	{ "leads: by ext",
	  "UPDATE import_leads s SET rid = l.id FROM leads l"
	  " WHERE s.id IS NULL AND l.offer = s.offer AND l.ext = s.ext",
	  NULL },
	{ "leads: offer change",
	  "SELECT s.line, s.rid, l.offer, s.offer FROM import_leads s"
	  " JOIN leads l ON l.id = s.rid WHERE l.offer <> s.offer ORDER BY s.line LIMIT 1",
	  "lead %s: belongs to offer %s, not %s: a lead cannot change its offer" },
	{ "leads: duplicates",
	  "SELECT line, rid, first FROM (SELECT line, rid,"
	  " min(line) OVER (PARTITION BY rid) AS first FROM import_leads"
	  " WHERE rid IS NOT NULL) x WHERE line <> first ORDER BY line LIMIT 1",
	  "lead %s is already on line %s" },
	{ "leads: duplicate ext",
	  "SELECT s.line, s.ext, s.offer, t.line FROM import_leads s"
	  " JOIN import_leads t ON t.offer = s.offer AND t.ext = s.ext AND t.line < s.line"
	  " WHERE s.id IS NULL OR t.id IS NULL ORDER BY s.line LIMIT 1",
	  "lead: ext '%s' of offer %s is already on line %s" },
	{ "leads: request_id",
	  "SELECT line, request_id, offer, first FROM (SELECT line, request_id, offer,"
	  " min(line) OVER (PARTITION BY offer, request_id) AS first FROM import_leads"
	  " WHERE request_id IS NOT NULL) x WHERE line <> first ORDER BY line LIMIT 1",
	  "lead: request_id '%s' of offer %s is already on line %s" },
	{ "leads: request_id",
	  "SELECT s.line, s.request_id, s.offer, l.id FROM import_leads s"
	  " JOIN leads l ON l.offer = s.offer AND l.request_id = s.request_id"
	  " WHERE l.id IS DISTINCT FROM s.rid ORDER BY s.line LIMIT 1",
	  "lead: request_id '%s' of offer %s belongs to lead %s" },
	/* New leads get ids from the leads sequence, in line order. They go to
	 * a narrow table of their own: an UPDATE of rid would write a new
	 * version of every staged row (7 of 57 s at a million leads). The
	 * sequence's name is a scalar subquery, looked up once: as a joined
	 * column the planner pulled its lookup into every row (3 s more). */
	{ "leads: new ids",
	  "CREATE TEMP TABLE import_new ON COMMIT DROP AS SELECT o.line,"
	  " nextval((SELECT pg_get_serial_sequence('leads', 'id')::regclass)) AS id"
	  " FROM (SELECT line FROM import_leads WHERE rid IS NULL ORDER BY line) o",
	  NULL },
	/* so the apply's plan knows its size, as import_leads' does */
	{ "leads: new ids", "ANALYZE import_new", NULL },
};

/* Merges each staged line into its lead (a line is a patch), keeps the
 * lead invariants (include/import.h), inserts the new leads, updates the
 * ones that change, and writes a history row for each. (An UPDATE rather
 * than ON CONFLICT: its second reference to leads, o, is the row as it was,
 * so RETURNING gives the old fields of just the leads that change.) */
/* The after of a new lead's history row, as lead_changes(NULL,
 * lead_fields(l)) gives it (the fields that are not null or ''), built as
 * text: jsonb_build_object looks up the type of each of its 38 arguments on
 * every call, which made lead_fields() plus jsonb_strip_nulls() 9 CPU
 * seconds per million leads on PostgreSQL 15; this is 2.5. Strings pass
 * through to_json() for their escapes; lead_time_json() and uuids need none.
 * tests/test_import.c "import_history_new_after" holds the two equal. */
#define IMPORT_AFTER(l, f, k) " " IMPORT_AFTER_##k(#f, l "." #f)
#define IMPORT_AFTER_NUM(f, c) "'\"" f "\":' || " c
#define IMPORT_AFTER_ID(f, c) IMPORT_AFTER_NUM(f, c) /* NULL: left out */
#define IMPORT_AFTER_MONEY(f, c) "'\"" f "\":' || trim_scale(" c ")"
#define IMPORT_AFTER_TIME(f, c) "'\"" f "\":\"' || lead_time_json(" c ") || '\"'"
#define IMPORT_AFTER_STR(f, c) "CASE WHEN " c " <> '' THEN '\"" f "\":' || to_json(" c ") END"
#define IMPORT_NEW_AFTER(l)                                                              \
	"('{' || concat_ws(','," LEAD_FIELDS(IMPORT_AFTER, LEAD_SEP_SQL, l) ","            \
	" '\"ext\":' || to_json(" l ".ext),"                                              \
	" '\"created\":\"' || lead_time_json(" l ".created) || '\"',"                    \
	" '\"click_id\":\"' || " l ".click || '\"',"                                     \
	" '\"request_id\":' || to_json(" l ".request_id),"                                \
	" '\"customer_id\":' || to_json(" l ".customer_id)) || '}')::jsonb"
/* The columns import writes: its own, then lead_store.h's list, as they
 * are (IMPORT_LEAD_COLS) and in CTE n or table l (IMPORT_LEAD_OF). */
#define IMPORT_LEAD_COLS "ext, request_id, customer_id, click, created," LEAD_STORE_INSERT_COLS
#define IMPORT_N(f) " n." #f
#define IMPORT_L(f) " l." #f
#define IMPORT_LEAD_OF(F)                                                                 \
	F(ext) "," F(request_id) "," F(customer_id) "," F(click) "," F(created) ","        \
	LEAD_STORE_EACH(F)
static const char import_apply_sql[] =
	"WITH m AS ("
	" SELECT coalesce(s.rid, i.id) AS id, s.offer, s.status,"
	"  o.id IS NOT NULL AS existed,"
	"  CASE WHEN 'ext' = ANY (s.given) THEN s.ext ELSE o.ext END AS ext,"
	"  CASE WHEN 'request_id' = ANY (s.given) THEN s.request_id ELSE o.request_id END"
	"   AS request_id,"
	"  CASE WHEN 'customer_id' = ANY (s.given) THEN s.customer_id ELSE o.customer_id END"
	"   AS customer_id,"
	"  CASE WHEN 'click' = ANY (s.given) THEN s.click ELSE o.click END AS click,"
	"  CASE WHEN 'goal' = ANY (s.given) THEN g.id ELSE o.goal END AS goal,"
	"  CASE WHEN s.status = 5 THEN coalesce(s.reason,"
	"   CASE WHEN o.status = 5 THEN o.reason END, f.reject_reason) END AS reason,"
	"  CASE WHEN 'comment' = ANY (s.given) THEN coalesce(s.comment, '')"
	"   ELSE coalesce(o.comment, '') END AS comment,"
	"  CASE WHEN 'track' = ANY (s.given) THEN coalesce(s.track, '')"
	"   ELSE coalesce(o.track, '') END AS track,"
	"  CASE WHEN 'base' = ANY (s.given) THEN coalesce(s.base, 0)"
	"   ELSE coalesce(o.base, 0) END AS base,"
	"  CASE WHEN 'counts' = ANY (s.given) THEN coalesce(s.counts, 1)"
	"   ELSE coalesce(o.counts, 1) END AS counts,"
	"  CASE WHEN 'curr' = ANY (s.given) THEN s.curr ELSE o.curr END AS curr,"
	"  CASE WHEN 'wm' = ANY (s.given) THEN coalesce(s.wm, 0) ELSE coalesce(o.wm, 0) END AS wm,"
	"  CASE WHEN 'pay' = ANY (s.given) THEN coalesce(s.pay, 0)"
	"   ELSE coalesce(o.pay, 0) END AS pay,"
	"  CASE WHEN 'ref' = ANY (s.given) THEN coalesce(s.ref, 0)"
	"   ELSE coalesce(o.ref, 0) END AS ref,"
	"  CASE WHEN 'cash_curr' = ANY (s.given) THEN s.cash_curr ELSE o.cash_curr END"
	"   AS cash_curr,"
	"  CASE WHEN 'created' = ANY (s.given) THEN coalesce(s.created, now())"
	"   ELSE coalesce(o.created, now()) END AS created,"
	"  CASE WHEN 'approved_at' = ANY (s.given)"
	"   AND (s.approved_at IS NOT NULL OR s.status NOT BETWEEN 6 AND 11)"
	"   THEN s.approved_at ELSE o.approved_at END AS approved_at0,"
	"  CASE WHEN s.status = 4 THEN coalesce(s.hold_until,"
	"   CASE WHEN o.status = 4 THEN o.hold_until END,"
	"   now() + f.hold_days * interval '1 day') END AS hold_until"
	" FROM import_leads s"
	" JOIN offers f ON f.id = s.offer"
	" LEFT JOIN leads o ON o.id = s.rid"
	" LEFT JOIN import_new i ON i.line = s.line"
	" LEFT JOIN goals g ON g.offer = s.offer AND g.code = s.goal"
	"), n AS MATERIALIZED ("
	" SELECT m.*, CASE WHEN m.approved_at0 IS NULL AND m.status BETWEEN 6 AND 11"
	"  THEN m.created ELSE m.approved_at0 END AS approved_at"
	" FROM m"
	"), ins AS ("
	" INSERT INTO leads (id, offer, " IMPORT_LEAD_COLS ")"
	" SELECT id, offer, " IMPORT_LEAD_COLS " FROM n WHERE NOT n.existed"
	" RETURNING leads.id, " IMPORT_NEW_AFTER("leads") " AS b"
	"), upd AS ("
	" UPDATE leads l SET (" IMPORT_LEAD_COLS ", updated) ="
	"  (" IMPORT_LEAD_OF(IMPORT_N) ", now())"
	" FROM n JOIN leads o ON o.id = n.id WHERE n.existed AND l.id = n.id"
	"  AND (" IMPORT_LEAD_OF(IMPORT_L) ")"
	"  IS DISTINCT FROM (" IMPORT_LEAD_OF(IMPORT_N) ")"
	" RETURNING l.id, lead_fields(o) AS a, lead_fields(l) AS b"
	")"
	" " LEAD_STORE_HISTORY_INSERT
	" SELECT id, 'import', NULL::bigint, '{}', b FROM ins"
	" UNION ALL SELECT x.id, 'import', NULL, d.before, d.after"
	" FROM upd x, lead_changes(x.a, x.b) d";

/* Raises the leads sequence past the largest imported id, so an id drawn
 * later never meets one. The lock keeps inserts (and so nextval) out while
 * the sequence moves; it is taken only when the sequence must move. */
static const char import_seq_check_sql[] =
	"SELECT 1 FROM (SELECT pg_get_serial_sequence('leads', 'id')::regclass AS seq,"
	" (SELECT max(id) FROM import_leads) AS top) q"
	" WHERE q.top > coalesce(pg_sequence_last_value(q.seq), 0)";
static const char import_seq_bump_sql[] =
	"SELECT setval(q.seq, q.top) FROM (SELECT pg_get_serial_sequence('leads', 'id')::regclass"
	" AS seq, (SELECT max(id) FROM import_leads) AS top) q"
	" WHERE q.top > coalesce(pg_sequence_last_value(q.seq), 0)";

static int import__apply_leads(struct import *im)
{
	PGresult *r = NULL;
	size_t i;
	int rc = -1;

	if (store_exec(im->c, "leads: analyze", "ANALYZE import_leads", 0, NULL, im->err,
		       im->errlen) < 0)
		goto out;
	for (i = 0; i < NFIELDS(import_checks); i++) {
		if (!import_checks[i].fmt) {
			if (store_exec(im->c, import_checks[i].what, import_checks[i].sql, 0, NULL,
				       im->err, im->errlen) < 0)
				goto out;
		} else if (import__verify(im, import_checks[i].what, import_checks[i].sql,
					  import_checks[i].fmt) < 0) {
			goto out;
		}
	}
	if (store_exec(im->c, "leads: apply", import_apply_sql, 0, NULL, im->err, im->errlen) < 0)
		goto out;
	r = store_query(im->c, "leads: sequence", import_seq_check_sql, 0, NULL, im->err,
			im->errlen);
	if (!r)
		goto out;
	if (PQntuples(r) &&
	    (store_exec(im->c, "leads: sequence", "LOCK TABLE leads IN SHARE ROW EXCLUSIVE MODE", 0,
			NULL, im->err, im->errlen) < 0 ||
	     store_exec(im->c, "leads: sequence", import_seq_bump_sql, 0, NULL, im->err,
			im->errlen) < 0))
		goto out;
	rc = 0;
out:
	PQclear(r);
	return rc;
}

/* ---- lines ---- */

static const struct import_kind import_kinds[] = {
	{ "advertiser", "advertisers", import_advertiser_fields, NFIELDS(import_advertiser_fields),
	  offsetof(struct import_stats, advertisers), NULL, NULL, import__upsert },
	{ "offer", "offers", import_offer_fields, NFIELDS(import_offer_fields),
	  offsetof(struct import_stats, offers), "advertiser", NULL, import__upsert },
	{ "goal", "goals", import_goal_fields, NFIELDS(import_goal_fields),
	  offsetof(struct import_stats, goals), "offer", import__goal_check, import__upsert },
	{ "lead", "leads", import_lead_fields, NFIELDS(import_lead_fields),
	  offsetof(struct import_stats, leads), NULL, NULL, NULL }, /* import__lead_parse */
	{ "click", "clicks", import_click_fields, NFIELDS(import_click_fields),
	  offsetof(struct import_stats, clicks), "offer", NULL, import__upsert },
};

/* Remembers the rule an offer line names (import_missing_rules). */
static void import__note_rule(struct import *im, const struct import_val *v)
{
	struct import_stats *st = im->st;
	const char *name = NULL;
	int64_t offer = 0;
	size_t i;

	for (i = 0; i < NFIELDS(import_offer_fields); i++) {
		if (strcmp(import_offer_fields[i].key, "rule") == 0)
			name = import__text(im, &v[i]);
		else if (strcmp(import_offer_fields[i].key, "id") == 0)
			offer = v[i].num;
	}
	if (!name)
		return; /* absent or null: not polled */
	for (i = 0; i < st->nrules; i++)
		if (strcmp(st->rules[i].name, name) == 0) {
			st->rules[i].offers++;
			return;
		}
	if (st->nrules == IMPORT_RULES_MAX) {
		st->rules_more++;
		return;
	}
	st->rules[st->nrules].offer = offer;
	st->rules[st->nrules].offers = 1;
	snprintf(st->rules[st->nrules].name, sizeof(st->rules[0].name), "%s", name);
	st->nrules++;
}

static int import__record(struct import *im, const char *text, size_t len)
{
	struct import_val v[IMPORT_FIELDS_MAX];
	const struct import_kind *k = NULL;
	const char *end = NULL;
	cJSON *root;
	const cJSON *rec;
	size_t i;
	int rc = -1;

	im->kind = NULL;
	im->subject[0] = '\0';
	buf_reset(&im->vals);
	if (!buf_utf8_ok(text, len))
		return import__fail(im, "not valid UTF-8 text");
	root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!root) {
		size_t col = end && end >= text ? (size_t)(end - text) + 1 : 1;

		return import__fail(im, "invalid JSON at column %zu", col);
	}
	if (end != text + len) {
		import__fail(im, "text after the JSON value at column %zu", (size_t)(end - text) + 1);
		goto out;
	}
	if (!cJSON_IsObject(root) || cJSON_GetArraySize(root) != 1) {
		import__fail(im, "a line must be an object with one key: advertiser, offer, goal, lead or click");
		goto out;
	}
	rec = root->child;
	for (i = 0; i < NFIELDS(import_kinds); i++)
		if (strcmp(rec->string, import_kinds[i].name) == 0)
			k = &import_kinds[i];
	if (!k) {
		char q[96];

		import__fail(im, "unknown record '%s': want advertiser, offer, goal, lead or click",
			     import__q(rec->string, q, sizeof(q)));
		goto out;
	}
	im->kind = k->name;
	snprintf(im->subject, sizeof(im->subject), "%s", k->name);
	if (!cJSON_IsObject(rec)) {
		import__fail(im, "the record must be an object");
		goto out;
	}
	(*(size_t *)((char *)im->st + k->stat))++;
	if (!k->apply) {
		rc = import__lead_parse(im, rec, 0, &im->lead) < 0 ? -1
		     : import__lead_stage(im, im->line, &im->lead);
		goto out;
	}
	for (i = 0; i < k->nfields; i++)
		if (import__field(im, rec, &k->fields[i], &v[i]) < 0)
			goto out;
	if (import__groups(im, rec, k) < 0)
		goto out;
	if (k->check && k->check(im, k, v) < 0)
		goto out;
	if (im->copying && import__copy_end(im, NULL) < 0)
		goto out;
	rc = k->apply(im, k, v);
	if (rc == 0 && k->fields == import_offer_fields)
		import__note_rule(im, v);
out:
	cJSON_Delete(root);
	return rc;
}

static int import__currencies(struct import *im)
{
	PGresult *r = store_query(im->c, "currencies", "SELECT id, iso FROM currencies", 0, NULL,
				  im->err, im->errlen);
	int i, n;

	if (!r)
		return -1;
	n = PQntuples(r);
	im->curr = calloc((size_t)n + 1, sizeof(*im->curr));
	if (!im->curr) {
		PQclear(r);
		snprintf(im->err, im->errlen, "currencies: out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		im->curr[i].id = (int)strtol(PQgetvalue(r, i, 0), NULL, 10);
		snprintf(im->curr[i].iso, sizeof(im->curr[i].iso), "%s", PQgetvalue(r, i, 1));
	}
	im->ncurr = (size_t)n;
	PQclear(r);
	return 0;
}

/* Prefixes err with "UNIT POS: " (import: line, intake: lead). */
static void import__at(char *err, size_t errlen, const char *unit, size_t pos)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", err);
	snprintf(err, errlen, "%s %zu: %s", unit, pos, msg);
}

/* The staged leads' ids in line order, before the commit. */
static int import__ids(struct import *im, int64_t *ids, size_t maxids, size_t *nids)
{
	PGresult *r;
	int i, n;

	*nids = 0;
	if (!im->staged)
		return 0;
	r = store_query(im->c, "leads: ids", "SELECT coalesce(s.rid, i.id) FROM import_leads s"
			" LEFT JOIN import_new i ON i.line = s.line ORDER BY s.line", 0, NULL,
			im->err, im->errlen);
	if (!r)
		return -1;
	n = PQntuples(r);
	for (i = 0; i < n && (size_t)i < maxids; i++)
		ids[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
	*nids = (size_t)n;
	PQclear(r);
	return 0;
}

struct import *import_begin(PGconn *c, struct import_stats *st, char *err, size_t errlen)
{
	struct import *im = calloc(1, sizeof(*im));

	memset(st, 0, sizeof(*st));
	if (!im) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	im->c = c;
	im->st = st;
	im->err = err;
	im->errlen = errlen;
	im->currency = import_currency;
	im->cdata = im;
	buf_init(&im->vals, IMPORT_LINE_MAX * 2);
	buf_init(&im->copy, 0);
	if (PQtransactionStatus(c) != PQTRANS_IDLE) {
		snprintf(err, errlen, "the connection is busy or inside a transaction");
		goto fail;
	}
	if (store_exec(c, "begin", "BEGIN", 0, NULL, err, errlen) < 0)
		goto fail;
	im->begun = true;
	/* The staged statements run once over up to millions of rows: JIT
	 * compiling them cost more (2.3 s of a million-lead apply) than it won. */
	if (store_exec(c, "begin", "SET LOCAL jit = off", 0, NULL, err, errlen) < 0 ||
	    import__currencies(im) < 0)
		goto fail;
	return im;
fail:
	import_free(im);
	return NULL;
}

int import_commit(struct import *im, int64_t *ids, size_t maxids, size_t *nids, size_t *pos,
		  char *err, size_t errlen)
{
	size_t n = 0;

	im->err = err;
	im->errlen = errlen;
	im->line = 0;
	im->subject[0] = '\0';
	im->errpos = 0;
	*pos = 0;
	if (import__copy_end(im, NULL) < 0 || (im->staged && import__apply_leads(im) < 0) ||
	    (ids && import__ids(im, ids, maxids, &n) < 0)) {
		*pos = im->errpos;
		return -1;
	}
	if (nids)
		*nids = n;
	im->begun = false;
	return store_exec(im->c, "commit", "COMMIT", 0, NULL, err, errlen);
}

void import_free(struct import *im)
{
	if (!im)
		return;
	if (im->copying)
		(void)import__copy_end(im, "import failed");
	if (im->begun)
		PQclear(PQexec(im->c, "ROLLBACK"));
	free(im->curr);
	free(im->zones);
	buf_release(&im->vals);
	buf_release(&im->copy);
	free(im);
}

int import_run(PGconn *c, FILE *in, struct import_stats *st, char *err, size_t errlen)
{
	struct import_reader rd = { .in = in };
	struct import *im = NULL;
	size_t pos;
	int rc = -1, got;

	buf_init(&rd.line, IMPORT_LINE_MAX);
	rd.chunk = malloc(IMPORT_CHUNK);
	if (!rd.chunk) {
		memset(st, 0, sizeof(*st));
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	im = import_begin(c, st, err, errlen);
	if (!im)
		goto out;
	while ((got = import__read(&rd)) != 0) {
		char *p = rd.line.p;
		size_t n = rd.line.len;

		im->line = ++st->lines;
		im->subject[0] = '\0';
		if (got == -1) {
			import__fail(im, "longer than %zu bytes", IMPORT_LINE_MAX);
			goto out;
		}
		if (got == -2) {
			import__fail(im, "read error");
			goto out;
		}
		if (im->line == 1 && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
			p += 3; /* a byte order mark */
			n -= 3;
		}
		while (n && (*p == ' ' || *p == '\t' || *p == '\r')) {
			p++;
			n--;
		}
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
			n--;
		if (!n || *p == '#')
			continue;
		if (import__record(im, p, n) < 0)
			goto out;
	}
	if (import_commit(im, NULL, 0, NULL, &pos, err, errlen) < 0) {
		if (pos)
			import__at(err, errlen, "line", pos);
		goto out;
	}
	rc = 0;
out:
	import_free(im);
	free(rd.chunk);
	buf_release(&rd.line);
	return rc;
}

int import_missing_rules(const struct import_stats *st, const char *rules_dir, struct buf *out)
{
	const char *dir = rules_dir && *rules_dir ? rules_dir : ".";
	char path[4096];
	struct stat sb;
	size_t i;
	int n = 0;

	for (i = 0; i < st->nrules; i++) {
		const struct import_rule *r = &st->rules[i];
		int l = snprintf(path, sizeof(path), "%s/%s.lua", dir, r->name);

		if (l > 0 && (size_t)l < sizeof(path) && stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
			continue;
		if ((r->offers > 1 ? buf_addf(out, "offer %" PRId64 " and %zu more name", r->offer,
					      r->offers - 1)
				   : buf_addf(out, "offer %" PRId64 " names", r->offer)) < 0 ||
		    buf_addf(out, " rule '%s', but %s does not exist (imported: deploy the rule "
				  "to poll it)\n",
			     r->name, path) < 0)
			return -1;
		n++;
	}
	if (st->rules_more) {
		if (buf_addf(out, "%zu more offer lines name rules past the first %d; their files "
				  "were not checked\n",
			     st->rules_more, IMPORT_RULES_MAX) < 0)
			return -1;
		n++;
	}
	return n;
}
