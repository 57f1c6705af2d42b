/* macro: expands the {name} macros of a rule's request (URL, data fields,
 * headers) for one poll request (DESIGN.md "Pull: polling the CRM", seed
 * 001), and computes the date values of the dates variant. Pure: no I/O
 * except the time zone files tz reads (once per zone); macro_expand
 * allocates nothing but the growth of the caller's output buffer.
 *
 * Syntax. A macro is '{' NAME '}' with NAME = [A-Za-z_][A-Za-z0-9_]*, case
 * sensitive. Any other '{' is literal text, so JSON bodies such as
 * {"a":1} or {{idsl}} (a literal '{', the macro, a literal '}') pass
 * through. There is no escape: a literal "{idsl}" can only be written by
 * the rule's prepare code. An unknown NAME is an error,
 * "unknown macro '{idz}'"; the caller prefixes the offer.
 *
 * Built-in macros, by variant:
 *   processing, accepted (c->dates == NULL):
 *     {idsl} internal ids comma-joined   {idel} external ids comma-joined
 *     {ids}  {ide}: in data fields, a field whose whole value is exactly
 *            "{ids}" or "{ide}" becomes an array (macro_field_array; the
 *            caller builds it); anywhere else they expand like {idsl} and
 *            {idel}.
 *   dates (c->dates != NULL):
 *     {from} {to}     YYYY-MM-DD
 *     {ffrom} {fto}   "YYYY-MM-DD HH:MM:SS": from 00:00:00, to 23:59:59.
 *                     Seed 001 writes this form "ГГГГ-ДД-ММ ЧЧ:ММ:СС"
 *                     (year-day-month); DESIGN.md reads that as a slip for
 *                     year-month-day, and so do we. A CRM that wants another
 *                     form builds it in prepare from ufrom.
 *     {ufrom} {uto}   UNIX time of from 00:00:00 and of the last second of
 *                     `to` (to 23:59:59, or the second before tom starts
 *                     when a transition falls at midnight)
 *     {tom}           to + 1 day, YYYY-MM-DD
 *     {ftom} {utom}   tom 00:00:00 as date-time and as UNIX time
 *   All in the offer's time zone (tz.h; NULL or "" = UTC).
 * A built-in of the other variant is an error naming the variant:
 *   "macro '{from}' is only for the dates variant, not 'processing'".
 *
 * Offer parameters ({host}, {key}, any name the offer gives) expand to
 * their value. A parameter may not shadow a built-in macro:
 * macro_check_params() reports it at load time, and macro_expand() uses
 * the built-in regardless.
 *
 * Modes:
 *   MACRO_URL     ids and dates are percent-encoded (RFC 3986 unreserved
 *                 characters kept, buf_add_urlenc), each id on its own, the
 *                 joining commas literal. Offer parameters are trusted
 *                 configuration and may carry URL structure ({host} =
 *                 "127.0.0.1:9001"), so before the query starts (no '?' or
 *                 '#' yet in the output) a parameter goes in as URL text:
 *                 only bytes never valid in a URL (controls, space,
 *                 non-ASCII, "<>\^`{|}) are percent-encoded ('%' is kept,
 *                 so a value may come pre-encoded). In the query and
 *                 fragment a parameter is a value and fully encoded.
 *   MACRO_RAW     values as they are (data fields; the request builder
 *                 encodes the body).
 *   MACRO_HEADER  as RAW, but a value or template holding CR or LF is an
 *                 error (no header injection).
 */
#ifndef LEADSYNC_MACRO_H
#define LEADSYNC_MACRO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct macro_param {
	const char *name;
	const char *value; /* NULL reads as "" */
};

/* A civil date, proleptic Gregorian. */
struct macro_civil {
	int y, m, d;
};

/* The dates variant's values, all NUL-terminated. */
struct macro_dates {
	char from[11], to[11], tom[11];    /* YYYY-MM-DD */
	char ffrom[20], fto[20], ftom[20]; /* YYYY-MM-DD HH:MM:SS */
	char ufrom[21], uto[21], utom[21]; /* decimal UNIX time */
	int64_t t_from, t_to, t_tom;       /* the same UNIX times as numbers */
};

/* Everything one request's macros may expand to. The struct and what it
 * points to are the caller's and must outlive the call. */
struct macro_ctx {
	const char *variant;       /* "processing", "accepted", "dates": for
				    * messages only; may be NULL */
	const int64_t *ids;        /* id variants: n internal ids */
	const char *const *exts;   /* id variants: n external ids (arbitrary
				    * strings; NULL array or entries read as "") */
	size_t n;
	const struct macro_dates *dates; /* dates variant; NULL for the id variants */
	const struct macro_param *params;
	size_t nparams;
};

enum macro_mode { MACRO_URL, MACRO_RAW, MACRO_HEADER };

/* Appends tmpl expanded to out. Returns 0, or -1 with err set and out as it
 * was (unknown or wrong-variant macro, a line break in a header, output
 * past out->max or out of memory). */
__attribute__((warn_unused_result))
int macro_expand(const struct macro_ctx *c, const char *tmpl, enum macro_mode m, struct buf *out,
		 char *err, size_t errlen);

/* Checks tmpl as macro_expand would, without output: for rule load time,
 * with a ctx of the variant (ids may be empty, dates any value). */
__attribute__((warn_unused_result))
int macro_check(const struct macro_ctx *c, const char *tmpl, enum macro_mode m, char *err,
		size_t errlen);

enum { MACRO_ARRAY_NONE = 0, MACRO_ARRAY_IDS, MACRO_ARRAY_EXT };

/* For a data field's template: MACRO_ARRAY_IDS when it is exactly "{ids}",
 * MACRO_ARRAY_EXT when exactly "{ide}", else MACRO_ARRAY_NONE. Only the id
 * variants have arrays: in the dates variant pass the field to
 * macro_expand, which reports the wrong variant. */
int macro_field_array(const char *tmpl);

/* Checks an offer's parameters: each name a macro name, given once, not a
 * built-in ("param 'from' shadows the built-in macro '{from}'"). */
__attribute__((warn_unused_result))
int macro_check_params(const struct macro_param *p, size_t n, char *err, size_t errlen);

/* Fills *out for the local days from..to (inclusive) whose UTC bounds are
 * already known: t_from the first instant of from, t_tom the first instant
 * of the day after to (the daemon has PostgreSQL compute them in the
 * offer's zone). Dates are checked as macro_dates_compute does. */
__attribute__((warn_unused_result))
int macro_dates_set(struct macro_civil from, struct macro_civil to, int64_t t_from,
		    int64_t t_tom, struct macro_dates *out, char *err, size_t errlen);

/* macro_dates_set with the bounds computed by tz.h (the offline `rule
 * test`): the local days from..to (inclusive) in zone tz. Dates
 * must be real, from <= to, years 1000..9999 and to before 9999-12-31.
 * Errors: "bad date 2026-02-30", "date range 2026-03-09..2026-03-08 is
 * backwards", or tz's message. */
__attribute__((warn_unused_result))
int macro_dates_compute(const char *tz, struct macro_civil from, struct macro_civil to,
			struct macro_dates *out, char *err, size_t errlen);

/* What macro_each reports. */
enum macro_kind {
	MACRO_KIND_IDS,   /* idsl, idel (the arrays ids/ide are not strings) */
	MACRO_KIND_DATES, /* from, to, ffrom, fto, ufrom, uto, tom, ftom, utom */
	MACRO_KIND_PARAM, /* the offer's parameters, in order, all of them */
};
typedef int (*macro_each_fn)(void *ud, enum macro_kind kind, const char *name,
			     const char *value, size_t len);

/* Calls cb with every string value a ctx offers, raw (never encoded): the
 * variables prepare sees, then the offer's parameters. value is
 * NUL-terminated and valid during the call only. cb returns 0 to go on;
 * any other value stops the walk and is returned. -1 also means out of
 * memory (joining the ids allocates a scratch buffer). */
int macro_each(const struct macro_ctx *c, macro_each_fn cb, void *ud);

#endif
