/* decode: CRM answer bodies (json, xml, form, text) to Lua values for rules. */
#include "decode.h"

#include "buf.h"

#include <errno.h>
#include <expat.h>
#include <iconv.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A new JSON table is sized like its previous sibling at the same depth
 * (CRM answers are lists of alike objects), up to this many slots; a
 * wrong guess only costs Lua a rehash, or unused slots bounded by the
 * sibling's own size. */
#define DECODE_SIZE_HINT_MAX 64
#define DECODE_MAX_SAFE_INT ((uint64_t)1 << 53)

struct decode_ctx {
	enum decode_format f;
	const char *body;
	size_t len;
	char *err;
	size_t errlen;
	int failed; /* err holds our own message (else: a Lua error) */
	struct xml_stream *xs;
	/* charset conversion (see "Charsets" in decode.h) */
	const char *ctype;         /* the Content-Type as given ("" when none) */
	char charset[DECODE_CHARSET_MAX]; /* its charset parameter, "" when none */
	int convert;               /* 1: charset is not UTF-8, iconv cd converts */
	iconv_t cd;
	lua_Alloc af;              /* L's allocator, for cv */
	void *aud;
	char *cv;                  /* converted text (of the body or of a form piece) */
	size_t cvcap;
};

static char decode__null_tag;

static const char *const decode__names[] = { "json", "xml", "form", "text" };

int decode_format_parse(const char *name)
{
	size_t i;

	if (!name)
		return -1;
	for (i = 0; i < sizeof(decode__names) / sizeof(decode__names[0]); i++)
		if (strcasecmp(name, decode__names[i]) == 0)
			return (int)i;
	return -1;
}

const char *decode_format_name(enum decode_format f)
{
	if ((unsigned)f < sizeof(decode__names) / sizeof(decode__names[0]))
		return decode__names[f];
	return "unknown";
}

void decode_push_null(lua_State *L)
{
	lua_pushlightuserdata(L, &decode__null_tag);
}

int decode_is_null(lua_State *L, int idx)
{
	return lua_touserdata(L, idx) == &decode__null_tag && lua_islightuserdata(L, idx);
}

/* Formats the error into ctx->err and unwinds to decode_push's lua_pcall;
 * the error object is a light userdata, so raising it allocates nothing. */
__attribute__((noreturn, format(printf, 3, 4)))
static void decode__fail(lua_State *L, struct decode_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	c->failed = 1;
	lua_pushlightuserdata(L, c);
	lua_error(L);
	abort(); /* not reached: lua_error does not return */
}

static int decode__is_ws(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static int decode__blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!decode__is_ws((unsigned char)s[i]))
			return 0;
	return 1;
}

/* ---- charsets -------------------------------------------------------- */

/* RFC 2978 mime-charset characters, and the '.' and ':' of some of glibc's
 * names (ISO_8859-5:1988). Nothing else reaches iconv_open: a '/' would let
 * a CRM's header append glibc's //TRANSLIT or //IGNORE. */
static int decode__charset_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'+-^_`{}~.:", ch));
}

int decode_charset(const char *content_type, char *out, size_t outlen)
{
	const char *p = content_type, *v;
	size_t n;
	int quoted;

	if (outlen)
		out[0] = '\0';
	if (!p)
		return 0;
	/* parameters follow the media type, each after a ';' */
	for (p = strchr(p, ';'); p; p = strchr(p, ';')) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "charset", 7) != 0)
			continue;
		v = p + 7;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v != '=')
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		quoted = *v == '"';
		v += quoted;
		for (n = 0; decode__charset_char((unsigned char)v[n]); n++)
			;
		if (n == 0 || (quoted && v[n] != '"') ||
		    (!quoted && v[n] && v[n] != ';' && v[n] != ' ' && v[n] != '\t'))
			return -1;
		if (n >= outlen)
			return -1;
		memcpy(out, v, n);
		out[n] = '\0';
		return 1;
	}
	return 0;
}

static int decode__is_utf8_name(const char *cs)
{
	return strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0;
}

/* Offset of the first byte that does not belong to well-formed UTF-8
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF),
 * or len when all do. ASCII, most of any CRM answer, goes 8 bytes a step. */
static size_t decode__utf8_check(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char ch;
		uint64_t w;

		if (len - i >= 8) {
			memcpy(&w, s + i, 8);
			if (!(w & UINT64_C(0x8080808080808080))) {
				i += 8;
				continue;
			}
		}
		ch = s[i];
		if (ch < 0x80) {
			i++;
		} else if (ch >= 0xc2 && ch <= 0xdf) {
			if (len - i < 2 || (s[i + 1] & 0xc0) != 0x80)
				return i;
			i += 2;
		} else if (ch >= 0xe0 && ch <= 0xef) {
			unsigned char lo = ch == 0xe0 ? 0xa0 : 0x80, hi = ch == 0xed ? 0x9f : 0xbf;

			if (len - i < 3 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xc0) != 0x80)
				return i;
			i += 3;
		} else if (ch >= 0xf0 && ch <= 0xf4) {
			unsigned char lo = ch == 0xf0 ? 0x90 : 0x80, hi = ch == 0xf4 ? 0x8f : 0xbf;

			if (len - i < 4 || s[i + 1] < lo || s[i + 1] > hi ||
			    (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80)
				return i;
			i += 4;
		} else {
			return i;
		}
	}
	return len;
}

/* "not UTF-8 at byte 17 (0xce 0xf2 ...)" plus what to do, into c->err. */
static void decode__not_utf8(struct decode_ctx *c, const char *what, size_t at, const char *s,
			     size_t n)
{
	char bytes[32] = "";
	size_t i, k = 0;

	for (i = 0; i < n && i < 4; i++)
		k += (size_t)snprintf(bytes + k, sizeof(bytes) - k, "%s0x%02x", i ? " " : "",
				      (unsigned char)s[i]);
	snprintf(c->err, c->errlen,
		 "%s: not UTF-8 at byte %zu (%s) and no charset declared (%s%.64s%s): a CRM that "
		 "sends windows-1251, koi8-r or cp866 must say so in its Content-Type "
		 "('; charset=windows-1251')",
		 what, at, bytes, c->ctype[0] ? "Content-Type '" : "no Content-Type", c->ctype,
		 c->ctype[0] ? "'" : "");
	c->failed = 1;
}

/* Converts in (len bytes of c->charset) to UTF-8 in c->cv; *outlen gets
 * its length. The output is bounded by DECODE_MAX_BODY and allocated
 * through L's allocator (the rule runtime's memory cap applies). 0, or -1
 * with c->err set ("what: ..."). */
static int decode__convert(struct decode_ctx *c, const char *what, const char *in, size_t len,
			   size_t *outlen)
{
	char *ip = (char *)in, *op;
	size_t il = len, ol, used = 0, want = len + len / 2 + 64, r;
	int flushed = 0;

	iconv(c->cd, NULL, NULL, NULL, NULL); /* initial shift state */
	for (;;) {
		if (want > c->cvcap) {
			char *np;

			if (want > DECODE_MAX_BODY + 64)
				want = DECODE_MAX_BODY + 64;
			if (want <= c->cvcap)
				goto toobig;
			np = c->af(c->aud, c->cv, c->cv ? c->cvcap : 0, want);
			if (!np) {
				snprintf(c->err, c->errlen, "%s: not enough memory to convert from %s", what,
					 c->charset);
				goto fail;
			}
			c->cv = np;
			c->cvcap = want;
		}
		op = c->cv + used;
		ol = c->cvcap - used;
		/* a stateful charset (ISO-2022) may owe bytes to return to its
		 * initial state: iconv with no input writes them */
		r = flushed ? iconv(c->cd, NULL, NULL, &op, &ol) : iconv(c->cd, &ip, &il, &op, &ol);
		used = (size_t)(op - c->cv);
		if (r != (size_t)-1) {
			if (flushed)
				break;
			flushed = 1;
			continue;
		}
		if (errno == E2BIG) {
			want = c->cvcap * 2;
			continue;
		}
		if (errno == EILSEQ)
			snprintf(c->err, c->errlen, "%s: byte %zu (0x%02x) is not %s", what,
				 (size_t)(ip - in), (unsigned char)*ip, c->charset);
		else if (errno == EINVAL)
			snprintf(c->err, c->errlen, "%s: ends inside a %s character (byte %zu)", what,
				 c->charset, (size_t)(ip - in));
		else
			snprintf(c->err, c->errlen, "%s: cannot convert from %s: %s", what, c->charset,
				 strerror(errno));
		goto fail;
	}
	if (used > DECODE_MAX_BODY)
		goto toobig;
	*outlen = used;
	return 0;
toobig:
	snprintf(c->err, c->errlen, "%s: over the %zu byte limit once converted from %s to UTF-8",
		 what, (size_t)DECODE_MAX_BODY, c->charset);
fail:
	c->failed = 1;
	return -1;
}

/* ---- json ------------------------------------------------------------ */

/* Our own recursive-descent parser pushing straight to Lua rather than
 * cJSON: cJSON keeps numbers only as doubles (ids above 2^53 would need a
 * second walk over the text to recover their digits), builds a malloc'd
 * tree that is then copied into Lua (twice the allocations, outside the
 * rule runtime's memory cap), and nests up to its compiled-in 1000 levels
 * before any cap of ours could apply (so it would need a pre-scan). Here
 * the depth is checked before descending, and every value goes straight
 * onto the Lua stack: about 140 ns per {"id":..,"status":..} object when
 * the strings repeat, about 400 ns when each id is a new string (Lua's
 * string interning dominates), -O2, 1e6 objects. */

struct json {
	lua_State *L;
	struct decode_ctx *c;
	const unsigned char *start, *p, *end;
	int hint_obj[DECODE_MAX_DEPTH + 1]; /* size of the last object/array */
	int hint_arr[DECODE_MAX_DEPTH + 1]; /* closed at each depth */
};

/* 1: ends a plain run inside a string ('"', '\\', control characters). */
static const unsigned char json__special[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['"'] = 1, ['\\'] = 1,
};
static const unsigned char json__space[256] = { [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1 };

__attribute__((noreturn, format(printf, 3, 4)))
static void json__fail(struct json *j, const unsigned char *at, const char *fmt, ...)
{
	char msg[160];
	va_list ap;
	const unsigned char *q, *bol = j->start;
	unsigned long line = 1;

	for (q = j->start; q < at; q++)
		if (*q == '\n') {
			line++;
			bol = q + 1;
		}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	decode__fail(j->L, j->c, "json: line %lu column %lu: %s", line,
		     (unsigned long)(at - bol) + 1, msg);
}

/* "unexpected end of input" / "unexpected 'x'" at j->p, after `what`. */
__attribute__((noreturn))
static void json__unexpected(struct json *j, const char *what)
{
	if (j->p >= j->end)
		json__fail(j, j->p, "%s: unexpected end of input", what);
	if (*j->p >= 0x20 && *j->p < 0x7f)
		json__fail(j, j->p, "%s: unexpected '%c'", what, *j->p);
	json__fail(j, j->p, "%s: unexpected byte 0x%02x", what, *j->p);
}

static void json__skip_ws(struct json *j)
{
	while (j->p < j->end && json__space[*j->p])
		j->p++;
}

static int json__hex4(const unsigned char *s)
{
	int i, v = 0;

	for (i = 0; i < 4; i++) {
		unsigned char ch = s[i];

		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			v |= ch - 'a' + 10;
		else if (ch >= 'A' && ch <= 'F')
			v |= ch - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Reads the \uXXXX (and its low surrogate) at j->p (on the 'u'); returns
 * the code point. */
static unsigned long json__uescape(struct json *j)
{
	const unsigned char *at = j->p - 1;
	int hi, lo;

	if (j->end - j->p < 5 || (hi = json__hex4(j->p + 1)) < 0)
		json__fail(j, at, "invalid \\u escape: four hex digits expected");
	j->p += 5;
	if (hi >= 0xdc00 && hi <= 0xdfff)
		json__fail(j, at, "invalid \\u escape: lone low surrogate \\u%04x", hi);
	if (hi < 0xd800 || hi > 0xdbff)
		return (unsigned long)hi;
	if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
	    (lo = json__hex4(j->p + 2)) < 0 || lo < 0xdc00 || lo > 0xdfff)
		json__fail(j, at, "invalid \\u escape: high surrogate \\u%04x without its low half",
			   hi);
	j->p += 6;
	return 0x10000 + (((unsigned long)hi - 0xd800) << 10) + ((unsigned long)lo - 0xdc00);
}

static void json__add_utf8(luaL_Buffer *b, unsigned long cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	luaL_addlstring(b, u, n);
}

/* j->p is on the opening quote. Bytes are passed through as they are (no
 * UTF-8 validation: a CRM's legacy encoding must not fail a poll). */
static void json__string(struct json *j)
{
	const unsigned char *open = j->p, *s = j->p + 1, *q = s;
	luaL_Buffer b;

	while (q < j->end && !json__special[*q])
		q++;
	if (q < j->end && *q == '"') {
		lua_pushlstring(j->L, (const char *)s, (size_t)(q - s));
		j->p = q + 1;
		return;
	}
	luaL_buffinit(j->L, &b);
	for (;;) {
		luaL_addlstring(&b, (const char *)s, (size_t)(q - s));
		j->p = q;
		if (q >= j->end)
			json__fail(j, open, "unterminated string");
		if (*q == '"')
			break;
		if (*q < 0x20)
			json__fail(j, q, "control character 0x%02x in string (must be escaped)", *q);
		/* a backslash */
		if (q + 1 >= j->end)
			json__fail(j, open, "unterminated string");
		j->p = q + 2;
		switch (q[1]) {
		case '"': luaL_addchar(&b, '"'); break;
		case '\\': luaL_addchar(&b, '\\'); break;
		case '/': luaL_addchar(&b, '/'); break;
		case 'b': luaL_addchar(&b, '\b'); break;
		case 'f': luaL_addchar(&b, '\f'); break;
		case 'n': luaL_addchar(&b, '\n'); break;
		case 'r': luaL_addchar(&b, '\r'); break;
		case 't': luaL_addchar(&b, '\t'); break;
		case 'u':
			j->p = q + 1;
			json__add_utf8(&b, json__uescape(j));
			break;
		default:
			if (q[1] >= 0x20 && q[1] < 0x7f)
				json__fail(j, q, "invalid escape '\\%c' in string", q[1]);
			json__fail(j, q, "invalid escape in string");
		}
		s = q = j->p;
		while (q < j->end && !json__special[*q])
			q++;
	}
	luaL_pushresult(&b);
	j->p++;
}

static int json__digit(const struct json *j)
{
	return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

/* Integer syntax (no fraction, no exponent) within ±2^53 → Lua integer;
 * integer syntax beyond → the original text (an id keeps its digits);
 * otherwise a float, or the original text when it overflows a double. */
static void json__number(struct json *j)
{
	const unsigned char *s = j->p;
	uint64_t u = 0;
	int neg = 0, big = 0, integral = 1;
	char tmp[64];
	size_t n;
	lua_State *L = j->L;

	if (*j->p == '-') {
		neg = 1;
		j->p++;
	}
	if (!json__digit(j))
		json__unexpected(j, "invalid number");
	if (*j->p == '0') {
		j->p++;
		if (json__digit(j))
			json__fail(j, s, "invalid number: leading zero");
	} else {
		while (json__digit(j)) {
			unsigned d = *j->p++ - '0';

			if (u > (UINT64_MAX - d) / 10)
				big = 1;
			else
				u = u * 10 + d;
		}
	}
	if (j->p < j->end && *j->p == '.') {
		integral = 0;
		j->p++;
		if (!json__digit(j))
			json__unexpected(j, "invalid number: digit expected after '.'");
		while (json__digit(j))
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		integral = 0;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!json__digit(j))
			json__unexpected(j, "invalid number: digit expected in exponent");
		while (json__digit(j))
			j->p++;
	}
	n = (size_t)(j->p - s);
	if (integral) {
		if (!big && u <= DECODE_MAX_SAFE_INT)
			lua_pushinteger(L, neg ? -(lua_Integer)u : (lua_Integer)u);
		else
			lua_pushlstring(L, (const char *)s, n);
		return;
	}
	/* lua_stringtonumber wants a C string; it also copes with a locale
	 * whose decimal point is not '.'. */
	if (n < sizeof(tmp)) {
		memcpy(tmp, s, n);
		tmp[n] = '\0';
		if (lua_stringtonumber(L, tmp) == 0)
			json__fail(j, s, "invalid number");
	} else {
		lua_pushlstring(L, (const char *)s, n);
		if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0)
			json__fail(j, s, "invalid number");
		lua_remove(L, -2);
	}
	if (isinf(lua_tonumber(L, -1))) {
		lua_pop(L, 1);
		lua_pushlstring(L, (const char *)s, n);
	}
}

static void json__literal(struct json *j, const char *word, size_t n)
{
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		json__unexpected(j, "invalid value");
	j->p += n;
}

static void json__value(struct json *j, int depth);

static int json__hint(int n)
{
	return n < DECODE_SIZE_HINT_MAX ? n : DECODE_SIZE_HINT_MAX;
}

/* Objects: a repeated key's last value wins (as most parsers do); a
 * null member is left out. */
static void json__object(struct json *j, int depth)
{
	lua_State *L = j->L;
	int t, n = 0;

	j->p++;
	lua_createtable(L, 0, j->hint_obj[depth]);
	t = lua_gettop(L);
	json__skip_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		j->hint_obj[depth] = 0;
		return;
	}
	for (;;) {
		if (j->p >= j->end || *j->p != '"')
			json__unexpected(j, "object key (a string) expected");
		json__string(j);
		json__skip_ws(j);
		if (j->p >= j->end || *j->p != ':')
			json__unexpected(j, "':' expected after object key");
		j->p++;
		json__value(j, depth);
		/* a null member reads as an absent key (setting nil also drops an
		 * earlier repeat), so `d.x or {}` works in rules; arrays keep the
		 * sentinel so positions stay */
		if (decode_is_null(L, -1)) {
			lua_pop(L, 1);
			lua_pushnil(L);
		}
		lua_rawset(L, t);
		n++;
		json__skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			json__skip_ws(j);
			continue;
		}
		if (j->p < j->end && *j->p == '}')
			break;
		json__unexpected(j, "',' or '}' expected in object");
	}
	j->p++;
	j->hint_obj[depth] = json__hint(n);
}

static void json__array(struct json *j, int depth)
{
	lua_State *L = j->L;
	int t;
	lua_Integer n = 0;

	j->p++;
	lua_createtable(L, j->hint_arr[depth], 0);
	t = lua_gettop(L);
	json__skip_ws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		j->hint_arr[depth] = 0;
		return;
	}
	for (;;) {
		json__value(j, depth);
		lua_rawseti(L, t, ++n);
		json__skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == ']')
			break;
		json__unexpected(j, "',' or ']' expected in array");
	}
	j->p++;
	j->hint_arr[depth] = json__hint(n > INT_MAX ? INT_MAX : (int)n);
}

static void json__value(struct json *j, int depth)
{
	json__skip_ws(j);
	if (j->p >= j->end)
		json__unexpected(j, "value expected");
	switch (*j->p) {
	case '{':
	case '[':
		if (depth >= DECODE_MAX_DEPTH)
			json__fail(j, j->p, "nested deeper than %d levels", DECODE_MAX_DEPTH);
		/* the table, a key, a value and a string buffer */
		luaL_checkstack(j->L, 6, "json");
		if (*j->p == '{')
			json__object(j, depth + 1);
		else
			json__array(j, depth + 1);
		break;
	case '"':
		json__string(j);
		break;
	case 't':
		json__literal(j, "true", 4);
		lua_pushboolean(j->L, 1);
		break;
	case 'f':
		json__literal(j, "false", 5);
		lua_pushboolean(j->L, 0);
		break;
	case 'n':
		json__literal(j, "null", 4);
		decode_push_null(j->L);
		break;
	default:
		if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
			json__number(j);
		else
			json__unexpected(j, "value expected");
	}
}

static void json__push(lua_State *L, struct decode_ctx *c)
{
	struct json j;

	memset(j.hint_obj, 0, sizeof(j.hint_obj));
	memset(j.hint_arr, 0, sizeof(j.hint_arr));
	j.L = L;
	j.c = c;
	j.start = j.p = (const unsigned char *)c->body;
	j.end = j.p + c->len;
	/* a UTF-8 byte order mark, as Windows-made answers often carry */
	if (c->len >= 3 && memcmp(j.p, "\xef\xbb\xbf", 3) == 0)
		j.p += 3;
	json__skip_ws(&j);
	if (j.p == j.end) {
		lua_createtable(L, 0, 0);
		return;
	}
	luaL_checkstack(L, 8, "json");
	json__value(&j, 0);
	json__skip_ws(&j);
	if (j.p != j.end)
		json__unexpected(&j, "end of input expected after the top value");
}

/* ---- xml ------------------------------------------------------------- */

/* expat's callbacks only record a compact event stream (in memory from L's
 * allocator); the stream becomes Lua tables afterwards, in protected mode.
 * So no Lua error can ever unwind through expat.
 *
 * Stream: 'S' nchildren nattr namelen name (klen k vlen v)*nattr ... 'E'
 * textlen text, lengths as size_t; nchildren is patched as children open. */
struct xml_stream {
	XML_Parser xp;
	struct decode_ctx *c;
	lua_Alloc af;
	void *aud;
	unsigned char *ev;
	size_t evlen, evcap;
	char *tx; /* text of the open elements, innermost last */
	size_t txlen, txcap;
	size_t tstart[DECODE_MAX_DEPTH];
	size_t cntoff[DECODE_MAX_DEPTH];
	int depth;
	size_t rd; /* read offset while converting */
	char declared[DECODE_CHARSET_MAX]; /* encoding="..." of the XML declaration */
	char enc_note[96]; /* why an encoding was not usable ("" none) */
};

static void xml__stop(struct xml_stream *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void xml__stop(struct xml_stream *x, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	if (x->c->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(x->c->err, x->c->errlen, "xml: line %lu column %lu: %s",
		 (unsigned long)XML_GetCurrentLineNumber(x->xp),
		 (unsigned long)XML_GetCurrentColumnNumber(x->xp) + 1, msg);
	x->c->failed = 1;
	XML_StopParser(x->xp, XML_FALSE);
}

static int xml__grow(struct xml_stream *x, void *pp, size_t *cap, size_t len, size_t extra)
{
	char **p = pp;
	size_t ncap;
	char *np;

	if (len + extra <= *cap)
		return 0;
	if (extra > SIZE_MAX / 4 - len)
		goto fail;
	ncap = *cap ? *cap : 256;
	while (ncap < len + extra)
		ncap *= 2;
	np = x->af(x->aud, *p, *p ? *cap : 0, ncap);
	if (!np)
		goto fail;
	*p = np;
	*cap = ncap;
	return 0;
fail:
	xml__stop(x, "not enough memory");
	return -1;
}

static int xml__put(struct xml_stream *x, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (xml__grow(x, &x->ev, &x->evcap, x->evlen, n) < 0)
		return -1;
	memcpy(x->ev + x->evlen, p, n);
	x->evlen += n;
	return 0;
}

static int xml__put_str(struct xml_stream *x, const char *s, size_t n)
{
	if (xml__put(x, &n, sizeof(n)) < 0)
		return -1;
	return xml__put(x, s, n);
}

static void XMLCALL xml__start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xml_stream *x = ud;
	size_t nattr = 0, zero = 0, cnt, i;

	if (x->c->failed)
		return;
	if (x->depth == DECODE_MAX_DEPTH) {
		xml__stop(x, "elements nested deeper than %d levels", DECODE_MAX_DEPTH);
		return;
	}
	if (x->depth > 0) {
		memcpy(&cnt, x->ev + x->cntoff[x->depth - 1], sizeof(cnt));
		cnt++;
		memcpy(x->ev + x->cntoff[x->depth - 1], &cnt, sizeof(cnt));
	}
	while (atts[2 * nattr])
		nattr++;
	if (xml__put(x, "S", 1) < 0)
		return;
	x->cntoff[x->depth] = x->evlen;
	if (xml__put(x, &zero, sizeof(zero)) < 0 || xml__put(x, &nattr, sizeof(nattr)) < 0 ||
	    xml__put_str(x, name, strlen(name)) < 0)
		return;
	for (i = 0; i < 2 * nattr; i++)
		if (xml__put_str(x, atts[i], strlen(atts[i])) < 0)
			return;
	x->tstart[x->depth++] = x->txlen;
}

static void XMLCALL xml__end(void *ud, const XML_Char *name)
{
	struct xml_stream *x = ud;
	size_t a, b;

	if (x->c->failed)
		return;
	x->depth--;
	a = x->tstart[x->depth];
	b = x->txlen;
	while (a < b && decode__is_ws((unsigned char)x->tx[a]))
		a++;
	while (b > a && decode__is_ws((unsigned char)x->tx[b - 1]))
		b--;
	if (xml__put(x, "E", 1) < 0 || xml__put_str(x, x->tx ? x->tx + a : "", b - a) < 0)
		return;
	x->txlen = x->tstart[x->depth];
}

static void XMLCALL xml__text(void *ud, const XML_Char *s, int len)
{
	struct xml_stream *x = ud;

	if (x->c->failed || x->depth == 0 || len <= 0)
		return;
	if (xml__grow(x, &x->tx, &x->txcap, x->txlen, (size_t)len) < 0)
		return;
	memcpy(x->tx + x->txlen, s, (size_t)len);
	x->txlen += (size_t)len;
}

/* An internal subset can declare entities (billion laughs) and attribute
 * defaults (amplification); CRMs never need one. */
static void XMLCALL xml__doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
				 const XML_Char *pubid, int has_internal_subset)
{
	if (has_internal_subset)
		xml__stop(ud, "a DOCTYPE with declarations (entities) is refused");
}

static void XMLCALL xml__entity(void *ud, const XML_Char *name, int is_param,
				const XML_Char *value, int value_length, const XML_Char *base,
				const XML_Char *sysid, const XML_Char *pubid,
				const XML_Char *notation)
{
	xml__stop(ud, "entity declaration '%s' is refused", name);
}

static void XMLCALL xml__decl(void *ud, const XML_Char *version, const XML_Char *encoding,
			      int standalone)
{
	struct xml_stream *x = ud;

	if (encoding)
		snprintf(x->declared, sizeof(x->declared), "%s", encoding);
}

/* An encoding expat does not know (it knows UTF-8/16, ISO-8859-1 and
 * US-ASCII): the 256-entry byte → code point map of a single-byte charset,
 * built by asking glibc's iconv for each byte. A byte iconv refuses maps
 * to -1 (expat then reports it as an invalid token where it occurs). A
 * multi-byte charset (a byte iconv calls incomplete) is refused here: such
 * an answer needs the charset in its Content-Type, which converts the
 * whole body with iconv first. */
static int XMLCALL xml__unknown_encoding(void *ud, const XML_Char *name, XML_Encoding *info)
{
	struct xml_stream *x = ud;
	iconv_t cd = (iconv_t)-1;
	int b, rc = XML_STATUS_ERROR;
	size_t i;

	for (i = 0; name[i]; i++)
		if (!decode__charset_char((unsigned char)name[i]))
			break;
	if (name[i] || i == 0 || i >= DECODE_CHARSET_MAX) {
		snprintf(x->enc_note, sizeof(x->enc_note), "is not a charset name");
		goto out;
	}
	cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1) {
		snprintf(x->enc_note, sizeof(x->enc_note), "is not a charset iconv knows");
		goto out;
	}
	for (b = 0; b < 256; b++) {
		char in = (char)b, out[8], *ip = &in, *op = out;
		size_t il = 1, ol = sizeof(out);
		const unsigned char *u = (const unsigned char *)out;
		int cp = -1;

		iconv(cd, NULL, NULL, NULL, NULL);
		if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1) {
			if (errno == EINVAL) {
				snprintf(x->enc_note, sizeof(x->enc_note),
					 "is a multi-byte charset: only single-byte ones can be declared in "
					 "the document");
				goto out;
			}
		} else if (op - out == 1 && u[0] < 0x80) {
			cp = u[0];
		} else if (op - out == 2 && decode__utf8_check(u, 2) == 2) {
			cp = (u[0] & 0x1f) << 6 | (u[1] & 0x3f);
		} else if (op - out == 3 && decode__utf8_check(u, 3) == 3) {
			cp = (u[0] & 0x0f) << 12 | (u[1] & 0x3f) << 6 | (u[2] & 0x3f);
		} /* else: nothing (a shift byte) or beyond the BMP: not usable */
		info->map[b] = cp;
	}
	info->data = NULL;
	info->convert = NULL;
	info->release = NULL;
	rc = XML_STATUS_OK;
out:
	if (cd != (iconv_t)-1)
		iconv_close(cd);
	return rc;
}

/* Runs expat over body into x's event stream; 0 or -1 with c->err. enc:
 * the encoding that overrides the document's declaration (NULL: none). */
static int xml__parse(struct xml_stream *x, struct decode_ctx *c, const char *body, size_t len,
		      const char *enc)
{
	int rc = -1;

	/* expat's own allocations through ours, so the allocation-failure
	 * runs (tests/torture) reach them too. */
	static const XML_Memory_Handling_Suite mm = { malloc, realloc, free };

	x->xp = XML_ParserCreate_MM(enc, &mm, NULL);
	if (!x->xp) {
		snprintf(c->err, c->errlen, "xml: not enough memory");
		goto out;
	}
	XML_SetUserData(x->xp, x);
	XML_SetParamEntityParsing(x->xp, XML_PARAM_ENTITY_PARSING_NEVER);
	XML_SetElementHandler(x->xp, xml__start, xml__end);
	XML_SetCharacterDataHandler(x->xp, xml__text);
	XML_SetStartDoctypeDeclHandler(x->xp, xml__doctype);
	XML_SetEntityDeclHandler(x->xp, xml__entity);
	XML_SetXmlDeclHandler(x->xp, xml__decl);
	XML_SetUnknownEncodingHandler(x->xp, xml__unknown_encoding, x);
	if (XML_Parse(x->xp, body, (int)len, XML_TRUE) != XML_STATUS_OK) {
		enum XML_Error e = XML_GetErrorCode(x->xp);
		int n;

		if (c->failed)
			goto out;
		n = snprintf(c->err, c->errlen, "xml: line %lu column %lu: %s",
			     (unsigned long)XML_GetCurrentLineNumber(x->xp),
			     (unsigned long)XML_GetCurrentColumnNumber(x->xp) + 1,
			     XML_ErrorString(e));
		if (n < 0 || (size_t)n >= c->errlen)
			goto out;
		if (e == XML_ERROR_UNKNOWN_ENCODING && x->enc_note[0])
			snprintf(c->err + n, c->errlen - (size_t)n, ": '%s' %s",
				 enc ? enc : x->declared, x->enc_note);
		else if (e == XML_ERROR_INVALID_TOKEN && c->charset[0] && x->declared[0] &&
			 strcasecmp(c->charset, x->declared) != 0)
			snprintf(c->err + n, c->errlen - (size_t)n,
				 " (read as %s, the Content-Type charset, which overrides the "
				 "declared encoding '%s')",
				 c->charset, x->declared);
		else if (e == XML_ERROR_INVALID_TOKEN && !c->charset[0] && !x->declared[0] &&
			 decode__utf8_check((const unsigned char *)body, len) < len)
			snprintf(c->err + n, c->errlen - (size_t)n,
				 " (not UTF-8, and neither the Content-Type nor the XML declaration "
				 "names a charset: e.g. encoding=\"windows-1251\")");
		goto out;
	}
	rc = 0;
out:
	if (x->xp)
		XML_ParserFree(x->xp);
	x->xp = NULL;
	return rc;
}

static size_t xml__get_size(struct xml_stream *x)
{
	size_t n;

	memcpy(&n, x->ev + x->rd, sizeof(n));
	x->rd += sizeof(n);
	return n;
}

static void xml__push_str(lua_State *L, struct xml_stream *x)
{
	size_t n = xml__get_size(x);

	lua_pushlstring(L, (const char *)x->ev + x->rd, n);
	x->rd += n;
}

/* x->rd is on an 'S'; pushes that element. Recursion is bounded by the
 * depth cap the parse enforced. */
static void xml__element(lua_State *L, struct xml_stream *x)
{
	size_t nchildren, nattr, i;
	lua_Integer k = 0;

	luaL_checkstack(L, 8, "xml");
	x->rd++;
	nchildren = xml__get_size(x);
	nattr = xml__get_size(x);
	lua_createtable(L, 0, 4);
	xml__push_str(L, x);
	lua_setfield(L, -2, "name");
	lua_createtable(L, 0, nattr > INT_MAX ? 0 : (int)nattr);
	for (i = 0; i < nattr; i++) {
		xml__push_str(L, x);
		xml__push_str(L, x);
		lua_rawset(L, -3);
	}
	lua_setfield(L, -2, "attr");
	lua_createtable(L, nchildren > INT_MAX ? 0 : (int)nchildren, 0);
	while (x->ev[x->rd] == 'S') {
		xml__element(L, x);
		lua_rawseti(L, -2, ++k);
	}
	lua_setfield(L, -2, "children");
	x->rd++; /* 'E' */
	xml__push_str(L, x);
	lua_setfield(L, -2, "text");
}

static int xml__find(lua_State *L, int all)
{
	size_t nlen, elen;
	const char *name = luaL_checklstring(L, 2, &nlen), *s;
	lua_Integer i, n = 0;
	int res = 0, kids, match;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (all) {
		lua_newtable(L);
		res = lua_gettop(L);
	}
	if (lua_getfield(L, 1, "children") != LUA_TTABLE) {
		lua_settop(L, res);
		return all;
	}
	kids = lua_gettop(L);
	for (i = 1; lua_rawgeti(L, kids, i) != LUA_TNIL; i++) {
		match = 0;
		if (lua_type(L, -1) == LUA_TTABLE) {
			if (lua_getfield(L, -1, "name") == LUA_TSTRING) {
				s = lua_tolstring(L, -1, &elen);
				match = elen == nlen && memcmp(s, name, nlen) == 0;
			}
			lua_pop(L, 1);
		}
		if (match && !all)
			return 1;
		if (match)
			lua_rawseti(L, res, ++n);
		else
			lua_pop(L, 1);
	}
	if (!all)
		return 0;
	lua_settop(L, res);
	return 1;
}

int decode_lua_xml_find(lua_State *L)
{
	return xml__find(L, 0);
}

int decode_lua_xml_all(lua_State *L)
{
	return xml__find(L, 1);
}

/* ---- form ------------------------------------------------------------ */

/* Pushes s percent-decoded, '+' as a space; a '%' not followed by two hex
 * digits stays as it is (PHP's urldecode). The charset applies to the
 * decoded bytes (a %CE is a windows-1251 byte when that is the charset), so
 * each name and value is converted, or checked as UTF-8, on its own. */
static void form__push_decoded(lua_State *L, struct decode_ctx *c, const char *s, size_t n)
{
	luaL_Buffer b;
	const char *d;
	size_t dn, bad;

	if (!memchr(s, '%', n) && !memchr(s, '+', n))
		lua_pushlstring(L, s, n);
	else
		luaL_pushresultsize(&b, buf_urldecode(luaL_buffinitsize(L, &b, n), s, n, true));
	d = lua_tolstring(L, -1, &dn);
	if (c->convert) {
		if (decode__convert(c, "form", d, dn, &dn) < 0) {
			lua_pushlightuserdata(L, c);
			lua_error(L);
		}
		lua_pushlstring(L, c->cv, dn);
		lua_replace(L, -2);
		return;
	}
	bad = decode__utf8_check((const unsigned char *)d, dn);
	if (bad < dn) {
		decode__not_utf8(c, "form", (size_t)(s - c->body), d + bad, dn - bad);
		lua_pushlightuserdata(L, c);
		lua_error(L);
	}
}

/* Pushes the key of one name part onto the stack: an empty part ("[]")
 * appends, i.e. is #t+1 of the table at index t. */
static void form__push_key(lua_State *L, int t, const char *k, size_t n)
{
	if (n == 0)
		lua_pushinteger(L, (lua_Integer)lua_rawlen(L, t) + 1);
	else
		lua_pushlstring(L, k, n);
}

/* One "name=value" pair into the table at index root. */
static void form__pair(lua_State *L, struct decode_ctx *c, int root, const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n), *nm, *close;
	size_t nlen, baselen, i, nparts = 0;
	size_t poff[DECODE_MAX_DEPTH], plen[DECODE_MAX_DEPTH];
	int cur;

	luaL_checkstack(L, 8, "form");
	form__push_decoded(L, c, s, eq ? (size_t)(eq - s) : n);
	nm = lua_tolstring(L, -1, &nlen);
	close = memchr(nm, '[', nlen);
	baselen = close ? (size_t)(close - nm) : nlen;
	if (baselen == 0) { /* "=x" or "[a]=x": PHP ignores these */
		lua_pop(L, 1);
		return;
	}
	i = baselen;
	while (i < nlen && nm[i] == '[') {
		close = memchr(nm + i + 1, ']', nlen - i - 1);
		if (!close) { /* "a[b=1": the whole name is a plain key */
			nparts = 0;
			baselen = nlen;
			break;
		}
		if (nparts == DECODE_MAX_DEPTH)
			decode__fail(L, c, "form: key '%.*s' nested deeper than %d levels",
				     (int)(baselen < 40 ? baselen : 40), nm, DECODE_MAX_DEPTH);
		poff[nparts] = i + 1;
		plen[nparts++] = (size_t)(close - nm) - i - 1;
		i = (size_t)(close - nm) + 1; /* anything after ']' but '[' is ignored */
	}
	lua_pushvalue(L, root);
	cur = lua_gettop(L);
	/* walk (creating) the tables of base[p0]...[p(n-2)]; the last part is
	 * where the value goes */
	for (i = 0; i < nparts; i++) {
		if (i == 0)
			lua_pushlstring(L, nm, baselen);
		else
			form__push_key(L, cur, nm + poff[i - 1], plen[i - 1]);
		lua_pushvalue(L, -1);
		if (lua_rawget(L, cur) != LUA_TTABLE) {
			lua_pop(L, 1);
			lua_newtable(L);
			lua_pushvalue(L, -1);
			lua_insert(L, -3);
			lua_rawset(L, cur);
		} else {
			lua_remove(L, -2);
		}
		lua_replace(L, cur);
	}
	if (nparts == 0)
		lua_pushlstring(L, nm, baselen);
	else
		form__push_key(L, cur, nm + poff[nparts - 1], plen[nparts - 1]);
	if (eq)
		form__push_decoded(L, c, eq + 1, n - (size_t)(eq - s) - 1);
	else
		lua_pushliteral(L, "");
	lua_rawset(L, cur);
	lua_settop(L, cur - 2);
}

static void form__push(lua_State *L, struct decode_ctx *c)
{
	const char *s = c->body, *e = c->body + c->len, *amp;
	int root;

	/* raw whitespace is not part of a query string: a trailing newline
	 * must not end up in the last value */
	while (s < e && decode__is_ws((unsigned char)*s))
		s++;
	while (e > s && decode__is_ws((unsigned char)e[-1]))
		e--;
	lua_newtable(L);
	root = lua_gettop(L);
	while (s < e) {
		amp = memchr(s, '&', (size_t)(e - s));
		if (!amp)
			amp = e;
		if (amp > s)
			form__pair(L, c, root, s, (size_t)(amp - s));
		s = amp + 1;
	}
}

/* ---- entry ----------------------------------------------------------- */

static int decode__protected(lua_State *L)
{
	struct decode_ctx *c = lua_touserdata(L, 1);

	lua_settop(L, 0);
	if (c->len == 0 ||
	    ((c->f == DECODE_JSON || c->f == DECODE_XML || c->f == DECODE_FORM) &&
	     decode__blank(c->body, c->len))) {
		lua_createtable(L, 0, 0);
		return 1;
	}
	switch (c->f) {
	case DECODE_JSON:
		json__push(L, c);
		break;
	case DECODE_XML:
		c->xs->rd = 0;
		xml__element(L, c->xs);
		break;
	case DECODE_FORM:
		form__push(L, c);
		break;
	case DECODE_TEXT:
		lua_pushlstring(L, c->body, c->len);
		break;
	}
	return 1;
}

int decode_push(lua_State *L, enum decode_format f, const char *content_type, const char *body,
		size_t len, char *err, size_t errlen)
{
	struct decode_ctx c;
	struct xml_stream x;
	const char *name = decode_format_name(f), *enc = NULL;
	size_t bad;
	int rc = -1;

	memset(&c, 0, sizeof(c));
	memset(&x, 0, sizeof(x));
	c.f = f;
	c.body = body;
	c.len = len;
	c.err = err;
	c.errlen = errlen;
	c.ctype = content_type ? content_type : "";
	c.cd = (iconv_t)-1;
	c.af = lua_getallocf(L, &c.aud);
	if ((unsigned)f > DECODE_TEXT) {
		snprintf(err, errlen, "decode: unknown format %d", (int)f);
		goto out;
	}
	if (len > DECODE_MAX_BODY) {
		snprintf(err, errlen, "%s: body of %zu bytes is over the %zu byte limit", name, len,
			 (size_t)DECODE_MAX_BODY);
		goto out;
	}
	if (!body)
		c.len = 0;
	if (!lua_checkstack(L, 2)) {
		snprintf(err, errlen, "%s: lua stack overflow", name);
		goto out;
	}
	if (decode_charset(content_type, c.charset, sizeof(c.charset)) < 0) {
		snprintf(err, errlen, "%s: the charset of Content-Type '%.64s' is not a charset name", name,
			 c.ctype);
		goto out;
	}
	if (c.charset[0] && !decode__is_utf8_name(c.charset)) {
		c.cd = iconv_open("UTF-8", c.charset);
		if (c.cd == (iconv_t)-1) {
			snprintf(err, errlen, "%s: unknown charset '%s' (Content-Type '%.64s')", name,
				 c.charset, c.ctype);
			goto out;
		}
		c.convert = 1;
	}
	/* json, text and xml are converted whole, before parsing; form piece
	 * by piece (form__push_decoded) */
	if (c.convert && f != DECODE_FORM && c.len > 0) {
		if (decode__convert(&c, name, c.body, c.len, &c.len) < 0)
			goto out;
		c.body = c.cv;
	} else if ((f == DECODE_JSON || f == DECODE_TEXT) && c.len > 0) {
		bad = decode__utf8_check((const unsigned char *)c.body, c.len);
		if (bad < c.len && c.charset[0]) {
			snprintf(err, errlen, "%s: byte %zu (0x%02x) is not UTF-8, the charset the "
				 "Content-Type declares ('%.64s')", name, bad, (unsigned char)c.body[bad],
				 c.ctype);
			goto out;
		}
		if (bad < c.len) {
			decode__not_utf8(&c, name, bad, c.body + bad, c.len - bad);
			goto out;
		}
	}
	if (f == DECODE_XML && c.len > 0 && !decode__blank(c.body, c.len)) {
		/* RFC 7303 3.2: the charset of the Content-Type wins over the XML
		 * declaration; the body is UTF-8 by now */
		if (c.charset[0])
			enc = "UTF-8";
		x.c = &c;
		x.af = c.af;
		x.aud = c.aud;
		if (xml__parse(&x, &c, c.body, c.len, enc) < 0)
			goto out;
		c.xs = &x;
	}
	c.failed = 0;
	lua_pushcfunction(L, decode__protected);
	lua_pushlightuserdata(L, &c);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		if (!c.failed)
			snprintf(err, errlen, "%s: %s", name,
				 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "lua error");
		lua_pop(L, 1);
		goto out;
	}
	rc = 0;
out:
	if (x.ev)
		x.af(x.aud, x.ev, x.evcap, 0);
	if (x.tx)
		x.af(x.aud, x.tx, x.txcap, 0);
	if (c.cv)
		c.af(c.aud, c.cv, c.cvcap, 0);
	if (c.cd != (iconv_t)-1)
		iconv_close(c.cd);
	return rc;
}
