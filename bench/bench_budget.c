/* bench_budget: how long a rule runs that spends its whole instruction
 * budget (the default 50M) in one library function, beside a bare Lua loop
 * measured in the same run. The rates of rule_int.h RULE_COST_* aim at
 * every line coming out near the bare loop: C work costs about what Lua
 * work of the same time would (issue 11 item 2; docs/rules.md "The
 * sandbox and its limits"). A line far below the loop is overcharged, far
 * above it undercharged. Every call must end with the budget, never the
 * clock (600 s here).
 *
 * Usage: bench_budget */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rule.h"

static const char *const bench_loops[] = {
	"while true do end",
	"local s = string.rep('a', 1 << 20) while true do hash.sha256(s) end",
	"local s = string.rep('a', 1 << 20) while true do hash.md5(s) end",
	"local s = string.rep('a', 1 << 20) while true do hash.hmac_sha1('k', s) end",
	"local s = string.rep('a', 100) while true do hash.sha256(s) end",
	"local s = string.rep('a', 1 << 20) while true do base64.encode(s) end",
	"local t = {} for i = 1, 20000 do t[i] = {id = i, name = 'lead ' .. i, status = 'approved', "
	"sum = i * 1.5} end"
	" while true do json.encode(t) end",
	"local t = {} for i = 1, 20000 do t[i] = {id = i, name = 'lead ' .. i, status = 'approved', "
	"sum = i * 1.5} end local j = json.encode(t)"
	" while true do json.decode(j) end",
	"local t = {} for i = 1, 20000 do t[i] = 'lead' .. i end"
	" while true do form.encode({ids = t}) end",
	"local t = {} for i = 1, 100000 do t[i] = 'abcdefghij' end"
	" while true do table.concat(t, ',') end",
	"local x = {'<r>'} for i = 1, 10000 do x[#x+1] = '<o id=\"' .. i .. '\"><s>ok</s></o>' end "
	"x[#x+1] = '</r>' x = table.concat(x)"
	" while true do xml.decode(x) end",
	"while true do string.rep('abcdefgh', 1 << 20) end",
	"local s = string.rep('a', 1 << 20) while true do s:upper() end",
	"local s = string.rep('a', 1 << 20) while true do s:gsub('a', 'b') end",
	"local t = {} for i = 1, 20000 do t[i] = 'lead' .. i end local f = form.encode({ids = t})"
	" while true do form.decode(f) end",
	"local x = {'<r>'} for i = 1, 10000 do x[#x+1] = '<o id=\"' .. i .. '\"><s>ok</s></o>' end "
	"x[#x+1] = '</r>' x = xml.decode(table.concat(x))"
	" while true do xml.all(x, 'o') end",
	"local s = string.rep('a', 1 << 20) while true do string.format('%s%s', s, s) end",
	"local s = string.rep('a', 1 << 20) while true do utf8.len(s) end",
	"local t = {} for i = 1, 100000 do t[i] = i end"
	" while true do table.insert(t, 1, 0) table.remove(t, 1) end",
	"local t = {} for i = 1, 100000 do t[i] = (i * 7919) % 100003 end"
	" while true do local c = table.move(t, 1, #t, 1, {}) table.sort(c) end",
	"local t = {} for i = 1, 100000 do t[i] = (i * 7919) % 100003 end"
	" while true do table.sort(t) end",
	"local t = {} for i = 1, 100000 do t[i] = i end while true do table.unpack(t) end",
	NULL
};

int main(void)
{
	struct lead one;
	double base = 0;
	int k, bad = 0;

	memset(&one, 0, sizeof(one));
	one.id = 1;
	one.offer = 1;
	printf("bench-budget: ms until the default budget runs out (x: of the bare loop)\n");
	for (k = 0; bench_loops[k]; k++) {
		const struct rule_limits lim = { .time_ms = 600000 };
		char src[2048], err[512];
		struct rule_rt *rt;
		struct rule_batch b;
		struct rule_result res;
		struct timespec t0, t1;
		double ms;
		int rc;

		snprintf(src, sizeof(src),
			 "return { processing = { url = 'https://x/{idsl}', process = function(data)\n"
			 "%s\nend } }\n",
			 bench_loops[k]);
		if (rule_load_buffer("bench.lua", src, strlen(src), &lim, &rt, err, sizeof(err)) < 0) {
			printf("load: %s\n", err);
			return 1;
		}
		memset(&b, 0, sizeof(b));
		b.offer = 1;
		b.leads = &one;
		b.nleads = 1;
		b.now = 1795000000;
		rule_result_init(&res);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = rule_process(rt, RULE_PROCESSING, &b, NULL, "{}", 2, 200, NULL, &res, err,
				  sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (k == 0)
			base = ms;
		if (rc == 0 || !strstr(err, "instruction budget exhausted")) {
			printf("  %7.0f ms  %.70s: did not end by the budget: %s\n", ms, bench_loops[k],
			       rc ? err : "it ended");
			bad = 1;
		} else {
			const char *w = strstr(bench_loops[k], "while true do ");

			printf("  %7.0f ms  %4.1fx  %.60s\n", ms, base > 0 ? ms / base : 0,
			       w && k ? w + 14 : bench_loops[k]);
		}
		rule_result_release(&res);
		rule_free(rt);
	}
	return bad;
}
