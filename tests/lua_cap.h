/* lua_cap: a Lua allocator that refuses to grow past a limit, like the
 * rule runtime's memory cap, for tests and fuzz targets that drive Lua
 * states of their own: lua_newstate(lua_cap_alloc, &cap). */
#ifndef LEADSYNC_LUA_CAP_H
#define LEADSYNC_LUA_CAP_H

#include <stdlib.h>

struct lua_cap {
	size_t used, limit;
};

static inline void *lua_cap_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
	struct lua_cap *c = ud;
	size_t old = p ? osize : 0;
	void *np;

	if (nsize == 0) {
		free(p);
		c->used -= old;
		return NULL;
	}
	if (nsize > old && c->used + (nsize - old) > c->limit)
		return NULL;
	np = realloc(p, nsize);
	if (np)
		c->used = c->used - old + nsize;
	return np;
}

#endif
