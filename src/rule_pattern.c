/* rule_pattern: string.find/match/gmatch/gsub for rules, with Lua 5.4's
 * pattern language on our own backtracking matcher that charges every step
 * to the call's instruction budget (the VM's count hook never fires inside
 * C, and Lua's own matcher is quadratic or worse on patterns like "(.-)*b").
 * Subjects and patterns are length-capped (limits.subject_max/pattern_max). */
#include "rule_int.h"

#include <ctype.h>
#include <string.h>

#define PM_MAXCAPTURES 32
#define PM_MAXDEPTH 200       /* recursion of the matcher */
#define PM_CHUNK 4096         /* steps between two charges */
#define PM_UNFINISHED (-1)
#define PM_POSITION (-2)

struct pm {
	lua_State *L;
	const char *src, *src_end, *pat_end;
	int level;
	int depth;
	int64_t steps; /* not yet charged */
	struct {
		const char *init;
		ptrdiff_t len;
	} cap[PM_MAXCAPTURES];
};

static void pm_step(struct pm *m)
{
	if (++m->steps >= PM_CHUNK) {
		int64_t n = m->steps;

		m->steps = 0;
		rule__charge(m->L, n);
	}
}

static void pm_flush(struct pm *m)
{
	int64_t n = m->steps;

	m->steps = 0;
	if (n)
		rule__charge(m->L, n);
}

static const char *pm_class_end(struct pm *m, const char *p)
{
	char c = *p++;

	if (c == '%') {
		if (p >= m->pat_end)
			rule__errorf(m->L, "malformed pattern (ends with '%%')");
		return p + 1;
	}
	if (c == '[') {
		if (*p == '^')
			p++;
		do {
			if (p >= m->pat_end)
				rule__errorf(m->L, "malformed pattern (missing ']')");
			c = *p++;
			if (c == '%' && p < m->pat_end)
				p++;
		} while (*p != ']');
		return p + 1;
	}
	return p;
}

static bool pm_class(int c, int cl)
{
	bool r;

	switch (tolower(cl)) {
	case 'a': r = isalpha(c); break;
	case 'c': r = iscntrl(c); break;
	case 'd': r = isdigit(c); break;
	case 'g': r = isgraph(c); break;
	case 'l': r = islower(c); break;
	case 'p': r = ispunct(c); break;
	case 's': r = isspace(c); break;
	case 'u': r = isupper(c); break;
	case 'w': r = isalnum(c); break;
	case 'x': r = isxdigit(c); break;
	default: return cl == c;
	}
	return isupper(cl) ? !r : r;
}

/* p at '[', ec at its ']' */
static bool pm_set(int c, const char *p, const char *ec)
{
	bool yes = true;

	if (p[1] == '^') {
		yes = false;
		p++;
	}
	while (++p < ec) {
		if (*p == '%') {
			p++;
			if (pm_class(c, (unsigned char)*p))
				return yes;
		} else if (p[1] == '-' && p + 2 < ec) {
			p += 2;
			if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
				return yes;
		} else if ((unsigned char)*p == c) {
			return yes;
		}
	}
	return !yes;
}

static bool pm_single(struct pm *m, const char *s, const char *p, const char *ep)
{
	int c;

	if (s >= m->src_end)
		return false;
	c = (unsigned char)*s;
	switch (*p) {
	case '.': return true;
	case '%': return pm_class(c, (unsigned char)p[1]);
	case '[': return pm_set(c, p, ep - 1);
	default: return (unsigned char)*p == c;
	}
}

static const char *pm_match(struct pm *m, const char *s, const char *p);

static const char *pm_balance(struct pm *m, const char *s, const char *p)
{
	int open = 1;
	char b, e;

	if (p + 1 >= m->pat_end)
		rule__errorf(m->L, "malformed pattern (missing arguments to '%%b')");
	if (s >= m->src_end || *s != *p)
		return NULL;
	b = p[0];
	e = p[1];
	while (++s < m->src_end) {
		pm_step(m);
		if (*s == e) {
			if (--open == 0)
				return s + 1;
		} else if (*s == b) {
			open++;
		}
	}
	return NULL;
}

static const char *pm_max_expand(struct pm *m, const char *s, const char *p, const char *ep)
{
	ptrdiff_t i = 0;

	while (pm_single(m, s + i, p, ep)) {
		pm_step(m);
		i++;
	}
	for (; i >= 0; i--) {
		const char *r = pm_match(m, s + i, ep + 1);

		if (r)
			return r;
	}
	return NULL;
}

static const char *pm_min_expand(struct pm *m, const char *s, const char *p, const char *ep)
{
	for (;;) {
		const char *r = pm_match(m, s, ep + 1);

		if (r)
			return r;
		if (!pm_single(m, s, p, ep))
			return NULL;
		s++;
	}
}

static const char *pm_start_capture(struct pm *m, const char *s, const char *p, ptrdiff_t what)
{
	const char *r;

	if (m->level >= PM_MAXCAPTURES)
		rule__errorf(m->L, "too many captures");
	m->cap[m->level].init = s;
	m->cap[m->level].len = what;
	m->level++;
	r = pm_match(m, s, p);
	if (!r)
		m->level--;
	return r;
}

static const char *pm_end_capture(struct pm *m, const char *s, const char *p)
{
	int l;
	const char *r;

	for (l = m->level - 1; l >= 0; l--)
		if (m->cap[l].len == PM_UNFINISHED)
			break;
	if (l < 0)
		rule__errorf(m->L, "invalid pattern capture");
	m->cap[l].len = s - m->cap[l].init;
	r = pm_match(m, s, p);
	if (!r)
		m->cap[l].len = PM_UNFINISHED;
	return r;
}

static int pm_check_capture(struct pm *m, int ch)
{
	int l = ch - '1';

	if (l < 0 || l >= m->level || m->cap[l].len == PM_UNFINISHED)
		rule__errorf(m->L, "invalid capture index %%%d", l + 1);
	return l;
}

static const char *pm_back_ref(struct pm *m, const char *s, int ch)
{
	int l = pm_check_capture(m, ch);
	size_t len = (size_t)m->cap[l].len;

	if (m->cap[l].len == PM_POSITION)
		return NULL; /* as Lua: a position capture never matches again */
	m->steps += (int64_t)(len / 16);
	if ((size_t)(m->src_end - s) >= len && memcmp(m->cap[l].init, s, len) == 0)
		return s + len;
	return NULL;
}

static const char *pm_match(struct pm *m, const char *s, const char *p)
{
	const char *ep, *r = NULL;

	if (m->depth-- == 0)
		rule__errorf(m->L, "pattern too complex");
	for (;;) {
		pm_step(m);
		if (p >= m->pat_end) {
			r = s;
			break;
		}
		if (*p == '(') {
			r = p[1] == ')' ? pm_start_capture(m, s, p + 2, PM_POSITION)
					: pm_start_capture(m, s, p + 1, PM_UNFINISHED);
			break;
		}
		if (*p == ')') {
			r = pm_end_capture(m, s, p + 1);
			break;
		}
		if (*p == '$' && p + 1 == m->pat_end) {
			r = s == m->src_end ? s : NULL;
			break;
		}
		if (*p == '%' && p + 1 < m->pat_end && p[1] == 'b') {
			s = pm_balance(m, s, p + 2);
			if (!s)
				break;
			p += 4;
			continue;
		}
		if (*p == '%' && p + 1 < m->pat_end && p[1] == 'f') {
			int prev, cur;

			p += 2;
			if (p >= m->pat_end || *p != '[')
				rule__errorf(m->L, "missing '[' after '%%f' in pattern");
			ep = pm_class_end(m, p);
			prev = s == m->src ? 0 : (unsigned char)s[-1];
			cur = s < m->src_end ? (unsigned char)*s : 0;
			if (pm_set(prev, p, ep - 1) || !pm_set(cur, p, ep - 1))
				break;
			p = ep;
			continue;
		}
		if (*p == '%' && p + 1 < m->pat_end && isdigit((unsigned char)p[1])) {
			s = pm_back_ref(m, s, (unsigned char)p[1]);
			if (!s)
				break;
			p += 2;
			continue;
		}
		ep = pm_class_end(m, p);
		if (!pm_single(m, s, p, ep)) {
			if (ep < m->pat_end && (*ep == '*' || *ep == '?' || *ep == '-')) {
				p = ep + 1;
				continue;
			}
			break;
		}
		if (ep < m->pat_end && *ep == '?') {
			r = pm_match(m, s + 1, ep + 1);
			if (r)
				break;
			p = ep + 1;
			continue;
		}
		if (ep < m->pat_end && *ep == '+') {
			r = pm_max_expand(m, s + 1, p, ep);
			break;
		}
		if (ep < m->pat_end && *ep == '*') {
			r = pm_max_expand(m, s, p, ep);
			break;
		}
		if (ep < m->pat_end && *ep == '-') {
			r = pm_min_expand(m, s, p, ep);
			break;
		}
		s++;
		p = ep;
	}
	m->depth++;
	return r;
}

/* ---- results --------------------------------------------------------- */

static void pm_push_capture(struct pm *m, int i, const char *s, const char *e)
{
	if (i >= m->level) {
		if (i != 0)
			rule__errorf(m->L, "invalid capture index %%%d", i + 1);
		lua_pushlstring(m->L, s, (size_t)(e - s));
		return;
	}
	if (m->cap[i].len == PM_UNFINISHED)
		rule__errorf(m->L, "unfinished capture");
	if (m->cap[i].len == PM_POSITION)
		lua_pushinteger(m->L, (lua_Integer)(m->cap[i].init - m->src) + 1);
	else
		lua_pushlstring(m->L, m->cap[i].init, (size_t)m->cap[i].len);
}

/* Pushes the captures (the whole match when there are none and s is not
 * NULL); returns how many. */
static int pm_push_captures(struct pm *m, const char *s, const char *e)
{
	int i, n = (m->level == 0 && s) ? 1 : m->level;

	luaL_checkstack(m->L, n, "too many captures");
	for (i = 0; i < n; i++)
		pm_push_capture(m, i, s, e);
	return n;
}

/* ---- entry points ---------------------------------------------------- */

static const char *pm_args(lua_State *L, size_t *ls, const char **p, size_t *lp)
{
	struct rule_rt *rt = rule__rt(L);
	const char *s = luaL_checklstring(L, 1, ls);

	*p = luaL_checklstring(L, 2, lp);
	if (*ls > rt->lim.subject_max)
		rule__errorf(L, "subject of %zu bytes is over the pattern functions' limit of %zu",
			   *ls, rt->lim.subject_max);
	if (*lp > rt->lim.pattern_max)
		rule__errorf(L, "pattern of %zu bytes is over the limit of %zu", *lp,
			   rt->lim.pattern_max);
	return s;
}

static void pm_init(struct pm *m, lua_State *L, const char *s, size_t ls, const char *p,
		    size_t lp)
{
	m->L = L;
	m->src = s;
	m->src_end = s + ls;
	m->pat_end = p + lp;
	m->level = 0;
	m->depth = PM_MAXDEPTH;
	m->steps = 0;
}

static void pm_reset(struct pm *m)
{
	m->level = 0;
	m->depth = PM_MAXDEPTH;
}

/* Lua's string.find/match init: 1-based, negative from the end. */
static size_t pm_init_pos(lua_State *L, int arg, size_t len)
{
	lua_Integer pos = luaL_optinteger(L, arg, 1);

	if (pos > 0)
		return (size_t)pos;
	if (pos == 0 || pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

static bool pm_has_specials(const char *p, size_t lp)
{
	size_t i;

	for (i = 0; i < lp; i++)
		if (strchr("^$*+?.([%-", p[i]))
			return true;
	return false;
}

/* Plain search, charged by the positions tried. */
static const char *pm_plain(struct pm *m, const char *s, size_t ls, const char *p, size_t lp)
{
	const char *end, *at;

	if (lp == 0)
		return s;
	if (lp > ls)
		return NULL;
	end = s + (ls - lp) + 1;
	while (s < end && (at = memchr(s, *p, (size_t)(end - s))) != NULL) {
		m->steps += 1 + (int64_t)(lp / 16) + (at - s) / 64;
		pm_step(m);
		if (memcmp(at + 1, p + 1, lp - 1) == 0)
			return at;
		s = at + 1;
	}
	return NULL;
}

static int pm_find(lua_State *L, bool find)
{
	size_t ls, lp, init;
	const char *p, *s = pm_args(L, &ls, &p, &lp);
	struct pm m;
	int n = 0;

	init = pm_init_pos(L, 3, ls);
	if (init > ls + 1) {
		luaL_pushfail(L);
		return 1;
	}
	pm_init(&m, L, s, ls, p, lp);
	if (find && (lua_toboolean(L, 4) || !pm_has_specials(p, lp))) {
		const char *at = pm_plain(&m, s + init - 1, ls - init + 1, p, lp);

		pm_flush(&m);
		if (at) {
			lua_pushinteger(L, (lua_Integer)(at - s) + 1);
			lua_pushinteger(L, (lua_Integer)(at - s) + (lua_Integer)lp);
			return 2;
		}
	} else {
		const char *s1 = s + init - 1;
		bool anchor = lp > 0 && *p == '^';

		if (anchor) {
			p++;
			lp--;
			m.pat_end = p + lp;
		}
		do {
			const char *e;

			pm_reset(&m);
			e = pm_match(&m, s1, p);
			if (e) {
				pm_flush(&m);
				if (find) {
					lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
					lua_pushinteger(L, (lua_Integer)(e - s));
					n = pm_push_captures(&m, NULL, NULL) + 2;
				} else {
					n = pm_push_captures(&m, s1, e);
				}
				return n;
			}
		} while (s1++ < m.src_end && !anchor);
		pm_flush(&m);
	}
	luaL_pushfail(L);
	return 1;
}

int rule__str_find(lua_State *L)
{
	return pm_find(L, true);
}

int rule__str_match(lua_State *L)
{
	return pm_find(L, false);
}

/* gmatch's state: upvalues 1 subject, 2 pattern, 3 this userdata */
struct pm_gmatch {
	size_t pos;     /* next start, 0-based */
	size_t last;    /* end of the last match + 1; 0 none */
};

static int pm_gmatch_next(lua_State *L)
{
	size_t ls, lp;
	const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
	const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
	struct pm_gmatch *g = lua_touserdata(L, lua_upvalueindex(3));
	struct pm m;
	const char *src;

	pm_init(&m, L, s, ls, p, lp);
	for (src = s + g->pos; src <= m.src_end; src++) {
		const char *e;

		pm_reset(&m);
		e = pm_match(&m, src, p);
		if (e && (g->last == 0 || e != s + g->last - 1)) {
			g->pos = (size_t)(e - s);
			g->last = g->pos + 1;
			pm_flush(&m);
			return pm_push_captures(&m, src, e);
		}
	}
	g->pos = ls + 1;
	pm_flush(&m);
	return 0;
}

int rule__str_gmatch(lua_State *L)
{
	size_t ls, lp, init;
	const char *p;
	struct pm_gmatch *g;

	pm_args(L, &ls, &p, &lp);
	init = pm_init_pos(L, 3, ls);
	lua_settop(L, 2);
	g = lua_newuserdatauv(L, sizeof(*g), 0);
	g->pos = init > ls + 1 ? ls + 1 : init - 1;
	g->last = 0;
	lua_pushcclosure(L, pm_gmatch_next, 3);
	return 1;
}

static void pm_add_string(struct pm *m, luaL_Buffer *b, const char *s, const char *e, int repl)
{
	size_t l, i;
	const char *r = lua_tolstring(m->L, repl, &l);

	for (i = 0; i < l; i++) {
		if (r[i] != '%') {
			luaL_addchar(b, r[i]);
			continue;
		}
		i++;
		if (i < l && r[i] == '%') {
			luaL_addchar(b, '%');
		} else if (i < l && isdigit((unsigned char)r[i])) {
			if (r[i] == '0')
				luaL_addlstring(b, s, (size_t)(e - s));
			else {
				pm_push_capture(m, r[i] - '1', s, e);
				luaL_tolstring(m->L, -1, NULL);
				lua_remove(m->L, -2);
				luaL_addvalue(b);
			}
		} else {
			rule__errorf(m->L, "invalid use of '%%' in replacement string");
		}
	}
}

static void pm_add_value(struct pm *m, luaL_Buffer *b, const char *s, const char *e, int repl)
{
	lua_State *L = m->L;

	switch (lua_type(L, repl)) {
	case LUA_TFUNCTION: {
		int n;

		lua_pushvalue(L, repl);
		n = pm_push_captures(m, s, e);
		lua_call(L, n, 1);
		break;
	}
	case LUA_TTABLE:
		pm_push_capture(m, 0, s, e);
		lua_gettable(L, repl);
		break;
	default:
		pm_add_string(m, b, s, e, repl);
		return;
	}
	if (!lua_toboolean(L, -1)) {
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s));
	} else if (!lua_isstring(L, -1)) {
		rule__errorf(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	} else {
		luaL_addvalue(b);
	}
}

int rule__str_gsub(lua_State *L)
{
	size_t ls, lp;
	const char *p, *s = pm_args(L, &ls, &p, &lp), *src = s, *last = NULL;
	int tr = lua_type(L, 3);
	lua_Integer max, n = 0;
	bool anchor = lp > 0 && *p == '^';
	struct pm m;
	luaL_Buffer b;

	max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
	luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
				    tr == LUA_TTABLE,
			 3, "string/function/table");
	if (anchor) {
		p++;
		lp--;
	}
	pm_init(&m, L, s, ls, p, lp);
	luaL_buffinit(L, &b);
	while (n < max) {
		const char *e;

		pm_reset(&m);
		e = pm_match(&m, src, p);
		if (e && e != last) {
			n++;
			pm_add_value(&m, &b, src, e, 3);
			src = last = e;
		} else if (src < m.src_end) {
			luaL_addchar(&b, *src++);
		} else {
			break;
		}
		if (anchor)
			break;
	}
	pm_flush(&m);
	luaL_addlstring(&b, src, (size_t)(m.src_end - src));
	luaL_pushresult(&b);
	lua_pushinteger(L, n);
	return 2;
}
