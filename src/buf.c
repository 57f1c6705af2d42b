/* buf: bounded growable byte buffers, the one string builder of leadsync. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max ? max : BUF_DEFAULT_MAX;
}

void buf_release(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

static int buf_grow(struct buf *b, size_t extra)
{
	size_t need, cap;
	char *np;

	if (extra > b->max || b->len > b->max - extra)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	np = realloc(b->p, cap);
	if (!np)
		return -1;
	b->p = np;
	b->cap = cap;
	return 0;
}

int buf_add(struct buf *b, const void *p, size_t n)
{
	if (buf_grow(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0 || buf_grow(b, (size_t)n) < 0)
		return -1;
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

int buf_add_json_str(struct buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;

	if (buf_addc(b, '"') < 0)
		return -1;
	while (i < n) {
		unsigned char c = u[i];
		int rc;

		if (c == '"' || c == '\\')
			rc = buf_addc(b, '\\') < 0 ? -1 : buf_addc(b, (char)c);
		else if (c == '\n')
			rc = buf_add(b, "\\n", 2);
		else if (c == '\r')
			rc = buf_add(b, "\\r", 2);
		else if (c == '\t')
			rc = buf_add(b, "\\t", 2);
		else if (c < 0x20 || c == 0x7f)
			rc = buf_addf(b, "\\u%04x", c);
		else if (c < 0x80)
			rc = buf_addc(b, (char)c);
		else if ((k = utf8_seq(u + i, n - i)) > 0) {
			rc = buf_add(b, s + i, k);
			i += k - 1;
		} else
			rc = buf_addf(b, "\\u%04x", c);
		if (rc < 0)
			return -1;
		i++;
	}
	return buf_addc(b, '"');
}

bool buf_utf8_ok(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		k = u[i] ? utf8_seq(u + i, n - i) : 0;
		if (!k)
			return false;
		i += k;
	}
	return true;
}

int buf_add_text(struct buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0, k;

	while (i < n) {
		k = u[i] ? utf8_seq(u + i, n - i) : 0;
		if (k) {
			i += k;
			continue;
		}
		if (buf_add(b, s + run, i - run) < 0 || buf_addf(b, "\\x%02X", u[i]) < 0)
			return -1;
		run = ++i;
	}
	return buf_add(b, s + run, n - run);
}

bool buf_ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	const volatile unsigned char *x = (const unsigned char *)a;
	const volatile unsigned char *y = (const unsigned char *)b;
	size_t i, n = alen > blen ? alen : blen;
	unsigned diff = alen != blen;

	if (!alen || !blen)
		return alen == blen;
	/* every byte of the longer one is read; the shorter repeats */
	for (i = 0; i < n; i++)
		diff |= (unsigned)(x[i % alen] ^ y[i % blen]);
	return diff == 0;
}

void buf_cut_utf8(struct buf *b, size_t n)
{
	if (b->len <= n)
		return;
	while (n > 0 && ((unsigned char)b->p[n] & 0xc0) == 0x80)
		n--;
	b->len = n;
	b->p[n] = '\0';
}

int buf_add_urlenc(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int rc;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~')
			rc = buf_addc(b, (char)c);
		else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			rc = buf_add(b, e, 3);
		}
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int buf__hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

size_t buf_urldecode(char *out, const char *s, size_t n, bool plus)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n) {
			int hi = buf__hexval(s[i + 1]), lo = buf__hexval(s[i + 2]);

			if (hi >= 0 && lo >= 0) {
				out[o++] = (char)(hi << 4 | lo);
				i += 2;
				continue;
			}
		}
		out[o++] = plus && s[i] == '+' ? ' ' : s[i];
	}
	return o;
}

char *buf_steal(struct buf *b)
{
	char *p = b->p;

	if (!p) {
		p = malloc(1);
		if (p)
			p[0] = '\0';
	}
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
