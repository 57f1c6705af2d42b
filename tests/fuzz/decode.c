/* fuzz target decode: decode_push (decode.h) of any body in each format
 * (json, xml, form, text) with any Content-Type, so the charset paths
 * (iconv, expat's unknown-encoding handler) are reached too, on a Lua
 * state with a memory cap (sometimes a tight one, so Lua's memory errors
 * are exercised). Checked: no crash or sanitizer report; the stack holds
 * one value more on success and as many on failure, which always has a
 * message; every string in the value (keys too) is UTF-8 (decode.h: "a
 * rule always sees UTF-8"); xml.find/xml.all on an element never fail.
 *
 * Input: byte 0: format (%4), a tight cap (bit 2); then the Content-Type
 * up to a NUL ("" means none); the rest is the body. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include "buf.h"
#include "decode.h"
#include "fuzz.h"
#include "lua_cap.h"

/* UTF-8 with NULs allowed (a JSON "\u0000" is a NUL character). */
static void check_utf8(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *z = memchr(s + i, '\0', n - i);
		size_t seg = z ? (size_t)(z - (s + i)) : n - i;

		if (!buf_utf8_ok(s + i, seg)) {
			fprintf(stderr, "decode: a value that is not UTF-8\n");
			abort();
		}
		i += seg + 1;
	}
}

static void walk(lua_State *L, int depth)
{
	int t = lua_type(L, -1);

	if (t == LUA_TSTRING) {
		size_t n;
		const char *s = lua_tolstring(L, -1, &n);

		check_utf8(s, n);
		return;
	}
	if (t != LUA_TTABLE || depth > DECODE_MAX_DEPTH * 3 + 8)
		return;
	/* Lua's stack is not checked by the library (nor by ASan, which
	 * does not see inside liblua): room for the key and value. */
	if (!lua_checkstack(L, 3))
		return;
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		if (lua_type(L, -2) == LUA_TSTRING) {
			size_t n;
			const char *s = lua_tolstring(L, -2, &n);

			check_utf8(s, n);
		}
		walk(L, depth + 1);
		lua_pop(L, 1);
	}
}

/* xml.find(v, name) and xml.all(v, name) as a rule calls them. */
static void xml_lookups(lua_State *L)
{
	lua_CFunction fns[2] = { decode_lua_xml_find, decode_lua_xml_all };
	int i;

	for (i = 0; i < 2; i++) {
		lua_pushcfunction(L, fns[i]);
		lua_pushvalue(L, -2);
		lua_pushliteral(L, "a");
		if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
			/* Only a memory error may fail it on an element. */
			if (!lua_isstring(L, -1))
				abort();
		}
		lua_pop(L, 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lua_cap cap = { 0, (size_t)64 << 20 };
	enum decode_format fmt;
	const char *ct, *body;
	char err[512];
	unsigned sel;
	size_t blen;
	struct fz f;
	lua_State *L;
	int top, rc;

	if (fz_open(&f, data, size) < 0)
		return 0;
	sel = fz_byte(&f);
	fmt = (enum decode_format)(sel % 4);
	if (sel & 4)
		cap.limit = 48 << 10;
	ct = fz_next(&f);
	body = fz_rest(&f, &blen);
	L = lua_newstate(lua_cap_alloc, &cap);
	if (!L) {
		fz_close(&f);
		return 0;
	}
	top = lua_gettop(L);
	err[0] = '\0';
	rc = decode_push(L, fmt, *ct ? ct : NULL, blen ? body : NULL, blen, err, sizeof(err));
	if (rc == 0) {
		if (lua_gettop(L) != top + 1)
			abort();
		walk(L, 0);
		if (fmt == DECODE_XML && lua_istable(L, -1))
			xml_lookups(L);
	} else if (rc != -1 || lua_gettop(L) != top || !err[0]) {
		fprintf(stderr, "decode: rc %d, stack %d -> %d, err '%s'\n", rc, top, lua_gettop(L), err);
		abort();
	}
	lua_close(L);
	fz_close(&f);
	return 0;
}
