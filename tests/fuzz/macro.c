/* fuzz target macro: macro_expand / macro_check / macro_check_params /
 * macro_field_array / macro_each (macro.h) on any template, parameters,
 * ids and external ids, in each mode and variant. Checked: no crash or
 * sanitizer report, macro_check agrees with macro_expand, a failed
 * expansion leaves the buffer as it was, and a header never gets CR/LF.
 *
 * Input: byte 0 picks the mode (%3) and the variant (/3%3: processing,
 * accepted, dates); then NUL-separated: the template, then up to 4
 * parameter name/value pairs, then up to 4 external ids (the ids are
 * 1..n, and one past 2^53). */
#include <stdio.h>

#include "buf.h"
#include "fuzz.h"
#include "macro.h"

static int each_cb(void *ud, enum macro_kind kind, const char *name, const char *value, size_t len)
{
	size_t *n = ud;

	if (!name || !value || strlen(value) != len)
		abort();
	(void)kind;
	*n += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const variants[] = { "processing", "accepted", "dates" };
	struct macro_param params[4];
	const char *exts[4];
	int64_t ids[4] = { 1, 2, 3, INT64_C(9007199254740993) };
	struct macro_dates dates;
	struct macro_ctx c;
	struct buf out;
	char err[256], err2[256];
	unsigned sel, i, np, ne;
	const char *tmpl;
	size_t seen = 0;
	struct fz f;
	int rc, rc2;

	if (fz_open(&f, data, size) < 0)
		return 0;
	sel = fz_byte(&f);
	tmpl = fz_next(&f);
	np = fz_byte(&f) % 5;
	for (i = 0; i < np; i++) {
		params[i].name = fz_next(&f);
		params[i].value = fz_next(&f);
	}
	ne = fz_byte(&f) % 5;
	for (i = 0; i < ne; i++)
		exts[i] = fz_next(&f);

	memset(&c, 0, sizeof(c));
	c.variant = variants[sel / 3 % 3];
	if (sel / 3 % 3 == 2) {
		struct macro_civil a = { 2026, 3, 8 }, b = { 2026, 3, 9 };

		if (macro_dates_compute(NULL, a, b, &dates, err, sizeof(err)) < 0)
			abort();
		c.dates = &dates;
	} else {
		c.ids = ids;
		c.exts = ne ? exts : NULL;
		c.n = ne;
	}
	/* Parameters that fail the load-time check are still expanded: the
	 * expander must not depend on the check for its safety. */
	if (macro_check_params(params, np, err, sizeof(err)) < 0)
		err[0] = '\0';
	c.params = params;
	c.nparams = np;
	(void)macro_field_array(tmpl);

	buf_init(&out, 1 << 20);
	if (buf_addf(&out, "%s", "pre") < 0)
		abort();
	rc = macro_expand(&c, tmpl, (enum macro_mode)(sel % 3), &out, err, sizeof(err));
	rc2 = macro_check(&c, tmpl, (enum macro_mode)(sel % 3), err2, sizeof(err2));
	if (rc < 0) {
		if (out.len != 3 || memcmp(out.p, "pre", 3) != 0)
			abort(); /* a failed expansion must leave out as it was */
	} else {
		if (sel % 3 == MACRO_HEADER && (memchr(out.p, '\r', out.len) || memchr(out.p, '\n', out.len)))
			abort(); /* header injection */
	}
	if ((rc < 0) != (rc2 < 0)) {
		fprintf(stderr, "macro_expand %d (%s) but macro_check %d (%s)\n", rc,
			rc < 0 ? err : "", rc2, rc2 < 0 ? err2 : "");
		abort();
	}
	buf_release(&out);
	if (macro_each(&c, each_cb, &seen) != 0)
		abort();
	fz_close(&f);
	return 0;
}
