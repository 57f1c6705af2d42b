/* rule: the rule runtime: loading a rule file, the limits of the sandbox
 * (allocator, count hook, kills), and the prepare/process calls. The
 * sandbox's libraries are in rule_lib_*.c, one file each (rule_int.h). */
#include "rule_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "status.h"

#define RULE_HOOK_EVERY 1000 /* instructions between two hook calls */

static const char *const rule__variant_names[RULE_VARIANTS] = { "processing", "accepted",
								"dates" };

int rule_variant_parse(const char *name)
{
	int i;

	for (i = 0; name && i < RULE_VARIANTS; i++)
		if (strcmp(name, rule__variant_names[i]) == 0)
			return i;
	return -1;
}

const char *rule_variant_name(enum rule_variant v)
{
	return (unsigned)v < RULE_VARIANTS ? rule__variant_names[v] : "unknown";
}

/* ---- limits ---------------------------------------------------------- */

static void rule__limits(struct rule_limits *l, const struct rule_limits *in)
{
	if (in)
		*l = *in;
	else
		memset(l, 0, sizeof(*l));
	if (l->instructions <= 0)
		l->instructions = RULE_DEFAULT_INSTRUCTIONS;
	if (!l->memory)
		l->memory = RULE_DEFAULT_MEMORY;
	if (!l->alloc_max || l->alloc_max > l->memory)
		l->alloc_max = l->memory / 4;
	if (!l->time_ms)
		l->time_ms = RULE_DEFAULT_TIME_MS;
	if (!l->subject_max)
		l->subject_max = RULE_DEFAULT_SUBJECT_MAX;
	if (!l->pattern_max)
		l->pattern_max = RULE_DEFAULT_PATTERN_MAX;
	if (!l->pages_max)
		l->pages_max = RULE_DEFAULT_PAGES_MAX;
	if (!l->log_max)
		l->log_max = RULE_DEFAULT_LOG_MAX;
	if (!l->notes_max)
		l->notes_max = RULE_DEFAULT_NOTES_MAX;
	if (!l->batch_max)
		l->batch_max = RULE_DEFAULT_BATCH_MAX;
}

void rule__where(lua_State *L, char *out, size_t n)
{
	struct rule_rt *rt = rule__rt(L);
	lua_Debug ar;
	int level;

	for (level = 0; lua_getstack(L, level, &ar); level++) {
		if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
			snprintf(out, n, "%s:%d", ar.short_src, ar.currentline);
			return;
		}
	}
	snprintf(out, n, "%s", rt->short_src);
}

/* Lua turns a refused allocation into a memory error only when its retry
 * after an emergency collection is refused too: the same block and size
 * twice in a row. */
static void rule__refuse(struct rule_rt *rt, const void *ptr, size_t nsize)
{
	if (rt->refused_pending && rt->refused_ptr == ptr && rt->refused_size == nsize)
		rt->mem_hard++;
	rt->refused_pending = true;
	rt->refused_ptr = ptr;
	rt->refused_size = nsize;
	rt->mem_asked = nsize;
#if LUA_VERSION_RELEASE_NUM <= 50404
	/* Up to 5.4.4 the call chain is consistent whenever Lua allocates (a
	 * stack grows into a new block); later versions keep stack offsets
	 * in place of pointers while the stack is reallocated, so there the
	 * place of a memory error is the pcall's or the rule's name. */
	if (rt->in_call && rt->L)
		rule__where(rt->L, rt->mem_where, sizeof(rt->mem_where));
#endif
}

bool (*rule__alloc_fail)(void);

static void *rule__alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct rule_rt *rt = ud;
	size_t old = ptr ? osize : 0;
	void *np;

	if (nsize == 0) {
		free(ptr);
		rt->mem_used -= old;
		return NULL;
	}
	if (nsize > old && (nsize > rt->lim.alloc_max || rt->mem_used > rt->lim.memory ||
			    nsize - old > rt->lim.memory - rt->mem_used ||
			    (rule__alloc_fail && rule__alloc_fail()))) {
		rule__refuse(rt, ptr, nsize);
		return NULL;
	}
	np = realloc(ptr, nsize);
	if (!np) {
		if (nsize <= old)
			return ptr; /* a shrink that failed: the block still serves */
		rule__refuse(rt, ptr, nsize);
		return NULL;
	}
	if (nsize > old)
		rt->refused_pending = false;
	rt->mem_used = rt->mem_used - old + nsize;
	return np;
}

size_t rule_memory(const struct rule_rt *rt)
{
	return rt ? rt->mem_used : 0;
}

enum rule_limit rule_last_limit(const struct rule_rt *rt)
{
	switch (rt->last_kill) {
	case RULE_KILL_BUDGET:
		return RULE_LIMIT_BUDGET;
	case RULE_KILL_TIME:
		return RULE_LIMIT_TIME;
	case RULE_KILL_MEMORY:
		return RULE_LIMIT_MEMORY;
	default:
		return RULE_LIMIT_NONE;
	}
}

static void rule__hook(lua_State *L, lua_Debug *ar);

void rule__kill(struct rule_rt *rt, enum rule_kill k, const char *where)
{
	char w[LUA_IDSIZE + 24];

	if (rt->killed)
		return;
	rt->killed = k;
	if (!where) {
		rule__where(rt->L, w, sizeof(w));
		where = w;
	}
	switch (k) {
	case RULE_KILL_BUDGET:
		snprintf(rt->kill_msg, sizeof(rt->kill_msg), "%s: instruction budget exhausted (%" PRId64 ")",
			 where, rt->lim.instructions);
		break;
	case RULE_KILL_TIME:
		snprintf(rt->kill_msg, sizeof(rt->kill_msg), "%s: time limit exceeded (%u ms)", where,
			 rt->lim.time_ms);
		break;
	default:
		if (rt->mem_asked > rt->lim.alloc_max)
			snprintf(rt->kill_msg, sizeof(rt->kill_msg),
				 "%s: memory limit exceeded (an allocation of %zu bytes, the largest allowed is %zu)",
				 where, rt->mem_asked, rt->lim.alloc_max);
		else
			snprintf(rt->kill_msg, sizeof(rt->kill_msg),
				 "%s: memory limit exceeded (%zu MiB)", where, rt->lim.memory >> 20);
		break;
	}
	lua_sethook(rt->L, rule__hook, LUA_MASKCOUNT, 1);
}

int rule__raise_kill(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);

	lua_pushstring(L, rt->kill_msg);
	return lua_error(L);
}

static bool rule__late(const struct rule_rt *rt)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	return now.tv_sec > rt->deadline.tv_sec ||
	       (now.tv_sec == rt->deadline.tv_sec && now.tv_nsec >= rt->deadline.tv_nsec);
}

static void rule__hook(lua_State *L, lua_Debug *ar)
{
	struct rule_rt *rt = rule__rt(L);
	char where[LUA_IDSIZE + 24];

	if (!rt->killed) {
		rt->remaining -= RULE_HOOK_EVERY;
		if (rt->remaining > 0 && !rule__late(rt))
			return;
		if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
			snprintf(where, sizeof(where), "%s:%d", ar->short_src, ar->currentline);
		else
			snprintf(where, sizeof(where), "%s", rt->short_src);
		rule__kill(rt, rt->remaining > 0 ? RULE_KILL_TIME : RULE_KILL_BUDGET, where);
	}
	rule__raise_kill(L);
}

void rule__charge(lua_State *L, int64_t n)
{
	struct rule_rt *rt = rule__rt(L);

	if (!rt->killed) {
		rt->remaining -= n;
		if (rt->remaining > 0 && !rule__late(rt))
			return;
		rule__kill(rt, rt->remaining > 0 ? RULE_KILL_TIME : RULE_KILL_BUDGET, NULL);
	}
	rule__raise_kill(L);
}

void rule__charge_bytes(lua_State *L, size_t bytes, size_t per)
{
	size_t units;

	if (!bytes)
		return;
	units = bytes / per + 1;
	rule__charge(L, units > INT64_MAX / 4 ? INT64_MAX / 4 : (int64_t)units);
}

void rule__line(struct buf *b, size_t max, size_t *dropped, const char *where, const char *text,
		size_t len)
{
	size_t wl = where ? strlen(where) : 0, need = len + (wl ? wl + 2 : 0) + 1;
	size_t i, start;

	if (b->len + need > max) {
		(*dropped)++;
		return;
	}
	start = b->len;
	if ((wl && (buf_add(b, where, wl) < 0 || buf_add(b, ": ", 2) < 0)) ||
	    buf_add(b, text, len) < 0 || buf_addc(b, '\n') < 0) {
		b->len = start;
		if (b->p)
			b->p[start] = '\0';
		(*dropped)++;
		return;
	}
	/* one line per entry: line breaks inside become spaces */
	for (i = start; i + 1 < b->len; i++)
		if (b->p[i] == '\n' || b->p[i] == '\r')
			b->p[i] = ' ';
}

/* ---- results and requests -------------------------------------------- */

void rule_request_init(struct rule_request *r)
{
	memset(r, 0, sizeof(*r));
}

void rule_request_release(struct rule_request *r)
{
	size_t i;

	free(r->url);
	free(r->base_url);
	free(r->body);
	free(r->fields);
	for (i = 0; i < r->nheaders; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	free(r->headers);
	rule_request_init(r);
}

void rule_result_init(struct rule_result *r)
{
	memset(r, 0, sizeof(*r));
	rule_request_init(&r->next);
	buf_init(&r->notes, 0);
	buf_init(&r->log, 0);
}

void rule_result_release(struct rule_result *r)
{
	free(r->changes);
	free(r->slots);
	free(r->change_of);
	rule_request_release(&r->next);
	buf_release(&r->notes);
	buf_release(&r->log);
	rule_result_init(r);
}

/* Fibonacci hashing: the top bits of id * 2^64/phi */
static size_t rule__hash_id(int64_t id, unsigned shift)
{
	return (size_t)(((uint64_t)id * UINT64_C(0x9e3779b97f4a7c15)) >> shift);
}

/* The lead index of res for batch b: built once per batch. It stays its
 * own open-addressing table of lead numbers rather than htab: the leads
 * are the batch's array (no node to embed), the index is built once and
 * then only read, per edit, and an integer id hashes in one multiply. */
static int rule__index(struct rule_result *r, const struct rule_batch *b, char *err, size_t errlen)
{
	size_t i, n = b->nleads, cap = 16, mask;
	unsigned bits = 4;
	int rc = -1;

	if (r->slots && r->index_of == b->leads && r->nleads == n) {
		rc = 0;
		goto out;
	}
	if (r->nchanges) {
		snprintf(err, errlen, "the result already holds changes of another batch");
		goto out;
	}
	if (n > UINT32_MAX / 4) {
		snprintf(err, errlen, "batch of %zu leads is too large", n);
		goto out;
	}
	while (cap < 2 * n) {
		cap *= 2;
		bits++;
	}
	free(r->slots);
	free(r->change_of);
	r->slots = calloc(cap, sizeof(*r->slots));
	r->change_of = calloc(n ? n : 1, sizeof(*r->change_of));
	if (!r->slots || !r->change_of) {
		free(r->slots);
		free(r->change_of);
		r->slots = NULL;
		r->change_of = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	r->nslots = cap;
	r->slot_shift = 64 - bits;
	r->nleads = n;
	r->index_of = b->leads;
	mask = cap - 1;
	for (i = 0; i < n; i++) {
		int64_t id = b->leads[i].id;
		size_t k = rule__hash_id(id, r->slot_shift);

		while (r->slots[k].lead && r->slots[k].id != id)
			k = (k + 1) & mask;
		if (!r->slots[k].lead) { /* a repeated id: the first wins */
			r->slots[k].id = id;
			r->slots[k].lead = (uint32_t)i + 1;
		}
	}
	rc = 0;
out:
	return rc;
}

long rule__find(const struct rule_result *r, const struct rule_batch *b, int64_t id)
{
	size_t k = rule__hash_id(id, r->slot_shift), mask = r->nslots - 1;

	while (r->slots[k].lead) {
		if (r->slots[k].id == id)
			return (long)r->slots[k].lead - 1;
		k = (k + 1) & mask;
	}
	return -1;
}

/* ---- calls ----------------------------------------------------------- */

static char rule__own_error; /* error object: the message is in call->msg */

void rule__fail(lua_State *L, const char *fmt, ...)
{
	struct rule_rt *rt = rule__rt(L);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rt->call->msg, sizeof(rt->call->msg), fmt, ap);
	va_end(ap);
	lua_pushlightuserdata(L, &rule__own_error);
	lua_error(L);
	abort(); /* not reached */
}

void rule__errorf(lua_State *L, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	luaL_error(L, "%s", msg);
	abort(); /* not reached */
}

/* The message handler of a call: every message gets the rule's file and
 * line. Never calls metamethods (a __tostring could loop). */
static int rule__msgh(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	size_t sl = strlen(rt->short_src);
	const char *msg;
	char where[LUA_IDSIZE + 24];

	if (rt->killed || lua_touserdata(L, 1) == &rule__own_error)
		return 1;
	if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
		msg = lua_tostring(L, 1);
	else
		msg = lua_pushfstring(L, "error object is a %s value", luaL_typename(L, 1));
	if (strncmp(msg, rt->short_src, sl) == 0 && msg[sl] == ':')
		return 1;
	rule__where(L, where, sizeof(where));
	lua_pushfstring(L, "%s: %s", where, msg);
	return 1;
}

static void rule__fresh_env(lua_State *L, struct rule_rt *rt)
{
	lua_createtable(L, 0, 16);
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_env_mt);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	lua_rawseti(L, LUA_REGISTRYINDEX, rt->ref_env);
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "_G");
}

/* Runs the chunk with the env at env: pushes the rule's table. */
static void rule__run_chunk(lua_State *L, struct rule_rt *rt, int env)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_chunk);
	lua_pushvalue(L, env);
	if (!lua_setupvalue(L, -2, 1))
		lua_pop(L, 1); /* a chunk that uses no global has no _ENV */
	lua_call(L, 0, 1);
	if (lua_type(L, -1) != LUA_TTABLE)
		rule__errorf(L, "the rule must return a table, not %s", luaL_typename(L, -1));
}

/* Pushes the per-call globals every function sees (variant, offer,
 * dates, inid) into the env at env. */
static void rule__set_globals(lua_State *L, struct rule_rt *rt, int env)
{
	const struct rule_call *c = rt->call;
	const struct rule_batch *b = c->b;
	size_t i;

	lua_pushstring(L, rule_variant_name(c->v));
	lua_setfield(L, env, "variant");
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, b->offer);
	lua_setfield(L, -2, "id");
	lua_createtable(L, 0, (int)b->nparams);
	for (i = 0; i < b->nparams; i++) {
		if (!b->params[i].name)
			continue;
		lua_pushstring(L, b->params[i].value ? b->params[i].value : "");
		lua_setfield(L, -2, b->params[i].name);
	}
	lua_setfield(L, -2, "params");
	lua_setfield(L, env, "offer");
	if (b->nleads == 1) {
		lua_pushinteger(L, b->leads[0].id);
		lua_setfield(L, env, "inid");
	}
	if (c->v == RULE_DATES && b->dates) {
		const struct macro_dates *d = b->dates;

		lua_pushstring(L, d->from);
		lua_setfield(L, env, "from");
		lua_pushstring(L, d->to);
		lua_setfield(L, env, "to");
		lua_pushstring(L, d->tom);
		lua_setfield(L, env, "tom");
		lua_pushstring(L, d->ffrom);
		lua_setfield(L, env, "ffrom");
		lua_pushstring(L, d->fto);
		lua_setfield(L, env, "fto");
		lua_pushstring(L, d->ftom);
		lua_setfield(L, env, "ftom");
		lua_pushinteger(L, d->t_from);
		lua_setfield(L, env, "ufrom");
		lua_pushinteger(L, d->t_to);
		lua_setfield(L, env, "uto");
		lua_pushinteger(L, d->t_tom);
		lua_setfield(L, env, "utom");
	}
}

/* Pushes rule[variant] or the shared rule[name] function (or nil). */
static void rule__function(lua_State *L, int rule, int vt, const char *name)
{
	if (lua_getfield(L, vt, name) == LUA_TFUNCTION)
		return;
	lua_pop(L, 1);
	lua_getfield(L, rule, name);
}

static int rule__body_prepare(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	struct rule_call *c = rt->call;

	lua_settop(L, 0);
	rule__fresh_env(L, rt); /* 1 */
	rule__set_globals(L, rt, 1);
	rule__run_chunk(L, rt, 1); /* 2 */
	if (lua_getfield(L, 2, rule_variant_name(c->v)) != LUA_TTABLE) /* 3 */
		rule__errorf(L, "variant '%s' is not declared", rule_variant_name(c->v));
	rule__push_request(L, rt, 3); /* 4 */
	lua_pushvalue(L, 4);
	lua_setfield(L, 1, "request");
	rule__function(L, 2, 3, "prepare"); /* 5 */
	if (lua_type(L, 5) == LUA_TFUNCTION) {
		lua_pushvalue(L, 4);
		lua_call(L, 1, 1); /* 5: what prepare returned */
		if (lua_type(L, 5) != LUA_TTABLE) {
			lua_pop(L, 1);
			lua_getfield(L, 1, "request");
			if (lua_type(L, 5) != LUA_TTABLE)
				rule__errorf(L, "prepare left no request table");
		}
	} else {
		lua_pop(L, 1);
		lua_pushvalue(L, 4);
	}
	rule__finish_request(L, rt, 5, NULL);
	c->req.page = 1;
	return 0;
}

static int rule__body_process(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	struct rule_call *c = rt->call;
	unsigned long hard = rt->mem_hard;
	enum decode_format fmt = c->prev ? c->prev->format : rt->info[c->v].format;
	char msg[512];

	lua_settop(L, 0);
	rule__fresh_env(L, rt); /* 1 */
	rule__set_globals(L, rt, 1);
	rule__run_chunk(L, rt, 1); /* 2 */
	if (lua_getfield(L, 2, rule_variant_name(c->v)) != LUA_TTABLE) /* 3 */
		rule__errorf(L, "variant '%s' is not declared", rule_variant_name(c->v));
	rule__function(L, 2, 3, "process"); /* 4 */
	if (lua_type(L, 4) != LUA_TFUNCTION)
		rule__errorf(L, "variant '%s' has no process function", rule_variant_name(c->v));
	if (decode_push(L, fmt, c->content_type, c->body, c->len, msg, sizeof(msg)) < 0) {
		if (rt->mem_hard != hard) {
			rule__kill(rt, RULE_KILL_MEMORY, rt->short_src);
			rule__raise_kill(L);
		}
		rule__fail(L, "answer (%s, HTTP %d): %s", decode_format_name(fmt), c->http_status,
			   msg);
	} /* 5 */
	lua_pushvalue(L, 5);
	lua_setfield(L, 1, "data");
	lua_pushinteger(L, c->res->pages);
	lua_setfield(L, 1, "page");
	lua_pushinteger(L, c->http_status);
	lua_setfield(L, 1, "http_status");
	lua_call(L, 1, 1); /* 4: what process returned */
	if (lua_type(L, 4) == LUA_TTABLE && lua_getfield(L, 4, "next") != LUA_TNIL) {
		if (lua_type(L, 5) != LUA_TTABLE)
			rule__errorf(L, "process returned a 'next' that is a %s, not a table",
				   luaL_typename(L, 5));
		if (c->res->pages >= rt->lim.pages_max) {
			char where[LUA_IDSIZE + 24], text[96];
			int n = snprintf(text, sizeof(text),
					 "page limit of %u reached: the next page is not fetched",
					 rt->lim.pages_max);

			c->res->capped = true;
			snprintf(where, sizeof(where), "%s", rt->short_src);
			rule__line(&c->res->notes, rt->lim.notes_max, &c->res->notes_dropped, where,
				   text, (size_t)n);
		} else {
			rule__finish_request(L, rt, 5, c->prev);
			c->req.page = c->res->pages + 1;
		}
	}
	return 0;
}

/* Runs body under the budget with a fresh kill state; 0 or -1 with err. */
static int rule__call(struct rule_rt *rt, struct rule_call *c, lua_CFunction body, char *err,
		      size_t errlen)
{
	lua_State *L = rt->L;
	int st, rc = -1;

	rt->call = c;
	rt->in_call = true;
	rt->killed = RULE_KILL_NONE;
	rt->kill_msg[0] = '\0';
	rt->remaining = rt->lim.instructions;
	rt->refused_pending = false;
	rt->mem_where[0] = '\0';
	rt->mem_asked = 0;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &rt->deadline);
	rt->deadline.tv_sec += rt->lim.time_ms / 1000;
	rt->deadline.tv_nsec += (long)(rt->lim.time_ms % 1000) * 1000000L;
	if (rt->deadline.tv_nsec >= 1000000000L) {
		rt->deadline.tv_sec++;
		rt->deadline.tv_nsec -= 1000000000L;
	}
	c->msg[0] = '\0';
	lua_settop(L, 0);
	lua_pushcfunction(L, rule__msgh);
	lua_pushcfunction(L, body);
	lua_sethook(L, rule__hook, LUA_MASKCOUNT, RULE_HOOK_EVERY);
	st = lua_pcall(L, 0, 0, 1);
	if (st == LUA_OK) {
		rc = 0;
	} else if (rt->killed) {
		snprintf(err, errlen, "%s", rt->kill_msg);
	} else if (st == LUA_ERRMEM) {
		rule__kill(rt, RULE_KILL_MEMORY, rt->mem_where[0] ? rt->mem_where : rt->short_src);
		snprintf(err, errlen, "%s", rt->kill_msg);
	} else if (lua_touserdata(L, -1) == &rule__own_error) {
		snprintf(err, errlen, "%s", c->msg);
	} else if (lua_type(L, -1) == LUA_TSTRING) {
		snprintf(err, errlen, "%s", lua_tostring(L, -1));
	} else {
		snprintf(err, errlen, "%s: error in error handling", rt->short_src);
	}
	lua_sethook(L, NULL, 0, 0);
	lua_settop(L, 0);
	/* drop the call's environment so its garbage can go */
	lua_pushnil(L);
	lua_rawseti(L, LUA_REGISTRYINDEX, rt->ref_env);
	lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref_chunk);
	lua_pushnil(L);
	if (!lua_setupvalue(L, -2, 1))
		lua_pop(L, 1);
	lua_pop(L, 1);
	rt->in_call = false;
	rt->call = NULL;
	rt->last_kill = rc < 0 ? rt->killed : RULE_KILL_NONE;
	rt->killed = RULE_KILL_NONE;
	if (rc < 0 || rt->mem_used > rt->lim.memory / 2)
		lua_gc(L, LUA_GCCOLLECT);
	return rc;
}

static void rule__call_init(struct rule_call *c, enum rule_variant v, const struct rule_batch *b)
{
	memset(c, 0, sizeof(*c));
	c->v = v;
	c->b = b;
	rule_request_init(&c->req);
	rule_result_init(&c->scratch);
}

static void rule__call_release(struct rule_call *c)
{
	rule_request_release(&c->req);
	rule_result_release(&c->scratch);
	free(c->ids);
	free((void *)c->exts);
	free(c->ext_slots);
}

static int rule__check_call(struct rule_rt *rt, enum rule_variant v, const struct rule_batch *b,
			    char *err, size_t errlen)
{
	int rc = -1;

	if (!rt || !b) {
		snprintf(err, errlen, "no rule or no batch");
		goto out;
	}
	if ((unsigned)v >= RULE_VARIANTS || !rt->info[v].present) {
		snprintf(err, errlen, "%s: variant '%s' is not declared", rt->short_src,
			 rule_variant_name(v));
		goto out;
	}
	if (v == RULE_DATES && !b->dates) {
		snprintf(err, errlen, "%s: the dates variant needs the batch's dates", rt->short_src);
		goto out;
	}
	if (b->nleads && !b->leads) {
		snprintf(err, errlen, "batch of %zu leads without leads", b->nleads);
		goto out;
	}
	rc = 0;
out:
	return rc;
}

/* The macro context of the call's batch: prepare's request and the next
 * pages process asks for expand the same macros. */
static int rule__call_macros(struct rule_call *c, char *err, size_t errlen)
{
	const struct rule_batch *b = c->b;
	size_t i;

	c->ids = malloc((b->nleads ? b->nleads : 1) * sizeof(*c->ids));
	c->exts = malloc((b->nleads ? b->nleads : 1) * sizeof(*c->exts));
	if (!c->ids || !c->exts) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < b->nleads; i++) {
		c->ids[i] = b->leads[i].id;
		c->exts[i] = b->leads[i].ext;
	}
	c->mctx.variant = rule_variant_name(c->v);
	c->mctx.ids = c->ids;
	c->mctx.exts = c->exts;
	c->mctx.n = c->v == RULE_DATES ? 0 : b->nleads;
	c->mctx.dates = c->v == RULE_DATES ? b->dates : NULL;
	c->mctx.params = b->params;
	c->mctx.nparams = b->nparams;
	return 0;
}

int rule_prepare(struct rule_rt *rt, enum rule_variant v, const struct rule_batch *b,
		 struct rule_result *res, struct rule_request *out, char *err, size_t errlen)
{
	struct rule_call c;
	int rc = -1;

	rt->last_kill = RULE_KILL_NONE;
	rule_request_init(out);
	rule__call_init(&c, v, b);
	if (rule__check_call(rt, v, b, err, errlen) < 0 ||
	    rule__index(&c.scratch, b, err, errlen) < 0)
		goto out;
	c.res = res;
	c.index = &c.scratch;
	if (rule__call_macros(&c, err, errlen) < 0)
		goto out;
	if (rule__call(rt, &c, rule__body_prepare, err, errlen) < 0)
		goto out;
	*out = c.req;
	rule_request_init(&c.req);
	rc = 0;
out:
	rule__call_release(&c);
	return rc;
}

int rule_process(struct rule_rt *rt, enum rule_variant v, const struct rule_batch *b,
		 const struct rule_request *req, const char *body, size_t len, int http_status,
		 const char *content_type, struct rule_result *res, char *err, size_t errlen)
{
	struct rule_call c;
	struct rule_request prev;
	int rc = -1;

	rt->last_kill = RULE_KILL_NONE;
	rule_request_init(&prev);
	rule__call_init(&c, v, b);
	if (!res) {
		snprintf(err, errlen, "rule_process needs a result");
		goto out;
	}
	if (req == &res->next) {
		/* take over the request the last page asked for */
		prev = res->next;
		rule_request_init(&res->next);
		req = &prev;
	}
	rule_request_release(&res->next);
	res->has_next = false;
	if (rule__check_call(rt, v, b, err, errlen) < 0 || rule__index(res, b, err, errlen) < 0)
		goto out;
	c.res = res;
	c.process = true;
	c.index = res;
	c.prev = req;
	c.body = body;
	c.len = body ? len : 0;
	c.http_status = http_status;
	c.content_type = content_type;
	if (rule__call_macros(&c, err, errlen) < 0)
		goto out;
	res->pages++;
	if (rule__call(rt, &c, rule__body_process, err, errlen) < 0)
		goto out;
	if (c.req.url) {
		res->next = c.req;
		res->has_next = true;
		rule_request_init(&c.req);
	}
	rc = 0;
out:
	rule__call_release(&c);
	rule_request_release(&prev);
	return rc;
}

/* ---- loading --------------------------------------------------------- */

static const char *const rule__top_keys[] = { "processing", "accepted", "dates", "process",
					      "prepare", "statuses", NULL };
static const char *const rule__variant_keys[] = { "url", "method", "format", "encoding",
						  "fields", "headers", "batch", "days",
						  "prepare", "process", "statuses", NULL };

static bool rule__in(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/* Checks that the table at idx has only known string keys. */
static void rule__check_keys(lua_State *L, int idx, const char *const *keys, const char *what)
{
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			rule__errorf(L, "%sunexpected key of type %s", what, luaL_typename(L, -1));
		if (!rule__in(keys, lua_tostring(L, -1)))
			rule__errorf(L, "%sunknown key '%s'", what, lua_tostring(L, -1));
	}
}

/* A status map entry's value at -1 → m. */
static void rule__status_value(lua_State *L, const char *what, const char *word,
			       struct status_match *m)
{
	lua_Integer n;
	int isnum;

	memset(m, 0, sizeof(*m));
	switch (lua_type(L, -1)) {
	case LUA_TBOOLEAN:
		/* false blocks the word: it reads as unrecognised, never as one of
		 * ours (a CRM number 1..12 the rule does not map). */
		if (lua_toboolean(L, -1))
			rule__errorf(L, "%sstatuses['%s']: true is not a status (false blocks a word)",
				     what, word);
		return;
	case LUA_TNUMBER:
		n = lua_tointegerx(L, -1, &isnum);
		if (!isnum || n < STATUS_MIN || n > STATUS_MAX)
			rule__errorf(L, "%sstatuses['%s']: status %s is not in 1..12", what, word,
				   lua_tostring(L, -1));
		m->status = (int)n;
		break;
	case LUA_TSTRING: {
		size_t l;
		const char *s = lua_tolstring(L, -1, &l);

		if (!status_recognise(NULL, s, l, m))
			rule__errorf(L, "%sstatuses['%s']: unknown status '%s'", what, word, s);
		break;
	}
	case LUA_TTABLE:
		if (lua_getfield(L, -1, "accept") != LUA_TNIL)
			m->accept = lua_toboolean(L, -1);
		lua_pop(L, 1);
		if (lua_getfield(L, -1, "status") != LUA_TNIL) {
			n = lua_tointegerx(L, -1, &isnum);
			if (!isnum || n < STATUS_MIN || n > STATUS_MAX)
				rule__errorf(L, "%sstatuses['%s']: status is not in 1..12", what, word);
			m->status = (int)n;
		}
		lua_pop(L, 1);
		if (lua_getfield(L, -1, "reason") != LUA_TNIL) {
			n = lua_tointegerx(L, -1, &isnum);
			if (!isnum || n < 1 || n > REASON_MAX)
				rule__errorf(L, "%sstatuses['%s']: reason is not in 1..%d", what, word,
					   REASON_MAX);
			m->reason = (int)n;
		}
		lua_pop(L, 1);
		if (m->accept && !m->status)
			m->status = LS_PACKING;
		if (m->accept && m->status != LS_PACKING)
			rule__errorf(L, "%sstatuses['%s']: accept approves into status 6; "
				     "give accept or a status, not both", what, word);
		if (!m->status)
			rule__errorf(L, "%sstatuses['%s']: neither status nor accept", what, word);
		break;
	default:
		rule__errorf(L, "%sstatuses['%s']: a %s is not a status", what, word,
			   luaL_typename(L, -1));
	}
	if (m->reason && m->status != LS_CANCEL)
		rule__errorf(L, "%sstatuses['%s']: a reason needs status 5", what, word);
}

/* Adds the status map at idx (may be nil) to w. */
static void rule__status_map(lua_State *L, int idx, struct status_words *w, const char *what)
{
	if (lua_type(L, idx) == LUA_TNIL)
		return;
	if (lua_type(L, idx) != LUA_TTABLE)
		rule__errorf(L, "%sstatuses must be a table", what);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		char word[64];
		const char *k;
		struct status_match m;

		if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2)) {
			snprintf(word, sizeof(word), "%lld", (long long)lua_tointeger(L, -2));
			k = word;
		} else if (lua_type(L, -2) == LUA_TSTRING) {
			k = lua_tostring(L, -2);
		} else {
			rule__errorf(L, "%sstatuses: a key must be a word or an integer", what);
			return;
		}
		rule__status_value(L, what, k, &m);
		if (status_words_add(w, k, m) < 0)
			rule__errorf(L, "%sstatuses['%s']: empty, too long or out of memory", what, k);
		lua_pop(L, 1);
	}
}

static lua_Integer rule__int_field(lua_State *L, int t, const char *key, lua_Integer def,
				   lua_Integer min, lua_Integer max, const char *what)
{
	lua_Integer v = def;
	int isnum;

	if (lua_getfield(L, t, key) != LUA_TNIL) {
		v = lua_tointegerx(L, -1, &isnum);
		if (!isnum || lua_type(L, -1) != LUA_TNUMBER || v < min || v > max)
			rule__errorf(L, "%s%s must be an integer in %lld..%lld", what, key,
				   (long long)min, (long long)max);
	}
	lua_pop(L, 1);
	return v;
}

static void rule__check_type(lua_State *L, int t, const char *key, int type, const char *what)
{
	int got = lua_getfield(L, t, key);

	if (got != LUA_TNIL && got != type)
		rule__errorf(L, "%s%s must be a %s, not a %s", what, key, lua_typename(L, type),
			   luaL_typename(L, -1));
	lua_pop(L, 1);
}

static void rule__load_variant(lua_State *L, struct rule_rt *rt, enum rule_variant v, int rule,
			       int vt)
{
	struct rule_variant_info *info = &rt->info[v];
	char what[32];
	int f;

	snprintf(what, sizeof(what), "%s: ", rule_variant_name(v));
	rule__check_keys(L, vt, rule__variant_keys, what);
	if (lua_getfield(L, vt, "url") != LUA_TSTRING)
		rule__errorf(L, "%surl must be a string", what);
	lua_pop(L, 1);
	rule__check_type(L, vt, "fields", LUA_TTABLE, what);
	rule__check_type(L, vt, "headers", LUA_TTABLE, what);
	rule__check_type(L, vt, "prepare", LUA_TFUNCTION, what);
	rule__check_type(L, vt, "process", LUA_TFUNCTION, what);
	rule__check_type(L, vt, "method", LUA_TSTRING, what);
	rule__check_type(L, vt, "encoding", LUA_TSTRING, what);
	if (lua_getfield(L, vt, "method") == LUA_TSTRING) {
		const char *m = lua_tostring(L, -1);

		if (strcasecmp(m, "GET") && strcasecmp(m, "POST") && strcasecmp(m, "PUT") &&
		    strcasecmp(m, "PATCH") && strcasecmp(m, "DELETE"))
			rule__errorf(L, "%smethod '%s' is not GET, POST, PUT, PATCH or DELETE", what, m);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, vt, "encoding") == LUA_TSTRING) {
		const char *e = lua_tostring(L, -1);

		if (strcmp(e, "form") && strcmp(e, "json"))
			rule__errorf(L, "%sencoding '%s' is not form or json", what, e);
	}
	lua_pop(L, 1);
	info->format = DECODE_JSON;
	if (lua_getfield(L, vt, "format") != LUA_TNIL) {
		f = lua_type(L, -1) == LUA_TSTRING ? decode_format_parse(lua_tostring(L, -1)) : -1;
		if (f < 0)
			rule__errorf(L, "%sformat must be json, xml, form or text", what);
		info->format = (enum decode_format)f;
	}
	lua_pop(L, 1);
	if (v == RULE_DATES) {
		info->days = (int)rule__int_field(L, vt, "days", 1, 1, RULE_DAYS_MAX, what);
		info->batch = 0;
		if (lua_getfield(L, vt, "batch") != LUA_TNIL)
			rule__errorf(L, "%sbatch is for the processing and accepted variants (dates: days)",
				   what);
		lua_pop(L, 1);
	} else {
		info->batch = (size_t)rule__int_field(L, vt, "batch",
						      RULE_BATCH_DEFAULT < rt->lim.batch_max
							      ? RULE_BATCH_DEFAULT
							      : (lua_Integer)rt->lim.batch_max,
						      1, (lua_Integer)rt->lim.batch_max, what);
		if (lua_getfield(L, vt, "days") != LUA_TNIL)
			rule__errorf(L, "%sdays is for the dates variant (processing, accepted: batch)",
				   what);
		lua_pop(L, 1);
	}
	rule__function(L, rule, vt, "process");
	if (lua_type(L, -1) != LUA_TFUNCTION)
		rule__errorf(L, "%sno process function (neither its own nor a shared one)", what);
	lua_pop(L, 1);
	rule__function(L, rule, vt, "prepare");
	info->prepare = lua_type(L, -1) == LUA_TFUNCTION;
	lua_pop(L, 1);
	rt->words[v] = status_words_new();
	if (!rt->words[v])
		rule__errorf(L, "out of memory");
	lua_getfield(L, rule, "statuses");
	rule__status_map(L, lua_gettop(L), rt->words[v], "");
	lua_pop(L, 1);
	lua_getfield(L, vt, "statuses");
	rule__status_map(L, lua_gettop(L), rt->words[v], what);
	lua_pop(L, 1);
	info->status_words = status_words_count(rt->words[v]);
	info->present = true;
}

static int rule__body_load(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);
	int v, any = 0;

	lua_settop(L, 0);
	rule__fresh_env(L, rt); /* 1 */
	rule__run_chunk(L, rt, 1); /* 2 */
	rule__check_keys(L, 2, rule__top_keys, "");
	rule__check_type(L, 2, "process", LUA_TFUNCTION, "");
	rule__check_type(L, 2, "prepare", LUA_TFUNCTION, "");
	for (v = 0; v < RULE_VARIANTS; v++) {
		int t = lua_getfield(L, 2, rule__variant_names[v]);

		if (t == LUA_TTABLE) {
			rule__load_variant(L, rt, (enum rule_variant)v, 2, lua_gettop(L));
			any = 1;
		} else if (t != LUA_TNIL) {
			rule__errorf(L, "%s must be a table, not a %s", rule__variant_names[v],
				   luaL_typename(L, -1));
		}
		lua_pop(L, 1);
	}
	if (!any)
		rule__errorf(L, "declares none of the variants processing, accepted, dates");
	return 0;
}

static int rule__setup(lua_State *L)
{
	struct rule_rt *rt = rule__rt(L);

	luaL_requiref(L, LUA_GNAME, luaopen_base, 0);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
	lua_settop(L, 0);
	rule__open_sandbox(L); /* the base table */
	lua_createtable(L, 0, 2);
	lua_pushvalue(L, 1);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	rt->ref_env_mt = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushboolean(L, 0);
	rt->ref_env = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_createtable(L, 0, 0);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	rt->ref_marks = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

const char *rule_name(const struct rule_rt *rt)
{
	return rt ? rt->name : "";
}

void rule_variant_info(const struct rule_rt *rt, enum rule_variant v,
		       struct rule_variant_info *out)
{
	if (!rt || (unsigned)v >= RULE_VARIANTS)
		memset(out, 0, sizeof(*out));
	else
		*out = rt->info[v];
}

int rule_clone(const struct rule_rt *rt, struct rule_rt **out, char *err, size_t errlen)
{
	return rule_load_buffer(rt->name, rt->src, rt->src_len, &rt->lim, out, err, errlen);
}

void rule_free(struct rule_rt *rt)
{
	int v;

	if (!rt)
		return;
	if (rt->L)
		lua_close(rt->L);
	for (v = 0; v < RULE_VARIANTS; v++)
		status_words_free(rt->words[v]);
	free(rt->name);
	free(rt->src);
	free(rt);
}

int rule_load_buffer(const char *name, const char *text, size_t len,
		     const struct rule_limits *limits, struct rule_rt **out, char *err,
		     size_t errlen)
{
	struct rule_rt *rt = calloc(1, sizeof(*rt));
	struct rule_call c;
	struct buf chunkname;
	lua_Debug ar;
	int st, rc = -1;

	*out = NULL;
	buf_init(&chunkname, 4096);
	rule__call_init(&c, RULE_PROCESSING, NULL);
	if (!rt || !(rt->name = strdup(name ? name : "rule"))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (!(rt->src = malloc(len + 1))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(rt->src, text, len);
	rt->src[len] = '\0';
	rt->src_len = len;
	rule__limits(&rt->lim, limits);
	snprintf(rt->short_src, sizeof(rt->short_src), "%s", rt->name);
	rt->L = lua_newstate(rule__alloc, rt);
	if (!rt->L) {
		snprintf(err, errlen, "%s: out of memory", rt->name);
		goto out;
	}
	*(struct rule_rt **)lua_getextraspace(rt->L) = rt;
	lua_pushcfunction(rt->L, rule__setup);
	if (lua_pcall(rt->L, 0, 0, 0) != LUA_OK) {
		snprintf(err, errlen, "%s: cannot set up the sandbox: %s", rt->name,
			 lua_type(rt->L, -1) == LUA_TSTRING ? lua_tostring(rt->L, -1) : "error");
		goto out;
	}
	if (buf_addc(&chunkname, '@') < 0 || buf_adds(&chunkname, rt->name) < 0) {
		snprintf(err, errlen, "rule name too long");
		goto out;
	}
	st = luaL_loadbufferx(rt->L, text, len, chunkname.p, "t");
	if (st != LUA_OK) {
		const char *m = lua_type(rt->L, -1) == LUA_TSTRING ? lua_tostring(rt->L, -1) : "error";

		/* syntax errors carry "name:line:" already */
		if (strncmp(m, rt->short_src, strlen(rt->short_src)) == 0)
			snprintf(err, errlen, "%s", m);
		else
			snprintf(err, errlen, "%s: %s", rt->short_src,
				 st == LUA_ERRMEM ? "memory limit exceeded while loading" : m);
		goto out;
	}
	lua_pushvalue(rt->L, -1);
	if (lua_getinfo(rt->L, ">S", &ar))
		snprintf(rt->short_src, sizeof(rt->short_src), "%s", ar.short_src);
	rt->ref_chunk = luaL_ref(rt->L, LUA_REGISTRYINDEX);
	if (rule__call(rt, &c, rule__body_load, err, errlen) < 0)
		goto out;
	*out = rt;
	rt = NULL;
	rc = 0;
out:
	rule__call_release(&c);
	buf_release(&chunkname);
	rule_free(rt);
	return rc;
}

int rule_load(const char *path, const struct rule_limits *limits, struct rule_rt **out, char *err,
	      size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct buf text;
	char tmp[8192];
	size_t n;
	int rc = -1;

	*out = NULL;
	buf_init(&text, RULE_FILE_MAX);
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (buf_add(&text, tmp, n) < 0) {
			snprintf(err, errlen, "%s: file is larger than %zu bytes", path,
				 (size_t)RULE_FILE_MAX);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	rc = rule_load_buffer(path, text.p ? text.p : "", text.len, limits, out, err, errlen);
out:
	if (f)
		fclose(f);
	buf_release(&text);
	return rc;
}
