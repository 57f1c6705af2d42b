/* rule_lib_lead: the edits a rule makes (lead.edit, approve, setstatus,
 * setstc), the batch's currencies and goals (currency.id, goal.bycode),
 * and log/print. */
#include "rule_int.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define LIB_LOG_LINE 1024    /* bytes of one log line */
#define LIB_MSG 320

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
		s = rule__numtext(L, idx, tmp, n, false);
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

int rule__log(lua_State *L)
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

static const luaL_Reg lead_fns[] = {
	{ "edit", lib_edit }, { "approve", lib_approve }, { "setstatus", lib_setstatus },
	{ "setstc", lib_setstc }, { NULL, NULL },
};
static const luaL_Reg currency_fns[] = { { "id", lib_currency_id }, { NULL, NULL } };
static const luaL_Reg goal_fns[] = { { "bycode", lib_goal_bycode }, { NULL, NULL } };

void rule__open_lead(lua_State *L, int base)
{
	rule__library(L, "lead", lead_fns);
	rule__library(L, "currency", currency_fns);
	rule__library(L, "goal", goal_fns);
}
