/* Tests of the pattern matcher (src/rule_pattern.c) against Lua's own
 * string library: generated cases from a fixed seed, and a list of
 * hand-written ones where matchers tend to go wrong. Every case runs
 * find, match, gmatch and gsub (string, table and function replacements)
 * through both (tests/pattern_diff.c) and compares values and errors. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#include "pattern_diff.h"

#define TP_CASES 20000
#define TP_BYTES 32

static void tp_close(void *d)
{
	pattern_diff_close(d);
}

static uint64_t tp_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

TEST(pattern_equals_lua_on_generated_cases)
{
	struct pattern_diff *d = pattern_diff_open();
	uint64_t seed = UINT64_C(0x1ead5ace12);
	uint8_t bytes[TP_BYTES];
	struct pattern_case c;
	char why[4096];
	int i, j, bad = 0;

	ASSERT(d);
	test_defer(tp_close, d);
	for (i = 0; i < TP_CASES; i++) {
		for (j = 0; j < TP_BYTES; j++)
			bytes[j] = (uint8_t)(tp_rand(&seed) >> 24);
		pattern_case_from_bytes(bytes, sizeof(bytes), &c);
		if (pattern_diff_run(d, &c, why, sizeof(why)) != 0 && bad++ < 3)
			printf("case %d differs: %s\n", i, why);
	}
	ASSERT_EQ(bad, 0);
}

/* one hand-written case; NULL repl: "%1" */
struct tp_case {
	const char *s, *p;
	size_t ls, lp; /* 0: strlen */
	int init;
	const char *repl;
};

static void tp_fill(struct pattern_case *c, const char *s, size_t ls, const char *p, size_t lp,
		    int init, const char *repl)
{
	memset(c, 0, sizeof(*c));
	memcpy(c->subj, s, ls);
	c->ls = ls;
	memcpy(c->pat, p, lp);
	c->lp = lp;
	c->init = init;
	c->lr = strlen(repl);
	memcpy(c->repl, repl, c->lr);
}

static char *tp_rep(const char *unit, int n)
{
	size_t l = strlen(unit);
	char *s = malloc(l * (size_t)n + 1);
	int i;

	for (i = 0; s && i < n; i++)
		memcpy(s + l * (size_t)i, unit, l);
	if (s)
		s[l * (size_t)n] = '\0';
	return s;
}

/* one long case: 1 when it differs (printed) */
static int tp_one(struct pattern_diff *d, const char *s, size_t ls, const char *p,
		  const char *repl, struct pattern_case *c)
{
	char why[4096];

	tp_fill(c, s, ls, p, strlen(p), 1, repl);
	if (pattern_diff_run(d, c, why, sizeof(why)) == 0)
		return 0;
	printf("case of %zu bytes differs: %s\n", strlen(p), why);
	return 1;
}

TEST(pattern_equals_lua_on_tricky_cases)
{
	static const struct tp_case cases[] = {
		{ "aaa", "a*", 0, 0, 1, "-" },
		{ "", "", 0, 0, 1, "." },
		{ "abc", "", 0, 0, 2, "." },
		{ "abc", "", 0, 0, 5, "." },
		{ "abc", "", 0, 0, 4, "." },
		{ "a\0b", "%z", 3, 0, 1, "<%0>" },
		{ "a\0b", "[%z]", 3, 0, 1, "<%0>" },
		{ "a\0b", "a\0b", 3, 3, 1, "x" },
		{ "a\0b", "\0", 3, 1, 1, "x" },
		{ "a\0b", ".\0.", 3, 3, 1, "x" },
		{ "THE (quick) fox", "%((%a+)%)", 0, 0, 1, "%1" },
		{ "f(a(b)c)d", "%b()", 0, 0, 1, "[%0]" },
		{ "f(a(b)c", "%b()", 0, 0, 1, "[%0]" },
		{ "x", "()", 0, 0, 1, "%1" },
		{ "hello", "()ll()", 0, 0, 1, "%1-%2" },
		{ "hello", "()", 0, 0, 1, "%1" },
		{ "abab", "(a)(b)%2%1", 0, 0, 1, "%2%1" },
		{ "aXa", "(a)X%1", 0, 0, 1, "" },
		{ "aa", "(a)%1", 0, 0, 1, "" },
		{ "a", "%1", 0, 0, 1, "" },
		{ "a", "(a%1)", 0, 0, 1, "" },
		{ "ab", "(()a)%2", 0, 0, 1, "" },
		{ "ab", "()a%1", 0, 0, 1, "" },
		{ "  trim  ", "^%s*(.-)%s*$", 0, 0, 1, "%1" },
		{ "a.b", "%.", 0, 0, 1, "%%" },
		{ "a]b", "[]]", 0, 0, 1, "" },
		{ "a]b^", "[^]]", 0, 0, 1, "" },
		{ "a^b", "[^^]", 0, 0, 1, "" },
		{ "a-b", "[a-]", 0, 0, 1, "" },
		{ "a-z", "[%a-]+", 0, 0, 1, "" },
		{ "a-z", "[a-%a]+", 0, 0, 1, "" },
		{ "z-%", "[%%-z]+", 0, 0, 1, "" },
		{ "\xff\x80", "[\x80-\xff]+", 0, 0, 1, "" },
		{ "abc", "[^]", 0, 0, 1, "" },
		{ "abc", "[]", 0, 0, 1, "" },
		{ "a", "[a", 0, 0, 1, "" },
		{ "a", "%", 0, 0, 1, "" },
		{ "b", "a%", 0, 0, 1, "" },
		{ "a", "a%", 0, 0, 1, "" },
		{ "a", "%b", 0, 0, 1, "" },
		{ "a", "%ba", 0, 0, 1, "" },
		{ "b", "a%ba", 0, 0, 1, "" },
		{ "a", "%f", 0, 0, 1, "" },
		{ "a", "%fa", 0, 0, 1, "" },
		{ "a", "%f[a", 0, 0, 1, "" },
		{ "THE END", "%f[%a]%a+", 0, 0, 2, "<%0>" },
		{ "THE END", "%f[%A]", 0, 0, 1, "|" },
		{ "a", "(a", 0, 0, 1, "" },
		{ "a", "a)", 0, 0, 1, "" },
		{ "a", "a)x*", 0, 0, 1, "" },
		{ "a", ")", 0, 0, 1, "" },
		{ "a", "(()", 0, 0, 1, "" },
		{ "aaab", "(.-)*b", 0, 0, 1, "" },
		{ "a*b", "(.-)*b", 0, 0, 1, "%1" },
		{ "$a$", "$a$", 0, 0, 1, "" },
		{ "a$", "a$$", 0, 0, 1, "" },
		{ "^a", "^^a", 0, 0, 1, "" },
		{ "a^b", "a^b", 0, 0, 1, "" },
		{ "a**b", "a**b", 0, 0, 1, "" },
		{ "aab", "a-+b", 0, 0, 1, "" },
		{ "ab", "a?b?c?", 0, 0, 1, "" },
		{ "key=val, k2=v2", "(%w+)=(%w+)", 0, 0, 1, "%2=%1" },
		{ "key=val", "(%w+)=(%w+)", 0, 0, 1, "%3" },
		{ "abc", "%w", 0, 0, 1, "%" },
		{ "abc", "b*", 0, 0, 1, "-" },
		{ "hello world", "o", 0, 0, -3, "0" },
		{ "hello", "l", 0, 0, -100, "L" },
		{ "hello", "l", 0, 0, 100, "L" },
		{ "a.b", ".", 0, 0, 1, "x" },
		{ "a+b", "+", 0, 0, 1, "x" },
		{ "a(b", "(", 0, 0, 1, "x" },
		{ "2026-11-20", "^(%d+)-(%d+)-(%d+)$", 0, 0, 1, "%3.%2.%1" },
		{ "ab", "(a)(b)", 0, 0, 1, "%0%1%2" },
		{ "x", "(x)(x?)", 0, 0, 1, "[%2]" },
	};
	struct pattern_diff *d = pattern_diff_open();
	struct pattern_case c;
	char why[4096];
	size_t i;
	int bad = 0, n;
	char *s, *p;

	ASSERT(d);
	test_defer(tp_close, d);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tp_case *t = &cases[i];

		tp_fill(&c, t->s, t->ls ? t->ls : strlen(t->s), t->p, t->lp ? t->lp : strlen(t->p),
			t->init, t->repl ? t->repl : "%1");
		if (pattern_diff_run(d, &c, why, sizeof(why)) != 0 && bad++ < 5)
			printf("tricky case %zu differs: %s\n", i, why);
	}
	/* limits: 32 captures and one more, Lua's 200 nested matcher calls
	 * on either side of the edge, a back-reference to each capture */
	s = test_defer_free(tp_rep("a", 300));
	ASSERT(s);
	for (n = 197; n <= 201; n++) {
		p = test_defer_free(tp_rep("a?", n));
		ASSERT(p);
		bad += tp_one(d, s, 300, p, "x", &c);
	}
	for (n = 31; n <= 33; n++) {
		p = test_defer_free(tp_rep("(a)", n));
		ASSERT(p);
		bad += tp_one(d, s, 300, p, "%9", &c);
	}
	p = test_defer_free(tp_rep("(a)%1", 9));
	ASSERT(p);
	bad += tp_one(d, s, 300, p, "%9%8", &c);
	p = test_defer_free(tp_rep("(.-)", 40));
	ASSERT(p);
	bad += tp_one(d, s, 50, p, "%1", &c);
	ASSERT_EQ(bad, 0);
}
