/* rule_pattern: string.find/match/gmatch/gsub for rules. The language is
 * Lua 5.4's patterns; the matcher is ours. A pattern is compiled once into
 * a list of items (single-byte tests with their quantifier, captures, %b,
 * %f, back-references, the end anchor), then run by one loop that keeps
 * its choice points and capture undos on a bounded stack instead of C
 * recursion, and charges every step to the call's instruction budget (the
 * VM's count hook never fires inside C, and patterns like "(.-)*b" are
 * quadratic). A malformed spot compiles to an item that raises when the
 * matcher reaches it, which is when Lua raises: "a%" finds nothing in "b"
 * without an error. Subjects and patterns are length-capped
 * (limits.subject_max/pattern_max). tests/test_pattern.c holds the
 * differential test against Lua's own string library. */
#include "rule_int.h"

#include <ctype.h>
#include <pthread.h>
#include <string.h>

#define PM_MAXCAPTURES 32
/* Lua's own limit of nested matcher calls ("pattern too complex"): one
 * for the attempt, one per choice point or capture undo on the stack */
#define PM_MAXDEPTH 200
#define PM_CHUNK 4096 /* steps between two charges */
#define PM_UNFINISHED (-1)
#define PM_POSITION (-2)
/* patterns up to this many items compile on the C stack */
#define PM_STACK_ITEMS 64
#define PM_GSUB_ITEMS 16 /* gsub's frame may nest */

enum pm_kind {
	PK_CHAR,  /* one byte: a */
	PK_ANY,   /* . */
	PK_SET,   /* %a ... or [...]: set */
	PK_OPEN,  /* ( */
	PK_POS,   /* () */
	PK_CLOSE, /* ) */
	PK_BAL,   /* %bab */
	PK_FRONT, /* %f[set] */
	PK_BREF,  /* %N: a is the digit */
	PK_END,   /* $ as the last byte */
	PK_ERR,   /* malformed: a is the enum pm_err */
	PK_DONE,  /* the pattern's end */
};

enum pm_rep { PR_ONE = 0, PR_STAR, PR_PLUS, PR_MIN, PR_OPT };
enum pm_err { PE_PERCENT, PE_BRACKET, PE_BALANCE, PE_FRONTIER };

struct pm_item {
	unsigned char kind, rep, a, b;
	uint32_t set[8]; /* PK_SET, PK_FRONT: one bit per byte */
};

enum pm_frame_kind {
	PF_OPEN,  /* undo: drop the last capture */
	PF_CLOSE, /* undo: reopen capture n */
	PF_OPT,   /* retry: item k at s without the optional byte */
	PF_MAX,   /* retry: item k + 1 at s + n - 1 (greedy, giving back) */
	PF_MIN,   /* retry: one more byte of item k, then k + 1 (lazy) */
};

struct pm_frame {
	int kind;
	int k;
	const char *s;
	ptrdiff_t n;
};

struct pm {
	lua_State *L;
	const char *src, *src_end;
	const struct pm_item *it;
	int level;
	int nf;
	int64_t steps; /* not yet charged */
	struct {
		const char *init;
		ptrdiff_t len;
	} cap[PM_MAXCAPTURES];
	struct pm_frame f[PM_MAXDEPTH];
};

/* ---- budget ---------------------------------------------------------- */

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

/* ---- compiling ------------------------------------------------------- */

/* c in the class named by letter cl (upper case: the complement); any
 * other cl stands for itself */
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
	case 'z': r = c == 0; break; /* deprecated in Lua, still there */
	default: return cl == c;
	}
	return isupper(cl) ? !r : r;
}

static bool pm_is_class(int cl)
{
	return cl != 0 && strchr("acdglpsuwxz", tolower(cl));
}

static void pm_set_add(uint32_t *set, int c)
{
	set[c >> 5] |= UINT32_C(1) << (c & 31);
}

static bool pm_set_has(const uint32_t *set, int c)
{
	return (set[c >> 5] >> (c & 31)) & 1;
}

/* The classes' bitmaps, by lower-case letter: built once, read-only
 * afterwards (the C locale: the daemon never calls setlocale), so a
 * pattern's classes cost a copy, not 256 ctype calls. */
static uint32_t pm_class_bits[26][8];
static pthread_once_t pm_class_once = PTHREAD_ONCE_INIT;

static void pm_class_build(void)
{
	const char *l;
	int c;

	for (l = "acdglpsuwxz"; *l; l++)
		for (c = 0; c < 256; c++)
			if (pm_class(c, *l))
				pm_set_add(pm_class_bits[*l - 'a'], c);
}

/* adds the bytes of class cl (pm_is_class) to set */
static void pm_set_class(uint32_t *set, int cl)
{
	const uint32_t *bits = pm_class_bits[tolower(cl) - 'a'];
	int i;

	for (i = 0; i < 8; i++)
		set[i] |= isupper(cl) ? ~bits[i] : bits[i];
}

/* The set between '[' at p[i] and its ']' at p[ec]. A '-' makes a range
 * unless it comes last; '%x' is an escape or a class; a leading '^'
 * negates; the first byte after '[' or '[^' is a member even if ']'. */
static void pm_set_build(uint32_t *set, const unsigned char *p, size_t i, size_t ec)
{
	bool neg = false;
	int c;

	memset(set, 0, 8 * sizeof(*set));
	if (p[i + 1] == '^') {
		neg = true;
		i++;
	}
	for (i++; i < ec; i++) {
		if (p[i] == '%') {
			i++;
			if (pm_is_class(p[i])) {
				pm_set_class(set, p[i]);
			} else {
				pm_set_add(set, p[i]);
			}
		} else if (p[i + 1] == '-' && i + 2 < ec) {
			for (c = p[i]; c <= p[i + 2]; c++)
				pm_set_add(set, c);
			i += 2;
		} else {
			pm_set_add(set, p[i]);
		}
	}
	if (neg)
		for (c = 0; c < 8; c++)
			set[c] = ~set[c];
}

/* The end of the single-byte test at p[i] ('.', 'x', '%x', '[...]'), or
 * 0 with *err set when it is malformed (a test is at least one byte). */
static size_t pm_test_end(const unsigned char *p, size_t lp, size_t i, int *err)
{
	unsigned char c = p[i++];

	if (c == '%') {
		if (i >= lp) {
			*err = PE_PERCENT;
			return 0;
		}
		return i + 1;
	}
	if (c != '[')
		return i;
	if (i < lp && p[i] == '^')
		i++;
	do {
		if (i >= lp) {
			*err = PE_BRACKET;
			return 0;
		}
		c = p[i++];
		if (c == '%' && i < lp)
			i++;
	} while (i >= lp || p[i] != ']');
	return i + 1;
}

/* Compiles p into it (room for lp + 1 items: each takes at least one
 * byte, plus PK_DONE). Never fails: a malformed spot becomes PK_ERR,
 * the last item. */
static void pm_compile(const unsigned char *p, size_t lp, struct pm_item *it)
{
	size_t i = 0, e;
	int err;

	pthread_once(&pm_class_once, pm_class_build);
	for (;; it++) {
		memset(it, 0, offsetof(struct pm_item, set));
		if (i >= lp) {
			it->kind = PK_DONE;
			return;
		}
		if (p[i] == '(') {
			bool pos = i + 1 < lp && p[i + 1] == ')';

			it->kind = pos ? PK_POS : PK_OPEN;
			i += pos ? 2 : 1;
			continue;
		}
		if (p[i] == ')') {
			it->kind = PK_CLOSE;
			i++;
			continue;
		}
		if (p[i] == '$' && i + 1 == lp) {
			it->kind = PK_END;
			i++;
			continue;
		}
		if (p[i] == '%' && i + 1 < lp && p[i + 1] == 'b') {
			err = PE_BALANCE;
			if (i + 3 >= lp)
				goto malformed;
			it->kind = PK_BAL;
			it->a = p[i + 2];
			it->b = p[i + 3];
			i += 4;
			continue;
		}
		if (p[i] == '%' && i + 1 < lp && p[i + 1] == 'f') {
			i += 2;
			e = 0;
			err = PE_FRONTIER;
			if (i < lp && p[i] == '[')
				e = pm_test_end(p, lp, i, &err);
			if (!e)
				goto malformed;
			it->kind = PK_FRONT;
			pm_set_build(it->set, p, i, e - 1);
			i = e;
			continue;
		}
		if (p[i] == '%' && i + 1 < lp && isdigit(p[i + 1])) {
			it->kind = PK_BREF;
			it->a = p[i + 1];
			i += 2;
			continue;
		}
		e = pm_test_end(p, lp, i, &err);
		if (!e)
			goto malformed;
		if (p[i] == '.') {
			it->kind = PK_ANY;
		} else if (p[i] == '[') {
			it->kind = PK_SET;
			pm_set_build(it->set, p, i, e - 1);
		} else if (p[i] == '%' && pm_is_class(p[i + 1])) {
			it->kind = PK_SET;
			memset(it->set, 0, sizeof(it->set));
			pm_set_class(it->set, p[i + 1]);
		} else {
			it->kind = PK_CHAR;
			it->a = p[i] == '%' ? p[i + 1] : p[i];
		}
		if (e < lp) {
			switch (p[e]) {
			case '*': it->rep = PR_STAR; e++; break;
			case '+': it->rep = PR_PLUS; e++; break;
			case '-': it->rep = PR_MIN; e++; break;
			case '?': it->rep = PR_OPT; e++; break;
			default: break;
			}
		}
		i = e;
	}
malformed:
	it->kind = PK_ERR;
	it->a = (unsigned char)err;
	it[1].kind = PK_DONE;
}

/* ---- matching -------------------------------------------------------- */

static bool pm_single(const struct pm *m, const char *s, const struct pm_item *it)
{
	int c;

	if (s >= m->src_end)
		return false;
	c = (unsigned char)*s;
	switch (it->kind) {
	case PK_CHAR: return c == it->a;
	case PK_ANY: return true;
	default: return pm_set_has(it->set, c);
	}
}

static void pm_push(struct pm *m, int kind, int k, const char *s, ptrdiff_t n)
{
	struct pm_frame *f;

	if (m->nf >= PM_MAXDEPTH - 1)
		rule__errorf(m->L, "pattern too complex");
	f = &m->f[m->nf++];
	f->kind = kind;
	f->k = k;
	f->s = s;
	f->n = n;
}

static int pm_check_capture(struct pm *m, int ch)
{
	int l = ch - '1';

	if (l < 0 || l >= m->level || m->cap[l].len == PM_UNFINISHED)
		rule__errorf(m->L, "invalid capture index %%%d", l + 1);
	return l;
}

static const char *pm_balance(struct pm *m, const char *s, const struct pm_item *it)
{
	int open = 1;

	if (s >= m->src_end || (unsigned char)*s != it->a)
		return NULL;
	while (++s < m->src_end) {
		pm_step(m);
		if ((unsigned char)*s == it->b) {
			if (--open == 0)
				return s + 1;
		} else if ((unsigned char)*s == it->a) {
			open++;
		}
	}
	return NULL;
}

static __attribute__((noreturn)) void pm_malformed(struct pm *m, int err)
{
	switch (err) {
	case PE_PERCENT: rule__errorf(m->L, "malformed pattern (ends with '%%')");
	case PE_BRACKET: rule__errorf(m->L, "malformed pattern (missing ']')");
	case PE_BALANCE: rule__errorf(m->L, "malformed pattern (missing arguments to '%%b')");
	default: rule__errorf(m->L, "missing '[' after '%%f' in pattern");
	}
}

/* Runs the items from the first at s: the end of the match, or NULL.
 * Captures are left in m->cap[0 .. level). */
static const char *pm_run(struct pm *m, const char *s)
{
	const struct pm_item *it;
	struct pm_frame *f;
	int k = 0, l;
	ptrdiff_t n;

	m->level = 0;
	m->nf = 0;
	for (;;) {
		pm_step(m);
		it = &m->it[k];
		switch (it->kind) {
		case PK_DONE:
			return s;
		case PK_END:
			if (s == m->src_end)
				return s;
			goto fail;
		case PK_OPEN:
		case PK_POS:
			if (m->level >= PM_MAXCAPTURES)
				rule__errorf(m->L, "too many captures");
			m->cap[m->level].init = s;
			m->cap[m->level].len = it->kind == PK_POS ? PM_POSITION : PM_UNFINISHED;
			m->level++;
			pm_push(m, PF_OPEN, k, s, 0);
			k++;
			continue;
		case PK_CLOSE:
			for (l = m->level - 1; l >= 0; l--)
				if (m->cap[l].len == PM_UNFINISHED)
					break;
			if (l < 0)
				rule__errorf(m->L, "invalid pattern capture");
			m->cap[l].len = s - m->cap[l].init;
			pm_push(m, PF_CLOSE, k, s, l);
			k++;
			continue;
		case PK_BAL:
			s = pm_balance(m, s, it);
			if (!s)
				goto fail;
			k++;
			continue;
		case PK_FRONT: {
			int prev = s == m->src ? 0 : (unsigned char)s[-1];
			int cur = s < m->src_end ? (unsigned char)*s : 0;

			if (pm_set_has(it->set, prev) || !pm_set_has(it->set, cur))
				goto fail;
			k++;
			continue;
		}
		case PK_BREF:
			l = pm_check_capture(m, it->a);
			n = m->cap[l].len;
			if (n == PM_POSITION)
				goto fail; /* as Lua: a position never matches as text */
			m->steps += n / 16;
			if (m->src_end - s < n || memcmp(m->cap[l].init, s, (size_t)n) != 0)
				goto fail;
			s += n;
			k++;
			continue;
		case PK_ERR:
			pm_malformed(m, it->a);
		default:
			break;
		}
		switch (it->rep) {
		case PR_ONE:
			if (!pm_single(m, s, it))
				goto fail;
			s++;
			k++;
			continue;
		case PR_OPT:
			if (pm_single(m, s, it)) {
				pm_push(m, PF_OPT, k + 1, s, 0);
				s++;
			}
			k++;
			continue;
		case PR_MIN:
			pm_push(m, PF_MIN, k, s, 0);
			k++;
			continue;
		case PR_PLUS:
			if (!pm_single(m, s, it))
				goto fail;
			s++;
			/* fall through */
		default: /* PR_STAR */
			for (n = 0; pm_single(m, s + n, it); n++)
				pm_step(m);
			pm_push(m, PF_MAX, k, s, n);
			s += n;
			k++;
			continue;
		}
fail:
		for (;;) {
			if (m->nf == 0)
				return NULL;
			f = &m->f[m->nf - 1];
			if (f->kind == PF_OPEN) {
				m->level--;
			} else if (f->kind == PF_CLOSE) {
				m->cap[f->n].len = PM_UNFINISHED;
			} else if (f->kind == PF_OPT) {
				s = f->s;
				k = f->k;
				m->nf--;
				break;
			} else if (f->kind == PF_MAX) {
				if (f->n > 0) {
					f->n--;
					s = f->s + f->n;
					k = f->k + 1;
					break;
				}
			} else if (pm_single(m, f->s, &m->it[f->k])) { /* PF_MIN */
				s = ++f->s;
				k = f->k + 1;
				break;
			}
			m->nf--;
		}
	}
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

/* Room for the items of a pattern of lp bytes: buf when it is big enough,
 * else a userdata pushed on the stack (collected with it). */
static struct pm_item *pm_items(lua_State *L, size_t lp, struct pm_item *buf, size_t nbuf)
{
	if (lp + 1 <= nbuf)
		return buf;
	return lua_newuserdatauv(L, (lp + 1) * sizeof(*buf), 0);
}

static void pm_init(struct pm *m, lua_State *L, const char *s, size_t ls,
		    const struct pm_item *it)
{
	m->L = L;
	m->src = s;
	m->src_end = s + ls;
	m->it = it;
	m->level = 0;
	m->nf = 0;
	m->steps = 0;
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
		if (p[i] && strchr("^$*+?.([%-", p[i]))
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
	struct pm_item buf[PM_STACK_ITEMS];
	struct pm m;

	init = pm_init_pos(L, 3, ls);
	if (init > ls + 1) {
		luaL_pushfail(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || !pm_has_specials(p, lp))) {
		const char *at;

		pm_init(&m, L, s, ls, NULL);
		at = pm_plain(&m, s + init - 1, ls - init + 1, p, lp);
		pm_flush(&m);
		if (at) {
			lua_pushinteger(L, (lua_Integer)(at - s) + 1);
			lua_pushinteger(L, (lua_Integer)(at - s) + (lua_Integer)lp);
			return 2;
		}
	} else {
		const char *s1 = s + init - 1;
		bool anchor = lp > 0 && *p == '^';
		struct pm_item *it;

		if (anchor) {
			p++;
			lp--;
		}
		it = pm_items(L, lp, buf, PM_STACK_ITEMS);
		pm_compile((const unsigned char *)p, lp, it);
		pm_init(&m, L, s, ls, it);
		do {
			const char *e = pm_run(&m, s1);

			if (e) {
				pm_flush(&m);
				if (!find)
					return pm_push_captures(&m, s1, e);
				lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
				lua_pushinteger(L, (lua_Integer)(e - s));
				return pm_push_captures(&m, NULL, NULL) + 2;
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

/* gmatch's state, upvalue 3 of the iterator (1 subject, 2 pattern): the
 * compiled pattern lives here, so each step only matches. */
struct pm_gmatch {
	size_t pos;  /* next start, 0-based */
	size_t last; /* end of the last match + 1; 0 none */
	struct pm_item it[];
};

static int pm_gmatch_next(lua_State *L)
{
	size_t ls;
	const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
	struct pm_gmatch *g = lua_touserdata(L, lua_upvalueindex(3));
	struct pm m;
	const char *src;

	pm_init(&m, L, s, ls, g->it);
	for (src = s + g->pos; src <= m.src_end; src++) {
		const char *e = pm_run(&m, src);

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
	g = lua_newuserdatauv(L, sizeof(*g) + (lp + 1) * sizeof(g->it[0]), 0);
	g->pos = init > ls + 1 ? ls + 1 : init - 1;
	g->last = 0;
	pm_compile((const unsigned char *)p, lp, g->it);
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
		} else if (i < l && r[i] == '0') {
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (i < l && isdigit((unsigned char)r[i])) {
			pm_push_capture(m, r[i] - '1', s, e);
			luaL_tolstring(m->L, -1, NULL);
			lua_remove(m->L, -2);
			luaL_addvalue(b);
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
	struct pm_item buf[PM_GSUB_ITEMS], *it;
	struct pm ms, *m = &ms;
	luaL_Buffer b;

	max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
	luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
				    tr == LUA_TTABLE,
			 3, "string/function/table");
	if (anchor) {
		p++;
		lp--;
	}
	/* the state on the C stack, as in find: frames are dead once a match
	 * is found, so a replacement function that calls gsub again (as deep
	 * as Lua's C-call limit lets it) holds only this frame; the items of
	 * a longer pattern go in a userdata below the buffer */
	it = pm_items(L, lp, buf, PM_GSUB_ITEMS);
	pm_compile((const unsigned char *)p, lp, it);
	pm_init(m, L, s, ls, it);
	luaL_buffinit(L, &b);
	while (n < max) {
		const char *e = pm_run(m, src);

		if (e && e != last) {
			n++;
			pm_add_value(m, &b, src, e, 3);
			src = last = e;
		} else if (src < m->src_end) {
			luaL_addchar(&b, *src++);
		} else {
			break;
		}
		if (anchor)
			break;
	}
	pm_flush(m);
	luaL_addlstring(&b, src, (size_t)(m->src_end - src));
	luaL_pushresult(&b);
	lua_pushinteger(L, n);
	return 2;
}
