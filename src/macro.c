/* macro: {name} expansion in poll requests and the dates variant's values. */
#include "macro.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tz.h"

enum macro_src { MS_IDS, MS_EXTS, MS_DATE };

struct macro_builtin {
	const char *name;
	enum macro_src src;
	size_t off; /* MS_DATE: the field in struct macro_dates */
};

static const struct macro_builtin macro_builtins[] = {
	{ "idsl", MS_IDS, 0 },
	{ "idel", MS_EXTS, 0 },
	{ "ids", MS_IDS, 0 },
	{ "ide", MS_EXTS, 0 },
	{ "from", MS_DATE, offsetof(struct macro_dates, from) },
	{ "to", MS_DATE, offsetof(struct macro_dates, to) },
	{ "ffrom", MS_DATE, offsetof(struct macro_dates, ffrom) },
	{ "fto", MS_DATE, offsetof(struct macro_dates, fto) },
	{ "ufrom", MS_DATE, offsetof(struct macro_dates, ufrom) },
	{ "uto", MS_DATE, offsetof(struct macro_dates, uto) },
	{ "tom", MS_DATE, offsetof(struct macro_dates, tom) },
	{ "ftom", MS_DATE, offsetof(struct macro_dates, ftom) },
	{ "utom", MS_DATE, offsetof(struct macro_dates, utom) },
};
#define MACRO_NBUILTINS (sizeof(macro_builtins) / sizeof(macro_builtins[0]))

/* How a value is written in URL mode. */
enum macro_enc {
	ME_VALUE, /* always percent-encoded */
	ME_PARAM, /* URL text before the query, a value after it */
};

/* One expansion in progress. out is NULL when only checking. */
struct macro_run {
	const struct macro_ctx *c;
	enum macro_mode mode;
	struct buf *out;
	bool in_query; /* URL mode: a '?' or '#' has been written */
	char *err;
	size_t errlen;
};

static bool macro_name_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool macro_name_char(char ch)
{
	return macro_name_start(ch) || (ch >= '0' && ch <= '9');
}

static const struct macro_builtin *macro_builtin_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < MACRO_NBUILTINS; i++)
		if (strlen(macro_builtins[i].name) == len &&
		    memcmp(macro_builtins[i].name, name, len) == 0)
			return &macro_builtins[i];
	return NULL;
}

static const struct macro_param *macro_param_find(const struct macro_ctx *c, const char *name,
						  size_t len)
{
	size_t i;

	for (i = 0; i < c->nparams; i++)
		if (c->params[i].name && strlen(c->params[i].name) == len &&
		    memcmp(c->params[i].name, name, len) == 0)
			return &c->params[i];
	return NULL;
}

/* Percent-encodes only what can never stand in a URL. */
static int macro_add_urltext(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("\"<>\\^`{|}", ch)) {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			rc = buf_add(b, e, 3);
		} else
			rc = buf_addc(b, (char)ch);
	}
	return rc;
}

static bool macro_has_break(const char *s, size_t n)
{
	return memchr(s, '\r', n) || memchr(s, '\n', n);
}

static bool macro_has_query(const char *s, size_t n)
{
	return memchr(s, '?', n) || memchr(s, '#', n);
}

static int macro_too_long(struct macro_run *r)
{
	snprintf(r->err, r->errlen, "expanded text exceeds %zu bytes", r->out->max);
	return -1;
}

static int macro_literal(struct macro_run *r, const char *s, size_t n)
{
	if (r->mode == MACRO_HEADER && macro_has_break(s, n)) {
		snprintf(r->err, r->errlen, "header template holds a line break");
		return -1;
	}
	if (r->mode == MACRO_URL && macro_has_query(s, n))
		r->in_query = true;
	if (r->out && buf_add(r->out, s, n) < 0)
		return macro_too_long(r);
	return 0;
}

/* Writes one value of the macro {name} (name: len bytes). */
static int macro_value(struct macro_run *r, const char *name, size_t len, const char *v,
		       enum macro_enc enc)
{
	size_t n = strlen(v);
	int rc = 0;

	if (r->mode == MACRO_HEADER && macro_has_break(v, n)) {
		snprintf(r->err, r->errlen,
			 "macro '{%.*s}' expands to a line break, not allowed in a header",
			 (int)len, name);
		return -1;
	}
	if (r->mode == MACRO_URL && enc == ME_PARAM && !r->in_query) {
		r->in_query = macro_has_query(v, n);
		if (r->out)
			rc = macro_add_urltext(r->out, v, n);
	} else if (r->out)
		rc = r->mode == MACRO_URL ? buf_add_urlenc(r->out, v, n) : buf_add(r->out, v, n);
	return rc < 0 ? macro_too_long(r) : 0;
}

static int macro_id_list(struct macro_run *r, const char *name, size_t len, enum macro_src src)
{
	const struct macro_ctx *c = r->c;
	size_t i;
	int rc = 0;

	for (i = 0; i < c->n && rc == 0; i++) {
		char num[24];
		const char *v;

		if (i && r->out && buf_addc(r->out, ',') < 0) {
			rc = macro_too_long(r);
			break;
		}
		if (src == MS_IDS) {
			snprintf(num, sizeof(num), "%" PRId64, c->ids[i]);
			v = num;
		} else
			v = c->exts && c->exts[i] ? c->exts[i] : "";
		rc = macro_value(r, name, len, v, ME_VALUE);
	}
	return rc;
}

static int macro_one(struct macro_run *r, const char *name, size_t len)
{
	const struct macro_ctx *c = r->c;
	const struct macro_builtin *b = macro_builtin_find(name, len);
	const struct macro_param *p = b ? NULL : macro_param_find(c, name, len);
	const char *variant = c->variant;
	int rc = -1;

	if (b && b->src == MS_DATE && !c->dates) {
		if (variant)
			snprintf(r->err, r->errlen,
				 "macro '{%.*s}' is only for the dates variant, not '%s'", (int)len,
				 name, variant);
		else
			snprintf(r->err, r->errlen, "macro '{%.*s}' is only for the dates variant",
				 (int)len, name);
	} else if (b && b->src != MS_DATE && c->dates) {
		snprintf(r->err, r->errlen,
			 "macro '{%.*s}' is only for the processing and accepted variants, "
			 "not '%s'", (int)len, name, variant ? variant : "dates");
	} else if (b && b->src == MS_DATE)
		rc = macro_value(r, name, len, (const char *)c->dates + b->off, ME_VALUE);
	else if (b)
		rc = macro_id_list(r, name, len, b->src);
	else if (p)
		rc = macro_value(r, name, len, p->value ? p->value : "", ME_PARAM);
	else
		snprintf(r->err, r->errlen, "unknown macro '{%.*s}'", len > 64 ? 64 : (int)len,
			 name);
	return rc;
}

static int macro_run(struct macro_run *r, const char *tmpl)
{
	const char *s = tmpl;
	size_t start = r->out ? r->out->len : 0;
	int rc = 0;

	while (*s && rc == 0) {
		const char *brace = strchr(s, '{'), *e;

		if (!brace) {
			rc = macro_literal(r, s, strlen(s));
			break;
		}
		e = brace + 1;
		if (macro_name_start(*e)) {
			while (macro_name_char(*e))
				e++;
		}
		if (e == brace + 1 || *e != '}') {
			/* not a macro: the '{' is text */
			rc = macro_literal(r, s, (size_t)(brace + 1 - s));
			s = brace + 1;
			continue;
		}
		rc = macro_literal(r, s, (size_t)(brace - s));
		if (rc == 0)
			rc = macro_one(r, brace + 1, (size_t)(e - brace - 1));
		s = e + 1;
	}
	if (rc < 0 && r->out) {
		r->out->len = start;
		if (r->out->p)
			r->out->p[start] = '\0';
	}
	return rc;
}

int macro_expand(const struct macro_ctx *c, const char *tmpl, enum macro_mode m, struct buf *out,
		 char *err, size_t errlen)
{
	struct macro_run r = { c, m, out, false, err, errlen };

	return macro_run(&r, tmpl);
}

int macro_check(const struct macro_ctx *c, const char *tmpl, enum macro_mode m, char *err,
		size_t errlen)
{
	struct macro_run r = { c, m, NULL, false, err, errlen };

	return macro_run(&r, tmpl);
}

int macro_field_array(const char *tmpl)
{
	if (strcmp(tmpl, "{ids}") == 0)
		return MACRO_ARRAY_IDS;
	if (strcmp(tmpl, "{ide}") == 0)
		return MACRO_ARRAY_EXT;
	return MACRO_ARRAY_NONE;
}

int macro_check_params(const struct macro_param *p, size_t n, char *err, size_t errlen)
{
	size_t i, j;
	int rc = -1;

	for (i = 0; i < n; i++) {
		const char *name = p[i].name ? p[i].name : "";
		const char *k = name;

		if (macro_name_start(*k))
			while (macro_name_char(*k))
				k++;
		if (k == name || *k) {
			snprintf(err, errlen,
				 "param '%s' is not a macro name (letters, digits and '_', not "
				 "starting with a digit)", name);
			goto out;
		}
		if (macro_builtin_find(name, strlen(name))) {
			snprintf(err, errlen, "param '%s' shadows the built-in macro '{%s}'", name,
				 name);
			goto out;
		}
		for (j = 0; j < i; j++)
			if (strcmp(name, p[j].name) == 0) {
				snprintf(err, errlen, "param '%s' is given twice", name);
				goto out;
			}
	}
	rc = 0;
out:
	return rc;
}

static bool macro_civil_ok(struct macro_civil d)
{
	return d.y >= 1000 && d.y <= 9999 && tz_date_valid(d.y, d.m, d.d);
}

/* The date is checked; the modulos only show the compiler the widths. */
static void macro_fmt_date(char *dst, size_t n, int64_t y, int m, int d)
{
	snprintf(dst, n, "%04u-%02u-%02u", (unsigned)y % 10000u, (unsigned)m % 100u,
		 (unsigned)d % 100u);
}

/* Checks the range; *tom is the day after to. */
static int macro_range_check(struct macro_civil from, struct macro_civil to,
			     struct macro_civil *tom, char *err, size_t errlen)
{
	struct macro_civil bad = macro_civil_ok(from) ? to : from;
	int64_t tom_y;

	if (!macro_civil_ok(from) || !macro_civil_ok(to)) {
		snprintf(err, errlen, "bad date %04d-%02d-%02d", bad.y, bad.m, bad.d);
		return -1;
	}
	if (tz_days_from_civil(from.y, from.m, from.d) > tz_days_from_civil(to.y, to.m, to.d)) {
		snprintf(err, errlen, "date range %04d-%02d-%02d..%04d-%02d-%02d is backwards",
			 from.y, from.m, from.d, to.y, to.m, to.d);
		return -1;
	}
	tz_civil_from_days(tz_days_from_civil(to.y, to.m, to.d) + 1, &tom_y, &tom->m, &tom->d);
	if (tom_y > 9999) {
		snprintf(err, errlen, "date range ends too late (%04d-%02d-%02d)", to.y, to.m,
			 to.d);
		return -1;
	}
	tom->y = (int)tom_y;
	return 0;
}

int macro_dates_set(struct macro_civil from, struct macro_civil to, int64_t t_from,
		    int64_t t_tom, struct macro_dates *out, char *err, size_t errlen)
{
	struct macro_civil tom;

	if (macro_range_check(from, to, &tom, err, errlen) < 0)
		return -1;
	memset(out, 0, sizeof(*out));
	out->t_from = t_from;
	out->t_tom = t_tom;
	/* the last second of `to`: 23:59:59 unless a transition at midnight
	 * moves the start of tom */
	out->t_to = out->t_tom - 1;
	macro_fmt_date(out->from, sizeof(out->from), from.y, from.m, from.d);
	macro_fmt_date(out->to, sizeof(out->to), to.y, to.m, to.d);
	macro_fmt_date(out->tom, sizeof(out->tom), tom.y, tom.m, tom.d);
	snprintf(out->ffrom, sizeof(out->ffrom), "%s 00:00:00", out->from);
	snprintf(out->fto, sizeof(out->fto), "%s 23:59:59", out->to);
	snprintf(out->ftom, sizeof(out->ftom), "%s 00:00:00", out->tom);
	snprintf(out->ufrom, sizeof(out->ufrom), "%" PRId64, out->t_from);
	snprintf(out->uto, sizeof(out->uto), "%" PRId64, out->t_to);
	snprintf(out->utom, sizeof(out->utom), "%" PRId64, out->t_tom);
	return 0;
}

int macro_dates_compute(const char *tz, struct macro_civil from, struct macro_civil to,
			struct macro_dates *out, char *err, size_t errlen)
{
	struct macro_civil tom;
	int64_t t_from, t_tom;

	if (macro_range_check(from, to, &tom, err, errlen) < 0 ||
	    tz_local_to_utc(tz, from.y, from.m, from.d, 0, 0, 0, &t_from, err, errlen) < 0 ||
	    tz_local_to_utc(tz, tom.y, tom.m, tom.d, 0, 0, 0, &t_tom, err, errlen) < 0)
		return -1;
	return macro_dates_set(from, to, t_from, t_tom, out, err, errlen);
}

/* Joins the ids or external ids of c into b. */
static int macro_join(const struct macro_ctx *c, enum macro_src src, struct buf *b)
{
	size_t i;
	int rc = 0;

	buf_reset(b);
	for (i = 0; i < c->n && rc == 0; i++) {
		if (i)
			rc = buf_addc(b, ',');
		if (rc == 0 && src == MS_IDS)
			rc = buf_addf(b, "%" PRId64, c->ids[i]);
		else if (rc == 0)
			rc = buf_adds(b, c->exts && c->exts[i] ? c->exts[i] : "");
	}
	/* an empty list still needs a string */
	if (rc == 0 && !b->p)
		rc = buf_add(b, "", 0);
	return rc;
}

int macro_each(const struct macro_ctx *c, macro_each_fn cb, void *ud)
{
	struct buf b;
	size_t i;
	int rc = 0;

	buf_init(&b, 0);
	for (i = 0; i < MACRO_NBUILTINS && rc == 0; i++) {
		const struct macro_builtin *mb = &macro_builtins[i];
		const char *v;

		if (mb->src == MS_DATE) {
			if (!c->dates)
				continue;
			v = (const char *)c->dates + mb->off;
			rc = cb(ud, MACRO_KIND_DATES, mb->name, v, strlen(v));
		} else if (!c->dates && (strcmp(mb->name, "idsl") == 0 ||
					 strcmp(mb->name, "idel") == 0)) {
			if (macro_join(c, mb->src, &b) < 0) {
				rc = -1;
				break;
			}
			rc = cb(ud, MACRO_KIND_IDS, mb->name, b.p, b.len);
		}
	}
	for (i = 0; i < c->nparams && rc == 0; i++) {
		const char *v = c->params[i].value ? c->params[i].value : "";

		rc = cb(ud, MACRO_KIND_PARAM, c->params[i].name, v, strlen(v));
	}
	buf_release(&b);
	return rc;
}
