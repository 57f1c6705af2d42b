/* bench_pattern: cost of the rules' pattern functions (src/rule_pattern.c)
 * on what rules do with them: split a date, pick key=value pairs, squeeze
 * blanks, test a prefix, a set, a failing search over a longer subject.
 * Each line runs one call in a Lua loop inside a rule's process call and
 * prints nanoseconds per call, the loop's own cost included (the same in
 * every build, so before/after figures compare).
 *
 * Usage: bench_pattern [ITERATIONS] [--json] [--only NAME]
 *   --only  runs that case alone: under `valgrind --tool=callgrind`, the
 *           instructions of two iteration counts give a per-call figure
 *           that does not move with the machine's load. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rule.h"

static const struct {
	const char *name, *code;
} cases[] = {
	{ "match_date", "s:match('^(%d+)-(%d+)-(%d+)$')" },
	{ "find_plain", "s:find('-11-', 1, true)" },
	{ "find_class", "s:find('%d%d$')" },
	{ "gmatch_pairs", "for k, v in kv:gmatch('(%w+)=(%w+)') do end" },
	{ "gsub_blanks", "sp:gsub('%s+', ' ')" },
	{ "gsub_set_fn", "kv:gsub('[%w_]+', up)" },
	{ "match_lazy", "sp:match('^%s*(.-)%s*$')" },
	{ "find_fail_long", "long:find('x[%d]+y')" },
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const struct rule_limits lim = { .instructions = INT64_C(4000000000000),
					 .time_ms = 3600000 };
	unsigned long n = 200000;
	const char *only = NULL;
	bool json = false;
	size_t i;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[a], "--only") == 0 && a + 1 < argc) {
			only = argv[++a];
		} else if (argv[a][0] >= '1' && argv[a][0] <= '9') {
			n = strtoul(argv[a], NULL, 10);
		} else {
			fprintf(stderr, "usage: bench_pattern [ITERATIONS] [--json] [--only NAME]\n");
			return 2;
		}
	}
	if (json)
		printf("{\"iterations\": %lu", n);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char src[1024], err[512];
		struct rule_rt *rt = NULL;
		struct rule_result res;
		struct rule_batch b;
		double t0, t1;
		int rc;

		if (only && strcmp(only, cases[i].name) != 0)
			continue;
		snprintf(src, sizeof(src),
			 "local s, kv, sp = '2026-11-20', 'a=1, bb=22, ccc=333', '  one  two   three  '\n"
			 "local long = string.rep('abc 123 ', 64)\n"
			 "local function up(w) return nil end\n"
			 "return { processing = { url = 'http://crm.example/?ids={idsl}', process = "
			 "function()\n for _ = 1, %lu do %s end\n end } }\n",
			 n, cases[i].code);
		if (rule_load_buffer("bench.lua", src, strlen(src), &lim, &rt, err, sizeof(err)) < 0) {
			fprintf(stderr, "bench_pattern: %s\n", err);
			return 1;
		}
		memset(&b, 0, sizeof(b));
		rule_result_init(&res);
		t0 = now_s();
		rc = rule_process(rt, RULE_PROCESSING, &b, NULL, "{}", 2, 200, NULL, &res, err,
				  sizeof(err));
		t1 = now_s();
		rule_result_release(&res);
		rule_free(rt);
		if (rc < 0) {
			fprintf(stderr, "bench_pattern: %s: %s\n", cases[i].name, err);
			return 1;
		}
		if (json)
			printf(", \"%s_ns\": %.1f", cases[i].name, (t1 - t0) * 1e9 / (double)n);
		else
			printf("%-16s %8.1f ns/call\n", cases[i].name, (t1 - t0) * 1e9 / (double)n);
	}
	if (json)
		printf("}\n");
	return 0;
}
