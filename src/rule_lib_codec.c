/* rule_lib_codec: the codecs a rule sees: json, form, xml, hash and
 * base64, and the encoders requests use (json and form bodies). Digests,
 * HMAC and base64 come from libcrypto. */
#include "rule_int.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void rule__add(lua_State *L, struct buf *b, const char *s, size_t n)
{
	if (buf_add(b, s, n) < 0)
		lib_full(L, b);
}

void rule__adds(lua_State *L, struct buf *b, const char *s)
{
	rule__add(L, b, s, strlen(s));
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
			rule__add(L, b, s + i, 1);
		start = i + 1;
	}
}

/* ---- encoders -------------------------------------------------------- */

/* n values (entries of a table about to be encoded) */
static void lib_charge_values(lua_State *L, size_t n)
{
	if (n)
		rule__charge(L, n > INT64_MAX / (4 * RULE_COST_VALUE)
					? INT64_MAX / 4
					: (int64_t)n * RULE_COST_VALUE);
}

/* The number at idx as text: integers as such, floats shortest-exact. */
const char *rule__numtext(lua_State *L, int idx, char *tmp, size_t n, bool strict)
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
	return seq && count == len ? RULE_ARRAY : RULE_OBJECT;
}

static int lib_key_cmp(const void *a, const void *b)
{
	const struct rule_key *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The keys of the table at idx, sorted by their text: pushes the array
 * (a userdata) and returns it with its count. Keys are strings or
 * integers; anything else raises. */
struct rule_key *rule__sorted_keys(lua_State *L, int idx, size_t *count, const char *what)
{
	struct rule_key *k;
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

void rule__push_key(lua_State *L, const struct rule_key *k)
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

	if (depth >= RULE_LIB_DEPTH)
		rule__errorf(L, "json.encode: nested deeper than %d (a cycle?)", RULE_LIB_DEPTH);
	luaL_checkstack(L, 8, "json.encode");
	if (lib_kind(L, idx, &n) == RULE_ARRAY) {
		lib_charge_values(L, n);
		rule__add(L, b, "[", 1);
		for (i = 1; i <= n; i++) {
			if (i > 1)
				rule__add(L, b, ",", 1);
			lua_rawgeti(L, idx, (lua_Integer)i);
			lib_json_value(L, lua_gettop(L), b, depth + 1);
			lua_pop(L, 1);
		}
		rule__add(L, b, "]", 1);
		return;
	}
	{
		struct rule_key *k = rule__sorted_keys(L, idx, &n, "json.encode");

		lib_charge_values(L, n);
		rule__add(L, b, "{", 1);
		for (i = 0; i < n; i++) {
			if (i)
				rule__add(L, b, ",", 1);
			if (buf_add_json_str(b, k[i].s, k[i].len) < 0)
				lib_full(L, b);
			rule__add(L, b, ":", 1);
			rule__push_key(L, &k[i]);
			lua_rawget(L, idx);
			lib_json_value(L, lua_gettop(L), b, depth + 1);
			lua_pop(L, 1);
		}
		rule__add(L, b, "}", 1);
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
		rule__adds(L, b, "null");
		break;
	case LUA_TBOOLEAN:
		rule__adds(L, b, lua_toboolean(L, idx) ? "true" : "false");
		break;
	case LUA_TNUMBER:
		rule__adds(L, b, rule__numtext(L, idx, tmp, sizeof(tmp), true));
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &l);
		if (l >= RULE_CHARGE_MIN)
			rule__charge_bytes(L, l, RULE_COST_TEXT_PER);
		if (buf_add_json_str(b, s, l) < 0)
			lib_full(L, b);
		break;
	case LUA_TTABLE:
		lib_json_table(L, idx, b, depth);
		break;
	default:
		if (decode_is_null(L, idx)) {
			rule__adds(L, b, "null");
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

	if (depth >= RULE_LIB_DEPTH)
		rule__errorf(L, "form.encode: nested deeper than %d (a cycle?)", RULE_LIB_DEPTH);
	luaL_checkstack(L, 8, "form.encode");
	if (lib_kind(L, idx, &n) == RULE_ARRAY) {
		lib_charge_values(L, n);
		for (i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i);
			/* scalars: name[]=v; tables: name[0][k]=v (PHP's index) */
			if (keep == 0 || lua_type(L, -1) == LUA_TTABLE) {
				snprintf(tmp, sizeof(tmp), keep ? "[%zu]" : "%zu", i - 1);
				rule__adds(L, name, tmp);
			} else {
				rule__add(L, name, "[]", 2);
			}
			lib_form_value(L, lua_gettop(L), out, name, depth + 1);
			lua_pop(L, 1);
			name->len = keep;
			name->p[keep] = '\0';
		}
		return;
	}
	{
		struct rule_key *k = rule__sorted_keys(L, idx, &n, "form.encode");

		lib_charge_values(L, n);
		for (i = 0; i < n; i++) {
			if (keep)
				rule__add(L, name, "[", 1);
			lib_urlenc_key(L, name, k[i].s, k[i].len);
			if (keep)
				rule__add(L, name, "]", 1);
			rule__push_key(L, &k[i]);
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
		s = rule__numtext(L, idx, tmp, sizeof(tmp), true);
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
	if (l + name->len >= RULE_CHARGE_MIN)
		rule__charge_bytes(L, l + name->len, RULE_COST_ESCAPE_PER);
	if (out->len)
		rule__add(L, out, "&", 1);
	rule__add(L, out, name->p ? name->p : "", name->len);
	rule__add(L, out, "=", 1);
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
	return lib_mark(L, RULE_ARRAY);
}

static int lib_json_object(lua_State *L)
{
	return lib_mark(L, RULE_OBJECT);
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

/* Units per block, from bench_budget against libcrypto on the 2-core x86
 * box (SHA extensions: SHA-1 and SHA-256 at about 1.5 and 2 GB/s, MD5 at
 * 0.6): a rule hashing all its budget runs about 0.3x to 0.5x as long as
 * `while true do end` there. They stay above what that box needs so a
 * CPU without SHA instructions (SHA-256 several times slower) is still
 * charged about what its time is worth; the hand-written digests these
 * replaced were charged 40 / 96 / 160. */
static const struct lib_hash lib_hashes[] = {
	{ "md5", EVP_md5, 40 },
	{ "sha1", EVP_sha1, 32 },
	{ "sha256", EVP_sha256, 40 },
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

/* xml.find/all: paid by the children they look at */
static void lib_xml_children(lua_State *L)
{
	int top = lua_gettop(L);

	if (lua_type(L, 1) == LUA_TTABLE && lua_getfield(L, 1, "children") == LUA_TTABLE) {
		int64_t units = rule__units((lua_Integer)lua_rawlen(L, -1), RULE_COST_XML_CHILD);

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

void rule__open_codecs(lua_State *L, int base)
{
	int i;

	rule__library(L, "form", form_fns);
	rule__library(L, "xml", xml_fns);
	rule__library(L, "base64", base64_fns);

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
	rule__proxy(L, "json");
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
	rule__proxy(L, "hash");
	lua_setfield(L, base, "hash");
}
