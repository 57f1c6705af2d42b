/* fuzz target postback: postback parameter parsing (postback.h
 * postback_params_parse) from a query string and a JSON or form body, as
 * the listener hands them over (listener_form_parse for the query and the
 * body form). Checked: an answer is 0, 400 or 500 with a message exactly
 * when not 0; an accepted request has every required parameter, click_id
 * as a lower-case UUID, values that are UTF-8 without NUL and within
 * their length, and a price in range.
 *
 * Input: byte 0: POST (bit 0); then NUL-separated: the Content-Type ("":
 * none), the query; the rest is the body. */
#include <ctype.h>
#include <stdio.h>

#include "buf.h"
#include "fuzz.h"
#include "listener.h"
#include "postback.h"

struct body {
	const char *s;
	size_t n;
	struct listener_form f;
	int parsed; /* 0 not yet, 1 parsed, -1 out of memory */
};

static const struct listener_form *body_form(void *ud)
{
	struct body *b = ud;

	if (!b->parsed)
		b->parsed = listener_form_parse(&b->f, b->s, b->n) == 0 ? 1 : -1;
	return b->parsed == 1 ? &b->f : NULL;
}

static void check_accepted(const struct postback_params *pp)
{
	static const size_t max[POSTBACK_NPARAMS] = { 64, 255, 64, 255, 32, 255 };
	const char *u = pp->v[0];
	int k, i;

	for (k = 0; k < POSTBACK_NPARAMS; k++)
		if (pp->v[k] && (!buf_utf8_ok(pp->v[k], strlen(pp->v[k])) || !*pp->v[k] ||
				 strlen(pp->v[k]) > max[k]))
			abort();
	if (!u || !pp->v[3] || (!pp->cust && (!pp->v[1] || !pp->v[2])) ||
	    (pp->cust && !pp->v[5]))
		abort(); /* a required parameter missing */
	if (strlen(u) != 36)
		abort();
	for (i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? u[i] != '-'
							       : !isxdigit((unsigned char)u[i]) ||
								 isupper((unsigned char)u[i]))
			abort();
	if (pp->v[4] && (pp->price < 0 || pp->price > INT64_C(99999999999999)))
		abort();
	if (pp->cust < 0 || pp->cust > 2)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct postback_params pp;
	struct listener_form q;
	struct body b = { 0 };
	const char *ct, *query;
	unsigned sel;
	struct fz f;

	if (fz_open(&f, data, size) < 0)
		return 0;
	sel = fz_byte(&f);
	ct = fz_next(&f);
	query = fz_next(&f);
	b.s = fz_rest(&f, &b.n);
	if (listener_form_parse(&q, query, strlen(query)) < 0) {
		fz_close(&f);
		return 0;
	}
	postback_params_parse(&pp, sel & 1, *ct ? ct : NULL, b.s, b.n, body_form, &b, &q);
	if (pp.status != 0 && pp.status != 400 && pp.status != 500)
		abort();
	if (!pp.status != !pp.err[0])
		abort();
	if (!pp.status)
		check_accepted(&pp);
	postback_params_release(&pp);
	if (b.parsed == 1)
		listener_form_release(&b.f);
	listener_form_release(&q);
	fz_close(&f);
	return 0;
}
