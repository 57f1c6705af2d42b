/* rule_lib: what a rule sees: the allowed base functions and libraries
 * behind read-only proxies, lead/currency/goal/log (the edits a rule
 * makes), json/form/xml/hash/base64, the per-call globals built on first
 * use, and the turning of request tables into struct rule_request. */
#include "rule_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "status.h"

#define LIB_DEPTH 64         /* nesting of json.encode / form.encode / fields */
#define LIB_LOG_LINE 1024    /* bytes of one log line */
#define LIB_MSG 320

/* ---- boxed buffers --------------------------------------------------- */

static int lib_ubuf_gc(lua_State *L)
{
	buf_release(lua_touserdata(L, 1));
	return 0;
}

struct buf *rule__ubuf(lua_State *L, size_t max)
{
	struct buf *b = lua_newuserdatauv(L, sizeof(*b), 0);

	buf_init(b, max);
	if (luaL_newmetatable(L, "leadsync.rule.buf")) {
		lua_pushcfunction(L, lib_ubuf_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "__metatable");
	}
	lua_setmetatable(L, -2);
	return b;
}

__attribute__((noreturn)) static void lib_full(lua_State *L, const struct buf *b)
{
	rule__errorf(L, "result is over %zu bytes", b->max);
	abort();
}

static void lib_add(lua_State *L, struct buf *b, const char *s, size_t n)
{
	if (buf_add(b, s, n) < 0)
		lib_full(L, b);
}

static void lib_adds(lua_State *L, struct buf *b, const char *s)
{
	lib_add(L, b, s, strlen(s));
}

static void lib_urlenc(lua_State *L, struct buf *b, const char *s, size_t n)
{
	if (buf_add_urlenc(b, s, n) < 0)
		lib_full(L, b);
}

/* A form key: percent-encoded but for '[' and ']', so a field named
 * "filter[ids]" nests as PHP's parse_str reads it. */
static void lib_urlenc_key(lua_State *L, struct buf *b, const char *s, size_t n)
{
	size_t i, start = 0;

	for (i = 0; i <= n; i++) {
		if (i < n && s[i] != '[' && s[i] != ']')
			continue;
		lib_urlenc(L, b, s + start, i - start);
		if (i < n)
			lib_add(L, b, s + i, 1);
		start = i + 1;
	}
}

/* ---- encoders -------------------------------------------------------- */

/* Strings shorter than this are paid for by their value's RULE_COST_VALUE
 * (no clock read per short string). */
#define LIB_CHARGE_MIN 64

/* n values (entries of a table about to be encoded) */
static void lib_charge_values(lua_State *L, size_t n)
{
	if (n)
		rule__charge(L, n > INT64_MAX / (4 * RULE_COST_VALUE)
					? INT64_MAX / 4
					: (int64_t)n * RULE_COST_VALUE);
}

/* The number at idx as text: integers as such, floats shortest-exact. */
static const char *lib_numtext(lua_State *L, int idx, char *tmp, size_t n, bool strict)
{
	double d;

	if (lua_isinteger(L, idx)) {
		snprintf(tmp, n, "%lld", (long long)lua_tointeger(L, idx));
		return tmp;
	}
	d = lua_tonumber(L, idx);
	rule__charge(L, RULE_COST_FLOAT);
	if (!isfinite(d)) {
		if (strict)
			rule__errorf(L, "cannot encode %s", d != d ? "nan" : "an infinite number");
		snprintf(tmp, n, "%g", d);
		return tmp;
	}
	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(tmp, n, "%.0f", d);
		return tmp;
	}
	snprintf(tmp, n, "%.14g", d);
	if (strtod(tmp, NULL) != d)
		snprintf(tmp, n, "%.17g", d);
	return tmp;
}

enum { LIB_ARRAY, LIB_OBJECT };

/* Array (keys exactly 1..n, or empty) or object; json.array/json.object
 * marks win. */
static int lib_kind(lua_State *L, int idx, size_t *n)
{
	struct rule_rt *rt = rule__rt(L);
	size_t len = lua_rawlen(L, idx), count = 0;
	bool seq = true;
	int kind;

	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
	lua_pushvalue(L, idx);
	lua_rawget(L, -2);
	kind = lua_type(L, -1) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : -1;
	lua_pop(L, 2);
	*n = len;
	if (kind >= 0)
		return kind;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		count++;
		if (seq && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
			    (size_t)lua_tointeger(L, -1) > len))
			seq = false;
	}
	return seq && count == len ? LIB_ARRAY : LIB_OBJECT;
}

struct lib_key {
	const char *s; /* the table's own string, or num */
	size_t len;
	lua_Integer i;
	bool isint;
	char num[24];
};

static int lib_key_cmp(const void *a, const void *b)
{
	const struct lib_key *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The keys of the table at idx, sorted by their text: pushes the array
 * (a userdata) and returns it with its count. Keys are strings or
 * integers; anything else raises. */
static struct lib_key *lib_sorted_keys(lua_State *L, int idx, size_t *count, const char *what)
{
	struct lib_key *k;
	size_t n = 0, i = 0;

	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		n++;
	}
	k = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*k), 0);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (i == n) {
			lua_pop(L, 1);
			break;
		}
		if (lua_type(L, -1) == LUA_TSTRING) {
			k[i].s = lua_tolstring(L, -1, &k[i].len);
			k[i].isint = false;
		} else if (lua_isinteger(L, -1)) {
			k[i].i = lua_tointeger(L, -1);
			k[i].isint = true;
			snprintf(k[i].num, sizeof(k[i].num), "%lld", (long long)k[i].i);
			k[i].s = k[i].num;
			k[i].len = strlen(k[i].num);
		} else {
			rule__errorf(L, "%s: a key of type %s cannot be encoded", what,
				   luaL_typename(L, -1));
		}
		i++;
	}
	/* num points into the array itself: fix after the sort moves entries */
	qsort(k, n, sizeof(*k), lib_key_cmp);
	for (i = 0; i < n; i++)
		if (k[i].isint)
			k[i].s = k[i].num;
	*count = n;
	return k;
}

static void lib_push_key(lua_State *L, const struct lib_key *k)
{
	if (k->isint)
		lua_pushinteger(L, k->i);
	else
		lua_pushlstring(L, k->s, k->len);
}

static void lib_json_value(lua_State *L, int idx, struct buf *b, int depth);

static void lib_json_table(lua_State *L, int idx, struct buf *b, int depth)
{
	size_t n, i;

	if (depth >= LIB_DEPTH)
		rule__errorf(L, "json.encode: nested deeper than %d (a cycle?)", LIB_DEPTH);
	luaL_checkstack(L, 8, "json.encode");
	if (lib_kind(L, idx, &n) == LIB_ARRAY) {
		lib_charge_values(L, n);
		lib_add(L, b, "[", 1);
		for (i = 1; i <= n; i++) {
			if (i > 1)
				lib_add(L, b, ",", 1);
			lua_rawgeti(L, idx, (lua_Integer)i);
			lib_json_value(L, lua_gettop(L), b, depth + 1);
			lua_pop(L, 1);
		}
		lib_add(L, b, "]", 1);
		return;
	}
	{
		struct lib_key *k = lib_sorted_keys(L, idx, &n, "json.encode");

		lib_charge_values(L, n);
		lib_add(L, b, "{", 1);
		for (i = 0; i < n; i++) {
			if (i)
				lib_add(L, b, ",", 1);
			if (buf_add_json_str(b, k[i].s, k[i].len) < 0)
				lib_full(L, b);
			lib_add(L, b, ":", 1);
			lib_push_key(L, &k[i]);
			lua_rawget(L, idx);
			lib_json_value(L, lua_gettop(L), b, depth + 1);
			lua_pop(L, 1);
		}
		lib_add(L, b, "}", 1);
		lua_pop(L, 1);
	}
}

static void lib_json_value(lua_State *L, int idx, struct buf *b, int depth)
{
	char tmp[48];
	size_t l;
	const char *s;

	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		lib_adds(L, b, "null");
		break;
	case LUA_TBOOLEAN:
		lib_adds(L, b, lua_toboolean(L, idx) ? "true" : "false");
		break;
	case LUA_TNUMBER:
		lib_adds(L, b, lib_numtext(L, idx, tmp, sizeof(tmp), true));
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &l);
		if (l >= LIB_CHARGE_MIN)
			rule__charge_bytes(L, l, RULE_COST_TEXT_PER);
		if (buf_add_json_str(b, s, l) < 0)
			lib_full(L, b);
		break;
	case LUA_TTABLE:
		lib_json_table(L, idx, b, depth);
		break;
	default:
		if (decode_is_null(L, idx)) {
			lib_adds(L, b, "null");
			break;
		}
		rule__errorf(L, "json.encode: cannot encode a %s value", luaL_typename(L, idx));
	}
}

void rule__json_encode(lua_State *L, int idx, struct buf *out)
{
	lib_json_value(L, lua_absindex(L, idx), out, 0);
}

/* name: the encoded key so far ("filter[ids]"); emits name=value pairs. */
static void lib_form_value(lua_State *L, int idx, struct buf *out, struct buf *name, int depth);

static void lib_form_table(lua_State *L, int idx, struct buf *out, struct buf *name, int depth)
{
	size_t n, i, keep = name->len;
	char tmp[32];

	if (depth >= LIB_DEPTH)
		rule__errorf(L, "form.encode: nested deeper than %d (a cycle?)", LIB_DEPTH);
	luaL_checkstack(L, 8, "form.encode");
	if (lib_kind(L, idx, &n) == LIB_ARRAY) {
		lib_charge_values(L, n);
		for (i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i);
			/* scalars: name[]=v; tables: name[0][k]=v (PHP's index) */
			if (keep == 0 || lua_type(L, -1) == LUA_TTABLE) {
				snprintf(tmp, sizeof(tmp), keep ? "[%zu]" : "%zu", i - 1);
				lib_adds(L, name, tmp);
			} else {
				lib_add(L, name, "[]", 2);
			}
			lib_form_value(L, lua_gettop(L), out, name, depth + 1);
			lua_pop(L, 1);
			name->len = keep;
			name->p[keep] = '\0';
		}
		return;
	}
	{
		struct lib_key *k = lib_sorted_keys(L, idx, &n, "form.encode");

		lib_charge_values(L, n);
		for (i = 0; i < n; i++) {
			if (keep)
				lib_add(L, name, "[", 1);
			lib_urlenc_key(L, name, k[i].s, k[i].len);
			if (keep)
				lib_add(L, name, "]", 1);
			lib_push_key(L, &k[i]);
			lua_rawget(L, idx);
			lib_form_value(L, lua_gettop(L), out, name, depth + 1);
			lua_pop(L, 1);
			name->len = keep;
			if (name->p)
				name->p[keep] = '\0';
		}
		lua_pop(L, 1);
	}
}

static void lib_form_value(lua_State *L, int idx, struct buf *out, struct buf *name, int depth)
{
	char tmp[48];
	const char *s;
	size_t l;

	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return;
	case LUA_TTABLE:
		lib_form_table(L, idx, out, name, depth);
		return;
	case LUA_TBOOLEAN:
		s = lua_toboolean(L, idx) ? "1" : "0";
		l = 1;
		break;
	case LUA_TNUMBER:
		s = lib_numtext(L, idx, tmp, sizeof(tmp), true);
		l = strlen(s);
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &l);
		break;
	default:
		if (decode_is_null(L, idx))
			return; /* PHP leaves out nulls */
		rule__errorf(L, "form.encode: cannot encode a %s value", luaL_typename(L, idx));
		return;
	}
	if (l + name->len >= LIB_CHARGE_MIN)
		rule__charge_bytes(L, l + name->len, RULE_COST_ESCAPE_PER);
	if (out->len)
		lib_add(L, out, "&", 1);
	lib_add(L, out, name->p ? name->p : "", name->len);
	lib_add(L, out, "=", 1);
	lib_urlenc(L, out, s, l);
}

void rule__form_encode(lua_State *L, int idx, struct buf *out)
{
	struct rule_rt *rt = rule__rt(L);
	struct buf *name;

	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) != LUA_TTABLE)
		rule__errorf(L, "form.encode: a table is needed, not a %s", luaL_typename(L, idx));
	name = rule__ubuf(L, rt->lim.alloc_max);
	lib_form_table(L, idx, out, name, 0);
	lua_pop(L, 1);
}

/* ---- json, form, xml, hash, base64 ----------------------------------- */

static int lib_json_encode(lua_State *L)
{
	struct buf *b;

	luaL_checkany(L, 1);
	lua_settop(L, 1);
	b = rule__ubuf(L, rule__rt(L)->lim.alloc_max);
	rule__json_encode(L, 1, b);
	lua_pushlstring(L, b->p ? b->p : "", b->len);
	buf_release(b);
	return 1;
}

static int lib_decode(lua_State *L, enum decode_format f)
{
	struct rule_rt *rt = rule__rt(L);
	unsigned long hard = rt->mem_hard;
	char err[256];
	size_t l;
	const char *s = luaL_checklstring(L, 1, &l);

	lua_settop(L, 1);
	/* l is a Lua string's length: far below INT64_MAX / 64 */
	if (l)
		rule__charge(L, (int64_t)l * (f == DECODE_XML    ? RULE_COST_XML_DECODE
					      : f == DECODE_FORM ? RULE_COST_FORM_DECODE
								 : RULE_COST_JSON_DECODE));
	if (decode_push(L, f, NULL, s, l, err, sizeof(err)) < 0) {
		if (rt->mem_hard != hard) {
			rule__kill(rt, RULE_KILL_MEMORY, NULL);
			return rule__raise_kill(L);
		}
		luaL_pushfail(L);
		lua_pushstring(L, err);
		return 2;
	}
	return 1;
}

static int lib_json_decode(lua_State *L)
{
	return lib_decode(L, DECODE_JSON);
}

static int lib_form_decode(lua_State *L)
{
	return lib_decode(L, DECODE_FORM);
}

static int lib_xml_decode(lua_State *L)
{
	return lib_decode(L, DECODE_XML);
}

static int lib_mark(lua_State *L, int kind)
{
	struct rule_rt *rt = rule__rt(L);

	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
	lua_pushvalue(L, 1);
	lua_pushinteger(L, kind);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	return 1;
}

static int lib_json_array(lua_State *L)
{
	return lib_mark(L, LIB_ARRAY);
}

static int lib_json_object(lua_State *L)
{
	return lib_mark(L, LIB_OBJECT);
}

/* json.isnull(x): nil or json.null, the two ways a JSON null reaches a
 * rule (a null member is absent, a null array element is the sentinel). */
static int lib_json_isnull(lua_State *L)
{
	lua_pushboolean(L, lua_isnoneornil(L, 1) || decode_is_null(L, 1));
	return 1;
}

static int lib_form_encode(lua_State *L)
{
	struct buf *b;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	b = rule__ubuf(L, rule__rt(L)->lim.alloc_max);
	rule__form_encode(L, 1, b);
	lua_pushlstring(L, b->p ? b->p : "", b->len);
	buf_release(b);
	return 1;
}

static int lib_form_escape(lua_State *L)
{
	size_t l;
	const char *s = luaL_checklstring(L, 1, &l);
	struct buf *b;

	lua_settop(L, 1);
	rule__charge_bytes(L, l, RULE_COST_ESCAPE_PER);
	b = rule__ubuf(L, rule__rt(L)->lim.alloc_max);
	lib_urlenc(L, b, s, l);
	lua_pushlstring(L, b->p ? b->p : "", b->len);
	buf_release(b);
	return 1;
}

/* hash and base64 come from libcrypto; what is ours is the budget and
 * the rules of base64.decode (both alphabets, padding optional, no
 * whitespace, a canonical last group), which EVP_DecodeBlock does not
 * check: it skips blanks at either end and reads '=' anywhere as zero. */
struct lib_hash {
	const char *name;
	const EVP_MD *(*md)(void);
	unsigned cost; /* budget units per 64-byte block (see RULE_COST_*) */
};

/* The rates measured on the hand-written digests this replaced (2.5, 5.7
 * and 10.4 ns a byte); libcrypto's are faster, and bench_budget shows by
 * how much. */
static const struct lib_hash lib_hashes[] = {
	{ "md5", EVP_md5, 40 },
	{ "sha1", EVP_sha1, 96 },
	{ "sha256", EVP_sha256, 160 },
};
#define LIB_HASH_BLOCK 64 /* the block of all three, and HMAC's key limit */

/* Units for hashing n bytes plus extra blocks (padding, HMAC's pads) */
static int64_t lib_hash_cost(const struct lib_hash *h, size_t n, size_t extra)
{
	return (int64_t)(n / LIB_HASH_BLOCK + extra) * h->cost;
}

static void lib_push_digest(lua_State *L, const unsigned char *d, size_t n, bool raw)
{
	static const char hex[] = "0123456789abcdef";
	char out[2 * EVP_MAX_MD_SIZE];
	size_t i;

	if (raw) {
		lua_pushlstring(L, (const char *)d, n);
		return;
	}
	for (i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	lua_pushlstring(L, out, 2 * n);
}

static int lib_hash(lua_State *L)
{
	const struct lib_hash *h = &lib_hashes[lua_tointeger(L, lua_upvalueindex(1))];
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dl;
	size_t l;
	const char *s = luaL_checklstring(L, 1, &l);

	rule__charge(L, lib_hash_cost(h, l, 1));
	if (!EVP_Digest(s, l, d, &dl, h->md(), NULL))
		rule__errorf(L, "hash.%s: libcrypto failed", h->name);
	lib_push_digest(L, d, dl, lua_toboolean(L, 2));
	return 1;
}

static int lib_hmac(lua_State *L)
{
	const struct lib_hash *h = &lib_hashes[lua_tointeger(L, lua_upvalueindex(1))];
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dl;
	size_t kl, ml;
	const char *k = luaL_checklstring(L, 1, &kl), *m = luaL_checklstring(L, 2, &ml);

	/* a long key is hashed first; then the inner hash (ipad block and
	 * message) and the outer one (opad block and the inner digest) */
	rule__charge(L, lib_hash_cost(h, ml, 4) + (kl > LIB_HASH_BLOCK ? lib_hash_cost(h, kl, 1) : 0));
	if (kl > INT_MAX || !HMAC(h->md(), k, (int)kl, (const unsigned char *)m, ml, d, &dl))
		rule__errorf(L, "hash.hmac_%s: libcrypto failed", h->name);
	lib_push_digest(L, d, dl, lua_toboolean(L, 3));
	return 1;
}

/* Base64 of n bytes into out, which holds 4 * ((n + 2) / 3) + 1 bytes
 * (EVP_EncodeBlock ends with a NUL); url: the URL-safe alphabet without
 * padding. Returns the length written, NUL not counted. */
static size_t lib_b64_encode_to(const unsigned char *p, size_t n, char *out, bool url)
{
	enum { CHUNK = 3 << 20 }; /* whole groups, and an int for libcrypto */
	size_t i, o = 0;

	for (i = 0; i < n; i += CHUNK) {
		int k = (int)(n - i < CHUNK ? n - i : CHUNK);

		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p + i, k);
	}
	if (url) {
		while (o > 0 && out[o - 1] == '=')
			o--;
		for (i = 0; i < o; i++) {
			if (out[i] == '+')
				out[i] = '-';
			else if (out[i] == '/')
				out[i] = '_';
		}
	}
	return o;
}

/* Decodes either alphabet, padding optional, whitespace not allowed;
 * out needs 3 * (n / 4) + 3 bytes. Returns the length, or -1. */
static long lib_b64_decode_to(const char *s, size_t n, unsigned char *out)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char tmp[1024 + 1]; /* whole groups in the standard alphabet */
	size_t i, j, take, o = 0, pad = 0, rem;

	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	rem = n % 4;
	if ((pad && (n + pad) % 4) || rem == 1)
		return -1;
	for (i = 0; i < n; i += take) {
		size_t k = take = n - i < sizeof(tmp) - 1 ? n - i : sizeof(tmp) - 1;
		int got;

		for (j = 0; j < k; j++) {
			char ch = s[i + j];

			tmp[j] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
		}
		tmp[k] = '\0';
		if (strspn(tmp, abc) != k)
			return -1;
		while (k % 4)
			tmp[k++] = '=';
		got = EVP_DecodeBlock(out + o, (const unsigned char *)tmp, (int)k);
		if (got < 0)
			return -1;
		o += (size_t)got;
	}
	if (rem) {
		/* the last group decoded 3 bytes; the 4 - rem past its own hold
		 * the left-over bits, which must be zero (a canonical encoding) */
		for (j = 4 - rem; j > 0; j--)
			if (out[--o])
				return -1;
	}
	return (long)o;
}

static int lib_b64_encode(lua_State *L)
{
	size_t l, n;
	const char *s = luaL_checklstring(L, 1, &l);
	bool url = lua_toboolean(L, 2);
	luaL_Buffer b;
	char *p;

	if (l > rule__rt(L)->lim.alloc_max / 2)
		rule__errorf(L, "base64.encode: input of %zu bytes is too large", l);
	rule__charge_bytes(L, l, RULE_COST_B64_PER);
	p = luaL_buffinitsize(L, &b, 4 * ((l + 2) / 3) + 1);
	n = lib_b64_encode_to((const unsigned char *)s, l, p, url);
	luaL_pushresultsize(&b, n);
	return 1;
}

static int lib_b64_decode(lua_State *L)
{
	size_t l;
	long n;
	const char *s = luaL_checklstring(L, 1, &l);
	luaL_Buffer b;
	char *p;

	rule__charge_bytes(L, l, RULE_COST_B64_PER);
	p = luaL_buffinitsize(L, &b, 3 * (l / 4) + 3);

	n = lib_b64_decode_to(s, l, (unsigned char *)p);
	if (n < 0) {
		luaL_pushresultsize(&b, 0);
		luaL_pushfail(L);
		lua_pushliteral(L, "invalid base64");
		return 2;
	}
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

/* ---- lead, currency, goal, log ---------------------------------------- */

static struct rule_call *lib_call(lua_State *L, const char *fn)
{
	struct rule_rt *rt = rule__rt(L);

	if (!rt->call || !rt->call->b)
		rule__errorf(L, "%s is not available here", fn);
	return rt->call;
}

static void lib_note(lua_State *L, struct rule_rt *rt, const char *msg)
{
	struct rule_result *r = rt->call->res;
	char where[LUA_IDSIZE + 24];

	rule__where(L, where, sizeof(where));
	rule__line(&r->notes, rt->lim.notes_max, &r->notes_dropped, where, msg, strlen(msg));
}

/* Counts a refused edit, notes it, pushes false and the message; 2. */
__attribute__((format(printf, 3, 4)))
static int lib_refuse(lua_State *L, struct rule_rt *rt, const char *fmt, ...)
{
	char msg[LIB_MSG];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rt->call->res->refused++;
	lib_note(L, rt, msg);
	luaL_pushfail(L);
	lua_pushstring(L, msg);
	return 2;
}

/* The lead of argument 1. 1: *idx set; 0: results pushed (nil id, or
 * refused), return 2. */
static int lib_lead(lua_State *L, struct rule_rt *rt, const char *fn, size_t *idx)
{
	struct rule_call *c = lib_call(L, fn);
	lua_Integer id;
	int isnum;
	long i;

	if (!c->process)
		rule__errorf(L, "%s is only available in process", fn);
	c->res->edits++;
	if (lua_isnoneornil(L, 1)) {
		c->res->unknown++;
		luaL_pushfail(L);
		lua_pushliteral(L, "not a lead of ours (nil id)");
		return 0;
	}
	id = lua_tointegerx(L, 1, &isnum);
	if (!isnum) {
		lib_refuse(L, rt, "lead id '%s' is not an integer",
			   lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : luaL_typename(L, 1));
		return 0;
	}
	i = rule__find(c->index, c->b, id);
	if (i < 0) {
		lib_refuse(L, rt, "lead %lld is not in this batch", (long long)id);
		return 0;
	}
	*idx = (size_t)i;
	return 1;
}

static const struct lead_goal *lib_goal_id(const struct rule_batch *b, int64_t id)
{
	size_t i;

	for (i = 0; id && i < b->ngoals; i++)
		if (b->goals[i].goal.id == id)
			return &b->goals[i].goal;
	return NULL;
}

static const struct lead_goal *lib_goal_code(const struct rule_batch *b, int64_t offer,
					     const char *code)
{
	size_t i;

	for (i = 0; i < b->ngoals; i++)
		if (b->goals[i].offer == offer && b->goals[i].code &&
		    strcmp(b->goals[i].code, code) == 0)
			return &b->goals[i].goal;
	return NULL;
}

static int lib_currency_iso(const struct rule_batch *b, const char *iso)
{
	size_t i;

	for (i = 0; i < b->ncurrencies; i++)
		if (strcasecmp(b->currencies[i].iso, iso) == 0)
			return b->currencies[i].id;
	return -1;
}

static int lib_reasons_max(const struct rule_batch *b)
{
	if (b->reasons_max <= 0)
		return REASON_STD_MAX;
	return b->reasons_max > REASON_MAX ? REASON_MAX : b->reasons_max;
}

/* Applies e to lead idx; pushes true, or false and why. Returns 1 or 2.
 * A lead's first change is computed straight into the next free change
 * record, committed only when the lead changed: no copy of struct lead. */
static int lib_apply(lua_State *L, struct rule_rt *rt, size_t idx, const struct lead_edit *e)
{
	struct rule_call *c = rt->call;
	struct rule_result *r = c->res;
	const struct rule_batch *b = c->b;
	uint32_t ch = r->change_of[idx];
	const struct lead *cur = ch ? &r->changes[ch - 1].after : &b->leads[idx];
	enum lead_source src = c->v == RULE_DATES ? SOURCE_DATES : SOURCE_POLL;
	char err[LIB_MSG];
	struct lead *out;
	enum lead_result lr;

	if ((e->set & LF_REASON) && (e->reason < 1 || e->reason > lib_reasons_max(b)))
		return lib_refuse(L, rt, "lead %" PRId64 ": reason %d is not in 1..%d", cur->id,
				  e->reason, lib_reasons_max(b));
	if (lead_edit_is_noop(cur, e)) { /* the common poll: no copy, no lead_apply */
		r->unchanged++;
		lua_pushboolean(L, 1);
		return 1;
	}
	if (!ch && r->nchanges == r->capchanges) {
		size_t cap = r->capchanges ? 2 * r->capchanges : 16;
		struct rule_change *nc = realloc(r->changes, cap * sizeof(*nc));

		if (!nc)
			rule__errorf(L, "out of memory");
		r->changes = nc;
		r->capchanges = cap;
	}
	out = ch ? &r->changes[ch - 1].after : &r->changes[r->nchanges].after;
	lr = lead_apply(cur, &b->settings, lib_goal_id(b, cur->goal), e, src, b->now, out, err,
			sizeof(err));
	if (lr == LEAD_REFUSED)
		return lib_refuse(L, rt, "%s", err);
	if (lr == LEAD_UNCHANGED) {
		r->unchanged++;
	} else {
		r->changed++;
		if (!ch) {
			r->changes[r->nchanges].lead = idx;
			r->changes[r->nchanges].edits = 0;
			r->change_of[idx] = (uint32_t)++r->nchanges;
			ch = r->change_of[idx];
		}
		r->changes[ch - 1].edits++;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* Text of a value: strings as they are, numbers as integers when they
 * are. NULL for nil; *bad for other types. */
static const char *lib_text(lua_State *L, int idx, char *tmp, size_t n, size_t *len, bool *bad)
{
	const char *s = NULL;

	*bad = false;
	*len = 0;
	switch (lua_type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, len);
		break;
	case LUA_TNUMBER:
		s = lib_numtext(L, idx, tmp, n, false);
		*len = strlen(s);
		break;
	default:
		if (!decode_is_null(L, idx))
			*bad = true;
		break;
	}
	return s;
}

/* A value for a message: 'text' for strings and numbers, else its type. */
static const char *lib_show(lua_State *L, int idx, char *out, size_t n)
{
	char tmp[48];
	size_t l;
	bool bad;
	const char *s = lib_text(L, idx, tmp, sizeof(tmp), &l, &bad);

	if (s)
		snprintf(out, n, "'%.40s'", s);
	else
		snprintf(out, n, "(%s)", luaL_typename(L, idx));
	return out;
}

static bool lib_int(lua_State *L, int idx, lua_Integer min, lua_Integer max, lua_Integer *out)
{
	int isnum;
	lua_Integer v = lua_tointegerx(L, idx, &isnum);

	if (!isnum || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Money in units (number or decimal string) → cents. */
static bool lib_money(lua_State *L, int idx, int64_t *cents)
{
	if (lua_type(L, idx) == LUA_TSTRING)
		return lead_money_parse(lua_tostring(L, idx), cents) == 0;
	if (lua_type(L, idx) != LUA_TNUMBER)
		return false;
	if (lua_isinteger(L, idx)) {
		lua_Integer v = lua_tointeger(L, idx);

		if (v > INT64_MAX / 100 || v < INT64_MIN / 100)
			return false;
		*cents = (int64_t)v * 100;
		return true;
	}
	{
		double d = lua_tonumber(L, idx) * 100.0;

		if (!isfinite(d) || fabs(d) > 9.0e18)
			return false;
		*cents = (int64_t)llround(d);
		return true;
	}
}

/* A currency given as an id or an ISO code. */
static bool lib_currency(lua_State *L, int idx, const struct rule_batch *b, int *out)
{
	lua_Integer v;

	if (lua_type(L, idx) == LUA_TSTRING && !lua_isnumber(L, idx)) {
		int id = lib_currency_iso(b, lua_tostring(L, idx));

		if (id < 0)
			return false;
		*out = id;
		return true;
	}
	if (!lib_int(L, idx, 0, INT_MAX, &v))
		return false;
	*out = (int)v;
	return true;
}

struct lib_edit {
	struct lead_edit e;
	char comment[48], track[48]; /* numbers written as text */
};

static bool lib_key_is(const char *k, size_t kl, const char *name)
{
	return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

/* The cash table at -1 into x. 0, or -1 with msg. */
static int lib_cash(lua_State *L, const struct rule_batch *b, const struct lead *cur,
		    struct lib_edit *x, char *msg, size_t n)
{
	int t = lua_gettop(L);
	char show[64];

	lua_pushnil(L);
	while (lua_next(L, t)) {
		size_t kl;
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
		int64_t *dst = NULL;
		unsigned flag = 0;

		if (!k) {
			snprintf(msg, n, "lead %" PRId64 ": cash has a key of type %s", cur->id,
				 luaL_typename(L, -2));
			return -1;
		}
		if (lib_key_is(k, kl, "wm"))
			dst = &x->e.cash_wm, flag = LF_CASH_WM;
		else if (lib_key_is(k, kl, "pay"))
			dst = &x->e.cash_pay, flag = LF_CASH_PAY;
		else if (lib_key_is(k, kl, "ref"))
			dst = &x->e.cash_ref, flag = LF_CASH_REF;
		if (dst) {
			if (!lib_money(L, -1, dst)) {
				snprintf(msg, n, "lead %" PRId64 ": bad cash %s %s", cur->id, k,
					 lib_show(L, -1, show, sizeof(show)));
				return -1;
			}
			x->e.set |= flag;
		} else if (lib_key_is(k, kl, "cc")) {
			if (!lib_currency(L, -1, b, &x->e.cash_cc)) {
				snprintf(msg, n, "lead %" PRId64 ": bad cash cc %s", cur->id,
					 lib_show(L, -1, show, sizeof(show)));
				return -1;
			}
			x->e.set |= LF_CASH_CC;
		} else {
			snprintf(msg, n, "lead %" PRId64 ": unknown cash field '%s'", cur->id, k);
			return -1;
		}
		lua_pop(L, 1);
	}
	return 0;
}

/* The fields table at t into x. 0, or -1 with msg. Strings borrowed from
 * the table stay valid while it is on the stack. */
static int lib_parse_edit(lua_State *L, int t, const struct rule_batch *b, const struct lead *cur,
			  struct lib_edit *x, char *msg, size_t n)
{
	lua_Integer v;
	bool bad;
	size_t l, kl = 0;
	const char *k = NULL;
	char show[64];
	int top = lua_gettop(L), rc = -1;

	memset(x, 0, sizeof(*x));
	lua_pushnil(L);
	while (lua_next(L, t)) {
		k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
		if (!k) {
			snprintf(msg, n, "lead %" PRId64 ": a field name of type %s", cur->id,
				 luaL_typename(L, -2));
			goto out;
		}
		if (lib_key_is(k, kl, "accept")) {
			if (lua_type(L, -1) == LUA_TBOOLEAN)
				x->e.accept = lua_toboolean(L, -1);
			else if (lib_int(L, -1, 0, 1, &v))
				x->e.accept = v == 1;
			else
				goto badval;
			x->e.set |= LF_ACCEPT;
		} else if (lib_key_is(k, kl, "status")) {
			if (!lib_int(L, -1, INT_MIN, INT_MAX, &v))
				goto badval;
			x->e.status = (int)v;
			x->e.set |= LF_STATUS;
		} else if (lib_key_is(k, kl, "reason")) {
			if (!lib_int(L, -1, INT_MIN, INT_MAX, &v))
				goto badval;
			x->e.reason = (int)v;
			x->e.set |= LF_REASON;
		} else if (lib_key_is(k, kl, "hold")) {
			if (lua_type(L, -1) == LUA_TBOOLEAN) {
				if (lua_toboolean(L, -1)) {
					x->e.hold_days = -1;
					x->e.set |= LF_HOLD;
				}
			} else if (lib_int(L, -1, 0, LEAD_HOLD_DAYS_MAX, &v)) {
				x->e.hold_days = (int)v;
				x->e.set |= LF_HOLD;
			} else {
				goto badval;
			}
		} else if (lib_key_is(k, kl, "comment")) {
			x->e.comment = lib_text(L, -1, x->comment, sizeof(x->comment), &l, &bad);
			if (bad || !x->e.comment)
				goto badval;
			x->e.set |= LF_COMMENT;
		} else if (lib_key_is(k, kl, "track")) {
			x->e.track = lib_text(L, -1, x->track, sizeof(x->track), &l, &bad);
			if (bad || !x->e.track)
				goto badval;
			x->e.set |= LF_TRACK;
		} else if (lib_key_is(k, kl, "base")) {
			if (!lib_money(L, -1, &x->e.base))
				goto badval;
			x->e.set |= LF_BASE;
		} else if (lib_key_is(k, kl, "counts")) {
			if (!lib_int(L, -1, INT_MIN, INT_MAX, &v))
				goto badval;
			x->e.counts = (int)v;
			x->e.set |= LF_COUNTS;
		} else if (lib_key_is(k, kl, "curr")) {
			if (!lib_currency(L, -1, b, &x->e.curr))
				goto badval;
			x->e.set |= LF_CURR;
		} else if (lib_key_is(k, kl, "goal")) {
			if (lua_type(L, -1) == LUA_TSTRING && !lua_isnumber(L, -1)) {
				x->e.new_goal = lib_goal_code(b, cur->offer ? cur->offer : b->offer,
							      lua_tostring(L, -1));
				if (!x->e.new_goal)
					goto badval;
				x->e.goal = x->e.new_goal->id;
			} else if (lib_int(L, -1, 0, INT64_MAX, &v)) {
				x->e.goal = v;
				x->e.new_goal = lib_goal_id(b, v);
				if (v && !x->e.new_goal)
					goto badval;
			} else {
				goto badval;
			}
			x->e.set |= LF_GOAL;
		} else if (lib_key_is(k, kl, "cash")) {
			if (lua_type(L, -1) != LUA_TTABLE)
				goto badval;
			if (lib_cash(L, b, cur, x, msg, n) < 0)
				goto out;
		} else {
			snprintf(msg, n, "lead %" PRId64 ": unknown field '%s'", cur->id, k);
			goto out;
		}
		lua_pop(L, 1);
	}
	rc = 0;
	goto out;
badval:
	snprintf(msg, n, "lead %" PRId64 ": bad %s %s", cur->id, k, lib_show(L, -1, show, sizeof(show)));
out:
	lua_settop(L, top);
	return rc;
}

static int lib_edit(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	struct lib_edit x;
	char msg[LIB_MSG];
	size_t idx;

	if (!lib_lead(L, rt, "lead.edit", &idx))
		return 2;
	if (lua_type(L, 2) != LUA_TTABLE)
		return lib_refuse(L, rt, "lead %" PRId64 ": lead.edit needs a table of fields, not %s",
				  rt->call->b->leads[idx].id, luaL_typename(L, 2));
	if (lib_parse_edit(L, 2, rt->call->b, &rt->call->b->leads[idx], &x, msg, sizeof(msg)) < 0)
		return lib_refuse(L, rt, "%s", msg);
	return lib_apply(L, rt, idx, &x.e);
}

static int lib_approve(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	struct lead_edit e;
	char tmp[48];
	size_t idx, l;
	bool bad;

	if (!lib_lead(L, rt, "lead.approve", &idx))
		return 2;
	memset(&e, 0, sizeof(e));
	e.set = LF_ACCEPT;
	e.accept = true;
	e.comment = lib_text(L, 2, tmp, sizeof(tmp), &l, &bad);
	if (bad)
		return lib_refuse(L, rt, "lead %" PRId64 ": a comment cannot be a %s",
				  rt->call->b->leads[idx].id, luaL_typename(L, 2));
	if (e.comment)
		e.set |= LF_COMMENT;
	return lib_apply(L, rt, idx, &e);
}

/* setstatus and setstc (comment: also write the raw text) */
static int lib_setstatus_as(lua_State *L, bool comment, const char *fn)
{
	struct rule_rt *rt = rule__rt(L);
	struct rule_call *c;
	struct lead_edit e;
	struct status_match m;
	char tmp[48], msg[LIB_MSG] = "";
	const char *text;
	size_t idx, l;
	bool bad, known;
	int n;

	if (!lib_lead(L, rt, fn, &idx))
		return 2;
	c = rt->call;
	text = lib_text(L, 2, tmp, sizeof(tmp), &l, &bad);
	if (bad)
		return lib_refuse(L, rt, "lead %" PRId64 ": a status text cannot be a %s",
				  c->b->leads[idx].id, luaL_typename(L, 2));
	memset(&e, 0, sizeof(e));
	/* the offer's words, then the variant's map, then the built-ins; a
	 * blocker at a level stops there (status.h, "Precedence") */
	if (text && status_words_lookup(c->b->status_words, text, l, &m))
		known = m.status != 0;
	else
		known = text && status_recognise(rt->words[c->v], text, l, &m);
	if (known && m.accept) {
		e.set |= LF_ACCEPT;
		e.accept = true;
	} else if (known) {
		e.set |= LF_STATUS;
		e.status = m.status;
		if (m.reason) {
			e.set |= LF_REASON;
			e.reason = m.reason;
		}
	} else {
		c->res->unrecognised++;
		snprintf(msg, sizeof(msg), "lead %" PRId64 ": unrecognised status '%.80s'",
			 c->b->leads[idx].id, text ? text : "(nil)");
		lib_note(L, rt, msg);
	}
	if (comment && text) {
		e.set |= LF_COMMENT;
		e.comment = text;
	}
	if (!e.set) {
		luaL_pushfail(L);
		lua_pushstring(L, msg);
		return 2;
	}
	n = lib_apply(L, rt, idx, &e);
	if (n == 1 && !known) {
		lua_pop(L, 1);
		luaL_pushfail(L);
		lua_pushstring(L, msg);
		n = 2;
	}
	return n;
}

static int lib_setstatus(lua_State *L)
{
	return lib_setstatus_as(L, false, "lead.setstatus");
}

static int lib_setstc(lua_State *L)
{
	return lib_setstatus_as(L, true, "lead.setstc");
}

static int lib_currency_id(lua_State *L)
{
	struct rule_call *c = lib_call(L, "currency.id");
	int id = lib_currency_iso(c->b, luaL_checkstring(L, 1));

	if (id < 0)
		luaL_pushfail(L);
	else
		lua_pushinteger(L, id);
	return 1;
}

/* goal.bycode([offer,] code): offer an id or a table with .id */
static int lib_goal_bycode(lua_State *L)
{
	struct rule_call *c = lib_call(L, "goal.bycode");
	int64_t offer = c->b->offer;
	const struct lead_goal *g;
	const char *code;

	if (lua_gettop(L) >= 2) {
		if (lua_type(L, 1) == LUA_TTABLE) {
			lua_getfield(L, 1, "id");
			offer = luaL_checkinteger(L, -1);
			lua_pop(L, 1);
		} else {
			offer = luaL_checkinteger(L, 1);
		}
		code = luaL_checkstring(L, 2);
	} else {
		code = luaL_checkstring(L, 1);
	}
	g = lib_goal_code(c->b, offer, code);
	if (g)
		lua_pushinteger(L, g->id);
	else
		luaL_pushfail(L);
	return 1;
}

static int lib_log(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	struct rule_result *r = rt->call ? rt->call->res : NULL;
	char where[LUA_IDSIZE + 24];
	int i, n = lua_gettop(L);
	luaL_Buffer b;
	size_t len;
	const char *s;

	if (!r)
		return 0;
	luaL_buffinit(L, &b);
	for (i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	s = lua_tolstring(L, -1, &len);
	if (len > LIB_LOG_LINE)
		len = LIB_LOG_LINE;
	rule__where(L, where, sizeof(where));
	rule__line(&r->log, rt->lim.log_max, &r->log_dropped, where, s, len);
	return 0;
}

/* ---- lazy globals ----------------------------------------------------- */

static void lib_join(lua_State *L, const struct rule_batch *b, bool ext)
{
	luaL_Buffer lb;
	char tmp[24];
	size_t i;

	luaL_buffinit(L, &lb);
	for (i = 0; i < b->nleads; i++) {
		if (i)
			luaL_addchar(&lb, ',');
		if (ext) {
			luaL_addstring(&lb, b->leads[i].ext);
		} else {
			snprintf(tmp, sizeof(tmp), "%" PRId64, b->leads[i].id);
			luaL_addstring(&lb, tmp);
		}
	}
	luaL_pushresult(&lb);
}

static int lib_readonly(lua_State *L);
static int lib_xml_find(lua_State *L);
static int lib_xml_all(lua_State *L);

/* ---- e2i, ids, i2t, ide: views of the batch ------------------------- */

/* They are empty tables whose metatable looks keys up in the batch (e2i
 * through an index of the external ids built on first use, the others
 * through the id index), so a rule does not pay for building a table of
 * a million entries it reads a few times each. pairs() walks the batch;
 * # is 0. */
enum { LIB_E2I, LIB_IDS, LIB_I2T, LIB_IDE };
static const char *const lib_view_names[] = { "e2i", "ids", "i2t", "ide" };

static uint64_t lib_ext_hash(const char *s, size_t n)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * UINT64_C(0x100000001b3);
	return h ^ (h >> 29);
}

static void lib_ext_build(lua_State *L, struct rule_call *c)
{
	const struct rule_batch *b = c->b;
	size_t cap = 16, i;

	while (cap < 2 * b->nleads)
		cap *= 2;
	c->ext_slots = calloc(cap, sizeof(*c->ext_slots));
	if (!c->ext_slots)
		rule__errorf(L, "out of memory");
	c->ext_nslots = cap;
	for (i = 0; i < b->nleads; i++) {
		const char *e = b->leads[i].ext;
		size_t n = strnlen(e, LEAD_EXT_MAX);
		uint64_t h = lib_ext_hash(e, n), tag = h >> 32;
		size_t k = (size_t)h & (cap - 1);

		if (!n || n == LEAD_EXT_MAX)
			continue;
		for (;; k = (k + 1) & (cap - 1)) {
			uint64_t sl = c->ext_slots[k];
			const char *o;

			if (!sl) {
				c->ext_slots[k] = tag << 32 | (uint64_t)(i + 1);
				break;
			}
			o = b->leads[(uint32_t)sl - 1].ext;
			if ((sl >> 32) == tag && strncmp(o, e, LEAD_EXT_MAX) == 0)
				break; /* a repeated external id: the first wins */
		}
	}
}

static long lib_ext_find(lua_State *L, struct rule_call *c, const char *s, size_t n)
{
	const struct rule_batch *b = c->b;
	uint64_t h, tag;
	size_t k;

	if (!c->ext_slots)
		lib_ext_build(L, c);
	if (!n || n >= LEAD_EXT_MAX)
		return -1;
	h = lib_ext_hash(s, n);
	tag = h >> 32;
	for (k = (size_t)h & (c->ext_nslots - 1);; k = (k + 1) & (c->ext_nslots - 1)) {
		uint64_t sl = c->ext_slots[k];
		const char *o;

		if (!sl)
			return -1;
		o = b->leads[(uint32_t)sl - 1].ext;
		if ((sl >> 32) == tag && memcmp(o, s, n) == 0 && o[n] == '\0')
			return (long)(uint32_t)sl - 1;
	}
}

static void lib_view_push(lua_State *L, const struct lead *l, int kind)
{
	switch (kind) {
	case LIB_E2I: lua_pushinteger(L, l->id); break;
	case LIB_IDS: lua_pushinteger(L, l->status); break;
	case LIB_I2T: lua_pushinteger(L, l->created); break;
	default: lua_pushstring(L, l->ext); break;
	}
}

static int lib_view_index(lua_State *L)
{
	struct rule_call *c = rule__rt(L)->call;
	int kind = (int)lua_tointeger(L, lua_upvalueindex(1)), isnum;
	long i = -1;

	if (!c || !c->b)
		return 0;
	if (kind == LIB_E2I) {
		char tmp[24];
		size_t n;
		const char *s = NULL;

		if (lua_type(L, 2) == LUA_TSTRING) {
			s = lua_tolstring(L, 2, &n);
		} else if (lua_type(L, 2) == LUA_TNUMBER) {
			lua_Integer v = lua_tointegerx(L, 2, &isnum);

			if (isnum) {
				snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
				s = tmp;
				n = strlen(tmp);
			}
		}
		if (s)
			i = lib_ext_find(L, c, s, n);
	} else {
		lua_Integer id = lua_tointegerx(L, 2, &isnum);

		if (isnum)
			i = rule__find(c->index, c->b, id);
	}
	if (i < 0)
		return 0;
	lib_view_push(L, &c->b->leads[i], kind);
	return 1;
}

static int lib_view_next(lua_State *L)
{
	struct rule_call *c = rule__rt(L)->call;
	int kind = (int)lua_tointeger(L, lua_upvalueindex(1));
	lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));

	if (!c || !c->b)
		return 0;
	for (; (size_t)i < c->b->nleads; i++) {
		const struct lead *l = &c->b->leads[i];

		if (kind == LIB_E2I && !l->ext[0])
			continue;
		lua_pushinteger(L, i + 1);
		lua_replace(L, lua_upvalueindex(2));
		if (kind == LIB_E2I)
			lua_pushstring(L, l->ext);
		else
			lua_pushinteger(L, l->id);
		lib_view_push(L, l, kind);
		return 2;
	}
	return 0;
}

static int lib_view_pairs(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushinteger(L, 0);
	lua_pushcclosure(L, lib_view_next, 2);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

static void lib_view_metatables(lua_State *L, struct rule_rt *rt)
{
	int k;

	for (k = 0; k < 4; k++) {
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, k);
		lua_pushcclosure(L, lib_view_index, 1);
		lua_setfield(L, -2, "__index");
		lua_pushinteger(L, k);
		lua_pushcclosure(L, lib_view_pairs, 1);
		lua_setfield(L, -2, "__pairs");
		lua_pushstring(L, lib_view_names[k]);
		lua_pushcclosure(L, lib_readonly, 1);
		lua_setfield(L, -2, "__newindex");
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "__metatable");
		rt->ref_proxy_mt[k] = luaL_ref(L, LUA_REGISTRYINDEX);
	}
}

int rule__lazy(lua_State *L, struct rule_rt *rt, const char *key)
{
	const struct rule_batch *b = rt->call ? rt->call->b : NULL;
	int n, k;
	size_t i;

	if (!b)
		return 0;
	for (k = 0; k < 4; k++) {
		if (strcmp(key, lib_view_names[k]) == 0) {
			lua_createtable(L, 0, 0);
			lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_proxy_mt[k]);
			lua_setmetatable(L, -2);
			return 1;
		}
	}
	n = b->nleads > INT_MAX ? INT_MAX : (int)b->nleads;
	if (strcmp(key, "idl") == 0) {
		lua_createtable(L, n, 0);
		for (i = 0; i < b->nleads; i++) {
			lua_pushinteger(L, b->leads[i].id);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
	} else if (strcmp(key, "idsl") == 0 || strcmp(key, "idel") == 0) {
		lib_join(L, b, key[2] == 'e');
	} else {
		return 0;
	}
	return 1;
}

/* __index of the base table: the lazy globals, cached in the call's env */
static int lib_lazy_index(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);

	if (!rt->call || lua_type(L, 2) != LUA_TSTRING)
		return 0;
	lua_settop(L, 2);
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_env); /* 3 */
	if (lua_type(L, 3) != LUA_TTABLE || !rule__lazy(L, rt, lua_tostring(L, 2)))
		return 0;
	lua_pushvalue(L, 2);
	lua_pushvalue(L, -2);
	lua_rawset(L, 3);
	return 1;
}

/* ---- the sandbox's base functions ------------------------------------- */

static void lib_after_pcall(lua_State *L, int st)
{
	struct rule_rt *rt = rule__rt(L);

	if (st == LUA_ERRMEM && !rt->killed)
		rule__kill(rt, RULE_KILL_MEMORY, rt->mem_where[0] ? rt->mem_where : NULL);
	if (rt->killed)
		rule__raise_kill(L);
}

static int lib_pcall(lua_State *L)
{
	int st;

	luaL_checkany(L, 1);
	st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
	lib_after_pcall(L, st);
	lua_pushboolean(L, st == LUA_OK);
	lua_insert(L, 1);
	return lua_gettop(L);
}

/* xpcall's handler runs before the stack unwinds, and when the error is a
 * kill raised by the hook, with hooks off: the rule's handler must not run
 * then (a loop in it would never end). */
static int lib_xpcall_msgh(lua_State *L)
{
	if (rule__rt(L)->killed)
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static int lib_xpcall(lua_State *L)
{
	int st, n = lua_gettop(L);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, lib_xpcall_msgh, 1);
	lua_replace(L, 2);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_replace(L, 1);
	lua_replace(L, 2); /* msgh, f, args... */
	st = lua_pcall(L, n - 2, LUA_MULTRET, 1);
	lib_after_pcall(L, st);
	lua_pushboolean(L, st == LUA_OK);
	lua_replace(L, 1);
	return lua_gettop(L);
}

/* setmetatable without __gc: finalizers run with hooks off, out of the
 * budget's reach. */
static int lib_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			rule__errorf(L, "__gc metamethods are not allowed in rules");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		rule__errorf(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* string.rep with its result bounded up front (Lua's loops n times even
 * when the result is empty) */
static int lib_rep(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	size_t l, ls, total, seps, i;
	const char *s = luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	const char *sep = luaL_optlstring(L, 3, "", &ls);
	luaL_Buffer b;
	char *p;

	if (n <= 0 || (l == 0 && ls == 0)) {
		lua_pushliteral(L, "");
		return 1;
	}
	if ((uint64_t)n > SIZE_MAX / 2 || __builtin_mul_overflow(l, (size_t)n, &total) ||
	    __builtin_mul_overflow(ls, (size_t)n - 1, &seps) ||
	    __builtin_add_overflow(total, seps, &total) || total > rt->lim.alloc_max)
		rule__errorf(L, "string.rep: the result is over the limit of %zu bytes",
			   rt->lim.alloc_max);
	rule__charge_bytes(L, total, RULE_COST_COPY_PER);
	p = luaL_buffinitsize(L, &b, total);
	for (i = 0; i < (size_t)n; i++) {
		memcpy(p, s, l);
		p += l;
		if (ls && i + 1 < (size_t)n) {
			memcpy(p, sep, ls);
			p += ls;
		}
	}
	luaL_pushresultsize(&b, total);
	return 1;
}

/* table.move charged by its element count (it loops in C) */
static int lib_move(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);

	if (e >= f)
		rule__charge(L, e - f < INT64_MAX / 2 ? (int64_t)(e - f) + 1 : INT64_MAX / 2);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

/* Lua's own C functions whose work grows with their input, charged
 * before they run (table.concat's bytes after: they are only known then,
 * and bounded by the memory cap). Upvalues: the function (a C function
 * without upvalues of its own), its kind. */
enum lib_paid {
	LIB_PAID_CASE,   /* string.upper/lower/reverse: bytes of the subject */
	LIB_PAID_FORMAT, /* string.format: bytes of its string arguments */
	LIB_PAID_UTF8,   /* utf8.len: bytes of the subject */
	LIB_PAID_CONCAT, /* table.concat: items, then bytes */
	LIB_PAID_INSERT, /* table.insert(t, pos, v): the items it shifts up */
	LIB_PAID_REMOVE, /* table.remove(t, pos): the items it shifts down */
	LIB_PAID_SORT,   /* table.sort: n log2 n comparisons */
	LIB_PAID_UNPACK, /* table.unpack: the values it pushes */
};

/* #t of the table at 1, or 0 for anything else (the function raises) */
static lua_Integer lib_len1(lua_State *L)
{
	lua_Integer n = lua_type(L, 1) == LUA_TTABLE ? luaL_len(L, 1) : 0;

	return n > 0 ? n : 0;
}

static int64_t lib_units(lua_Integer n, int64_t rate)
{
	if (n <= 0)
		return 0;
	return n < INT64_MAX / 4 / rate ? (int64_t)n * rate : INT64_MAX / 4;
}

static int lib_paid(lua_State *L)
{
	enum lib_paid kind = (enum lib_paid)lua_tointeger(L, lua_upvalueindex(2));
	int top = lua_gettop(L), i, nret;
	size_t bytes = 0, l;
	int64_t units = 0;

	switch (kind) {
	case LIB_PAID_CASE:
	case LIB_PAID_UTF8:
		if (lua_type(L, 1) == LUA_TSTRING) {
			lua_tolstring(L, 1, &l);
			if (l >= LIB_CHARGE_MIN)
				units = kind == LIB_PAID_CASE ? (int64_t)(l / RULE_COST_COPY_PER)
							      : lib_units((lua_Integer)l, RULE_COST_UTF8);
		}
		break;
	case LIB_PAID_FORMAT:
		for (i = 2; i <= top; i++)
			if (lua_type(L, i) == LUA_TSTRING) {
				lua_tolstring(L, i, &l);
				bytes += l;
			}
		if (bytes >= LIB_CHARGE_MIN)
			units = (int64_t)(bytes / RULE_COST_FORMAT_PER);
		break;
	case LIB_PAID_INSERT:
		if (top == 3 && lua_isinteger(L, 2))
			units = lib_units(lib_len1(L) + 1 - lua_tointeger(L, 2), RULE_COST_SHIFT);
		break;
	case LIB_PAID_REMOVE:
		if (top >= 2 && lua_isinteger(L, 2))
			units = lib_units(lib_len1(L) - lua_tointeger(L, 2), RULE_COST_SHIFT);
		break;
	case LIB_PAID_SORT: {
		lua_Integer n = lib_len1(L), lg = 1;

		while (lg < 63 && ((lua_Integer)1 << lg) < n)
			lg++;
		if (n > 1)
			units = lib_units(n < LUA_MAXINTEGER / 64 ? n * lg : LUA_MAXINTEGER / 64,
					  RULE_COST_COMPARE);
		break;
	}
	case LIB_PAID_UNPACK:
		if (lua_type(L, 1) == LUA_TTABLE) {
			lua_Integer first = luaL_optinteger(L, 2, 1);
			lua_Integer last = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);

			if (last >= first && last - first < LUA_MAXINTEGER / 2)
				units = last - first + 1;
			lua_settop(L, top);
		}
		break;
	case LIB_PAID_CONCAT:
		if (lua_type(L, 1) == LUA_TTABLE) {
			lua_Integer first = luaL_optinteger(L, 3, 1);
			lua_Integer last = lua_isnoneornil(L, 4) ? luaL_len(L, 1) : luaL_checkinteger(L, 4);

			if (last >= first)
				units = lib_units(last - first < LUA_MAXINTEGER / 2 ? last - first + 1
										   : LUA_MAXINTEGER / 2,
						  RULE_COST_CONCAT_ITEM);
			lua_settop(L, top);
		}
		break;
	}
	if (units)
		rule__charge(L, units);
	/* called in our frame, not through lua_call: its argument errors
	 * read as they did ("bad argument #2 to 'format'") */
	nret = lua_tocfunction(L, lua_upvalueindex(1))(L);
	if (kind == LIB_PAID_CONCAT && nret == 1 && lua_type(L, -1) == LUA_TSTRING) {
		lua_tolstring(L, -1, &l);
		if (l >= LIB_CHARGE_MIN)
			rule__charge_bytes(L, l, RULE_COST_COPY_PER);
	}
	return nret;
}

/* xml.find/all: paid by the children they look at */
static void lib_xml_children(lua_State *L)
{
	int top = lua_gettop(L);

	if (lua_type(L, 1) == LUA_TTABLE && lua_getfield(L, 1, "children") == LUA_TTABLE) {
		int64_t units = lib_units((lua_Integer)lua_rawlen(L, -1), RULE_COST_XML_CHILD);

		if (units)
			rule__charge(L, units);
	}
	lua_settop(L, top);
}

static int lib_xml_find(lua_State *L)
{
	lib_xml_children(L);
	return decode_lua_xml_find(L);
}

static int lib_xml_all(lua_State *L)
{
	lib_xml_children(L);
	return decode_lua_xml_all(L);
}

/* Wraps the function named name of the table at -1 in lib_paid. */
static void lib_pay(lua_State *L, const char *name, enum lib_paid kind)
{
	lua_getfield(L, -1, name);
	lua_pushinteger(L, kind);
	lua_pushcclosure(L, lib_paid, 2);
	lua_setfield(L, -2, name);
}

static int lib_readonly(lua_State *L)
{
	rule__errorf(L, "'%s' is read-only", lua_tostring(L, lua_upvalueindex(1)));
}

/* Replaces the table at -1 by a read-only proxy of it named name. */
static void lib_proxy(lua_State *L, const char *name)
{
	lua_createtable(L, 0, 0);
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, name);
	lua_pushcclosure(L, lib_readonly, 1);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	lua_remove(L, -2);
}

/* Copies the fields of the table at src named in names (all when NULL)
 * into the table at -1, but those in skip. */
static void lib_copy(lua_State *L, int src, const char *const *names, const char *const *skip)
{
	src = lua_absindex(L, src);
	if (names) {
		for (; *names; names++) {
			lua_getfield(L, src, *names);
			lua_setfield(L, -2, *names);
		}
		return;
	}
	lua_pushnil(L);
	while (lua_next(L, src)) {
		const char *const *s;
		bool drop = false;

		for (s = skip; s && *s && !drop; s++)
			drop = lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), *s) == 0;
		if (drop) {
			lua_pop(L, 1);
			continue;
		}
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_settable(L, -4);
	}
}

/* Pushes a new table holding the fields of the loaded library name. */
static void lib_clone(lua_State *L, int loaded, const char *name, const char *const *only,
		      const char *const *skip)
{
	lua_getfield(L, loaded, name);
	lua_createtable(L, 0, 32);
	lib_copy(L, -2, only, skip);
	lua_remove(L, -2);
}

static void lib_library(lua_State *L, const char *name, const luaL_Reg *fns)
{
	lua_createtable(L, 0, 4);
	luaL_setfuncs(L, fns, 0);
	lib_proxy(L, name);
	lua_setfield(L, -2, name);
}

void rule__open_sandbox(lua_State *L)
{
	static const char *const base_names[] = { "assert", "error", "ipairs", "next", "pairs",
						  "select", "tonumber", "tostring", "type",
						  "getmetatable", "rawequal", "rawget", "rawlen",
						  "_VERSION", NULL };
	static const char *const string_skip[] = { "dump", "find", "match", "gmatch", "gsub",
						   "rep", NULL };
	static const char *const os_names[] = { "time", "date", "clock", NULL };
	static const luaL_Reg base_fns[] = {
		{ "pcall", lib_pcall }, { "xpcall", lib_xpcall },
		{ "setmetatable", lib_setmetatable }, { "log", lib_log }, { "print", lib_log },
		{ NULL, NULL },
	};
	static const luaL_Reg string_fns[] = {
		{ "find", rule__str_find }, { "match", rule__str_match },
		{ "gmatch", rule__str_gmatch }, { "gsub", rule__str_gsub }, { "rep", lib_rep },
		{ NULL, NULL },
	};
	static const luaL_Reg lead_fns[] = {
		{ "edit", lib_edit }, { "approve", lib_approve }, { "setstatus", lib_setstatus },
		{ "setstc", lib_setstc }, { NULL, NULL },
	};
	static const luaL_Reg currency_fns[] = { { "id", lib_currency_id }, { NULL, NULL } };
	static const luaL_Reg goal_fns[] = { { "bycode", lib_goal_bycode }, { NULL, NULL } };
	static const luaL_Reg form_fns[] = {
		{ "encode", lib_form_encode }, { "decode", lib_form_decode },
		{ "escape", lib_form_escape }, { NULL, NULL },
	};
	static const luaL_Reg xml_fns[] = {
		{ "decode", lib_xml_decode }, { "find", lib_xml_find },
		{ "all", lib_xml_all }, { NULL, NULL },
	};
	static const luaL_Reg base64_fns[] = {
		{ "encode", lib_b64_encode }, { "decode", lib_b64_decode }, { NULL, NULL },
	};
	int base, loaded, i;

	lua_createtable(L, 0, 40);
	base = lua_gettop(L);
	lua_pushglobaltable(L);
	lua_insert(L, -2);
	lib_copy(L, -2, base_names, NULL);
	lua_remove(L, -2);
	base = lua_gettop(L);
	luaL_setfuncs(L, base_fns, 0);

	/* string: ours, and the string metatable points at it, locked */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	loaded = lua_gettop(L);
	lib_clone(L, loaded, LUA_STRLIBNAME, NULL, string_skip);
	luaL_setfuncs(L, string_fns, 0);
	lib_pay(L, "upper", LIB_PAID_CASE);
	lib_pay(L, "lower", LIB_PAID_CASE);
	lib_pay(L, "reverse", LIB_PAID_CASE);
	lib_pay(L, "format", LIB_PAID_FORMAT);
	lua_pushliteral(L, "");
	if (!lua_getmetatable(L, -1))
		rule__errorf(L, "strings have no metatable");
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);
	lib_proxy(L, "string");
	lua_setfield(L, base, "string");

	/* table, math, utf8 as they are but table.move; os: time, date, clock */
	lib_clone(L, loaded, LUA_TABLIBNAME, NULL, NULL);
	lua_getfield(L, -1, "move");
	lua_pushcclosure(L, lib_move, 1);
	lua_setfield(L, -2, "move");
	lib_pay(L, "concat", LIB_PAID_CONCAT);
	lib_pay(L, "insert", LIB_PAID_INSERT);
	lib_pay(L, "remove", LIB_PAID_REMOVE);
	lib_pay(L, "sort", LIB_PAID_SORT);
	lib_pay(L, "unpack", LIB_PAID_UNPACK);
	lib_proxy(L, "table");
	lua_setfield(L, base, "table");
	lib_clone(L, loaded, LUA_MATHLIBNAME, NULL, NULL);
	lib_proxy(L, "math");
	lua_setfield(L, base, "math");
	lib_clone(L, loaded, LUA_UTF8LIBNAME, NULL, NULL);
	lib_pay(L, "len", LIB_PAID_UTF8);
	lib_proxy(L, "utf8");
	lua_setfield(L, base, "utf8");
	lib_clone(L, loaded, LUA_OSLIBNAME, os_names, NULL);
	lib_proxy(L, "os");
	lua_setfield(L, base, "os");

	lua_settop(L, base);
	lib_library(L, "lead", lead_fns);
	lib_library(L, "currency", currency_fns);
	lib_library(L, "goal", goal_fns);
	lib_library(L, "form", form_fns);
	lib_library(L, "xml", xml_fns);
	lib_library(L, "base64", base64_fns);

	lua_createtable(L, 0, 6);
	lua_pushcfunction(L, lib_json_encode);
	lua_setfield(L, -2, "encode");
	lua_pushcfunction(L, lib_json_decode);
	lua_setfield(L, -2, "decode");
	lua_pushcfunction(L, lib_json_array);
	lua_setfield(L, -2, "array");
	lua_pushcfunction(L, lib_json_object);
	lua_setfield(L, -2, "object");
	lua_pushcfunction(L, lib_json_isnull);
	lua_setfield(L, -2, "isnull");
	decode_push_null(L);
	lua_setfield(L, -2, "null");
	lib_proxy(L, "json");
	lua_setfield(L, base, "json");

	lua_createtable(L, 0, 6);
	for (i = 0; i < (int)(sizeof(lib_hashes) / sizeof(lib_hashes[0])); i++) {
		char name[16];

		lua_pushinteger(L, i);
		lua_pushcclosure(L, lib_hash, 1);
		lua_setfield(L, -2, lib_hashes[i].name);
		snprintf(name, sizeof(name), "hmac_%s", lib_hashes[i].name);
		lua_pushinteger(L, i);
		lua_pushcclosure(L, lib_hmac, 1);
		lua_setfield(L, -2, name);
	}
	lib_proxy(L, "hash");
	lua_setfield(L, base, "hash");

	lib_view_metatables(L, rule__rt(L));

	/* the lazy globals behind the base */
	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, lib_lazy_index);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, base);
	lua_settop(L, base);
}

/* ---- requests -------------------------------------------------------- */

static bool lib_method_ok(const char *m)
{
	return !strcmp(m, "GET") || !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH") ||
	       !strcmp(m, "DELETE");
}

/* The json.array/json.object mark of the table at src, if any, on the
 * table at dst too. */
static void lib_copy_mark(lua_State *L, int src, int dst)
{
	struct rule_rt *rt = rule__rt(L);

	src = lua_absindex(L, src);
	dst = lua_absindex(L, dst);
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
	lua_pushvalue(L, src);
	if (lua_rawget(L, -2) != LUA_TNIL) {
		lua_pushvalue(L, dst);
		lua_insert(L, -2);
		lua_rawset(L, -3);
	} else {
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* Packed fields: what a next page inherits from the request before it,
 * kept in C between calls (struct rule_request.fields). A value is a tag
 * byte and its data, so the fields come back exactly as they were sent
 * (integers stay integers, big ids and marks are kept):
 *   'z' json.null, 't' true, 'f' false, 'i' lua_Integer, 'd' lua_Number
 *   (both native bytes), 's' size_t length and bytes, and a table:
 *   'T', its mark ('A' json.array, 'O' json.object, '-' none), size_t
 *   count, then count pairs of key ('i' or 's') and value. */
static void lib_pack(lua_State *L, int idx, struct buf *b, int depth)
{
	struct rule_rt *rt = rule__rt(L);
	lua_Integer iv;
	lua_Number nv;
	const char *s;
	size_t l, n = 0;
	char tag;

	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		lib_add(L, b, lua_toboolean(L, idx) ? "t" : "f", 1);
		return;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			iv = lua_tointeger(L, idx);
			lib_add(L, b, "i", 1);
			lib_add(L, b, (const char *)&iv, sizeof(iv));
		} else {
			nv = lua_tonumber(L, idx);
			lib_add(L, b, "d", 1);
			lib_add(L, b, (const char *)&nv, sizeof(nv));
		}
		return;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &l);
		lib_add(L, b, "s", 1);
		lib_add(L, b, (const char *)&l, sizeof(l));
		lib_add(L, b, s, l);
		return;
	case LUA_TTABLE:
		break;
	default:
		if (decode_is_null(L, idx)) {
			lib_add(L, b, "z", 1);
			return;
		}
		rule__errorf(L, "request: fields: a %s value cannot be sent", luaL_typename(L, idx));
	}
	if (depth >= LIB_DEPTH)
		rule__errorf(L, "request: fields nested deeper than %d (a cycle?)", LIB_DEPTH);
	luaL_checkstack(L, 6, "fields");
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
	lua_pushvalue(L, idx);
	lua_rawget(L, -2);
	tag = lua_type(L, -1) != LUA_TNUMBER		 ? '-'
	      : lua_tointeger(L, -1) == LIB_ARRAY ? 'A'
						     : 'O';
	lua_pop(L, 2);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		n++;
	}
	lib_add(L, b, "T", 1);
	lib_add(L, b, &tag, 1);
	lib_add(L, b, (const char *)&n, sizeof(n));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING && !lua_isinteger(L, -2))
			rule__errorf(L, "request: fields: a key of type %s cannot be sent",
				   luaL_typename(L, -2));
		lib_pack(L, -2, b, depth + 1);
		lib_pack(L, -1, b, depth + 1);
		lua_pop(L, 1);
	}
}

/* Reads n bytes of packed data at *p into out; raises past end (only a
 * bug of ours could get there). */
static void lib_unpack_bytes(lua_State *L, const char **p, const char *end, void *out, size_t n)
{
	if ((size_t)(end - *p) < n)
		rule__errorf(L, "internal error: packed fields cut short");
	memcpy(out, *p, n);
	*p += n;
}

/* Pushes the value packed at *p (lib_pack). */
static void lib_unpack(lua_State *L, const char **p, const char *end, int depth)
{
	struct rule_rt *rt = rule__rt(L);
	lua_Integer iv;
	lua_Number nv;
	size_t l, n, i;
	char tag, mark;

	luaL_checkstack(L, 6, "fields");
	lib_unpack_bytes(L, p, end, &tag, 1);
	switch (tag) {
	case 'z':
		decode_push_null(L);
		return;
	case 't':
	case 'f':
		lua_pushboolean(L, tag == 't');
		return;
	case 'i':
		lib_unpack_bytes(L, p, end, &iv, sizeof(iv));
		lua_pushinteger(L, iv);
		return;
	case 'd':
		lib_unpack_bytes(L, p, end, &nv, sizeof(nv));
		lua_pushnumber(L, nv);
		return;
	case 's':
		lib_unpack_bytes(L, p, end, &l, sizeof(l));
		if ((size_t)(end - *p) < l)
			rule__errorf(L, "internal error: packed fields cut short");
		lua_pushlstring(L, *p, l);
		*p += l;
		return;
	case 'T':
		break;
	default:
		rule__errorf(L, "internal error: packed fields: tag %d", tag);
	}
	if (depth >= LIB_DEPTH)
		rule__errorf(L, "internal error: packed fields too deep");
	lib_unpack_bytes(L, p, end, &mark, 1);
	lib_unpack_bytes(L, p, end, &n, sizeof(n));
	lua_createtable(L, 0, n < 64 ? (int)n : 64);
	for (i = 0; i < n; i++) {
		lib_unpack(L, p, end, depth + 1);
		lib_unpack(L, p, end, depth + 1);
		lua_rawset(L, -3);
	}
	if (mark != '-') {
		lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_marks);
		lua_pushvalue(L, -2);
		lua_pushinteger(L, mark == 'A' ? LIB_ARRAY : LIB_OBJECT);
		lua_rawset(L, -3);
		lua_pop(L, 1);
	}
}

/* Expands the data fields of the table at src into a new table (pushed). */
static void lib_fields(lua_State *L, struct rule_rt *rt, int src, struct buf *b, int depth)
{
	struct rule_call *c = rt->call;
	char err[256];
	size_t i;

	if (depth >= LIB_DEPTH)
		rule__errorf(L, "fields nested deeper than %d", LIB_DEPTH);
	luaL_checkstack(L, 8, "fields");
	lua_createtable(L, 0, 8);
	lib_copy_mark(L, src, lua_gettop(L));
	lua_pushnil(L);
	while (lua_next(L, src)) {
		int vt = lua_type(L, -1);

		lua_pushvalue(L, -2); /* k v k */
		if (vt == LUA_TSTRING) {
			const char *t = lua_tostring(L, -2);
			int arr = c->v == RULE_DATES ? MACRO_ARRAY_NONE : macro_field_array(t);

			if (arr != MACRO_ARRAY_NONE) {
				lua_createtable(L, (int)c->mctx.n, 0);
				for (i = 0; i < c->mctx.n; i++) {
					if (arr == MACRO_ARRAY_IDS)
						lua_pushinteger(L, c->mctx.ids[i]);
					else
						lua_pushstring(L, c->mctx.exts[i]);
					lua_rawseti(L, -2, (lua_Integer)i + 1);
				}
			} else {
				buf_reset(b);
				if (macro_expand(&c->mctx, t, MACRO_RAW, b, err, sizeof(err)) < 0)
					rule__fail(L, "%s: %s.fields: %s", rt->short_src,
						   rule_variant_name(c->v), err);
				lua_pushlstring(L, b->p ? b->p : "", b->len);
			}
		} else if (vt == LUA_TTABLE) {
			lib_fields(L, rt, lua_absindex(L, -2), b, depth + 1);
		} else {
			lua_pushvalue(L, -2);
		}
		lua_rawset(L, -5); /* k v */
		lua_pop(L, 1);
	}
}

void rule__push_request(lua_State *L, struct rule_rt *rt, int vidx)
{
	struct rule_call *c = rt->call;
	const char *vn = rule_variant_name(c->v);
	char err[256];
	struct buf *b;
	int r;

	vidx = lua_absindex(L, vidx);
	b = rule__ubuf(L, rt->lim.alloc_max);
	lua_createtable(L, 0, 8);
	r = lua_gettop(L);
	if (lua_getfield(L, vidx, "url") != LUA_TSTRING)
		rule__errorf(L, "%s.url must be a string", vn);
	if (macro_expand(&c->mctx, lua_tostring(L, -1), MACRO_URL, b, err, sizeof(err)) < 0)
		rule__fail(L, "%s: %s.url: %s", rt->short_src, vn, err);
	lua_pop(L, 1);
	lua_pushlstring(L, b->p ? b->p : "", b->len);
	lua_setfield(L, r, "url");
	if (lua_getfield(L, vidx, "method") == LUA_TSTRING) {
		char m[8];
		size_t i;

		snprintf(m, sizeof(m), "%s", lua_tostring(L, -1));
		for (i = 0; m[i]; i++)
			m[i] = (char)toupper((unsigned char)m[i]);
		lua_pushstring(L, m);
	} else {
		lua_pushliteral(L, "GET");
	}
	lua_setfield(L, r, "method");
	lua_pop(L, 1);
	lua_createtable(L, 0, 4);
	if (lua_getfield(L, vidx, "headers") == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING &&
							       lua_type(L, -1) != LUA_TNUMBER))
				rule__fail(L, "%s: %s.headers: names and values must be strings",
					   rt->short_src, vn);
			buf_reset(b);
			if (macro_expand(&c->mctx, lua_tostring(L, -1), MACRO_HEADER, b, err,
					 sizeof(err)) < 0)
				rule__fail(L, "%s: %s.headers['%s']: %s", rt->short_src, vn,
					   lua_tostring(L, -2), err);
			lua_pop(L, 1);
			lua_pushvalue(L, -1);
			lua_pushlstring(L, b->p ? b->p : "", b->len);
			lua_rawset(L, -5);
		}
	}
	lua_pop(L, 1);
	lua_setfield(L, r, "headers");
	if (lua_getfield(L, vidx, "fields") == LUA_TTABLE)
		lib_fields(L, rt, lua_gettop(L), b, 0);
	else
		lua_createtable(L, 0, 0);
	lua_setfield(L, r, "fields");
	lua_pop(L, 1);
	if (lua_getfield(L, vidx, "encoding") != LUA_TSTRING) {
		lua_pop(L, 1);
		lua_pushliteral(L, "form");
	}
	lua_setfield(L, r, "encoding");
	lua_pushstring(L, decode_format_name(rt->info[c->v].format));
	lua_setfield(L, r, "format");
	lua_remove(L, r - 1); /* the buffer */
}

static int lib_header_find(const struct rule_request *q, const char *name)
{
	size_t i;

	for (i = 0; i < q->nheaders; i++)
		if (strcasecmp(q->headers[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void lib_header_set(lua_State *L, struct rule_request *q, const char *name,
			   const char *value)
{
	const char *p;
	int i = lib_header_find(q, name);
	char *v;

	if (!*name)
		rule__errorf(L, "request: empty header name");
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
			rule__errorf(L, "request: header name '%s' is not a token", name);
	for (p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			rule__errorf(L, "request: header '%s' holds a line break", name);
	v = strdup(value);
	if (!v)
		rule__errorf(L, "out of memory");
	if (i >= 0) {
		free(q->headers[i].value);
		q->headers[i].value = v;
		return;
	}
	{
		struct rule_header *h = realloc(q->headers, (q->nheaders + 1) * sizeof(*h));
		char *n = strdup(name);

		if (!h || !n) {
			if (h)
				q->headers = h;
			free(n);
			free(v);
			rule__errorf(L, "out of memory");
		}
		q->headers = h;
		h[q->nheaders].name = n;
		h[q->nheaders].value = v;
		q->nheaders++;
	}
}

/* Appends the query (string, or table form-encoded) at idx to url. */
static void lib_add_query(lua_State *L, struct rule_rt *rt, struct buf *url, int idx)
{
	const char *q;
	size_t l;
	struct buf *tmp = NULL;

	if (lua_type(L, idx) == LUA_TTABLE) {
		tmp = rule__ubuf(L, rt->lim.alloc_max);
		rule__form_encode(L, idx, tmp);
		q = tmp->p ? tmp->p : "";
		l = tmp->len;
	} else {
		q = lua_tolstring(L, idx, &l);
	}
	if (l && url->p) {
		const char *qm = memchr(url->p, '?', url->len);
		char last = url->len ? url->p[url->len - 1] : 0;

		if (!qm)
			lib_add(L, url, "?", 1);
		else if (last != '?' && last != '&')
			lib_add(L, url, "&", 1);
		lib_add(L, url, q, l);
	}
	if (tmp)
		lua_pop(L, 1);
}

static char *lib_strdup(lua_State *L, const char *s)
{
	char *p = strdup(s);

	if (!p)
		rule__errorf(L, "out of memory");
	return p;
}

void rule__finish_request(lua_State *L, struct rule_rt *rt, int idx,
			  const struct rule_request *prev)
{
	struct rule_request *q = &rt->call->req;
	struct buf *url, *body, *x;
	const char *s = "", *enc = prev && prev->fields_json ? "json" : "form";
	char err[256];
	size_t i, l;
	bool has_fields = false, json = false, new_url = false;
	int t;

	idx = lua_absindex(L, idx);
	rule_request_release(q);
	url = rule__ubuf(L, rt->lim.alloc_max);
	body = rule__ubuf(L, rt->lim.alloc_max);
	x = rule__ubuf(L, rt->lim.alloc_max); /* macro expansion of a next page */
	/* method */
	t = lua_getfield(L, idx, "method");
	if (t == LUA_TSTRING) {
		s = lua_tostring(L, -1);
		for (i = 0; s[i] && i + 1 < sizeof(q->method); i++)
			q->method[i] = (char)toupper((unsigned char)s[i]);
		q->method[i] = '\0';
		if (s[i] || !lib_method_ok(q->method))
			rule__errorf(L, "request: method '%s' is not GET, POST, PUT, PATCH or DELETE", s);
	} else if (t == LUA_TNIL) {
		snprintf(q->method, sizeof(q->method), "%s", prev ? prev->method : "GET");
	} else {
		rule__errorf(L, "request: method must be a string");
	}
	lua_pop(L, 1);
	/* url */
	t = lua_getfield(L, idx, "url");
	if (t == LUA_TSTRING && prev) {
		/* a next page's url: its macros expand as the declared url's */
		buf_reset(x);
		if (macro_expand(&rt->call->mctx, lua_tostring(L, -1), MACRO_URL, x, err,
				 sizeof(err)) < 0)
			rule__errorf(L, "next: url: %s", err);
		lua_pop(L, 1);
		lua_pushlstring(L, x->p ? x->p : "", x->len);
		s = lua_tostring(L, -1);
		new_url = true;
	} else if (t == LUA_TSTRING)
		s = lua_tostring(L, -1);
	else if (t == LUA_TNIL && prev && prev->base_url)
		s = prev->base_url;
	else
		rule__errorf(L, "request: url must be a string");
	if (strncasecmp(s, "http://", 7) && strncasecmp(s, "https://", 8))
		rule__errorf(L, "request: url '%.60s' is not http:// or https://", s);
	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			rule__errorf(L, "request: url holds a space or a control character");
	q->base_url = lib_strdup(L, s);
	lib_adds(L, url, s);
	lua_pop(L, 1);
	/* query */
	t = lua_getfield(L, idx, "query");
	if (t == LUA_TSTRING || t == LUA_TTABLE)
		lib_add_query(L, rt, url, lua_gettop(L));
	else if (t != LUA_TNIL)
		rule__errorf(L, "request: query must be a string or a table");
	lua_pop(L, 1);
	/* encoding */
	t = lua_getfield(L, idx, "encoding");
	if (t == LUA_TSTRING) {
		enc = lua_tostring(L, -1);
		if (strcmp(enc, "form") && strcmp(enc, "json"))
			rule__errorf(L, "request: encoding '%s' is not form or json", enc);
	} else if (t != LUA_TNIL) {
		rule__errorf(L, "request: encoding must be a string");
	}
	json = strcmp(enc, "json") == 0;
	lua_pop(L, 1);
	/* headers: the previous request's, then these */
	for (i = 0; prev && i < prev->nheaders; i++)
		lib_header_set(L, q, prev->headers[i].name, prev->headers[i].value);
	t = lua_getfield(L, idx, "headers");
	if (t == LUA_TTABLE) {
		struct lib_key *k = lib_sorted_keys(L, lua_gettop(L), &l, "request.headers");

		for (i = 0; i < l; i++) {
			if (k[i].isint)
				rule__errorf(L, "request: header names must be strings");
			lib_push_key(L, &k[i]);
			lua_rawget(L, -3);
			if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
				rule__errorf(L, "request: header '%s' must be a string", k[i].s);
			if (prev) {
				buf_reset(x);
				if (macro_expand(&rt->call->mctx, lua_tostring(L, -1), MACRO_HEADER, x,
						 err, sizeof(err)) < 0)
					rule__errorf(L, "next: header '%s': %s", k[i].s, err);
				lua_pop(L, 1);
				lua_pushlstring(L, x->p ? x->p : "", x->len);
			}
			lib_header_set(L, q, k[i].s, lua_tostring(L, -1));
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	} else if (t != LUA_TNIL) {
		rule__errorf(L, "request: headers must be a table");
	}
	lua_pop(L, 1);
	/* body, or the fields */
	t = lua_getfield(L, idx, "body");
	if (t == LUA_TSTRING) {
		s = lua_tolstring(L, -1, &l);
		q->body_len = l;
		q->body = malloc(l + 1);
		if (!q->body)
			rule__errorf(L, "out of memory");
		memcpy(q->body, s, l);
		q->body[l] = '\0';
	} else if (t != LUA_TNIL) {
		rule__errorf(L, "request: body must be a string");
	}
	lua_pop(L, 1);
	t = lua_getfield(L, idx, "fields");
	if (t != LUA_TTABLE && t != LUA_TNIL)
		rule__errorf(L, "request: fields must be a table");
	if (prev) {
		/* a next page: the fields sent before (none after a new url: a
		 * link the CRM hands out is complete), next's fields merged over
		 * them with their macros expanded; json.null drops one */
		int given = lua_gettop(L);
		const char *p = prev->fields, *end = p + prev->fields_len;

		if (p && !new_url)
			lib_unpack(L, &p, end, 0);
		else
			lua_createtable(L, 0, 4);
		if (t == LUA_TTABLE) {
			lib_fields(L, rt, given, x, 0);
			lua_pushnil(L);
			while (lua_next(L, -2)) {
				if (decode_is_null(L, -1)) {
					lua_pop(L, 1);
					lua_pushnil(L);
				}
				lua_pushvalue(L, -2);
				lua_insert(L, -2);
				lua_rawset(L, -5);
			}
			lua_pop(L, 1);
		}
		lua_remove(L, given);
		t = LUA_TTABLE;
	}
	if (t == LUA_TTABLE) {
		lua_pushnil(L);
		if (lua_next(L, -2)) {
			lua_pop(L, 2);
			has_fields = true;
		}
	}
	if (has_fields) {
		/* kept for a next page to inherit */
		buf_reset(x);
		lib_pack(L, -1, x, 0);
		q->fields_len = x->len;
		q->fields = buf_steal(x);
		if (!q->fields)
			rule__errorf(L, "out of memory");
	}
	q->fields_json = json;
	if (has_fields && !q->body) {
		if (!strcmp(q->method, "GET") || !strcmp(q->method, "DELETE")) {
			lib_add_query(L, rt, url, lua_gettop(L));
		} else {
			if (json)
				rule__json_encode(L, -1, body);
			else
				rule__form_encode(L, -1, body);
			q->body_len = body->len;
			q->body = buf_steal(body);
			if (!q->body)
				rule__errorf(L, "out of memory");
			if (lib_header_find(q, "Content-Type") < 0)
				lib_header_set(L, q, "Content-Type",
					       json ? "application/json"
						    : "application/x-www-form-urlencoded");
		}
	}
	lua_pop(L, 1);
	/* format */
	t = lua_getfield(L, idx, "format");
	if (t == LUA_TSTRING) {
		int f = decode_format_parse(lua_tostring(L, -1));

		if (f < 0)
			rule__errorf(L, "request: format '%s' is not json, xml, form or text",
				   lua_tostring(L, -1));
		q->format = (enum decode_format)f;
	} else if (t == LUA_TNIL) {
		q->format = prev ? prev->format : rt->info[rt->call->v].format;
	} else {
		rule__errorf(L, "request: format must be a string");
	}
	lua_pop(L, 1);
	q->url = buf_steal(url);
	if (!q->url)
		rule__errorf(L, "out of memory");
	lua_pop(L, 3);
}
