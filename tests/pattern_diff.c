/* pattern_diff: the differential harness of the pattern matcher (see
 * pattern_diff.h). Both states run the same Lua driver, so positions in
 * error messages agree too; the transcripts are compared byte for byte. */
#include "pattern_diff.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule_int.h"

/* ---- cases from bytes ------------------------------------------------ */

struct pd_bytes {
	const uint8_t *p;
	size_t n, i;
};

static unsigned pd_next(struct pd_bytes *b)
{
	return b->i < b->n ? b->p[b->i++] : 0;
}

/* bytes the subjects and stray pattern bytes are made of: letters the
 * tokens name, the pattern's specials, a NUL and a high byte */
static const char pd_alpha[] = "aaabbx1 _()[]%-.^$*?+\n\xff";
#define PD_ALPHA (sizeof(pd_alpha)) /* the NUL terminator counts: a NUL byte */

static const char *const pd_tests[] = {
	"a", "b", ".", "%a", "[ab]", "a", "x", "%d", "%s", "%w", "%p", "%x", "%u", "%l", "%c", "%g", "%z",
	"%A", "%D", "%S", "%W", "%%", "%.", "%(", "%]", "%-", "[ab]", "[^a]", "[a-c]", "[%a_]",
	"[]]", "[^]]", "[a-]", "[%d%s]", "[%]]", "[-a]", "[^%w]", "[a%-b]", "[\xff]", "[%z]",
};
static const char *const pd_others[] = {
	"(", ")", "()", "%b()", "%bab", "%bxx", "%f[%w]", "%f[%W]", "%f[a]", "%f[^%z]", "%1",
	"%2", "%0", "$", "^",
};
/* malformed, or harmless where the matcher never gets */
static const char *const pd_bad[] = {
	"%", "[", "[^", "[a", "%b", "%b(", "%f", "%fa", "%f[a",
};
static const char *const pd_repls[] = {
	"", "x", "%0", "%1", "%2", "<%1|%2>", "%%", "%", "%x", "%9", "a%0b", "[%1%1]",
};

#define PD_N(a) (sizeof(a) / sizeof((a)[0]))

static void pd_add(char *s, size_t *len, size_t max, const char *t, size_t tl)
{
	if (*len + tl <= max) {
		memcpy(s + *len, t, tl);
		*len += tl;
	}
}

void pattern_case_from_bytes(const uint8_t *data, size_t n, struct pattern_case *c)
{
	struct pd_bytes b = { data, n, 0 };
	unsigned tokens, i, k, len;
	const char *t;
	char one;

	memset(c, 0, sizeof(*c));
	k = pd_next(&b);
	if (k & 1)
		pd_add(c->pat, &c->lp, sizeof(c->pat), "^", 1);
	tokens = (k >> 1) % 8;
	for (i = 0; i < tokens; i++) {
		k = pd_next(&b);
		switch (k % 8) {
		case 0:
		case 1:
		case 2:
		case 3: /* a single-byte test, maybe quantified; half of them
			 * among the first few, which subjects often hold */
			t = pd_tests[(k >> 4) % (k & 8 ? 6 : PD_N(pd_tests))];
			pd_add(c->pat, &c->lp, sizeof(c->pat), t, strlen(t));
			k = pd_next(&b) % 8;
			if (k >= 4)
				pd_add(c->pat, &c->lp, sizeof(c->pat), &"*+-?"[k - 4], 1);
			break;
		case 4:
		case 5:
			t = pd_others[(k >> 3) % PD_N(pd_others)];
			pd_add(c->pat, &c->lp, sizeof(c->pat), t, strlen(t));
			break;
		case 6:
			t = (k >> 3) % 4 ? "(" : pd_bad[(k >> 5) % PD_N(pd_bad)];
			pd_add(c->pat, &c->lp, sizeof(c->pat), t, strlen(t));
			break;
		default: /* a stray byte */
			one = pd_alpha[(k >> 3) % PD_ALPHA];
			pd_add(c->pat, &c->lp, sizeof(c->pat), &one, 1);
			break;
		}
	}
	k = pd_next(&b);
	if (k % 4 == 0)
		pd_add(c->pat, &c->lp, sizeof(c->pat), "$", 1);
	len = pd_next(&b) % 14;
	for (i = 0; i < len; i++) {
		one = pd_alpha[pd_next(&b) % PD_ALPHA];
		pd_add(c->subj, &c->ls, sizeof(c->subj), &one, 1);
	}
	c->init = (int)(pd_next(&b) % 25) - 12;
	t = pd_repls[pd_next(&b) % PD_N(pd_repls)];
	c->lr = strlen(t);
	memcpy(c->repl, t, c->lr);
}

/* ---- the two states -------------------------------------------------- */

/* The same text runs in both states: one transcript of a case, every call
 * under pcall; `all` collects gmatch, `fn` records what gsub passes. */
static const char pd_driver[] =
	"local find, match, gmatch, gsub = string.find, string.match, string.gmatch, string.gsub\n"
	"local pack, concat, type, tostring, pcall = table.pack, table.concat, type, tostring, pcall\n"
	"local function ser(t, i, j)\n"
	"  local o = {}\n"
	"  for k = i, j do\n"
	"    local v = t[k]\n"
	"    if type(v) == 'string' then o[#o + 1] = 's' .. #v .. ':' .. v\n"
	"    else o[#o + 1] = type(v) .. ':' .. tostring(v) end\n"
	"  end\n"
	"  return concat(o, ',')\n"
	"end\n"
	"local function try(f, ...)\n"
	"  local r = pack(pcall(f, ...))\n"
	"  if r[1] then return 'ok(' .. ser(r, 2, r.n) .. ')' end\n"
	"  return 'error(' .. tostring(r[2]) .. ')'\n"
	"end\n"
	"local function all(s, p, init)\n"
	"  local it, o = gmatch(s, p, init), {}\n"
	"  for n = 1, 64 do\n"
	"    local r = pack(it())\n"
	"    if r.n == 0 then break end\n"
	"    o[n] = ser(r, 1, r.n)\n"
	"  end\n"
	"  return concat(o, ';')\n"
	"end\n"
	"local tbl = { a = '<a>', b = false, ab = '<ab>', [1] = '<1>', [2] = 22, x = {}, [''] = '<e>' }\n"
	"local function fn()\n"
	"  local seen, n = {}, 0\n"
	"  return function(...)\n"
	"    local r = pack(...)\n"
	"    n = n + 1\n"
	"    seen[n] = ser(r, 1, r.n)\n"
	"    if n % 3 == 0 then return nil elseif n % 3 == 1 then return '<' .. tostring(r[1]) .. '>' end\n"
	"    return false\n"
	"  end, seen\n"
	"end\n"
	"return function(s, p, init, repl)\n"
	"  local o = {}\n"
	"  o[1] = try(find, s, p)\n"
	"  o[2] = try(find, s, p, init)\n"
	"  o[3] = try(find, s, p, init, true)\n"
	"  o[4] = try(match, s, p)\n"
	"  o[5] = try(match, s, p, init)\n"
	"  o[6] = try(all, s, p)\n"
	"  o[7] = try(all, s, p, init)\n"
	"  o[8] = try(gsub, s, p, repl)\n"
	"  o[9] = try(gsub, s, p, repl, init)\n"
	"  o[10] = try(gsub, s, p, tbl)\n"
	"  local f, seen = fn()\n"
	"  o[11] = try(gsub, s, p, f) .. '[' .. concat(seen, '|') .. ']'\n"
	"  return concat(o, '\\n')\n"
	"end\n";

struct pattern_diff {
	lua_State *ours, *lua;
	int ref_ours, ref_lua;
	struct rule_rt rt; /* what the runtime's functions read: limits, budget */
};

static int pd_load(lua_State *L, int *ref)
{
	if (luaL_loadbufferx(L, pd_driver, sizeof(pd_driver) - 1, "=pattern_diff", "t") != LUA_OK ||
	    lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "pattern_diff: %s\n", lua_tostring(L, -1));
		return -1;
	}
	*ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

struct pattern_diff *pattern_diff_open(void)
{
	struct pattern_diff *d = calloc(1, sizeof(*d));
	static const luaL_Reg ours[] = { { "find", rule__str_find }, { "match", rule__str_match },
					 { "gmatch", rule__str_gmatch }, { "gsub", rule__str_gsub },
					 { NULL, NULL } };

	if (!d)
		return NULL;
	d->ours = luaL_newstate();
	d->lua = luaL_newstate();
	if (!d->ours || !d->lua)
		goto fail;
	luaL_openlibs(d->ours);
	luaL_openlibs(d->lua);
	/* the runtime's limits, but patterns as long as a case needs: "pattern
	 * too complex" is reached only past the default pattern_max */
	d->rt.lim.subject_max = RULE_DEFAULT_SUBJECT_MAX;
	d->rt.lim.pattern_max = (size_t)1 << 16;
	d->rt.deadline.tv_sec = (time_t)1 << 40;
	*(struct rule_rt **)lua_getextraspace(d->ours) = &d->rt;
	lua_getglobal(d->ours, "string");
	luaL_setfuncs(d->ours, ours, 0);
	lua_pop(d->ours, 1);
	if (pd_load(d->ours, &d->ref_ours) < 0 || pd_load(d->lua, &d->ref_lua) < 0)
		goto fail;
	return d;
fail:
	pattern_diff_close(d);
	return NULL;
}

void pattern_diff_close(struct pattern_diff *d)
{
	if (!d)
		return;
	if (d->ours)
		lua_close(d->ours);
	if (d->lua)
		lua_close(d->lua);
	free(d);
}

/* The transcript of c in L (on the stack), or NULL with the error there. */
static const char *pd_transcript(lua_State *L, int ref, const struct pattern_case *c,
				 size_t *len)
{
	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_pushlstring(L, c->subj, c->ls);
	lua_pushlstring(L, c->pat, c->lp);
	lua_pushinteger(L, c->init);
	lua_pushlstring(L, c->repl, c->lr);
	if (lua_pcall(L, 4, 1, 0) != LUA_OK)
		return NULL;
	return lua_tolstring(L, -1, len);
}

/* s with its bytes outside printable ASCII as \ddd */
static size_t pd_escape(char *out, size_t n, const char *s, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 5 < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			out[o++] = (char)ch;
		else if (ch == '\n')
			o += (size_t)snprintf(out + o, n - o, "\n  ");
		else
			o += (size_t)snprintf(out + o, n - o, "\\%03u", ch);
	}
	out[o < n ? o : n - 1] = '\0';
	return o;
}

int pattern_diff_run(struct pattern_diff *d, const struct pattern_case *c, char *why, size_t n)
{
	const char *a, *b;
	size_t la = 0, lb = 0, o;

	d->rt.remaining = INT64_MAX / 4;
	d->rt.killed = RULE_KILL_NONE;
	a = pd_transcript(d->ours, d->ref_ours, c, &la);
	b = pd_transcript(d->lua, d->ref_lua, c, &lb);
	if (!a || !b) {
		snprintf(why, n, "driver failed: %s",
			 lua_tostring(a ? d->lua : d->ours, -1) ? lua_tostring(a ? d->lua : d->ours, -1)
								 : "?");
		return -1;
	}
	if (la == lb && memcmp(a, b, la) == 0)
		return 0;
	if (n < 64) {
		if (n)
			why[0] = '\0';
		return 1;
	}
	o = (size_t)snprintf(why, n, "pattern \"");
	o += pd_escape(why + o, n - o, c->pat, c->lp);
	if (o < n)
		o += (size_t)snprintf(why + o, n - o, "\" subject \"");
	if (o < n)
		o += pd_escape(why + o, n - o, c->subj, c->ls);
	if (o < n)
		o += (size_t)snprintf(why + o, n - o, "\" init %d repl \"%.*s\"\nours:\n  ", c->init,
				      (int)c->lr, c->repl);
	if (o < n)
		o += pd_escape(why + o, n - o, a, la);
	if (o < n)
		o += (size_t)snprintf(why + o, n - o, "\nlua:\n  ");
	if (o < n)
		pd_escape(why + o, n - o, b, lb);
	return 1;
}
