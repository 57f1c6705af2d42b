/* pattern_diff: runs string.find/match/gmatch/gsub on one case through
 * the rule runtime's matcher (src/rule_pattern.c) and through Lua's own
 * string library, and compares every result and error message. Built so
 * a fuzzer can drive it: pattern_case_from_bytes turns any bytes into a
 * case, pattern_diff_run says whether the two agree. tests/test_pattern.c
 * feeds it generated and hand-written cases. A libFuzzer target is:
 *   pattern_case_from_bytes(data, size, &c);
 *   if (pattern_diff_run(d, &c, why, sizeof(why)) != 0) abort();
 * with d opened once. */
#ifndef LEADSYNC_PATTERN_DIFF_H
#define LEADSYNC_PATTERN_DIFF_H

#include <stddef.h>
#include <stdint.h>

#define PATTERN_CASE_MAX 512

/* One case: strings may hold any byte, NUL included. */
struct pattern_case {
	char pat[PATTERN_CASE_MAX];
	size_t lp;
	char subj[PATTERN_CASE_MAX];
	size_t ls;
	char repl[64]; /* gsub's replacement string */
	size_t lr;
	int init;      /* find/match/gmatch's init, may be negative */
};

/* Any bytes make a case (too few bytes read as zeros): a pattern of
 * tokens of the language (tests, sets, quantifiers, captures, %b, %f,
 * back-references, anchors) and stray bytes that make it malformed, a
 * short subject over a small alphabet, an init and a replacement. */
void pattern_case_from_bytes(const uint8_t *data, size_t n, struct pattern_case *c);

struct pattern_diff;

/* Two Lua states: ours has the runtime's four functions in `string`, the
 * other Lua's. NULL when out of memory. pattern_diff_close frees it. */
struct pattern_diff *pattern_diff_open(void);
void pattern_diff_close(struct pattern_diff *d);

/* Runs c through both: 0 when every call gave the same values or the
 * same error message; 1 when they differ, with both transcripts in why
 * (truncated to n); -1 when the harness itself failed (why says so). */
int pattern_diff_run(struct pattern_diff *d, const struct pattern_case *c, char *why, size_t n);

#endif
