/* mask: hides secrets in printed URLs, headers, bodies and messages, the
 * same way for every command (see mask.h). */
#include "mask.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mask_init(struct mask *m)
{
	m->values = NULL;
	m->n = 0;
}

void mask_release(struct mask *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		free(m->values[i]);
	free(m->values);
	mask_init(m);
}

bool mask_name(const char *name)
{
	static const char *const words[] = { "key", "token", "secret", "pass", "auth", "sign" };
	char low[128];
	size_t i;

	for (i = 0; name[i] && i < sizeof(low) - 1; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	low[i] = '\0';
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(low, words[i]))
			return true;
	return false;
}

static int mask__add1(struct mask *m, const char *s)
{
	char **v;
	size_t i;

	if (!*s)
		return 0;
	for (i = 0; i < m->n; i++)
		if (strcmp(m->values[i], s) == 0)
			return 0;
	v = realloc(m->values, (m->n + 1) * sizeof(*v));
	if (!v)
		return -1;
	m->values = v;
	v[m->n] = strdup(s);
	if (!v[m->n])
		return -1;
	m->n++;
	return 0;
}

int mask_add(struct mask *m, const char *value)
{
	struct buf enc, f;
	size_t j;
	int rc = 0;

	buf_init(&enc, 0);
	buf_init(&f, 0);
	rc |= mask__add1(m, value);
	if (buf_add_urlenc(&enc, value, strlen(value)) < 0) {
		rc = -1;
		goto out;
	}
	rc |= mask__add1(m, enc.p ? enc.p : "");
	/* form encoding writes spaces as '+' */
	if (enc.p && strstr(enc.p, "%20")) {
		for (j = 0; j < enc.len; j++) {
			if (j + 2 < enc.len && memcmp(enc.p + j, "%20", 3) == 0) {
				rc |= buf_addc(&f, '+');
				j += 2;
			} else
				rc |= buf_addc(&f, enc.p[j]);
		}
		rc |= f.p ? mask__add1(m, f.p) : 0;
	}
out:
	buf_release(&enc);
	buf_release(&f);
	return rc ? -1 : 0;
}

int mask_param(struct mask *m, const char *name, const char *value, bool listed)
{
	if (listed || (mask_name(name) && strlen(value) >= MASK_VALUE_MIN))
		return mask_add(m, value);
	return 0;
}

/* Masks the values of credential-looking name=value pairs in s[0..len)
 * (a query after '?' and before '#', or a whole form body). */
static int mask__fields(const char *s, size_t len, bool url, struct buf *out)
{
	const char *q = s, *end = s + len, *stop = end;
	int e = 0;

	if (url) {
		q = memchr(s, '?', len);
		if (!q)
			return buf_add(out, s, len);
		q++;
		stop = memchr(q, '#', (size_t)(end - q));
		if (!stop)
			stop = end;
	}
	e |= buf_add(out, s, (size_t)(q - s));
	while (q < stop) {
		const char *amp = memchr(q, '&', (size_t)(stop - q)), *eq;
		char name[128];
		size_t nl;

		if (!amp)
			amp = stop;
		eq = memchr(q, '=', (size_t)(amp - q));
		nl = (size_t)((eq ? eq : amp) - q);
		snprintf(name, sizeof(name), "%.*s", (int)(nl < sizeof(name) ? nl : sizeof(name) - 1), q);
		if (eq && eq + 1 < amp && mask_name(name)) {
			e |= buf_add(out, q, (size_t)(eq + 1 - q));
			e |= buf_adds(out, "***");
		} else
			e |= buf_add(out, q, (size_t)(amp - q));
		if (amp < stop)
			e |= buf_addc(out, '&');
		q = amp + 1;
	}
	if (stop < end)
		e |= buf_add(out, stop, (size_t)(end - stop));
	return e ? -1 : 0;
}

int mask_text(const struct mask *m, const char *text, size_t len, enum mask_kind kind,
	      struct buf *out)
{
	struct buf tmp;
	size_t i = 0, run = 0, k, n = m ? m->n : 0;
	int e = 0;

	buf_init(&tmp, out->max);
	while (i < len) {
		size_t best = 0;

		for (k = 0; k < n; k++) {
			size_t sl = strlen(m->values[k]);

			if (sl > best && sl <= len - i && text[i] == m->values[k][0] &&
			    memcmp(text + i, m->values[k], sl) == 0)
				best = sl;
		}
		if (!best) {
			i++;
			continue;
		}
		e |= buf_add(&tmp, text + run, i - run);
		e |= buf_adds(&tmp, "***");
		i += best;
		run = i;
	}
	e |= buf_add(&tmp, text + run, len - run);
	if (!e) {
		if (kind == MASK_TEXT)
			e |= buf_add(out, tmp.p, tmp.len);
		else
			e |= mask__fields(tmp.p ? tmp.p : "", tmp.len, kind == MASK_URL, out);
	}
	buf_release(&tmp);
	return e ? -1 : 0;
}

char *mask_dup(const struct mask *m, const char *text, size_t len, enum mask_kind kind)
{
	struct buf b;

	buf_init(&b, BUF_DEFAULT_MAX);
	if (mask_text(m, text, len, kind, &b) < 0 || buf_adds(&b, "") < 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_steal(&b);
}

int mask_header(const struct mask *m, const char *name, const char *value, struct buf *out)
{
	size_t w = 0;

	if (!mask_name(name))
		return mask_text(m, value, strlen(value), MASK_TEXT, out);
	/* "Bearer abc": the scheme says how the CRM is asked, not who */
	while (isalpha((unsigned char)value[w]))
		w++;
	if (w && value[w] == ' ' && value[w + 1] && value[w + 1] != ' ') {
		if (buf_add(out, value, w + 1) < 0)
			return -1;
	}
	return buf_adds(out, "***");
}
