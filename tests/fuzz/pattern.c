/* fuzz target pattern: the rule runtime's Lua pattern matcher
 * (src/rule_pattern.c) differentially against Lua's own string library,
 * through tests/pattern_diff.h: string.find/match/gmatch/gsub on a case
 * built from the input by pattern_case_from_bytes; any difference in a
 * value or an error message is a crash. */
#include <stdio.h>

#include "fuzz.h"
#include "pattern_diff.h"

static struct pattern_diff *pd;

static void pd_close_at_exit(void)
{
	pattern_diff_close(pd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pattern_case c;
	static char why[8192];
	int rc;

	if (!pd) {
		pd = pattern_diff_open();
		if (!pd)
			abort();
		atexit(pd_close_at_exit);
	}
	pattern_case_from_bytes(data, size, &c);
	rc = pattern_diff_run(pd, &c, why, sizeof(why));
	if (rc != 0) {
		fprintf(stderr, "pattern: %s: %s\n", rc > 0 ? "ours and Lua's differ" : "harness failed",
			why);
		abort();
	}
	return 0;
}
