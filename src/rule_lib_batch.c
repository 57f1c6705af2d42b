/* rule_lib_batch: the per-call globals a rule reads the batch through,
 * built on first use: the views e2i, ids, i2t, ide and the lists idl,
 * idsl, idel. */
#include "rule_int.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"

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

/* ---- e2i, ids, i2t, ide: views of the batch ------------------------- */

/* They are empty tables whose metatable looks keys up in the batch (e2i
 * through an index of the external ids built on first use, the others
 * through the id index), so a rule does not pay for building a table of
 * a million entries it reads a few times each. pairs() walks the batch;
 * # is 0. */
enum { LIB_E2I, LIB_IDS, LIB_I2T, LIB_IDE };
static const char *const lib_view_names[] = { "e2i", "ids", "i2t", "ide" };

/* The index of external ids is built once per batch and then only read:
 * 8 bytes a slot (32 bits of hash as a tag, the lead's number), open
 * addressing over the batch's own array, nothing allocated per lead, where
 * htab would need a node per lead. The hash is htab's FNV-1a. */
static uint64_t lib_ext_hash(const char *s, size_t n)
{
	uint64_t h = htab_hash(s, n);

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
		lua_pushcclosure(L, rule__readonly, 1);
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

void rule__open_batch(lua_State *L, int base)
{
	lib_view_metatables(L, rule__rt(L));

	/* the lazy globals behind the base */
	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, lib_lazy_index);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, base);
}
