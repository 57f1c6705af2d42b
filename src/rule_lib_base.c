/* rule_lib_base: the sandbox a rule runs in: the allowed base functions
 * and Lua libraries, wrapped where they need a budget or a lock, behind
 * read-only proxies; rule__open_sandbox builds it and calls the other
 * libraries' openers (rule_lib_lead.c, rule_lib_codec.c, rule_lib_batch.c). */
#include "rule_int.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

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

int64_t rule__units(lua_Integer n, int64_t rate)
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
			if (l >= RULE_CHARGE_MIN)
				units = kind == LIB_PAID_CASE ? (int64_t)(l / RULE_COST_COPY_PER)
							      : rule__units((lua_Integer)l, RULE_COST_UTF8);
		}
		break;
	case LIB_PAID_FORMAT:
		for (i = 2; i <= top; i++)
			if (lua_type(L, i) == LUA_TSTRING) {
				lua_tolstring(L, i, &l);
				bytes += l;
			}
		if (bytes >= RULE_CHARGE_MIN)
			units = (int64_t)(bytes / RULE_COST_FORMAT_PER);
		break;
	case LIB_PAID_INSERT:
		if (top == 3 && lua_isinteger(L, 2))
			units = rule__units(lib_len1(L) + 1 - lua_tointeger(L, 2), RULE_COST_SHIFT);
		break;
	case LIB_PAID_REMOVE:
		if (top >= 2 && lua_isinteger(L, 2))
			units = rule__units(lib_len1(L) - lua_tointeger(L, 2), RULE_COST_SHIFT);
		break;
	case LIB_PAID_SORT: {
		lua_Integer n = lib_len1(L), lg = 1;

		while (lg < 63 && ((lua_Integer)1 << lg) < n)
			lg++;
		if (n > 1)
			units = rule__units(n < LUA_MAXINTEGER / 64 ? n * lg : LUA_MAXINTEGER / 64,
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
				units = rule__units(last - first < LUA_MAXINTEGER / 2 ? last - first + 1
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
		if (l >= RULE_CHARGE_MIN)
			rule__charge_bytes(L, l, RULE_COST_COPY_PER);
	}
	return nret;
}

/* Wraps the function named name of the table at -1 in lib_paid. */
static void lib_pay(lua_State *L, const char *name, enum lib_paid kind)
{
	lua_getfield(L, -1, name);
	lua_pushinteger(L, kind);
	lua_pushcclosure(L, lib_paid, 2);
	lua_setfield(L, -2, name);
}

int rule__readonly(lua_State *L)
{
	rule__errorf(L, "'%s' is read-only", lua_tostring(L, lua_upvalueindex(1)));
}

/* Replaces the table at -1 by a read-only proxy of it named name. */
void rule__proxy(lua_State *L, const char *name)
{
	lua_createtable(L, 0, 0);
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, name);
	lua_pushcclosure(L, rule__readonly, 1);
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

void rule__library(lua_State *L, const char *name, const luaL_Reg *fns)
{
	lua_createtable(L, 0, 4);
	luaL_setfuncs(L, fns, 0);
	rule__proxy(L, name);
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
		{ "setmetatable", lib_setmetatable }, { "log", rule__log }, { "print", rule__log },
		{ NULL, NULL },
	};
	static const luaL_Reg string_fns[] = {
		{ "find", rule__str_find }, { "match", rule__str_match },
		{ "gmatch", rule__str_gmatch }, { "gsub", rule__str_gsub }, { "rep", lib_rep },
		{ NULL, NULL },
	};
	int base, loaded;

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
	rule__proxy(L, "string");
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
	rule__proxy(L, "table");
	lua_setfield(L, base, "table");
	lib_clone(L, loaded, LUA_MATHLIBNAME, NULL, NULL);
	rule__proxy(L, "math");
	lua_setfield(L, base, "math");
	lib_clone(L, loaded, LUA_UTF8LIBNAME, NULL, NULL);
	lib_pay(L, "len", LIB_PAID_UTF8);
	rule__proxy(L, "utf8");
	lua_setfield(L, base, "utf8");
	lib_clone(L, loaded, LUA_OSLIBNAME, os_names, NULL);
	rule__proxy(L, "os");
	lua_setfield(L, base, "os");

	lua_settop(L, base);
	rule__open_lead(L, base);
	rule__open_codecs(L, base);
	rule__open_batch(L, base);
	lua_settop(L, base);
}

